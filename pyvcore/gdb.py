"""gdb entry point of pyvcore: `source /path/to/pyvcore/gdb.py` in gdb-multiarch.

gdb runs its own Python (3.11 on Debian 12), not the interpreter pip installed
pyvcore into, so this file first puts the directory that holds the `pyvcore`
package on sys.path (a checkout, or the site-packages of an installed wheel);
the abi3 extension `pyvcore._core` then loads in gdb's Python as well.  The
gdb-only code lives in `gdb_plugins/`, shipped as `pyvcore._gdb_plugins`.

pyvcore's pure-Python dependencies (``tabulate``) must import in gdb's Python
too: when they do not, the site-packages of the interpreter pyvcore was
installed with is appended to sys.path (named by ``PYVCORE_SITE_PACKAGES``,
which ``pyvcore gdb`` sets, else ``$VIRTUAL_ENV``'s, else that of the
``python3`` on PATH).

Prints one line saying what it found.  Only gdb ever imports this module.
"""

import glob
import os
import subprocess
import sys
from collections.abc import Iterator

import gdb


def _package_root() -> str:
    here = os.path.dirname(os.path.realpath(__file__))  # .../pyvcore
    return os.path.dirname(here)


def _site_candidates() -> Iterator[str]:
    """Directories that may hold pyvcore's dependencies, most specific first."""
    named = os.environ.get("PYVCORE_SITE_PACKAGES")
    if named:
        yield from named.split(os.pathsep)
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:
        yield from sorted(glob.glob(os.path.join(venv, "lib", "python3*", "site-packages")))
    try:
        out = subprocess.run(
            [
                "python3",
                "-c",
                "import os, tabulate; print(os.path.dirname(os.path.dirname(tabulate.__file__)))",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return
    if out.returncode == 0 and out.stdout.strip():
        yield out.stdout.strip()


def _dependencies() -> bool:
    """Make ``tabulate`` importable; False (after saying how to fix it) if it is not."""
    try:
        import tabulate
    except ImportError:
        pass
    else:
        return True
    for path in _site_candidates():
        if os.path.isdir(path) and path not in sys.path:
            sys.path.append(path)
            try:
                import tabulate  # noqa: F401
            except ImportError:
                sys.path.remove(path)
                continue
            return True
    gdb.write(
        "pyvcore: gdb's Python cannot import `tabulate`: `apt-get install python3-tabulate`, "
        "or set PYVCORE_SITE_PACKAGES to the site-packages pyvcore was installed into\n",
        gdb.STDERR,
    )
    return False


def _load() -> None:
    root = _package_root()
    if root not in sys.path:
        sys.path.insert(0, root)
    if not _dependencies():
        return
    try:
        import pyvcore._core  # noqa: F401  (the compiled part must load in gdb's Python)
    except Exception as e:
        gdb.write(
            f"pyvcore: cannot load pyvcore from {root} ({e}); "
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
    gdb.write(plugins.banner(plugins.check.terminal_width()) + "\n")


_load()
