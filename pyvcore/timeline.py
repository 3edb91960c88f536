"""`pyvcore timeline`: the story of a vcore run as lanes, for Perfetto, a browser or a picture.

Input (detected from the first line):

* a **sampled trace**: JSONL snapshots, one per stop, as ``pv-watch --log`` and
  ``pyvcore diff`` write them.  Each stop is drawn as a *point* on every lane, at
  its timebase (``tb``, ticks of ``tb_freq`` Hz) when every stop has one, else at
  its stop number.  Nothing is drawn between two stops: what happened there was
  not seen.
* a **continuous event log** (``pyvcore trace``): a header object
  ``{"format": "pyvcore-events", "version": 1, "tb_freq": ...}`` then one
  change of one watched field per line (:mod:`pyvcore.timeline_events` says
  which fields it draws).  Every store was seen, so every lane is a run of
  *slices*: a state holds from the change that made it to the next one.

Lanes: one per hardware thread, coloured by where the thread is (host, idle,
grabbed, entering, in guest (vcpu id), napping (why), exiting: from
``kvm_hstate.in_guest``, ``napping``, ``hwthread_state``, ``hwthread_req`` and the
vcore's ``entry_exit_map``, as arch/powerpc/kvm/book3s_hv_rmhandlers.S and
book3s_hv.c:kvmppc_run_core set them), one per vcore (``vcore_state``,
``in_guest``, entry/exit map), and one for violations (invariant and message).

Output by suffix: ``.json`` Chrome/Perfetto trace-event JSON (opens in
ui.perfetto.dev and chrome://tracing), ``.html`` one self-contained zoomable page
(inline SVG and script, no network), ``.png`` a static picture (matplotlib).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyvcore import cliargs, ppc64
from pyvcore.checker import VARIANTS
from pyvcore.errors import PyvcoreError, at
from pyvcore.jsonl import objects, stops
from pyvcore.ppc64 import VCORE_STATES

# kvm_hstate.in_guest: KVM_GUEST_MODE_* (arch/powerpc/include/asm/kvm_asm.h)
IN_GUEST = ppc64.GUEST_MODES
# kvm_hstate.napping: NAPPING_* (arch/powerpc/include/asm/kvm_book3s_asm.h)
NAPPING = {value: name.lower() for value, name in ppc64.NAPPING.items() if value}
# kvm_hstate.hwthread_state: KVM_HWTHREAD_IN_KERNEL / IN_IDLE (IN_NAP before v4.x) / IN_KVM
HWTHREAD_IN_KERNEL, HWTHREAD_IN_IDLE, HWTHREAD_IN_KVM = 0, 1, 2

# Thread states, in legend order, with their colours (HTML, PNG; Perfetto picks its own).
STATES: dict[str, str] = {
    "host": "#9e9e9e",
    "idle": "#d7d7d7",
    "grabbed": "#f9a825",
    "entering": "#42a5f5",
    "guest": "#2e7d32",
    "napping": "#8e24aa",
    "exiting": "#ef6c00",
    "vcore": "#5c6bc0",  # a vcore_state value with no VCORE_* name (garbage)
    # Every VCORE_* state of arch/powerpc/include/asm/kvm_host.h, seed and modern alike.
    "vcore INACTIVE": "#b0bec5",
    "vcore PREEMPT": "#90a4ae",
    "vcore PIGGYBACK": "#7986cb",
    "vcore SLEEPING": "#ab47bc",
    "vcore STARTING": "#26a69a",
    "vcore RUNNING": "#3949ab",
    "vcore EXITING": "#ff7043",
    "vcore POLLING": "#ffca28",
    "violation": "#d50000",
}


class TimelineError(ValueError):
    """A trace that cannot be drawn (not JSON, not a trace, empty): one line."""


def as_int(value: Any) -> int:
    """An integer from a trace value: int, or a ``"0x..."`` / decimal string (both forms are written)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            raise TimelineError(f"not an integer: {value!r}") from None
    if value is None:
        return 0
    raise TimelineError(f"not an integer: {value!r}")


