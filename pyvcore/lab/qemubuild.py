"""`lab setup`'s QEMU step: Debian's qemu source with the lab's patches, built and cached.

The patched ``qemu-system-ppc64`` is built from the same source package version as the
installed stock QEMU, so the two differ only by the patches in ``pyvcore/lab/qemu-patches``.
It is cached under ``qemu/<key>/`` with key = hash(patches in order, source version,
configure arguments).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyvcore.lab.cache import qemu_build_key, qemu_patches
from pyvcore.lab.steps import SetupError, Step, indent, log, run

__all__ = ["QEMU_CONFIGURE_ARGS", "SetupError", "ensure_patched_qemu", "patched_qemu_path"]

QEMU_CONFIGURE_ARGS = (
    "--target-list=ppc64-softmmu",
    "--without-default-features",
    "--disable-docs",
    "--enable-fdt=system",
    "--disable-install-blobs",
    # TCG plugins (``-plugin``): the continuous trace loads its plugin into this QEMU.
    "--enable-plugins",
)


def qemu_source_version() -> str:
    """Version of Debian's qemu source package the installed stock QEMU was built from."""
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${source:Version}", "qemu-system-ppc"], capture_output=True, text=True
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SetupError("qemu-system-ppc is not installed: run `pyvcore lab setup` (apt step) first")
    return proc.stdout.strip()


def patched_qemu_path(cache: Path, source_version: str | None = None) -> Path:
    """Where the patched qemu-system-ppc64 for the current patch series lives."""
    key = qemu_build_key(qemu_patches(), source_version or qemu_source_version(), QEMU_CONFIGURE_ARGS)
    return cache / "qemu" / key / "qemu-system-ppc64"


def upstream_version(version: str) -> str:
    """'1:10.0.2+ds-2+deb13u1~bpo12+1' -> '10.0.2+ds' (the orig tarball's version)."""
    without_epoch = version.split(":", 1)[-1]
    return without_epoch.rsplit("-", 1)[0]


def fetch_qemu_source(version: str, dest: Path) -> Path:
    """Debian's qemu source tree at ``dest``. Uses the full source package (with Debian's
    patches) when the mirror has it; falls back to the orig tarball alone, saying so."""
    if (dest / "configure").is_file():
        return dest
    downloads = dest.parent / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    status, output = run(
        ["apt-get", "source", "--download-only", "-q", f"qemu={version}"],
        cwd=downloads,
        echo=indent,
        check=False,
    )
    no_epoch = version.split(":", 1)[-1]
    dsc = downloads / f"qemu_{no_epoch}.dsc"
    orig = downloads / f"qemu_{upstream_version(version)}.orig.tar.xz"
    tmp = Path(tempfile.mkdtemp(prefix="src.", dir=dest.parent))
    try:
        if status == 0 and dsc.is_file():
            run(["dpkg-source", "--no-check", "-x", str(dsc), str(tmp / "src")], echo=None)
        elif orig.is_file():
            log(
                f"qemu: the mirror served only {orig.name} (not the .dsc/.debian.tar.xz); "
                "building upstream's source from that tarball without Debian's patch series"
            )
            run(["tar", "-xf", str(orig), "-C", str(tmp)])
            (top,) = [p for p in tmp.iterdir() if p.is_dir()]
            top.rename(tmp / "src")
        else:
            raise SetupError(f"apt-get source qemu={version} failed:\n{output[-2000:]}")
        (tmp / "src").rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


class NinjaProgress:
    """Echo for ninja's output: its [N/M] progress about every 10 %, and error lines."""

    def __init__(self) -> None:
        self.step = -1

    def __call__(self, line: str) -> None:
        match = re.match(r"\[(\d+)/(\d+)\]", line)
        if match:
            done, total = int(match.group(1)), int(match.group(2))
            step = int(10 * done / total)
            if step > self.step or done == total:
                self.step = step
                indent(f"ninja {done}/{total}")
        elif "error" in line.lower():
            indent(line)


def ensure_patched_qemu(cache: Path, *, force: bool = False) -> Path:
    """The patched qemu-system-ppc64, built now unless cached (about 3.5 minutes on 2 idle cores)."""
    version = qemu_source_version()
    patches = qemu_patches()
    key = qemu_build_key(patches, version, QEMU_CONFIGURE_ARGS)
    out_dir = cache / "qemu" / key
    binary = out_dir / "qemu-system-ppc64"
    if binary.is_file() and not force:
        log(f"qemu: patched build {key} cached ({binary})")
        return binary
    log(f"qemu: building {version} with {len(patches)} patch(es): " + ", ".join(p.name for p in patches))
    pristine = fetch_qemu_source(version, cache / "qemu-src" / version.replace(":", "_") / "pristine")
    work = out_dir / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    src = work / "src"
    # A private copy: patches must apply to pristine source every time.
    shutil.copytree(pristine, src, symlinks=True)
    for patch in patches:
        run(["patch", "-p1", "--forward", "--batch", "-i", str(patch)], cwd=src, echo=indent)
    build = src / "build"
    build.mkdir()
    log_file = out_dir / "build.log"
    started = time.monotonic()
    with Step("qemu: configure"):
        _, out = run(["../configure", f"--python={sys.executable}", *QEMU_CONFIGURE_ARGS], cwd=build)
        log_file.write_text(out)
    with Step("qemu: ninja qemu-system-ppc64"):
        _, out = run(["ninja", "qemu-system-ppc64"], cwd=build, echo=NinjaProgress())
        with open(log_file, "a") as fh:
            fh.write(out)
    tmp_binary = out_dir / "qemu-system-ppc64.tmp"
    shutil.copy2(build / "qemu-system-ppc64", tmp_binary)
    tmp_binary.replace(binary)
    meta = {
        "source_version": version,
        "patches": [p.name for p in patches],
        "configure": list(QEMU_CONFIGURE_ARGS),
        "key": key,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (out_dir / "build.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    log(f"qemu: patched build {key} at {binary} in {meta['build_seconds']} s")
    return binary
