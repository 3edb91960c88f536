"""gdb-only half of pyvcore: the pv-* commands and $pv_* functions.

Loaded by ``pyvcore/gdb.py`` (``source`` it in gdb-multiarch); it ships in the
wheel as ``pyvcore._gdb_plugins``.  One module per subject, one gdb.Command
class per command, its docstring is the help text.
"""

from __future__ import annotations

from . import check, errors, paca, session, snapshot, vcore, vcpu, watch
from . import print as print_command

COMMANDS = ("pv-paca", "pv-vcore", "pv-vcpu", "pv-print", "pv-snapshot", "pv-check", "pv-watch")


def register() -> None:
    """Register every command, function and event hook (idempotent enough to re-source)."""
    paca.register()
    vcore.register()
    vcpu.register()
    print_command.register()
    snapshot.register()
    check.register()
    watch.register()
    session.install_events()
    # Last: every pv-* command and $pv_* function fails with one line, never a traceback.
    errors.guard_all(__name__)


def banner(width: int = 80) -> str:
    """What the plugin found (kernel, layout source, threads) or what is missing: one
    line, or one part per line when that is wider than ``width``."""
    import gdb  # type: ignore[import-not-found]

    parts = [", ".join(COMMANDS)]
    path = session.executable_path()
    if not path:
        parts.append("no vmlinux loaded yet (`file vmlinux`)")
    else:
        try:
            k = session.kernel()
            parts.append(f"kernel {k.image.release or '?'}")
            parts.append(
                f"layouts from {k.layouts.origin}, {k.layout.paca_array}, "
                f"{k.layout.entry_exit} -> variant {k.variant}"
            )
            if k.symbol("kvmppc_run_core") is None:
                parts.append("kvm-hv.ko symbols not loaded")
        except gdb.GdbError as e:
            parts.append(str(e).removeprefix("pyvcore: "))
    try:
        if session.connected():
            parts.append(f"{len(session.gdb_threads())} threads")
        else:
            parts.append("not connected yet")
    except gdb.error:
        parts.append("not connected yet")
    line = f"pyvcore {_version()}: " + "; ".join(parts)
    return line if len(line) <= width else f"pyvcore {_version()}:\n  " + ";\n  ".join(parts)


def _version() -> str:
    try:
        from pyvcore import __version__

        return __version__
    except ImportError:
        return "?"
