"""`pyvcore diff`: the model against the emulated kernel, live.

Boots the lab (``pyvcore.lab.Lab``), attaches gdb-multiarch through the MI driver
(``pyvcore.mi``), loads the gdb plugin, lets ``pv-watch`` snapshot the core at its
breakpoints for a bounded number of stops, tears everything down, then re-checks
the recorded trace offline with ``pyvcore.Checker`` and prints, per stop kind, how
many stops were seen, how many snapshots were checked, how many invariants broke
and what a check cost.  The same functions back the live test suite
(``tests/test_live_*.py``), so what CI asserts is what a user runs.

Exit status: 0 clean, 1 violations (or gdb's and the offline verdicts disagree),
2 could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyvcore.gdbcli import module_commands, plugin_entry
from pyvcore.mi import GdbCommandError, GdbMI, MIError, MITimeout, iter_jsonl

SCENARIOS = ("all", "novcpu0", "cede", "doorbell", "sparse", "two-vcores", "exits")
DEFAULT_STOPS = 120
# Guest seconds the scenario keeps running before it reports and powers off.  The
# watch must finish inside it; the guest clock stands still while gdb holds the
# machine, so this is mostly the time the target runs between breakpoints.
DEFAULT_HOLD = 20


# Extra watch phases per scenario: (pv-watch arguments, snapshots).  The default
# points are dominated by entry/exit stops; a ceding thread passes kvm_do_nap
# rarely enough to be missed in a bounded run, so `cede` also watches the cede
# path on its own.
SCENARIO_PHASES: dict[str, tuple[tuple[str, int], ...]] = {
    "cede": (("--at kvmppc_h_cede,kvm_do_nap,kvm_end_cede", 20),),
}


class DiffError(RuntimeError):
    """The comparison could not be run (lab, gdb or plugin problem)."""


def stop_kind(record: dict[str, Any]) -> str:
    """The breakpoint a snapshot was taken at, without per-hit decorations.

    pv-watch labels may carry a thread or hit suffix ("kvm_do_nap/t2",
    "kvmppc_run_core#12"); the table groups by the location only.
    """
    label = str(record.get("stop") or "?")
    return re.split(r"[ #/@]", label, maxsplit=1)[0] or "?"


# --------------------------------------------------------------------- gdb side
def attach(lab: Any, *, gdb: str = "gdb-multiarch", timeout: float = 120.0) -> GdbMI:
    """gdb-multiarch attached to a running lab with vmlinux and the plugin loaded."""
    mi = GdbMI(gdb, timeout=timeout)
    try:
        mi.console("set architecture powerpc:common64")
        mi.console("set endian little")
        mi.execute(f"-file-exec-and-symbols {lab.vmlinux}", timeout=timeout)
        for command in module_commands(lab.status()):
            mi.console(command, timeout=timeout)
        result = mi.console(f"source {plugin_entry()}", timeout=timeout)
        mi.plugin_banner = result.console.strip()  # type: ignore[attr-defined]
        mi.connect_remote(lab.gdb_address, timeout=timeout)
        mi.poll_events(0.1)
        return mi
    except BaseException:
        mi.close()
        raise


def watch(
    mi: GdbMI,
    log: Path,
    *,
    stops: int,
    deadline_s: float,
    extra: str = "",
    append: bool = False,
) -> dict[str, Any]:
    """Run ``pv-watch`` until ``stops`` more snapshots are logged or the deadline passes.

    Works whether pv-watch stops the target itself (at --max-stops or on a
    violation) or keeps it running: each stop of the target is answered with a
    continue until enough snapshots are in the log; at the deadline the target
    is interrupted.  Leaves the target stopped and the watch off.  ``extra``
    goes to pv-watch (e.g. ``--at kvm_do_nap``); with ``append`` the log keeps
    what earlier phases wrote.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    if not append:
        log.unlink(missing_ok=True)
    stops += _count_lines(log)
    if mi.running:
        mi.interrupt(timeout=30)
    on = mi.console(
        f"pv-watch on --log {log} --max-stops {stops - _count_lines(log)} {extra}".strip(), timeout=60
    )
    started = time.monotonic()
    end = started + deadline_s
    target_stops = 0
    reason = "deadline"
    stop: dict[str, Any] = {}
    while True:
        try:
            mi.cont(wait=False, timeout=30)
        except GdbCommandError as exc:  # e.g. the guest powered off: "not being run"
            reason = f"target gone ({exc.message})"
            break
        while time.monotonic() < end:
            try:
                stop = mi.wait_for_stop(timeout=min(0.05, max(0.01, end - time.monotonic())))
                target_stops += 1
                break
            except MITimeout:
                if _count_lines(log) >= stops:
                    break
        if mi.target_exited:
            reason = f"target gone ({stop.get('reason')})"
            break
        if _count_lines(log) >= stops:
            reason = "stops"
            break
        if time.monotonic() >= end:
            break
    if mi.running:
        mi.interrupt(timeout=30)
    if not mi.target_exited:
        try:
            mi.console("pv-watch off", timeout=60)
        except GdbCommandError:
            pass  # already off (pv-watch turns itself off at --max-stops)
    return {
        "watch_s": round(time.monotonic() - started, 3),
        "target_stops": target_stops,
        "ended_by": reason,
        "pv_watch": on.console.strip(),  # where it planted breakpoints, what it could not
    }


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except FileNotFoundError:
        return 0


