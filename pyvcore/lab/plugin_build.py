"""Build pyvcore's QEMU TCG plugin (``rust/plugin``) once, cached by its content.

The plugin is the cdylib ``libpyvcore_plugin.so`` of the Cargo workspace.  It is
built with ``cargo build --release -p pyvcore-plugin`` and copied to
``<cache>/plugin/<key>/libpyvcore_plugin.so``, where ``key`` hashes every source
it is built from (the workspace manifests and lock file, ``rust/core``,
``rust/plugin``): the same sources never build twice, a changed one builds a new
plugin.  ``lab setup`` calls :func:`ensure_plugin`; ``pyvcore trace`` calls it
too, so a plugin is there whenever a trace needs one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from pyvcore.lab.cache import cache_dir
from pyvcore.lab.qemu import LabError
from pyvcore.lab.steps import worked

PLUGIN_NAME = "libpyvcore_plugin.so"
BUILD_TIMEOUT_S = 1800.0


def source_root() -> Path:
    """The checkout the package runs from (the plugin is built from source)."""
    return Path(__file__).resolve().parents[2]


def plugin_sources(root: Path) -> list[Path]:
    """Every file the plugin is built from, sorted.

    Raises LabError when ``root`` holds no plugin source (an installed wheel)."""
    if not (root / "rust" / "plugin" / "Cargo.toml").is_file():
        raise LabError(
            f"the plugin's source (rust/plugin) is not under {root}",
            "pyvcore trace builds its QEMU plugin from a checkout: pip install -e <checkout>",
        )
    files = [root / "Cargo.toml", root / "Cargo.lock"]
    for sub in ("rust/core", "rust/plugin"):
        files += [p for p in (root / sub).rglob("*") if p.is_file() and "target" not in p.parts]
    return sorted(f for f in files if f.exists())


def plugin_key(root: Path) -> str:
    """16 hex digits of SHA-256 over the sources' paths and contents."""
    h = hashlib.sha256()
    for f in plugin_sources(root):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def ensure_plugin(*, root: Path | None = None, log: Callable[[str], None] | None = None) -> Path:
    """The path of the built plugin, building it first if this content has none yet.

    Needs ``cargo`` (the Rust toolchain) on PATH for a build.  Raises LabError (one
    line, the build's last lines as detail) when it cannot build."""
    root = root or source_root()
    key = plugin_key(root)
    dest = cache_dir() / "plugin" / key / PLUGIN_NAME
    if dest.is_file():
        return dest
    worked()  # a `lab setup` step that builds it is not "cached"
    cargo = shutil.which("cargo")
    if cargo is None:
        raise LabError("cannot build the QEMU plugin: cargo is not on PATH", "install Rust (rustup.rs)")
    # One target directory per checkout: cargo's output file has one name, so two
    # checkouts building into one directory could copy each other's plugin.
    checkout = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    target = cache_dir() / "plugin" / f"target-{checkout}"
    target.mkdir(parents=True, exist_ok=True)
    say = log or (lambda message: None)
    say(f"building the QEMU plugin ({key}) ...")
    started = time.monotonic()
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    cmd = [cargo, "build", "--release", "--locked", "-p", "pyvcore-plugin"]
    with open(target / ".lock", "w") as lock:  # one build per checkout at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            done = subprocess.run(
                cmd, cwd=root, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise LabError(f"building the QEMU plugin took over {BUILD_TIMEOUT_S:.0f} s") from None
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            raise LabError("building the QEMU plugin failed (cargo build -p pyvcore-plugin)", tail)
        built = target / "release" / PLUGIN_NAME
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_suffix(".part")
        shutil.copy2(built, partial)
        partial.replace(dest)
    say(f"built the QEMU plugin in {time.monotonic() - started:.0f} s: {dest}")
    return dest
