"""Edge coverage: the state changes the real kernel made vs the model's.

An edge is ``(field, old -> new)`` for one watched field kind (``kvm_hstate.in_guest``,
``vcore.vcore_state``, ``vcore.entry_exit_map``, ``vcpu.cpu``...), values abstracted the
way the shadow does it (pointers as NULL/ptr).  The kernel's edges come from the
plugin's summary, each with the kernel functions whose stores made it; the model's
come from a breadth-first walk of :class:`pyvcore.Vcore` over the scenario's vcpus
(one run, every interleaving up to a bound), diffing consecutive snapshots.

Two gap kinds: ``kernel only`` (the kernel took it, the model cannot: a model gap)
and ``model only`` (the model can, the kernel never did in this scenario: a missing
scenario or hook).
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterable
from typing import Any

# Snapshot keys -> shadow field kinds (the shadow's names, pyvcore_core::shadow::field).
HSTATE = ("in_guest", "napping", "hwthread_req", "hwthread_state", "ptid", "kvm_vcpu", "kvm_vcore")
VCORE = (
    "n_runnable",
    "num_threads",
    "entry_exit_map",
    "entry_exit_count",
    "napping_threads",
    "first_vcpuid",
    "pcpu",
    "vcore_state",
    "in_guest",
    "runner",
)
VCPU = ("vcpu_id", "cpu", "vcore", "ptid", "thread_cpu", "state", "ceded")
POINTERS = {"kvm_hstate.kvm_vcpu", "kvm_hstate.kvm_vcore", "vcore.runner", "vcpu.vcore"}
HEX = {"vcore.entry_exit_map", "vcore.entry_exit_count", "vcore.napping_threads"}
# Fields only the kernel has (boot, registers): not compared.
NOT_MODELLED_PREFIXES = ("paca_ptrs", "lpidr", "sdr1", "dpdes", "mtspr_", "msgsnd")

Edge = tuple[str, str, str]


def label(kind: str, value: Any) -> str:
    """A value as the shadow labels it in an edge."""
    v = int(value, 0) if isinstance(value, str) else int(value or 0)
    if kind in POINTERS:
        return "NULL" if v == 0 else "ptr"
    if kind in HEX:
        return hex(v)
    return str(v)


def _fields(snap: dict[str, Any]) -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for i, t in enumerate(snap.get("threads", [])):
        for f in HSTATE:
            out[(f"t{i}", f"kvm_hstate.{f}")] = t["kvm_hstate"].get(f)
    for vc in snap.get("vcores", []):
        for f in VCORE:
            if vc.get(f) is not None:
                out[(f"vc{vc['addr']}", f"vcore.{f}")] = vc[f]
    for c in snap.get("vcpus", []):
        for f in VCPU:
            if c.get(f) is not None:
                out[(f"c{c['addr']}", f"vcpu.{f}")] = c[f]
    return out


def model_edges(variant: str, threads: int, vcpus: list[int], max_states: int = 4000) -> set[Edge]:
    """Every field edge of the model over one run of ``vcpus`` on ``threads`` threads.

    Breadth first from vcpu creation, states deduplicated by snapshot, at most
    ``max_states`` states (the bound is reported with the table)."""
    import pyvcore

    start = pyvcore.Vcore(variant, threads=threads, vcpus=vcpus)
    seen: set[str] = set()
    edges: set[Edge] = set()
    queue = deque([start])
    while queue and len(seen) < max_states:
        m = queue.popleft()
        before = _fields(m.snapshot())
        for ev in m.enabled():
            if ev.startswith("doorbell"):
                continue
            nxt = m.copy()
            try:
                nxt.apply(ev)
            except Exception:  # an event the model refuses here: not an edge
                continue
            snap = nxt.snapshot()
            after = _fields(snap)
            for key, new in after.items():
                old = before.get(key, new)
                if old != new:
                    edges.add((key[1], label(key[1], old), label(key[1], new)))
            sig = repr(sorted(after.items()))
            if sig not in seen:
                seen.add(sig)
                queue.append(nxt)
    return edges


def kernel_edges(summary: dict[str, Any]) -> dict[Edge, list[str]]:
    """The kernel's edges from a plugin summary -> the functions that made them."""
    out: dict[Edge, list[str]] = {}
    for e in summary.get("edges", []):
        if e["field"].startswith(NOT_MODELLED_PREFIXES) or e["field"] in (
            "paca_ptrs[]",
            "kvm_hstate.host_ipi",
            "vcpu.trap",  # watched for invariant 45 only; the model has no traps
            # watched to put each event's tb on the host's timebase (41-43); the model's
            # vcore keeps whether the offset is in force, not the offset
            "vcore.tb_offset",
            "vcore.tb_offset_applied",
        ):
            continue
        key = (e["field"], e["old"], e["new"])
        fns = out.setdefault(key, [])
        name = e.get("fn") or e["pc"]
        if name not in fns:
            fns.append(name)
    return out


