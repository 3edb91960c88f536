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
import subprocess
import sys
from pathlib import Path

import pytest

from pyvcore._core import KernelImage, module_symbols

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


def test_missing_file() -> None:
    with pytest.raises(OSError, match="cannot read kernel image"):
        KernelImage("/nonexistent/vmlinux")


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