# ------------------------------------------------------------------ the picture
@dataclass
class Lane:
    key: str
    title: str
    group: str  # "threads" | "vcores" | "violations"


@dataclass
class Mark:
    """A state seen at one instant (sampled) or held from ``ts`` to ``end`` (continuous)."""

    lane: str
    ts: float
    state: str
    label: str
    args: dict[str, Any] = field(default_factory=dict)
    end: float | None = None


@dataclass
class Flow:
    """An arrow: a doorbell or an exit IPI from one thread lane to another."""

    name: str
    src: str
    dst: str
    ts: float
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Violation:
    ts: float
    invariant: int
    message: str
    stop: str = ""


@dataclass
class Timeline:
    """Lanes and what is drawn on them; ``unit`` is "us" (timebase), "stop" (stop number) or
    "event" (event number: an event log whose timebase never advances)."""

    source: str  # "sampled" | "continuous"
    unit: str
    title: str
    lanes: list[Lane] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    stops: int = 0
    # Stops the checker could not judge (CheckOutcome.verdict "not judged": no vcore found, or
    # a thread, vcpu or vcore it names missing), as (ts, stop, trace line, why): drawn, and
    # never counted clean (as `pyvcore check` counts them).
    not_judged: list[tuple[float, str, int, str]] = field(default_factory=list)
    # Every violation found, when the checker found more than it listed (and so more than
    # ``violations`` holds), with the count per invariant; None: all are in ``violations``.
    violations_total: int | None = None
    violations_per_invariant: dict[int, int] = field(default_factory=dict)
    # Open on KVM's activity (kvm_span) rather than the whole trace (`--whole` clears it).
    focus: bool = True
    # Why a sampled trace with a timebase is drawn by stop number (a stop whose host
    # timebase is not known), said on stderr; None otherwise.
    axis_note: str | None = None

    def violation_counts(self) -> dict[int, int]:
        """How many violations of each invariant were found (drawn or not)."""
        if self.violations_per_invariant:
            return dict(self.violations_per_invariant)
        counts: dict[int, int] = {}
        for v in self.violations:
            counts[v.invariant] = counts.get(v.invariant, 0) + 1
        return counts

    def violations_text(self) -> str:
        """``10,995 violations``, or when not every one is drawn ``70,000 violations (the
        first 65,536 drawn: the checker lists no more; `pyvcore check LOG` counts them all)``."""
        drawn = len(self.violations)
        total = drawn if self.violations_total is None else self.violations_total
        text = f"{total:,} violation{'s' if total != 1 else ''}"
        if drawn < total:
            text += (
                f" (the first {drawn:,} drawn: the checker lists no more; "
                "`pyvcore check LOG` counts them all per invariant)"
            )
        return text

    def not_judged_text(self) -> str:
        """``1 stop not judged (first at line 3: a thread of the core is not in the snapshot)``,
        or "" when every stop was judged."""
        if not self.not_judged:
            return ""
        count = len(self.not_judged)
        _ts, _stop, line, why = self.not_judged[0]
        return f"{count:,} stop{'s' if count != 1 else ''} not judged (first at line {line}: {why})"

    def lane(self, key: str, title: str, group: str) -> str:
        if not any(lane.key == key for lane in self.lanes):
            self.lanes.append(Lane(key, title, group))
        return key

    def sorted_lanes(self) -> list[Lane]:
        order = {"threads": 0, "vcores": 1, "violations": 2}
        return sorted(self.lanes, key=lambda lane: (order[lane.group], _natural(lane.key)))

    @property
    def span(self) -> tuple[float, float]:
        times = [m.ts for m in self.marks] + [m.end for m in self.marks if m.end is not None]
        times += [v.ts for v in self.violations] + [f.ts for f in self.flows]
        return (min(times), max(times)) if times else (0.0, 1.0)

    @property
    def ordinal(self) -> bool:
        """Whether the x axis counts stops or events rather than timebase time."""
        return self.unit in ("stop", "event")

    @property
    def kvm_span(self) -> tuple[float, float] | None:
        """Where KVM is active in a timebase-timed trace: from its first vcore slice, thread
        slice away from the host or idle, or violation, to the end; None when that is
        most of the trace anyway (a sampled watch, a short log), or the axis is stop numbers.
        A continuous trace starts at the boot's first store and KVM's first vcore run comes
        seconds later: a picture of the whole span squeezes it to the right."""
        if self.ordinal or not self.focus:
            return None
        t0, t1 = self.span
        # Not the arrows: the host's own IPIs are doorbells too (msgsnd, from the first boot seconds).
        starts = [m.ts for m in self.marks if m.lane.startswith("vcore ") or m.state not in ("host", "idle")]
        starts += [v.ts for v in self.violations]
        begin = min(starts, default=t0)
        return (begin, t1) if begin - t0 > 0.1 * (t1 - t0) else None


