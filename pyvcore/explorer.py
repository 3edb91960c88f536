"""Exhaustive exploration of one vcore run, checked: the Python API
(:func:`explore`, :class:`ExploreResult`) and ``pyvcore explore``::

    pyvcore explore --variant modern --threads 4
    pyvcore explore --variant seed --threads 4 --fault doorbell-lost-on-wake
    pyvcore explore --variant prepatch --threads 4 --vcpus 1,2 --json

Exit status: 0 every invariant holds over the whole bounded space, 1 a
counterexample was found, 2 bad input or an incomplete search (a budget ran
out: no verdict), 130 interrupted.  The exploration runs in Rust
(``pyvcore._core.explore``).
"""

from __future__ import annotations

import argparse
import json
import operator
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from pyvcore import _core, cliargs
from pyvcore.checker import Violation
from pyvcore.explore_report import format_result
from pyvcore.model import (
    FAULT_INFO,
    FAULTS,
    MAX_VCPU_ID,
    THREAD_COUNTS,
    VARIANTS,
    ModelError,
    Vcore,
)


@dataclass(frozen=True)
class ExploreResult:
    """The outcome of :func:`explore`."""

    variant: str
    threads: int
    vcpus: list[int]
    states: int
    transitions: int
    seconds: float
    counterexample: Optional[list[str]]
    """The event trace to the violation (from "vcpus created"), or None: a shortest one,
    but with :attr:`partial_order` the reduction may find a longer one."""
    violation: Optional[Violation]
    incomplete: Optional[str]
    """Why the search stopped before seeing every state ("the state budget ran
    out", "the memory budget ran out", "interrupted"), or None."""
    finished_runs: int
    depth: int
    bounds: str
    ignored: list[int]
    peak_memory: int
    """The largest estimated size of the search's own structures (the seen-state set and
    the frontier), in bytes: an estimate, not the process's memory (:attr:`peak_rss`)."""
    fault: Optional[str] = None
    without_fault: Optional[tuple[int, int]] = None
    """With a ``fault`` and a counterexample: (invariant, event number from 1) that the
    same events break with the fault left out, when they do -- the counterexample is then
    the variant's own bug (prepatch's doorbell misdelivery is shorter than most faults),
    not the fault's; None otherwise."""
    peak_rss: Optional[int] = None
    """The process's peak resident set size so far, in bytes (``getrusage(2)``'s
    ``ru_maxrss``: the interpreter, the extension and every earlier search included), or
    None where the platform has no ``getrusage``."""
    partial_order: bool = False
    """Found with the partial-order reduction (``partial_order=True``): its counterexample
    may be longer than the shortest."""

    @property
    def ok(self) -> bool:
        """No violation found (a proof only when :attr:`complete`)."""
        return self.violation is None

    @property
    def complete(self) -> bool:
        """Every reachable state within the bounds was seen (or a violation found)."""
        return self.incomplete is None

    @property
    def violated(self) -> Optional[str]:
        """``"invariant <n>: <message>"`` of the violation, or None."""
        v = self.violation
        return None if v is None else f"invariant {v.invariant}: {v.message}"

    @property
    def verdict(self) -> str:
        """``"violation"`` (a counterexample was found), ``"clean"`` (every invariant holds
        over the whole bounded space) or ``"incomplete"`` (a budget ran out: no verdict)."""
        if self.violation is not None:
            return "violation"
        return "clean" if self.complete else "incomplete"

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """The ``pyvcore explore --json`` object."""
        return {
            "verdict": self.verdict,
            "states": self.states,
            "transitions": self.transitions,
            "seconds": self.seconds,
            "counterexample": self.counterexample,
            "violated": self.violated,
            "violation": self.violation.to_dict() if self.violation else None,
            "variant": self.variant,
            "threads": self.threads,
            "vcpus": self.vcpus,
            "complete": self.complete,
            "incomplete": self.incomplete,
            "finished_runs": self.finished_runs,
            "depth": self.depth,
            "bounds": self.bounds,
            "ignored": self.ignored,
            "peak_memory": self.peak_memory,
            "peak_rss": self.peak_rss,
            "fault": self.fault,
            "without_fault": list(self.without_fault) if self.without_fault else None,
            "partial_order": self.partial_order,
        }

    def replay(self) -> Vcore:
        """A :class:`Vcore` taken through the counterexample (or fresh if none).
        Raises ValueError for a result found with a ``fault``: the model keeps the
        kernel's rules and cannot replay the fault's states."""
        self._refuse_fault()
        vc = Vcore(self.variant, self.threads, self.vcpus)
        vc.replay(self.counterexample or [])
        return vc

    def _refuse_fault(self) -> None:
        if self.fault:
            raise ValueError(
                f"a counterexample found with fault {self.fault!r} cannot be replayed: the model "
                "(Vcore, its snapshots) keeps the kernel's rules, not the fault's"
            )

    def trace_lines(self) -> list[str]:
        """The counterexample as a snapshot trace: one JSON line per state,
        from "vcpus created" to the violation, each with its "stop" label and
        the event that led to it -- what ``pyvcore check`` and gdb users read.
        Raises ValueError for a result found with a ``fault``: the snapshot
        model keeps the kernel's rules and cannot replay the fault's states."""
        self._refuse_fault()
        vc = Vcore(self.variant, self.threads, self.vcpus)
        lines = [vc.snapshot_json()]
        for event in self.counterexample or []:
            vc.apply(event)
            snap = vc.snapshot()
            snap["event"] = event
            lines.append(json.dumps(snap))
        return lines


