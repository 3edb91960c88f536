"""Argument parsing for pv-* commands: argparse that reports errors as gdb errors."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from .errors import PvError


class ArgParser(argparse.ArgumentParser):
    """argparse that raises PvError (one line in gdb) instead of exiting."""

    def __init__(self, prog: str, **kw: Any):
        super().__init__(prog=prog, add_help=False, **kw)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise PvError(f"{self.prog}: {message} (see `help {self.prog}`)")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise PvError(message or f"{self.prog}: bad arguments")

    def parse(self, arg: str) -> argparse.Namespace:
        try:
            words = shlex.split(arg)
        except ValueError as e:
            raise PvError(f"{self.prog}: {e}") from None
        return self.parse_args(words)


def complete_words(text: str, word: str, options: tuple[str, ...]) -> list[str]:
    """Completions for gdb: gdb splits words at '-', so match on the whole last
    token of ``text`` and return what replaces ``word``."""
    last = "" if not text or text.endswith(" ") else text.split()[-1]
    cut = len(last) - len(word or "")
    return [o[cut:] for o in options if o.startswith(last)]
