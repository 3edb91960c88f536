"""Write the seed corpus of the fuzz targets (run from the repository root:
``python rust/fuzz/make_corpus.py``).  The seeds are small crafted inputs,
one per kind of corruption the readers must survive, plus -- when the lab's
kernel is unpacked -- the first 4 KiB of the real vmlinux's ``.BTF`` (the
header and the first types) and of kvm-hv.ko (ELF header, first sections).
The 300 MB image itself is never copied."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import elfcraft  # noqa: E402

CORPUS = Path(__file__).parent / "corpus"

INT = 1 << 24
PTR = 2 << 24
ARRAY = 3 << 24
STRUCT = 4 << 24
TYPEDEF = 8 << 24


def btf_seeds() -> dict[str, bytes]:
    s = b"\0s\0a\0int\0t\0"
    return {
        "struct": elfcraft.btf(
            [
                (7, INT, 4, [32]),  # #1 int
                (0, ARRAY, 0, [1, 1, 4]),  # #2 int[4]
                (0, PTR, 3, []),  # #3 pointer to the struct
                (1, STRUCT | 3, 32, [3, 1, 0, 3, 2, 32, 3, 3, 192]),  # #4 struct s
            ],
            s,
        ),
        "array_of_itself": elfcraft.btf_array_of_itself(),
        "anonymous_self": elfcraft.btf_anonymous_self(),
        "typedef_cycle": elfcraft.btf(
            [(11, TYPEDEF, 2, []), (11, TYPEDEF, 1, []), (1, STRUCT | 1, 4, [3, 1, 0])], s
        ),
        "nested_arrays": elfcraft.btf(
            [(7, INT, 4, [32])]
            + [(0, ARRAY, 0, [i, i, 1]) for i in range(1, 40)]
            + [(1, STRUCT | 1, 4, [3, 40, 0])],
            s,
        ),
        "huge_array": elfcraft.btf(
            [
                (1, STRUCT, 0xFFFFFFFF, []),
                (0, ARRAY, 0, [1, 1, 0xFFFFFFFF]),
                (0, ARRAY, 0, [2, 2, 0xFFFFFFFF]),
            ],
            s,
        ),
        "truncated_header": struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 1000, 1000, 10) + bytes(8),
    }


def lab_files() -> tuple[Path | None, Path | None]:
    manifest = Path.home() / ".cache/pyvcore/kernel/current.json"
    if not manifest.is_file():
        return None, None
    m = json.loads(manifest.read_text())
    vmlinux = Path(m["vmlinux"])
    kvm_hv = Path(m.get("modules", {}).get("kvm_hv", ""))
    return (vmlinux if vmlinux.is_file() else None, kvm_hv if kvm_hv.is_file() else None)


def main() -> None:
    btf_dir = CORPUS / "btf_layouts"
    elf_dir = CORPUS / "elf_image"
    btf_dir.mkdir(parents=True, exist_ok=True)
    elf_dir.mkdir(parents=True, exist_ok=True)
    for name, data in btf_seeds().items():
        (btf_dir / name).write_bytes(data)
        kernel = elfcraft.kernel().section(".BTF", data)
        kernel.symbol("f", 0xC000000000010040, 0x40, ".text", local_entry=8)
        (elf_dir / f"vmlinux_{name}").write_bytes(kernel.build())
    module = elfcraft.Elf(etype=elfcraft.ET_REL)
    module.section(".text", bytes(0x80)).section(".modinfo", b"vermagic=6.12.95 SMP mod_unload \0")
    module.symbol("f", 0x20, 0x20, ".text", local_entry=8)
    module.relocations[".text"] = [0x24]
    (elf_dir / "module").write_bytes(module.build())
    (elf_dir / "big_endian").write_bytes(elfcraft.kernel(little=False).build())
    vmlinux, kvm_hv = lab_files()
    if vmlinux is not None:
        with vmlinux.open("rb") as fh:
            data = fh.read()
        start = data.find(b"\x9f\xeb\x01\x00")  # BTF magic, version 1, flags 0 (LE)
        if start >= 0:
            (btf_dir / "vmlinux_6.12_btf_head").write_bytes(data[start : start + 4096])
    if kvm_hv is not None:
        (elf_dir / "kvm_hv_6.12_head").write_bytes(kvm_hv.read_bytes()[:4096])


if __name__ == "__main__":
    main()
