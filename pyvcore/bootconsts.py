"""The kernel's boot-time values a reader needs, read once per connection.

The PACA of every cpu (``paca_ptrs[]`` over ``nr_cpu_ids``), ``threads_per_core``,
``ppc_tb_freq``, ``high_memory`` and the kernel page table's geometry are set while the
kernel boots and do not change afterwards: :class:`BootConstants` reads each the first time
it is asked and keeps it until :meth:`~BootConstants.reset` (a new connection or kernel).
Like the rest of the reader it runs on any :class:`~pyvcore.readplan.Memory`.
"""

from __future__ import annotations

from pyvcore.kvmlayout import KernelError, KernelLayout
from pyvcore.pagetable import Geometry, KernelPageTable, PhysRead
from pyvcore.ppc64 import KERNEL_BASE, VMALLOC_START, is_kernel_pointer, linear_to_phys
from pyvcore.readplan import Memory, ReadError


class BootConstants:
    """The boot-time values of one kernel (``kernel``: its layouts and symbols), cached."""

    def __init__(self, kernel: KernelLayout):
        self.k = kernel
        self.reset()

    def reset(self) -> None:
        """Forget cached boot-time values (new connection or new kernel)."""
        self._pacas: dict[int, int] | None = None  # cpu -> PACA address
        self._threads_per_core: int | None = None
        self._linear_end: int | None = None
        self._tb_freq: int | None = None
        self._geometry: Geometry | None = None

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
