"""ppc64 (POWER8, Book3S) facts the readers need, with no gdb and no memory.

Kernel address ranges, MSR bits, register byte order, the registers of one
hardware thread, and the kernel's names for the numbers a snapshot carries.
Sources: Power ISA 2.07B (MSR), arch/powerpc/include/asm/book3s/64/*.h and
arch/powerpc/include/asm/kvm_host.h, kvm_book3s_asm.h (the #defines that
neither BTF nor DWARF carries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyvcore import _core

# ppc64 kernel addresses: the linear map is 0xc000..., vmalloc/ioremap/modules
# start at 0xc008... with the hash MMU (H_VMALLOC_START, book3s/64/hash-64k.h).
KERNEL_BASE = 0xC000_0000_0000_0000
VMALLOC_START = 0xC008_0000_0000_0000
# In HV real mode (and for QEMU's physical-memory mode) the top 4 bits of an
# effective address are ignored: linear-map va -> physical address.
REAL_ADDRESS_MASK = 0x0FFF_FFFF_FFFF_FFFF

# MSR bits (ISA 2.07, big-endian bit numbering in comments).
MSR_SF = 1 << 63  # 64-bit mode (bit 0)
MSR_HV = 1 << 60  # hypervisor state (bit 3)
MSR_IR = 1 << 5  # instruction relocation (bit 58)
MSR_DR = 1 << 4  # data relocation (bit 59)
MSR_LE = 1 << 0  # little-endian (bit 63)


def is_kernel_pointer(value: int) -> bool:
    """A plausible ppc64 kernel virtual address (not NULL, not user, not garbage)."""
    return (value >> 60) == 0xC and value & 0x7 == 0


def is_linear(value: int, end: int = VMALLOC_START) -> bool:
    """In the kernel linear map, i.e. reachable by a physical read.

    ``end`` is the kernel's ``high_memory`` once known: modules live in the
    0xc000... range too (e.g. 0xc0003d00...) but above the end of RAM."""
    return KERNEL_BASE <= value < end


def linear_to_phys(value: int) -> int:
    return value & REAL_ADDRESS_MASK


def bswap64(value: int) -> int:
    return int.from_bytes(value.to_bytes(8, "little"), "big")


def normalise_msr(raw: int) -> tuple[int, bool]:
    """MSR as read, and whether the thread's registers arrive byte-swapped.

    QEMU's gdbstub sends a thread's registers in that thread's byte order
    (MSR[LE]); gdb decodes them with one fixed endianness (``set endian
    little``).  A thread in big-endian code (OPAL/skiboot) therefore reads
    byte-swapped.  Every 64-bit host MSR has SF set, so whichever of the two
    byte orders has SF and a consistent LE bit is the real one.
    """
    if raw & MSR_SF:
        return raw, False
    swapped = bswap64(raw)
    if swapped & MSR_SF and not swapped & MSR_LE:
        return swapped, True
    return raw, False


@dataclass
class ThreadRegs:
    """Registers of one hardware thread (one gdb thread), already in host order."""

    gdb_thread: int
    pir: int | None = None
    msr: int | None = None
    pc: int | None = None
    r13: int | None = None
    hsprg0: int | None = None
    lpidr: int | None = None
    sdr1: int | None = None
    hdec: int | None = None
    # Directed privileged doorbell exception state (SPR 176, ISA 2.07): one
    # pending-doorbell bit per thread of the core.
    dpdes: int | None = None
    # Timebase (SPR 268), ticks of ppc_tb_freq.
    tb: int | None = None
    # Argument registers (ELFv2: r3, r4 are the first two arguments at a
    # function's entry), read only at the stopping thread.
    r3: int | None = None
    r4: int | None = None
    # True when the raw values arrived byte-swapped (thread in big-endian code).
    swapped: bool = False
    error: str | None = None

    @property
    def hv(self) -> bool:
        return self.msr is not None and bool(self.msr & MSR_HV)

    @property
    def host_virtual(self) -> bool:
        """Host kernel with the MMU on: virtual reads of vmalloc space work here."""
        return self.hv and bool(self.msr & MSR_IR) and bool(self.msr & MSR_DR)  # type: ignore[operator]

    @property
    def in_opal(self) -> bool:
        """Hypervisor mode, big-endian: skiboot/OPAL firmware (the LE kernel never runs BE)."""
        return self.hv and not (self.msr & MSR_LE)  # type: ignore[operator]

    @property
    def mode(self) -> str:
        if self.msr is None:
            return "?"
        if self.in_opal:
            return "opal"
        if not self.hv:
            return "guest"
        if self.host_virtual:
            return "host"
        return "real"


# ------------------------------------------------------------------ names
# Display names only (the numbers are what the snapshot carries).  These are
# #defines in the kernel, so neither BTF nor DWARF has them.
# vcore_state (arch/powerpc/include/asm/kvm_host.h) per variant, without the VCORE_ prefix:
# the model's own table (rust/core/src/consts.rs), where the numbering of each variant lives.
VCORE_STATES: dict[str, dict[int, str]] = {
    variant: {value: name.removeprefix("VCORE_") for value, name in _core.vcore_state_names(variant)}
    for variant in _core.variants()
}
# The other numbered fields, from the same table (kvm_asm.h, kvm_book3s_asm.h,
# book3s_hv_rmhandlers.S, kvm_host.h); napping 0 has no kernel name.
GUEST_MODES: dict[int, str] = dict(_core.kernel_names("in_guest", "modern"))
HWTHREAD_STATES: dict[str, dict[int, str]] = {
    variant: dict(_core.kernel_names("hwthread_state", variant)) for variant in _core.variants()
}
NAPPING: dict[int, str] = {0: "-", **dict(_core.kernel_names("napping", "modern"))}
VCPU_STATES: dict[int, str] = dict(_core.kernel_names("vcpu_state", "modern"))


def name_of(table: dict[int, str], value: Any) -> str:
    if value is None:
        return "?"
    return table.get(int(value), str(value))


def thread_list(bitmap: int) -> str:
    """0b1011 -> "{0,1,3}": maps by ptid as the reader thinks of them."""
    return "{" + ",".join(str(i) for i in range(32) if bitmap >> i & 1) + "}"


def entry_exit_text(field: str, value: int) -> str:
    """``field`` (``entry_exit_map``: bitmaps of threads, modern; ``entry_exit_count``: counts,
    seed) with ``value`` decoded: the threads (or how many) entered and exiting."""
    if field == "entry_exit_map":
        text = (
            f"entry_exit_map {value:#x}: entered {thread_list(value & 0xFF)} "
            f"exiting {thread_list((value >> 8) & 0xFF)}"
        )
        if value & 0x10000:
            text += " EXIT_REQ"
        return text
    return f"entry_exit_count {value:#x}: entered {value & 0xFF}, exiting {value >> 8}"
