"""What a lab boot needs before it takes the machine lock: the inputs resolved and checked.

QEMU (patched, stock or a path, probed for the two POWER8 fixes when given by path), the
kernel and its modules (refused when they are not what they claim), the TCG plugin option,
and the initramfs for those modules and the current guest sources. Nothing here starts a
QEMU that boots: an input that is refused is refused before anything runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pyvcore.lab.cache import cache_dir, guest_sources, tree_key
from pyvcore.lab.inputs import (
    BootKernel,
    kernel_manifest,
    not_set_up,
    plugin_option,
    resolve_kernel,
    resolve_qemu,
)
from pyvcore.lab.qemu import LabError
from pyvcore.lab.scenarios import scenario_named


@dataclass
class Prepared:
    """The resolved inputs of one boot.

    ``qemu_kind``: "patched", "stock" or "path"; ``vmlinux``: the file with the booted
    kernel's symbols (what gdb and the readers load); ``qemu_probe``: for a QEMU given by
    path, ``{"missing", "evidence", "judged"}`` of the probe, else None."""

    boot_kernel: BootKernel
    qemu_kind: str
    qemu_binary: Path
    plugin_args: list[str]
    vmlinux: Path
    initrd: Path
    qemu_probe: dict[str, Any] | None = field(default=None)


def prepare(
    *,
    scenario: str,
    qemu: str,
    kernel: str | None,
    modules: str | None,
    symbols: str | None = None,
    plugin: tuple[str | os.PathLike[str], dict[str, str]] | None,
    probe: bool,
    lock_wait: float,
    log: Callable[[str], None],
) -> Prepared:
    """Resolve and check QEMU, kernel, modules and plugin, and build the initramfs.

    Raises LabNotSetUp (something `pyvcore lab setup` provides is missing), KernelRefused
    (a kernel or module that is not what it claims) or LabError."""
    cache = cache_dir()
    not_set_up(kernel, qemu, cache)
    boot_kernel = resolve_kernel(
        kernel,
        modules,
        kernel_manifest(kernel, cache),
        hook_points=scenario_named(scenario).hook_points,
        symbols=symbols,
    )
    qemu_kind, qemu_binary = resolve_qemu(qemu, cache)
    plugin_args = plugin_option(plugin)
    qemu_probe = None
    if qemu_kind == "path" and probe:
        qemu_probe = probe_qemu(qemu_binary, lock_wait, log)
    return Prepared(
        boot_kernel=boot_kernel,
        qemu_kind=qemu_kind,
        qemu_binary=qemu_binary,
        plugin_args=plugin_args,
        vmlinux=boot_kernel.symbol_file,
        initrd=initramfs(cache, boot_kernel),
        qemu_probe=qemu_probe,
    )


def probe_qemu(binary: Path, lock_wait: float, log: Callable[[str], None]) -> dict[str, Any]:
    """Probe a QEMU given by path once for the two POWER8 fixes (see :mod:`pyvcore.lab.probe`);
    a missing fix is logged, with what it will look like. Returns the probe's
    ``{"missing", "evidence", "judged"}``."""
    from pyvcore.lab.probe import probe_qemu as run_probe

    result = run_probe(binary, lock_wait=lock_wait, log=log)
    if not result.judged:
        log(f"could not probe {binary} for the POWER8 fixes: {result.evidence.get('error')}")
    for line in result.describe():
        log(f"WARNING: {line}")
    return {"missing": result.missing, "evidence": result.evidence, "judged": result.judged}


def initramfs(cache: Path, kernel: BootKernel) -> Path:
    """The initramfs for these modules and the current guest sources (rebuilt when they change)."""
    from pyvcore.lab import guest
    from pyvcore.lab.tools import CROSS_CC

    try:
        programs = guest.build_guest_programs(cache / "guest", cc=CROSS_CC)  # skips unchanged sources
        inputs = [*guest_sources(), *programs.values(), *kernel.modules.values(), kernel.busybox]
        out = cache / "initramfs" / f"{tree_key(inputs, *sorted(kernel.modules))}.cpio.gz"
        if not out.is_file():
            out = Path(
                guest.build_initramfs(
                    out, busybox=kernel.busybox, modules=dict(kernel.modules), programs=programs
                )
            )
    except guest.GuestBuildError as err:
        first, _, rest = str(err).partition("\n")
        raise LabError(f"cannot build the initramfs: {first}", rest) from None
    return out
