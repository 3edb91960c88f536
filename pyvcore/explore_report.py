"""The text report of ``pyvcore explore`` (:func:`format_result`).

The explorer states its bounds as one sentence of clauses (``ExploreResult.bounds``,
from ``ExploreOptions::bounds`` in rust/core/src/explore/mod.rs).  The report prints
the numbers a user sets (cedes, prods, doorbells) and the bound or reduction
options given on one line; ``--verbose`` lists every clause, one per line;
``--json`` carries the whole sentence.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyvcore.checker import field_value

if TYPE_CHECKING:
    from pyvcore.explorer import ExploreResult

WIDTH = 100
"""Columns the report's prose lines are wrapped to."""

INV_DOORBELL = 29
"""Doorbell delivery, the invariant the search leaves out per state for prepatch by
default (``INV_DOORBELL`` in rust/core/src/model/mod.rs; ``ExploreResult.ignored``)."""

_CEDES = re.compile(r"at most (\d+) cede\(s\) per vcpu(?: and (\d+) in total)?")
_PRODS_DOORBELLS = re.compile(r"at most (\d+) H_PROD\(s\) and (\d+) msgsndp doorbell\(s\)")


def clauses(bounds: str) -> list[str]:
    """The bounds sentence cut at its top-level "; " (not inside parentheses)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(bounds):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == ";" and depth == 0 and bounds[i + 1 : i + 2] == " ":
            out.append(bounds[start:i].strip())
            start = i + 2
    out.append(bounds[start:].strip())
    return [c for c in out if c]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def budget(bounds: str) -> str:
    """The numbers of one run in a few words ("1 cede per vcpu and 2 in total, 1 H_PROD,
    1 doorbell"), or "" when the sentence does not state them in the expected form."""
    cedes, rest = _CEDES.search(bounds), _PRODS_DOORBELLS.search(bounds)
    if not cedes or not rest:
        return ""
    text = _plural(int(cedes.group(1)), "cede") + " per vcpu"
    if cedes.group(2) is not None:
        text += f" and {cedes.group(2)} in total"
    return f"{text}, {_plural(int(rest.group(1)), 'H_PROD')}, {_plural(int(rest.group(2)), 'doorbell')}"


def bounds_lines(r: ExploreResult, changed: Sequence[str] = (), verbose: bool = False) -> list[str]:
    """The ``bounds:`` line (every clause, one per line, when ``verbose``) and, with a
    fault injected, the ``fault:`` line. ``changed``: the bound and reduction options
    given, as typed (``--max-cedes 3``, ``--no-symmetry``)."""
    parts = clauses(r.bounds)
    faults = [c for c in parts if c.startswith("FAULT ")]
    lines = []
    if verbose:
        lines.append("bounds:")
        for clause in (c for c in parts if c not in faults):
            lines.append(textwrap.fill(clause, WIDTH, initial_indent="  ", subsequent_indent="    "))
    else:
        head = budget(r.bounds) or "one run of the vcore"
        given = f"; given: {', '.join(changed)} (--verbose" if changed else " (defaults; --verbose"
        lines.append(textwrap.fill(f"bounds: {head}{given}: every bound)", WIDTH, subsequent_indent="  "))
    for clause in faults:
        text = "fault: " + clause.removeprefix("FAULT ")
        lines.append(textwrap.fill(text, WIDTH, subsequent_indent="  "))
    return lines


def title(number: int) -> str:
    """An invariant's short name ("doorbell delivery")."""
    from pyvcore.checker import invariants

    return next((i.title for i in invariants() if i.number == number), "?")


def left_out(r: ExploreResult) -> list[str]:
    """One line per invariant whose per-state check the search left out (``ignored``),
    saying what still judges it."""
    lines = []
    for n in r.ignored:
        if r.variant == "prepatch" and n == INV_DOORBELL and r.ignored == [INV_DOORBELL]:
            # The default for prepatch: before e0b7ec058c0e, kvmppc_run_core hands out
            # ptids in runnable-list order, so the placement part of invariant 29 fails
            # as soon as a vcpu starts off its own thread, before any doorbell exists.
            text = (
                f"invariant {n} ({title(n)}) is judged on the doorbells the run sends and takes, not per "
                'state: prepatch places vcpus off their own thread, which the per-state check ("a doorbell '
                'to virtual thread N would reach vcpu M") reports before any doorbell is sent'
            )
        else:
            text = (
                f"invariant {n} ({title(n)}) is not checked per state (ignore); only the explorer's "
                "checks of the run's events can report it"
            )
        lines.append(textwrap.fill(text, WIDTH, subsequent_indent="  "))
    return lines


def memory_text(r: ExploreResult) -> str:
    """What the search's memory was: its own structures (an estimate) and, beside it, the
    process's real peak RSS when known."""
    text = f"search structures ~{r.peak_memory / 2**20:,.0f} MiB (estimate)"
    if r.peak_rss is None:
        return text + ", process RSS not included"
    return text + f", process peak RSS {r.peak_rss / 2**20:,.0f} MiB"


def format_result(r: ExploreResult, *, changed: Sequence[str] = (), verbose: bool = False) -> str:
    """The human-readable report (``changed``, ``verbose``: as for :func:`bounds_lines`)."""
    rate = f"{r.states_per_second:,.0f} states/s" if r.seconds > 0 else "-"
    lines = [
        f"pyvcore explore: variant {r.variant}, {r.threads} thread(s) per core, vcpus "
        + ",".join(str(v) for v in r.vcpus),
        *bounds_lines(r, changed, verbose),
        *left_out(r),
        f"{r.states:,} states, {r.transitions:,} transitions, {r.seconds:.3f} s ({rate}), "
        f"depth {r.depth}, {r.finished_runs:,} finished runs, {memory_text(r)}",
    ]
    if r.violation is None:
        if r.complete:
            lines.append("all invariants hold")
        else:
            lines.append(f"INCOMPLETE: {r.incomplete} -- no verdict (no violation in the part explored)")
        return "\n".join(lines)
    trace = r.counterexample or []
    # The partial-order reduction takes a doorbell's sending and taking together with the next
    # step of its threads: a chain of events is one breadth-first step, so the path it finds
    # can be longer in events than the shortest (docs/explorer.md, "Reductions").
    length = (
        f"{len(trace)} events; the partial-order reduction may find a longer one than the shortest"
        if r.partial_order
        else f"{len(trace)} events, shortest"
    )
    lines.append(f"counterexample ({length}; vcpus {','.join(map(str, r.vcpus))} created first):")
    for i, event in enumerate(trace, 1):
        lines.append(f"  {i:3d}. {event}")
    v = r.violation
    how = ", judged on the run's events" if v.invariant in r.ignored else ""
    lines.append(
        f"violated after event {len(trace)}: invariant {v.invariant} ({title(v.invariant)}){how}: {v.message}"
    )
    for key, value in (v.fields or {}).items():
        lines.append(f"    {key} = {field_value(key, value, v.fields)}")
    if r.fault and r.without_fault:
        number, after = r.without_fault
        lines.append(
            f"note: this counterexample does not need fault {r.fault}: without it the same events "
            f"break invariant {number} ({title(number)}) after event {after}, so {r.variant}'s own bug "
            f"is found first; the fault's counterexample is longer (try it on another variant)"
        )
    return "\n".join(lines)


__all__ = ["INV_DOORBELL", "WIDTH", "bounds_lines", "budget", "clauses", "format_result", "left_out", "title"]
