"""A kernel with its DWARF in a separate debug image: --symbols, the same-build check, and
the places distributions put it. Small crafted ELF files, and Debian's 6.1 (-dbg) when
`pyvcore lab setup --kernel 6.1` has unpacked it."""

from __future__ import annotations

import json
from pathlib import Path

import elfcraft
import pytest
from test_kernel import HOOKS, RELEASE, TEXT, modules

from pyvcore._core import KernelImage
from pyvcore.cli import main
from pyvcore.kernel import KernelRefused, check_vmlinux, validate_kernel
from pyvcore.kernelsymbols import debug_places, find_debug_image

BUILD_ID = bytes(range(1, 21))
BANNER = f"Linux version {RELEASE} (test) #1 SMP Debian 6.12.95-1 (2026-07-01)"


def image(
    path: Path, *, build_id: bytes | None = BUILD_ID, dwarf: bool = False, banner: str = BANNER
) -> Path:
    """A vmlinux with the POWER8 KVM-HV symbols; ``dwarf``: a .debug_info (the debug image)."""
    elf = elfcraft.kernel(banner=banner)
    if build_id is not None:
        elf.section(".note.gnu.build-id", elfcraft.build_id_note(build_id))
    if dwarf:
        elf.section(".debug_info", bytes(16))
    for i, name in enumerate(HOOKS[:2]):
        elf.symbol(name, TEXT + 16 * i, 0, ".text", bind=elfcraft.STB_LOCAL)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(elf.build())
    return path


def refusal(boot: Path, mods: Path, **kw: object) -> str:
    with pytest.raises(KernelRefused) as e:
        validate_kernel(boot, mods, hook_points=HOOKS, **kw)  # type: ignore[arg-type]
    [line] = e.value.reasons
    return line


def test_build_id_is_read(tmp_path: Path) -> None:
    assert KernelImage(image(tmp_path / "v")).build_id == BUILD_ID.hex()
    assert KernelImage(image(tmp_path / "w", build_id=None)).build_id is None


def test_symbols_of_the_same_build_give_the_layouts(tmp_path: Path) -> None:
    boot = image(tmp_path / "boot" / f"vmlinux-{RELEASE}")
    debug = image(tmp_path / "dbg" / "vmlinux", dwarf=True)
    info = validate_kernel(boot, modules(tmp_path), hook_points=HOOKS, symbols=debug)
    assert (info.debug_info, info.symbols, info.vmlinux) == ("DWARF", str(debug), str(boot))


def test_symbols_of_another_build_are_refused_by_build_id(tmp_path: Path) -> None:
    boot = image(tmp_path / "vmlinux")
    other = image(tmp_path / "other", dwarf=True, build_id=bytes(20))
    line = refusal(boot, modules(tmp_path), symbols=other)
    assert line == (
        f"--symbols {other}: build-id {bytes(20).hex()}, the kernel {boot} has {BUILD_ID.hex()}: not the same build"
    )


def test_without_build_ids_the_banners_decide(tmp_path: Path) -> None:
    boot = image(tmp_path / "vmlinux", build_id=None)
    same = image(tmp_path / "same", build_id=None, dwarf=True)
    assert validate_kernel(boot, modules(tmp_path), hook_points=HOOKS, symbols=same).symbols == str(same)
    rebuilt = image(tmp_path / "rebuilt", build_id=None, dwarf=True, banner=BANNER.replace("#1", "#2"))
    line = refusal(boot, modules(tmp_path), symbols=rebuilt)
    assert line.startswith(f"--symbols {rebuilt}: ") and line.endswith("not the same build") and "#2" in line


def test_symbols_without_dwarf_are_refused(tmp_path: Path) -> None:
    boot = image(tmp_path / "vmlinux")
    line = refusal(boot, modules(tmp_path), symbols=image(tmp_path / "stripped-too"))
    assert line == f"--symbols {tmp_path / 'stripped-too'}: neither DWARF nor BTF: not a debug image"
    line = refusal(boot, modules(tmp_path), symbols=tmp_path / "missing")
    assert line == f"cannot read {tmp_path / 'missing'}: No such file or directory"


