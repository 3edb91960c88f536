"""The lab's checks of a kernel before it boots, on :class:`pyvcore._core.KernelImage`.

Used until ``pyvcore.kernel.validate_kernel`` (the readers' complete validation) is
available; the refusals are the same, one line each.
"""

from __future__ import annotations

import lzma
from pathlib import Path
from typing import Any

# EM_PPC64 (ELF machine 21), as the reader names it.
PPC64 = "PowerPc64"
# Real-mode entry of POWER7/8 KVM-HV (arch/powerpc/kvm/book3s_hv_rmhandlers.S): a kernel
# without it cannot run a POWER8 vcore, whatever its modules say.
P8_HV_ENTRY = "kvmppc_hv_entry"


class Refused(Exception):
    """One line saying why the kernel cannot run the lab."""


def module_bytes(path: Path) -> bytes:
    """A module's ELF bytes (.ko, or .ko.xz decompressed)."""
    try:
        data = path.read_bytes()
        if data[:6] == b"\xfd7zXZ\0":
            data = lzma.decompress(data)
    except (OSError, lzma.LZMAError) as err:
        raise Refused(f"{path}: cannot read ({err})") from None
    return data


def vermagic(elf: bytes) -> str | None:
    """The module's ``vermagic=`` string from .modinfo (``include/linux/vermagic.h``)."""
    at = elf.find(b"\0vermagic=")
    if at < 0:
        return None
    start = at + len(b"\0vermagic=")
    end = elf.find(b"\0", start)
    return elf[start : end if end >= 0 else len(elf)].decode(errors="replace")


def _ppc64le_elf(elf: bytes, what: str) -> None:
    if elf[:4] != b"\x7fELF":
        raise Refused(f"{what} is not an ELF file")
    # e_ident[EI_CLASS] = 2 (64-bit), e_ident[EI_DATA] = 1 (little-endian), e_machine = 21.
    if elf[4] != 2 or elf[5] != 1 or int.from_bytes(elf[18:20], "little") != 21:
        raise Refused(f"{what} is not a ppc64le ELF")


def check(
    vmlinux: Path, modules: dict[str, Path], hook_points: tuple[str, ...], module_points: tuple[str, ...]
) -> dict[str, Any]:
    """Raise Refused naming the first problem; return what was found otherwise."""
    from pyvcore._core import KernelImage, module_symbols

    try:
        with open(vmlinux, "rb") as fh:
            head = fh.read(64)
    except OSError as err:
        raise Refused(f"{vmlinux}: cannot read ({err.strerror or err})") from None
    _ppc64le_elf(head, str(vmlinux))
    try:
        image = KernelImage(vmlinux)
    except (OSError, ValueError) as err:
        raise Refused(f"{vmlinux}: {err}") from None
    if image.machine != PPC64 or not image.little_endian:
        raise Refused(f"{vmlinux} is not a ppc64le kernel ({image.machine})")
    debug = "BTF" if image.has_btf else "DWARF" if image.has_debug_info else None
    if debug is None:
        raise Refused(f"{vmlinux} has neither .BTF nor DWARF: its structures cannot be read")
    if image.symbol(P8_HV_ENTRY) is None:
        raise Refused(f"{vmlinux} has no {P8_HV_ENTRY}: no KVM-HV for POWER8 (CONFIG_KVM_BOOK3S_64_HV)")
    release = image.release
    module_syms: dict[str, tuple[str, int]] = {}
    for name, path in modules.items():
        elf = module_bytes(path)
        _ppc64le_elf(elf, str(path))
        magic = vermagic(elf)
        if magic is None:
            raise Refused(f"{path} has no vermagic: not a kernel module")
        if release and magic.split()[0] != release:
            raise Refused(f"{path} was built for {magic.split()[0]}, the kernel is {release} (vermagic)")
        if name == "kvm_hv":
            module_syms = module_symbols(elf)
    if not modules and image.symbol("kvmppc_run_core") is None:
        raise Refused(f"no kvm-hv: give --modules DIR, or a kernel with KVM-HV built in ({vmlinux} lacks it)")
    missing = []
    for point in hook_points:
        in_module = point in module_points and bool(modules)
        found = point in module_syms if in_module else image.symbol(point) is not None
        if not found:
            missing.append(f"{point} ({'kvm-hv.ko' if in_module else 'vmlinux'})")
    if missing:
        raise Refused(f"hook point(s) missing: {', '.join(missing)}")
    return {
        "release": release,
        "debug_info": debug,
        "kvm_hv": "modules" if modules else "built in",
    }
