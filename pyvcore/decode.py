"""Read the vcore state of a ppc64 KVM-HV host out of raw memory: the reader.

Everything here works on a :class:`~pyvcore.readplan.Memory` (``read(addr,
size) -> bytes``) and per-thread register values
(:class:`~pyvcore.ppc64.ThreadRegs`), so it runs the same on fake memory in a
unit test and on QEMU's gdbstub inside gdb (``gdb_plugins`` supplies the
gdb-backed memory).  Offsets come from :mod:`pyvcore.layout` (BTF or DWARF),
never from constants.  The ppc64 facts live in :mod:`pyvcore.ppc64`, the read
plans in :mod:`pyvcore.readplan`, the list walkers in :mod:`pyvcore.walk`, the
snapshot format in :mod:`pyvcore.snapshot`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyvcore.kvmlayout import (
    ENTRY_ARGUMENTS,
    HSTATE_EXTRA,
    KVM_ARCH_FIELDS,
    VCPU_FIELDS,
    Hints,
    KernelError,
    KernelLayout,
)
from pyvcore.layout import LayoutError
from pyvcore.pagetable import Geometry, KernelPageTable, PhysRead
from pyvcore.ppc64 import (
    GUEST_MODES,
    HWTHREAD_STATES,
    KERNEL_BASE,
    MSR_DR,
    MSR_HV,
    MSR_IR,
    MSR_LE,
    MSR_SF,
    NAPPING,
    REAL_ADDRESS_MASK,
    VCORE_STATES,
    VCPU_STATES,
    VMALLOC_START,
    ThreadRegs,
    bswap64,
    is_kernel_pointer,
    is_linear,
    linear_to_phys,
    name_of,
    normalise_msr,
    thread_list,
)
from pyvcore.readplan import ByteOrder, Memory, ReadError, decode_value
from pyvcore.snapshot import build_snapshot
from pyvcore.walk import WalkError, kvm_vcores, vm_list, xarray_entries

# Re-exported from the modules decode.py was split into, for the code that
# imports them from here (the pv-* tables, older callers).
__all__ = [
    "ENTRY_ARGUMENTS",
    "GUEST_MODES",
    "HSTATE_EXTRA",
    "HWTHREAD_STATES",
    "KERNEL_BASE",
    "KVM_ARCH_FIELDS",
    "MSR_DR",
    "MSR_HV",
    "MSR_IR",
    "MSR_LE",
    "MSR_SF",
    "NAPPING",
    "REAL_ADDRESS_MASK",
    "VCORE_STATES",
    "VCPU_FIELDS",
    "VCPU_STATES",
    "VMALLOC_START",
    "Hints",
    "KernelError",
    "KernelLayout",
    "Memory",
    "ReadError",
    "Reading",
    "SnapshotReader",
    "ThreadRegs",
    "ThreadRow",
    "WalkError",
    "bswap64",
    "decode_value",
    "is_kernel_pointer",
    "is_linear",
    "linear_to_phys",
    "name_of",
    "normalise_msr",
    "thread_list",
    "xarray_entries",
]


# ------------------------------------------------------------------ the kernel
# ------------------------------------------------------------------ snapshot
@dataclass
class ThreadRow:
    """One hardware thread as pv-paca shows it (more than the snapshot carries)."""

    regs: ThreadRegs
    cpu: int | None = None
    paca: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def hstate(self, name: str) -> Any:
        return self.fields.get(f"kvm_hstate.{name}")


@dataclass
class Reading:
    """The result of one pass over the target: snapshot + what pv-* commands show.

    ``vcore_from`` says, per vcore address, where it was found (a PACA's
    ``kvm_hstate.kvm_vcore``, a function argument such as ``r3 at
    kvmppc_run_core``, a vcpu's ``arch.vcore``, or ``vm_list``)."""

    snapshot: dict[str, Any]
    rows: list[ThreadRow]
    vcores: dict[int, dict[str, Any]]
    vcpus: dict[int, dict[str, Any]]
    kvm: dict[int, dict[str, Any]]
    problems: list[str]
    vcore_from: dict[int, str] = field(default_factory=dict)


def _u32(buf: bytes, order: ByteOrder) -> int:
    return int.from_bytes(buf[:4], order)


def _u64(buf: bytes, order: ByteOrder) -> int:
    return int.from_bytes(buf[:8], order)


class SnapshotReader:
    """Builds snapshots from memory + registers; caches what never changes after boot."""

    def __init__(self, kernel: KernelLayout):
        self.k = kernel
        self.reset()

    def reset(self) -> None:
        """Forget cached boot-time values (new connection or new kernel)."""
        self._pacas: dict[int, int] | None = None  # cpu -> PACA address
        self._hw_to_cpu: dict[int, int] = {}  # PIR -> cpu (static after boot)
        self._threads_per_core: int | None = None
        self._linear_end: int | None = None
        self._tb_freq: int | None = None
        self._geometry: Geometry | None = None
        self._kvm_cache: dict[int, dict[str, Any]] = {}

    # -- boot-time constants (read once per connection)
    def _int_symbol(self, mem: Memory, name: str, size: int, signed: bool = False) -> int | None:
        addr = self.k.symbol(name)
        if addr is None:
            return None
        return int.from_bytes(mem.read(addr, size), self.k.order, signed=signed)

    def threads_per_core(self, mem: Memory) -> int:
        if self._threads_per_core is None:
            value = self._int_symbol(mem, "threads_per_core", 4, signed=True) or 0
            self._threads_per_core = value if 0 < value <= 8 else 0
        return self._threads_per_core

    def tb_freq(self, mem: Memory) -> int | None:
        """``ppc_tb_freq`` (Hz; arch/powerpc/kernel/time.c), set at boot from the device tree."""
        if self._tb_freq is None:
            try:
                value = self._int_symbol(mem, "ppc_tb_freq", 8)
            except ReadError:
                value = None
            if value and 0 < value < 1 << 40:
                self._tb_freq = value
        return self._tb_freq

    def linear_end(self, mem: Memory) -> int:
        """``high_memory``: end of the linear map (cached; VMALLOC_START if unknown)."""
        if self._linear_end is None:
            try:
                value = self._int_symbol(mem, "high_memory", 8) or 0
            except ReadError:
                value = 0
            self._linear_end = value if KERNEL_BASE < value <= VMALLOC_START else VMALLOC_START
        return self._linear_end

    def page_table(self, mem: Memory, read_phys: PhysRead) -> KernelPageTable:
        """The kernel's own page table (``swapper_pg_dir``, = ``init_mm.pgd``) for
        vmalloc/module addresses, read physically.  Geometry from the kernel's
        run-time index sizes and ``mmu_psize_defs[mmu_virtual_psize].shift``
        (arch/powerpc/mm/book3s64/hash_utils.c); KernelError if unknown."""
        if self._geometry is None:
            self._geometry = self._read_geometry(mem)
        root = self.k.symbol("swapper_pg_dir")
        if root is None:
            raise KernelError("no swapper_pg_dir symbol: cannot walk the kernel page table")
        return KernelPageTable(read_phys, linear_to_phys(root), self._geometry)

    def _read_geometry(self, mem: Memory) -> Geometry:
        sizes = []
        for level in ("pgd", "pud", "pmd", "pte"):
            value = self._int_symbol(mem, f"__{level}_index_size", 8)
            if value is None:
                raise KernelError(f"no __{level}_index_size symbol: not a Book3S-64 kernel?")
            sizes.append(value)
        psize = self._int_symbol(mem, "mmu_virtual_psize", 4, signed=True)
        defs = self.k.symbol("mmu_psize_defs")
        if psize is None or defs is None or not self.k.layouts.has_struct("mmu_psize_def"):
            raise KernelError("no mmu_psize_defs/mmu_virtual_psize: page size unknown")
        d = self.k.layouts.struct("mmu_psize_def")
        shift_f = d.field("shift")
        shift = int.from_bytes(mem.read(defs + psize * d.size + shift_f.offset, 4), self.k.order)
        try:
            return Geometry(sizes[0], sizes[1], sizes[2], sizes[3], page_shift=shift)
        except ValueError as e:
            raise KernelError(f"kernel page table: {e} (not set up yet?)") from None

    def paca_addresses(self, mem: Memory) -> dict[int, int]:
        """cpu -> PACA address, from ``paca_ptrs[]`` (or the old ``paca`` array)."""
        if self._pacas is not None:
            return self._pacas
        order = self.k.order
        nr = self._int_symbol(mem, "nr_cpu_ids", 4) or 0
        if not 0 < nr <= 8192:
            raise KernelError(f"nr_cpu_ids reads {nr}: kernel memory not readable yet?")
        base = self._int_symbol(mem, self.k.paca_array, 8) or 0
        if not is_kernel_pointer(base):
            raise KernelError(f"{self.k.paca_array} = {base:#x}: not set up yet (early boot?)")
        out: dict[int, int] = {}
        if self.k.paca_array == "paca_ptrs":
            raw = mem.read(base, 8 * nr)
            for cpu in range(nr):
                p = int.from_bytes(raw[8 * cpu : 8 * cpu + 8], order)
                if is_kernel_pointer(p):
                    out[cpu] = p
        else:  # pre-v4.17: one contiguous array of struct paca_struct
            for cpu in range(nr):
                out[cpu] = base + cpu * self.k.paca.size
        self._pacas = out
        return out

    # -- per-struct reads
    def read_paca(self, mem: Memory, addr: int) -> dict[str, Any]:
        return self.k.paca_plan.read(mem, addr, self.k.order)

    def read_vcore(self, mem: Memory, addr: int) -> dict[str, Any]:
        return self.k.vcore_plan.read(mem, addr, self.k.order)

    def read_vcpu(self, mem: Memory, addr: int) -> dict[str, Any]:
        return self.k.vcpu_plan.read(mem, addr, self.k.order)

    def read_kvm(self, mem: Memory, addr: int) -> dict[str, Any]:
        if self.k.kvm_plan is None:
            raise LayoutError("struct kvm layout not available")
        return self.k.kvm_plan.read(mem, addr, self.k.order)

    def read_kvm_cached(self, mem: Memory, addr: int) -> dict[str, Any]:
        """kvm->arch fields the snapshot needs; they are fixed once a VM runs
        (lpid and host_* at creation, sdr1 when its HPT is allocated, before
        the first KVM_RUN), so each VM is read once per connection."""
        cached = self._kvm_cache.get(addr)
        if cached is None:
            cached = self._kvm_cache[addr] = self.read_kvm(mem, addr)
        return cached

    # -- the whole core
    def read(
        self,
        mem: Memory,
        regs: list[ThreadRegs],
        stop: str | None = None,
        with_kvm: bool = True,
        hints: Hints | None = None,
        stopper: int | None = None,
    ) -> Reading:
        """One pass: every thread's PACA, the vcores (from the PACAs, ``hints``
        and, when neither has one, ``vm_list``), their vcpus and VM.
        ``stopper`` is the gdb thread number that hit the stop (its timebase is
        the stop's ``tb``).  Unreadable parts become ``problems``, never an
        exception, except a kernel whose PACAs cannot be found (KernelError)."""
        problems: list[str] = []
        rows = self._match_threads(mem, regs, problems)
        found = _Found(problems)
        for row in rows:
            if row.fields:
                found.vcore(
                    row.hstate("kvm_vcore"), "kvm_hstate.kvm_vcore", f"cpu {row.cpu}: kvm_hstate.kvm_vcore"
                )
                found.vcpu(row.hstate("kvm_vcpu"), f"cpu {row.cpu}: kvm_hstate.kvm_vcpu")
        for addr, source in (hints or Hints()).vcores:
            found.vcore(addr, source, source)
        for addr, source in (hints or Hints()).vcpus:
            found.vcpu(addr, source)
        vcores, vcpus = self._read_vcores_and_vcpus(mem, found)
        if not vcores:
            self._vcores_from_vm_list(mem, found, vcores)
        kvms = self._read_kvms(mem, vcores, problems) if with_kvm else {}
        if not vcores:
            self._explain_no_vm(mem, problems)
        tpc = 0
        try:
            tpc = self.threads_per_core(mem)
        except ReadError as e:
            problems.append(f"threads_per_core unreadable: {e}")
        tb_freq = None
        try:
            tb_freq = self.tb_freq(mem)
        except ReadError as e:
            problems.append(f"ppc_tb_freq unreadable: {e}")
        snap = build_snapshot(
            self.k,
            rows,
            vcores,
            vcpus,
            kvms,
            threads_per_core=tpc or len(rows),
            stop=stop,
            tb_freq=tb_freq,
            stopper=stopper,
            vcore_from=found.vcore_from,
        )
        return Reading(snap, rows, vcores, vcpus, kvms, problems, dict(found.vcore_from))

    def _match_threads(self, mem: Memory, regs: list[ThreadRegs], problems: list[str]) -> list[ThreadRow]:
        """One row per gdb thread, matched to its Linux cpu by ``$pir == paca->hw_cpu_id``."""
        pacas = self.paca_addresses(mem)
        rows: list[ThreadRow] = []
        for r in regs:
            row = ThreadRow(regs=r, error=r.error)
            rows.append(row)
            cpu = self._hw_to_cpu.get(r.pir) if r.pir is not None else None
            if cpu is not None:
                row.cpu, row.paca = cpu, pacas.get(cpu)
        # PIRs not seen before: read PACAs until every thread is matched.
        # Afterwards the map is cached.
        unmatched = [row for row in rows if row.cpu is None and row.regs.pir is not None]
        for cpu, addr in sorted(pacas.items()) if unmatched else ():
            if cpu in self._hw_to_cpu.values():
                continue
            try:
                f = self.read_paca(mem, addr)
            except ReadError as e:
                problems.append(f"cpu {cpu}: PACA at {addr:#x} unreadable: {e}")
                continue
            hw = f.get("hw_cpu_id")
            if hw is None:
                continue
            self._hw_to_cpu[int(hw)] = cpu
            for row in unmatched:
                if row.regs.pir == hw:
                    row.cpu, row.paca, row.fields = cpu, addr, f
            if all(row.cpu is not None for row in unmatched):
                break
        for row in rows:
            self._read_row(mem, row, problems)
        rows.sort(key=lambda row: (row.cpu is None, row.cpu or 0, row.regs.gdb_thread))
        return rows

    def _read_row(self, mem: Memory, row: ThreadRow, problems: list[str]) -> None:
        if row.cpu is None:
            if row.regs.pir is None:
                row.error = row.error or "no $pir register (not a POWER gdbstub?)"
            else:
                row.error = row.error or f"no PACA has hw_cpu_id == $pir {row.regs.pir:#x}"
            problems.append(f"gdb thread {row.regs.gdb_thread}: {row.error}")
            return
        if not row.fields and row.paca is not None:
            try:
                row.fields = self.read_paca(mem, row.paca)
            except ReadError as e:
                row.error = f"PACA at {row.paca:#x} unreadable: {e}"
                problems.append(f"cpu {row.cpu}: {row.error}")
        if row.regs.in_opal:
            problems.append(
                f"cpu {row.cpu}: inside OPAL firmware (big-endian, pc {row.regs.pc or 0:#x}); "
                f"registers byte-swapped back, PACA read from memory"
            )

    def _read_vcores_and_vcpus(
        self, mem: Memory, found: _Found
    ) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
        """Every vcore found so far, their runner and runnable_threads[], every
        vcpu found, and each vcpu's own ``arch.vcore``."""
        vcores: dict[int, dict[str, Any]] = {}
        vcpus: dict[int, dict[str, Any]] = {}
        i = 0
        while i < len(found.vcores):
            addr = found.vcores[i]
            i += 1
            self._read_one_vcore(mem, addr, found, vcores)
        for addr in found.vcpus:
            try:
                v = self.read_vcpu(mem, addr)
            except ReadError as e:
                found.problems.append(f"struct kvm_vcpu at {addr:#x} unreadable: {e}")
                continue
            vcpus[addr] = v
            owner = v.get("arch.vcore")
            if (
                owner
                and owner not in vcores
                and found.vcore(owner, "kvm_vcpu.arch.vcore", f"vcpu {addr:#x}: arch.vcore")
            ):
                self._read_one_vcore(mem, owner, found, vcores, follow=False)
        return vcores, vcpus

    def _read_one_vcore(
        self, mem: Memory, addr: int, found: _Found, vcores: dict[int, dict[str, Any]], follow: bool = True
    ) -> None:
        try:
            vc = self.read_vcore(mem, addr)
        except ReadError as e:
            found.problems.append(f"struct kvmppc_vcore at {addr:#x} unreadable: {e}")
            return
        vcores[addr] = vc
        if follow:
            found.vcpu(vc.get("runner"), f"vcore {addr:#x}: runner")
            for p in vc.get("runnable_threads") or []:
                found.vcpu(p, f"vcore {addr:#x}: runnable_threads[]")

    def _vcores_from_vm_list(self, mem: Memory, found: _Found, vcores: dict[int, dict[str, Any]]) -> None:
        """No PACA and no argument names a vcore: every VM on kvm.ko's ``vm_list``,
        and of their ``arch.vcores[]`` those that are not INACTIVE (0)."""
        head = self.k.symbol("vm_list")
        if head is None or not self.k.layouts.has_struct("kvm"):
            return
        try:
            for kvm in vm_list(mem, self.k.layouts, head, self.k.order):
                for addr in kvm_vcores(mem, self.k.layouts, kvm, self.k.order).values():
                    vc = self.read_vcore(mem, addr)
                    if vc.get("vcore_state"):
                        vcores[addr] = vc
                        found.vcore_from[addr] = "vm_list"
        except (ReadError, WalkError, LayoutError) as e:
            found.problems.append(f"vm_list unreadable: {e}")

    def _read_kvms(
        self, mem: Memory, vcores: dict[int, dict[str, Any]], problems: list[str]
    ) -> dict[int, dict[str, Any]]:
        kvms: dict[int, dict[str, Any]] = {}
        if self.k.kvm_plan is None:
            return kvms
        for vc in vcores.values():
            kaddr = vc.get("kvm")
            if not kaddr or kaddr in kvms:
                continue
            if not is_kernel_pointer(kaddr):
                problems.append(f"vcore kvm = {kaddr:#x} is not a kernel address")
                continue
            try:
                kvms[kaddr] = self.read_kvm_cached(mem, kaddr)
            except ReadError as e:
                where = "" if is_linear(kaddr, self._linear_end or VMALLOC_START) else " (vmalloc space)"
                problems.append(f"struct kvm at {kaddr:#x} unreadable: {e.why}{where}")
        return kvms

    def _explain_no_vm(self, mem: Memory, problems: list[str]) -> None:
        """No vcore found: say whether any HV guest exists at all.

        ``hv_vm_count`` (book3s_hv_builtin.c, in vmlinux) counts VMs of kvm-hv;
        it is 0 when kvm-hv is not loaded or no guest was created yet."""
        try:
            count = self._int_symbol(mem, "hv_vm_count", 4, signed=True)
        except ReadError:
            return
        if count == 0:
            problems.append(
                "kvm-hv: no HV guest exists (hv_vm_count = 0): kvm-hv not loaded or no VM created yet"
            )


class _Found:
    """Addresses to read, in the order found, with where each vcore came from."""

    def __init__(self, problems: list[str]):
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
        if not self._ok(addr, where):
            return False
        addr = int(addr)
        if addr not in self.vcores:
            self.vcores.append(addr)
            self.vcore_from[addr] = source
        return True

    def vcpu(self, addr: Any, where: str) -> None:
        if self._ok(addr, where) and int(addr) not in self.vcpus:
            self.vcpus.append(int(addr))
