"""Where the vcores of a stop come from, and reading them with their vcpus.

A vcore is found, in this order, from every thread's PACA (``kvm_hstate.kvm_vcore``), the
hints of the stop (a function argument such as ``r3 at kvmppc_run_core``), and the
``arch.vcore`` of each vcpu found; a vcore's ``runner`` and ``runnable_threads[]`` name
vcpus to read.  When none of those names a vcore, every VM on kvm.ko's ``vm_list`` gives
its ``arch.vcores[]``.  Whatever cannot be read becomes a problem line, never an exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyvcore.layout import LayoutError
from pyvcore.ppc64 import is_kernel_pointer
from pyvcore.readplan import Memory, ReadError
from pyvcore.walk import WalkError, kvm_vcores, vm_list

if TYPE_CHECKING:
    from pyvcore.decode import SnapshotReader


class VcoreSearch:
    """The vcore and vcpu addresses of one stop, in the order found, with where each vcore
    came from (``vcore_from``: address -> source), read through ``reader`` from ``mem``;
    ``problems`` collects what could not be used."""

    def __init__(self, reader: SnapshotReader, mem: Memory, problems: list[str]):
        self.reader = reader
        self.mem = mem
        self.problems = problems
        self.vcores: list[int] = []
        self.vcpus: list[int] = []
        self.vcore_from: dict[int, str] = {}

    def _ok(self, addr: Any, where: str) -> bool:
        if not addr:
            return False
        if not is_kernel_pointer(int(addr)):
            self.problems.append(f"{where} = {int(addr):#x} is not a kernel address (garbage?)")
            return False
        return True

    def vcore(self, addr: Any, source: str, where: str) -> bool:
        """Add the vcore at ``addr`` (found at ``source``); False if it is no kernel pointer."""
        if not self._ok(addr, where):
            return False
        addr = int(addr)
        if addr not in self.vcores:
            self.vcores.append(addr)
            self.vcore_from[addr] = source
        return True

    def vcpu(self, addr: Any, where: str) -> None:
        """Add the vcpu at ``addr`` (named at ``where``) unless it is no kernel pointer."""
        if self._ok(addr, where) and int(addr) not in self.vcpus:
            self.vcpus.append(int(addr))

    def read(self) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
        """Every vcore found so far, their runner and runnable_threads[], every
        vcpu found, and each vcpu's own ``arch.vcore``."""
        vcores: dict[int, dict[str, Any]] = {}
        vcpus: dict[int, dict[str, Any]] = {}
        i = 0
        while i < len(self.vcores):
            addr = self.vcores[i]
            i += 1
            self._read_one(addr, vcores)
        for addr in self.vcpus:
            try:
                v = self.reader.read_vcpu(self.mem, addr)
            except ReadError as e:
                self.problems.append(f"struct kvm_vcpu at {addr:#x} unreadable: {e}")
                continue
            vcpus[addr] = v
            owner = v.get("arch.vcore")
            if (
                owner
                and owner not in vcores
                and self.vcore(owner, "kvm_vcpu.arch.vcore", f"vcpu {addr:#x}: arch.vcore")
            ):
                self._read_one(owner, vcores, follow=False)
        return vcores, vcpus

    def _read_one(self, addr: int, vcores: dict[int, dict[str, Any]], follow: bool = True) -> None:
        try:
            vc = self.reader.read_vcore(self.mem, addr)
        except ReadError as e:
            self.problems.append(f"struct kvmppc_vcore at {addr:#x} unreadable: {e}")
            return
        vcores[addr] = vc
        if follow:
            self.vcpu(vc.get("runner"), f"vcore {addr:#x}: runner")
            for p in vc.get("runnable_threads") or []:
                self.vcpu(p, f"vcore {addr:#x}: runnable_threads[]")

    def from_vm_list(self, vcores: dict[int, dict[str, Any]]) -> None:
        """No PACA and no argument names a vcore: every VM on kvm.ko's ``vm_list``,
        and of their ``arch.vcores[]`` those that are not INACTIVE (0)."""
        head = self.reader.k.symbol("vm_list")
        if head is None or not self.reader.k.layouts.has_struct("kvm"):
            return
        try:
            for kvm in vm_list(self.mem, self.reader.k.layouts, head, self.reader.k.order):
                for addr in kvm_vcores(self.mem, self.reader.k.layouts, kvm, self.reader.k.order).values():
                    vc = self.reader.read_vcore(self.mem, addr)
                    if vc.get("vcore_state"):
                        vcores[addr] = vc
                        self.vcore_from[addr] = "vm_list"
        except (ReadError, WalkError, LayoutError) as e:
            self.problems.append(f"vm_list unreadable: {e}")
