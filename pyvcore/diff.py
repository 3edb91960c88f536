"""`pyvcore diff`: the model against the emulated kernel, live.

Boots the lab (``pyvcore.lab.Lab``) or attaches to a running one or to any
gdbstub, lets ``pv-watch`` snapshot the core at its breakpoints for a bounded
number of stops (:mod:`pyvcore.diff_live`), then re-checks the recorded trace
offline with ``pyvcore.Checker`` and tells, per stop kind, how many stops were
seen, how many were judged, how many could not be judged (and why: e.g. no vcore
could be read at that stop) and how many invariants broke.

The public entry point is :func:`run_diff` (also used by ``pyvcore mutants``)::

    >>> from pyvcore.diff import run_diff
    >>> result = run_diff("cede", qemu="patched", stops=60, variant=None)
    >>> result.verdict, result.judged, len(result.violations)
    ('clean', {'kvmppc_hv_entry': 31, 'kvm_do_nap': 12, ...}, 0)

Exit status of the command: 0 clean, 1 violations (or gdb's and the offline
verdicts disagree), 2 could not run or a stop kind was never judged, 130 Ctrl-C.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyvcore.diff_live import (
    DEFAULT_HOLD,
    DEFAULT_STOPS,
    SCENARIO_PHASES,
    DiffError,
    DiffInterrupted,
    GdbStub,
    LiveRun,
    resolve_attach,
    run_live,
)
from pyvcore.diff_watch import attach, watch
from pyvcore.lab.scenarios import SCENARIOS

__all__ = [
    "DEFAULT_HOLD",
    "DEFAULT_STOPS",
    "SCENARIOS",
    "SCENARIO_PHASES",
    "DiffError",
    "DiffInterrupted",
    "DiffResult",
    "GdbStub",
    "LiveRun",
    "Summary",
    "attach",
    "explain",
    "format_table",
    "hexify",
    "resolve_attach",
    "run_diff",
    "run_live",
    "stop_kind",
    "summarize",
    "verdict_line",
    "watch",
    "watched_points",
]

VERDICTS = ("clean", "violations", "not-judged", "error")
EXIT_CODES = {"clean": 0, "violations": 1, "not-judged": 2, "error": 2}


def stop_kind(record: dict[str, Any]) -> str:
    """The breakpoint a snapshot was taken at, without per-hit decorations.

    pv-watch labels may carry a thread or hit suffix ("kvm_do_nap/t2",
    "kvmppc_run_core#12", "kvmppc_hv_entry@cpu1"); the table groups by the
    location only.
    """
    label = str(record.get("stop") or "?")
    return re.split(r"[ #/@]", label, maxsplit=1)[0] or "?"


# ------------------------------------------------------------------ JSON output
# Keys whose integer values are kernel addresses or 64-bit register values: the
# JSON pyvcore writes carries them as hex strings, which jq and JavaScript keep
# exact (a JSON number above 2**53 is rounded by both).
HEX_KEYS = frozenset(
    {
        "addr",
        "kvm_vcpu",
        "kvm_vcore",
        "vcore",
        "runner",
        "kvm",
        "lpidr",
        "sdr1",
        "host_sdr1",
        "pc",
        "msr",
        "paca",
    }
)


def hexify(value: Any, key: str = "") -> Any:
    """A copy of ``value`` with addresses and 64-bit values as ``"0x..."`` strings.

    An integer is written in hex when its key names an address/register
    (``HEX_KEYS``, also as the last part of a dotted path such as
    ``threads[1].kvm_hstate.kvm_vcore``) or when it does not fit in 32 bits.
    """
    if isinstance(value, dict):
        return {k: hexify(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [hexify(v, key) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        name = re.sub(r"\[\d+\]$", "", key.rsplit(".", 1)[-1])
        if (name in HEX_KEYS and value >= 0) or not -(2**31) <= value < 2**32:
            return hex(value)
    return value


# ----------------------------------------------------------------- offline side
@dataclass
class Summary:
    """What one live run found, per stop kind, re-checked offline by the model.

    Each ``stops`` row: ``stops`` seen, ``snapshots`` read, ``judged`` (the vcore
    invariants had their data), ``not_judged`` and ``reasons`` (reason -> count),
    ``violations``, ``check_ms`` (mean cost of one check, milliseconds).
    """

    variant: str | None
    stops: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    violations: list[dict[str, Any]] = field(default_factory=list)
    # Snapshots where the verdict logged by pv-watch (inside gdb) differs from
    # the offline Checker's: index, live invariants, offline invariants.
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    # Consecutive stops judged as one vcore run (the same vcores[].seq): the
    # ordering invariants 7, 11 and 19 were checked between them.
    same_run_pairs: int = 0
    # Snapshot-v2 field -> snapshots carrying it ("dpdes pending": a DPDES
    # read with a bit set; "vcore dpdes pending": vc->dpdes with one).
    fields: Counter[str] = field(default_factory=Counter)

    @property
    def total_snapshots(self) -> int:
        return sum(k["snapshots"] for k in self.stops.values())

    @property
    def never_judged(self) -> list[str]:
        """Hook points seen but judged at no stop.  Snapshots taken when the target
        was stopped by pyvcore rather than at a hook point ("(attach)", "(deadline)")
        are judged when they have a vcore, and are no hook point a run must cover."""
        return [
            kind
            for kind, row in self.stops.items()
            if row["stops"] and not row["judged"] and not kind.startswith("(")
        ]

    @property
    def verdict(self) -> str:
        if self.violations or self.mismatches:
            return "violations"
        if not self.stops or self.never_judged:
            return "not-judged"
        return "clean"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "variant": self.variant,
            "snapshots": self.total_snapshots,
            "violation_count": len(self.violations),
            "never_judged": self.never_judged,
            "stops": {k: dict(v) for k, v in self.stops.items()},
            "violations": hexify(self.violations),
            "verdict_mismatches": self.mismatches,
            "same_run_pairs": self.same_run_pairs,
            "fields": dict(self.fields),
        }


def _is_snapshot(record: dict[str, Any]) -> bool:
    return isinstance(record.get("threads"), list) and bool(record["threads"])


def live_invariants(record: dict[str, Any]) -> list[int]:
    """Invariant numbers pv-watch logged for a snapshot (ints or violation objects)."""
    out = []
    for v in record.get("violations") or []:
        out.append(int(v["invariant"] if isinstance(v, dict) else v))
    return sorted(out)


V2_THREAD_FIELDS = ("pc", "msr", "hdec", "dpdes")


def v2_fields(record: dict[str, Any]) -> list[str]:
    """The snapshot-v2 fields one stop carries (a thread field counts when any
    thread has it, a vcore field when every vcore has it), plus "dpdes pending" /
    "vcore dpdes pending" when a DPDES value read has a bit set and "tb offset in
    force" when a vcore's timebase offset was applied (the stop's tb is the guest's)."""
    out = [k for k in ("tb", "tb_freq") if record.get(k) is not None]
    threads = record.get("threads") or []
    out += [k for k in V2_THREAD_FIELDS if any(t.get(k) is not None for t in threads)]
    if any(_set(t.get("dpdes")) for t in threads):
        out.append("dpdes pending")
    vcores = record.get("vcores") or []
    if any(_set(v.get("dpdes")) for v in vcores):
        out.append("vcore dpdes pending")
    # what puts the stop's tb on the host's timebase (Snapshot::host_tb in view.rs)
    out += [k for k in ("tb_offset", "tb_offset_applied") if vcores and all(k in v for v in vcores)]
    if any(_set(v.get("tb_offset_applied")) for v in vcores):
        out.append("tb offset in force")
    return out