# ----------------------------------------------------------------- offline side
@dataclass
class Summary:
    """What one live run found, per stop kind, re-checked offline by the model."""

    variant: str | None
    stops: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    violations: list[dict[str, Any]] = field(default_factory=list)
    # Snapshots where the verdict logged by pv-watch (inside gdb) differs from
    # the offline Checker's: index, live invariants, offline invariants.
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_snapshots(self) -> int:
        return sum(k["snapshots"] for k in self.stops.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "snapshots": self.total_snapshots,
            "violation_count": len(self.violations),
            "stops": dict(self.stops),
            "violations": self.violations,
            "verdict_mismatches": self.mismatches,
        }


def _is_snapshot(record: dict[str, Any]) -> bool:
    return isinstance(record.get("threads"), list) and bool(record["threads"])


def live_invariants(record: dict[str, Any]) -> list[int]:
    """Invariant numbers pv-watch logged for a snapshot (ints or violation objects)."""
    out = []
    for v in record.get("violations") or []:
        out.append(int(v["invariant"] if isinstance(v, dict) else v))
    return sorted(out)


def summarize(records: Iterable[dict[str, Any]], variant: str | None = None) -> Summary:
    """Re-check a pv-watch trace with the model, in order, and tabulate it."""
    from pyvcore.checker import Checker  # the compiled core; imported late for `--help`

    checker = Checker(variant)
    summary = Summary(variant=variant)
    for index, record in enumerate(records):
        kind = stop_kind(record)
        row = summary.stops.setdefault(kind, {"stops": 0, "snapshots": 0, "violations": 0, "check_ms": 0.0})
        row["stops"] += 1
        if not _is_snapshot(record):
            continue  # pv-watch logged a stop it could not read (its error is in the record)
        t0 = time.perf_counter()
        found = checker.check(record)
        row["check_ms"] += (time.perf_counter() - t0) * 1000.0
        row["snapshots"] += 1
        row["violations"] += len(found)
        for v in found:
            entry = v.to_dict()
            entry.setdefault("invariant", v.invariant)
            entry["stop"] = record.get("stop")
            entry["index"] = index
            summary.violations.append(entry)
        if "violations" in record:
            offline = sorted(v.invariant for v in found)
            live = live_invariants(record)
            if offline != live:
                summary.mismatches.append(
                    {"index": index, "stop": record.get("stop"), "live": live, "offline": offline}
                )
    for row in summary.stops.values():
        if row["snapshots"]:
            row["check_ms"] = round(row["check_ms"] / row["snapshots"], 4)
    return summary


# --------------------------------------------------------------------- one run
@dataclass
class LiveRun:
    """Everything one boot + watch produced (the suite asserts on this)."""

    scenario: str
    qemu: str
    trace: Path
    records: list[dict[str, Any]]
    reports: list[dict[str, Any]]
    timings: dict[str, float]
    watch: dict[str, Any]
    status: dict[str, Any]
    console: str
    plugin_banner: str = ""

    @property
    def snapshots(self) -> list[dict[str, Any]]:
        return [r for r in self.records if _is_snapshot(r)]