def test_no_debug_image_anywhere_says_how_to_give_it(tmp_path: Path) -> None:
    line = refusal(image(tmp_path / "vmlinux"), modules(tmp_path))
    assert "neither BTF nor DWARF" in line and "give it with --symbols FILE" in line
    assert f"/usr/lib/debug/boot/vmlinux-{RELEASE} of linux-image-{RELEASE}-dbg" in line
    assert "CONFIG_DEBUG_INFO_BTF=y" in line


def test_found_in_the_same_unpacked_tree(tmp_path: Path) -> None:
    """dpkg-deb -x of linux-image-REL and linux-image-REL-dbg into one directory."""
    boot = image(tmp_path / "boot" / f"vmlinux-{RELEASE}")
    debug = image(tmp_path / "usr/lib/debug/boot" / f"vmlinux-{RELEASE}", dwarf=True)
    info = validate_kernel(boot, modules(tmp_path), hook_points=HOOKS)
    assert (info.debug_info, info.symbols) == ("DWARF", str(debug))
    assert check_vmlinux(boot, "--kernel").path == debug


@pytest.mark.parametrize(
    "where",
    [f"boot/vmlinux-{RELEASE}", f"lib/modules/{RELEASE}/vmlinux", f".build-id/01/{BUILD_ID[1:].hex()}.debug"],
)
def test_found_where_distributions_put_it(tmp_path: Path, where: str) -> None:
    boot = image(tmp_path / "build" / "vmlinux")
    debug_dir = tmp_path / "usr/lib/debug"
    image(debug_dir / where, dwarf=True, build_id=bytes(20))  # another build there: passed over
    assert find_debug_image(KernelImage(boot), boot, debug_dir) is None
    debug = image(debug_dir / where, dwarf=True)
    found = find_debug_image(KernelImage(boot), boot, debug_dir)
    assert found is not None and found[0] == debug
    assert debug in debug_places(boot, KernelImage(boot), debug_dir)


def test_beside_it_as_vmlinux_debug(tmp_path: Path) -> None:
    """objcopy --only-keep-debug vmlinux vmlinux.debug."""
    boot = image(tmp_path / "vmlinux")
    debug = image(tmp_path / "vmlinux.debug", dwarf=True)
    found = find_debug_image(KernelImage(boot), boot, tmp_path / "no-debug-dir")
    assert found is not None and found[0] == debug


