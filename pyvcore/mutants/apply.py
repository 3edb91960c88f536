"""Apply a mutant to a copy of the lab's kernel or kvm-hv.ko, never blindly.

The bytes at ``symbol + offset`` are found through the ELF (section file offset +
the symbol's value, section-relative in a module), compared with the bytes the
mutant expects, and only then replaced; in a module the patched bytes must not be
a relocation target (the loader would rewrite them).  A kernel whose bytes differ
is refused with one line, before anything is written.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from pyvcore._core import ImageError, KernelImage
from pyvcore.errors import PyvcoreError
from pyvcore.mutants.catalogue import Mutant


class MutantRefused(PyvcoreError):
    """The mutant cannot be applied to this kernel (one line); CLI exit code 2."""


@dataclass(frozen=True)
class Site:
    """Where a mutant's bytes are in its object file."""

    path: Path
    file_offset: int
    found: bytes


def locate(mutant: Mutant, path: Path) -> Site:
    """Find and check the mutant's bytes in ``path``; MutantRefused when they differ,
    the symbol is missing, or (module) a relocation touches them."""
    try:
        image = KernelImage(path)
        off = image.file_offset(mutant.symbol, mutant.offset, mutant.length)
    except (OSError, ImageError) as e:
        raise MutantRefused(f"mutant {mutant.name}: {path}: {e}") from None
    sym = image.symbol(mutant.symbol)
    assert sym is not None
    if image.relocatable:
        start = sym.address + mutant.offset
        relocs = image.relocations_in(sym.section, start, mutant.length)
        if relocs:
            raise MutantRefused(
                f"mutant {mutant.name}: {mutant.symbol}+{mutant.offset:#x} is a relocation target "
                f"({sym.section}+{relocs[0]:#x}): the module loader would rewrite it"
            )
    with path.open("rb") as fh:
        fh.seek(off)
        found = fh.read(mutant.length)
    if found != bytes.fromhex(mutant.expected):
        raise MutantRefused(
            f"mutant {mutant.name}: {mutant.symbol}+{mutant.offset:#x} in {path.name} holds {found.hex()}, "
            f"expected {mutant.expected}: not the kernel this mutant was made for (Debian 6.12.95); refused"
        )
    return Site(path, off, found)


# scripts/sign-file.c appends: signature, struct module_signature (12 bytes, sig_len
# big-endian in its last 4), then this marker (include/linux/module_signature.h).
MODULE_SIG_MAGIC = b"~Module signature appended~\n"


def strip_module_signature(path: Path) -> bool:
    """Remove a module's appended signature (a patched module's signature no longer
    matches, and the kernel rejects a bad signature even when it does not enforce
    signing: kernel/module/signing.c, module_sig_check).  True when one was removed."""
    data = path.read_bytes()
    if not data.endswith(MODULE_SIG_MAGIC):
        return False
    info_end = len(data) - len(MODULE_SIG_MAGIC)
    sig_len = int.from_bytes(data[info_end - 4 : info_end], "big")
    start = info_end - 12 - sig_len
    if start <= 0:
        raise MutantRefused(f"{path}: module signature of {sig_len} bytes is larger than the module")
    path.write_bytes(data[:start])
    return True


@dataclass(frozen=True)
class MutatedKernel:
    """What to boot: ``kernel`` (None = the lab's own vmlinux) and ``modules`` (the
    directory holding kvm.ko and kvm-hv.ko to load)."""

    kernel: Path | None
    modules: Path | None


def apply(mutant: Mutant, workdir: Path, *, vmlinux: Path, modules: dict[str, Path]) -> MutatedKernel:
    """Copy the object the mutant edits into ``workdir``, check and patch the copy.

    ``modules``: {"kvm": path, "kvm_hv": path} of the unmutated kernel (in one
    directory).  A vmlinux mutant boots the copied vmlinux with that directory; a
    kvm-hv.ko mutant boots
    the lab's vmlinux with a modules directory holding kvm.ko and the patched kvm-hv.ko."""
    workdir.mkdir(parents=True, exist_ok=True)
    if mutant.obj == "vmlinux":
        locate(mutant, vmlinux)  # refuse before copying 300 MB
        target = workdir / vmlinux.name
        shutil.copyfile(vmlinux, target)
        # a vmlinux given by path boots with the lab's own modules, named explicitly
        result = MutatedKernel(kernel=target, modules=modules["kvm_hv"].parent)
    elif mutant.obj == "kvm-hv.ko":
        locate(mutant, modules["kvm_hv"])
        mod_dir = workdir / "modules"
        mod_dir.mkdir(exist_ok=True)
        shutil.copyfile(modules["kvm"], mod_dir / "kvm.ko")
        target = mod_dir / "kvm-hv.ko"
        shutil.copyfile(modules["kvm_hv"], target)
        strip_module_signature(target)
        result = MutatedKernel(kernel=None, modules=mod_dir)
    else:
        raise MutantRefused(f"mutant {mutant.name}: unknown object {mutant.obj!r}")
    site = locate(mutant, target)
    with target.open("r+b") as fh:
        fh.seek(site.file_offset)
        fh.write(bytes.fromhex(mutant.replacement))
    with target.open("rb") as fh:
        fh.seek(site.file_offset)
        if fh.read(mutant.length) != bytes.fromhex(mutant.replacement):
            raise MutantRefused(f"mutant {mutant.name}: {target}: the patched bytes did not read back")
    return result
