"""The `pyvcore diff` command line (the logic is in :mod:`pyvcore.diff`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from pyvcore import cliargs, diff
from pyvcore.checker import VARIANTS
from pyvcore.errors import could_not_run, reason


class Progress:
    """Progress on stderr: one line per phase (``say``), a transient line (``tick``).

    On a terminal the transient line is rewritten in place; otherwise it is
    printed at most every ``every`` seconds (``prog`` leads every line), so a CI log still shows the run is
    alive without a line per second.
    """

    def __init__(self, stream: TextIO | None = None, every: float = 10.0, prog: str = "pyvcore diff") -> None:
        self.stream = stream or sys.stderr
        self.prog = prog
        self.tty = self.stream.isatty()
        self.every = every
        self._pending = False
        self._last = float("-inf")

    def say(self, message: str) -> None:
        self._clear()
        print(f"{self.prog}: {message}", file=self.stream, flush=True)

    def tick(self, message: str) -> None:
        if self.tty:
            self.stream.write(f"\r\x1b[K{self.prog}: {message}")
            self.stream.flush()
            self._pending = True
        elif time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            print(f"{self.prog}: {message}", file=self.stream, flush=True)

    def _clear(self) -> None:
        if self._pending:
            self.stream.write("\r\x1b[K")
            self._pending = False


def run(args: argparse.Namespace) -> int:
    progress = Progress()
    report_dir = Path(args.report) if args.report else None
    trace = args.trace or (report_dir / "trace.jsonl" if report_dir else None)
    if report_dir is not None:
        try:
            report_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"pyvcore diff: cannot create {report_dir}: {reason(exc)}", file=sys.stderr)
            return 2
    try:
        result = diff.run_diff(
            args.scenario,
            qemu=args.qemu,
            stops=args.stops,
            variant=args.variant,
            kernel=args.kernel,
            modules=args.modules,
            symbols=args.symbols,
            attach=args.attach,
            threads=args.threads,
            hold=args.hold,
            deadline_s=args.deadline,
            wait_reports_s=0 if args.no_reports else 60.0,
            lock_wait=args.lock_wait,
            trace=trace,
            keep=args.keep,
            progress=progress.say,
            tick=progress.tick,
            from_boot=args.from_boot,
        )
    except diff.DiffInterrupted as exc:
        progress.say(
            f"interrupted; partial trace ({exc.stops} stops) kept in {exc.trace}"
            if exc.trace
            else "interrupted before any stop was logged; nothing kept"
        )
        return 130
    if result.verdict == "error":
        print(f"pyvcore diff: {could_not_run(result.error or '')}", file=sys.stderr)
        if args.json:  # the same object as a run, with verdict "error"
            print(json.dumps(result.to_dict()))
        return 2
    assert result.run is not None and result.summary is not None
    table = diff.format_table(result.run, result.summary)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(table)
    if report_dir is not None:
        from pyvcore.diff_report import write_report

        written = write_report(report_dir, result, table)
        progress.say(f"report in {report_dir}: " + ", ".join(p.name for p in written))
    elif result.trace is not None and args.json:
        progress.say(f"trace kept in {result.trace}")
    return result.exit_code


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "diff",
        help="watch the real kernel in the lab with gdb and check every stop against the model",
        description=(
            "Boot the QEMU powernv8 lab with a scenario (or --attach to a running lab or any "
            "gdbstub), let pv-watch snapshot the core at its breakpoints, and check every stop "
            "against the model.  Per stop kind it tells stops, judged, not judged and violations.  "
            "Exit 0 clean, 1 violations, 2 could not run or a stop kind was never judged, 130 Ctrl-C."
        ),
    )
    p.add_argument("--scenario", default="all", choices=diff.SCENARIOS)
    p.add_argument("--qemu", default="patched", type=cliargs.qemu, help="patched, stock or a QEMU binary")
    p.add_argument(
        "--stops",
        type=cliargs.positive,
        default=diff.DEFAULT_STOPS,
        help="end the watch after this many stops (default %(default)s); --deadline or the guest's "
        "end may come first; cede and cede-all then watch up to 20 more on the cede path",
    )
    p.add_argument("--threads", type=int, default=4, choices=(4, 8))
    p.add_argument(
        "--variant",
        default=None,
        choices=VARIANTS,
        help="model variant to check against (default: what the snapshots say)",
    )
    cliargs.add_kernel(p, "; with --attach HOST:PORT: the vmlinux the target runs")
    p.add_argument(
        "--modules",
        metavar="DIR",
        type=cliargs.input_dir,
        help="directory with kvm.ko and kvm-hv.ko (.ko or .ko.xz) to load",
    )
    p.add_argument("--symbols", metavar="FILE", type=cliargs.symbols, help=cliargs.SYMBOLS_HELP)
    p.add_argument(
        "--attach",
        nargs="?",
        const="lab",
        metavar="ADDR",
        help="use a target already running: the lab (`pyvcore lab up`; the default) or HOST:PORT of any gdbstub",
    )
    _add_run_options(p)
    p.set_defaults(func=run)


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """diff's options on how the run goes (guest hold, deadline, lock wait, from boot) and what
    it leaves (trace, report directory, JSON)."""
    p.add_argument(
        "--hold",
        type=int,
        default=diff.DEFAULT_HOLD,
        help="guest seconds the scenario runs before reporting (default %(default)s)",
    )
    p.add_argument(
        "--deadline",
        type=cliargs.seconds,
        default=90.0,
        help="wall-clock seconds the watch may take (default %(default)s)",
    )
    cliargs.add_lock_wait(p)
    p.add_argument(
        "--trace",
        type=cliargs.output_file,
        help="where to write the JSONL trace (default: the lab's run directory)",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the trace of a bare gdbstub's run (else removed)"
    )
    p.add_argument(
        "--report",
        metavar="DIR",
        type=cliargs.output_dir,
        help="write table, trace, timeline (html, json) and console log into DIR",
    )
    p.add_argument("--no-reports", action="store_true", help="do not wait for the guest's reports")
    p.add_argument(
        "--from-boot",
        action="store_true",
        help="start QEMU stopped and watch from its first instruction (kvm-hv's points once it is "
        "loaded): a kernel that breaks on its first vcore run, before the guest is READY, is seen",
    )
    p.add_argument("--json", action="store_true", help="one JSON object on stdout (addresses as hex strings)")
