"""The `pyvcore` command.

Each subject module registers its own subcommands through a
``register(subparsers)`` function; this file only wires them together, so a
subject can be changed without touching the others, and applies one error
policy to every subcommand:

* exit 0 clean, 1 violations found, 2 unusable input / could not run / not
  judged / incomplete (a :class:`pyvcore.errors.PyvcoreError`, one line),
  3 internal error (one line and a request to report it; the traceback only
  with ``PYVCORE_DEBUG=1``);
* a closed pipe (``pyvcore check T | head -1``) ends quietly, the Unix way;
* Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Sequence

from pyvcore.errors import PyvcoreError

# Command -> the module that registers it. Each module must import without gdb
# and without a lab. Only the module of the command being run is imported
# (the lab's pulls in asyncio and QMP: `pyvcore check` should not pay for it).
SUBJECT_MODULES = {
    "check": "pyvcore.checker",  # pyvcore check TRACE.jsonl
    "invariants": "pyvcore.invariants",  # pyvcore invariants [N]
    "explore": "pyvcore.explorer",  # pyvcore explore --variant V --threads N
    "lab": "pyvcore.lab.cli",  # pyvcore lab setup|up|status|down
    "gdb": "pyvcore.gdbcli",  # pyvcore gdb
    "diff": "pyvcore.diff",  # pyvcore diff --scenario S
    "timeline": "pyvcore.timeline",  # pyvcore timeline TRACE -o OUT.html|.json|.png
    "show": "pyvcore.show",  # pyvcore show TRACE [--line N | --stop LABEL]
    "mutants": "pyvcore.mutants.cli",  # pyvcore mutants [--list] [--run NAME|all] [--json]
    "trace": "pyvcore.trace",  # pyvcore trace --scenario S (QEMU plugin, every store checked)
}

EXIT_INTERNAL = 3
EXIT_SIGINT = 130


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for one command, or for all of them when `command` is None."""
    parser = argparse.ArgumentParser(
        prog="pyvcore",
        description="Model and live checker of the KVM Book3S HV (POWER8) vcore scheduler.",
        epilog="Exit status: 0 clean, 1 violations, 2 unusable input / could not run / not judged, "
        "3 internal error.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = [SUBJECT_MODULES[command]] if command in SUBJECT_MODULES else SUBJECT_MODULES.values()
    for name in names:
        importlib.import_module(name).register(subparsers)
    return parser


def _quiet_broken_pipe() -> int:
    """stdout was closed by the reader: drop what is left, exit quietly with 141.

    128 + SIGPIPE is what a shell reports for a writer killed by a closed pipe:
    the verdict was not delivered, so a pipeline under ``set -o pipefail`` must
    not read it as 0 (clean)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 128 + signal.SIGPIPE


def _run(argv: list[str]) -> int:
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    code = int(args.func(args) or 0)
    sys.stdout.flush()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one pyvcore command with the error policy above; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and not argv[0].startswith("-") else ""
    prefix = f"pyvcore {command}".rstrip()
    try:
        return _run(argv)
    except PyvcoreError as e:
        print(f"{prefix}: {e.message}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_SIGINT
    except SystemExit:
        raise
    except UnicodeDecodeError as e:
        print(f"{prefix}: input is not UTF-8 text ({e.reason} at byte {e.start})", file=sys.stderr)
        return 2
    except Exception as e:  # the last resort: one line, never a traceback
        if os.environ.get("PYVCORE_DEBUG") == "1":
            traceback.print_exc()
        first = str(e).splitlines()[0] if str(e) else ""
        print(
            f"{prefix}: internal error: {type(e).__name__}: {first} "
            "(please report it; PYVCORE_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def entry() -> None:
    """Console-script entry point."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = _quiet_broken_pipe()
    sys.exit(code)


if __name__ == "__main__":
    entry()
