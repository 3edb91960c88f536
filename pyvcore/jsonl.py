"""One reader of JSON-lines files: a trace of snapshots (pv-watch, ``pyvcore diff --trace``)
and an event log (``pyvcore trace``) alike, for ``pyvcore show`` and ``pyvcore timeline``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def objects(path: str | Path, error: Callable[[str], Exception]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number from 1, JSON object) for every non-blank line of ``path`` ("-": stdin).

    Anything that stops the read raises ``error(line)``, one line naming the file: it cannot
    be opened, a read fails midway (EIO: the same words as a file that cannot be opened), it is
    not UTF-8 text, or a line is not JSON or not an object (``PATH:LINE:COLUMN: ...``, :func:`pyvcore.errors.at`).  The file is
    read lazily, so what comes before a bad line has been yielded."""
    try:
        stream = sys.stdin if str(path) == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise error(cannot_read(path, exc)) from None
    with stream:
        try:
            for number, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise error(not_json(path, number, line, exc)) from None
                if not isinstance(obj, dict):
                    raise error(f"{at(path, number)}: expected a JSON object, not {JSON_KINDS[type(obj)]}")
                yield number, obj
        except UnicodeDecodeError as exc:
            raise error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise error(cannot_read(path, exc)) from None
