"""pv-check: the snapshot evaluated against the model (pyvcore.Checker)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import gdb  # type: ignore[import-not-found]

from pyvcore import stopview
from pyvcore.render import wrap
from pyvcore.show import explain
from pyvcore.snapshot import to_wire

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


class Outcome:
    """What checking one snapshot judged: the violations, and whether the vcore
    invariants had their data (a stop with no vcore read is "not judged",
    never clean).  Uses ``Checker.check_outcome`` when the checker has it."""

    def __init__(self, snapshot: dict, checker: Any):
        self.vcore_found = bool(snapshot.get("vcores"))
        self.judged: list[int] | None = None
        self.not_judged: list[tuple[int, str]] = []
        self.verdict: str | None = None
        try:
            if hasattr(checker, "check_outcome"):
                out = checker.check_outcome(snapshot)
                self.violations = list(out.violations)
                self.judged = list(out.judged)
                self.not_judged = [(int(n), str(why)) for n, why in out.not_judged]
                self.vcore_found = bool(out.vcore_found)
                self.verdict = str(out.verdict)
            else:
                self.violations = list(checker.check(snapshot))
        except (ValueError, TypeError) as e:
            raise PvError(f"pv-check: the checker rejected the snapshot: {e}") from None

    def record(self) -> dict[str, Any]:
        """The fields a pv-watch log line carries about what was judged."""
        rec: dict[str, Any] = {"vcore_found": self.vcore_found}
        if self.verdict is not None:
            rec["verdict"] = self.verdict
        if self.judged is not None:
            rec["judged"] = self.judged
            rec["not_judged"] = [{"invariant": n, "reason": why} for n, why in self.not_judged]
        return rec


def outcome(snapshot: dict) -> Outcome:
    """Check a snapshot with the checker of its variant (kept between stops)."""
    return Outcome(snapshot, checker_for(snapshot["variant"]))


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

    Usage: pv-check [--json] [--reset] [--explain]

    Takes a snapshot (as pv-snapshot does) and checks it with the model of the
    variant the kernel's layout implies (modern: entry_exit_map; seed:
    entry_exit_count).  Prints one row per hardware thread, named by Linux cpu
    and thread in the core (t0..t7): what its PACA holds (ptid/vcpu/vcore), where
    the model places the vcore's vcpus, and a verdict: ok, allowed-now (with the
    reason, e.g. "exit in progress"), violation, or not judged.  Then every
    violated invariant.  Coloured when gdb styling is on (`set style enabled`).

    pv-check remembers the previous pv-check's snapshot: between two calls it
    also checks what a stop-to-stop step may not change (a vcpu's id and ptid,
    a vcore's first_vcpuid; num_threads never shrinks).  --reset forgets it
    (e.g. after the VM was re-created).

      --json     print {"snapshot", "violations", "predicted", "problems"} as one JSON line
      --explain  after each violated invariant, what it states, when it is judged,
                 the kernel source it comes from, and what a violation usually means

    Examples:
      pv-check
      pv-check --explain"""

    def __init__(self) -> None:
        super().__init__("pv-check", gdb.COMMAND_DATA)

    def complete(self, text: str, word: str) -> list[str]:
        return complete_words(text, word, ("--json", "--reset", "--explain"))

    def invoke(self, arg: str, from_tty: bool) -> None:
        p = ArgParser("pv-check")
        p.add_argument("--json", action="store_true")
        p.add_argument("--reset", action="store_true")
        p.add_argument("--explain", action="store_true")
        a = p.parse(arg)
        if a.reset:
            reset_checker()
        reading, _ = session.read_state(stop="pv-check")
        try:
            judgement = stopview.judge(checker_for(reading.snapshot["variant"]), reading.snapshot)
        except (ValueError, TypeError) as e:
            raise PvError(f"pv-check: the checker rejected the snapshot: {e}") from None
        if a.json:
            gdb.write(
                json.dumps(
                    {
                        "snapshot": to_wire(reading.snapshot),
                        "violations": [violation_dict(v) for v in judgement.violations],
                        "predicted": judgement.predicted,
                        "problems": reading.problems,
                    },
                    separators=(",", ":"),
                )
                + "\n"
            )
            return
        text = stopview.check_text(
            reading.snapshot,
            judgement,
            colour=colour_wanted(),
            width=terminal_width(),
            explain=explain if a.explain else None,
        )
        gdb.write(text + "\n")
        for problem in reading.problems:
            gdb.write(wrap(f"pv-check: {problem}", terminal_width(), indent="    ") + "\n")


def terminal_width() -> int:
    """gdb's idea of the screen width (`show width`), 80 when unlimited or unknown."""
    try:
        w = gdb.parameter("width")
    except (gdb.error, RuntimeError):
        return 80
    return int(w) if w and 0 < int(w) < 10000 else 80


def register() -> None:
    PvCheck()