def explore(
    variant: str,
    threads: int,
    vcpus: Optional[Sequence[int]] = None,
    *,
    max_states: Optional[int] = None,
    max_memory: Optional[int] = None,
    cedes_per_vcpu: Optional[int] = None,
    max_cedes: Optional[int] = None,
    max_prods: Optional[int] = None,
    max_doorbells: Optional[int] = None,
    ignore: Optional[Sequence[int]] = None,
    check_invariants: bool = True,
    symmetry: bool = True,
    exit_request: bool = False,
    fault: Optional[str] = None,
    workers: Optional[int] = None,
    partial_order: bool = False,
    subsumption: bool = True,
    forget_dead: bool = True,
    reduction: bool = True,
    progress: Optional[Callable[[Any], object]] = None,
) -> ExploreResult:
    # Long only for its docstring and for passing each option through.
    """Enumerate every interleaving of one vcore run (breadth first, states
    deduplicated, expanded on ``workers`` threads) and return the shortest
    counterexample, if any (with ``partial_order``, one that may be longer).

    ``vcpus`` defaults to all of vcore 0 (ids 0..threads-1).  The bounds
    (``cedes_per_vcpu``, ``max_cedes``, ``max_prods``, ``max_doorbells``)
    default to 1, 2 (1 above four threads), 1 and 1; ``ExploreResult.bounds``
    says them in words.  ``max_states`` / ``max_memory`` (bytes, estimated)
    default to 50 million states and 4 GiB: running out ends the search
    with ``incomplete`` set, never as a proof.  ``progress(p)`` receives an
    ``ExploreProgress`` (states, transitions, depth, frontier, seconds,
    memory) every few thousand states; Ctrl-C stops the search
    (KeyboardInterrupt).  ``exit_request`` (modern) also lets VCORE_EXIT_REQ
    arrive at any time.  ``fault`` (one of :data:`FAULTS`) breaks one kernel
    rule on purpose.  ``symmetry`` (default on) merges states equal up to a
    permutation of the secondary threads with their vcpus.  ``subsumption``
    (default on) merges a state into one equal to it but for the bound
    counters (cedes, prods, doorbells used), none of them larger: that one
    can do everything it can.  ``partial_order`` (default off: it no longer
    pays once subsumption is on) explores a doorbell's sending and taking
    only just before the next step of the threads it concerns (every other
    event commutes with them; the states on the way are checked too; a
    counterexample it finds may be longer than the shortest).
    ``forget_dead`` (default on) merges states that differ only in values
    nothing reads again (a secondary's IPI flag where kvmppc_hv_entry,
    kvmhv_commence_exit or kvm_end_cede clears it before any read, an
    ``arch.trap`` other than the cede's, ``arch.prodded`` of a vcpu that
    cannot cede again).  An H_PROD is always tried only just before the
    cede it changes (``arch.prodded`` is in no snapshot and read only by
    that cede, kvm_cede_prodded; with ``subsumption`` that pair leads
    nowhere new and is not tried).  ``reduction=False`` turns every
    reduction off (the full search over the same runs, to compare with;
    ``partial_order=True`` with it is refused).  Bad parameters (a wrong type
    included: a bool where a count is meant, ``vcpus="0-3"``, an invariant
    number in ``ignore`` that does not exist) raise ValueError, an illegal
    start :class:`ModelError`.
    """
    # locals() here is exactly the parameters: checked and normalised in one place.
    options = _checked_options(locals())
    r = _core.explore(**options)
    return ExploreResult(
        variant=r.variant,
        threads=r.threads,
        vcpus=list(r.vcpus),
        states=r.states,
        transitions=r.transitions,
        seconds=r.seconds,
        counterexample=None if r.counterexample is None else [str(e) for e in r.counterexample],
        violation=r.violation,
        incomplete=r.incomplete,
        finished_runs=r.finished_runs,
        depth=r.depth,
        bounds=r.bounds,
        ignored=list(r.ignored),
        peak_memory=r.peak_memory,
        fault=r.fault,
        without_fault=r.without_fault,
        peak_rss=_peak_rss(),
        partial_order=options["partial_order"],
    )


