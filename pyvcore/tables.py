"""The tables of a :class:`pyvcore.decode.Reading` (what pv-paca, pv-vcore and
pv-check print), built with :mod:`pyvcore.render`.  Pure Python, so the layout
of the output is unit-tested without gdb."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pyvcore.decode import (
    GUEST_MODES,
    HWTHREAD_STATES,
    NAPPING,
    VCORE_STATES,
    VCPU_STATES,
    KernelLayout,
    Reading,
    ThreadRow,
    name_of,
    thread_list,
)
from pyvcore.ppc64 import entry_exit_text
from pyvcore.render import render_table, wrap
from pyvcore.stopview import Names


def hexptr(value: Any) -> str:
    if value is None:
        return "?"
    return "0" if int(value) == 0 else f"{int(value):#x}"


def _vcpu_label(addr: int, reading: Reading, vcpus: dict[int, dict[str, Any]] | None = None) -> str:
    if not addr:
        return "0"
    v = (vcpus or reading.vcpus).get(addr)
    return f"{addr:#x} (vcpu {v['vcpu_id']})" if v else hexptr(addr)


def _hstate_rows(k: KernelLayout, row: ThreadRow, reading: Reading) -> list[tuple[str, str]]:
    """(field, value) for one thread's kvm_hstate, in declaration order."""
    variant = k.variant
    v = row.hstate
    return [
        ("in_guest", f"{v('in_guest')} {name_of(GUEST_MODES, v('in_guest'))}"),
        ("napping", f"{v('napping')} {name_of(NAPPING, v('napping'))}"),
        ("hwthread_req", str(v("hwthread_req"))),
        ("hwthread_state", f"{v('hwthread_state')} {name_of(HWTHREAD_STATES[variant], v('hwthread_state'))}"),
        ("host_ipi", str(v("host_ipi"))),
        ("ptid", str(v("ptid"))),
        ("fake_suspend", str(v("fake_suspend"))),
        ("kvm_vcpu", _vcpu_label(v("kvm_vcpu") or 0, reading)),
        ("kvm_vcore", hexptr(v("kvm_vcore"))),
        ("kvm_split_mode", hexptr(v("kvm_split_mode"))),
    ]


def thread_index(reading: Reading, row: ThreadRow) -> str:
    """``t<i>``: the row's hardware thread in its core (its place in the snapshot)."""
    for i, t in enumerate(reading.snapshot.get("threads") or []):
        if row.cpu is not None and t.get("cpu") == row.cpu:
            return f"t{i}"
    return "t?"


PACA_FIELDS = (  # in struct kvmppc_host_state order (arch/powerpc/include/asm/kvm_book3s_asm.h)
    ("in_guest", "in_guest"),
    ("napping", "napping"),
    ("hwthread_req", "req"),
    ("hwthread_state", "hwthread_state"),
    ("ptid", "ptid"),
    ("kvm_vcpu", "vcpu"),
    ("kvm_vcore", "vcore"),
)


def paca_table(
    k: KernelLayout, reading: Reading, cpus: Iterable[int] | None = None, *, width: int | None = None
) -> str:
    """pv-paca: one row per hardware thread, the kvm_hstate fields of the vcore logic
    (offsets inside paca_struct under each name), then the thread's registers.

    Fits 80 columns at 4 and 8 threads; ``pv-paca CPU`` lists every field of one cpu."""
    rows = [r for r in reading.rows if cpus is None or r.cpu in set(cpus)]
    names = Names.of(reading.snapshot)
    offsets = k.paca_plan.offsets()
    hs_off = k.paca.field("kvm_hstate").offset
    fields = [(f, short) for f, short in PACA_FIELDS if f"kvm_hstate.{f}" in offsets]
    columns = ["cpu", "t", "pir"] + [f"{short}\n{offsets[f'kvm_hstate.{f}']:#x}" for f, short in fields]
    body = []
    for r in rows:
        label = ["?" if r.cpu is None else r.cpu, thread_index(reading, r), hexptr(r.regs.pir)]
        if not r.fields:
            body.append(label + [r.error or "?"] + [""] * (len(fields) - 1))
            continue
        values = dict(_hstate_rows(k, r, reading))
        values["kvm_vcpu"] = names.vcpu(r.hstate("kvm_vcpu") or 0)
        values["kvm_vcore"] = names.vcore(r.hstate("kvm_vcore") or 0)
        for f in ("in_guest", "napping", "hwthread_state"):
            values[f] = values[f].split(" ", 1)[-1]
        body.append(label + [values[f] for f, _ in fields])
    vcores = ", ".join(f"{n} = {a:#x}" for a, n in names.vcores.items())
    title = (
        f"paca_struct.kvm_hstate at +{hs_off:#x} ({k.hstate.size} bytes, offsets below the names); "
        f"layouts from {k.layouts.origin}, variant {k.variant}" + (f"; {vcores}" if vcores else "")
    )
    regs = [
        [
            "?" if r.cpu is None else r.cpu,
            thread_index(reading, r),
            r.regs.mode,
            hexptr(r.regs.pc),
            hexptr(r.regs.lpidr),
            hexptr(r.regs.sdr1),
            hexptr(r.regs.hdec) if r.regs.hdec is not None else "-",
        ]
        for r in rows
    ]
    out = [
        render_table(columns, body, width=width, title=title),
        render_table(["cpu", "t", "mode", "$pc", "$lpidr", "$sdr1", "$hdec"], regs, width=width),
    ]
    for r in rows:
        if r.error:
            out.append(
                wrap(
                    f"cpu {r.cpu if r.cpu is not None else '?'} (gdb thread {r.regs.gdb_thread}): {r.error}",
                    width,
                )
            )
    return "\n".join(out)


