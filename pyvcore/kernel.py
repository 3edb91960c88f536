"""Is this kernel one pyvcore can check?  Validation of a user's vmlinux and modules.

:func:`validate_kernel` reads the ELF files only (no QEMU, no gdb) and either returns a
:class:`KernelInfo` or raises :class:`KernelRefused` with one line per failure:

* not a little-endian ppc64 ELF;
* no KVM-HV for POWER8: the real-mode entry and nap code of
  arch/powerpc/kvm/book3s_hv_rmhandlers.S (``kvmppc_hv_entry``, ``kvm_do_nap``) are not
  in vmlinux, or kvm-hv (arch/powerpc/kvm/book3s_hv.c, ``kvmppc_run_core``) is neither
  built in nor given as a module;
* neither BTF (``CONFIG_DEBUG_INFO_BTF``) nor DWARF, or a corrupt ``.BTF``, and no debug image
  of the same build given or found (:mod:`pyvcore.kernelsymbols`);
* a module whose ``vermagic`` (include/linux/vermagic.h, in ``.modinfo``) names another
  release than the kernel's ``linux_banner``: the kernel would refuse to load it;
* a symbol a hook point needs, named.
"""

from __future__ import annotations

import errno
import lzma
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pyvcore._core import ImageError, KernelImage
from pyvcore.errors import PyvcoreError, cannot_read

# book3s_hv_rmhandlers.S: the POWER7/8 real-mode guest entry and the nap of a thread
# with no vcpu; both are built into vmlinux (CONFIG_KVM_BOOK3S_64_HANDLER) whenever
# KVM-HV is configured.
P8_VMLINUX_SYMBOLS = ("kvmppc_hv_entry", "kvm_do_nap")
# book3s_hv.c: the vcore run loop that gang-schedules a vcore onto a core.
KVM_HV_SYMBOL = "kvmppc_run_core"
MODULES = {"kvm": "kvm.ko", "kvm_hv": "kvm-hv.ko"}
XZ_MAGIC = b"\xfd7zXZ\0"


class KernelRefused(PyvcoreError, ValueError):
    """The kernel cannot be checked; ``str()`` is one line per reason (``.reasons``).

    ``exit_code`` is 2 (unusable input) for the CLI."""

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__("\n".join(reasons))


@dataclass
class KernelInfo:
    """What a valid kernel is: release ("6.12.95+deb12-powerpc64le"), model variant
    ("modern"/"seed", None when only DWARF is there to tell), page size in bytes,
    layout source ("BTF" or "DWARF"), where kvm / kvm-hv come from ("built in" or
    the module's path), and the debug image it is read from when vmlinux has neither."""

    vmlinux: str
    release: str
    variant: str | None
    page_size: int | None
    debug_info: str
    kvm: str
    kvm_hv: str
    hook_points: dict[str, str] = field(default_factory=dict)  # name -> "vmlinux" | "kvm-hv.ko"
    symbols: str | None = None  # the debug image read for layouts and symbols, when not vmlinux


# A Debian package is an ar archive whose first member is debian-binary (deb(5)).
DEB_MAGIC = b"!<arch>\ndebian-binary"


def debian_package(path: Path) -> str:
    """What to say of a .deb given where a kernel image is read: which file inside it to give,
    or the lab's name for a Debian kernel."""
    from pyvcore.lab.kernels import KERNELS

    return (
        "a Debian package, not a kernel image: give the vmlinux inside it (`dpkg-deb -x "
        f"{path.name} DIR`, then DIR/boot/vmlinux-RELEASE; its DWARF is in the -dbg package's "
        "usr/lib/debug/boot/vmlinux-RELEASE), or a kernel the lab sets up by name: " + ", ".join(KERNELS)
    )


def _open(path: Path, what: str) -> KernelImage:
    """A KernelImage of a file, .ko.xz decompressed; KernelRefused on any failure."""
    try:
        with path.open("rb") as fh:
            head = fh.read(21)
        if head.startswith(DEB_MAGIC):
            raise KernelRefused([f"{what} {path}: {debian_package(path)}".lstrip()])
        xz = head[:6] == XZ_MAGIC
        if not xz:
            return KernelImage(path)
        data = lzma.decompress(path.read_bytes())
        with tempfile.NamedTemporaryFile(suffix=".ko") as tmp:
            tmp.write(data)
            tmp.flush()
            return KernelImage(tmp.name)
    except OSError as e:
        raise KernelRefused([cannot_read(path, e)]) from None
    except lzma.LZMAError as e:
        raise KernelRefused([f"{what} {path}: not a valid .xz file ({e})"]) from None
    except ImageError as e:
        text = str(e)
        if text.startswith("not a ppc64") or text.startswith("not an ELF"):
            text += "; pyvcore needs a ppc64le kernel (POWER8, book3s_64)"
        raise KernelRefused([f"{what} {path}: {text}"]) from None


