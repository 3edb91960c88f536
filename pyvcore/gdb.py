"""gdb entry point of pyvcore: `source /path/to/pyvcore/gdb.py` in gdb-multiarch.

gdb runs its own Python (3.11 on Debian 12), not the interpreter pip installed
pyvcore into, so this file first puts the directory that holds the `pyvcore`
package on sys.path (a checkout, or the site-packages of an installed wheel);
the abi3 extension `pyvcore._core` then loads in gdb's Python as well.  The
gdb-only code lives in `gdb_plugins/`, shipped as `pyvcore._gdb_plugins`.

Prints one line saying what it found.  Only gdb ever imports this module.
"""

import os
import sys

import gdb  # type: ignore[import-not-found]


def _package_root() -> str:
    here = os.path.dirname(os.path.realpath(__file__))  # .../pyvcore
    return os.path.dirname(here)


def _load() -> None:
    root = _package_root()
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        import pyvcore._core  # noqa: F401  (the compiled part must load in gdb's Python)
    except Exception as e:
        gdb.write(
            f"pyvcore: cannot load pyvcore from {root} ({type(e).__name__}: {e}); "
            f"rebuild with `pip install -e .` or reinstall the wheel\n",
            gdb.STDERR,
        )
        return
    try:
        from pyvcore import _gdb_plugins as plugins
    except Exception as e:
        gdb.write(f"pyvcore: gdb plugins missing under {root}/pyvcore/_gdb_plugins ({e})\n", gdb.STDERR)
        return
    plugins.register()
    gdb.write(plugins.banner() + "\n")


_load()
