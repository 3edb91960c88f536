"""`pyvcore show TRACE [--line N | --stop LABEL]`: the pv-check tables of a recorded stop.

A trace is what ``pv-watch --log`` and ``pyvcore diff --trace`` write (one
snapshot per line).  Each shown stop gets the same tables as ``pv-check`` in a
live gdb: the threads' PACAs, the vcores with their vcpus, and per thread the
kernel's value, the model's, and a verdict; then every violation, with the
invariant explained once.  The trace is replayed from its first line, so the
checker's verdict on a line is the one ``pyvcore check`` gives.

Exit status, as ``pyvcore check`` gives them for the stops shown: 0 clean, 1 violations, 2
unusable input (unreadable file, a bad line, no such line or stop) or a stop shown not
judged (no vcore read, or a thread, vcpu or vcore it names missing).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any, Optional

from pyvcore import cliargs
from pyvcore.checker import VARIANTS
from pyvcore.errors import at
from pyvcore.jsonl import stops
from pyvcore.render import colour_for, wrap
from pyvcore.stopview import Judgement, check_text, judge, registers_table, threads_table, vcores_text


class ShowError(Exception):
    """Unusable input: one line for the user, exit 2."""


def explain(n: int, width: int = 76) -> Optional[str]:
    """What invariant ``n`` states, when it is judged, the kernel source it comes from and
    what a violation usually means (the invariant table's row), or None if there is no such row."""
    from pyvcore.errors import PyvcoreError
    from pyvcore.invariants import explain as table_explain

    try:
        return table_explain(n, width=width)
    except PyvcoreError:
        return None


def snapshots(path: str, variant: Optional[str] = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, snapshot) for every stop ("-": stdin), as `pyvcore check` reads them
    (:func:`pyvcore.jsonl.stops`): ShowError with check's ``FILE:LINE:COLUMN`` line on the
    first line check refuses, or on an event log, which `pyvcore timeline` reads.  A stop
    pv-watch could not read (``{"stop": LABEL, "error": MESSAGE}``, see :func:`unread`) is
    yielded as it is."""
    for n, obj in stops(path, ShowError, variant):
        if obj.get("format") == "pyvcore-events":
            raise ShowError(
                f"{path} is an event log: give it as a file (not stdin), with --seq N or --violation K"
            )
        if not unread(obj) and not isinstance(obj.get("threads"), list):
            raise ShowError(f"{at(path, n)}: not a snapshot: no `threads` list")
        yield n, obj


def unread(obj: dict[str, Any]) -> bool:
    """Whether a trace line is a stop pv-watch could not read: ``{"stop": LABEL, "error":
    MESSAGE}`` and nothing else (gdb_plugins/watch.py, ``Watcher.log_error``), which `pyvcore
    check` counts as a stop not judged."""
    return set(obj) == {"stop", "error"}


def render_unread(n: int, record: dict[str, Any], width: int | None) -> str:
    """What ``show`` prints for a stop pv-watch could not read."""
    return "\n".join(
        [
            wrap(f"== line {n}  stop {record['stop']}", width),
            wrap(f"pv-watch could not read this stop: {record['error']}", width),
            "nothing judged here (and the stop after it is not compared with the one before)",
        ]
    )


def wanted(n: int, snap: dict[str, Any], args: argparse.Namespace) -> bool:
    if args.line is not None:
        return bool(n == args.line)
    if args.stop is not None:
        label = str(snap.get("stop", ""))
        return bool(label == args.stop or label.split("@")[0] == args.stop)
    return True


def render_stop(
    path: str, n: int, snap: dict[str, Any], j: Judgement, *, colour: bool, width: int | None, legend: bool
) -> str:
    """Everything ``show`` prints for one stop."""
    head = f"== line {n}  stop {snap.get('stop', '?')}"
    if "event" in snap:  # a trace `pyvcore explore --trace` wrote: the model's event that led here
        head += f"  after {snap['event']}"
    if "tb" in snap:
        head += f"  tb {snap['tb']}"
    registers = registers_table(snap, width=width)
    return "\n".join(
        [
            wrap(head, width),
            threads_table(snap, width=width),
            *([registers] if registers else []),
            vcores_text(snap, width=width),
            check_text(snap, j, colour=colour, width=width, explain=explain, legend=legend),
        ]
    )


def line_number(text: str) -> int:
    """A trace line number, as `pyvcore check` counts them: from 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a line number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"lines start at 1, not {value}")
    return value


