"""The `pyvcore` command.

Each subject module registers its own subcommands through a
``register(subparsers)`` function; this file only wires them together, so a
subject can be changed without touching the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Command -> the module that registers it. Each module must import without gdb
# and without a lab. Only the module of the command being run is imported
# (the lab's pulls in asyncio and QMP: `pyvcore check` should not pay for it).
SUBJECT_MODULES = {
    "check": "pyvcore.checker",  # pyvcore check TRACE.jsonl
    "explore": "pyvcore.explorer",  # pyvcore explore --variant V --threads N
    "lab": "pyvcore.lab.cli",  # pyvcore lab setup|up|status|down
    "gdb": "pyvcore.gdbcli",  # pyvcore gdb
    "diff": "pyvcore.diff",  # pyvcore diff --scenario S
    "timeline": "pyvcore.timeline",  # pyvcore timeline TRACE -o OUT.html|.json|.png
    "show": "pyvcore.show",  # pyvcore show TRACE [--line N | --stop LABEL]
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for one command, or for all of them when `command` is None."""
    parser = argparse.ArgumentParser(
        prog="pyvcore",
        description="Model and live checker of the KVM Book3S HV (POWER8) vcore scheduler.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = [SUBJECT_MODULES[command]] if command in SUBJECT_MODULES else SUBJECT_MODULES.values()
    for name in names:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("pyvcore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