def check_image(path: Path, what: str, *, debug_file: bool = False) -> KernelImage:
    """A little-endian ppc64 ELF executable with a ``linux_banner``; KernelRefused (one line).

    ``debug_file``: a build-id will do for the banner (``objcopy --only-keep-debug``
    leaves the banner's section without its bytes)."""
    if path.is_dir():
        raise KernelRefused([cannot_read(path, errno.EISDIR, "a kernel image (vmlinux)")])
    if not path.exists():
        raise KernelRefused([cannot_read(path, errno.ENOENT)])
    image = _open(path, what)
    if image.relocatable:
        raise KernelRefused([f"{what} {path}: a kernel module (ET_REL), not the kernel image (vmlinux)"])
    if not image.little_endian:
        raise KernelRefused([f"{what} {path}: big-endian ppc64; pyvcore reads ppc64le kernels"])
    if image.banner is None and not (debug_file and image.build_id):
        raise KernelRefused([f"{what} {path}: no linux_banner symbol: not a Linux kernel image (vmlinux)"])
    return image


def no_debug_info(path: Path, image: KernelImage, what: str = "kernel") -> str:
    """The one line for a kernel image with neither BTF nor DWARF and no debug image found."""
    from pyvcore.kernelsymbols import where_searched

    rel = image.release or "REL"
    # gdb and the readers only read: there the debug image itself will do.
    how = "give it instead" if what in ("", "--vmlinux") else "give it with --symbols FILE"
    return (
        f"{what} {path}: neither BTF nor DWARF, and no debug image of it found "
        f"({where_searched(path, image)}): {how} (Debian: /usr/lib/debug/boot/vmlinux-{rel} "
        f"of linux-image-{rel}-dbg), or build with CONFIG_DEBUG_INFO_BTF=y"
    ).lstrip()


def debug_image(
    path: Path, image: KernelImage, symbols: str | os.PathLike[str] | None, what: str = "kernel"
) -> tuple[KernelImage, Path | None]:
    """(the image to read layouts and symbols from, its path when not ``path``): the debug
    image ``symbols`` names, else ``image`` itself when it has BTF or DWARF, else a debug
    image where distributions put it (:mod:`pyvcore.kernelsymbols`). KernelRefused (one
    line) for a debug image that is not this kernel's, or none at all."""
    from pyvcore.kernelsymbols import SymbolsRefused, find_debug_image, open_debug_image

    if symbols is not None:
        try:
            return open_debug_image(image, path, Path(symbols)), Path(symbols)
        except SymbolsRefused as err:
            raise KernelRefused([str(err)]) from None
    if image.has_btf or image.has_debug_info:
        return image, None
    found = find_debug_image(image, path)
    if found is None:
        why = f"{what} {path}: {image.btf_error}" if image.btf_error else no_debug_info(path, image, what)
        raise KernelRefused([why])
    return found[1], found[0]


def check_vmlinux(
    vmlinux: str | os.PathLike[str], what: str = "--vmlinux", symbols: str | os.PathLike[str] | None = None
) -> KernelImage:
    """The image gdb and the readers use for a kernel, or KernelRefused (one line).

    Lighter than :func:`validate_kernel` (no KVM or hook-point questions): a
    little-endian ppc64 ELF executable (not a module, not a core dump) with a
    ``linux_banner`` (init/version.c) and BTF or DWARF, in itself or in its debug image
    (``symbols``, or found: :func:`debug_image`); the image returned is the one that has
    them (its ``path`` is what gdb loads). ``what`` names the option in the message.
    Reads the files only (about 0.5 s for Debian's 6.12 vmlinux)."""
    path = Path(vmlinux)
    image = check_image(path, what)
    return debug_image(path, image, symbols, what)[0]


def _find_module(modules_dir: Path, file: str) -> Path | None:
    hits = sorted(p for pattern in (file, file + ".xz") for p in modules_dir.rglob(pattern) if p.is_file())
    if len(hits) > 1:
        listed = ", ".join(str(h) for h in hits[:3]) + (", ..." if len(hits) > 3 else "")
        raise KernelRefused([f"modules {modules_dir}: {file} found {len(hits)} times ({listed})"])
    return hits[0] if hits else None


def _page_size(image: KernelImage, release: str) -> int | None:
    """4 KiB or 64 KiB: with CONFIG_PPC_64K_PAGES the hash MMU's ``real_pte_t`` carries
    a ``hidx`` word (arch/powerpc/include/asm/book3s/64/pgtable-64k.h); else from a
    distribution's "-64k" release suffix."""
    if image.has_btf:
        try:
            members = image.struct_layout("real_pte_t")["members"]
            return 65536 if any(m["name"] == "hidx" for m in members) else 4096
        except (KeyError, ImageError):
            pass
    return 65536 if release.endswith("64k") else (4096 if "powerpc64le" in release else None)


