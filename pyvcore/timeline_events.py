"""Continuous event logs (``pyvcore trace``, format ``pyvcore-events``) into a Timeline.

Every store was seen, so each lane is a run of slices: a state holds from the
change that made it to the next change.  The fields read (as the log names
them; the format's reference is the module doc of rust/core/src/shadow/mod.rs):

* ``threads[N].kvm_hstate.F``: the PACA of hardware thread N (``in_guest``,
  ``napping``, ``hwthread_state``, ``hwthread_req``, ``ptid``, ``kvm_vcore``,
  ``kvm_vcpu``); a ``host_ipi`` set by another thread is an exit-IPI arrow
  from the storing ``cpu`` to N (book3s_hv.c: kvmppc_ipi_thread, via the ICP);
* ``threads[N].msgsndp`` / ``threads[N].msgsnd``: a doorbell sent by N, the
  value being the target thread: an arrow;
* ``vcores[0xADDR].F``: the vcore's ``vcore_state``, ``in_guest``,
  ``entry_exit_map``...; ``vcpus[0xADDR].vcpu_id``: names a vcpu;
* a line with an ``invariant`` key, and the violations found by replaying the
  log through the shadow checker where pyvcore has it (``replay_events``), are
  marked at their timebase.

Events are placed on the host's timebase: an event's ``tb`` is the TB register as read,
the guest's while thread 0 has its vcore's timebase offset in force (kvmppc_hv_entry,
book3s_hv_rmhandlers.S, adds ``vc->tb_offset`` with TBU40 after storing it in
``tb_offset_applied`` and before setting ``in_guest``; kvmhv_switch_to_host takes it off in
the reverse order), and the offset is taken off with the ``vcores[].tb_offset`` and
``tb_offset_applied`` events, by the rule the shadow uses for invariants 41-43
(``CoreState::host_tb``, rust/core/src/shadow/state.rs).  An event inside that switch (its
host timebase not known) is drawn at the host timebase of the event before it: the plugin
reads each event's TB under the shadow's lock, so it lies between its neighbours.  Where the
offset itself is not known (a log from a plugin that did not watch it), the log is drawn by
event number and :attr:`Timeline.axis_note` says why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from pyvcore.errors import at
from pyvcore.timeline import (
    Flow,
    Mark,
    Timeline,
    TimelineError,
    Violation,
    as_int,
    thread_state,
    vcore_label,
    vcore_state,
)

_THREAD = re.compile(r"threads\[(\d+)\]\.(?:kvm_hstate\.)?(\w+)$")
_VCORE = re.compile(r"vcores\[(0x[0-9a-fA-F]+|\d+)\]\.(\w+)$")
_VCPU = re.compile(r"vcpus\[(0x[0-9a-fA-F]+|\d+)\]\.(\w+)$")
DOORBELLS = ("msgsndp", "msgsnd")


# Why an event's host timebase is not known (the shadow's reasons, shorter).
NOT_READ = (
    "the event log does not carry the timebase offset of thread 0's vcore (vcores[].tb_offset; "
    "a log from a plugin that did not watch it)"
)
NOT_RECORDED = "thread 0's vcore has a timebase offset and the kernel does not record whether it is in force"
SWITCHING = "thread 0 is inside its switch of the timebase offset (tb_offset_applied and in_guest disagree)"


def _offset_in_force(vc: dict[str, Any]) -> int | str:
    """The offset thread 0's vcore has on the core's TB, or why it is not known (the rule of
    ``Vcore::offset_in_force``, rust/core/src/view.rs)."""
    if vc.get("tb_offset") is None:
        return NOT_READ
    off = as_int(vc["tb_offset"])
    if vc.get("tb_offset_applied") is None:
        return 0 if off == 0 else NOT_RECORDED
    applied, in_guest = as_int(vc["tb_offset_applied"]), as_int(vc.get("in_guest") or 0)
    if (applied != 0 and in_guest == 0) or (applied == 0 and in_guest != 0 and off != 0):
        return SWITCHING
    return applied


def host_times(numbered: list[tuple[int, dict[str, Any]]]) -> tuple[dict[int, int], tuple[int, str] | None]:
    """Each event's (and end's) ``tb`` on the host's timebase, by line number; and the first
    line whose host timebase is not known, with why (None: every one is placed).  The changes
    of one store (one ``seq``) are converted with the state after all of them, as the shadow
    does; one inside thread 0's switch of the offset is placed at the event before it; the
    end with the state at the end, never before the last event."""
    thread0_vcore = 0
    vcores: dict[int, dict[str, Any]] = {}
    out: dict[int, int] = {}
    pending: list[tuple[int, dict[str, Any]]] = []

    def convert(tb: int) -> int | str:
        if not thread0_vcore:
            return tb
        off = _offset_in_force(vcores.get(thread0_vcore, {}))
        return off if isinstance(off, str) else (tb - off) % 2**64

    last: int | None = None

    def flush() -> tuple[int, str] | None:
        nonlocal last
        for number, ev in pending:
            host = convert(as_int(ev.get("tb")))
            if host == SWITCHING and last is not None:
                host = last  # between its neighbours (the TB is read in the shadow's order)
            if isinstance(host, str):
                return number, host
            out[number] = host
            last = host if last is None else max(last, host)
        pending.clear()
        return None

    for number, ev in numbered:
        if "behind" in ev:
            continue
        new_store = (
            ev.get("end") or "field" not in ev or ev.get("seq") != pending[0][1].get("seq")
            if pending
            else False
        )
        if new_store and (unknown := flush()):
            return out, unknown
        if ev.get("end"):
            host = convert(as_int(ev.get("tb")))
            if host == SWITCHING and last is not None:
                host = last
            if isinstance(host, str):
                return out, (number, host)
            out[number] = host if last is None else max(last, host)
            continue
        pending.append((number, ev))
        name = str(ev.get("field", ""))
        if name == "threads[0].kvm_hstate.kvm_vcore":
            thread0_vcore = as_int(ev.get("new"))
        elif m := _VCORE.match(name):
            vcores.setdefault(as_int(m.group(1)), {})[m.group(2)] = ev.get("new")
    return out, flush()


class _State:
    def __init__(self, tl: Timeline, variant: str | None, freq: int) -> None:
        self.tl = tl
        self.variant = variant
        self.freq = freq
        self.hstate: dict[int, dict[str, Any]] = {}
        self.vcores: dict[int, dict[str, Any]] = {}
        self.vcpu_ids: dict[int, int] = {}
        self.open: dict[str, Mark] = {}
        self.last_ts = 0.0

    def lane(self, cpu: int) -> str:
        return self.tl.lane(f"cpu {cpu}", f"cpu {cpu}", "threads")

    def set_state(self, lane: str, ts: float, state: str, label: str, args: dict[str, Any]) -> None:
        current = self.open.get(lane)
        if current is not None and current.label == label:
            return
        if current is not None:
            current.end = ts
        mark = Mark(lane, ts, state, label, args)
        self.tl.marks.append(mark)
        self.open[lane] = mark

    def redraw_thread(self, cpu: int, ts: float) -> None:
        hs = self.hstate[cpu]
        vcore = self.vcores.get(as_int(hs.get("kvm_vcore")))
        state, label = thread_state(hs, vcore, self.vcpu_ids)
        self.set_state(self.lane(cpu), ts, state, label, dict(hs))

    def finish(self) -> None:
        for mark in self.open.values():
            if mark.end is None:
                mark.end = max(self.last_ts, mark.ts)


def from_events(
    title: str,
    header: dict[str, Any],
    lines: Iterable[tuple[int, dict[str, Any]]],
    *,
    source: str | None = None,
    header_line: int = 1,
) -> Timeline:
    """Build the timeline of an event log whose header line (line ``header_line``) was
    ``header``.  ``source``: the file a bad line is placed in (``FILE:LINE:COLUMN``; default
    the title)."""
    source = source or title
    if as_int(header.get("version", 1)) != 1:
        raise TimelineError(f"{title}: event log version {header.get('version')} is not supported (1 is)")
    freq = as_int(header.get("tb_freq") or 512_000_000)
    numbered = list(lines)
    try:
        ticks = {as_int(ev.get("tb")) for _, ev in numbered if "behind" not in ev and not ev.get("end")}
    except (TypeError, ValueError) as exc:
        raise TimelineError(f"{title}: an event's tb is not a number ({exc})") from None
    # A log whose timebase never advances (a recorder without it) is drawn by event number,
    # as is one where an event's host timebase is not known (the module doc).
    try:
        host, unknown = host_times(numbered)
    except (TypeError, ValueError) as exc:
        raise TimelineError(f"{title}: an event is not usable ({exc})") from None
    by_tb = len(ticks) > 1 and unknown is None
    tl = Timeline("continuous", "us" if by_tb else "event", title)
    if unknown is not None and len(ticks) > 1:
        tl.axis_note = f"drawn by event number: line {unknown[0]}'s host timebase is not known ({unknown[1]})"
    st = _State(tl, header.get("variant"), freq)
    kept: list[dict[str, Any]] = [header]
    kept_lines = [header_line]  # the file's line of each kept object
    ordinal = 0
    for number, ev in numbered:
        kept.append(ev)
        kept_lines.append(number)
        if "behind" in ev:  # fields behind memory at a check: for the replay only
            continue
        ordinal += 1
        try:
            _apply(st, ev, host[number] * 1e6 / freq if by_tb else float(ordinal))
        except (TimelineError, KeyError, TypeError, ValueError) as exc:
            raise TimelineError(f"{at(source, number)}: not a usable event ({exc})") from None
    st.finish()
    _replayed_violations(tl, kept, freq if by_tb else None, source, kept_lines, host if by_tb else None)
    if not tl.marks and not tl.violations:
        raise TimelineError(f"{title}: the event log has no change to draw")
    return tl


def _replayed_violations(
    tl: Timeline,
    lines: list[dict[str, Any]],
    freq: int | None,
    source: str,
    numbers: list[int],
    host: dict[int, int] | None = None,
) -> None:
    """Violations of the shadow checker, replaying the log, where the compiled core has it;
    placed by host timebase (``host``, by file line, from :func:`host_times`: that of the
    violation's store, or of the end for one judged there), or (``freq`` None: drawn by event
    number) at their event's number.
    ``numbers``: the file's line of each of ``lines`` (a line the shadow refuses is placed in
    ``source`` by it; the column of the text replayed is not the file's, and is left out)."""
    from pyvcore import _core

    replay = getattr(_core, "replay_events", None)
    if replay is None or tl.violations:
        return
    try:
        summary = json.loads(replay("\n".join(json.dumps(x) for x in lines)))
    except _core.EventLogError as exc:
        line = numbers[exc.line - 1] if 0 < exc.line <= len(numbers) else None
        raise TimelineError(
            f"{at(source, line)}: the shadow checker refused the log ({exc.reason})"
        ) from None
    stats = summary.get("stats", {})
    total = as_int(stats.get("violations", 0))
    if total > len(summary.get("violations", [])):
        tl.violations_total = total
        tl.violations_per_invariant = {
            as_int(n): as_int(c) for n, c in (stats.get("violations_per_invariant") or {}).items()
        }
    # The event number of each seq (header and read-backs not counted).
    order = {
        x.get("seq"): k for k, x in enumerate((x for x in lines[1:] if "behind" not in x), 1) if "seq" in x
    }
    # Raw and host timebase of each seq (its first line), and the end's host timebase.
    seq_host: dict[Any, tuple[int, int]] = {}
    end_host: int | None = None
    for x, number in zip(lines[1:], numbers[1:]):
        if host is None or number not in host:
            continue
        if x.get("end"):
            end_host = host[number]
        elif "seq" in x:
            seq_host.setdefault(x["seq"], (as_int(x.get("tb")), host[number]))

    def host_ticks(v: dict[str, Any]) -> int:
        raw = as_int(v.get("tb"))
        if host is None:
            return raw
        at_seq = seq_host.get(v.get("seq"))
        if at_seq is not None and at_seq[0] == raw:
            return at_seq[1]
        # Judged at the end of the trace (the liveness bounds): the end's timebase.
        return end_host if end_host is not None else at_seq[1] if at_seq else raw

    for v in summary.get("violations", []):
        tl.violations.append(
            Violation(
                host_ticks(v) * 1e6 / freq if freq else float(order.get(v.get("seq"), 0)),
                as_int(v["invariant"]),
                str(v.get("message", "")),
                f"seq {v.get('seq')}",
            )
        )