def compare(kernel: dict[Edge, list[str]], model: set[Edge]) -> list[dict[str, Any]]:
    """One row per edge: field, old, new, where (kernel, model, both), kernel functions,
    and for an edge on one side only ``gap``: what it is, with the kernel code that makes
    it (:func:`pyvcore.trace_gaps.explain`)."""
    from pyvcore.trace_gaps import explain

    rows = []
    for edge in sorted(set(kernel) | model):
        where = (
            "both"
            if edge in kernel and edge in model
            else ("kernel only" if edge in kernel else "model only")
        )
        rows.append(
            {
                "field": edge[0],
                "old": edge[1],
                "new": edge[2],
                "where": where,
                "functions": kernel.get(edge, []),
                "gap": None if (g := explain(*edge, where)) is None else str(g),
            }
        )
    return rows


def refute_prepatch(lines: Iterable[str]) -> dict[str, Any] | None:
    """The first real-kernel event the ``prepatch`` variant cannot produce, or None.

    Before "Align physical and virtual CPU thread numbers" (e0b7ec058c0e) a run gave
    its runnable vcpus ptids 0, 1, 2... in the order they were taken, so no vcpu
    was ever placed on a thread at or above the vcore's ``n_runnable``.  The real
    kernel places vcpu N on thread N: a store of a vcpu pointer into
    ``threads[T].kvm_hstate.kvm_vcpu`` with T >= n_runnable (``novcpu0``: vcpu 1
    alone goes to thread 1; ``sparse``: vcpu 3 to thread 3) refutes ``prepatch``."""
    n_runnable: dict[str, int] = {}
    vcpu_vcore: dict[str, str] = {}
    vcpu_id: dict[str, int] = {}
    pending: list[dict[str, Any]] = []

    def judge(batch: list[dict[str, Any]]) -> dict[str, Any] | None:
        for e in batch:
            m = re.fullmatch(r"threads\[(\d+)\]\.kvm_hstate\.kvm_vcpu", e["field"])
            new = str(e["new"])
            if not m or int(new, 0) == 0:
                continue
            vc = vcpu_vcore.get(hex(int(new, 0)))
            runnable = n_runnable.get(vc or "")
            thread = int(m.group(1))
            if runnable is not None and thread >= runnable:
                return {
                    **e,
                    "thread": thread,
                    "n_runnable": runnable,
                    "vcpu_id": vcpu_id.get(hex(int(new, 0))),
                }
        return None

    for line in lines:
        e = json.loads(line)
        if "field" not in e:
            continue
        if pending and pending[0]["seq"] != e["seq"]:
            if found := judge(pending):
                return found
            pending = []
        pending.append(e)
        f = e["field"]
        if m := re.fullmatch(r"vcores\[(0x[0-9a-f]+)\]\.n_runnable", f):
            n_runnable[hex(int(m.group(1), 16))] = int(e["new"])
        elif m := re.fullmatch(r"vcpus\[(0x[0-9a-f]+)\]\.vcore", f):
            vcpu_vcore[hex(int(m.group(1), 16))] = hex(int(str(e["new"]), 0))
        elif m := re.fullmatch(r"vcpus\[(0x[0-9a-f]+)\]\.vcpu_id", f):
            vcpu_id[hex(int(m.group(1), 16))] = int(e["new"])
    return judge(pending) if pending else None
