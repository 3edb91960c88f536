"""Read the vcore state of a ppc64 KVM-HV host out of raw memory.

Everything here works on a :class:`Memory` (``read(addr, size) -> bytes``) and
per-thread register values (:class:`ThreadRegs`), so it runs the same on fake
memory in a unit test and on QEMU's gdbstub inside gdb (``gdb_plugins``
supplies the gdb-backed memory).  Offsets come from :mod:`pyvcore.layout`
(BTF or DWARF), never from constants.

Reads are planned per struct: the fields a snapshot needs are grouped into as
few byte ranges as possible (one range per struct unless the fields are far
apart, like ``kvm_vcpu.cpu`` and ``kvm_vcpu.arch.ptid``), because every read
is a gdbstub round trip.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from pyvcore.layout import Field, LayoutError, Layouts, Struct

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

# Gaps up to this many bytes are read rather than split into two reads: one
# gdbstub round trip costs about as much as 1-2 KB of payload.
MERGE_GAP = 1024
# QEMU's gdbstub packet size is 4096 hex chars, so gdb reads at most 2048
# bytes per 'm' packet; a range larger than that costs several round trips.
MAX_PACKET_BYTES = 2048


class ReadError(Exception):
    """Memory that could not be read (with the address, for the error line)."""

    def __init__(self, addr: int, size: int, why: str = "cannot access memory"):
        super().__init__(f"{why} at {addr:#x} (+{size})")
        self.addr = addr
        self.size = size
        self.why = why


class Memory(Protocol):
    def read(self, addr: int, size: int) -> bytes: ...


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
VCORE_STATES = {
    # arch/powerpc/include/asm/kvm_host.h, since "KVM: PPC: Book3S HV: Implement
    # halt polling" (~v4.7): ordered so that >= SLEEPING needs stolen-time accounting.
    "modern": {
        0: "INACTIVE",
        1: "PREEMPT",
        2: "PIGGYBACK",
        3: "SLEEPING",
        4: "RUNNING",
        5: "EXITING",
        6: "POLLING",
    },
    # v3.14 (the seed commit).
    "seed": {0: "INACTIVE", 1: "SLEEPING", 2: "STARTING", 3: "RUNNING", 4: "EXITING"},
}
VCORE_STATES["prepatch"] = VCORE_STATES["seed"]
GUEST_MODES = {0: "NONE", 1: "GUEST", 2: "SKIP", 3: "GUEST_HV", 4: "HOST_HV", 5: "HV_P9"}
HWTHREAD_STATES = {
    "modern": {0: "IN_KERNEL", 1: "IN_IDLE", 2: "IN_KVM"},
    "seed": {0: "IN_KERNEL", 1: "IN_NAP", 2: "IN_KVM"},
}
HWTHREAD_STATES["prepatch"] = HWTHREAD_STATES["seed"]
NAPPING = {0: "-", 1: "CEDE", 2: "NOVCPU", 3: "UNSPLIT"}
VCPU_STATES = {0: "NOTREADY", 1: "RUNNABLE", 2: "BUSY_IN_HOST"}


def name_of(table: dict[int, str], value: Any) -> str:
    if value is None:
        return "?"
    return table.get(int(value), str(value))


def thread_list(bitmap: int) -> str:
    """0b1011 -> "{0,1,3}": maps by ptid as the reader thinks of them."""
    return "{" + ",".join(str(i) for i in range(32) if bitmap >> i & 1) + "}"


# ------------------------------------------------------------------ plans
def decode_value(f: Field, buf: bytes, at: int, order: str) -> Any:
    """Decode one field from ``buf`` where the field starts at ``at``."""
    if f.kind == "array":
        n, es = f.array_len or 0, f.elem_size or 0
        if f.inner_kind in ("int", "ptr", "enum", "bool") and es in (1, 2, 4, 8):
            return [
                int.from_bytes(
                    buf[at + i * es : at + (i + 1) * es], order, signed=f.signed and f.inner_kind == "int"
                )
                for i in range(n)
            ]
        return bytes(buf[at : at + f.size])
    if f.kind in ("struct", "union"):
        return bytes(buf[at : at + f.size])
    raw = buf[at : at + f.size]
    value = int.from_bytes(raw, order, signed=f.signed)
    if f.bitfield_size:
        shift = f.bit_offset - (f.offset * 8)
        value = (int.from_bytes(raw, order) >> shift) & ((1 << f.bitfield_size) - 1)
    return value


@dataclass
class Plan:
    """Which fields of one struct to read, grouped into byte ranges."""

    struct: Struct
    fields: dict[str, Field]
    ranges: list[tuple[int, int]]

    @classmethod
    def build(
        cls, struct: Struct, wanted: Iterable[str], optional: Iterable[str] = (), merge_gap: int = MERGE_GAP
    ) -> Plan:
        fields: dict[str, Field] = {}
        for path in wanted:
            fields[path] = struct.field(path)
        for path in optional:
            if struct.has(path):
                fields[path] = struct.field(path)
        spans = sorted((f.offset, f.end) for f in fields.values())
        ranges: list[list[int]] = []
        for lo, hi in spans:
            if ranges and lo - ranges[-1][1] <= merge_gap:
                ranges[-1][1] = max(ranges[-1][1], hi)
            else:
                ranges.append([lo, hi])
        return cls(struct, fields, [(lo, hi) for lo, hi in ranges])

    def __post_init__(self) -> None:
        # (path, field, index of its range, offset inside that range), computed
        # once: decoding runs at every breakpoint hit.
        self._where = []
        for path, f in self.fields.items():
            for i, (lo, hi) in enumerate(self.ranges):
                if lo <= f.offset and f.end <= hi:
                    self._where.append((path, f, i, f.offset - lo))
                    break

    def read(self, memory: Memory, addr: int, order: str) -> dict[str, Any]:
        """All planned fields of the struct at ``addr``, keyed by member path."""
        return self.decode([memory.read(addr + lo, hi - lo) for lo, hi in self.ranges], order)

    def decode(self, chunks: list[bytes], order: str) -> dict[str, Any]:
        """Fields from the bytes of each planned range (in ``self.ranges`` order)."""
        out: dict[str, Any] = {}
        for path, f, i, at in self._where:
            if f.kind in ("int", "ptr", "enum", "bool") and not f.bitfield_size:
                out[path] = int.from_bytes(chunks[i][at : at + f.size], order, signed=f.signed)
            else:
                out[path] = decode_value(f, chunks[i], at, order)
        return out

    def offsets(self) -> dict[str, int]:
        return {p: f.offset for p, f in self.fields.items()}


# ------------------------------------------------------------------ xarray
def xa_is_node(entry: int) -> bool:
    """include/linux/xarray.h: internal entries have the low bits 0b10; node
    pointers are the internal entries above 4096 (smaller ones are retry,
    zero and sibling markers)."""
    return entry & 3 == 2 and entry > 4096


def xarray_entries(
    mem: Memory, layouts: Layouts, xa_addr: int, order: str, limit: int = 4096
) -> dict[int, int]:
    """index -> pointer of every present entry of the ``struct xarray`` at ``xa_addr``.

    Used for ``kvm->vcpu_array`` (an xarray since ~v5.16, indexed by vcpu_idx =
    creation order).  One read per node: a VM with up to 64 vcpus is the
    head plus one ``xa_node`` (64 slots)."""
    xa = layouts.struct("xarray")
    head_f = xa.field("xa_head")
    head = int.from_bytes(mem.read(xa_addr + head_f.offset, 8), order)
    if head == 0:
        return {}
    if not xa_is_node(head):
        return {0: head}  # a single entry at index 0 lives in the head itself
    node = layouts.struct("xa_node")
    shift_f, slots_f = node.field("shift"), node.field("slots")
    nslots = slots_f.array_len or 64
    out: dict[int, int] = {}
    todo = [(head - 2, 0)]
    while todo and len(out) < limit:
        addr, base = todo.pop()
        raw = mem.read(addr, slots_f.offset + slots_f.size)
        shift = raw[shift_f.offset]
        for i in range(nslots):
            at = slots_f.offset + 8 * i
            entry = int.from_bytes(raw[at : at + 8], order)
            if entry == 0 or (entry & 3 == 2 and entry <= 4096):
                continue  # empty, or a retry/sibling marker
            index = base + (i << shift)
            if xa_is_node(entry) and shift > 0:
                todo.append((entry - 2, index))
            elif entry & 3 == 0:
                out[index] = entry
    return out


# ------------------------------------------------------------------ the kernel
HSTATE_FIELDS = ("in_guest", "napping", "hwthread_req", "hwthread_state", "ptid", "kvm_vcpu", "kvm_vcore")
# Fields some kernels have: shown in pv-paca, not part of the snapshot contract.
HSTATE_EXTRA = ("host_ipi", "fake_suspend", "kvm_split_mode", "saved_xirr", "dec_expires")
VCORE_FIELDS = (
    "n_runnable",
    "num_threads",
    "napping_threads",
    "first_vcpuid",
    "pcpu",
    "vcore_state",
    "in_guest",
)
VCORE_OPTIONAL = (
    "runner",
    "kvm",
    "n_woken",
    "nap_count",
    "last_cpu",
    "tb_offset_applied",
    "dpdes",
    "conferring_threads",
    "online_count.counter",
    "runnable_threads",
)
VCPU_FIELDS = ("cpu", "vcpu_id", "arch.vcore", "arch.ptid")
VCPU_OPTIONAL = ("vcpu_idx", "arch.thread_cpu", "arch.state", "arch.ceded", "arch.prodded", "arch.trap")
KVM_ARCH_FIELDS = ("arch.lpid", "arch.sdr1")
KVM_ARCH_OPTIONAL = (
    "arch.host_lpid",
    "arch.host_sdr1",
    "arch.smt_mode",
    "arch.online_vcores",
    "vm_list.next",
    "online_vcpus.counter",
    "created_vcpus",
)


class KernelError(Exception):
    """The kernel image lacks something the reader cannot do without."""


@dataclass
class KernelLayout:
    """What this kernel has, decided from its layouts and symbols (not its version).

    * ``paca_ptrs`` (v4.17+, d2e60075a3d4 "powerpc/64: Use array of paca
      pointers") vs the contiguous ``paca`` array before it;
    * ``entry_exit_map`` (~v4.1 "Use bitmap of active threads rather than
      count") vs the seed's ``entry_exit_count``, which picks the model variant.
    """

    layouts: Layouts
    symbol: Callable[[str], int | None]
    little_endian: bool = True
    release: str | None = None

    def __post_init__(self) -> None:
        L = self.layouts
        self.order = "little" if self.little_endian else "big"
        try:
            self.paca = L.struct("paca_struct")
            self.hstate = L.struct("kvmppc_host_state")
            self.vcore = L.struct("kvmppc_vcore")
            self.vcpu = L.struct("kvm_vcpu")
        except LayoutError as e:
            raise KernelError(f"{e} (is this a ppc64 KVM-HV (book3s_64) kernel?)") from e
        if self.symbol("paca_ptrs") is not None:
            self.paca_array = "paca_ptrs"
        elif self.symbol("paca") is not None:
            self.paca_array = "paca"
        else:
            raise KernelError("neither paca_ptrs nor paca in the symbol table: not a ppc64 kernel?")
        if self.vcore.has("entry_exit_map"):
            self.entry_exit = "entry_exit_map"
            self.variant = "modern"
        elif self.vcore.has("entry_exit_count"):
            self.entry_exit = "entry_exit_count"
            self.variant = "seed"
        else:
            raise KernelError("struct kvmppc_vcore has neither entry_exit_map nor entry_exit_count")
        # paca_index .. end of the kvm_hstate fields: one read per PACA.
        hs = [f"kvm_hstate.{n}" for n in HSTATE_FIELDS]
        hs_extra = [f"kvm_hstate.{n}" for n in HSTATE_EXTRA]
        self.paca_plan = Plan.build(
            self.paca, ["paca_index", "hw_cpu_id", *hs], hs_extra, merge_gap=MAX_PACKET_BYTES
        )
        self.vcore_plan = Plan.build(self.vcore, [*VCORE_FIELDS, self.entry_exit], VCORE_OPTIONAL)
        self.vcpu_plan = Plan.build(self.vcpu, VCPU_FIELDS, VCPU_OPTIONAL)
        self.kvm_plan: Plan | None = None
        if L.has_struct("kvm"):
            try:
                self.kvm_plan = Plan.build(L.struct("kvm"), KVM_ARCH_FIELDS, KVM_ARCH_OPTIONAL)
            except LayoutError:
                self.kvm_plan = None

    def describe(self) -> str:
        return (
            f"{self.paca_array}, {self.entry_exit} -> variant {self.variant}, "
            f"layouts from {self.layouts.origin}"
        )


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
    """The result of one pass over the target: snapshot + what pv-* commands show."""

    snapshot: dict[str, Any]
    rows: list[ThreadRow]
    vcores: dict[int, dict[str, Any]]
    vcpus: dict[int, dict[str, Any]]
    kvm: dict[int, dict[str, Any]]
    problems: list[str]


def _u32(buf: bytes, order: str) -> int:
    return int.from_bytes(buf[:4], order)


def _u64(buf: bytes, order: str) -> int:
    return int.from_bytes(buf[:8], order)


class SnapshotReader:
    """Builds contract-2 snapshots from memory + registers; caches what never changes."""

    def __init__(self, kernel: KernelLayout):
        self.k = kernel
        self._pacas: dict[int, int] | None = None  # cpu -> PACA address
        self._hw_to_cpu: dict[int, int] = {}  # PIR -> cpu (static after boot)
        self._threads_per_core: int | None = None
        self._linear_end: int | None = None
        self._kvm_cache: dict[int, dict[str, Any]] = {}

    def reset(self) -> None:
        """Forget cached boot-time values (new connection or new kernel)."""
        self._pacas = None
        self._hw_to_cpu = {}
        self._threads_per_core = None
        self._linear_end = None
        self._kvm_cache = {}

    # -- boot-time constants (read once per connection)
    def threads_per_core(self, mem: Memory) -> int:
        if self._threads_per_core is None:
            addr = self.k.symbol("threads_per_core")
            value = 0
            if addr is not None:
                value = int.from_bytes(mem.read(addr, 4), self.k.order, signed=True)
            self._threads_per_core = value if 0 < value <= 8 else 0
        return self._threads_per_core

    def linear_end(self, mem: Memory) -> int:
        """``high_memory``: end of the linear map (cached; VMALLOC_START if unknown)."""
        if self._linear_end is None:
            addr = self.k.symbol("high_memory")
            value = 0
            if addr is not None:
                try:
                    value = _u64(mem.read(addr, 8), self.k.order)
                except ReadError:
                    value = 0
            self._linear_end = value if KERNEL_BASE < value <= VMALLOC_START else VMALLOC_START
        return self._linear_end

    def paca_addresses(self, mem: Memory) -> dict[int, int]:
        """cpu -> PACA address, from ``paca_ptrs[]`` (or the old ``paca`` array)."""
        if self._pacas is not None:
            return self._pacas
        order = self.k.order
        nr_sym = self.k.symbol("nr_cpu_ids")
        nr = _u32(mem.read(nr_sym, 4), order) if nr_sym is not None else 0
        if not 0 < nr <= 8192:
            raise KernelError(f"nr_cpu_ids reads {nr}: kernel memory not readable yet?")
        base_sym = self.k.symbol(self.k.paca_array)
        assert base_sym is not None
        base = _u64(mem.read(base_sym, 8), order)
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
        self, mem: Memory, regs: list[ThreadRegs], stop: str | None = None, with_kvm: bool = True
    ) -> Reading:
        problems: list[str] = []
        pacas = self.paca_addresses(mem)
        rows: list[ThreadRow] = []
        for r in regs:
            row = ThreadRow(regs=r)
            rows.append(row)
            if r.error:
                row.error = r.error
            cpu = self._hw_to_cpu.get(r.pir) if r.pir is not None else None
            if cpu is not None:
                row.cpu, row.paca = cpu, pacas.get(cpu)
        # PIRs not seen before: read PACAs until every thread is matched
        # ($pir == paca->hw_cpu_id).  Afterwards the map is cached.
        unmatched = [row for row in rows if row.cpu is None and row.regs.pir is not None]
        if unmatched:
            for cpu, addr in sorted(pacas.items()):
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
            if row.cpu is None:
                if row.regs.pir is None:
                    row.error = row.error or "no $pir register (not a POWER gdbstub?)"
                else:
                    row.error = row.error or (f"no PACA has hw_cpu_id == $pir {row.regs.pir:#x}")
                problems.append(f"gdb thread {row.regs.gdb_thread}: {row.error}")
                continue
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
        rows.sort(key=lambda row: (row.cpu is None, row.cpu or 0, row.regs.gdb_thread))

        # vcores and vcpus reachable from the PACAs
        vcore_addrs: list[int] = []
        vcpu_addrs: list[int] = []

        def want(addr: Any, into: list[int], what: str, where: str) -> None:
            if not addr:
                return
            if not is_kernel_pointer(int(addr)):
                problems.append(f"{where}: {what} = {int(addr):#x} is not a kernel address (garbage?)")
                return
            if addr not in into:
                into.append(int(addr))

        for row in rows:
            if row.fields:
                want(row.hstate("kvm_vcore"), vcore_addrs, "kvm_hstate.kvm_vcore", f"cpu {row.cpu}")
                want(row.hstate("kvm_vcpu"), vcpu_addrs, "kvm_hstate.kvm_vcpu", f"cpu {row.cpu}")
        vcores: dict[int, dict[str, Any]] = {}
        vcpus: dict[int, dict[str, Any]] = {}
        i = 0
        while i < len(vcore_addrs):
            addr = vcore_addrs[i]
            i += 1
            try:
                vc = self.read_vcore(mem, addr)
            except ReadError as e:
                problems.append(f"struct kvmppc_vcore at {addr:#x} unreadable: {e}")
                continue
            vcores[addr] = vc
            want(vc.get("runner"), vcpu_addrs, "runner", f"vcore {addr:#x}")
            for p in vc.get("runnable_threads") or []:
                want(p, vcpu_addrs, "runnable_threads[]", f"vcore {addr:#x}")
        for addr in vcpu_addrs:
            try:
                v = self.read_vcpu(mem, addr)
            except ReadError as e:
                problems.append(f"struct kvm_vcpu at {addr:#x} unreadable: {e}")
                continue
            vcpus[addr] = v
            owner = v.get("arch.vcore")
            if owner and owner not in vcores:
                if is_kernel_pointer(owner):
                    try:
                        vcores[owner] = self.read_vcore(mem, owner)
                    except ReadError as e:
                        problems.append(f"struct kvmppc_vcore at {owner:#x} unreadable: {e}")
                else:
                    problems.append(f"vcpu {addr:#x}: arch.vcore = {owner:#x} is not a kernel address")
        kvms: dict[int, dict[str, Any]] = {}
        if with_kvm and self.k.kvm_plan is not None:
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
                    problems.append(
                        f"struct kvm at {kaddr:#x} unreadable: {e.why}"
                        + (
                            ""
                            if is_linear(kaddr, self._linear_end or VMALLOC_START)
                            else " (vmalloc space: needs a thread in host virtual mode)"
                        )
                    )
        if not vcores:
            self._explain_no_vm(mem, problems)
        tpc = 0
        try:
            tpc = self.threads_per_core(mem)
        except ReadError as e:
            problems.append(f"threads_per_core unreadable: {e}")
        snap = self.snapshot_dict(rows, vcores, vcpus, kvms, tpc or len(rows), stop)
        return Reading(snap, rows, vcores, vcpus, kvms, problems)

    def _explain_no_vm(self, mem: Memory, problems: list[str]) -> None:
        """No PACA points at a vcore: say whether any HV guest exists at all.

        ``hv_vm_count`` (book3s_hv_builtin.c, in vmlinux) counts VMs of kvm-hv;
        it is 0 when kvm-hv is not loaded or no guest was created yet."""
        addr = self.k.symbol("hv_vm_count")
        if addr is None:
            return
        try:
            count = int.from_bytes(mem.read(addr, 4), self.k.order, signed=True)
        except ReadError:
            return
        if count == 0:
            problems.append(
                "kvm-hv: no HV guest exists (hv_vm_count = 0): kvm-hv not loaded or no VM created yet"
            )

    def snapshot_dict(
        self,
        rows: list[ThreadRow],
        vcores: dict[int, dict[str, Any]],
        vcpus: dict[int, dict[str, Any]],
        kvms: dict[int, dict[str, Any]],
        threads_per_core: int,
        stop: str | None,
    ) -> dict[str, Any]:
        """Contract 2: the snapshot JSON object (kernel field names, pointers as ints)."""
        snap: dict[str, Any] = {"variant": self.k.variant, "threads_per_core": threads_per_core}
        if stop:
            snap["stop"] = stop
        threads = []
        for row in rows:
            if row.cpu is None or not row.fields:
                continue
            t: dict[str, Any] = {
                "cpu": int(row.fields.get("paca_index", row.cpu)),
                "hw_cpu_id": int(row.fields.get("hw_cpu_id", row.regs.pir or 0)),
                "kvm_hstate": {n: int(row.hstate(n) or 0) for n in HSTATE_FIELDS},
            }
            for reg in ("lpidr", "sdr1", "hdec"):
                value = getattr(row.regs, reg)
                if value is not None:
                    t[reg] = int(value)
            threads.append(t)
        snap["threads"] = threads
        snap["vcores"] = []
        for addr, vc in vcores.items():
            d: dict[str, Any] = {"addr": addr}
            for n in (*VCORE_FIELDS, self.k.entry_exit, "runner", "n_woken", "nap_count", "kvm"):
                if n in vc:
                    d[n] = int(vc[n])
            snap["vcores"].append(d)
        snap["vcpus"] = []
        for addr, v in vcpus.items():
            d = {
                "addr": addr,
                "vcpu_id": int(v["vcpu_id"]),
                "vcore": int(v["arch.vcore"]),
                "ptid": int(v["arch.ptid"]),
                "cpu": int(v["cpu"]),
            }
            for key, path in (
                ("thread_cpu", "arch.thread_cpu"),
                ("state", "arch.state"),
                ("ceded", "arch.ceded"),
            ):
                if path in v:
                    d[key] = int(v[path])
            snap["vcpus"].append(d)
        if kvms:
            k = next(iter(kvms.values()))
            kd: dict[str, Any] = {"lpid": int(k.get("arch.lpid", 0)), "sdr1": int(k.get("arch.sdr1", 0))}
            for key in ("host_lpid", "host_sdr1"):
                if f"arch.{key}" in k:
                    kd[key] = int(k[f"arch.{key}"])
            snap["kvm"] = kd
        return snap


# ELFv2 (ppc64le) global entry prologues of a C function, setting up the TOC
# pointer r2 from the entry address in r12: vmlinux uses `addis r2,r12,hi;
# addi r2,r2,lo`; modules (large code model) `ld r2,-8(r12); add r2,r2,r12`.
_ADDIS_R2_R12 = 0x3C4C0000
_ADDI_R2_R2 = 0x38420000
_LD_R2_R12 = 0xE84C0000
_ADD_R2_R2_R12 = 0x7C426214


def elfv2_local_entry_offset(code: bytes) -> int:
    """Offset of a function's local entry from its symbol, given its first 8 bytes.

    8 when the code starts with an ELFv2 global-entry TOC set-up (callers that
    share the TOC branch past it, so a breakpoint on the symbol is never hit),
    else 0 (real-mode asm labels, functions without a TOC).

    >>> elfv2_local_entry_offset(bytes.fromhex("f8ff4ce81462427c"))  # ld r2,-8(r12); add r2,r2,r12
    8
    """
    if len(code) < 8:
        return 0
    first, second = struct.unpack_from("<II", code)
    if (first & 0xFFFF0000) == _ADDIS_R2_R12 and (second & 0xFFFF0000) == _ADDI_R2_R2:
        return 8
    if (first & 0xFFFF0000) == _LD_R2_R12 and second == _ADD_R2_R2_R12:
        return 8
    return 0
