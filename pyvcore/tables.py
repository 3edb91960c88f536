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

GREEN, RED, YELLOW, DIM, RESET = "\033[32m", "\033[31m", "\033[33m", "\033[2m", "\033[0m"


class Style:
    def __init__(self, colour: bool):
        self.colour = colour

    def __call__(self, text: str, code: str) -> str:
        return f"{code}{text}{RESET}" if self.colour else text


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


def paca_table(k: KernelLayout, reading: Reading, cpus: Iterable[int] | None = None) -> str:
    """xmon-style dump: one column per thread, offsets within paca_struct on the left."""
    rows = [r for r in reading.rows if cpus is None or r.cpu in set(cpus)]
    hs_off = k.paca.field("kvm_hstate").offset
    offsets = k.paca_plan.offsets()
    lines = [
        f"paca_struct.kvm_hstate at +{hs_off:#x} ({k.hstate.size} bytes); "
        f"layouts from {k.layouts.origin}, variant {k.variant}"
    ]
    width = 30
    head = f"{'offset':>7}  {'field':<16}"
    for r in rows:
        label = f"cpu {r.cpu}" if r.cpu is not None else "cpu ?"
        head += f"{label + ' (thread ' + str(r.regs.gdb_thread) + ')':<{width}}"
    lines.append(head)

    def line(off: str, name: str, values: list[str]) -> None:
        lines.append(f"{off:>7}  {name:<16}" + "".join(f"{v:<{width}}" for v in values))

    line("", "paca", [hexptr(r.paca) for r in rows])
    line(
        f"{offsets.get('hw_cpu_id', 0):#x}",
        "hw_cpu_id",
        [hexptr(r.fields.get("hw_cpu_id")) if r.fields else "?" for r in rows],
    )
    line("", "$pir", [hexptr(r.regs.pir) for r in rows])
    line("", "mode (MSR)", [f"{r.regs.mode} {hexptr(r.regs.msr)}" for r in rows])
    line("", "$pc", [hexptr(r.regs.pc) for r in rows])
    line("", "$lpidr", [hexptr(r.regs.lpidr) for r in rows])
    line("", "$sdr1", [hexptr(r.regs.sdr1) for r in rows])
    if any(r.regs.hdec is not None for r in rows):
        line("", "$hdec", [hexptr(r.regs.hdec) for r in rows])
    table: dict[str, list[str]] = {}
    names: list[str] = []
    for r in rows:
        if r.fields:
            for name, _value in _hstate_rows(k, r, reading):
                if f"kvm_hstate.{name}" not in offsets:
                    continue
                if name not in table:
                    names.append(name)
                table.setdefault(name, [])
    for name in names:
        values = []
        for r in rows:
            if not r.fields:
                values.append(r.error or "?")
                continue
            values.append(dict(_hstate_rows(k, r, reading))[name])
        line(f"{offsets[f'kvm_hstate.{name}']:#x}", name, values)
    for r in rows:
        if r.error:
            lines.append(f"cpu {r.cpu if r.cpu is not None else '?'} (thread {r.regs.gdb_thread}): {r.error}")
    return "\n".join(lines)


def paca_list(k: KernelLayout, row: ThreadRow, reading: Reading) -> str:
    """One thread, xmon `dp` style: name = value (offset)."""
    offsets = k.paca_plan.offsets()
    lines = [f"paca for cpu {row.cpu} (gdb thread {row.regs.gdb_thread}) at {hexptr(row.paca)}:"]
    lines.append(
        f" {'hw_cpu_id':<26}= {hexptr(row.fields.get('hw_cpu_id'))}  ({offsets.get('hw_cpu_id', 0):#x})"
    )
    lines.append(f" {'mode':<26}= {row.regs.mode} (msr {hexptr(row.regs.msr)}, pc {hexptr(row.regs.pc)})")
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


