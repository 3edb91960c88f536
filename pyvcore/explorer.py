"""``pyvcore explore``: every interleaving of one vcore run, checked.

    pyvcore explore --variant modern --threads 4
    pyvcore explore --variant prepatch --threads 4 --vcpus 1,2 --json

Exit status: 0 all invariants hold, 1 a counterexample was found, 2 bad input.
The exploration itself runs in Rust (:func:`pyvcore.model.explore`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

from pyvcore.model import FAULTS, ExploreResult, ModelError, explore

VARIANTS = ("seed", "modern", "prepatch")


def _vcpu_list(text: str) -> list[int]:
    """Parse "0,1,3" or "0-3" or a mix."""
    ids: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                ids.extend(range(lo, hi + 1))
            else:
                ids.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad vcpu list {text!r} (expected e.g. 0,1,3 or 0-3)") from None
    if not ids or any(i < 0 for i in ids):
        raise argparse.ArgumentTypeError(f"bad vcpu list {text!r} (expected e.g. 0,1,3 or 0-3)")
    return ids


def _threads(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 8:
        raise argparse.ArgumentTypeError(f"threads per core must be 1..8, not {text!r}")
    return n


def _count(limit: int):
    """An argparse type: a whole number 0..limit."""

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = -1
        if not 0 <= n <= limit:
            raise argparse.ArgumentTypeError(f"expected a whole number 0..{limit}, not {text!r}")
        return n

    return parse


def format_result(r: ExploreResult) -> str:
    """The human-readable report."""
    rate = f"{r.states_per_second:,.0f} states/s" if r.seconds > 0 else "-"
    lines = [
        f"pyvcore explore: variant {r.variant}, {r.threads} thread(s) per core, vcpus "
        + ",".join(str(v) for v in r.vcpus),
        f"bounds: {r.bounds}",
    ]
    if r.ignored:
        lines.append(
            f"not reported: invariant(s) {', '.join(map(str, r.ignored))} "
            "(for prepatch the checker's static doorbell check; the explorer sends the doorbells)"
        )
    lines.append(
        f"{r.states:,} states, {r.transitions:,} transitions, {r.seconds:.3f} s ({rate}), "
        f"depth {r.depth}, {r.finished_runs:,} finished runs"
        + ("" if r.complete else " -- INCOMPLETE (max-states reached)")
    )
    if r.violation is None:
        lines.append("all invariants hold" if r.complete else "no violation found in the explored part")
        return "\n".join(lines)
    trace = r.counterexample or []
    lines.append(
        f"counterexample ({len(trace)} events, shortest; vcpus {','.join(map(str, r.vcpus))} created first):"
    )
    for i, event in enumerate(trace, 1):
        lines.append(f"  {i:3d}. {event}")
    lines.append(f"violated: {r.violated}")
    for key, value in (r.violation.fields or {}).items():
        lines.append(
            f"    {key} = {value:#x}" if isinstance(value, int) and value > 0xFFFF else f"    {key} = {value}"
        )
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    try:
        result = explore(
            args.variant,
            args.threads,
            args.vcpus,
            max_states=args.max_states,
            cedes_per_vcpu=args.cedes_per_vcpu,
            max_cedes=args.max_cedes,
            max_prods=args.max_prods,
            symmetry=not args.no_symmetry,
            exit_request=args.exit_request,
            fault=args.fault,
        )
    except (ModelError, ValueError, OverflowError) as e:
        print(f"pyvcore explore: {e}", file=sys.stderr)
        return 2
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
        print(format_result(result))
        if args.trace and result.counterexample:
            print(f"counterexample written to {args.trace} as a snapshot trace (pyvcore check {args.trace})")
    return 0 if result.violation is None else 1


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "explore",
        help="explore every interleaving of one vcore run and check the invariants",
        description=(
            "Enumerate every interleaving of one vcore run in the model (vcpus becoming runnable in any "
            "order, entries, cedes, prods, doorbells, exits), breadth first with state deduplication, "
            "and report either 'all invariants hold' or the shortest counterexample. "
            "Exit status: 0 all hold, 1 counterexample, 2 bad input."
        ),
    )
    p.add_argument("--variant", required=True, choices=VARIANTS, help="kernel behaviour to model")
    p.add_argument("--threads", required=True, type=_threads, metavar="N", help="threads per core (1-8)")
    p.add_argument(
        "--vcpus",
        type=_vcpu_list,
        metavar="IDS",
        help="vcpu ids of the vcore, e.g. 1,2 or 0-3 (default: all N of vcore 0)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"states", "transitions", "seconds", "counterexample", "violated", ...}',
    )
    p.add_argument(
        "--max-states",
        type=_count(2**62),
        metavar="K",
        help="stop after K states (report is then incomplete)",
    )
    p.add_argument(
        "--cedes-per-vcpu", type=_count(255), metavar="K", help="cedes per vcpu per run (default 1)"
    )
    p.add_argument(
        "--max-cedes",
        type=_count(255),
        metavar="K",
        help="cedes in total per run (default 2, or 1 above 4 threads)",
    )
    p.add_argument("--max-prods", type=_count(255), metavar="K", help="H_PRODs in total per run (default 1)")
    p.add_argument(
        "--no-symmetry",
        action="store_true",
        help="do not merge states that differ only by a permutation of secondary threads",
    )
    p.add_argument(
        "--exit-request",
        action="store_true",
        help="modern: also let VCORE_EXIT_REQ arrive at any time (as from another subcore)",
    )
    p.add_argument(
        "--trace",
        metavar="FILE",
        help="write the counterexample as a JSONL snapshot trace (one line per state)",
    )
    p.add_argument(
        "--fault", choices=FAULTS, help="break one kernel rule on purpose, to see the explorer catch it"
    )
    p.set_defaults(func=_run)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pyvcore")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["explore", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))
