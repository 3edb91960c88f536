"""Walkers over the kernel's lists of VMs, vcores and vcpus, on any :class:`Memory`.

No gdb here: the same code runs on fake memory in the tests and on QEMU's
gdbstub inside gdb.  Layouts come from :mod:`pyvcore.layout` (BTF or DWARF);
the choice between kernel generations is made from the layout, never from the
version string:

* ``vm_list`` (virt/kvm/kvm_main.c): every ``struct kvm``, linked by
  ``kvm->vm_list``;
* ``kvm->arch.vcores[]`` (arch/powerpc/include/asm/kvm_host.h): one
  ``struct kvmppc_vcore *`` per vcore id;
* the vcpus of a VM: ``kvm->vcpu_array``, an xarray indexed by vcpu_idx
  (creation order) since c5b077549136 "KVM: Convert the kvm->vcpus array to a
  xarray" (v5.16), and the plain ``kvm->vcpus[KVM_MAX_VCPUS]`` array, valid up
  to ``kvm->online_vcpus``, before it.
"""

from __future__ import annotations

from pyvcore.layout import LayoutError, Layouts
from pyvcore.ppc64 import is_kernel_pointer
from pyvcore.readplan import ByteOrder, Memory

# A list longer than this is taken to be corrupt (a cycle that never returns
# to its head, or garbage read while the kernel was changing it).
MAX_VMS = 256
MAX_VCPUS = 4096


class WalkError(Exception):
    """A kernel list that cannot be followed (corrupt, cyclic or absurd)."""


def _u64(mem: Memory, addr: int, order: ByteOrder) -> int:
    return int.from_bytes(mem.read(addr, 8), order)


# ------------------------------------------------------------------ xarray
def xa_is_node(entry: int) -> bool:
    """include/linux/xarray.h ``xa_is_node``: internal entries have the low
    bits 0b10; node pointers are the internal entries above 4096 (smaller ones
    are retry, zero and sibling markers)."""
    return entry & 3 == 2 and entry > 4096


def xarray_entries(
    mem: Memory, layouts: Layouts, xa_addr: int, order: ByteOrder, limit: int = MAX_VCPUS
) -> dict[int, int]:
    """index -> pointer of every present entry of the ``struct xarray`` at ``xa_addr``.

    One read per ``xa_node`` (64 slots): a VM with up to 64 vcpus costs the
    head plus one node.  A node whose shift does not decrease (a cycle), or
    more than ``limit`` nodes or entries, raises :class:`WalkError`."""
    xa = layouts.struct("xarray")
    head = _u64(mem, xa_addr + xa.field("xa_head").offset, order)
    if head == 0:
        return {}
    if not xa_is_node(head):
        return {0: head}  # a single entry at index 0 lives in the head itself
    node = layouts.struct("xa_node")
    shift_f, slots_f = node.field("shift"), node.field("slots")
    nslots = slots_f.array_len or 64
    out: dict[int, int] = {}
    todo = [(head - 2, 0, 64)]
    visited = 0
    while todo:
        addr, base, parent_shift = todo.pop()
        visited += 1
        if visited > limit:
            raise WalkError(f"xarray at {xa_addr:#x}: more than {limit} nodes (corrupt?)")
        raw = mem.read(addr, slots_f.offset + slots_f.size)
        shift = raw[shift_f.offset]
        if shift >= parent_shift:  # a child must index fewer bits than its parent
            raise WalkError(f"xarray node at {addr:#x}: shift {shift} (corrupt?)")
        for i in range(nslots):
            at = slots_f.offset + 8 * i
            entry = int.from_bytes(raw[at : at + 8], order)
            if entry == 0 or (entry & 3 == 2 and entry <= 4096):
                continue  # empty, or a retry/sibling marker
            index = base + (i << shift)
            if xa_is_node(entry) and shift > 0:
                todo.append((entry - 2, index, shift))
            elif entry & 3 == 0:
                out[index] = entry
                if len(out) > limit:
                    raise WalkError(f"xarray at {xa_addr:#x}: more than {limit} entries")
    return out


# ------------------------------------------------------------------ VMs
def vm_list(mem: Memory, layouts: Layouts, head: int, order: ByteOrder, limit: int = MAX_VMS) -> list[int]:
    """Every ``struct kvm`` on the list whose ``list_head`` is at ``head`` (kvm.ko's ``vm_list``).

    Raises :class:`WalkError` on a pointer that is not a kernel address or a
    list that does not come back to its head within ``limit`` entries."""
    off = layouts.struct("kvm").field("vm_list").offset
    out: list[int] = []
    node = _u64(mem, head, order)
    while node != head:
        if not is_kernel_pointer(node):
            raise WalkError(f"vm_list: next = {node:#x} is not a kernel address")
        kvm = node - off
        if kvm in out or len(out) >= limit:
            raise WalkError(f"vm_list: no way back to the head after {len(out)} VMs (cycle?)")
        out.append(kvm)
        node = _u64(mem, node, order)
    return out


def kvm_vcores(mem: Memory, layouts: Layouts, kvm: int, order: ByteOrder) -> dict[int, int]:
    """vcore id -> ``struct kvmppc_vcore *`` of every non-NULL ``kvm->arch.vcores[]`` entry."""
    f = layouts.struct("kvm").field("arch.vcores")
    raw = mem.read(kvm + f.offset, f.size)
    es = f.elem_size or 8
    out: dict[int, int] = {}
    for i in range(f.array_len or 0):
        p = int.from_bytes(raw[i * es : (i + 1) * es], order)
        if p:
            if not is_kernel_pointer(p):
                raise WalkError(f"kvm {kvm:#x}: arch.vcores[{i}] = {p:#x} is not a kernel address")
            out[i] = p
    return out


def vcpu_container(layouts: Layouts) -> str:
    """How this kernel keeps a VM's vcpus: ``"vcpu_array"`` (xarray, since
    c5b077549136, v5.16) or ``"vcpus"`` (the array before it)."""
    s = layouts.struct("kvm")
    if s.has("vcpu_array"):
        return "vcpu_array"
    if s.has("vcpus"):
        return "vcpus"
    raise LayoutError("struct kvm has neither vcpu_array nor vcpus[]")


def kvm_vcpus(mem: Memory, layouts: Layouts, kvm: int, order: ByteOrder) -> list[int]:
    """Every ``struct kvm_vcpu *`` of the VM at ``kvm``, in vcpu_idx order."""
    s = layouts.struct("kvm")
    if vcpu_container(layouts) == "vcpu_array":
        entries = xarray_entries(mem, layouts, kvm + s.field("vcpu_array").offset, order)
        return [entries[i] for i in sorted(entries)]
    f = s.field("vcpus")
    n = f.array_len or 0
    if s.has("online_vcpus.counter"):
        c = s.field("online_vcpus.counter")
        online = int.from_bytes(mem.read(kvm + c.offset, 4), order, signed=True)
        if online < 0 or online > n:
            raise WalkError(f"kvm {kvm:#x}: online_vcpus = {online} (array of {n})")
        n = online
    es = f.elem_size or 8
    raw = mem.read(kvm + f.offset, es * n) if n > 0 else b""
    out = []
    for i in range(n):
        p = int.from_bytes(raw[i * es : (i + 1) * es], order)
        if p:
            if not is_kernel_pointer(p):
                raise WalkError(f"kvm {kvm:#x}: vcpus[{i}] = {p:#x} is not a kernel address")
            out.append(p)
    return out