COUNT_LIMITS: dict[str, int] = {
    "max_states": 2**62,
    "max_memory": 2**62,
    "cedes_per_vcpu": 255,
    "max_cedes": 255,
    "max_prods": 255,
    "max_doorbells": 255,
    "workers": 64,
}
""":func:`explore`'s count parameters (None: the default) and the largest value of each."""

SWITCH_PARAMETERS = (
    "check_invariants",
    "symmetry",
    "exit_request",
    "partial_order",
    "subsumption",
    "forget_dead",
    "reduction",
)
""":func:`explore`'s True/False parameters."""


def _either(words: Sequence[str]) -> str:
    """``a, b or c``."""
    return ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else "".join(words)


def _what(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def _is_integer(value: object) -> bool:
    """An int or an integer type (``__index__``), but not a bool: True is no count."""
    return not isinstance(value, bool) and hasattr(type(value), "__index__")


def _integers(name: str, value: object, noun: str, example: str) -> list[int]:
    """A list of integers from a sequence of them; a string (``"0-3"``, the command
    line's form) or a bool among them is refused."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a list of {noun} such as {example}, not {_what(value)}")
    out = []
    for item in value:
        if not _is_integer(item):
            raise ValueError(f"{name} must be a list of {noun} (integers), not one holding {_what(item)}")
        out.append(operator.index(item))
    return out


def _ranges(numbers: Sequence[int]) -> str:
    """``1-21, 23-27, 29`` for sorted distinct numbers."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _checked_options(given: dict[str, Any]) -> dict[str, Any]:
    """:func:`explore`'s parameters, each checked for its type and range (ValueError, one
    line, naming the parameter), integers made ``int`` and sequences lists: the keyword
    arguments of ``_core.explore``.  The names of a variant and a fault are checked by the
    model (its ValueError names the choices, and why a fault does not apply)."""
    options = dict(given)
    if not isinstance(options["variant"], str):
        raise ValueError(f"variant must be a string ({_either(VARIANTS)}), not {_what(options['variant'])}")
    if options["fault"] is not None and not isinstance(options["fault"], str):
        raise ValueError(
            f"fault must be None or a fault's name (pyvcore.model.FAULTS), not {_what(options['fault'])}"
        )
    counts = _either(list(map(str, THREAD_COUNTS)))
    threads = options["threads"]
    if not _is_integer(threads):
        raise ValueError(f"threads must be an integer ({counts}), not {_what(threads)}")
    options["threads"] = operator.index(threads)
    if options["threads"] not in THREAD_COUNTS:
        raise ValueError(f"threads per core must be {counts}, not {options['threads']}")
    for name, limit in COUNT_LIMITS.items():
        value = options[name]
        if value is None:
            continue
        if not _is_integer(value):
            raise ValueError(f"{name} must be an integer 0..{limit} or None, not {_what(value)}")
        options[name] = operator.index(value)
        if not 0 <= options[name] <= limit:
            raise ValueError(f"{name} must be 0..{limit}, not {options[name]}")
    for name in SWITCH_PARAMETERS:
        if not isinstance(options[name], bool):
            raise ValueError(f"{name} must be True or False, not {_what(options[name])}")
    if options["partial_order"] and not options["reduction"]:
        raise ValueError(
            "partial_order=True contradicts reduction=False (the full search, every reduction off): "
            "give one or the other"
        )
    if options["progress"] is not None and not callable(options["progress"]):
        raise ValueError(f"progress must be a callable or None, not {_what(options['progress'])}")
    if options["vcpus"] is not None:
        vcpus = _integers("vcpus", options["vcpus"], "vcpu ids", "[0, 1, 2, 3]")
        bad = [i for i in vcpus if not 0 <= i < MAX_VCPU_ID]
        if bad:
            raise ValueError(f"vcpu id {bad[0]} is out of range (ids are 0..{MAX_VCPU_ID - 1})")
        options["vcpus"] = vcpus
    if options["ignore"] is not None:
        ignore = _integers("ignore", options["ignore"], "invariant numbers", "[29]")
        known = sorted(i.number for i in _core.invariants())
        unknown = [n for n in ignore if n not in known]
        if unknown:
            raise ValueError(
                f"ignore: there is no invariant {unknown[0]} (the invariants are {_ranges(known)}; "
                "pyvcore invariants lists them)"
            )
        options["ignore"] = ignore
    return options


def _peak_rss() -> Optional[int]:
    """The process's peak RSS in bytes (``ru_maxrss`` is KiB on Linux), None without
    ``resource`` (not POSIX)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- the command line ---------------------------------------------------------


class _TtyProgress:
    """One self-overwriting status line on stderr, at most 5 times a second."""

    def __init__(self) -> None:
        self.last = 0.0
        self.shown = False

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        self.shown = True
        sys.stderr.write(
            f"\r  {p.states:,} states, depth {p.depth}, {p.seconds:.1f} s, ~{p.memory / 2**20:,.0f} MiB   "
        )
        sys.stderr.flush()

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 72 + "\r")
            sys.stderr.flush()


def _run(args: argparse.Namespace) -> int:
    if args.trace and args.fault:
        # The snapshot model (Vcore) obeys the kernel's rules: replaying a faulty
        # counterexample on it would write states without the fault, or refuse one.
        print(
            "pyvcore explore: --trace cannot be combined with --fault: the snapshot model keeps the "
            "kernel's rules, so it cannot replay the fault's states (the counterexample's events "
            "are printed without --trace)",
            file=sys.stderr,
        )
        return 2
    if args.partial_order and args.no_reduction:
        print(
            "pyvcore explore: --partial-order contradicts --no-reduction (the full search, every "
            "reduction off): give one or the other",
            file=sys.stderr,
        )
        return 2
    progress = _TtyProgress() if sys.stderr.isatty() and not args.json else None
    try:
        result = explore(
            args.variant,
            args.threads,
            args.vcpus,
            max_states=args.max_states,
            max_memory=args.max_memory,
            cedes_per_vcpu=args.cedes_per_vcpu,
            max_cedes=args.max_cedes,
            max_prods=args.max_prods,
            max_doorbells=args.max_doorbells,
            symmetry=not args.no_symmetry,
            exit_request=args.exit_request,
            fault=args.fault,
            workers=args.workers,
            partial_order=args.partial_order,
            subsumption=not args.no_subsumption,
            forget_dead=not args.keep_dead_values,
            reduction=not args.no_reduction,
            progress=progress,
        )
    except ModelError as e:
        # Only the vcpus given can make the starting events illegal: say it about --vcpus.
        given = ",".join(map(str, args.vcpus or []))
        what = f"--vcpus {given}: {e.reason}" if e.event.startswith("create_vcpu") else str(e)
        print(f"pyvcore explore: {what}", file=sys.stderr)
        return 2
    except (ValueError, OverflowError) as e:
        print(f"pyvcore explore: {e}", file=sys.stderr)
        return 2
    finally:
        if progress is not None:
            progress.done()
    if args.trace and result.counterexample:
        try:
            with open(args.trace, "w", encoding="utf-8") as f:
                f.write("\n".join(result.trace_lines()) + "\n")
        except OSError as e:
            print(f"pyvcore explore: cannot write {args.trace}: {e.strerror or e}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(format_result(result, changed=_given(args), verbose=args.verbose))
        if args.trace and not result.counterexample:
            kept = " (it already exists and was left as it was)" if Path(args.trace).exists() else ""
            print(f"no counterexample: nothing written to {args.trace}{kept}")
        elif args.trace and result.counterexample:
            events = len(result.counterexample)
            print(
                f"counterexample written to {args.trace} as a snapshot trace (pyvcore check {args.trace}): "
                f"line 1 is the state before event 1, line N+1 the state after event N "
                f"(line {events + 1}: after event {events})"
            )
    if result.violation is not None:
        return 1
    return 0 if result.complete else 2


# The search's per-run bounds (a count each) and its switches, as ``explore`` declares them
# and as the result's summary repeats those given (:func:`_given`).
BOUNDS: dict[str, str] = {
    "--cedes-per-vcpu": "cedes per vcpu per run (default 1)",
    "--max-cedes": "cedes in total per run (default 2, or 1 above 4 threads)",
    "--max-prods": "H_PRODs in total per run (default 1)",
    "--max-doorbells": "msgsndp doorbells in total per run (default 1)",
}
SWITCHES: dict[str, str] = {
    "--exit-request": "modern: also let VCORE_EXIT_REQ arrive at any time (as from another subcore)",
    "--no-symmetry": "do not merge states that differ only by a permutation of secondary threads",
    "--partial-order": "explore doorbell events only just before the next step of the threads they concern "
    "(a counterexample may then be longer than the shortest; not with --no-reduction)",
    "--no-subsumption": "do not merge states that differ only by the bound counters (cedes, prods, doorbells used)",
    "--keep-dead-values": "do not merge states that differ only in values nothing reads again "
    "(IPI flags, traps, prodded)",
    "--no-reduction": "the full search: no merging of symmetric, subsumed or dead-value states, and H_PRODs tried anywhere (to compare with)",
}


def _dest(option: str) -> str:
    return option.removeprefix("--").replace("-", "_")


def _given(args: argparse.Namespace) -> list[str]:
    """The bound and reduction options on the command line, as typed (``--max-cedes 3``)."""
    given = [f"{o} {getattr(args, _dest(o))}" for o in BOUNDS if getattr(args, _dest(o)) is not None]
    return given + [o for o in SWITCHES if getattr(args, _dest(o))]


def _fault_help() -> str:
    return "; ".join(f"{name}: {info.description}" for name, info in FAULT_INFO.items())


def register(subparsers: Any) -> None:
    # Long only because it declares every option with its help, one after the other.
    p = subparsers.add_parser(
        "explore",
        help="explore every interleaving of one vcore run and check the invariants",
        description=(
            "Enumerate every interleaving of one vcore run in the model (vcpus becoming runnable in any "
            "order, entries, cedes, prods, doorbells, exits), breadth first with state deduplication, "
            "and report either 'all invariants hold' or the shortest counterexample. "
            "Exit status: 0 all hold, 1 counterexample, 2 bad input or incomplete (a budget ran out)."
        ),
    )
    p.add_argument("--variant", required=True, choices=VARIANTS, help="kernel behaviour to model")
    p.add_argument(
        "--threads",
        required=True,
        type=int,
        choices=THREAD_COUNTS,
        metavar="N",
        help="threads per core: 1, 2, 4 or 8 (the POWER7/POWER8 SMT modes)",
    )
    p.add_argument(
        "--vcpus",
        type=cliargs.vcpu_ids(MAX_VCPU_ID, max(THREAD_COUNTS)),
        metavar="IDS",
        help=f"vcpu ids of one vcore, {cliargs.VCPU_HELP} (default: all N of vcore 0); the kernel puts id i "
        "in the vcore whose first_vcpuid is i rounded down to a multiple of N",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"verdict": "clean"|"violation"|"incomplete", "states", "transitions", "seconds", '
        '"counterexample", "violated", "complete", ...}',
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="list every bound of the search, one per line (by default: the numbers and the options given)",
    )
    p.add_argument(
        "--max-states",
        type=cliargs.count(2**62),
        metavar="K",
        help="state budget (default 50,000,000); running out ends the search incomplete (exit 2)",
    )
    p.add_argument(
        "--max-memory",
        type=cliargs.size,
        metavar="SIZE",
        help="memory budget, e.g. 2G (default 4G, estimated); running out ends the search incomplete (exit 2)",
    )
    for option, text in BOUNDS.items():
        p.add_argument(option, type=cliargs.count(255), metavar="K", help=text)
    p.add_argument(
        "--workers", type=cliargs.count(64), metavar="K", help="threads to explore on (default: every core)"
    )
    for option, text in SWITCHES.items():
        p.add_argument(option, action="store_true", help=text)
    p.add_argument(
        "--trace",
        metavar="FILE",
        type=cliargs.output_file,
        help="write the counterexample as a JSONL snapshot trace (one line per state)",
    )
    p.add_argument(
        "--fault",
        choices=FAULTS,
        metavar="NAME",
        help="reintroduce one real bug class on purpose, to see the explorer catch it: " + _fault_help(),
    )
    p.set_defaults(func=_run)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pyvcore")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["explore", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))
