"""`pyvcore lab setup`: everything the lab needs, installed or built once and cached.

Steps (each timed and skipped when already done; the summary lists every step run with
its time, "cached" for one that found everything done):

1. apt (root, :mod:`pyvcore.lab.apt`): the bookworm-backports source, QEMU 10 from it,
   gdb-multiarch, the ppc64el cross compiler, cpio, xz, dwarves and QEMU's build
   dependencies. Without root it prints the exact commands to run and stops.
2. pip (:mod:`pyvcore.lab.piptools`): meson, pycotap and distlib for QEMU's configure, only
   when QEMU is to be configured (not cached, ``--rebuild-qemu`` or ``check_cold``).
3. kernels (:mod:`pyvcore.lab.kernels`): the newest Debian package of each kernel asked
   for (default 6.12, 4k pages) and busybox-static, through the lab's private apt.
4. QEMU (:mod:`pyvcore.lab.qemubuild`): Debian's qemu source with the lab's patches,
   ``qemu-system-ppc64`` built with TCG plugins and cached.
5. the QEMU TCG plugin of ``pyvcore trace`` (:func:`pyvcore.lab.plugin_build.ensure_plugin`,
   ``cargo build --release -p pyvcore-plugin``, cached by the hash of its sources), so the
   first trace does not build it.
6. guest programs: :func:`pyvcore.lab.guest.build_guest_programs`.
7. with ``check_cold``: :func:`pyvcore.lab.qemubuild.check_cold_build`, QEMU's configure
   and a few compiles from a fresh copy of the source, unless step 4 just built it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from pyvcore.lab import apt, kernels, piptools, qemubuild
from pyvcore.lab.cache import KernelManifest, cache_dir
from pyvcore.lab.steps import SetupError, Step, log, worked
from pyvcore.lab.tools import CROSS_CC, QEMU_DATA_DIR, STOCK_QEMU

__all__ = ["SetupError", "iter_missing", "setup"]


def ensure_guest_programs(cache: Path) -> dict[str, Path]:
    """Cross-compile the guest programs (the builder skips unchanged sources)."""
    from pyvcore.lab import guest

    try:
        programs = guest.build_guest_programs(cache / "guest", cc=CROSS_CC)
    except guest.GuestBuildError as err:
        raise SetupError(str(err)) from None
    log("guest programs: " + ", ".join(f"{name} ({path})" for name, path in sorted(programs.items())))
    return programs


def ensure_trace_plugin() -> Path:
    """Build ``pyvcore trace``'s QEMU plugin unless this source content has one already."""
    from pyvcore.lab.plugin_build import ensure_plugin
    from pyvcore.lab.qemu import LabError

    try:
        return ensure_plugin(log=log)
    except LabError as err:
        raise SetupError(f"{err} ({err.detail})" if err.detail else str(err)) from None


def _qemu_cached(cache: Path) -> bool:
    """True when the patched QEMU of the current patch series is built (False when its
    source version cannot be told yet)."""
    try:
        return qemubuild.patched_qemu_path(cache).is_file()
    except SetupError:
        return False


def setup(
    *,
    build_qemu: bool = True,
    force_qemu: bool = False,
    kernel_names: Sequence[str] = (),
    build_plugin: bool = True,
    check_cold: bool = False,
) -> int:
    """Run every setup step; returns a process exit status (0, or 2 when a step failed).

    ``kernel_names``: the Debian kernels to set up (:data:`pyvcore.lab.kernels.KERNELS`);
    the default kernel is always set up. ``check_cold``: then check the QEMU build's cold
    path (:func:`pyvcore.lab.qemubuild.check_cold_build`), unless this run built QEMU."""
    cache = cache_dir()
    codename = apt.os_codename()
    names = [kernels.DEFAULT_KERNEL, *(n for n in kernel_names if n != kernels.DEFAULT_KERNEL)]
    total = time.monotonic()
    ran: list[Step] = []  # every step this run went through, in order, for the summary
    manifests: dict[str, KernelManifest] = {}

    def step(name: str) -> Step:
        ran.append(Step(name))
        return ran[-1]

    try:
        with step("apt packages"):
            apt.ensure_apt(codename)
        with step("pip build tools") as pip_step:
            # Only QEMU's configure uses them: a cached QEMU needs none installed.
            if check_cold or (build_qemu and (force_qemu or not _qemu_cached(cache))):
                piptools.ensure_pip_build_tools()
            else:
                pip_step.note = "skipped: no QEMU build to configure"
                log("pip: meson, pycotap, distlib not needed (the patched QEMU is cached or not built)")
        with step("kernel apt lists"):
            kernel_apt = kernels.private_apt(cache, names)
        for name in names:
            with step(f"kernel {name} and busybox"):
                manifests[name] = kernels.ensure_kernel(cache, name, kernel_apt)
        qemu = None
        built_qemu = False
        if build_qemu:
            # A build from scratch now is the cold path itself: the check need not redo it.
            built_qemu = check_cold and (force_qemu or not qemubuild.patched_qemu_path(cache).is_file())
            with step("patched QEMU"):
                qemu = qemubuild.ensure_patched_qemu(cache, force=force_qemu)
        plugin = None
        if build_plugin:
            with step("QEMU trace plugin"):
                plugin = ensure_trace_plugin()
        with step("guest programs"):
            ensure_guest_programs(cache)
        if check_cold:
            with step("QEMU cold check") as cold:
                if built_qemu:
                    cold.note = "skipped: the patched QEMU was just built from scratch"
                    log("QEMU cold check: skipped, the patched QEMU was just built from scratch")
                else:
                    qemubuild.check_cold_build(cache)
                    worked()
    except SetupError as err:
        print(f"pyvcore lab setup: {err}", file=sys.stderr)
        return 2
    log(f"all done in {time.monotonic() - total:.1f} s; cache {cache}")
    width = max(len(s.name) for s in ran)
    for s in ran:
        log(f"  {s.name:<{width}}  {s.seconds or 0.0:6.1f} s  {s.state}".rstrip())
    for name, manifest in manifests.items():
        log(f"kernel {name}: {manifest.package} {manifest.version}: {manifest.vmlinux}")
    if qemu:
        log(f"qemu     {qemu} (patched); stock {STOCK_QEMU}")
    if plugin:
        log(f"plugin   {plugin}")
    return 0


def iter_missing(cache: Path | None = None) -> Iterator[str]:
    """What a lab boot needs that is not there (for a clear 'run setup' error)."""
    if KernelManifest.load(cache) is None:
        yield "the kernel unpack (vmlinux, kvm.ko, kvm-hv.ko, busybox)"
    if not (QEMU_DATA_DIR / "skiboot.lid").is_file():
        yield f"{QEMU_DATA_DIR}/skiboot.lid (qemu-system-data)"