def entry_exit_text(k: KernelLayout, value: int) -> str:
    if k.entry_exit == "entry_exit_map":
        text = (
            f"entry_exit_map {value:#x}: entered {thread_list(value & 0xFF)} "
            f"exiting {thread_list((value >> 8) & 0xFF)}"
        )
        if value & 0x10000:
            text += " EXIT_REQ"
        return text
    return f"entry_exit_count {value:#x}: entered {value & 0xFF}, exiting {value >> 8}"


def vcore_text(
    k: KernelLayout,
    addr: int,
    vc: dict[str, Any],
    reading: Reading,
    vcpus: dict[int, dict[str, Any]] | None = None,
) -> str:
    """One vcore, decoded, with the vcpus that point at it and the threads that run them."""
    states = VCORE_STATES[k.variant]
    kvm = vc.get("kvm")
    kvm_fields = reading.kvm.get(kvm) if kvm else None
    lines = [
        f"vcore {addr:#x}  kvm {hexptr(kvm)}"
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
    lines.append(f"  {entry_exit_text(k, int(vc.get(k.entry_exit, 0)))}")
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
            on_thread[int(r.hstate("kvm_vcpu"))] = r.cpu
    mine = {a: v for a, v in (vcpus or reading.vcpus).items() if v.get("arch.vcore") == addr}
    if mine:
        lines.append(
            f"  {'vcpu':>4} {'ptid':>4} {'addr':<20} {'cpu':>4} {'thread_cpu':>10} "
            f"{'state':<13} {'ceded':>5}  on thread"
        )
        for a, v in sorted(mine.items(), key=lambda kv: kv[1].get("vcpu_id", 0)):
            lines.append(
                f"  {v.get('vcpu_id'):>4} {v.get('arch.ptid'):>4} {a:#x} {v.get('cpu'):>4} "
                f"{v.get('arch.thread_cpu', '-')!s:>10} "
                f"{name_of(VCPU_STATES, v.get('arch.state')):<13} {v.get('arch.ceded', '-')!s:>5}"
                f"  {'cpu ' + str(on_thread[a]) if a in on_thread else '-'}"
            )
    else:
        lines.append("  (no vcpu of this vcore is reachable from a PACA or the vcore)")
    return "\n".join(lines)


def check_table(
    reading: Reading, predicted: list[dict[str, Any]] | None, violations: list[Any], style: Style
) -> str:
    """Side by side per thread: what the kernel has vs what the model predicts."""
    snap = reading.snapshot
    lines = [f"{'cpu':>3}  {'actual ptid/kvm_vcpu/kvm_vcore':<46}  {'predicted':<46}"]
    for i, t in enumerate(snap["threads"]):
        hs = t["kvm_hstate"]
        actual = f"{hs['ptid']} / {_vcpu_label(hs['kvm_vcpu'], reading)} / {hexptr(hs['kvm_vcore'])}"
        if predicted is not None and i < len(predicted):
            p = predicted[i]
            pp = p.get("kvm_hstate", p)
            ptid = pp.get("ptid", "-")
            pred = (
                f"{'-' if ptid is None else ptid} / "
                f"{_vcpu_label(pp.get('kvm_vcpu') or 0, reading)} / {hexptr(pp.get('kvm_vcore'))}"
            )
            same = all(
                pp.get(key) in (None, hs[key]) for key in ("ptid", "kvm_vcpu", "kvm_vcore") if key in pp
            )
            mark = style("ok", GREEN) if same else style("DIFF", RED)
        else:
            pred, mark = "(no prediction)", ""
        lines.append(f"{t['cpu']:>3}  {actual:<46}  {pred:<46} {mark}")
    if violations:
        for v in violations:
            inv = getattr(v, "invariant", None)
            msg = getattr(v, "message", str(v))
            lines.append(style(f"violated invariant {inv}: {msg}", RED))
    else:
        lines.append(style(f"no invariant violated ({snap['variant']})", GREEN))
    return "\n".join(lines)
