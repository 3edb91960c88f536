"""validate_kernel: one line per refusal, on small crafted ELF files, and the lab's real kernel."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import elfcraft
import pytest

from pyvcore.kernel import KernelInfo, KernelRefused, validate_kernel

HOOKS = ("kvmppc_hv_entry", "kvm_do_nap", "kvmppc_run_core", "kvmppc_start_thread")
RELEASE = "6.12.95+deb12-powerpc64le"
TEXT = 0xC000000000010000


def tiny_btf() -> bytes:
    return elfcraft.btf([(1, 1 << 24, 4, [32])], b"\0int\0")


def vmlinux(
    tmp_path: Path, *, btf: bytes | None = None, symbols: tuple[str, ...] = HOOKS[:2], **kw: object
) -> Path:
    elf = elfcraft.kernel(**kw)  # type: ignore[arg-type]
    if btf is not None:
        elf.section(".BTF", btf)
    for i, name in enumerate(symbols):
        elf.symbol(name, TEXT + 16 * i, 0, ".text", bind=elfcraft.STB_LOCAL)
    path = tmp_path / "vmlinux"
    path.write_bytes(elf.build())
    return path


def module(
    directory: Path, file: str, vermagic: str, symbols: tuple[str, ...] = (), xz: bool = False
) -> Path:
    elf = elfcraft.Elf(etype=elfcraft.ET_REL)
    elf.section(".text", bytes(0x100)).section(".modinfo", f"vermagic={vermagic} SMP mod_unload \0".encode())
    for i, name in enumerate(symbols):
        elf.symbol(name, 0x10 * i, 0x10, ".text", local_entry=8)
    data = elf.build()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (file + (".xz" if xz else ""))
    path.write_bytes(lzma.compress(data) if xz else data)
    return path


def modules(tmp_path: Path, vermagic: str = RELEASE, hv_symbols: tuple[str, ...] = HOOKS[2:]) -> Path:
    d = tmp_path / "lib/modules/x/kernel/arch/powerpc/kvm"
    module(d, "kvm.ko", vermagic)
    module(d, "kvm-hv.ko", vermagic, hv_symbols, xz=True)
    return tmp_path / "lib"


def refused(*args: object, **kw: object) -> list[str]:
    with pytest.raises(KernelRefused) as e:
        validate_kernel(*args, hook_points=kw.pop("hook_points", HOOKS), **kw)  # type: ignore[arg-type]
    assert all("\n" not in r for r in e.value.reasons)
    assert str(e.value) == "\n".join(e.value.reasons)
    return e.value.reasons


def test_valid_crafted_kernel_with_modules(tmp_path: Path) -> None:
    info = validate_kernel(vmlinux(tmp_path, btf=tiny_btf()), modules(tmp_path), hook_points=HOOKS)
    assert isinstance(info, KernelInfo)
    assert (info.release, info.debug_info, info.page_size) == (RELEASE, "BTF", 4096)
    assert info.kvm_hv.endswith("kvm-hv.ko.xz") and info.kvm.endswith("kvm.ko")
    assert info.hook_points == {
        "kvmppc_hv_entry": "vmlinux",
        "kvm_do_nap": "vmlinux",
        "kvmppc_run_core": "kvm-hv.ko",
        "kvmppc_start_thread": "kvm-hv.ko",
    }
    assert info.variant is None  # no paca_struct in this BTF: nothing to decide it from


def test_built_in_kvm_hv_needs_no_modules(tmp_path: Path) -> None:
    info = validate_kernel(vmlinux(tmp_path, btf=tiny_btf(), symbols=HOOKS), hook_points=HOOKS)
    assert (info.kvm, info.kvm_hv) == ("built in", "built in")


def test_not_ppc64le(tmp_path: Path) -> None:
    [line] = refused(vmlinux(tmp_path, btf=tiny_btf(), machine=elfcraft.EM_X86_64))
    assert "not a ppc64 kernel" in line and "X86_64" in line
    [line] = refused(vmlinux(tmp_path, btf=tiny_btf(), little=False))
    assert "big-endian" in line
    bad = tmp_path / "text"
    bad.write_text("hello")
    [line] = refused(bad)
    assert "not an ELF file" in line


def test_no_kvm_hv_for_power8(tmp_path: Path) -> None:
    [line] = refused(vmlinux(tmp_path, btf=tiny_btf(), symbols=()), modules(tmp_path), hook_points=HOOKS[2:])
    assert "no KVM-HV for POWER8" in line and "kvmppc_hv_entry, kvm_do_nap" in line


def test_kvm_hv_neither_built_in_nor_given(tmp_path: Path) -> None:
    [line] = refused(vmlinux(tmp_path, btf=tiny_btf()), hook_points=HOOKS[:2])
    assert "kvm-hv is not built in" in line


def test_neither_btf_nor_dwarf(tmp_path: Path) -> None:
    [line] = refused(vmlinux(tmp_path), modules(tmp_path))
    assert "neither BTF nor DWARF" in line


def test_corrupt_btf_is_named(tmp_path: Path) -> None:
    [line] = refused(vmlinux(tmp_path, btf=elfcraft.btf_array_of_itself()[:30]), modules(tmp_path))
    assert "corrupt .BTF" in line and "neither" not in line


def test_vermagic_mismatch(tmp_path: Path) -> None:
    lines = refused(vmlinux(tmp_path, btf=tiny_btf()), modules(tmp_path, vermagic="6.1.0-31-powerpc64le"))
    assert len(lines) == 2  # kvm.ko and kvm-hv.ko, one line each
    assert all(
        "built for kernel 6.1.0-31-powerpc64le (vermagic)" in line and RELEASE in line for line in lines
    )


def test_missing_module_is_named(tmp_path: Path) -> None:
    d = tmp_path / "mods"
    module(d, "kvm.ko", RELEASE)
    [line] = refused(vmlinux(tmp_path, btf=tiny_btf()), d, hook_points=HOOKS[:2])
    assert "no kvm-hv.ko" in line


def test_missing_hook_symbol_is_named(tmp_path: Path) -> None:
    [line] = refused(vmlinux(tmp_path, btf=tiny_btf()), modules(tmp_path, hv_symbols=("kvmppc_run_core",)))
    assert line == "hook point kvmppc_start_thread: no such symbol in vmlinux or kvm-hv"


def test_several_failures_one_line_each(tmp_path: Path) -> None:
    lines = refused(vmlinux(tmp_path, symbols=()), modules(tmp_path, vermagic="5.0"))
    assert len(lines) == 4, lines  # no BTF/DWARF, no P8 KVM-HV, two vermagics


def lab_kernel() -> dict[str, str] | None:
    manifest = Path.home() / ".cache/pyvcore/kernel/current.json"
    if not manifest.is_file():
        return None
    m = json.loads(manifest.read_text())
    return {"vmlinux": m["vmlinux"], "modules": str(Path(m["modules"]["kvm_hv"]).parent)}


@pytest.mark.skipif(lab_kernel() is None, reason="no lab kernel: run `pyvcore lab setup`")
def test_lab_kernel_is_valid() -> None:
    k = lab_kernel()
    assert k is not None
    hooks = (*HOOKS, "kvmhv_commence_exit", "kvmhv_switch_to_host", "kvmppc_primary_no_guest")
    info = validate_kernel(k["vmlinux"], k["modules"], hook_points=hooks)
    assert info.release.startswith("6.12.")
    assert (info.debug_info, info.variant, info.page_size) == ("BTF", "modern", 4096)
    assert info.hook_points["kvmppc_run_core"] == "kvm-hv.ko"
    assert info.hook_points["kvmhv_commence_exit"] == "vmlinux"


def test_a_refusal_names_only_the_first_problem_when_the_others_follow_from_it(tmp_path: Path) -> None:
    # kvm-hv neither built in nor given: its hook points are missing because of that, not also
    [line] = refused(vmlinux(tmp_path, btf=tiny_btf()))
    assert "kvm-hv is not built in" in line
    # a modules directory without kvm-hv.ko: the same
    empty = tmp_path / "ko"
    empty.mkdir()
    lines = refused(vmlinux(tmp_path, btf=tiny_btf()), empty)
    assert all(line.startswith(f"modules {empty}: no kvm") for line in lines), lines


def test_a_debian_package_given_as_the_kernel_says_which_file_to_give(tmp_path: Path) -> None:
    from pyvcore.kernel import check_vmlinux

    deb = tmp_path / "linux-image-6.1.0-50-powerpc64le_6.1.176-1_ppc64el.deb"
    deb.write_bytes(b"!<arch>\ndebian-binary   1700000000  0     0     100644  4         `\n2.0\n")
    [line] = refused(deb)
    assert line.startswith(f"kernel {deb}: a Debian package, not a kernel image: give the vmlinux inside it")
    assert "dpkg-deb -x" in line and "6.12" in line and "not an ELF" not in line
    with pytest.raises(KernelRefused, match="a Debian package") as caught:
        check_vmlinux(deb, what="--vmlinux")
    assert str(caught.value).count("\n") == 0


def test_the_lab_states_every_problem_of_a_refused_kernel(tmp_path: Path) -> None:
    """`lab up`/`diff`/`trace` print the refusal's message only (also with --json): each
    problem must be on it, never "(and N more problem(s))"."""
    from pyvcore.lab import inputs

    reasons = refused(vmlinux(tmp_path, symbols=()), modules(tmp_path, vermagic="5.0"))
    kvm_dir = modules(tmp_path, vermagic="5.0") / "modules/x/kernel/arch/powerpc/kvm"
    mods = {"kvm": kvm_dir / "kvm.ko", "kvm_hv": kvm_dir / "kvm-hv.ko.xz"}
    with pytest.raises(inputs.KernelRefused) as e:
        inputs.validate(vmlinux(tmp_path, symbols=()), mods, HOOKS)
    assert str(e.value) == "refused: " + "; ".join(reasons)
    assert "more problem" not in str(e.value) and "\n" not in str(e.value)
