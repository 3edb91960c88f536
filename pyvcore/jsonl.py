"""One reader of JSON-lines files: a trace of snapshots (pv-watch, ``pyvcore diff --trace``)
and an event log (``pyvcore trace``) alike, for ``pyvcore show`` and ``pyvcore timeline``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pyvcore.errors import cannot_read


def objects(path: str | Path, error: Callable[[str], Exception]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number from 1, JSON object) for every non-blank line of ``path`` ("-": stdin).

    Anything that stops the read raises ``error(line)``, one line naming the file: it cannot
    be opened, a read fails midway (EIO: the same words as a file that cannot be opened), it is
    not UTF-8 text, or a line is not JSON or not an object (``PATH:N: ...``).  The file is
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
                except ValueError as exc:
                    raise error(f"{path}:{number}: not JSON ({exc})") from None
                if not isinstance(obj, dict):
                    raise error(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
                yield number, obj
        except UnicodeDecodeError as exc:
            raise error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:
            raise error(cannot_read(path, exc)) from None
