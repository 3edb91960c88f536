"""`pyvcore show EVENTS.jsonl [--seq N | --violation K]`: pv-check's tables of the state a
continuous trace's shadow held at one store of its event log (``pyvcore trace --out``).

The log is replayed from its header through the same shadow and checks as ``pyvcore check``
(``pyvcore._core.replay_events_at``), up to the point asked for: after the store ``seq`` N,
or after the store that made the K-th violation; neither, the log's last store.  The tables
are those of a recorded stop (``pyvcore show``): the PACAs, the vcores with their vcpus, kernel
vs model per thread with the snapshot invariants judged on that state; then the shadow's own
violations at that point (step and liveness invariants included), with the events that led
to each.

Exit status: 0 no violation at that point, 1 violations, 2 unusable input (unreadable log, a
bad line, a seq past the log's end, fewer violations than asked for).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pyvcore.errors import at as place
from pyvcore.errors import cannot_read
from pyvcore.render import colour_for, wrap
from pyvcore.stopview import check_text, judge, threads_table, vcores_text


class EventShowError(Exception):
    """Unusable input: one line for the user, exit 2."""


def is_event_log(path: str) -> bool:
    """Whether the file ``path`` starts with an event-log header ("-", stdin: never asked)."""
    from pyvcore._core import is_event_log as header

    if path == "-":
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return header(fh.readline(1 << 16))
    except OSError:
        return False  # the snapshot reader names the error


def point(path: str, seq: int | None, violation: int | None) -> Any:
    """The replay of ``path`` up to the point (:func:`pyvcore._core.replay_events_at`);
    EventShowError for an unreadable log, a bad line, or a point the log never reaches."""
    from pyvcore._core import EventLogError, replay_events_at

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise EventShowError(cannot_read(path, exc)) from None
    except UnicodeDecodeError as exc:
        raise EventShowError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        at = replay_events_at(text, seq=seq, violation=violation)
    except EventLogError as exc:  # PATH:LINE:COLUMN: why, as every reader places a line
        raise EventShowError(f"{place(path, exc.line, exc.column)}: {exc.reason}") from None
    if at.reached and (at.seq is not None or seq is not None):
        return at
    if at.seq is None and seq is None and violation is None:
        raise EventShowError(f"{path}: the event log has no store to show")
    last = "no store at all" if at.seq is None else f"its last store is seq {at.seq}"
    if seq is not None:
        raise EventShowError(f"{path}: seq {seq} is past the end of the log ({last})")
    found = at.total_violations
    raise EventShowError(
        f"{path}: there is no violation {violation}: the log has {found} violation{'s' * (found != 1)}"
    )


def violation_text(v: dict[str, Any], width: int | None, events: bool) -> str:
    """One shadow violation: where (seq, tb, cpu, pc, field), what, and the events before it."""
    head = (
        f"seq {v.get('seq')} tb {v.get('tb')} cpu {v.get('cpu')} pc {v.get('pc')} [{v.get('field')}]: "
        f"invariant {v.get('invariant')}: {v.get('message')}"
    )
    lines = [wrap(head, width, indent="    ")]
    if events:
        lines.append("  the events up to it (seq, tb, cpu, pc, field: old -> new):")
        for e in v.get("events", []):
            old = "(new)" if e.get("old") is None else e.get("old")
            text = f"    #{e.get('seq')} tb {e.get('tb')} cpu {e.get('cpu')} {e.get('pc')} {e.get('field')}: {old} -> {e.get('new')}"
            lines.append(wrap(text, width, indent="    "))
    return "\n".join(lines)


def render(path: str, at: Any, args: argparse.Namespace, explain: Any) -> tuple[str, int]:
    """Everything ``show`` prints for one point of an event log, and its violations' count."""
    snap = dict(at.snapshot)
    where = "before the first store" if at.seq is None else f"seq {at.seq}"
    snap["stop"] = where
    if at.seq is not None:
        snap["tb"] = at.tb
    colour = colour_for(sys.stdout) if args.colour == "auto" else args.colour == "always"
    j = judge(_checker(args.variant), snap)
    snap, why = with_registers(snap, at.registers)
    if why:
        j.not_judged = [(n, why if r == NO_PARTITION_READ else r) for n, r in j.not_judged]
    if args.violation is not None:
        here = [at.violations[args.violation - 1]] if args.violation <= len(at.violations) else []
        what = f"violation {args.violation} of the log"
    else:
        here = [v for v in at.violations if at.seq is not None and v.get("seq") == at.seq]
        what = "made by this store"
    head = (
        f"== {where}" + (f"  tb {at.tb}" if at.seq is not None else "") + f"  ({at.events:,} events applied)"
    )
    parts = [
        wrap(f"event log {path}", args.width),
        wrap(head, args.width),
        threads_table(snap, width=args.width),
        vcores_text(snap, width=args.width),
        check_text(snap, j, colour=colour, width=args.width, explain=explain, legend=True),
        wrap(
            f"the shadow (every store, step and liveness invariants too): {at.total_violations:,} "
            f"violation{'s' * (at.total_violations != 1)} up to here; {what}:",
            args.width,
        ),
    ]
    if here:
        parts += [violation_text(v, args.width, events=True) for v in here]
    elif args.violation is not None:
        parts.append(
            f"  (violation {args.violation} is past the first {len(at.violations)} kept in full: the tables are "
            "the state after the store that made it)"
        )
    else:
        parts.append("  none")
    return "\n".join(parts), len(j.violations) + len(here)


