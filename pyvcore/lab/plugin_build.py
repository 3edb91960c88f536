"""Build pyvcore's QEMU TCG plugin (``rust/plugin``) once, cached by what its build reads.

The plugin is the cdylib ``libpyvcore_plugin.so`` of the Cargo workspace, built with
``cargo build --release --locked -p pyvcore-plugin``. Its cache key hashes exactly the
files that build reads from the checkout: the Cargo manifests, ``Cargo.lock`` (which pins
every crate from crates.io, among them ``qemu-plugin-sys`` with QEMU's plugin API
bindings, so no QEMU header is read), and the Rust sources rustc loaded for it, as
cargo's dep-info file (``release/libpyvcore_plugin.d``) lists them. A ``#[cfg(test)]``
module of ``rust/core``, its examples, Python code or docs are not in that list, so a
change there does not rebuild the plugin.

Layout under ``<cache>/plugin``::

    builds/<key>/libpyvcore_plugin.so   one build; <key> hashes the files named in
    builds/<key>/inputs.txt             inputs.txt (paths relative to the checkout)
    target/                             cargo's target directory, shared by every
                                        checkout (one build at a time: target/.lock)

A lookup hashes the current checkout's copies of each build's ``inputs.txt`` files, newest
build first; a hit is touched, so the :data:`BUILDS_KEPT` most recently used builds are the
ones kept. ``lab setup`` calls :func:`ensure_plugin`; ``pyvcore trace`` does too, so a
plugin is there whenever a trace needs one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pyvcore.lab.cache import cache_dir
from pyvcore.lab.qemu import LabError
from pyvcore.lab.steps import worked

PLUGIN_NAME = "libpyvcore_plugin.so"
INPUTS_NAME = "inputs.txt"
BUILD_TIMEOUT_S = 1800.0
BUILDS_KEPT = 4
# Cargo never deletes artefacts; each checkout adds its own pyvcore-core/-plugin ones to
# the shared target directory. Past this size it is emptied (the next build redoes the
# crates.io dependencies, about a minute more).
TARGET_MAX_BYTES = 1 << 30
# Layouts before builds/ (<cache>/plugin/<key>/ and one target-<checkout>/ per checkout)
# are removed once they have not been written for this long (a trace of an older
# checkout may still be about to load one).
LEGACY_GRACE_S = 3600.0
MANIFESTS = ("Cargo.toml", "Cargo.lock", "rust/core/Cargo.toml", "rust/plugin/Cargo.toml")
SOURCE_DIRS = ("rust/core", "rust/plugin")


def source_root() -> Path:
    """The checkout the package runs from (the plugin is built from source)."""
    return Path(__file__).resolve().parents[2]


def check_root(root: Path) -> None:
    """LabError when ``root`` holds no plugin source (an installed wheel)."""
    if not (root / "rust" / "plugin" / "Cargo.toml").is_file():
        raise LabError(
            f"the plugin's source (rust/plugin) is not under {root}",
            "pyvcore trace builds its QEMU plugin from a checkout: pip install -e <checkout>",
        )


def plugin_key(root: Path, inputs: Iterable[str]) -> str | None:
    """16 hex digits of SHA-256 over ``inputs`` (paths relative to ``root``) and their
    contents; None when one of them is missing (a build that cannot be this checkout's)."""
    h = hashlib.sha256()
    for rel in sorted(set(inputs)):
        try:
            data = (root / rel).read_bytes()
        except OSError:
            return None
        h.update(rel.encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:16]


def dep_info_inputs(dep_file: Path, root: Path) -> list[str]:
    """The checkout's files a build read: the paths of cargo's dep-info file (Makefile
    syntax, ``target: dep dep ...``, a space in a name escaped as ``\\ ``) that lie under
    ``root``, relative to it, plus the Cargo manifests and lock file. Sorted."""
    text = dep_file.read_text()
    resolved = root.resolve()
    found = set(MANIFESTS)
    for line in text.splitlines():
        _, sep, deps = line.partition(": ")
        if not sep:
            continue
        for item in re.split(r"(?<!\\) +", deps.strip()):
            path = Path(item.replace("\\ ", " "))
            if item and path.is_absolute() and path.resolve().is_relative_to(resolved):
                found.add(path.resolve().relative_to(resolved).as_posix())
    return sorted(found)


def builds_dir(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "plugin" / "builds"


def cached_plugin(root: Path, cache: Path | None = None) -> Path | None:
    """The cached build of this checkout's plugin sources (touched), or None."""
    by_inputs: dict[tuple[str, ...], str | None] = {}
    for build in _builds(builds_dir(cache)):
        try:
            inputs = tuple((build / INPUTS_NAME).read_text().split("\n"))
        except OSError:
            continue
        inputs = tuple(i for i in inputs if i)
        if inputs not in by_inputs:
            by_inputs[inputs] = plugin_key(root, inputs)
        so = build / PLUGIN_NAME
        if by_inputs[inputs] == build.name and so.is_file():
            os.utime(so)
            return so
    return None


def ensure_plugin(*, root: Path | None = None, log: Callable[[str], None] | None = None) -> Path:
    """The path of the built plugin, building it first if these sources have none yet.

    Needs ``cargo`` (the Rust toolchain) on PATH for a build. Raises LabError (one
    line, the build's last lines as detail) when it cannot build."""
    root = root or source_root()
    check_root(root)
    hit = cached_plugin(root)
    if hit is not None:
        prune(cache_dir())  # a few stat() calls; the older layout goes without a build too
        return hit
    cargo = shutil.which("cargo")
    if cargo is None:
        raise LabError("cannot build the QEMU plugin: cargo is not on PATH", "install Rust (rustup.rs)")
    target = cache_dir() / "plugin" / "target"
    target.mkdir(parents=True, exist_ok=True)
    say = log or (lambda message: None)
    with open(target / ".lock", "w") as lock:  # one build in the shared target dir at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        hit = cached_plugin(root)  # built by another checkout while this one waited
        if hit is not None:
            return hit
        worked()  # a `lab setup` step that builds it is not "cached"
        say("building the QEMU plugin ...")
        started = time.monotonic()
        snapshot = _snapshot(root)  # the sources as they were when the build started
        _cargo_build(cargo, root, target)
        inputs = dep_info_inputs(target / "release" / "libpyvcore_plugin.d", root)
        key = _key_of(root, inputs, snapshot)
        dest = _store(target / "release" / PLUGIN_NAME, inputs, builds_dir() / key)
        if _tree_bytes(target) > TARGET_MAX_BYTES:
            _remove_contents(target, keep={".lock"})
    prune(cache_dir())
    say(f"built the QEMU plugin in {time.monotonic() - started:.0f} s: {dest}")
    return dest


def _cargo_build(cargo: str, root: Path, target: Path) -> None:
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    cmd = [cargo, "build", "--release", "--locked", "-p", "pyvcore-plugin"]
    try:
        done = subprocess.run(
            cmd, cwd=root, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"building the QEMU plugin took over {BUILD_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise LabError("building the QEMU plugin failed (cargo build -p pyvcore-plugin)", tail)


def _snapshot(root: Path) -> dict[str, bytes]:
    files = [root / m for m in MANIFESTS]
    for sub in SOURCE_DIRS:
        files += [p for p in (root / sub).rglob("*.rs") if "target" not in p.parts]
    return {f.relative_to(root).as_posix(): f.read_bytes() for f in files if f.is_file()}


def _key_of(root: Path, inputs: list[str], snapshot: dict[str, bytes]) -> str:
    """plugin_key over the sources as the build read them (``snapshot``), so an edit made
    during the build gives a key the next lookup will not match."""
    h = hashlib.sha256()
    for rel in sorted(set(inputs)):
        data = snapshot[rel] if rel in snapshot else (root / rel).read_bytes()
        h.update(rel.encode() + b"\0" + data + b"\0")
    return h.hexdigest()[:16]


def _store(built: Path, inputs: list[str], dest_dir: Path) -> Path:
    """Copy the build and its input list to ``dest_dir`` (atomically: a rename)."""
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest_dir.name + ".", dir=dest_dir.parent))
    shutil.copy2(built, tmp / PLUGIN_NAME)
    (tmp / INPUTS_NAME).write_text("\n".join(inputs) + "\n")
    shutil.rmtree(dest_dir, ignore_errors=True)
    tmp.rename(dest_dir)
    os.utime(dest_dir / PLUGIN_NAME)
    return dest_dir / PLUGIN_NAME


def _builds(root: Path) -> list[Path]:
    """Build directories (``<key>/`` holding a plugin), most recently used first."""
    if not root.is_dir():
        return []
    found = [(d / PLUGIN_NAME) for d in root.iterdir() if re.fullmatch(r"[0-9a-f]{16}", d.name)]
    return [so.parent for so in sorted((so for so in found if so.is_file()), key=_mtime, reverse=True)]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def prune(cache: Path, keep: int | None = None, now: float | None = None) -> list[Path]:
    """Remove all but the ``keep`` (BUILDS_KEPT) most recently used builds, and the older layout's
    ``<key>/`` and ``target-<checkout>/`` directories not written for LEGACY_GRACE_S (a
    target directory only when no build holds its lock). Returns what was removed."""
    removed = _builds(builds_dir(cache))[BUILDS_KEPT if keep is None else keep :]
    plugin = cache / "plugin"
    old = (now if now is not None else time.time()) - LEGACY_GRACE_S
    removed += [entry for entry in (plugin.iterdir() if plugin.is_dir() else ()) if _stale_legacy(entry, old)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _stale_legacy(entry: Path, before: float) -> bool:
    """An older layout's build (``<key>/``) or target directory not written since ``before``."""
    if re.fullmatch(r"[0-9a-f]{16}", entry.name):
        return _newest_mtime(entry) < before
    return entry.name.startswith("target-") and _newest_mtime(entry / "release") < before and _unlocked(entry)


def _newest_mtime(directory: Path) -> float:
    try:
        return max([directory.stat().st_mtime, *(p.stat().st_mtime for p in directory.iterdir())])
    except (OSError, ValueError):
        return 0.0


def _unlocked(target: Path) -> bool:
    """True when no build holds ``target/.lock``."""
    try:
        with open(target / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _remove_contents(root: Path, keep: set[str]) -> None:
    for entry in root.iterdir():
        if entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
