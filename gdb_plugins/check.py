"""pv-check: the snapshot evaluated against the model (pyvcore.Checker, contract 3)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import gdb  # type: ignore[import-not-found]

from pyvcore import tables

from . import session
from .args import ArgParser, complete_words
from .session import PvError

_checker: Any = None


def checker_class() -> Any:
    try:
        from pyvcore.checker import Checker
    except ImportError as e:
        raise PvError(f"pv-check: the model checker is not available ({e})") from None
    return Checker


def checker_for(variant: str) -> Any:
    """One Checker per variant, kept between stops (transition invariants need the previous one)."""
    global _checker
    if _checker is None or getattr(_checker, "_pv_variant", None) != variant:
        _checker = checker_class()(variant)
        with contextlib.suppress(AttributeError):
            _checker._pv_variant = variant
    return _checker


def reset_checker() -> None:
    global _checker
    _checker = None


def evaluate(snapshot: dict) -> tuple[list[Any], list[dict] | None]:
    """(violations, predictions) for a snapshot; predictions None if the checker has none."""
    checker = checker_for(snapshot["variant"])
    try:
        violations = list(checker.check(snapshot))
    except (ValueError, TypeError) as e:
        raise PvError(f"pv-check: the checker rejected the snapshot: {e}") from None
    predicted = None
    if hasattr(checker, "predict"):
        try:
            predicted = list(checker.predict(snapshot))
        except (ValueError, TypeError, NotImplementedError):
            predicted = None
    return violations, predicted


def violation_dict(v: Any) -> dict:
    if hasattr(v, "to_dict"):
        return v.to_dict()
    return {"invariant": getattr(v, "invariant", None), "message": getattr(v, "message", str(v))}


def colour_wanted() -> bool:
    """gdb's own styling switch: gdb turns it off when its output is not a
    terminal (pipes, batch mode), and users can `set style enabled off`."""
    try:
        return bool(gdb.parameter("style enabled"))
    except (gdb.error, RuntimeError):
        return False


class PvCheck(gdb.Command):
    """Check the live kvm_hstate/vcore state against the pyvcore model.

    Usage: pv-check [--json] [--reset]

    Takes a snapshot (as pv-snapshot does) and evaluates it with pyvcore's
    Checker for the variant the kernel's layout implies (modern: entry_exit_map;
    seed: entry_exit_count).  Prints per thread what the kernel has (ptid /
    kvm_vcpu / kvm_vcore) next to what the model predicts, then every violated
    invariant with its number (see VCORE_SPEC section 4).  Green/red when the
    terminal supports colour.  The checker keeps the previous snapshot, so
    transition invariants apply between successive pv-check calls; --reset
    forgets it.

      --json   print {"snapshot", "violations", "predicted"} as one JSON line"""

    def __init__(self) -> None:
        super().__init__("pv-check", gdb.COMMAND_DATA)

    def complete(self, text: str, word: str) -> list[str]:
        return complete_words(text, word, ("--json", "--reset"))

    def invoke(self, arg: str, from_tty: bool) -> None:
        p = ArgParser("pv-check")
        p.add_argument("--json", action="store_true")
        p.add_argument("--reset", action="store_true")
        a = p.parse(arg)
        if a.reset:
            reset_checker()
        reading, _ = session.read_state(stop="pv-check")
        violations, predicted = evaluate(reading.snapshot)
        if a.json:
            gdb.write(
                json.dumps(
                    {
                        "snapshot": reading.snapshot,
                        "violations": [violation_dict(v) for v in violations],
                        "predicted": predicted,
                        "problems": reading.problems,
                    },
                    separators=(",", ":"),
                )
                + "\n"
            )
            return
        style = tables.Style(colour_wanted())
        gdb.write(tables.check_table(reading, predicted, violations, style) + "\n")
        for problem in reading.problems:
            gdb.write(f"pv-check: {problem}\n")


def register() -> None:
    PvCheck()
