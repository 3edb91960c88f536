"""Continuous event logs (``pyvcore trace``) into a :class:`pyvcore.timeline.Timeline`.

Every store was seen, so each lane is a run of slices: a state holds from the
store that made it to the next store that changed it.  See the module doc of
:mod:`pyvcore.timeline` for the fields this reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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

# Stores that send something to another thread: the doorbell instructions
# (msgsndp: a thread of this core, msgsnd: any cpu) and the exit IPI the
# kernel raises by setting the target's kvm_hstate.host_ipi (book3s_hv.c:
# kvmppc_ipi_thread / kvmhv_interrupt_vcore, via the XICS/ICP).
FLOW_FIELDS = {
    "msgsndp": "doorbell",
    "msgsnd": "doorbell",
    "host_ipi": "exit IPI",
    "kvm_hstate.host_ipi": "exit IPI",
}


class _State:
    def __init__(self, tl: Timeline, variant: str | None) -> None:
        self.tl = tl
        self.variant = variant
        self.hstate: dict[int, dict[str, Any]] = {}
        self.vcores: dict[int, dict[str, Any]] = {}
        self.vcore_of: dict[int, int] = {}
        self.open: dict[str, Mark] = {}
        self.last_ts = 0.0

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
        state, label = thread_state(hs, vcore, {})
        lane = self.tl.lane(f"cpu {cpu}", f"cpu {cpu}", "threads")
        self.set_state(lane, ts, state, label, {k: v for k, v in hs.items() if not isinstance(v, dict)})

    def finish(self) -> None:
        for mark in self.open.values():
            if mark.end is None:
                mark.end = max(self.last_ts, mark.ts)


def from_events(title: str, header: dict[str, Any], lines: Iterable[tuple[int, dict[str, Any]]]) -> Timeline:
    """Build the timeline of an event log whose header line was ``header``."""
    if as_int(header.get("version", 1)) != 1:
        raise TimelineError(f"{title}: event log version {header.get('version')} is not supported (1 is)")
    freq = as_int(header.get("tb_freq") or 512_000_000)
    tl = Timeline("continuous", "us", title)
    st = _State(tl, header.get("variant"))
    for number, ev in lines:
        try:
            _apply(st, ev, as_int(ev.get("tb")) * 1e6 / freq)
        except (TimelineError, KeyError, TypeError, ValueError) as exc:
            raise TimelineError(f"{title}:{number}: not a usable event ({exc})") from None
    st.finish()
    if not tl.marks and not tl.violations:
        raise TimelineError(f"{title}: the event log has no store to draw")
    return tl


def _apply(st: _State, ev: dict[str, Any], ts: float) -> None:
    st.last_ts = max(st.last_ts, ts)
    if "invariant" in ev:
        st.tl.violations.append(
            Violation(ts, as_int(ev["invariant"]), str(ev.get("message", "")), str(ev.get("seq", "")))
        )
        return
    name = str(ev["field"])
    cpu = as_int(ev.get("cpu"))
    # The PACA a kvm_hstate store went to: "target" when another thread stored
    # into it (host_ipi is set by the sender), else the storing thread's own.
    owner = as_int(ev.get("target", cpu))
    if name in FLOW_FIELDS and as_int(ev.get("new")):
        dst = as_int(ev.get("new")) if name in ("msgsndp", "msgsnd") else owner
        if dst != cpu or name in ("msgsndp", "msgsnd"):
            src_lane = st.tl.lane(f"cpu {cpu}", f"cpu {cpu}", "threads")
            dst_lane = st.tl.lane(f"cpu {dst}", f"cpu {dst}", "threads")
            st.tl.flows.append(
                Flow(FLOW_FIELDS[name], src_lane, dst_lane, ts, {"seq": ev.get("seq"), "pc": ev.get("pc")})
            )
    if name in ("msgsndp", "msgsnd"):
        return
    group, _, member = name.partition(".")
    if group in ("kvm_hstate", "hstate", "paca") and member:
        member = member.rsplit(".", 1)[-1]
        st.hstate.setdefault(owner, {})[member] = ev.get("new")
        st.redraw_thread(owner, ts)
    elif group in ("vcore", "kvmppc_vcore") and member:
        addr = as_int(ev.get("vcore", 0))
        vc = st.vcores.setdefault(addr, {"addr": addr})
        vc[member] = ev.get("new")
        lane = st.tl.lane(f"vcore {addr:#x}", f"vcore {addr:#x}", "vcores")
        st.set_state(lane, ts, vcore_state(vc, st.variant), vcore_label(vc, st.variant), dict(vc))
        for thread, hs in st.hstate.items():
            if as_int(hs.get("kvm_vcore")) == addr:
                st.redraw_thread(thread, ts)
