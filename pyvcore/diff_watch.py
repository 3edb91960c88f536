"""gdb's side of a live `pyvcore diff`: gdb-multiarch attached to the target with the
pv-* plugin loaded (:func:`attach`), and ``pv-watch`` driven over gdb/MI until enough
snapshots are logged or a deadline passes (:func:`watch`). :mod:`pyvcore.diff_live`
decides what to watch and for how long.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyvcore.gdbcli import module_commands, plugin_entry
from pyvcore.mi import GdbCommandError, GdbMI, MIError, MITimeout

Say = Callable[[str], None]

# The stop label of the snapshot taken when a watch deadline interrupts the target.
DEADLINE_STOP = "(deadline)"


def attach(lab: Any, *, gdb: str = "gdb-multiarch", timeout: float = 120.0) -> GdbMI:
    """gdb-multiarch attached to a target (a Lab or a GdbStub) with vmlinux and the plugin loaded.

    ``lab`` needs ``.vmlinux``, ``.gdb_address`` and ``.status()`` (the ``lab status
    --json`` object: module section addresses).  Raises ``pyvcore.mi.MIError``.
    """
    mi = GdbMI(gdb, timeout=timeout)
    try:
        mi.console("set architecture powerpc:common64")
        mi.console("set endian little")
        mi.execute(f"-file-exec-and-symbols {lab.vmlinux}", timeout=timeout)
        for command in module_commands(lab.status()):
            mi.console(command, timeout=timeout)
        result = mi.console(f"source {plugin_entry()}", timeout=timeout)
        mi.plugin_banner = result.console.strip()  # type: ignore[attr-defined]
        try:
            mi.connect_remote(lab.gdb_address, timeout=timeout)
        except GdbCommandError as exc:  # gdb's "HOST:PORT: Connection timed out."
            said = exc.message.strip().removeprefix(f"{lab.gdb_address}:").strip().rstrip(".")
            raise MIError(f"gdb could not connect to {lab.gdb_address}: {said}") from None
        mi.poll_events(0.1)
        return mi
    except BaseException:
        mi.close()
        raise


def watch(
    mi: GdbMI,
    log: Path,
    *,
    stops: int,
    deadline_s: float,
    extra: str = "",
    append: bool = False,
    tick: Say | None = None,
    modules_later: Callable[[], list[str]] | None = None,
) -> dict[str, Any]:
    """Run ``pv-watch`` until ``stops`` more snapshots are logged or the deadline passes.

    Works whether pv-watch stops the target itself (at --max-stops or on a
    violation) or keeps it running: each stop of the target is answered with a
    continue until enough snapshots are in the log; at the deadline the target
    is interrupted.  Leaves the target stopped and the watch off.  ``extra``
    goes to pv-watch (e.g. ``--at kvm_do_nap``); with ``append`` the log keeps
    what earlier phases wrote.  ``tick`` hears the progress about once a second.
    ``modules_later`` (a target watched from its boot): called five times a second
    while the target runs; once it returns the gdb commands that load the modules'
    symbols, the target is interrupted, they are run and pv-watch is armed again with
    every hook point (kvm-hv's too).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    if not append:
        log.unlink(missing_ok=True)
    stops += count_lines(log)
    if mi.running:
        mi.interrupt(timeout=30)
    on = mi.console(
        f"pv-watch on --log {log} --max-stops {stops - count_lines(log)} {extra}".strip(), timeout=60
    )
    started = time.monotonic()
    end = started + deadline_s
    target_stops = 0
    last_check = 0.0
    reason = "deadline"
    stop: dict[str, Any] = {}
    last_tick = 0.0
    while True:
        try:
            mi.cont(wait=False, timeout=30)
        except GdbCommandError as exc:  # e.g. the guest powered off: "not being run"
            reason = f"target gone ({exc.message})"
            break
        while time.monotonic() < end:
            try:
                stop = mi.wait_for_stop(timeout=min(0.05, max(0.01, end - time.monotonic())))
                target_stops += 1
                break
            except MITimeout:
                if count_lines(log) >= stops:
                    break
                if modules_later is not None and time.monotonic() - last_check >= 0.2:
                    last_check = time.monotonic()
                    commands = modules_later()
                    if commands:
                        modules_later = None
                        _rearm(mi, log, stops - count_lines(log), extra, commands)
                        break
            if tick and time.monotonic() - last_tick >= 1.0:
                last_tick = time.monotonic()
                tick(
                    f"watching: {count_lines(log)}/{stops} stops logged, "
                    f"{end - last_tick:.0f} s left of the deadline"
                )
        if mi.target_exited:
            reason = f"target gone ({stop.get('reason')})"
            break
        if count_lines(log) >= stops:
            reason = "stops"
            break
        if time.monotonic() >= end:
            break
    _end_watch(mi, at_deadline=reason == "deadline")
    return {
        "watch_s": round(time.monotonic() - started, 3),
        "target_stops": target_stops,
        "ended_by": reason,
        "pv_watch": on.console.strip(),  # where it planted breakpoints, what it could not
    }


def _end_watch(mi: GdbMI, *, at_deadline: bool) -> None:
    """Leave the target stopped and the watch off; a watch ended by its deadline takes one
    more snapshot first."""
    if mi.running:
        mi.interrupt(timeout=30)
    if at_deadline and not mi.target_exited:
        # Interrupted with the watch still on: one more snapshot, so a core hung
        # inside a vcore run is judged by the run's time bound (invariant 44).
        with contextlib.suppress(GdbCommandError, MITimeout):
            mi.console(f"pv-watch now --stop {DEADLINE_STOP}", timeout=60)
    if not mi.target_exited:
        # already off when pv-watch turned itself off at --max-stops
        with contextlib.suppress(GdbCommandError):
            mi.console("pv-watch off", timeout=60)


def _rearm(mi: GdbMI, log: Path, left: int, extra: str, commands: list[str]) -> None:
    """Interrupt, load the modules' symbols, plant pv-watch again at every hook point."""
    mi.interrupt(timeout=30)
    for command in commands:
        mi.console(command, timeout=120)
    mi.console(f"pv-watch on --log {log} --max-stops {max(left, 1)} {extra}".strip(), timeout=60)


def count_lines(path: Path) -> int:
    """Non-blank lines of ``path`` (0 when it does not exist yet): snapshots logged so far."""
    try:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except FileNotFoundError:
        return 0
