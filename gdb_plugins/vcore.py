"""pv-vcore and $pv_vcore: every vcore of every VM, decoded."""

from __future__ import annotations

import contextlib
from typing import Any

import gdb  # type: ignore[import-not-found]

from pyvcore import tables, walk
from pyvcore.decode import ReadError, is_kernel_pointer
from pyvcore.layout import LayoutError
from pyvcore.render import wrap

from . import check, session
from .args import ArgParser
from .paca import one_argument, typed_pointer
from .session import PvError


def all_vcores(k: session.Kernel, target: session.GdbTarget, reading: Any) -> dict[int, dict]:
    """vcores reachable from the PACAs plus every kvm->arch.vcores[] of each VM seen.

    VMs are those the vcores point at, and with kvm.ko symbols loaded every VM
    on `vm_list` (struct kvm lives in vmalloc space: read through a host-mode
    thread, or the kernel page table when no thread is in host mode)."""
    vcores = dict(reading.vcores)
    kvms = set(reading.kvm)
    L, order = k.layouts, k.layout.order
    if not L.has_struct("kvm"):
        return vcores
    head = k.symbol("vm_list")
    if head is not None:
        try:
            kvms.update(walk.vm_list(target, L, head, order))
        except (ReadError, walk.WalkError) as e:
            reading.problems.append(f"vm_list unreadable: {e}")
    for kvm in sorted(kvms):
        try:
            found = walk.kvm_vcores(target, L, kvm, order)
        except (ReadError, walk.WalkError) as e:
            reading.problems.append(f"kvm {kvm:#x}: arch.vcores[] unreadable: {e}")
            continue
        for i, p in found.items():
            if p not in vcores:
                try:
                    vcores[p] = k.reader.read_vcore(target, p)
                except ReadError as e:
                    reading.problems.append(f"kvm {kvm:#x}: vcores[{i}] {p:#x} unreadable: {e.why}")
        if kvm not in reading.kvm:
            with contextlib.suppress(ReadError):
                reading.kvm[kvm] = k.reader.read_kvm(target, kvm)
    return vcores


def vcpus_of(
    k: session.Kernel, target: session.GdbTarget, vcores: dict[int, dict], reading: Any
) -> dict[int, dict]:
    """Known vcpus, the runner and runnable_threads[] of every vcore, and every
    vcpu of each VM seen (so a vcpu that is not running shows up too)."""
    vcpus = dict(reading.vcpus)
    wanted: list[int] = []
    for vc in vcores.values():
        wanted += [vc.get("runner") or 0, *(vc.get("runnable_threads") or [])]
    for kvm in sorted({vc.get("kvm") for vc in vcores.values() if vc.get("kvm")}):
        if not kvm_layout_known(k):
            break
        try:
            wanted += walk.kvm_vcpus(target, k.layouts, kvm, k.layout.order)
        except (ReadError, LayoutError, walk.WalkError) as e:
            reading.problems.append(f"kvm {kvm:#x}: vcpu list unreadable: {e}")
    for p in wanted:
        if p and p not in vcpus and is_kernel_pointer(p):
            try:
                vcpus[p] = k.reader.read_vcpu(target, p)
            except ReadError as e:
                reading.problems.append(f"vcpu {p:#x} unreadable: {e.why}")
    return vcpus


def kvm_layout_known(k: session.Kernel) -> bool:
    return k.layouts.has_struct("kvm")


def gather(with_all: bool) -> tuple[session.Kernel, Any, dict[int, dict], dict[int, dict]]:
    k = session.kernel()
    with session.GdbTarget() as target:
        regs = session.prepare(target, k)
        try:
            reading = k.reader.read(target, regs)
        except Exception as e:  # KernelError / ReadError: one line
            raise PvError(f"pyvcore: {e}") from None
        vcores = all_vcores(k, target, reading) if with_all else dict(reading.vcores)
        vcpus = vcpus_of(k, target, vcores, reading)
    return k, reading, vcores, vcpus


