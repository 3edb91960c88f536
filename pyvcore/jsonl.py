"""One reader of JSON-lines files: a trace of snapshots (pv-watch, ``pyvcore diff --trace``)
and an event log (``pyvcore trace``) alike, for ``pyvcore show`` and ``pyvcore timeline``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from pyvcore.errors import at, cannot_read

JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
JSON_KINDS[type(None)] = "null"


def cut_short(path: str | Path, line: int | None, column: int) -> str:
    """``PATH:LINE:COLUMN: not JSON: cut short (the line ends inside a value)``: a line that
    ends early (a truncated write), the column being its end, said alike by every reader
    (show, timeline, check of both trace kinds; the Rust side: rust/core/src/shadow/log.rs
    ``not_json``)."""
    return f"{at(path, line, column)}: not JSON: cut short (the line ends inside a value)"


def bad_json(path: str | Path, line: int | None, column: int | None, reason: str) -> str:
    """``PATH:LINE:COLUMN: not JSON: REASON``: any other line that is not JSON."""
    return f"{at(path, line, column or None)}: not JSON: {reason}"


def not_json(path: str | Path, number: int, line: str, exc: json.JSONDecodeError) -> str:
    """What a line Python's json refused is: cut short (it ends inside a value: an
    unterminated string, or the error is at its end) or not JSON at a column."""
    text = line.rstrip("\r\n")
    if exc.msg.startswith("Unterminated string") or exc.pos >= len(text.rstrip()):
        return cut_short(path, number, len(text))
    return bad_json(path, number, exc.colno, exc.msg)


def _json_object(
    line: str, name: str | Path, number: int, error: Callable[[str], Exception]
) -> dict[str, Any]:
    """Line `number` of `name` as a JSON object, or `error(message)` raised: the message names
    the place (FILE:LINE:COLUMN) and why."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise error(not_json(name, number, line, exc)) from None
    if not isinstance(obj, dict):
        raise error(f"{at(name, number)}: expected a JSON object, not {JSON_KINDS[type(obj)]}")
    return obj


def objects(
    path: str | Path, error: Callable[[str], Exception], name: str | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number from 1, JSON object) for every non-blank line of ``path`` ("-": stdin).

    Anything that stops the read raises ``error(line)``, one line naming the file: it cannot
    be opened, a read fails midway (EIO: the same words as a file that cannot be opened), it is
    not UTF-8 text, or a line is not JSON or not an object (``PATH:LINE:COLUMN: ...``, :func:`pyvcore.errors.at`).  The file is
    read lazily, so what comes before a bad line has been yielded.  ``name``: the file as
    messages name it (default ``path``)."""
    shown = path if name is None else name
    try:
        stream = sys.stdin if str(path) == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise error(cannot_read(shown, exc)) from None
    with stream:
        try:
            for number, line in enumerate(stream, 1):
                if line.strip():
                    yield number, _json_object(line, shown, number, error)
        except UnicodeDecodeError as exc:
            raise error(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise error(cannot_read(shown, exc)) from None


def spool_stdin(spool: IO[bytes]) -> None:
    """Copy stdin, as bytes, into ``spool`` (a reader that reads its input twice)."""
    import shutil

    raw = getattr(sys.stdin, "buffer", None)
    if raw is not None:
        shutil.copyfileobj(raw, spool)
    else:  # a text stream (a test's StringIO)
        spool.write(sys.stdin.read().encode("utf-8"))
    spool.flush()


def stops(
    path: str | Path,
    error: Callable[[str], Exception],
    variant: str | None = None,
    *,
    name: str | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number from 1, snapshot) for every stop of a snapshot trace ("-": stdin), read as
    ``pyvcore check`` reads it, for ``pyvcore show`` and ``pyvcore timeline`` alike.

    The trace is first replayed by the checker's own streaming reader in Rust
    (:func:`pyvcore.checker.check_trace`, ``variant`` as given), so what is a stop and what is
    refused is what check says: the first line it refuses raises ``error`` with check's line
    (``FILE:LINE:COLUMN: ...``, :meth:`pyvcore.checker.TraceReport._error_line`), after the
    stops before it have been yielded.  stdin is spooled to a temporary file first (it is read
    twice) and named ``<stdin>``, as check names it; ``name``: the file as messages name it."""
    if str(path) == "-":
        import tempfile

        with tempfile.NamedTemporaryFile(prefix="pyvcore-stdin-", suffix=".jsonl") as spool:
            spool_stdin(spool)
            yield from _stops(spool.name, "<stdin>", error, variant)
        return
    yield from _stops(str(path), name or str(path), error, variant)


def _stops(
    path: str, name: str, error: Callable[[str], Exception], variant: str | None
) -> Iterator[tuple[int, dict[str, Any]]]:
    from pyvcore.checker import check_trace, escape

    try:
        report = check_trace(path, variant, keep=0)
    except OSError as exc:
        raise error(cannot_read(name, exc)) from None
    refused = report.error
    last = refused.get("line") if refused is not None else None
    if refused is not None and last is None:
        raise error(report._error_line(escape(name)))
    # Read as bytes, line by line: the text of every line before the refused one is UTF-8
    # JSON (check read it), and a decoder reading ahead must not trip on the refused line.
    try:
        with open(path, "rb") as stream:
            for number, raw in enumerate(stream, 1):
                if last is not None and number >= last:
                    break
                line = raw.decode("utf-8", errors="replace")
                if line.strip():
                    yield number, _json_object(line, name, number, error)
    except OSError as exc:
        raise error(cannot_read(name, exc)) from None
    if refused is not None:
        raise error(report._error_line(escape(name)))