def test_diff_attach_refuses_another_build_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boot = image(tmp_path / "vmlinux")
    other = image(tmp_path / "other", dwarf=True, build_id=bytes(20))
    code = main(["diff", "--attach", "127.0.0.1:1", "--kernel", str(boot), "--symbols", str(other)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    assert "not the same build" in err and "build-id" in err


def test_gdb_vmlinux_takes_the_debug_image_found(tmp_path: Path) -> None:
    from pyvcore import cliargs

    boot = image(tmp_path / "boot" / f"vmlinux-{RELEASE}")
    debug = image(tmp_path / "usr/lib/debug/boot" / f"vmlinux-{RELEASE}", dwarf=True)
    assert cliargs.vmlinux(str(boot)) == str(debug)
    debug.unlink()
    with pytest.raises(Exception, match="give it instead"):
        cliargs.vmlinux(str(boot))


# --------------------------------------------------------------------------- Debian's 6.1


def debian_6_1() -> dict[str, Path] | None:
    """The boot image, -dbg vmlinux and kvm modules `lab setup --kernel 6.1` unpacked."""
    manifest = Path.home() / ".cache/pyvcore/kernel/by-name/6.1.json"
    try:
        m = json.loads(manifest.read_text())
        found = {"boot": Path(m["vmlinux"]), "dbg": Path(m["extra"]["symbols"])}
        found["ko"] = Path(m["modules"]["kvm_hv"]).parent
    except (OSError, KeyError, ValueError):
        return None
    return found if all(p.exists() for p in found.values()) else None


needs_6_1 = pytest.mark.skipif(debian_6_1() is None, reason="no Debian 6.1: `pyvcore lab setup --kernel 6.1`")


@needs_6_1
def test_debian_6_1_boot_image_with_its_dbg_vmlinux(tmp_path: Path) -> None:
    k = debian_6_1()
    assert k is not None
    hooks = (*HOOKS, "kvmhv_commence_exit")
    line = refusal(k["boot"], k["ko"])  # nothing where distributions put it, on this machine
    assert "neither BTF nor DWARF" in line and "--symbols FILE" in line
    info = validate_kernel(k["boot"], k["ko"], hook_points=hooks, symbols=k["dbg"])
    assert info.release == k["boot"].name.removeprefix("vmlinux-") and info.release.startswith("6.1.")
    assert (info.debug_info, info.symbols) == ("DWARF", str(k["dbg"]))
    # The same files as a -dbg package unpacks them beside the image: found without --symbols.
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot" / k["boot"].name).symlink_to(k["boot"])
    (tmp_path / "usr/lib/debug/boot").mkdir(parents=True)
    (tmp_path / "usr/lib/debug/boot" / k["boot"].name).symlink_to(k["dbg"])
    info = validate_kernel(tmp_path / "boot" / k["boot"].name, k["ko"], hook_points=hooks)
    assert info.symbols == str(tmp_path / "usr/lib/debug/boot" / k["boot"].name)


@needs_6_1
def test_debian_6_1_with_another_kernels_symbols_is_refused() -> None:
    k = debian_6_1()
    lab = Path.home() / ".cache/pyvcore/kernel/current.json"
    if k is None or not lab.is_file():
        pytest.skip("no lab kernel: run `pyvcore lab setup`")
    other = Path(json.loads(lab.read_text())["vmlinux"])  # 6.12, with BTF
    line = refusal(k["boot"], k["ko"], symbols=other)
    assert line.startswith(f"--symbols {other}: build-id ") and line.endswith("not the same build")


def test_a_kernel_too_big_for_powernv_is_refused_before_qemu(tmp_path: Path) -> None:
    """A vmlinux with its DWARF given as --kernel: QEMU's powernv loads at most 128 MiB."""
    from pyvcore.lab.cache import KernelManifest
    from pyvcore.lab.inputs import KernelRefused as LabRefused
    from pyvcore.lab.inputs import resolve_kernel

    big = tmp_path / "vmlinux-dbg"
    with big.open("wb") as fh:
        fh.truncate(256 << 20)  # sparse: nothing is written or read
    default = KernelManifest("p", "1", str(tmp_path / "v"), {}, str(tmp_path / "bb"), "1")
    with pytest.raises(LabRefused) as e:
        resolve_kernel(str(big), None, default)
    assert str(e.value) == (
        f"refused: kernel {big}: 256 MiB, more than the 128 MiB QEMU's powernv machine loads "
        "(hw/ppc/pnv.c, KERNEL_MAX_SIZE); if it is a debug image, boot the stripped one and give this as --symbols FILE"
    )


def test_the_refusal_names_every_place_looked_in(tmp_path: Path) -> None:
    """A boot/vmlinux-REL is also looked for in the same unpacked tree: the refusal says so."""
    boot = image(tmp_path / "boot" / f"vmlinux-{RELEASE}")
    line = refusal(boot, modules(tmp_path))
    assert f"{tmp_path}/usr/lib/debug/boot/vmlinux-{RELEASE}, " in line
    for place in (f"/usr/lib/debug/boot/vmlinux-{RELEASE}", "/usr/lib/debug/.build-id/", "beside it"):
        assert place in line
    # a vmlinux outside a boot/ directory has no such place
    assert "/usr/lib/debug/boot/vmlinux-" + RELEASE + ", /usr/lib/debug/lib" in refusal(
        image(tmp_path / "vmlinux"), modules(tmp_path)
    )


def test_the_run_header_names_your_kernels_modules_and_symbols(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`diff`/`trace` headers (kernel_line of the lab's status) say which --modules and which
    debug image (given with --symbols, or found) a kernel of your own was read with."""
    from pyvcore.lab import inputs
    from pyvcore.lab.cache import KernelManifest

    monkeypatch.setattr(inputs, "cache_dir", lambda: tmp_path / "cache")
    boot = image(tmp_path / "boot" / f"vmlinux-{RELEASE}")
    debug = image(tmp_path / "dbg" / "vmlinux", dwarf=True)
    mods = modules(tmp_path)
    default = KernelManifest("p", "1", str(tmp_path / "v"), {}, str(tmp_path / "bb"), "1")
    bk = inputs.resolve_kernel(str(boot), str(mods), default, hook_points=HOOKS, symbols=str(debug))
    status = {"kernel": bk.label, "vmlinux": str(boot), "kernel_info": bk.info}
    assert inputs.kernel_line(status) == (
        f"kernel {boot} with modules from {mods}, symbols from {debug}, release {RELEASE}"
    )
