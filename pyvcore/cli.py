"""The `pyvcore` command.

Each subject module registers its own subcommands through a
``register(subparsers)`` function; this file only wires them together, so a
subject can be changed without touching the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

# (module, what it provides). Imported lazily by main() so `pyvcore --help`
# stays fast; each module must import without gdb and without a lab.
SUBJECT_MODULES = (
    "pyvcore.checker",   # pyvcore check TRACE.jsonl
    "pyvcore.explorer",  # pyvcore explore --variant V --threads N
    "pyvcore.lab.cli",   # pyvcore lab setup|up|status|down
    "pyvcore.gdbcli",    # pyvcore gdb
    "pyvcore.diff",      # pyvcore diff --scenario S
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyvcore",
        description="Model and live checker of the KVM Book3S HV (POWER8) vcore scheduler.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBJECT_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