def _set(value: Any) -> bool:
    """A register value (int or hex string) with a bit set; False for None or garbage."""
    try:
        return bool(int(value, 0) if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return False


def judge(checker: Any, record: dict[str, Any]) -> tuple[list[Any], str | None, int]:
    """Check one snapshot: (violations, None, same_run) when judged, (violations,
    reason, same_run) when not; ``same_run`` counts the vcores judged against the
    previous stop as one run (``CheckOutcome.same_run``; 0 for a checker without it).

    Uses ``Checker.check_outcome`` where the checker has it (its ``vcore_found``
    and ``not_judged`` say what had its data); otherwise a stop with no vcore in
    the snapshot is not judged ("no vcore found"): the vcore invariants had
    nothing to look at, which is never the same as clean.
    """
    outcome_of = getattr(checker, "check_outcome", None)
    if outcome_of is not None:
        outcome = outcome_of(record)
        found = list(outcome.violations)
        same_run = int(getattr(outcome, "same_run", 0))
        if outcome.vcore_found:
            return found, None, same_run
        # The vcore's reasons: optional v2 fields (DPDES, MSR) missing from a
        # stop leave only their own invariants unjudged.
        reasons = sorted(
            {str(reason) for _n, reason in getattr(outcome, "not_judged", []) if "vcore" in str(reason)}
        )
        return found, "; ".join(reasons) or "no vcore found", same_run
    found = checker.check(record)
    return found, None if record.get("vcores") else "no vcore found", 0


def summarize(records: Iterable[dict[str, Any]], variant: str | None = None) -> Summary:
    """Re-check a pv-watch trace with the model, in order, and tabulate it per stop kind.

    Stops are numbered from 1 as the trace's lines are (pv-watch writes one line per
    stop): a violation's or mismatch's ``line`` is what ``pyvcore show TRACE --line N``
    and ``pyvcore check`` call that stop."""
    from pyvcore.checker import Checker  # the compiled core; imported late for `--help`

    checker = Checker(variant)
    summary = Summary(variant=variant)
    for line, record in enumerate(records, 1):
        kind = stop_kind(record)
        row = summary.stops.setdefault(
            kind,
            {
                "stops": 0,
                "snapshots": 0,
                "judged": 0,
                "not_judged": 0,
                "violations": 0,
                "check_ms": 0.0,
                "reasons": {},
            },
        )
        row["stops"] += 1
        if not _is_snapshot(record):
            # pv-watch logged a stop it could not read: its error is in the record.
            error = str(record.get("error") or "the stop could not be read").splitlines()[0][:120]
            row["not_judged"] += 1
            row["reasons"][error] = row["reasons"].get(error, 0) + 1
            continue
        t0 = time.perf_counter()
        found, reason, same_run = judge(checker, record)
        row["check_ms"] += (time.perf_counter() - t0) * 1000.0
        summary.same_run_pairs += same_run > 0
        summary.fields.update(v2_fields(record))
        row["snapshots"] += 1
        if reason is None:
            row["judged"] += 1
        else:
            row["not_judged"] += 1
            row["reasons"][reason] = row["reasons"].get(reason, 0) + 1
        row["violations"] += len(found)
        for v in found:
            entry = v.to_dict()
            entry.setdefault("invariant", v.invariant)
            entry["stop"] = record.get("stop")
            entry["line"] = line
            summary.violations.append(entry)
        if "violations" in record:
            offline = sorted(v.invariant for v in found)
            live = live_invariants(record)
            if offline != live:
                summary.mismatches.append(
                    {"line": line, "stop": record.get("stop"), "live": live, "offline": offline}
                )
    for row in summary.stops.values():
        if row["snapshots"]:
            row["check_ms"] = round(row["check_ms"] / row["snapshots"], 4)
    return summary


# ------------------------------------------------------------------ public API
@dataclass
class DiffResult:
    """The verdict of one `pyvcore diff` run.

    ``verdict``: "clean" (every stop kind judged, nothing violated), "violations",
    "not-judged" (no stop, or a stop kind never judged) or "error" (could not run:
    ``error`` says why).  ``violations``: one dict per violation (``invariant``,
    ``message``, ``fields``, ``stop``, ``line``: the stop's line in the trace, from 1).  ``judged``: stop kind ->
    number of judged stops.  ``summary`` and ``run`` hold the details (None on
    error); ``trace`` is where the JSONL trace was kept (None when removed).
    """

    verdict: str
    violations: list[dict[str, Any]]
    judged: dict[str, int]
    summary: Summary | None = None
    run: LiveRun | None = None
    error: str | None = None
    trace: Path | None = None

    @property
    def exit_code(self) -> int:
        """0 clean, 1 violations, 2 not judged or could not run."""
        return EXIT_CODES[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "verdict": self.verdict,
            "error": self.error,
            "trace": str(self.trace) if self.trace else None,
        }
        if self.run is not None:
            from pyvcore.lab.inputs import kernel_of

            doc.update(
                scenario=self.run.scenario,
                qemu=self.run.qemu,
                kernel=kernel_of(self.run.status),
                timings=self.run.timings,
                watch=self.run.watch,
                reports=hexify(self.run.reports),
            )
        if self.summary is not None:
            doc.update(self.summary.to_dict())
        doc["judged"] = self.judged
        return doc


def result_of(run: LiveRun, variant: str | None = None, *, trace_kept: bool = True) -> DiffResult:
    """Judge a finished live run (offline re-check) into a DiffResult."""
    summary = summarize(run.records, variant)
    return DiffResult(
        verdict=summary.verdict,
        violations=summary.violations,
        judged={kind: row["judged"] for kind, row in summary.stops.items()},
        summary=summary,
        run=run,
        trace=run.trace if trace_kept else None,
    )


def error_line(exc: BaseException) -> str:
    """One line for a run that could not be done (:func:`pyvcore.errors.error_line`)."""
    from pyvcore.errors import error_line as line

    return line(exc)


def run_diff(
    scenario: str,
    *,
    qemu: str = "patched",
    stops: int = DEFAULT_STOPS,
    variant: str | None = None,
    kernel: str | Path | None = None,
    modules: str | Path | None = None,
    symbols: str | Path | None = None,
    attach: str | None = None,
    threads: int = 4,
    hold: int = DEFAULT_HOLD,
    deadline_s: float = 90.0,
    wait_reports_s: float = 60.0,
    lock_wait: float = 0.0,
    trace: str | Path | None = None,
    keep: bool = False,
    progress: Any = None,
    tick: Any = None,
    from_boot: bool = False,
) -> DiffResult:
    """Watch the real kernel live and judge every stop with the model.

    ``scenario``: a lab scenario (``SCENARIOS``); ``qemu``: "patched", "stock" or a
    QEMU binary path; ``stops``: the watch ends once this many stops are logged
    (every breakpoint hit is one, readable or not), or earlier at ``deadline_s``
    (wall-clock seconds) or the guest's power-off; a deadline adds one ``(deadline)``
    snapshot and ``cede``/``cede-all`` a cede-path phase of up to 20 more
    (``pyvcore.diff_live.SCENARIO_PHASES``); ``variant``: model variant
    ("seed", "modern", "prepatch"; None = what each snapshot says); ``kernel`` /
    ``modules``: a vmlinux and a directory with kvm.ko/kvm-hv.ko to boot instead
    of the lab's (with ``attach`` to a bare gdbstub, ``kernel`` names the vmlinux
    it runs); ``symbols``: the debug image of a ``kernel`` with neither BTF nor DWARF
    (:mod:`pyvcore.kernelsymbols`); ``attach``: "lab" or "HOST:PORT" to use a target already running
    instead of booting one; ``trace``: where to write the JSONL trace (default:
    the lab's run directory; a temporary directory against a bare gdbstub,
    removed at the end unless ``keep``).  ``progress``/``tick``: callables that
    hear one line per phase / a transient line about once a second.  ``from_boot``:
    start QEMU stopped and watch from its first instruction (kvm-hv's points once
    the module is loaded), not from the guest's READY.

    Never raises for a target that cannot be run: that is ``verdict == "error"``
    with ``error`` set.  Ctrl-C raises ``DiffInterrupted`` (``.trace``: the
    partial trace kept).
    """
    try:
        target = resolve_attach(attach, kernel, symbols) if attach else None
        run = run_live(
            scenario,
            qemu=qemu,
            stops=stops,
            trace=Path(trace) if trace else None,
            threads=threads,
            hold=hold,
            watch_deadline_s=deadline_s,
            wait_reports_s=wait_reports_s,
            lab=target,
            lock_wait=lock_wait,
            progress=progress,
            tick=tick,
            kernel=None if attach else kernel,
            modules=None if attach else modules,
            symbols=None if attach else symbols,
            from_boot=from_boot and not attach,
        )
    except DiffInterrupted:
        raise
    except Exception as exc:  # lab, gdb or plugin failure: a verdict, not a crash
        return DiffResult(verdict="error", violations=[], judged={}, error=error_line(exc))
    kept = True
    if run.temp_dir is not None and not keep:
        shutil.rmtree(run.temp_dir, ignore_errors=True)
        kept = False
    return result_of(run, variant, trace_kept=kept)


# The human report lives in pyvcore.diff_table; re-exported here for callers of pyvcore.diff.
from pyvcore.diff_table import explain, format_table, verdict_line, watched_points  # noqa: E402


def register(subparsers: Any) -> None:
    """`pyvcore diff` (the parser lives in :mod:`pyvcore.diff_cli`)."""
    from pyvcore.diff_cli import register as register_cli

    register_cli(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="pyvcore")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
