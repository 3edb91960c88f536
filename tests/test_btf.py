"""Struct layouts from the Rust BTF reader equal what pahole reports for the same vmlinux.

Needs a ppc64 vmlinux with .BTF: $PYVCORE_VMLINUX, else the kernel `pyvcore lab
setup` unpacked (KernelManifest), else the test is skipped saying so.  The
reader's error paths are tested on files every machine has.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import elfcraft
import pytest

from pyvcore._core import ImageError, KernelImage, module_symbols
from pyvcore.layout import LayoutError, Layouts

STRUCTS = [
    "paca_struct",
    "kvmppc_host_state",
    "kvmppc_vcore",
    "kvm_vcpu",
    "kvm_vcpu_arch",
    "kvm",
    "kvm_arch",
    "list_head",
    "kvm_split_mode",
    "module",
]


def find_vmlinux() -> Path | None:
    env = os.environ.get("PYVCORE_VMLINUX")
    if env:
        return Path(env)
    try:
        from pyvcore.lab.cache import KernelManifest

        manifest = KernelManifest.load()
        if manifest is not None and Path(manifest.vmlinux).is_file():
            return Path(manifest.vmlinux)
    except Exception:
        pass
    found = sorted(glob.glob("/tmp/warm/k/root/boot/vmlinux-*"))
    return Path(found[0]) if found else None


VMLINUX = find_vmlinux()
needs_vmlinux = pytest.mark.skipif(
    VMLINUX is None, reason="no ppc64 vmlinux: run `pyvcore lab setup` or set PYVCORE_VMLINUX"
)
needs_pahole = pytest.mark.skipif(
    shutil.which("pahole") is None, reason="pahole (dwarves) not installed: `pyvcore lab setup` installs it"
)

# One top-level member line of `pahole -C`: exactly one tab of indent, the
# declaration, then /* offset size */ or /* offset: bit size */ for bitfields.
MEMBER = re.compile(
    r"^\t(?!\t)(?P<decl>.*?);\s*/\*\s*(?P<off>\d+)(?::\s*(?P<bit>\d+))?\s+(?P<size>\d+)\s*\*/"
)
SIZE = re.compile(r"/\* size: (\d+),")


def pahole_members(struct: str, module: Path | None = None) -> tuple[int, list[tuple[str, int, int]]]:
    argv = ["pahole", "-F", "btf", "-C", struct, str(VMLINUX)]
    if module is not None:  # split BTF of a module on top of vmlinux
        argv = ["pahole", "-F", "btf", "--btf_base", str(VMLINUX), "-C", struct, str(module)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    members = []
    size = -1
    for line in out.splitlines():
        m = MEMBER.match(line)
        if m:
            decl = m["decl"]
            if decl.strip() == "}":
                name = ""  # anonymous struct/union member
            else:
                decl = re.sub(r"\s*__attribute__\(\(.*\)\)", "", decl)  # alignment notes
                decl = re.sub(r"\s*:\s*\d+$", "", decl)  # bitfield width
                decl = re.sub(r"(\[\d*\])+$", "", decl)  # array dimensions
                fn = re.search(r"\(\*\s*(\w+)\)\s*\(", decl)  # function pointer
                name = fn.group(1) if fn else re.findall(r"\w+", decl)[-1]
            members.append((name, int(m["off"]), int(m["size"])))
        s = SIZE.search(line)
        if s and line.startswith("\t/* size"):
            size = int(s.group(1))
    return size, members


@pytest.fixture(scope="module")
def image() -> KernelImage:
    return KernelImage(str(VMLINUX))


@needs_vmlinux
@needs_pahole
@pytest.mark.parametrize("struct", STRUCTS)
def test_layout_equals_pahole(image: KernelImage, struct: str) -> None:
    size, expected = pahole_members(struct)
    layout = image.struct_layout(struct)
    assert layout["size"] == size
    got = [(m["name"], m["offset"], m["size"]) for m in layout["members"]]
    assert got == expected


@needs_vmlinux
def test_image_facts(image: KernelImage) -> None:
    assert image.machine == "PowerPc64"
    assert image.little_endian
    assert image.has_btf
    assert image.release and image.release[0].isdigit()
    assert image.banner.startswith("Linux version ")
    assert image.symbol("paca_ptrs") is not None
    # local labels of the real-mode code are in the symtab (pv-watch needs them)
    info = image.symbol_info("kvm_do_nap")
    assert info is not None and info["local"] and info["section"] == ".text"
    # ELFv2 local entries from st_other, as `readelf -s` shows them
    nap = image.symbol("kvm_do_nap")
    assert nap is not None and nap.local_entry == 0 and nap.local
    exit_ = image.symbol("kvmhv_commence_exit")
    assert exit_ is not None and exit_.local_entry == 8 and not exit_.local
    assert image.symbol("no_such_symbol_xyz") is None


@needs_vmlinux
def test_unknown_struct_is_key_error(image: KernelImage) -> None:
    with pytest.raises(KeyError, match="no type named no_such_struct"):
        image.struct_layout("no_such_struct")


@needs_vmlinux
def test_anonymous_member_by_id(image: KernelImage) -> None:
    paca = image.struct_layout("paca_struct")
    anon = [m for m in paca["members"] if not m["name"]]
    assert anon, "paca_struct has anonymous unions in 6.12"
    inner = image.layout_by_id(anon[0]["type_id"])
    assert inner["size"] == anon[0]["size"]


def test_not_elf(tmp_path: Path) -> None:
    bad = tmp_path / "vmlinux"
    bad.write_bytes(b"\x7fELF garbage")
    with pytest.raises(ValueError, match="not an ELF file"):
        KernelImage(str(bad))


def test_not_ppc64() -> None:
    with pytest.raises(ValueError, match="not a ppc64 kernel"):
        KernelImage(sys.executable if Path(sys.executable).is_file() else "/bin/sh")


def test_missing_file_names_the_path_once() -> None:
    with pytest.raises(FileNotFoundError) as e:
        KernelImage("/nonexistent/vmlinux")
    assert str(e.value).count("/nonexistent/vmlinux") == 1, str(e.value)


def test_crafted_symbols_carry_local_entry(tmp_path: Path) -> None:
    elf = elfcraft.kernel()
    elf.symbol("c_function", 0xC000000000010040, 0x40, ".text", local_entry=8)
    elf.symbol("asm_label", 0xC000000000010080, 0, ".text", bind=elfcraft.STB_LOCAL)
    path = tmp_path / "vmlinux"
    path.write_bytes(elf.build())
    image = KernelImage(str(path))
    sym = image.symbol("c_function")
    assert sym is not None
    assert (sym.address, sym.size, sym.local_entry, sym.section, sym.local) == (
        0xC000000000010040,
        0x40,
        8,
        ".text",
        False,
    )
    label = image.symbol("asm_label")
    assert label is not None and label.local_entry == 0 and label.local
    assert image.address("c_function") == 0xC000000000010040
    assert image.release == "6.12.95+deb12-powerpc64le"
    assert image.file_offset("c_function", 4, 4) == image.file_offset("c_function") + 4
    with pytest.raises(ImageError, match="past the end of the symbol"):
        image.file_offset("c_function", 0x40, 4)
    with pytest.raises(ImageError, match="no symbol nope"):
        image.file_offset("nope")


def test_crafted_module_symbols_are_section_relative(tmp_path: Path) -> None:
    elf = elfcraft.Elf(etype=elfcraft.ET_REL)
    elf.section(".text", bytes(0x80)).section(".modinfo", b"vermagic=6.12.95 SMP mod_unload \0name=x\0")
    elf.symbol("f", 0x20, 0x20, ".text", local_entry=4)
    elf.relocations[".text"] = [0x24, 0x60]
    path = tmp_path / "x.ko"
    path.write_bytes(elf.build())
    image = KernelImage(str(path))
    assert image.relocatable
    f = image.symbol("f")
    assert f is not None and (f.address, f.local_entry, f.section) == (0x20, 4, ".text")
    assert dict(image.modinfo)["vermagic"] == "6.12.95 SMP mod_unload "
    assert image.relocations_in(".text", 0x20, 8) == [0x24]
    assert image.relocations_in(".text", 0x28, 8) == []
    assert module_symbols(path.read_bytes())["f"] == (".text", 0x20)


def test_corrupt_btf_is_named_not_absent(tmp_path: Path) -> None:
    path = tmp_path / "vmlinux"
    # a header that promises 1000 bytes of types in a 32-byte section
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 1000, 1000, 10)
    path.write_bytes(elfcraft.kernel().section(".BTF", header + bytes(8)).build())
    image = KernelImage(str(path))
    assert not image.has_btf
    assert image.btf_error is not None and "corrupt .BTF" in image.btf_error
    with pytest.raises(ImageError, match=r"corrupt \.BTF"):
        image.struct_layout("anything")


def test_btf_array_of_itself_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "vmlinux"
    path.write_bytes(elfcraft.kernel().section(".BTF", elfcraft.btf_array_of_itself()).build())
    image = KernelImage(str(path))
    assert image.has_btf
    with pytest.raises(ImageError, match="refers back to itself"):
        image.struct_layout("s")


def test_struct_containing_itself_anonymously_is_a_layout_error(tmp_path: Path) -> None:
    path = tmp_path / "vmlinux"
    path.write_bytes(elfcraft.kernel().section(".BTF", elfcraft.btf_anonymous_self()).build())
    layouts = Layouts(KernelImage(str(path)), "BTF")
    with pytest.raises(LayoutError, match="contains itself"):
        layouts.struct("s").field("x")


def test_module_symbols_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        module_symbols(b"not an elf")


def kvm_hv_ko() -> Path | None:
    try:
        from pyvcore.lab.cache import KernelManifest

        manifest = KernelManifest.load()
        path = Path(manifest.modules["kvm_hv"]) if manifest else None
        return path if path and path.is_file() else None
    except Exception:
        return None


@needs_vmlinux
@pytest.mark.skipif(kvm_hv_ko() is None, reason="no decompressed kvm-hv.ko (`pyvcore lab setup`)")
def test_split_btf_of_kvm_hv(image: KernelImage) -> None:
    # preempted_vcore_list exists only in kvm-hv.ko; kvm_resize_hpt is only
    # forward-declared in vmlinux and defined in the module.
    with pytest.raises((KeyError, ValueError)):
        image.struct_layout("preempted_vcore_list")
    assert image.add_module_btf("kvm_hv", kvm_hv_ko().read_bytes())
    names = [m["name"] for m in image.struct_layout("preempted_vcore_list")["members"]]
    assert names == ["list", "lock"]
    assert image.struct_layout("kvm_resize_hpt")["size"] > 0
    assert image.struct_layout("kvmppc_vcore")["size"] == 240  # vmlinux types still first
    if shutil.which("pahole"):
        for struct in ("preempted_vcore_list", "kvm_resize_hpt"):
            size, expected = pahole_members(struct, kvm_hv_ko())
            layout = image.struct_layout(struct)
            assert layout["size"] == size
            assert [(m["name"], m["offset"], m["size"]) for m in layout["members"]] == expected
