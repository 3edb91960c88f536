"""One error line for the user inside gdb, never a Python traceback."""

from __future__ import annotations

import functools
import os
from typing import Any

import gdb  # type: ignore[import-not-found]


class PvError(gdb.GdbError):
    """One clear line for the user (gdb prints it without a traceback)."""


def _guarded(name: str, invoke: Any) -> Any:
    @functools.wraps(invoke)
    def wrapper(self: Any, *args: Any) -> Any:
        try:
            return invoke(self, *args)
        except (gdb.GdbError, KeyboardInterrupt):
            raise
        except gdb.error as e:  # a gdb failure (no registers, target gone): one line
            raise PvError(f"{name}: {e}") from None
        except Exception as e:
            if os.environ.get("PYVCORE_DEBUG") == "1":
                raise
            raise PvError(
                f"{name}: internal error: {type(e).__name__}: {e} "
                "(please report it; PYVCORE_DEBUG=1 shows the traceback)"
            ) from None

    wrapper._pv_guarded = True  # type: ignore[attr-defined]
    return wrapper


def guard(cls: type, name: str) -> None:
    """Make ``cls.invoke`` (a gdb.Command or gdb.Function) fail with one line only."""
    invoke = cls.__dict__.get("invoke")
    if invoke is not None and not getattr(invoke, "_pv_guarded", False):
        cls.invoke = _guarded(name, invoke)  # type: ignore[attr-defined]


def guard_all(package: str) -> int:
    """Guard every gdb.Command and gdb.Function subclass defined under ``package``
    (the pv-* commands and $pv_* functions, also ones added later); returns how many."""
    n = 0
    for base in (gdb.Command, gdb.Function):
        todo = list(base.__subclasses__())
        while todo:
            cls = todo.pop()
            todo += cls.__subclasses__()
            if cls.__module__.startswith(package):
                label = _label(cls)
                guard(cls, label)
                n += 1
    return n


def _label(cls: type) -> str:
    """The command's name for the error line: pv-watch for PvWatch, $pv_paca for PvPacaFunction."""
    name = cls.__name__
    words: list[str] = []
    for ch in name:
        if ch.isupper() and words:
            words.append("-")
        words.append(ch.lower())
    label = "".join(words)
    if label.endswith("-function"):
        return "$" + label.removesuffix("-function").replace("-", "_")
    return label
