"""Kernel virtual -> physical through the kernel's own Linux page table (ppc64 Book3S).

vmalloc and module memory (``struct kvm``, ``vm_list``, kvm-hv.ko's data) is
not in the linear map, so a thread that is in a guest, in real mode or in
OPAL cannot read it virtually.  With the hash MMU the kernel still keeps a
Linux page table for that space: ``init_mm.pgd`` (= ``swapper_pg_dir``),
filled by vmalloc/ioremap and searched by ``hash_page`` on a miss
(arch/powerpc/mm/book3s64/hash_utils.c).  Walking it needs only physical
reads, which QEMU's gdbstub offers in any CPU state.

Geometry and bits (arch/powerpc/include/asm/book3s/64/pgtable.h, hash-4k.h,
hash-64k.h, v6.12):

* the index sizes are run-time variables (``__pgd_index_size``,
  ``__pud_index_size``, ``__pmd_index_size``, ``__pte_index_size``) because
  one kernel runs either hash or radix; P4D is folded;
* ``PMD_SHIFT = PAGE_SHIFT + PTE_INDEX_SIZE``, ``PUD_SHIFT = PMD_SHIFT +
  PMD_INDEX_SIZE``, ``PGDIR_SHIFT = PUD_SHIFT + PUD_INDEX_SIZE``;
  ``x_index(ea) = (ea >> X_SHIFT) & (PTRS_PER_X - 1)``;
* entries are big-endian (``__be64``) whatever the kernel's byte order;
* a directory entry holds the physical address of the next table with
  ``P4D/PUD/PMD_MASKED_BITS`` (0xc0000000000000ff) masked off;
  ``_PAGE_PRESENT`` is bit 63, ``_PAGE_PTE`` (bit 62) marks a leaf, also at
  the PMD/PUD level (huge mappings);
* a leaf's physical page is ``pte & PTE_RPN_MASK``: the bits below
  ``_PAGE_PA_MAX`` (53), page aligned; the hash MMU keeps its HPTE slot
  (``H_PAGE_F_GIX``, from bit 53 up) and software bits above.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

PAGE_PRESENT = 1 << 63
PAGE_PTE = 1 << 62
DIR_MASKED_BITS = 0xC000_0000_0000_00FF
PAGE_PA_MAX = 53
# The sizes a Book3S-64 kernel uses (hash and radix, 4k and 64k pages); any
# other value read from memory means the variables are not set up or garbage.
INDEX_SIZE_RANGE = range(1, 17)
PAGE_SHIFTS = (12, 16)

PhysRead = Callable[[int, int], bytes]


class TranslationError(Exception):
    """An address the kernel's page table does not map (with the level that stopped)."""

    def __init__(self, ea: int, why: str):
        super().__init__(f"{why} for {ea:#x}")
        self.ea = ea
        self.why = why


@dataclass(frozen=True)
class Geometry:
    """Index sizes of the four levels (PGD, PUD, PMD, PTE) and the base page shift."""

    pgd_index_size: int
    pud_index_size: int
    pmd_index_size: int
    pte_index_size: int
    page_shift: int

    def __post_init__(self) -> None:
        sizes = (self.pgd_index_size, self.pud_index_size, self.pmd_index_size, self.pte_index_size)
        if any(s not in INDEX_SIZE_RANGE for s in sizes):
            raise ValueError(f"page-table index sizes {sizes} are not a Book3S-64 kernel's")
        if self.page_shift not in PAGE_SHIFTS:
            raise ValueError(f"page shift {self.page_shift} is neither 4k nor 64k")

    def levels(self) -> list[tuple[str, int, int]]:
        """(name, shift, index size) from the top level down to the PTE."""
        pmd_shift = self.page_shift + self.pte_index_size
        pud_shift = pmd_shift + self.pmd_index_size
        pgd_shift = pud_shift + self.pud_index_size
        return [
            ("pgd", pgd_shift, self.pgd_index_size),
            ("pud", pud_shift, self.pud_index_size),
            ("pmd", pmd_shift, self.pmd_index_size),
            ("pte", self.page_shift, self.pte_index_size),
        ]


class KernelPageTable:
    """Translate kernel effective addresses with the page table rooted at ``pgd_pa``.

    ``read_phys(pa, size)`` reads physical memory.  Translations are cached
    per page; :meth:`forget` drops them (call it when the target resumes, as
    vmalloc mappings change)."""

    def __init__(self, read_phys: PhysRead, pgd_pa: int, geometry: Geometry):
        self.read_phys = read_phys
        self.pgd_pa = pgd_pa
        self.geometry = geometry
        self._levels = geometry.levels()
        self._pages: dict[int, int] = {}
        self.walks = 0

    def forget(self) -> None:
        self._pages.clear()

    def translate(self, ea: int) -> int:
        """The physical address of kernel virtual address ``ea``, or TranslationError."""
        page_mask = (1 << self.geometry.page_shift) - 1
        page = ea & ~page_mask
        pa = self._pages.get(page)
        if pa is None:
            try:
                pa = self._walk(page)
            except TranslationError as e:
                raise TranslationError(ea, e.why) from None
            self._pages[page] = pa
        return pa | (ea & page_mask)

    def _walk(self, ea: int) -> int:
        self.walks += 1
        table = self.pgd_pa
        for name, shift, bits in self._levels:
            index = (ea >> shift) & ((1 << bits) - 1)
            raw = self.read_phys(table + 8 * index, 8)
            entry = int.from_bytes(raw, "big")
            if not entry & PAGE_PRESENT:
                raise TranslationError(ea, f"no {name} entry ({entry:#x})")
            if entry & PAGE_PTE or name == "pte":  # a leaf: a page, or a huge mapping above the PTE level
                size_mask = (1 << shift) - 1
                base = entry & ((1 << PAGE_PA_MAX) - 1) & ~size_mask
                return base | (ea & size_mask)
            table = entry & ~DIR_MASKED_BITS
        raise TranslationError(ea, "page table deeper than four levels")  # not reached

    def read(self, ea: int, size: int) -> bytes:
        """``size`` bytes at kernel virtual ``ea``, split at page boundaries."""
        page = 1 << self.geometry.page_shift
        out = bytearray()
        while size > 0:
            chunk = min(size, page - (ea & (page - 1)))
            out += self.read_phys(self.translate(ea), chunk)
            ea += chunk
            size -= chunk
        return bytes(out)
