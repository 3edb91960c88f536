"""pv-vcpu and $pv_vcpu: the vcpus of the vcores found, with their scheduling state."""

from __future__ import annotations

from typing import Any

import gdb  # type: ignore[import-not-found]

from pyvcore import tables, vcpuview
from pyvcore.decode import ReadError
from pyvcore.layout import LayoutError
from pyvcore.render import wrap

from . import check, session
from .paca import one_argument, typed_pointer
from .session import PvError
from .vcore import gather


def vcpus_by_id() -> tuple[Any, Any, dict[int, dict], dict[int, str], list[tuple[int, int]]]:
    """(kernel, reading, vcores, vcore names, [(vcpu_id, addr)]) in the stable order:
    by VM and vcore as pv-vcore numbers them, then by vcpu id."""
    k, reading, vcores, vcpus = gather(with_all=True)
    order = tables.vcore_numbers(vcores, reading.kvm)
    names = {a: f"vc{i}" for i, a in enumerate(order)}
    rank = {a: i for i, a in enumerate(order)}
    ids = sorted(
        ((int(v.get("vcpu_id", -1)), a) for a, v in vcpus.items()),
        key=lambda t: (rank.get(vcpus[t[1]].get("arch.vcore"), len(rank)), t[0]),
    )
    return k, reading, vcores, names, ids


class PvVcpu(gdb.Command):
    """Show KVM vcpus: state, ceded/prodded, pending doorbell, last trap, thread, guest PC/MSR.

    Usage: pv-vcpu [ID|all]

      all (default)  every vcpu of the vcores pv-vcore finds (PACAs, each VM's
                     vcores and vcpu array)
      ID             the vcpu with this vcpu_id (the same ID as $pv_vcpu(ID))

    The state is arch.state by name; ceded: it executed H_CEDE and naps;
    prodded: an H_PROD is pending; doorbell: arch.doorbell_request, or its bit
    in the vcore's dpdes; trap: the interrupt vector of its last exit; in PACA
    of: the thread (cpu / t) whose kvm_hstate.kvm_vcpu holds it.  Its guest PC
    and MSR are live from that thread while it executes the guest, else the
    values saved at the last exit.

    Examples:
      pv-vcpu
      pv-vcpu 1"""

    def __init__(self) -> None:
        super().__init__("pv-vcpu", gdb.COMMAND_DATA)

    def invoke(self, arg: str, from_tty: bool) -> None:
        from .args import ArgParser

        p = ArgParser("pv-vcpu")
        p.add_argument("which", nargs="?", default="all")
        a = p.parse(arg)
        k, reading, vcores, names, ids = vcpus_by_id()
        if a.which != "all":
            try:
                wanted = int(a.which, 0)
            except ValueError:
                raise PvError(f"pv-vcpu: ID must be a vcpu_id or `all`, not {a.which!r}") from None
            ids = [(vid, addr) for vid, addr in ids if vid == wanted]
            if not ids:
                raise PvError(f"pv-vcpu: no vcpu {wanted} in the vcores found (see `pv-vcpu all`)")
        if not ids:
            gdb.write("pv-vcpu: no vcpu found (is a KVM guest running?)\n")
            return
        details: dict[int, dict] = {}
        with session.GdbTarget() as target:
            session.prepare(target, k)
            for _, addr in ids:
                try:
                    details[addr] = vcpuview.read_detail(k.layouts, target, addr, k.layout.order)
                except (ReadError, LayoutError) as e:
                    reading.problems.append(f"vcpu {addr:#x}: {e}")
        gdb.write(vcpuview.vcpu_tables(details, reading, names, vcores, width=check.terminal_width()) + "\n")
        for problem in reading.problems:
            gdb.write(wrap(f"pv-vcpu: {problem}", check.terminal_width(), indent="    ") + "\n")


class PvVcpuFunction(gdb.Function):
    """$pv_vcpu(ID): the kvm_vcpu with vcpu_id ID (in the first VM that has one, as pv-vcpu lists them).

    A `struct kvm_vcpu *` when gdb has the type (DWARF), else a `void *` (print
    its fields with `pv-print kvm_vcpu $pv_vcpu(1) vcpu_id arch.ptid arch.ceded`).
    Examples: `p $pv_vcpu(1)`."""

    def __init__(self) -> None:
        super().__init__("pv_vcpu")

    def invoke(self, *args: Any) -> Any:
        wanted = one_argument("$pv_vcpu", "ID", args)
        _, _, _, _, ids = vcpus_by_id()
        for vid, addr in ids:
            if vid == wanted:
                return typed_pointer(addr, "kvm_vcpu")
        known = ", ".join(str(v) for v, _ in ids) or "none"
        raise PvError(f"$pv_vcpu: no vcpu {wanted} (vcpu ids found: {known})")


def register() -> None:
    PvVcpu()
    PvVcpuFunction()