def seq_number(text: str) -> int:
    """An event log's store number (``seq``, from 0)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a store number (seq), not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"store numbers start at 0, not {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from pyvcore.checker import Checker, SnapshotError
    from pyvcore.show_events import is_event_log
    from pyvcore.show_events import run as show_events
    from pyvcore.variant_fit import layout_problem

    if is_event_log(args.trace):
        return show_events(args, explain)
    if args.seq is not None or args.violation is not None:
        print(
            f"pyvcore show: --seq and --violation read an event log (pyvcore trace --out); {args.trace} is a "
            "trace of snapshots: give --line N or --stop LABEL",
            file=sys.stderr,
        )
        return 2

    checker = Checker(args.variant)
    colour = colour_for(sys.stdout) if args.colour == "auto" else args.colour == "always"
    shown = violations = not_judged = seen = 0
    try:
        for n, snap in snapshots(args.trace, args.variant):
            seen += 1
            j: Judgement | None = None
            if unread(snap):
                checker.reset()  # as check: the stops on either side are not compared
            else:
                problem = layout_problem(snap, args.variant)
                if problem:
                    raise ShowError(f"{at(args.trace, n)}: {problem}")
                try:
                    j = judge(checker, snap)
                except SnapshotError as e:  # TRACE:LINE:COLUMN, as every reader places a line
                    raise ShowError(f"{at(args.trace, n, e.column)}: {e.detail}") from None
                except (ValueError, TypeError) as e:
                    raise ShowError(f"{at(args.trace, n)}: {e}") from None
            if not wanted(n, snap, args):
                continue
            if args.line is not None and n > args.line:
                break
            if shown:
                print()
            else:
                print(wrap(f"trace {args.trace}", args.width))
            if j is None:
                print(render_unread(n, snap, args.width))
                not_judged += 1
            else:
                print(render_stop(args.trace, n, snap, j, colour=colour, width=args.width, legend=not shown))
                violations += len(j.violations)
                not_judged += j.verdict == "not judged"
            shown += 1
            if args.line is not None:
                break
    except ShowError as e:
        sys.stdout.flush()  # the stops read before the bad line come first, then why it stopped
        read = (
            f"; only the {shown} stop{'s' if shown != 1 else ''} above could be read before it"
            if shown
            else ""
        )
        print(f"pyvcore show: {e}{read}", file=sys.stderr)
        return 2
    if not seen:
        print(f"pyvcore show: {args.trace}: empty trace: nothing to show", file=sys.stderr)
        return 2
    if not shown:
        what = (
            f"line {args.line}" if args.line is not None else f"stop {args.stop!r}" if args.stop else "stop"
        )
        print(f"pyvcore show: {args.trace}: no {what} in this trace", file=sys.stderr)
        return 2
    # pyvcore check's codes (TraceReport::exit_code): a stop not judged is never clean
    return 1 if violations else 2 if not_judged else 0


def register(subparsers: Any) -> None:
    """Add ``pyvcore show TRACE [--line N | --stop LABEL] [--width W] [--colour WHEN]``."""
    p = subparsers.add_parser(
        "show",
        help="the pv-check tables of any recorded stop of a trace",
        description="Render the tables pv-check prints in gdb for recorded stops of a trace "
        "(a pv-watch log), or for the state an event log (pyvcore trace --out) held at one store "
        "(--seq N) or violation (--violation K): PACAs, vcores, kernel vs model per thread with a "
        "verdict, violations explained. Exit status: 0 clean, 1 violations, 2 unusable input or a "
        "stop shown not judged (as pyvcore check).",
    )
    p.add_argument(
        "trace",
        metavar="TRACE.jsonl",
        type=cliargs.file_of(cliargs.TRACE_FILE),
        help="trace file ('-' reads stdin)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--line", type=line_number, metavar="N", help="the stop on line N (as `pyvcore check` names it)"
    )
    which.add_argument(
        "--stop", metavar="LABEL", help="every stop with this label (kvm_do_nap or kvm_do_nap@cpu0)"
    )
    which.add_argument(
        "--seq",
        type=seq_number,
        metavar="N",
        help="an event log (pyvcore trace): the state after its store N (every store up to N applied)",
    )
    which.add_argument(
        "--violation",
        type=cliargs.positive,
        metavar="K",
        help="an event log: the state after the store that made its K-th violation (from 1)",
    )
    p.add_argument(
        "--width", type=cliargs.positive, default=None, help="terminal columns to fit (default 80)"
    )
    p.add_argument("--variant", choices=VARIANTS, default=None)
    p.add_argument("--colour", choices=("auto", "always", "never"), default="auto")
    p.set_defaults(func=run)