def _variant(image: KernelImage) -> str | None:
    """The model variant the layouts select (BTF only; with DWARF gdb decides later)."""
    from pyvcore.decode import KernelError, KernelLayout
    from pyvcore.layout import LayoutError, Layouts

    try:
        layout = KernelLayout(Layouts(image, "BTF"), image.address, image.little_endian, image.release)
        return str(layout.variant)
    except (KernelError, LayoutError, ImageError):
        return None


def _check_module(path: Path, name: str, release: str, problems: list[str]) -> KernelImage | None:
    try:
        module = _open(path, name)
    except KernelRefused as e:
        problems.extend(e.reasons)
        return None
    vermagic = dict(module.modinfo).get("vermagic")
    built_for = vermagic.split()[0] if vermagic else None
    if built_for is None:
        problems.append(f"{path}: no vermagic in .modinfo: not a kernel module?")
    elif built_for != release:
        problems.append(
            f"{path}: built for kernel {built_for} (vermagic), the kernel is {release}: it would not load"
        )
    return module


def validate_kernel(
    vmlinux: str | os.PathLike[str],
    modules_dir: str | os.PathLike[str] | None = None,
    *,
    hook_points: Iterable[str],
    symbols: str | os.PathLike[str] | None = None,
) -> KernelInfo:
    """Validate a vmlinux (ELF) and, when kvm/kvm-hv are modules, the directory holding
    kvm.ko and kvm-hv.ko (.ko or .ko.xz, searched recursively).  ``hook_points`` are the
    symbols the lab and pv-watch break on; each must be in vmlinux or kvm-hv.
    ``symbols``: the debug image of a vmlinux with neither BTF nor DWARF (else one is
    looked for where distributions put it: :func:`debug_image`); it must be the same build.

    Returns KernelInfo; raises KernelRefused (one line per failure).  Reads files only."""
    path = Path(vmlinux)
    boot = _open(path, "kernel")
    if not boot.little_endian:
        raise KernelRefused([f"kernel {path}: big-endian ppc64; pyvcore's lab and readers need ppc64le"])
    problems: list[str] = []
    release = boot.release
    if release is None:
        problems.append(f"kernel {path}: no linux_banner in the symbol table: cannot tell its release")
    image, symbols_path = boot, None
    try:
        image, symbols_path = debug_image(path, boot, symbols)
    except KernelRefused as err:
        problems.extend(err.reasons)
    debug_info = "BTF" if image.has_btf else ("DWARF" if image.has_debug_info else "")
    missing = [s for s in P8_VMLINUX_SYMBOLS if image.symbol(s) is None]
    if missing:
        problems.append(
            f"kernel {path}: no KVM-HV for POWER8 ({', '.join(missing)} missing: "
            "CONFIG_KVM_BOOK3S_64_HV with the POWER7/8 real-mode path)"
        )
    where = {"kvm": "built in", "kvm_hv": "built in"}
    kvm_hv: KernelImage | None = None
    if image.symbol(KVM_HV_SYMBOL) is None:
        if modules_dir is None:
            problems.append(
                f"kernel {path}: kvm-hv is not built in ({KVM_HV_SYMBOL}) and no modules were given"
            )
            where["kvm_hv"] = "missing"  # its hook points are then missing too: said once, above
        else:
            for key, file in MODULES.items():
                found = _find_module(Path(modules_dir), file)
                if found is None:
                    problems.append(f"modules {modules_dir}: no {file} (or {file}.xz) below it")
                    where[key] = "missing"
                    continue
                where[key] = str(found)
                module = _check_module(found, file, release or "?", problems)
                if key == "kvm_hv" and module is not None:
                    kvm_hv = module
                    if module.symbol(KVM_HV_SYMBOL) is None:
                        problems.append(f"{found}: no {KVM_HV_SYMBOL}: not the POWER KVM-HV module")
    found_in: dict[str, str] = {}
    for name in hook_points:
        if image.symbol(name) is not None:
            found_in[name] = "vmlinux"
        elif kvm_hv is not None and kvm_hv.symbol(name) is not None:
            found_in[name] = "kvm-hv.ko"
        elif name in missing:
            continue  # already said: no KVM-HV for POWER8
        elif kvm_hv is not None or where["kvm_hv"] == "built in":
            problems.append(f"hook point {name}: no such symbol in vmlinux or kvm-hv")
    if problems:
        raise KernelRefused(problems)
    assert release is not None
    return KernelInfo(
        vmlinux=str(path),
        release=release,
        variant=_variant(image) if debug_info == "BTF" else None,
        page_size=_page_size(image, release),
        debug_info=debug_info,
        kvm=where["kvm"],
        kvm_hv=where["kvm_hv"],
        hook_points=found_in,
        symbols=None if symbols_path is None else str(symbols_path),
    )
