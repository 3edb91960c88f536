"""The `pyvcore` command.

Each subject module registers its own subcommands through a
``register(subparsers)`` function; this file only wires them together, so a
subject can be changed without touching the others, and applies one error
policy to every subcommand:

* exit 0 clean, 1 violations found, 2 unusable input / could not run / not
  judged / incomplete (a :class:`pyvcore.errors.PyvcoreError`, one line),
  3 internal error (one line and a request to report it; the traceback only
  with ``PYVCORE_DEBUG=1``);
* a usage error (an unknown option, an invalid choice) is one line naming
  what is wrong (and the choices), exit 2, never argparse's usage block;
* with ``--json``, stdout carries one JSON object whatever happens: when the
  command printed none (it refused its input, could not run, failed), it is
  ``{"verdict": "error", "error": LINE, "exit_code": N}`` with the same exit code;
* a closed pipe (``pyvcore check T | head -1``) ends quietly, the Unix way;
* Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO, cast

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
EXIT_SIGPIPE = 128 + signal.SIGPIPE


class UsageError(PyvcoreError):
    """A command line argparse refused; ``prog`` is the (sub)command that refused it."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse with pyvcore's error shape: one line (``UsageError``), exit 2.

    Subcommand parsers inherit the class (``add_subparsers`` uses the parent's),
    so every ``pyvcore X`` and ``pyvcore lab X`` refuses the same way."""

    def error(self, message: str) -> NoReturn:
        # "argument --x: ..." names the option already; anything else gets the pointer to --help.
        hint = "" if message.startswith("argument ") else f" (see `{self.prog} --help`)"
        raise UsageError(self.prog, message + hint)


def _version() -> str:
    from pyvcore import __version__

    return f"pyvcore {__version__}"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for one command, or for all of them when `command` is None."""
    parser = Parser(
        prog="pyvcore",
        description="Model and live checker of the KVM Book3S HV (POWER8) vcore scheduler.",
        epilog="Exit status: 0 clean, 1 violations, 2 unusable input / could not run / not judged, "
        "3 internal error.",
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command == "--version":
        return parser
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
    return EXIT_SIGPIPE


class _Watched:
    """A text stream that remembers whether anything was written to it and the
    last line written (a progress line rewritten with ``\r`` counts as its last
    form); everything else is the wrapped stream's."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner
        self.wrote = False
        self.last_line = ""
        self._partial = ""

    def write(self, text: str) -> int:
        if text:
            self.wrote = True
            lines = (self._partial + text).split("\n")
            self._partial = lines[-1].rsplit("\r", 1)[-1]
            done = [line.rsplit("\r", 1)[-1].strip() for line in lines[:-1]]
            self.last_line = next((line for line in reversed(done) if line), self.last_line)
        return self.inner.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _wants_json(argv: list[str]) -> bool:
    """``--json`` among pyvcore's own arguments (not among gdb's, after ``--``)."""
    own = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in own


def _prefix(argv: list[str]) -> str:
    """``pyvcore diff``, ``pyvcore lab up``: the command named in error lines."""
    words = ["pyvcore"]
    if argv and not argv[0].startswith("-"):
        words.append(argv[0])
        if argv[0] == "lab" and len(argv) > 1 and not argv[1].startswith("-"):
            words.append(argv[1])
    return " ".join(words)


def _run(argv: list[str]) -> int:
    parser = build_parser(argv[0] if argv else None)
    args, extra = parser.parse_known_args(argv)
    if extra:  # named after the subcommand they were given to, not after `pyvcore`
        prog = _prefix(argv)
        raise UsageError(prog, f"unrecognized arguments: {' '.join(extra)} (see `{prog} --help`)")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    code = int(args.func(args) or 0)
    sys.stdout.flush()
    return code


def _guarded(argv: list[str]) -> tuple[int, str | None]:
    """Run one command with the error policy; (exit code, the error line when
    the command failed with one here, else None)."""
    prefix = _prefix(argv)
    try:
        return _run(argv), None
    except UsageError as e:
        line = f"{e.prog}: {e.message}"
    except PyvcoreError as e:
        line = f"{prefix}: {e.message}"
        print(line, file=sys.stderr)
        return e.exit_code, line
    except BrokenPipeError:
        return _quiet_broken_pipe(), None
    except KeyboardInterrupt:
        line = f"{prefix}: interrupted"
        print(line, file=sys.stderr)
        return EXIT_SIGINT, line
    except UnicodeDecodeError as e:
        line = f"{prefix}: input is not UTF-8 text ({e.reason} at byte {e.start})"
        print(line, file=sys.stderr)
        return 2, line
    except Exception as e:  # the last resort: one line, never a traceback
        if os.environ.get("PYVCORE_DEBUG") == "1":
            traceback.print_exc()
        first = str(e).splitlines()[0] if str(e) else ""
        line = (
            f"{prefix}: internal error: {type(e).__name__}: {first} "
            "(please report it; PYVCORE_DEBUG=1 shows the traceback)"
        )
        print(line, file=sys.stderr)
        return EXIT_INTERNAL, line
    print(line, file=sys.stderr)  # the UsageError
    return 2, line


def main(argv: Sequence[str] | None = None) -> int:
    """Run one pyvcore command with the error policy above; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not _wants_json(argv):
        return _guarded(argv)[0]
    # --json: stdout must carry one JSON object even when the command printed none.
    out, err = _Watched(sys.stdout), _Watched(sys.stderr)
    sys.stdout, sys.stderr = cast(TextIO, out), cast(TextIO, err)
    try:
        code, line = _guarded(argv)
    finally:
        sys.stdout, sys.stderr = out.inner, err.inner
    if code in (0, EXIT_SIGPIPE) or out.wrote:
        return code
    message = line or err.last_line or f"exit status {code} with no report"
    prefix = _prefix(argv) + ": "
    message = message[len(prefix) :] if message.startswith(prefix) else message
    try:
        print(json.dumps({"verdict": "error", "error": message, "exit_code": code}), flush=True)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    return code


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