def run_live(
    scenario: str,
    *,
    qemu: str = "patched",
    stops: int = DEFAULT_STOPS,
    trace: Path | None = None,
    threads: int = 4,
    hold: int = DEFAULT_HOLD,
    watch_deadline_s: float = 90.0,
    phases: Sequence[tuple[str, int]] | None = None,
    wait_reports_s: float = 60.0,
    gdb: str = "gdb-multiarch",
    lab: Any = None,
    lock_wait: float = 0.0,
    progress: Any = None,
) -> LiveRun:
    """Boot (unless ``lab`` is given, already started), watch, detach, collect reports.

    The lab is stopped on every path when this function started it.
    """
    from pyvcore.lab import Lab

    say = progress or (lambda msg: None)
    trace = trace or Path(tempfile.mkdtemp(prefix="pyvcore-diff-")) / f"{scenario}-{qemu}.jsonl"
    timings: dict[str, float] = {}
    own_lab = lab is None
    t0 = time.monotonic()
    if own_lab:
        say(f"booting the lab: scenario {scenario}, {qemu} QEMU, {threads} threads ...")
        # lock_wait: how long to wait for another QEMU on this machine to finish.
        extra = {"lock_wait": lock_wait} if lock_wait else {}
        lab = Lab(scenario=scenario, threads=threads, qemu=qemu, hold=hold, **extra)
        lab.start()
    try:
        # The lab's own figure excludes waiting for the machine lock.
        timings["boot_s"] = round(getattr(lab, "boot_seconds", None) or (time.monotonic() - t0), 2)
        status = dict(lab.status())
        t1 = time.monotonic()
        say(f"attaching gdb to {lab.gdb_address} ...")
        with attach(lab, gdb=gdb) as mi:
            timings["attach_s"] = round(time.monotonic() - t1, 2)
            say(f"watching up to {stops} stops ...")
            watched = watch(mi, trace, stops=stops, deadline_s=watch_deadline_s)
            # Further phases watch chosen points only (pv-watch --at), appending
            # to the same trace, e.g. the cede path that the default points pass
            # through too rarely to be caught in a bounded run.
            for extra, more in SCENARIO_PHASES.get(scenario, ()) if phases is None else phases:
                if mi.target_exited:
                    break
                phase = watch(
                    mi, trace, stops=more, deadline_s=min(watch_deadline_s, 30.0), extra=extra, append=True
                )
                watched.setdefault("phases", []).append(phase)
                watched["watch_s"] = round(watched["watch_s"] + phase["watch_s"], 3)
            banner = getattr(mi, "plugin_banner", "")
            # Let the guest finish on its own: detach, so QEMU runs free.
            if not mi.target_exited:
                with contextlib.suppress(MIError):
                    mi.execute("-target-detach", timeout=30)
        timings["watch_s"] = watched["watch_s"]
        reports: list[dict[str, Any]] = []
        if wait_reports_s > 0:
            t2 = time.monotonic()
            say("waiting for the guest's reports ...")
            try:
                lab.wait_for(r"PYVCORE DONE", timeout=wait_reports_s)
            except Exception as exc:  # a hung guest is a finding, not a crash
                say(f"no PYVCORE DONE line within {wait_reports_s:g} s ({exc})")
            reports = list(lab.reports())
            timings["reports_s"] = round(time.monotonic() - t2, 2)
        console = Path(lab.console).read_text(errors="replace") if lab.console else ""
    finally:
        if own_lab:
            lab.stop()
    records = list(iter_jsonl(trace)) if trace.exists() else []
    return LiveRun(
        scenario=scenario,
        qemu=qemu,
        trace=trace,
        records=records,
        reports=reports,
        timings=timings,
        watch=watched,
        status=status,
        console=console,
        plugin_banner=banner,
    )


# --------------------------------------------------------------------- the CLI
def watched_points(watch_result: dict[str, Any]) -> list[str]:
    """Breakpoint labels pv-watch said it planted ("pv-watch: on at A, B; log ..."), all phases."""
    out: list[str] = []
    for entry in [watch_result, *watch_result.get("phases", [])]:
        m = re.search(r"pv-watch: on at ([^;\n]+)", entry.get("pv_watch", ""))
        for label in m.group(1).split(",") if m else []:
            if label.strip() and label.strip() not in out:
                out.append(label.strip())
    return out


