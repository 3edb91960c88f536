"""The read plan: which byte ranges of a struct to fetch, and how to decode them.

Every read through QEMU's gdbstub is a round trip, so the fields a snapshot
needs are grouped into as few ranges as possible (one per struct unless the
fields are far apart, like ``kvm_vcpu.cpu`` and ``kvm_vcpu.arch.ptid``).
Works on any :class:`Memory` (``read(addr, size) -> bytes``): fake memory in
tests, gdb-backed memory inside gdb.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pyvcore.layout import Field, Struct

# Gaps up to this many bytes are read rather than split into two reads: one
# gdbstub round trip costs about as much as 1-2 KB of payload.
MERGE_GAP = 1024
# QEMU's gdbstub packet size is 4096 hex chars, so gdb reads at most 2048
# bytes per 'm' packet; a range larger than that costs several round trips
# (QEMU gdbstub/gdbstub.c handle_read_mem refuses more than
# MAX_PACKET_LENGTH / 2).
MAX_PACKET_BYTES = 2048


class ReadError(Exception):
    """Memory that could not be read (with the address, for the error line)."""

    def __init__(self, addr: int, size: int, why: str = "cannot access memory"):
        super().__init__(f"{why} at {addr:#x} (+{size})")
        self.addr = addr
        self.size = size
        self.why = why


# Byte order of the kernel's memory, as int.from_bytes takes it.
ByteOrder = Literal["little", "big"]


def byte_order(order: str) -> ByteOrder:
    """``order`` checked to be one int.from_bytes takes."""
    if order == "little":
        return "little"
    if order == "big":
        return "big"
    raise ValueError(f"byte order {order!r} is neither little nor big")


class Memory(Protocol):
    def read(self, addr: int, size: int) -> bytes: ...


def decode_value(f: Field, buf: bytes, at: int, order: str) -> Any:
    """Decode one field from ``buf`` where the field starts at ``at``
    (``order``: "little" or "big")."""
    order = byte_order(order)
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

    def read(self, memory: Memory, addr: int, order: ByteOrder) -> dict[str, Any]:
        """All planned fields of the struct at ``addr``, keyed by member path."""
        return self.decode([memory.read(addr + lo, hi - lo) for lo, hi in self.ranges], order)

    def decode(self, chunks: list[bytes], order: ByteOrder) -> dict[str, Any]:
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


def coalesce(
    requests: list[tuple[int, int]], max_bytes: int = MAX_PACKET_BYTES
) -> list[tuple[int, int, list[int]]]:
    """Group byte ranges of *different* objects into reads of at most
    ``max_bytes`` each: ``requests`` is ``[(addr, size), ...]``, the result
    ``[(addr, size, [indices of the requests it covers]), ...]`` by address.

    Ranges are grouped while the group's whole span fits one ``m`` packet:
    the bytes in between cost less than the round trip saved (a 2 KB reply
    takes about as long as one more 8-byte request).  The kernel places some
    such objects next to each other, e.g. the PACAs of the secondary cpus,
    allocated one after the other by arch/powerpc/kernel/paca.c
    ``allocate_paca`` (each followed by its SLB shadow)."""
    order = sorted(range(len(requests)), key=lambda i: requests[i][0])
    groups: list[tuple[int, int, list[int]]] = []  # (lo, hi, indices)
    for i in order:
        addr, size = requests[i]
        if groups and max(groups[-1][1], addr + size) - groups[-1][0] <= max_bytes:
            lo, hi, idx = groups[-1]
            groups[-1] = (lo, max(hi, addr + size), [*idx, i])
        else:
            groups.append((addr, addr + size, [i]))
    return [(lo, hi - lo, idx) for lo, hi, idx in groups]


def read_many(memory: Memory, requests: list[tuple[int, int]]) -> list[bytes | ReadError]:
    """The bytes of each ``(addr, size)`` in ``requests``, read in as few
    requests as :func:`coalesce` allows.  A group that cannot be read is
    read again range by range, so one unreadable object costs only its own
    entry (a :class:`ReadError` in its place), never its neighbours'."""
    out: list[bytes | ReadError] = [b""] * len(requests)
    for lo, size, idx in coalesce(requests):
        try:
            chunk = memory.read(lo, size) if len(idx) > 1 else None
        except ReadError:
            chunk = None
        for i in idx:
            addr, n = requests[i]
            if chunk is not None:
                out[i] = chunk[addr - lo : addr - lo + n]
                continue
            try:
                out[i] = memory.read(addr, n)
            except ReadError as e:
                out[i] = e
    return out
