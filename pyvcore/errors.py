"""The error a pyvcore command raises for a clean one-line failure.

``pyvcore.cli.main`` prints ``pyvcore COMMAND: MESSAGE`` on stderr and exits
with ``exit_code`` (2 by default: unusable input, could not run, not judged,
incomplete); anything else that escapes a command is an internal error
(exit 3).

A file a command cannot read is always said the same way, whichever command and
option named it: ``cannot read PATH: No such file or directory``, the C
library's wording of the errno (``strerror``), as ``cat`` and ``ls`` print it
(:func:`cannot_read`, :class:`UnreadableFile`).

A place in an input file is always said ``FILE:LINE:COLUMN: message`` (:func:`at`), the
form gcc, grep, rustc, mypy and ruff print and editors jump to, the column left out when
it is not known; the Rust readers say it the same way (``rust/core/src/location.rs``).
"""

from __future__ import annotations

import errno
import os


class PyvcoreError(Exception):
    """A failure the user can act on: one line, no traceback.

    ``message`` is the line to print; ``exit_code`` the process exit status
    (2 unless the command says otherwise).
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def reason(err: OSError | int) -> str:
    """The C library's words for an OSError or an errno ("No such file or directory"):
    ``os.strerror`` of its errno, never Rust's "(os error 2)" suffix or Python's
    "[Errno 2] ...: 'path'" form; the exception's own text when it has no errno."""
    code = err if isinstance(err, int) else err.errno
    if code:
        return os.strerror(code)
    assert isinstance(err, OSError)
    return err.strerror or str(err) or "unknown error"


def describe(exc: BaseException) -> str:
    """An exception's own words, first line only, for a one-line message: never its class
    name (a user reads the message, not Python's type names); a timeout that says nothing
    is "timed out", anything else that says nothing "no reason given"."""
    text = str(exc).strip()
    if text:
        return text.splitlines()[0]
    if isinstance(exc, TimeoutError):
        return "timed out"
    return reason(exc) if isinstance(exc, OSError) else "no reason given"


def could_not_run(error: str) -> str:
    """The line a command prints when its run could not be done: ``could not run: WHY``, or
    the refusal alone when an input was refused (``refused: kernel PATH: ...``, as `pyvcore
    lab up` says it), never both."""
    return error if error.startswith("refused: ") else f"could not run: {error}"


def error_line(exc: BaseException) -> str:
    """One line for a run that could not be done (``pyvcore diff``, ``pyvcore trace``), in the
    user's terms: pyvcore's own errors (a refused input, a busy lab, gdb that could not
    connect: every exception class pyvcore defines carries a message for the user) as they
    are; gdb's refusal of a command as gdb's own words (never the MI command); a system error
    as the C library's words; anything else as its own words.  Never an exception's class
    name."""
    from pyvcore.mi import GdbCommandError

    if isinstance(exc, GdbCommandError):
        return f"gdb refused: {describe(Exception(exc.message))}"
    first = describe(exc)
    if isinstance(exc, OSError) and exc.errno and not isinstance(exc, PyvcoreError):
        return f"{exc.filename}: {reason(exc)}" if exc.filename else reason(exc)
    return first


def cannot_read(path: str | os.PathLike[str], err: OSError | int, expected: str = "") -> str:
    """``cannot read PATH: REASON``: the one line for an input a command could not read,
    e.g. ``cannot read t.jsonl: No such file or directory``.  When the path is of the
    wrong kind (a directory where a file is read, or the reverse), ``; expected
    EXPECTED`` says what to give instead."""
    line = f"cannot read {os.fspath(path)}: {reason(err)}"
    code = err if isinstance(err, int) else err.errno
    return f"{line}; expected {expected}" if expected and code in (errno.EISDIR, errno.ENOTDIR) else line


def at(path: str | os.PathLike[str], line: int | None = None, column: int | None = None) -> str:
    """``FILE:LINE:COLUMN``, ``FILE:LINE`` or ``FILE``: where in an input file a problem is,
    said one way by every reader (Python and Rust: ``rust/core/src/location.rs``); a
    message follows after ``": "``."""
    place = os.fspath(path)
    if line is not None:
        place += f":{line}"
        if column is not None:
            place += f":{column}"
    return place


class UnreadableFile(PyvcoreError):
    """An input file (or directory) that cannot be read: :func:`cannot_read`'s line, exit 2.

    Raised by the command line's argument types too (:mod:`pyvcore.cliargs`): argparse
    lets it through, so it is the same plain line as when the command itself opens the
    file, not argparse's ``argument X: ...``."""

    def __init__(self, path: str | os.PathLike[str], err: OSError | int, expected: str = "") -> None:
        super().__init__(cannot_read(path, err, expected))
        self.path = os.fspath(path)


__all__ = [
    "PyvcoreError",
    "UnreadableFile",
    "at",
    "cannot_read",
    "could_not_run",
    "describe",
    "error_line",
    "reason",
]
