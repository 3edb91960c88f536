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
    # A log whose timebase never advances (a recorder without it) is drawn by event number.
    by_tb = len(ticks) > 1
    tl = Timeline("continuous", "us" if by_tb else "event", title)
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
            _apply(st, ev, as_int(ev.get("tb")) * 1e6 / freq if by_tb else float(ordinal))
        except (TimelineError, KeyError, TypeError, ValueError) as exc:
            raise TimelineError(f"{at(source, number)}: not a usable event ({exc})") from None
    st.finish()
    _replayed_violations(tl, kept, freq if by_tb else None, source, kept_lines)
    if not tl.marks and not tl.violations:
        raise TimelineError(f"{title}: the event log has no change to draw")
    return tl


def _replayed_violations(
    tl: Timeline, lines: list[dict[str, Any]], freq: int | None, source: str, numbers: list[int]
) -> None:
    """Violations of the shadow checker, replaying the log, where the compiled core has it;
    placed by timebase, or (``freq`` None: drawn by event number) at their event's number.
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
    for v in summary.get("violations", []):
        tl.violations.append(
            Violation(
                as_int(v.get("tb")) * 1e6 / freq if freq else float(order.get(v.get("seq"), 0)),
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
