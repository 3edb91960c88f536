"""ELFv2 local-entry offsets from a file's symbol table (``st_other``), for
pyvcore builds whose ``KernelImage.symbol`` does not give ``local_entry``.

ELF64 layout: System V gABI (section headers, Elf64_Sym).  ``st_other`` bits
5-7 encode the distance from the global to the local entry (64-bit ELF V2
ABI, "Symbol Values"; binutils ``ppc64_decode_local_entry``): 0 and 1 mean
one entry point, 2..6 mean 4, 8, 16, 32, 64 bytes.
"""

from __future__ import annotations

import mmap
import struct

SHT_SYMTAB = 2
# st_other >> 5 -> local entry offset in bytes (ELFv2 ABI, "Symbol Values")
LOCAL_ENTRY_BYTES = {0: 0, 1: 0, 2: 4, 3: 8, 4: 16, 5: 32, 6: 64}


_cache: dict[str, dict[str, int]] = {}


def local_entry(path: str, name: str) -> int:
    """Local-entry offset (bytes) of symbol ``name`` of the ELF64 LE file at
    ``path``; 0 for a symbol with one entry point.  One pass per file (cached)."""
    table = _cache.get(path)
    if table is None:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            table = _cache[path] = _nonzero_local_entries(path, data)
    return table.get(name, 0)


def _nonzero_local_entries(path: str, data: mmap.mmap) -> dict[str, int]:
    """name -> offset of every symbol whose st_other gives a second entry point."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    out: dict[str, int] = {}
    for i in range(shnum):
        sh = shoff + i * shentsize
        _, sh_type, _, _, off, size, link, _, _, entsize = struct.unpack_from("<IIQQQQIIQQ", data, sh)
        if sh_type != SHT_SYMTAB or entsize != 24:
            continue
        stroff = struct.unpack_from("<Q", data, shoff + link * shentsize + 0x18)[0]
        for at in range(off, off + size, 24):
            st_name, _, st_other = struct.unpack_from("<IBB", data, at)
            if st_other >> 5 < 2:
                continue
            start = stroff + st_name
            name = data[start : data.find(b"\0", start)].decode("ascii", "replace")
            out[name] = LOCAL_ENTRY_BYTES.get(st_other >> 5, 0)
    return out