def format_table(run: LiveRun, summary: Summary) -> str:
    lines = [
        f"pyvcore diff: scenario {run.scenario}, {run.qemu} QEMU, model variant {summary.variant or 'auto'}",
        "boot {boot:.1f} s, attach {attach:.1f} s, watch {watch:.1f} s; {n} guest reports; "
        "trace {trace}".format(
            boot=run.timings.get("boot_s", 0.0),
            attach=run.timings.get("attach_s", 0.0),
            watch=run.timings.get("watch_s", 0.0),
            n=len(run.reports),
            trace=run.trace,
        ),
        "",
        f"{'stop kind':<28} {'stops':>6} {'checked':>8} {'violations':>10} {'ms/check':>9}",
    ]
    for kind, row in summary.stops.items():
        lines.append(
            f"{kind:<28} {row['stops']:>6} {row['snapshots']:>8} {row['violations']:>10} "
            f"{row['check_ms']:>9.3f}"
        )
    planted = watched_points(run.watch)
    missed = [p for p in planted if p not in summary.stops]
    if missed:
        lines.append(f"{'(watched, never hit)':<28} " + ", ".join(missed))
    total_stops = sum(r["stops"] for r in summary.stops.values())
    lines.append(f"{'total':<28} {total_stops:>6} {summary.total_snapshots:>8} {len(summary.violations):>10}")
    if summary.violations:
        lines.append("")
        lines.append("violations (VCORE_SPEC §4):")
        shown = {}
        for v in summary.violations:
            key = (v["invariant"], v.get("message"))
            shown.setdefault(key, []).append(v)
        for (inv, message), group in shown.items():
            first = group[0]
            fields = json.dumps(first.get("fields", {}), sort_keys=True)
            lines.append(
                f"  inv. {inv}: {message} — {len(group)}x, first at stop #{first['index']} "
                f"({first.get('stop')}): {fields}"
            )
    if summary.mismatches:
        lines.append("")
        lines.append(
            f"WARNING: {len(summary.mismatches)} snapshots where pv-watch's verdict differs "
            "from the offline check, first: " + json.dumps(summary.mismatches[0])
        )
    lines.append("")
    if not summary.total_snapshots:
        lines.append("verdict: no snapshot was taken — nothing was compared")
    elif summary.violations:
        lines.append(f"verdict: {len(summary.violations)} violations")
    else:
        lines.append("verdict: clean — the model accepts every snapshot of the real kernel")
    return "\n".join(lines)


def _cmd_diff(args: argparse.Namespace) -> int:
    def say(msg: str) -> None:
        if not args.json:
            print(f"pyvcore diff: {msg}", file=sys.stderr, flush=True)

    try:
        run = run_live(
            args.scenario,
            qemu=args.qemu,
            stops=args.stops,
            trace=Path(args.trace) if args.trace else None,
            threads=args.threads,
            hold=args.hold,
            watch_deadline_s=args.deadline,
            wait_reports_s=0 if args.no_reports else 60.0,
            lock_wait=args.lock_wait,
            progress=say,
        )
        summary = summarize(run.records, args.variant)
    except Exception as exc:  # lab, gdb or plugin failure: say what, exit 2
        print(f"pyvcore diff: could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        doc = {
            "scenario": run.scenario,
            "qemu": run.qemu,
            "trace": str(run.trace),
            "timings": run.timings,
            "watch": run.watch,
            "reports": run.reports,
            **summary.to_dict(),
        }
        print(json.dumps(doc))
    else:
        print(format_table(run, summary))
    if not summary.total_snapshots:
        return 2
    return 1 if summary.violations or summary.mismatches else 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "diff",
        help="boot the lab, watch the real kernel with gdb and check every stop against the model",
        description=(
            "Boot the QEMU powernv8 lab with a scenario, attach gdb-multiarch, let pv-watch "
            "snapshot the core at its breakpoints, tear everything down, and check the trace "
            "against the model.  Exit 0 clean, 1 violations, 2 could not run."
        ),
    )
    p.add_argument("--scenario", default="all", choices=SCENARIOS)
    p.add_argument("--qemu", default="patched", choices=("patched", "stock"))
    p.add_argument("--stops", type=int, default=DEFAULT_STOPS, help="snapshots to take (default %(default)s)")
    p.add_argument("--threads", type=int, default=4, choices=(4, 8))
    p.add_argument(
        "--variant",
        default=None,
        choices=("seed", "modern", "prepatch"),
        help="model variant to check against (default: what the snapshots say)",
    )
    p.add_argument(
        "--hold",
        type=int,
        default=DEFAULT_HOLD,
        help="guest seconds the scenario runs before reporting (default %(default)s)",
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=90.0,
        help="wall-clock seconds the watch may take (default %(default)s)",
    )
    p.add_argument(
        "--lock-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another QEMU lab on the machine to finish (default: fail at once)",
    )
    p.add_argument("--trace", help="where to keep the JSONL trace (default: a temp dir)")
    p.add_argument("--no-reports", action="store_true", help="do not wait for the guest's reports")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=_cmd_diff)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyvcore")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return int(args.func(args))
