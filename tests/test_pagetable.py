"""The kernel page-table walk (vmalloc/module addresses read physically), on fake memory.

Tables are built the way the kernel builds them (arch/powerpc/include/asm/
book3s/64/pgtable.h): big-endian entries, _PAGE_PRESENT in bit 63, directory
entries holding the next table's physical address, _PAGE_PTE on leaves."""

from __future__ import annotations

import pytest
from gdb_fakes import FakeHost, FakeMemory

from pyvcore.decode import KernelError
from pyvcore.pagetable import (
    PAGE_PRESENT,
    PAGE_PTE,
    Geometry,
    KernelPageTable,
    TranslationError,
)
from pyvcore.readplan import ReadError

# Index sizes of a hash-MMU kernel (hash-4k.h / hash-64k.h, v6.12).
HASH_4K = Geometry(9, 9, 7, 9, page_shift=12)
HASH_64K = Geometry(8, 10, 10, 8, page_shift=16)
EA = 0xC008_0000_0123_0000  # vmalloc space (struct kvm, kvm-hv.ko data)


class Tables:
    """A page table in fake physical memory, filled like the kernel's."""

    def __init__(self, geometry: Geometry):
        self.g = geometry
        self.phys = FakeMemory()
        self.next_free = 0x100_0000
        self.root = self.table(geometry.pgd_index_size)

    def table(self, bits: int) -> int:
        pa = self.next_free
        self.next_free += max(8 << bits, 0x1000)
        self.phys.write(pa, bytes(8 << bits))
        return pa

    def entry(self, table: int, index: int) -> int:
        return int.from_bytes(self.phys.read(table + 8 * index, 8), "big")

    def put(self, table: int, index: int, value: int) -> None:
        self.phys.write(table + 8 * index, value.to_bytes(8, "big"))

    def map(self, ea: int, pa: int, leaf_level: str = "pte") -> None:
        levels = self.g.levels()
        table = self.root
        for i, (name, shift, bits) in enumerate(levels):
            index = (ea >> shift) & ((1 << bits) - 1)
            if name == leaf_level:
                # software bits in the low byte and a hash slot index above
                # _PAGE_PA_MAX (H_PAGE_F_GIX), as a hash kernel keeps them
                self.put(table, index, PAGE_PRESENT | PAGE_PTE | (0b101 << 53) | pa | 0x10F)
                return
            value = self.entry(table, index)
            if not value:
                child = self.table(levels[i + 1][2])
                # the next level's index size sits in the low bits (masked off)
                value = PAGE_PRESENT | child | levels[i + 1][2]
                self.put(table, index, value)
            table = value & 0x00FF_FFFF_FFFF_FF00

    def walker(self) -> KernelPageTable:
        return KernelPageTable(self.phys.read, self.root, self.g)


@pytest.mark.parametrize("geometry", [HASH_4K, HASH_64K], ids=["4k", "64k"])
def test_translate_and_read_across_a_page_boundary(geometry: Geometry):
    t = Tables(geometry)
    page = 1 << geometry.page_shift
    t.map(EA, 0x4000_0000)
    t.map(EA + page, 0x2000_0000)  # the next virtual page is elsewhere physically
    t.phys.write(0x4000_0000 + page - 4, b"abcd")
    t.phys.write(0x2000_0000, b"efgh")
    w = t.walker()
    assert w.translate(EA + 0x10) == 0x4000_0010
    assert w.read(EA + page - 4, 8) == b"abcdefgh"
    walks = w.walks
    w.translate(EA + 0x20)  # cached per page
    assert w.walks == walks


@pytest.mark.parametrize("geometry", [HASH_4K, HASH_64K], ids=["4k", "64k"])
def test_unmapped_address_names_the_level(geometry: Geometry):
    t = Tables(geometry)
    with pytest.raises(TranslationError, match=r"no pgd entry \(0x0\) for 0xc008000001230000"):
        t.walker().translate(EA)
    t.map(EA, 0x4000_0000)
    other = EA + (1 << geometry.page_shift)
    with pytest.raises(TranslationError, match="no pte entry"):
        t.walker().translate(other)


def test_huge_leaf_at_the_pmd_level():
    t = Tables(HASH_64K)
    _, pmd_shift, _ = HASH_64K.levels()[2]
    base = EA & ~((1 << pmd_shift) - 1)
    t.map(base, 0x1_0000_0000, leaf_level="pmd")
    assert t.walker().translate(base + 0x12345) == 0x1_0001_2345


def test_geometry_refuses_garbage():
    with pytest.raises(ValueError, match="not a Book3S-64"):
        Geometry(0, 9, 7, 9, page_shift=12)
    with pytest.raises(ValueError, match="neither 4k nor 64k"):
        Geometry(9, 9, 7, 9, page_shift=13)


def _kernel_with_geometry(host: FakeHost, g: Geometry, psize_index: int = 1) -> None:
    sym = host.source.symbol
    for name, value in zip(
        ("pgd", "pud", "pmd", "pte"), (g.pgd_index_size, g.pud_index_size, g.pmd_index_size, g.pte_index_size)
    ):
        host.put_int(sym(f"__{name}_index_size"), 8, value)
    host.put_int(sym("mmu_virtual_psize"), 4, psize_index)
    size = host.layouts.struct("mmu_psize_def").size
    host.mem.write(sym("mmu_psize_defs"), bytes(size * 4))
    host.put_int(sym("mmu_psize_defs") + psize_index * size, 4, g.page_shift)


@pytest.mark.parametrize("geometry", [HASH_4K, HASH_64K], ids=["4k", "64k"])
def test_reader_builds_the_walker_from_the_kernels_own_variables(geometry: Geometry):
    host = FakeHost()
    _kernel_with_geometry(host, geometry)
    t = Tables(geometry)
    w = host.kernel_reader().page_table(host.mem, t.phys.read)
    assert w.geometry == geometry
    assert w.pgd_pa == host.source.symbol("swapper_pg_dir") & 0x0FFF_FFFF_FFFF_FFFF


def test_reader_refuses_unset_page_table_variables():
    host = FakeHost()
    _kernel_with_geometry(host, Geometry(9, 9, 7, 9, page_shift=12))
    host.put_int(host.source.symbol("__pgd_index_size"), 8, 0)  # early boot
    with pytest.raises(KernelError, match="not set up yet"):
        host.kernel_reader().page_table(host.mem, FakeMemory().read)


def test_unreadable_table_is_a_read_error():
    t = Tables(HASH_4K)
    t.phys.unreadable.append((t.root, t.root + 0x1000))
    with pytest.raises(ReadError):
        t.walker().translate(EA)