def paca_list(k: KernelLayout, row: ThreadRow, reading: Reading) -> str:
    """One thread, xmon `dp` style: name = value (offset)."""
    offsets = k.paca_plan.offsets()
    lines = [f"paca for cpu {row.cpu} (gdb thread {row.regs.gdb_thread}) at {hexptr(row.paca)}:"]
    lines.append(
        f" {'hw_cpu_id':<26}= {hexptr(row.fields.get('hw_cpu_id'))}  ({offsets.get('hw_cpu_id', 0):#x})"
    )
    lines.append(f" {'mode (MSR)':<26}= {row.regs.mode} {hexptr(row.regs.msr)}")
    lines.append(f" {'$pc':<26}= {hexptr(row.regs.pc)}")
    lines.append(f" {'lpidr / sdr1':<26}= {hexptr(row.regs.lpidr)} / {hexptr(row.regs.sdr1)}")
    if row.regs.hdec is not None:
        lines.append(f" {'hdec':<26}= {hexptr(row.regs.hdec)}")
    for name, value in _hstate_rows(k, row, reading):
        path = f"kvm_hstate.{name}"
        if path in offsets:
            lines.append(f" {path:<26}= {value:<30} ({offsets[path]:#x})")
    if row.error:
        lines.append(f" error: {row.error}")
    return "\n".join(lines)


def vcore_numbers(vcores: dict[int, dict[str, Any]], kvm: dict[int, dict[str, Any]]) -> list[int]:
    """vcore addresses in their stable order (``vc0``, ``vc1``...): by VM (its LPID,
    then the struct kvm address), then by first_vcpuid (the vcore id times the
    vcpus per vcore, kvmppc_vcore_create() in book3s_hv.c)."""

    def key(item: tuple[int, dict[str, Any]]) -> tuple[int, int, int]:
        _, vc = item
        vm = vc.get("kvm") or 0
        lpid = (kvm.get(vm) or {}).get("arch.lpid")
        return (lpid if lpid is not None else 1 << 32, vm, int(vc.get("first_vcpuid") or 0))

    return [addr for addr, _ in sorted(vcores.items(), key=key)]


def vcore_text(
    k: KernelLayout,
    addr: int,
    vc: dict[str, Any],
    reading: Reading,
    vcpus: dict[int, dict[str, Any]] | None = None,
    *,
    number: int | None = None,
    width: int | None = None,
) -> str:
    """One vcore, decoded, with the vcpus that point at it and the threads that run them."""
    states = VCORE_STATES[k.variant]
    kvm = vc.get("kvm")
    kvm_fields = reading.kvm.get(kvm) if kvm else None
    lines = [
        (f"vc{number} " if number is not None else "")
        + f"vcore {addr:#x}  kvm {hexptr(kvm)}"
        + (f" (lpid {kvm_fields.get('arch.lpid')})" if kvm_fields else "")
    ]
    lines.append(
        f"  vcore_state {vc.get('vcore_state')} {name_of(states, vc.get('vcore_state'))}"
        f"  in_guest {vc.get('in_guest')}  pcpu {vc.get('pcpu')}"
        f"  first_vcpuid {vc.get('first_vcpuid')}"
    )
    lines.append(
        f"  n_runnable {vc.get('n_runnable')}  num_threads {vc.get('num_threads')}"
        f"  runner {_vcpu_label(vc.get('runner') or 0, reading, vcpus)}"
    )
    lines.append(f"  {entry_exit_text(k.entry_exit, int(vc.get(k.entry_exit, 0)))}")
    lines.append(
        f"  napping_threads {thread_list(int(vc.get('napping_threads', 0)))}"
        + (
            f"  n_woken {vc['n_woken']}  nap_count {vc['nap_count']}"
            if "n_woken" in vc and "nap_count" in vc
            else ""
        )
    )
    on_thread = {}
    for r in reading.rows:
        if r.fields and r.hstate("kvm_vcpu"):
            on_thread[int(r.hstate("kvm_vcpu"))] = f"cpu {r.cpu} / {thread_index(reading, r)}"
    mine = {a: v for a, v in (vcpus or reading.vcpus).items() if v.get("arch.vcore") == addr}
    if not mine:
        lines.append("  (no vcpu of this vcore is reachable from a PACA or the vcore)")
        return wrap("\n".join(lines), width, indent="    ")
    rows = [
        [
            v.get("vcpu_id"),
            v.get("arch.ptid"),
            f"{a:#x}",
            v.get("cpu"),
            v.get("arch.thread_cpu", "-"),
            name_of(VCPU_STATES, v.get("arch.state")),
            v.get("arch.ceded", "-"),
            on_thread.get(a, "-"),
        ]
        for a, v in sorted(mine.items(), key=lambda kv: kv[1].get("vcpu_id", 0))
    ]
    table = render_table(
        ["vcpu", "ptid", "addr", "cpu", "thread_cpu", "state", "ceded", "in PACA of"], rows, width=width
    )
    return wrap("\n".join(lines), width, indent="    ") + "\n" + table