def _natural(key: str) -> tuple[Any, ...]:
    head, _, num = key.rpartition(" ")
    return (head, int(num, 0)) if num.lstrip("-").isdigit() or num.startswith("0x") else (key, 0)


# ------------------------------------------------------------- reading states
def thread_state(
    hstate: dict[str, Any], vcore: dict[str, Any] | None, vcpu_ids: dict[int, int]
) -> tuple[str, str]:
    """(state, label) of one hardware thread from its PACA's kvm_hstate and its vcore.

    ``vcpu_ids`` maps a ``struct kvm_vcpu`` address to its vcpu_id.  Where a
    state is set: in_guest = GUEST_HV before the hrfid into the guest and
    HOST_HV on the way in and out (book3s_hv_rmhandlers.S); napping =
    NAPPING_CEDE/NOVCPU/UNSPLIT before kvm_do_nap; the exit half of
    entry_exit_map (bits 8..15, one per ptid) once a thread starts exiting
    (kvmhv_commence_exit).
    """
    in_guest = as_int(hstate.get("in_guest"))
    napping = as_int(hstate.get("napping"))
    hw = as_int(hstate.get("hwthread_state"))
    vcpu = as_int(hstate.get("kvm_vcpu"))
    if napping:
        return "napping", f"napping ({NAPPING.get(napping, napping)})"
    if in_guest in (1, 2, 3, 5):
        who = f"vcpu {vcpu_ids[vcpu]}" if vcpu in vcpu_ids else (f"vcpu {vcpu:#x}" if vcpu else "no vcpu")
        return "guest", f"in guest ({who})"
    if in_guest == 4:
        ptid = as_int(hstate.get("ptid"))
        exit_map = as_int(vcore.get("entry_exit_map")) >> 8 if vcore else 0
        return ("exiting", "exiting") if exit_map & (1 << ptid) else ("entering", "entering")
    if hw == HWTHREAD_IN_IDLE:
        return "idle", "idle"
    if as_int(hstate.get("kvm_vcore")):
        return "entering", "entering (vcore assigned)"
    if hw == HWTHREAD_IN_KVM or as_int(hstate.get("hwthread_req")):
        return "grabbed", "grabbed"
    return "host", "host"


def vcore_state(vcore: dict[str, Any], variant: str | None) -> str:
    """The lane state of a vcore: "vcore " and the kernel's VCORE_* name of its ``vcore_state``
    in ``variant``'s numbering (kvm_host.h: seed and prepatch 0-4, modern 0-6; default modern),
    e.g. "vcore PREEMPT"; "vcore" alone for a value the kernel never stores."""
    names = VCORE_STATES.get(variant or "modern", VCORE_STATES["modern"])
    state = as_int(vcore.get("vcore_state"))
    return f"vcore {names[state]}" if state in names else "vcore"


