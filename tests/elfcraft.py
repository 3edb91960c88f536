"""Small ELF64 files built by hand for the kernel-image tests.

Only what the readers look at: a section table (``.text``, ``.modinfo``,
``.BTF``, ``.rela.text`` ...), a symtab whose ``st_other`` carries the ppc64
ELFv2 local-entry bits, and the ELF header's machine and type.  The layout
follows the System V gABI (Elf64_Ehdr, Elf64_Shdr, Elf64_Sym, Elf64_Rela).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

EM_PPC64 = 21
EM_X86_64 = 62
ET_REL = 1
ET_EXEC = 2
SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_RELA = 4
SHT_NOTE = 7
NT_GNU_BUILD_ID = 3
STB_LOCAL = 0
STB_GLOBAL = 1
STT_FUNC = 2
STT_OBJECT = 1
R_PPC64_REL24 = 10


def st_other_for(local_entry: int) -> int:
    """The STO_PPC64_LOCAL bits that encode a local entry of 0, 4, 8, ... 64 bytes."""
    if local_entry == 0:
        return 0
    return (local_entry.bit_length() - 1) << 5


@dataclass
class Sym:
    name: str
    value: int
    size: int
    section: str
    bind: int = STB_GLOBAL
    kind: int = STT_FUNC
    local_entry: int = 0


@dataclass
class Elf:
    """An ELF64 image; ``build()`` gives its bytes."""

    machine: int = EM_PPC64
    etype: int = ET_EXEC
    little: bool = True
    sections: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # name -> (addr, data)
    symbols: list[Sym] = field(default_factory=list)
    relocations: dict[str, list[int]] = field(default_factory=dict)  # section -> offsets

    def section(self, name: str, data: bytes, addr: int = 0) -> Elf:
        self.sections[name] = (addr, data)
        return self

    def symbol(self, *args: object, **kw: object) -> Elf:
        self.symbols.append(Sym(*args, **kw))  # type: ignore[arg-type]
        return self

    def build(self) -> bytes:
        e = "<" if self.little else ">"
        names = list(self.sections)
        index = {n: i + 1 for i, n in enumerate(names)}
        strtab = bytearray(b"\0")
        syms = bytearray(bytes(24))
        ordered = sorted(self.symbols, key=lambda s: s.bind != STB_LOCAL)
        for s in ordered:
            off = len(strtab)
            strtab += s.name.encode() + b"\0"
            info = (s.bind << 4) | s.kind
            syms += struct.pack(
                e + "IBBHQQ", off, info, st_other_for(s.local_entry), index[s.section], s.value, s.size
            )
        n_local = 1 + sum(1 for s in ordered if s.bind == STB_LOCAL)
        symtab_index = len(names) + 1
        extra: list[tuple[str, int, bytes, int, int, int]] = []  # name, type, data, link, info, entsize
        for sec, offsets in self.relocations.items():
            rela = b"".join(struct.pack(e + "QQq", o, (1 << 32) | R_PPC64_REL24, 0) for o in offsets)
            extra.append((".rela" + sec, SHT_RELA, rela, symtab_index, index[sec], 24))
        # symtab links to strtab, which follows the relocation sections
        strtab_index = symtab_index + 1 + len(extra)
        tail = [(".symtab", SHT_SYMTAB, bytes(syms), strtab_index, n_local, 24), *extra]
        tail.append((".strtab", SHT_STRTAB, bytes(strtab), 0, 0, 0))
        shstr = bytearray(b"\0")
        all_names = names + [t[0] for t in tail] + [".shstrtab"]
        name_off = {}
        for n in all_names:
            name_off[n] = len(shstr)
            shstr += n.encode() + b"\0"
        body = bytearray()
        headers = [bytes(64)]
        pos = 64

        def add(name: str, typ: int, data: bytes, addr: int, link: int, info: int, ent: int) -> None:
            nonlocal pos
            headers.append(
                struct.pack(
                    e + "IIQQQQIIQQ", name_off[name], typ, 0, addr, pos, len(data), link, info, 8, ent
                )
            )
            body.extend(data)
            pos += len(data)

        for n in names:
            addr, data = self.sections[n]
            add(n, SHT_NOTE if n.startswith(".note") else SHT_PROGBITS, data, addr, 0, 0, 0)
        for name, typ, data, link, info, ent in tail:
            add(name, typ, data, 0, link, info, ent)
        add(".shstrtab", SHT_STRTAB, bytes(shstr), 0, 0, 0, 0)
        shoff = pos
        ident = b"\x7fELF" + bytes([2, 1 if self.little else 2, 1, 0]) + bytes(8)
        ehdr = ident + struct.pack(
            e + "HHIQQQIHHHHHH",
            self.etype,
            self.machine,
            1,
            0,
            0,
            shoff,
            2,
            64,
            0,
            0,
            64,
            len(headers),
            len(headers) - 1,
        )
        return ehdr + bytes(body) + b"".join(headers)


def btf(types: list[tuple[int, int, int, list[int]]], strings: bytes = b"\0") -> bytes:
    """A little-endian BTF section: types are (name_off, info, size_or_type, tail words)."""
    body = b"".join(struct.pack("<III", n, i, s) + struct.pack(f"<{len(t)}I", *t) for n, i, s, t in types)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(body), len(body), len(strings))
    return hdr + body + strings


def btf_array_of_itself() -> bytes:
    """``struct s { <type #1> a; }`` where type #1 is an array of type #1."""
    strings = b"\0s\0a\0"
    return btf(
        [
            (0, 3 << 24, 0, [1, 1, 2]),  # #1 array: elem #1, index #1, 2 elements
            (1, (4 << 24) | 1, 8, [3, 1, 0]),  # #2 struct s { #1 a; }
        ],
        strings,
    )


def btf_anonymous_self() -> bytes:
    """``struct s { struct s; }``: an anonymous member whose type is its own struct."""
    strings = b"\0s\0"
    return btf([(1, (4 << 24) | 1, 8, [0, 1, 0])], strings)


def kernel(*, banner: str = "Linux version 6.12.95+deb12-powerpc64le (test)", **kw: object) -> Elf:
    """A vmlinux-like ET_EXEC image with a banner and a .text."""
    text_addr = 0xC000000000010000
    data_addr = 0xC000000001000000
    elf = Elf(**kw)  # type: ignore[arg-type]
    elf.section(".text", bytes(0x100), text_addr)
    elf.section(".rodata", banner.encode() + b"\0", data_addr)
    elf.symbol("linux_banner", data_addr, len(banner) + 1, ".rodata", kind=STT_OBJECT)
    return elf


def build_id_note(build_id: bytes) -> bytes:
    """A ``.note.gnu.build-id`` section: one NT_GNU_BUILD_ID note of owner "GNU"."""
    pad = bytes(-len(build_id) % 4)
    return struct.pack("<III", 4, len(build_id), NT_GNU_BUILD_ID) + b"GNU\0" + build_id + pad


def write_vmlinux(path: Path) -> Path:
    """A small file pyvcore accepts as a vmlinux (ppc64le, linux_banner, a tiny .BTF):
    for the command-line tests that need a kernel image but read nothing from it."""
    elf = kernel()
    elf.section(".BTF", btf([(1, 1 << 24, 4, [32])], b"\0int\0"))
    path.write_bytes(elf.build())
    return path
