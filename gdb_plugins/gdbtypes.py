"""gdb struct types for a kernel that has BTF but no DWARF.

The C that :mod:`pyvcore.btftypes` writes from the BTF layouts is compiled with
``-g`` by the ppc64le cross compiler and its DWARF loaded with
``add-symbol-file``: afterwards ``struct paca_struct`` and the structs it
points to are gdb types like any other, so ``p $pv_paca(0)->kvm_hstate``
works.  Compiled once per layout (cached by content under
``~/.cache/pyvcore/gdb-types``); without a compiler the $pv_* functions stay
``void *`` and pv-print prints the fields.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import gdb  # type: ignore[import-not-found]

from pyvcore.btftypes import ROOTS, c_source
from pyvcore.layout import LayoutError

COMPILERS = ("powerpc64le-linux-gnu-gcc", "powerpc64-linux-gnu-gcc")
_loaded: dict[str, bool] = {}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pyvcore" / "gdb-types"


def compiler() -> str | None:
    """A compiler that targets ppc64 (a cross gcc, or gcc on a ppc64le host)."""
    for cc in COMPILERS:
        if shutil.which(cc):
            return cc
    if os.uname().machine == "ppc64le" and shutil.which("gcc"):
        return "gcc"
    return None


def ensure(k: object) -> bool:
    """Load gdb types for the kernel ``k`` (a session Kernel) from its BTF; True when
    ``struct paca_struct`` is a gdb type afterwards."""
    layouts = k.layouts  # type: ignore[attr-defined]
    if layouts.origin != "BTF":
        return False
    key = str(getattr(k, "path", ""))
    if key in _loaded:
        return _loaded[key]
    _loaded[key] = False
    cc = compiler()
    if cc is None:
        return False
    try:
        source = c_source(layouts, [r for r in ROOTS if layouts.has_struct(r)])
    except LayoutError:
        return False
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    out = cache_dir() / f"{digest}.o"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        src = out.with_suffix(".c")
        src.write_text(source)
        tmp = out.with_suffix(f".{os.getpid()}.o")
        r = subprocess.run(
            [cc, "-g", "-c", "-o", str(tmp), str(src)], capture_output=True, text=True, timeout=120
        )
        if r.returncode != 0:
            gdb.write(f"pyvcore: no gdb types from BTF ({cc} failed: {r.stderr.strip()[:200]})\n", gdb.STDERR)
            return False
        tmp.replace(out)
    try:
        gdb.execute(f"add-symbol-file {out} 0", to_string=True)
        gdb.lookup_type("struct paca_struct")
    except gdb.error:
        return False
    _loaded[key] = True
    return True
