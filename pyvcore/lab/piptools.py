"""`lab setup`'s pip step: the Python tools QEMU's configure needs."""

from __future__ import annotations

import sys
from importlib import metadata

from pyvcore.lab.steps import indent, log, run

# Debian's dfsg source tarball has no python/wheels/, so QEMU's configure needs these from
# pip. distlib: configure imports ``distlib.version`` and used to find pip's vendored copy,
# which pip 26 no longer ships ("found no usable distlib, please install it").
PIP_BUILD_PACKAGES = {"meson": "1.5.2", "pycotap": "1.3.1", "distlib": "0.4.4"}


def missing_pip_build_tools() -> list[str]:
    """``name==version`` of each build tool not installed at its pinned version."""
    missing = []
    for name, version in PIP_BUILD_PACKAGES.items():
        try:
            if metadata.version(name) == version:
                continue
        except metadata.PackageNotFoundError:
            pass
        missing.append(f"{name}=={version}")
    return missing


def ensure_pip_build_tools() -> None:
    """Install the missing build tools into this interpreter (the one configure runs)."""
    missing = missing_pip_build_tools()
    if not missing:
        log("pip: " + ", ".join(f"{n} {v}" for n, v in PIP_BUILD_PACKAGES.items()) + " present")
        return
    run([sys.executable, "-m", "pip", "install", "-q", *missing], echo=indent)
