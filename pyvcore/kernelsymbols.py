"""A kernel's debug image: the file with the DWARF of a vmlinux that has neither BTF nor DWARF.

Distributions ship the bootable kernel stripped of its debug info and the unstripped
vmlinux in a separate package. pyvcore boots the one and reads struct layouts and symbols
from the other, given with ``--symbols FILE`` (drgn's word for it: ``drgn -s``/``--symbols``)
or found where distributions put it, for release ``REL`` and build-id ``ID``:

* ``/usr/lib/debug/boot/vmlinux-REL``: Debian's ``linux-image-REL-dbg``, Ubuntu's
  ``linux-image-REL-dbgsym``;
* ``/usr/lib/debug/lib/modules/REL/vmlinux``: Fedora's and RHEL's ``kernel-debuginfo``,
  SUSE's ``kernel-*-debuginfo``;
* ``/usr/lib/debug/.build-id/ID[:2]/ID[2:].debug``: gdb's build-id directory;
* beside the image: ``usr/lib/debug/boot/vmlinux-REL`` of the same unpacked tree
  (``dpkg-deb -x`` of both packages into one directory, the image at ``boot/vmlinux-REL``),
  and ``VMLINUX.debug`` (``objcopy --only-keep-debug``).

A debug image is refused unless it is the same build as the boot image: the same GNU
build-id note (``ld --build-id``; a kernel and the debug file split from it share it), or,
without one, the same ``linux_banner`` (init/version.c: release, compiler, build number
and date).
"""

from __future__ import annotations

from pathlib import Path

from pyvcore._core import KernelImage

SYSTEM_DEBUG_DIR = Path("/usr/lib/debug")


class SymbolsRefused(ValueError):
    """A debug image that cannot be used for this kernel; ``str()`` is one line."""


def debug_places(vmlinux: Path, image: KernelImage, debug_dir: Path = SYSTEM_DEBUG_DIR) -> list[Path]:
    """Where a debug image of ``vmlinux`` may be, in the order they are tried (see the
    module docstring); ``debug_dir`` is ``/usr/lib/debug`` but for tests."""
    places: list[Path] = []
    release, build_id = image.release, image.build_id
    if vmlinux.parent.name == "boot":
        places.append(vmlinux.parent.parent / "usr" / "lib" / "debug" / "boot" / vmlinux.name)
    places.append(vmlinux.with_name(vmlinux.name + ".debug"))
    if release:
        places += [
            debug_dir / "boot" / f"vmlinux-{release}",
            debug_dir / "lib" / "modules" / release / "vmlinux",
        ]
    if build_id and len(build_id) > 2:
        places.append(debug_dir / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug")
    return places


def where_searched(vmlinux: Path, image: KernelImage, debug_dir: Path = SYSTEM_DEBUG_DIR) -> str:
    """The places of :func:`debug_places`, short, for a message."""
    rel = image.release or "REL"
    places = [
        f"{debug_dir}/boot/vmlinux-{rel}",
        f"{debug_dir}/lib/modules/{rel}/vmlinux",
        f"{debug_dir}/.build-id/",
    ]
    if vmlinux.parent.name == "boot":
        places.append(str(vmlinux.parent.parent / "usr" / "lib" / "debug" / "boot" / vmlinux.name))
    return ", ".join([*places, f"{vmlinux.name}.debug beside it"])


def same_build(boot: KernelImage, boot_path: Path, debug: KernelImage, debug_path: Path) -> str | None:
    """None when ``debug`` is the same build as ``boot``, else why not (one line)."""
    if boot.build_id and debug.build_id:
        if boot.build_id == debug.build_id:
            return None
        return (
            f"{debug_path}: build-id {debug.build_id}, the kernel {boot_path} has {boot.build_id}: "
            "not the same build"
        )
    if boot.banner and debug.banner:
        if boot.banner.strip() == debug.banner.strip():
            return None
        return (
            f"{debug_path}: {debug.banner.strip()!r}, the kernel {boot_path} is {boot.banner.strip()!r}: "
            "not the same build"
        )
    return (
        f"{debug_path}: cannot tell it is the same build as {boot_path} (no build-id or linux_banner in both)"
    )


def open_debug_image(boot: KernelImage, boot_path: Path, path: Path) -> KernelImage:
    """The debug image at ``path`` for the kernel ``boot``; SymbolsRefused (one line) when it
    cannot be read, is no ppc64le kernel image, has neither DWARF nor BTF, or is another build."""
    from pyvcore.kernel import KernelRefused, check_image

    try:
        debug = check_image(path, "--symbols", debug_file=True)
    except KernelRefused as err:
        raise SymbolsRefused(str(err)) from None
    if not (debug.has_btf or debug.has_debug_info):
        raise SymbolsRefused(f"--symbols {path}: neither DWARF nor BTF: not a debug image")
    why = same_build(boot, boot_path, debug, path)
    if why is not None:
        raise SymbolsRefused(f"--symbols {why}")
    return debug


def find_debug_image(
    boot: KernelImage, boot_path: Path, debug_dir: Path = SYSTEM_DEBUG_DIR
) -> tuple[Path, KernelImage] | None:
    """The first debug image of ``boot`` in :func:`debug_places` that is the same build;
    None when there is none (one of another build is passed over)."""
    for place in debug_places(boot_path, boot, debug_dir):
        if place.is_file() and place.resolve() != boot_path.resolve():
            try:
                return place, open_debug_image(boot, boot_path, place)
            except SymbolsRefused:
                continue
    return None