class PvVcore(gdb.Command):
    """Show the KVM virtual cores (struct kvmppc_vcore) with their vcpus, decoded.

    Usage: pv-vcore [N|ADDR|all]

      all (default)  every vcore reachable from a PACA's kvm_hstate.kvm_vcore, and
                     every kvm->arch.vcores[] entry of each VM found (from those
                     vcores' kvm pointer, and from vm_list when kvm.ko symbols are
                     loaded), numbered vc0, vc1... by VM (LPID) and first_vcpuid.
      N              vcore number N of that list (the same N as $pv_vcore(N)).
      ADDR           the vcore at that kernel address (an expression).

    States are printed by name (vcore_state, vcpu arch.state), entry_exit_map and
    napping_threads as ptid lists, each vcpu with the thread (cpu / t) whose PACA
    points at it.

    Examples:
      pv-vcore
      pv-vcore 0
      pv-vcore $pv_vcore(0)"""

    def __init__(self) -> None:
        super().__init__("pv-vcore", gdb.COMMAND_DATA, gdb.COMPLETE_EXPRESSION)

    def invoke(self, arg: str, from_tty: bool) -> None:
        p = ArgParser("pv-vcore")
        p.add_argument("which", nargs="?", default="all")
        a = p.parse(arg)
        k, reading, vcores, vcpus = gather(with_all=True)
        order = tables.vcore_numbers(vcores, reading.kvm)
        if a.which != "all":
            try:
                value = int(gdb.parse_and_eval(a.which)) & 0xFFFF_FFFF_FFFF_FFFF
            except gdb.error as e:
                raise PvError(f"pv-vcore: {e}") from None
            if is_kernel_pointer(value):
                addr = value
                if addr not in vcores:
                    with session.GdbTarget() as target:
                        session.prepare(target, k)
                        try:
                            vcores = {addr: k.reader.read_vcore(target, addr)}
                        except ReadError as e:
                            raise PvError(f"pv-vcore: struct kvmppc_vcore at {addr:#x}: {e}") from None
                        vcpus = vcpus_of(k, target, vcores, reading)
            elif value < len(order):
                addr = order[value]
            else:
                raise PvError(
                    f"pv-vcore: no vcore {value} ({len(order)} found: 0..{len(order) - 1}); "
                    f"a number is an index, a kernel address (0xc...) a struct kvmppc_vcore"
                )
            vcores = {addr: vcores[addr]}
        if not vcores:
            hint = (
                "is a KVM guest running? is kvm-hv loaded?"
                if k.symbol("vm_list") is not None
                else "load kvm.ko symbols (add-symbol-file, or `pyvcore gdb`) to find VMs "
                "through vm_list when no thread is running one"
            )
            gdb.write(f"pv-vcore: no vcore: no PACA points at one and no VM was found ({hint})\n")
        width = check.terminal_width()
        for addr in sorted(vcores, key=lambda a: order.index(a) if a in order else len(order)):
            number = order.index(addr) if addr in order else None
            text = tables.vcore_text(k.layout, addr, vcores[addr], reading, vcpus, number=number, width=width)
            gdb.write(text + "\n")
        for problem in reading.problems:
            gdb.write(wrap(f"pv-vcore: {problem}", check.terminal_width(), indent="    ") + "\n")


class PvVcoreFunction(gdb.Function):
    """$pv_vcore(N): vcore number N of `pv-vcore` (vc0, vc1...: by VM LPID, then first_vcpuid).

    A `struct kvmppc_vcore *` when gdb has the type (DWARF), else a `void *`
    (print its fields with `pv-print kvmppc_vcore $pv_vcore(0)`).
    Examples: `p $pv_vcore(0)`, `pv-vcore $pv_vcore(0)`."""

    def __init__(self) -> None:
        super().__init__("pv_vcore")

    def invoke(self, *args: Any) -> Any:
        i = one_argument("$pv_vcore", "N", args)
        _, reading, vcores, _ = gather(with_all=True)
        addrs = tables.vcore_numbers(vcores, reading.kvm)
        if not 0 <= i < len(addrs):
            raise PvError(f"$pv_vcore: no vcore {i} ({len(addrs)} found)")
        return typed_pointer(addrs[i], "kvmppc_vcore")


def register() -> None:
    PvVcore()
    PvVcoreFunction()
