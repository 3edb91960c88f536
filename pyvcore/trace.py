"""``pyvcore trace``: every store of the real kernel to the vcore scheduler's state,
checked as it happens, through pyvcore's QEMU TCG plugin.

``run_trace()`` boots the lab once without the plugin (the baseline timing) and
once with it, lets the scenario run for its hold time, quits QEMU (the plugin
writes its summary at exit) and returns a :class:`TraceResult`: events per field,
distinct states, violations each with the events before it, the kernel's state
edges (with the kernel functions that made them) and the timings.  The event log
(format ``pyvcore-events``, documented in rust/core/src/shadow/mod.rs) is what
``pyvcore check`` and ``pyvcore timeline`` read back.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pyvcore import _core, cliargs
from pyvcore.errors import at, cannot_read, could_not_run, error_line

DEFAULT_SECONDS = 5
SUMMARY_WAIT_S = 15.0


class TraceError(RuntimeError):
    """A trace that could not run (exit 2), with a one-line message."""


@dataclass
class LabRun:
    """One boot of the lab: timings and what the guest reported."""

    boot_s: float | None = None
    scenario_s: float | None = None
    done: dict[str, Any] | None = None
    reports: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    # The boot hung after kvm-hv was loaded (the lab's vmm stage) and was judged on the
    # trace up to the hang instead of being retried: {"stage", "reason", "attempt"}.
    hung: dict[str, Any] | None = None


@dataclass
class TraceResult:
    """What ``run_trace`` saw.  ``verdict``: clean | violations | error."""

    scenario: str
    qemu: str
    mode: str
    verdict: str
    summary: dict[str, Any] = field(default_factory=dict)
    traced: LabRun = field(default_factory=LabRun)
    baseline: LabRun | None = None
    log: str | None = None
    error: str | None = None

    @property
    def exit_code(self) -> int:
        return {"clean": 0, "violations": 1}.get(self.verdict, 2)

    def to_dict(self) -> dict[str, Any]:
        def run(r: LabRun | None) -> dict[str, Any] | None:
            return (
                None if r is None else {"boot_s": r.boot_s, "scenario_s": r.scenario_s, "reports": r.reports}
            )

        from pyvcore.lab.inputs import kernel_of

        return {
            "scenario": self.scenario,
            "qemu": self.qemu,
            "kernel": kernel_of(self.traced.status),
            "mode": self.mode,
            "verdict": self.verdict,
            "error": self.error,
            "log": self.log,
            "traced": run(self.traced),
            "baseline": run(self.baseline),
            "summary": self.summary,
        }


def _guest_seconds(done: dict[str, Any] | None) -> float | None:
    try:
        return float(done["seconds"]) if done else None
    except (KeyError, TypeError, ValueError):
        return None


def _boot(
    scenario: str,
    *,
    qemu: str,
    seconds: int,
    threads: int,
    plugin: tuple[str, dict[str, str]] | None,
    lock_wait: float,
    kernel: str | None,
    modules: str | None,
    say: Callable[[str], None],
    symbols: str | None = None,
) -> LabRun:
    """Boot, let the scenario run to its DONE line (or time out), quit QEMU.

    With the plugin, a boot that hangs once kvm-hv is loaded (the vmm stage: the kernel
    under test, not the lab) is not retried: QEMU is quit at once and the trace judged up
    to the hang (the plugin writes its summary at exit), as ``pyvcore diff`` judges a hung
    machine.  ``LabRun.hung`` says so."""
    from pyvcore.lab import Lab

    kwargs: dict[str, Any] = {"plugin": plugin, "judge_hang": True} if plugin else {}
    kwargs["name_gdb"] = False  # nobody attaches gdb to a traced run
    if kernel is not None:
        kwargs["kernel"] = kernel
    if modules is not None:
        kwargs["modules"] = modules
    if symbols is not None:
        kwargs["symbols"] = symbols
    lab = Lab(scenario, threads=threads, qemu=qemu, hold=seconds, lock_wait=lock_wait, log=say, **kwargs)
    out = LabRun()
    with lab:
        out.boot_s = lab.boot_seconds
        out.hung = lab.hung
        if lab.hung:
            say(f"boot hung in the {lab.hung['stage']} stage: the trace is judged up to the hang")
        else:
            checking = ", the plugin checking every store" if plugin else ""
            say(f"the guest runs scenario {scenario} for {seconds} s{checking} ...")
            try:
                lab.wait_for(r"PYVCORE DONE\b", timeout=seconds + 90.0)
            except Exception as exc:  # the guest never finished (stock QEMU): judged on what was seen
                say(f"the guest did not finish: {str(exc).splitlines()[0]}")
        out.status = lab.status()
        out.done = out.status.get("done")
        out.scenario_s = _guest_seconds(out.done)
        out.reports = len(lab.reports())
        lab.stop()
    return out


def run_trace(
    scenario: str,
    *,
    qemu: str = "patched",
    seconds: int = DEFAULT_SECONDS,
    out: str | Path | None = None,
    mode: str = "all",
    threads: int = 4,
    baseline: bool = True,
    lock_wait: float = 0.0,
    slack: float | None = None,
    kernel: str | Path | None = None,
    modules: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    symbols: str | Path | None = None,
) -> TraceResult:
    """Trace one scenario with the plugin; never raises for a run that cannot be done
    (``verdict == "error"``, ``error`` set).

    ``qemu``: "patched" | "stock" | a binary; ``seconds``: the guest's hold time;
    ``out``: the event log's path (default: a temporary directory, kept);
    ``mode``: "all" (stores of all code) or "kvm" (only KVM and idle code);
    ``baseline``: also boot once without the plugin for the timing comparison;
    ``slack``: multiplier on the liveness bounds (default 100); ``kernel``, ``modules``,
    ``symbols``: as the lab takes them (:class:`pyvcore.lab.Lab`)."""
    say = progress or (lambda message: None)
    result = TraceResult(scenario=scenario, qemu=qemu, mode=mode, verdict="error")
    work: Path | None = None
    log: Path | None = None
    try:
        from pyvcore.lab.plugin_build import ensure_plugin

        scenarios = importlib.import_module("pyvcore.lab.scenarios").SCENARIOS
        if scenario not in scenarios:
            raise TraceError(f"unknown scenario {scenario!r}; choose one of: {', '.join(scenarios)}")
        if mode not in ("all", "kvm"):
            raise TraceError(f"mode must be all or kvm, not {mode!r}")
        vmlinux = _preflight(
            scenario,
            qemu=qemu,
            threads=threads,
            seconds=seconds,
            kernel=kernel,
            modules=modules,
            symbols=symbols,
        )
        plugin = ensure_plugin(log=say)
        work = Path(tempfile.mkdtemp(prefix=f"pyvcore-trace-{scenario}-"))
        log = Path(out) if out else work / "events.jsonl"
        summary_path = work / "summary.json"
        boot_args: dict[str, Any] = {
            "qemu": qemu,
            "seconds": seconds,
            "threads": threads,
            "lock_wait": lock_wait,
            "kernel": None if kernel is None else str(kernel),
            "modules": None if modules is None else str(modules),
            "symbols": None if symbols is None else str(symbols),
            "say": say,
        }
        machine = f"scenario {scenario}, {qemu if '/' in qemu else qemu + ' QEMU'}, {threads} threads"
        if baseline:
            say(f"booting the lab without the plugin, to time the run it slows down: {machine} ...")
            result.baseline = _boot(scenario, plugin=None, **boot_args)
        args = {
            "vmlinux": vmlinux,
            "threads": str(threads),
            "log": str(log.resolve()),
            "summary": str(summary_path),
            "mode": mode,
            "scenario": scenario,
            "qemu": qemu,
        }
        if slack is not None:
            args["slack"] = str(slack)
        code = "all code" if mode == "all" else "KVM and idle code"
        say(f"booting the lab with the plugin checking every store of {code}: {machine} ...")
        result.traced = _boot(scenario, plugin=(str(plugin), args), **boot_args)
        result.log = str(log)
        result.summary = _read_summary(summary_path)
        if result.traced.hung:
            result.summary["hung"] = result.traced.hung
        _name_module_pcs(result.summary, result.traced.status)
        result.summary["prepatch_refuted_by"] = _refute_prepatch(log)
        if out:  # the work directory held only the summary, now read: nothing left in /tmp
            shutil.rmtree(work, ignore_errors=True)
    except Exception as exc:  # lab, build or plugin failure: a verdict, not a crash
        result.error = error_line(exc)
        return _failed(result, work, log)
    stats = result.summary.get("stats", {})
    if not stats.get("stores_checked"):
        # The shadow never saw a store to the scheduler's state: nothing was judged.
        result.error = "no store to the watched state was seen: the trace judged nothing"
        return _failed(result, work, log)
    result.verdict = "violations" if stats.get("violations") else "clean"
    return result


def _failed(result: TraceResult, work: Path | None, log: Path | None) -> TraceResult:
    """A run that failed leaves nothing behind in the temporary directory unless the event
    log holds something (then the error names it: the user may want it)."""
    if log is not None and log.is_file() and log.stat().st_size > 0:
        result.log = str(log)
        result.error = f"{result.error} (the event log so far is kept: {log})"
        if work is not None and log.parent != work:
            shutil.rmtree(work, ignore_errors=True)
    elif work is not None:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _preflight(
    scenario: str,
    *,
    qemu: str,
    threads: int,
    seconds: int,
    kernel: str | Path | None,
    modules: str | Path | None,
    symbols: str | Path | None = None,
) -> str:
    """Check every input (QEMU, kernel, modules, the lab's setup) before the plugin is
    built or a lab booted: the lab's own checks (``Lab.prepare``), without probing a
    QEMU given by path (the boot does that).  Returns the vmlinux the plugin reads: the
    image that boots, or its debug image when only that has BTF. TraceError for a kernel
    with no BTF at all: the plugin lays out the watched structs from BTF alone."""
    from pyvcore.lab import Lab

    lab = Lab(
        scenario,
        threads=threads,
        qemu=qemu,
        hold=seconds,
        kernel=None if kernel is None else str(kernel),
        modules=None if modules is None else str(modules),
        symbols=None if symbols is None else str(symbols),
        log=None,
        probe=False,
    )
    lab.prepare()
    bk = lab.boot_kernel
    assert bk is not None
    if bk.info.get("debug_info") != "BTF":
        raise TraceError(
            f"kernel {bk.label} has no BTF (its layouts come from DWARF): the trace plugin reads "
            "BTF only (CONFIG_DEBUG_INFO_BTF=y); `pyvcore diff` reads DWARF"
        )
    return str(bk.symbol_file)


def _refute_prepatch(log: Path) -> dict[str, Any] | None:
    """The first event of the log that the ``prepatch`` variant cannot make."""
    from pyvcore.trace_edges import refute_prepatch

    with open(log, encoding="utf-8") as f:
        next(f, None)  # the header
        return refute_prepatch(f)


def _read_summary(path: Path) -> dict[str, Any]:
    deadline = time.monotonic() + SUMMARY_WAIT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise TraceError("the plugin wrote no summary (QEMU did not exit normally)")
        time.sleep(0.2)
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _name_module_pcs(summary: dict[str, Any], status: dict[str, Any]) -> None:
    """Name the PCs inside kvm.ko / kvm-hv.ko (the plugin names vmlinux's only)."""
    modules: dict[str, dict[str, int]] = status.get("modules") or {}
    objects: dict[str, str] = status.get("module_objects") or {}
    table: list[tuple[int, str]] = []
    for name, sections in modules.items():
        obj = objects.get(name) or objects.get(name.replace("_", "-"))
        if not obj or not Path(obj).exists():
            continue
        for sym, (section, offset) in _core.module_symbols(Path(obj).read_bytes()).items():
            base = sections.get(section)
            if base is not None and section.startswith(".text"):
                table.append((int(base) + int(offset), sym))
    table.sort()
    for e in summary.get("edges", []):
        pc = int(e["pc"], 16)
        if e.get("fn") is None and table:
            import bisect

            i = bisect.bisect_right(table, (pc, "\uffff")) - 1
            if i >= 0 and pc - table[i][0] < 0x4000:
                e["fn"] = table[i][1]


# ------------------------------------------------------------------ reading a log


def check_event_log(path: str, *, as_json: bool = False, every: bool = False) -> int:
    """``pyvcore check`` on an event log: replay it through the shadow; 0/1/2.  The text
    report prints the first violations with their events (``every``: all the shadow lists);
    ``as_json`` lists all of them."""
    try:
        text = Path(path).read_text()
        summary = json.loads(_core.replay_events(text))
    except OSError as exc:
        print(f"pyvcore check: {cannot_read(path, exc)}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"pyvcore check: {path}: not UTF-8 text ({exc.reason} at byte {exc.start})", file=sys.stderr)
        return 2
    except _core.EventLogError as exc:  # PATH:LINE:COLUMN: why, as every reader places a line
        print(f"pyvcore check: {at(path, exc.line, exc.column)}: {exc.reason}", file=sys.stderr)
        return 2
    stats = summary["stats"]
    if stats["events"] == 0:
        print(f"pyvcore check: {path}: the event log has no event", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps({"trace": path, "format": "pyvcore-events", **summary}))
    else:
        from pyvcore.trace_report import format_exit_ipi, format_liveness_timebase, format_violations

        for part in (
            format_violations(summary, path, every=every),
            format_exit_ipi(summary),
            format_liveness_timebase(summary),
        ):
            if part:  # no blank line where there is nothing to say
                print(part)
        print(
            f"{stats['events']:,} events, {stats['distinct_states']:,} distinct states, "
            f"{stats['violations']:,} violations"
        )
    return 1 if stats["violations"] else 0


# ---------------------------------------------------------------------- the command


def _run(args: argparse.Namespace) -> int:
    from pyvcore.trace_report import format_result

    def progress(message: str) -> None:
        print(f"pyvcore trace: {message}", file=sys.stderr, flush=True)

    result = run_trace(
        args.scenario,
        qemu=args.qemu,
        seconds=args.seconds,
        out=args.out,
        mode=args.mode,
        threads=args.threads,
        baseline=not args.no_baseline,
        lock_wait=args.lock_wait,
        slack=args.slack,
        kernel=args.kernel,
        modules=args.modules,
        symbols=args.symbols,
        progress=progress,
    )
    if result.verdict == "error":  # the one line on stderr, --json or not (as diff)
        print(f"pyvcore trace: {could_not_run(result.error or '')}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict()))
    elif result.verdict != "error":
        print(format_result(result, edges=args.edges, every=args.all))
    return result.exit_code


def register(subparsers: Any) -> None:
    """Add ``pyvcore trace --scenario S [--qemu patched|stock] [--seconds N] [--out FILE] [--json]``."""
    from pyvcore.trace_report import SHOWN

    p = subparsers.add_parser(
        "trace",
        help="check every store of the real kernel's scheduler state (QEMU TCG plugin)",
        description=(
            "Boot the lab with pyvcore's QEMU plugin, run the scenario and check the kernel's "
            "vcore state after every store: snapshot, step and liveness invariants. "
            "Exit 0 clean, 1 violations, 2 could not run."
        ),
    )
    p.add_argument(
        "--scenario",
        required=True,
        choices=cliargs.scenarios(),
        metavar="SCENARIO",
        help=f"lab scenario: {', '.join(cliargs.scenarios())}",
    )
    p.add_argument(
        "--qemu", default="patched", type=cliargs.qemu, help="patched | stock | path of a qemu-system-ppc64"
    )
    p.add_argument(
        "--seconds", type=cliargs.positive, default=DEFAULT_SECONDS, help="how long the guest runs (hold, s)"
    )
    p.add_argument(
        "--out", type=cliargs.output_file, help="write the event log here (default: a temporary directory)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object instead of the report")
    p.add_argument(
        "--mode", choices=("all", "kvm"), default="all", help="stores of all code or of KVM code only"
    )
    p.add_argument("--threads", type=int, default=4, choices=(4, 8))
    p.add_argument("--no-baseline", action="store_true", help="skip the timing run without the plugin")
    p.add_argument("--edges", action="store_true", help="also print the kernel's edges vs the model's")
    p.add_argument(
        "--all",
        action="store_true",
        help=f"print every violation (default: the first {SHOWN}, with the events before each)",
    )
    p.add_argument("--slack", type=cliargs.factor, help="multiplier on the liveness bounds (default 100)")
    cliargs.add_lock_wait(p)
    cliargs.add_kernel(p)
    p.add_argument(
        "--modules",
        type=cliargs.input_dir,
        help="directory with kvm.ko / kvm-hv.ko to load instead of the lab's",
    )
    p.add_argument("--symbols", metavar="FILE", type=cliargs.symbols, help=cliargs.SYMBOLS_HELP)
    p.set_defaults(func=_run)