# The checker's reason for invariant 8 on a snapshot without LPIDR/SDR1.
NO_PARTITION_READ = "no LPIDR/SDR1 read"


def with_registers(snap: dict[str, Any], registers: list[Any]) -> tuple[dict[str, Any], str | None]:
    """The snapshot to show, with the LPIDR/SDR1 the log holds where the shadow's snapshot
    leaves them out, and why they are not judged there (None: nothing filled in).

    The shadow judges them only while the core is in KVM (a PACA's kvm_vcore is set) and
    only values a thread read after its siblings' last ``mtspr`` (one register per core on
    POWER8): at bring-up each thread writes its own copy (hash__early_init_mmu_secondary,
    arch/powerpc/mm/book3s64/hash_utils.c; __setup_cpu_power8, cpu_setup_power.c), so in
    the host a difference is harmless to the kernel."""
    threads = [dict(t) for t in snap.get("threads") or []]
    if not any(v is not None for regs in registers for v in regs):
        return snap, None
    if any((t.get("kvm_hstate") or {}).get("kvm_vcore") for t in threads):
        # In KVM: the values not in the snapshot are stale (a sibling's mtspr since)
        return snap, "no LPIDR/SDR1 re-read since a sibling's mtspr (one register per core)"
    for t, regs in zip(threads, registers):
        for name, value in zip(("lpidr", "sdr1"), regs):
            if t.get(name) is None:
                t[name] = value
    why = "LPIDR/SDR1 judged inside KVM only (in the host each thread sets its own at bring-up): shown as last seen"
    return {**snap, "threads": threads}, why


def _checker(variant: str | None) -> Any:
    from pyvcore.checker import Checker

    return Checker(variant)


def run(args: argparse.Namespace, explain: Any) -> int:
    """``pyvcore show`` on an event log (see the module doc)."""
    if args.line is not None or args.stop is not None:
        print(
            f"pyvcore show: {args.trace} is an event log (pyvcore trace): it has no lines or stops of "
            "snapshots; give --seq N (the state after store N) or --violation K",
            file=sys.stderr,
        )
        return 2
    try:
        at = point(args.trace, args.seq, args.violation)
        text, violations = render(args.trace, at, args, explain)
    except EventShowError as exc:
        print(f"pyvcore show: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 1 if violations else 0