def _apply(st: _State, ev: dict[str, Any], ts: float) -> None:
    if ev.get("end"):
        st.last_ts = max(st.last_ts, ts)
        return
    st.last_ts = max(st.last_ts, ts)
    if "invariant" in ev:
        st.tl.violations.append(
            Violation(ts, as_int(ev["invariant"]), str(ev.get("message", "")), f"seq {ev.get('seq')}")
        )
        return
    name = str(ev["field"])
    cpu = as_int(ev.get("cpu"))
    new = ev.get("new")
    if m := _THREAD.match(name):
        owner, member = int(m.group(1)), m.group(2)
        if member in DOORBELLS:
            st.tl.flows.append(
                Flow(
                    "doorbell",
                    st.lane(owner),
                    st.lane(as_int(new)),
                    ts,
                    {"seq": ev.get("seq"), "pc": ev.get("pc")},
                )
            )
            return
        if member == "host_ipi" and as_int(new) and cpu != owner:
            st.tl.flows.append(
                Flow("exit IPI", st.lane(cpu), st.lane(owner), ts, {"seq": ev.get("seq"), "pc": ev.get("pc")})
            )
        if ".kvm_hstate." in name:
            st.hstate.setdefault(owner, {})[member] = new
            st.redraw_thread(owner, ts)
    elif m := _VCORE.match(name):
        addr, member = as_int(m.group(1)), m.group(2)
        vc = st.vcores.setdefault(addr, {"addr": addr})
        vc[member] = new
        lane = st.tl.lane(f"vcore {addr:#x}", f"vcore {addr:#x}", "vcores")
        st.set_state(lane, ts, vcore_state(vc, st.variant), vcore_label(vc, st.variant), dict(vc))
        for thread, hs in st.hstate.items():
            if as_int(hs.get("kvm_vcore")) == addr:
                st.redraw_thread(thread, ts)
    elif (m := _VCPU.match(name)) and m.group(2) == "vcpu_id":
        st.vcpu_ids[as_int(m.group(1))] = as_int(new)