def vcore_label(vcore: dict[str, Any], variant: str | None) -> str:
    names = VCORE_STATES.get(variant or "modern", VCORE_STATES["modern"])
    state = as_int(vcore.get("vcore_state"))
    eem = as_int(vcore.get("entry_exit_map"))
    entered = [i for i in range(8) if eem >> i & 1]
    exiting = [i for i in range(8) if eem >> (8 + i) & 1]
    return (
        f"{names.get(state, state)} in_guest {as_int(vcore.get('in_guest'))} "
        f"entered {{{','.join(map(str, entered))}}} exiting {{{','.join(map(str, exiting))}}}"
    )


# --------------------------------------------------------------------- loading
def read_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; TimelineError names the bad line
    (:func:`pyvcore.jsonl.objects`)."""
    return objects(path, TimelineError)


def load(path: str | Path, variant: str | None = None, *, by_stop: bool = False) -> Timeline:
    """Read a sampled trace or a continuous event log into a Timeline (TimelineError if unusable).

    ``by_stop``: lay a sampled trace out one stop per step even when its stops carry a timebase
    (stops cluster where the watch was busy; this spreads them evenly, order kept)."""
    path = Path(path)
    if str(path) == "-":  # read twice (is it an event log? then the stops): spooled first
        import tempfile

        from pyvcore.jsonl import spool_stdin

        with tempfile.NamedTemporaryFile(prefix="pyvcore-stdin-", suffix=".jsonl") as spool:
            spool_stdin(spool)
            return _load(Path(spool.name), "<stdin>", "stdin", variant, by_stop)
    return _load(path, str(path), path.name, variant, by_stop)


def _load(path: Path, name: str, title: str, variant: str | None, by_stop: bool) -> Timeline:
    from pyvcore.checker import _is_event_log

    if _is_event_log(str(path)):  # as `pyvcore check` tells the two kinds apart: the header line
        lines = objects(path, TimelineError, name)
        header = next(lines)
        from pyvcore.timeline_events import from_events

        return from_events(title, header[1], lines, source=name, header_line=header[0])
    # A snapshot trace: its stops as `pyvcore check` reads them (pyvcore.jsonl.stops). The
    # first line check refuses refuses the whole timeline, with check's FILE:LINE:COLUMN line:
    # a picture with stops left out would show a gap where a stop was recorded, and exit as
    # if the trace were whole.
    records = stops(path, TimelineError, variant, name=name)
    return from_snapshots(title, records, variant, by_stop=by_stop, source=name)


def from_snapshots(
    title: str,
    records: Iterable[tuple[int, dict[str, Any]]],
    variant: str | None = None,
    *,
    by_stop: bool = False,
    source: str | None = None,
) -> Timeline:
    """A sampled trace: each stop a point on every lane, violations from the offline checker.
    ``source``: the file a bad line is placed in (``FILE:LINE:COLUMN``; default the title)."""
    from pyvcore.checker import Checker, SnapshotError

    source = source or title
    items = list(records)
    if not items:
        raise TimelineError(f"{source}: empty trace: nothing to draw")
    # A stop's tb is put on the host's timebase by the checker (CheckOutcome.host_tb: a stop
    # inside the guest reads the guest's timebase, vc->tb_offset ahead or behind); the axis is
    # timebase time only when every stop's host timebase is known.
    checker = Checker(variant)
    outcomes: dict[int, Any] = {}
    for number, rec in items:
        if not isinstance(rec.get("threads"), list) or not rec["threads"]:
            # A stop pv-watch could not read ({"stop", "error"}, in a trace file or `pyvcore
            # diff`'s records): nothing seen, nothing drawn, and counted not judged below, never
            # clean; the stop after it is not compared with the one before, as check does.
            checker.reset()
            continue
        try:
            outcomes[number] = checker.check_outcome(rec, line=number)
        except SnapshotError as exc:  # TITLE:LINE:COLUMN, as every reader places a line
            where = at(source, number, exc.column)
            raise TimelineError(f"{where}: not a usable snapshot ({exc.detail})") from None
        except TypeError as exc:
            raise TimelineError(f"{at(source, number)}: not a usable snapshot ({exc})") from None
    unknown = next(((n, o.host_tb_unknown) for n, o in outcomes.items() if o.host_tb_unknown), None)
    by_tb = not by_stop and unknown is None and all("tb" in rec for _n, rec in items)
    freq = next((as_int(rec["tb_freq"]) for _n, rec in items if rec.get("tb_freq")), 512_000_000)
    tl = Timeline("sampled", "us" if by_tb else "stop", title)
    if unknown is not None and not by_stop:
        tl.axis_note = f"drawn by stop number: line {unknown[0]}'s host timebase is not known ({unknown[1]})"
    for number, rec in items:  # by stop: stop N at N, the trace's line (from 1, as check and show)
        if number not in outcomes:
            error = str(rec.get("error") or "no threads").splitlines()[0][:120]
            stop = str(rec.get("stop") or f"line {number}")
            tl.not_judged.append((float(number), stop, number, f"the stop could not be read ({error})"))
            continue
        outcome = outcomes[number]
        ts = outcome.host_tb * 1e6 / freq if by_tb else float(number)
        stop = str(rec.get("stop") or f"line {number}")
        tl.stops += 1
        try:
            _draw_snapshot(tl, rec, ts, stop, variant or rec.get("variant"))
        except (TimelineError, KeyError, TypeError) as exc:
            raise TimelineError(f"{at(source, number)}: not a usable snapshot ({exc})") from None
        for v in outcome.violations:
            tl.violations.append(Violation(ts, v.invariant, v.message, stop))
        if outcome.verdict == "not judged":
            why = outcome.not_judged[0][1] if outcome.not_judged else "no vcore found"
            tl.not_judged.append((ts, stop, number, why))
    if not tl.stops:
        raise TimelineError(f"{title}: no stop in this trace has a snapshot, nothing to draw")
    return tl


def _draw_snapshot(tl: Timeline, rec: dict[str, Any], ts: float, stop: str, variant: str | None) -> None:
    vcores = {as_int(v["addr"]): v for v in rec.get("vcores") or []}
    vcpu_ids = {as_int(v["addr"]): as_int(v["vcpu_id"]) for v in rec.get("vcpus") or []}
    for thread in rec["threads"]:
        hs = thread["kvm_hstate"]
        cpu = as_int(thread.get("cpu"))
        lane = tl.lane(f"cpu {cpu}", f"cpu {cpu} (ptid {as_int(hs.get('ptid'))})", "threads")
        state, label = thread_state(hs, vcores.get(as_int(hs.get("kvm_vcore"))), vcpu_ids)
        tl.marks.append(Mark(lane, ts, state, label, {"stop": stop, **_hex_args(hs)}))
    for addr, vc in vcores.items():
        lane = tl.lane(f"vcore {addr:#x}", f"vcore {addr:#x}", "vcores")
        tl.marks.append(
            Mark(
                lane, ts, vcore_state(vc, variant), vcore_label(vc, variant), {"stop": stop, **_hex_args(vc)}
            )
        )


def _hex_args(obj: dict[str, Any]) -> dict[str, Any]:
    """The scalar fields of a record, addresses as hex strings (trace-event args must stay exact)."""
    from pyvcore.diff import hexify

    return {k: hexify(v, k) for k, v in obj.items() if isinstance(v, (int, str)) and not isinstance(v, bool)}


# ------------------------------------------------------------------ the command
def write(tl: Timeline, out: Path, command: str | None = None) -> Path:
    """Write ``tl`` in the format named by ``out``'s suffix (.json, .html, .png); a .png
    keeps ``command`` (the options it was drawn with) in its text chunk."""
    suffix = out.suffix.lower()
    if suffix == ".json":
        from pyvcore.timeline_render import chrome_trace

        out.write_text(json.dumps(chrome_trace(tl), separators=(",", ":")))
    elif suffix in (".html", ".htm"):
        from pyvcore.timeline_html import html_page

        out.write_text(html_page(tl), encoding="utf-8")
    elif suffix == ".png":
        from pyvcore.timeline_render import png_picture

        png_picture(tl, out, command)
    else:
        raise TimelineError(f"{out}: unknown output format {suffix or '(none)'}; use .html, .json or .png")
    return out


def _command(args: argparse.Namespace) -> str:
    """``pyvcore timeline`` with the options that shape the picture (not the paths)."""
    words = [
        "pyvcore",
        "timeline",
        *(["--by-stop"] if args.by_stop else []),
        *(["--whole"] if args.whole else []),
    ]
    words += [
        *(["--title", args.title] if args.title else []),
        *(["--variant", args.variant] if args.variant else []),
    ]
    return shlex.join(words)


def _run(args: argparse.Namespace) -> int:
    stem = "stdin" if args.trace == "-" else Path(args.trace).stem
    out = Path(args.output) if args.output else Path(stem + ".html")
    if not args.output:  # the default: checked as -o is, before the trace is read
        try:
            cliargs.output_file(str(out))
        except argparse.ArgumentTypeError as exc:
            raise PyvcoreError(str(exc)) from None
    try:
        tl = load(args.trace, args.variant, by_stop=args.by_stop)
        tl.title = args.title or tl.title
        tl.focus = not args.whole
        write(tl, out, _command(args))
    except TimelineError as exc:
        print(f"pyvcore timeline: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"pyvcore timeline: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if tl.axis_note:
        print(f"pyvcore timeline: {tl.axis_note}", file=sys.stderr)
    lanes = sum(1 for lane in tl.lanes if lane.group == "threads")
    print(
        f"{out}: {tl.source} timeline, {lanes:,} thread lanes, {tl.stops or len(tl.marks):,} "
        f"{'stops' if tl.source == 'sampled' else 'state changes'}, {len(tl.flows):,} arrows, "
        f"{tl.violations_text()}{', ' + tl.not_judged_text() if tl.not_judged else ''}; "
        f"{out.stat().st_size:,} bytes"
    )
    if args.open:
        import webbrowser

        webbrowser.open(out.resolve().as_uri())
    # pyvcore check's codes (TraceReport.exit_code), as `pyvcore show`: a stop not judged is never clean
    return 1 if tl.violations else 2 if tl.not_judged else 0


OUTPUT_FORMATS = (".html", ".htm", ".json", ".png")


def _output(text: str) -> str:
    """-o: a writable file whose suffix names a format :func:`write` knows."""
    suffix = Path(text).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise argparse.ArgumentTypeError(
            f"{text}: unknown output format {suffix or '(none)'}; use .html, .json or .png"
        )
    return cliargs.output_file(text)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "timeline",
        help="draw a trace as lanes: .html (zoomable page), .json (Perfetto) or .png",
        description=(
            "Draw a sampled trace (pv-watch / pyvcore diff JSONL) or a continuous event log "
            "(pyvcore trace) as one lane per hardware thread, one per vcore, doorbell and exit-IPI "
            "arrows and violation marks.  A snapshot trace is read as pyvcore check reads it: a line check "
            "refuses refuses the timeline.  Exit 0 drawn with no violation, 1 drawn with violations, "
            "2 unusable trace or a stop not judged (as pyvcore check)."
        ),
    )
    p.add_argument(
        "trace", type=cliargs.file_of(cliargs.TRACE_FILE), help="JSONL trace or event log ('-' reads stdin)"
    )
    p.add_argument(
        "-o",
        "--output",
        type=_output,
        help="OUT.html, OUT.json (Perfetto) or OUT.png (default: the trace's file name with .html, "
        "in the current directory: a/b/run.jsonl -> ./run.html; stdin -> ./stdin.html)",
    )
    p.add_argument("--variant", choices=VARIANTS, help="model variant for the checks")
    p.add_argument(
        "--by-stop", action="store_true", help="a sampled trace one stop per step, even when it has timebases"
    )
    p.add_argument("--title", help="title of the picture (default: the trace's file name)")
    p.add_argument(
        "--whole",
        action="store_true",
        help="open on (.html) or draw (.png) the whole trace, boot included, not KVM's activity only",
    )
    p.add_argument("--open", action="store_true", help="open the result in the browser")
    p.set_defaults(func=_run)
