"""Where the lab keeps its slow artefacts, and the keys that say when they are stale.

Layout under ``${XDG_CACHE_HOME:-~/.cache}/pyvcore``::

    debs/                         downloaded .deb files (apt-get download)
    kernel/<package>_<version>/   dpkg-deb -x of the kernel package, plus ko/ (decompressed modules)
    kernel/current.json           the kernel/busybox the lab boots (written by setup)
    kernel/by-name/<name>.json    the same for `lab setup --kernel NAME` (6.1, 7.2-64k, ...)
    busybox/<version>/            dpkg-deb -x of busybox-static:ppc64el
    qemu/<key>/qemu-system-ppc64  patched QEMU, key = hash(patches in order, source version, configure args)
    qemu/cold-check.log           output of the last `lab setup --check-cold` (configure, ninja)
    plugin/builds/<key>/          `pyvcore trace`'s QEMU plugin, key = hash of what its build read
    plugin/target/                cargo's target directory for it (see pyvcore.lab.plugin_build)
    guest/<key>/                  guest programs, key = hash of the guest sources
    initramfs/<key>.cpio.gz       initramfs, key = hash(guest key, modules, busybox)
    lab/state.json                the detached lab started by `pyvcore lab up`
    lab/runs/<stamp>/             console log and QEMU stderr of each boot
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
RUNS_KEPT = 20  # run directories kept under lab/runs
QEMU_PATCH_DIR = PACKAGE_DIR / "qemu-patches"
GUEST_SOURCE_DIR = PACKAGE_DIR / "guest"


def cache_dir() -> Path:
    """The pyvcore cache directory (not created)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pyvcore"


def state_file() -> Path:
    """``lab/state.json``: the detached lab started by `pyvcore lab up`."""
    return cache_dir() / "lab" / "state.json"


def new_run_dir(scenario: str) -> Path:
    """A fresh ``lab/runs/<stamp>-<scenario>-*`` directory for one boot; the oldest beyond
    the last RUNS_KEPT are removed."""
    runs = cache_dir() / "lab" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(tempfile.mkdtemp(prefix=f"{stamp}-{scenario}-", dir=runs))
    old = sorted(p for p in runs.iterdir() if p.is_dir())
    for stale in old[:-RUNS_KEPT]:
        shutil.rmtree(stale, ignore_errors=True)
    return run_dir


def qemu_patches(patch_dir: Path = QEMU_PATCH_DIR) -> list[Path]:
    """Every ``*.patch`` of our QEMU series, in the order they are applied."""
    return sorted(patch_dir.glob("*.patch"), key=lambda p: p.name)


def qemu_build_key(patches: Iterable[Path], source_version: str, configure_args: Iterable[str] = ()) -> str:
    """Cache key of a patched QEMU build: the patch series (names and bytes, in order),
    the source package version and the configure arguments. Any edit to a patch or a
    configure option (say ``--enable-plugins``) gives a new build."""
    digest = hashlib.sha256()
    digest.update(b"qemu-source " + source_version.encode() + b"\n")
    for arg in configure_args:
        digest.update(b"configure " + arg.encode() + b"\n")
    for patch in patches:
        data = patch.read_bytes()
        digest.update(f"patch {patch.name} {len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


def tree_key(paths: Iterable[Path], *extra: str) -> str:
    """Hash of files (relative names and contents) plus extra strings: a cache key for
    things built from sources that live in the package (guest programs, initramfs)."""
    digest = hashlib.sha256()
    for item in extra:
        digest.update(b"extra " + item.encode() + b"\n")
    for path in sorted(paths):
        if path.is_file():
            data = path.read_bytes()
            digest.update(f"file {path.name} {len(data)}\n".encode())
            digest.update(data)
    return digest.hexdigest()[:16]


def guest_sources() -> list[Path]:
    """Files the guest programs and /init are built from (the lab-guest engineer's assets)."""
    files = [PACKAGE_DIR / "guest.py"]
    if GUEST_SOURCE_DIR.is_dir():
        files += [p for p in GUEST_SOURCE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return files


@dataclass
class KernelManifest:
    """What `lab setup` unpacked: the files a boot needs. Saved as kernel/current.json."""

    package: str
    version: str
    vmlinux: str
    modules: dict[str, str]  # "kvm" / "kvm_hv" -> decompressed .ko
    busybox: str
    busybox_version: str
    extra: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def path(cache: Path | None = None, name: str | None = None) -> Path:
        """kernel/current.json (the default kernel) or kernel/by-name/NAME.json."""
        root = (cache or cache_dir()) / "kernel"
        return root / "current.json" if name is None else root / "by-name" / f"{name}.json"

    @staticmethod
    def names(cache: Path | None = None) -> list[str]:
        """The kernel names `lab setup --kernel NAME` has unpacked."""
        root = (cache or cache_dir()) / "kernel" / "by-name"
        return sorted(p.stem for p in root.glob("*.json"))

    def save(self, cache: Path | None = None, name: str | None = None) -> Path:
        target = self.path(cache, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(target)
        return target

    @classmethod
    def load(cls, cache: Path | None = None, name: str | None = None) -> KernelManifest | None:
        """The manifest (of the default kernel, or of ``name``), or None when setup has not
        unpacked it (or its files vanished)."""
        if name is not None and (not name or "/" in name or name.startswith(".")):
            return None
        target = cls.path(cache, name)
        try:
            data = json.loads(target.read_text())
            manifest = cls(**data)
        except (OSError, ValueError, TypeError):
            return None
        needed = [manifest.vmlinux, manifest.busybox, *manifest.modules.values()]
        if not all(Path(p).is_file() for p in needed):
            return None
        return manifest
