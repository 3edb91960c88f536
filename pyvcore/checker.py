"""Check observed (or modelled) vcore states against the scheduler's invariants.

A *snapshot* is one stop of a POWER8 core: every hardware thread's PACA
``kvm_hstate``, the vcores and their vcpus (the format is documented in the
module doc of ``rust/core/src/view.rs`` and the README's "Snapshot format").
:class:`Checker` evaluates the invariants on each snapshot; :func:`check_trace`
replays a JSONL trace (one snapshot per line) and ``pyvcore check TRACE.jsonl``
is its command line.

Parsing, validation and checking run in Rust (``pyvcore._core``), once; the
results are typed objects (``Violation``, ``CheckOutcome``)::

    >>> from pyvcore import Checker
    >>> checker = Checker()
    >>> for v in checker.check(snapshot):       # dict or JSON text
    ...     print(v.invariant, v.message, v.fields)
    >>> checker.check_outcome(snapshot).verdict  # "clean", "violations" or "not judged"
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from pyvcore import _core, cliargs
from pyvcore.errors import PyvcoreError, at, cannot_read
from pyvcore.render import partial

SnapshotError = _core.SnapshotError
"""Raised for a snapshot that cannot be used (a ValueError): ``.key`` is the
path of the offending key (``threads[1].kvm_hstate.ptid``, "" for the whole
snapshot), ``.line`` the trace line (or None), ``.column`` the column (or
None), ``.reason`` the bare reason."""

Violation = _core.Violation
"""One broken invariant: ``invariant`` (its number), ``message``, ``fields``
(JSON path -> observed value; 64-bit kernel values as hex strings), ``line``
and ``stop`` (which snapshot of a trace); ``to_dict()``."""

CheckOutcome = _core.CheckOutcome
"""What checking one snapshot judged: ``violations``, ``judged`` (invariant
numbers), ``not_judged`` ([(number, reason)]: the stop lacked the data),
``not_applicable`` (numbers that do not apply to the variant, e.g. 16 on modern,
which has no nap_count), ``vcore_found``, ``verdict``
("clean", "violations", "not judged")."""

InvariantInfo = _core.InvariantInfo


def invariants() -> list[InvariantInfo]:
    """Every invariant pyvcore can report: number, title, statement, window,
    source (kernel file, function, commit), meaning, needs, kind."""
    return list(_core.invariants())


INVARIANTS: dict[int, str] = {i.number: i.statement for i in _core.invariants()}
"""Invariant number -> statement, for every invariant in the table."""

VARIANTS: tuple[str, ...] = tuple(_core.variants())
"""The kernel variants a snapshot may name: seed, modern, prepatch (the model's own list)."""

Snapshot = Union[Mapping[str, Any], str, bytes]

# Fields whose integer values read best in hex (bit words, as the messages print
# them; pointers and SPRs already come as hex strings).
_HEX_FIELDS = {"entry_exit_map", "entry_exit_count", "napping_threads"}


def field_value(key: str, value: Any, fields: Mapping[str, Any] | None = None) -> str:
    """A violation field's value as reports print it: a bit word (``entry_exit_map``,
    ``napping_threads``, ...) or a value above 0xffff in hex, as the message does
    (``0x103``, not ``259``); ``previous`` (a step invariant's old value) as the field it
    is the old value of, in ``fields``; the rest as it is, control characters escaped."""
    if isinstance(value, int) and not isinstance(value, bool):
        name = key.rsplit(".", 1)[-1]
        if name == "previous":
            others = (k.rsplit(".", 1)[-1] for k in (fields or {}) if k != key)
            hexed = any(other in _HEX_FIELDS for other in others)
        else:
            hexed = name in _HEX_FIELDS
        if hexed or value > 0xFFFF:
            return f"{value:#x}"
    return escape(str(value))


def _show(key: str, value: Any, fields: Mapping[str, Any] | None = None) -> str:
    return f"{key}={field_value(key, value, fields)}"


def escape(text: str) -> str:
    """Control characters from the input shown escaped (a stop label can hold
    a newline or an ESC: it must not forge report lines or drive a terminal)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _check_variant(variant: Optional[str]) -> None:
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} (expected one of {', '.join(VARIANTS)})")


class Checker:
    """Checks snapshots one after the other.

    ``variant`` ("seed", "modern", "prepatch") overrides the snapshots' own
    "variant" key; None uses theirs.

    ``same_vm=True`` says the snapshots all belong to one VM's life: then
    :meth:`check` also judges the step from the previous snapshot (vcpu ids
    and ptids, first_vcpuid, LPID unchanged, num_threads never shrinking).
    Off by default: between breakpoint samples a VM can be destroyed and
    created again at the same addresses, which explains any such change.
    Stops that carry the same ``vcores[].seq`` are always judged as one run.
    Call :meth:`reset` to start a new sequence.
    """

    def __init__(self, variant: Optional[str] = None, *, same_vm: bool = False) -> None:
        _check_variant(variant)
        self._core = _core.CoreChecker(variant, same_vm)
        self.variant = variant
        self.same_vm = same_vm

    def check_outcome(self, snapshot: Snapshot, *, line: Optional[int] = None) -> CheckOutcome:
        """Violations of this snapshot and what was judged.

        Raises :class:`SnapshotError` if the snapshot misses a key or has a
        wrongly typed one (the previous snapshot is then kept), TypeError if
        it is neither a mapping nor JSON text.
        """
        return self._core.check_outcome(snapshot, line)

    def check(self, snapshot: Snapshot, *, line: Optional[int] = None) -> list[Violation]:
        """Violations of this snapshot (and, with ``same_vm``, of the step from
        the previous one).  Errors as :meth:`check_outcome`."""
        return list(self._core.check_outcome(snapshot, line).violations)

    def predict(self, snapshot: Snapshot) -> list[dict[str, Any]]:
        """Per thread of the core, what the model expects its PACA to hold:
        ``{"thread", "cpu", "ptid", "kvm_vcpu", "kvm_vcore", "vcpu_id"}``,
        None where any value is allowed (a stale field)."""
        return list(self._core.predict(snapshot))

    def reset(self) -> None:
        """Forget the previous snapshot."""
        self._core.reset()


@dataclass
class TraceReport:
    """The result of replaying a trace.

    ``violations`` holds the first ones in full (``total_violations`` counts
    all); ``groups`` is [(invariant, count, first violation)];
    ``not_judged`` counts stops where no vcore was found; ``unread`` counts
    stops pv-watch logged as unreadable (``{"stop": LABEL, "error": MESSAGE}``,
    ``first_unread`` = (line, label, error) of the first): nothing was judged
    there, so the trace is "not judged" at best; ``error`` is set
    (a dict with ``line``, ``column``, ``key``, ``message``, ``text``) when a
    line could not be used: the lines before it were checked.
    """

    path: Optional[str]
    snapshots: int
    violations: list[Violation]
    error: Optional[dict[str, Any]] = None
    total_violations: int = 0
    groups: list[tuple[int, int, Violation]] = field(default_factory=list)
    not_judged: int = 0
    first_not_judged: Optional[int] = None
    unread: int = 0
    first_unread: Optional[tuple[int, str, str]] = None
    verdict: str = "clean"

    @property
    def ok(self) -> bool:
        return self.verdict == "clean"

    @property
    def exit_code(self) -> int:
        """0 clean, 1 violations, 2 unusable input / empty / not judged."""
        return {"clean": 0, "violations": 1}.get(self.verdict, 2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace": self.path,
            "snapshots": self.snapshots,
            "verdict": self.verdict,
            "ok": self.ok,
            "total_violations": self.total_violations,
            "violations": [v.to_dict() for v in self.violations],
            "groups": [
                {"invariant": n, "count": c, "first_line": v.line, "first_stop": v.stop}
                for n, c, v in self.groups
            ],
            "not_judged": self.not_judged,
            "first_not_judged": self.first_not_judged,
            "unread": self.unread,
            "first_unread": (
                dict(zip(("line", "stop", "error"), self.first_unread)) if self.first_unread else None
            ),
            "judged": self.verdict in ("clean", "violations"),
            "error": self._error_dict(),
        }

    def _error_dict(self) -> Optional[dict[str, Any]]:
        """``error`` of the JSON report: line, column, key, message, detail, and ``text``, the
        line the text report prints (``PATH:N:C: ...``)."""
        if self.error is None:
            return None
        return {
            **self.error,
            "text": self.error.get("text") or self._error_line(escape(self.path or "<trace>")),
        }

    def format_text(self, *, explain: bool = True, prefix: str = "") -> str:
        """The report: each kept violation, then one line per invariant
        ("48x invariant 8, first at line 5") with its short explanation, then
        the summary.  ``prefix`` starts the unusable line's error (the command's
        name, ``"pyvcore check: "``, as every command's errors start)."""
        name = escape(self.path or "<trace>")
        lines = []
        for v in self.violations:
            where = at(name, v.line)
            if v.stop:
                where += f" [{escape(v.stop)}]"
            lines.append(f"{where}: invariant {v.invariant}: {escape(v.message)}")
            if v.fields:
                lines.append("    " + ", ".join(_show(k, val, v.fields) for k, val in v.fields.items()))
        if more := partial(len(self.violations), self.total_violations):
            lines.append(more)
        rows = {i.number: i for i in _core.invariants()}
        for number, count, first in self.groups:
            head = f"{count}x invariant {number}, first at line {first.line}"
            info = rows.get(number)
            lines.append(f"{head}: {info.title}" if info else head)
            if explain and info:
                lines.append(f"    {info.meaning}")
                lines.append(f"    source: {info.source}; more: pyvcore invariants {number}")
        if self.error is not None:
            lines.append(prefix + self._error_line(name))
        if self.not_judged:
            shown = name if self.path not in (None, "<stdin>") else "TRACE"
            lines.append(
                f"{self.not_judged} stop{'s' if self.not_judged != 1 else ''} not judged "
                f"(no vcore found, or a thread of the core or a vcpu/vcore pointed at missing; first at line "
                f"{self.first_not_judged}: `pyvcore show {shown} --line {self.first_not_judged}` says which)"
            )
        if self.first_unread is not None:
            line, stop, error = self.first_unread
            lines.append(
                f"{self.unread} stop{'s' if self.unread != 1 else ''} pv-watch could not read, not judged (first at "
                f"{at(name, line)} [{escape(stop)}]: {escape(error.splitlines()[0] if error else '')})"
            )
        lines.append(self._summary())
        return "\n".join(lines)

    def _error_line(self, name: str) -> str:
        """The unusable line, placed as every reader places a problem in a file
        (:func:`pyvcore.errors.at`): ``PATH:N:C: not JSON ...`` in the words every reader uses
        (:mod:`pyvcore.jsonl`) when it is not JSON, else the checker's own words
        (``PATH:N:C: key `K`: ...``)."""
        from pyvcore.jsonl import bad_json, cut_short

        e = self.error or {}
        message = str(e.get("message") or "")
        detail = str(e.get("detail", message))
        line, column = e.get("line"), e.get("column")
        if line is None or not message.startswith("not valid JSON: "):
            return f"{at(name, line, column if line is not None else None)}: {escape(detail)}"
        reason = message.removeprefix("not valid JSON: ")
        if reason.endswith(TRUNCATED_HINT):
            return cut_short(name, line, int(column or 0))
        return bad_json(name, line, column, escape(reason))

    def _summary(self) -> str:
        plural = "s" if self.snapshots != 1 else ""
        summary = f"{self.snapshots} snapshot{plural}, "
        summary += f"{self.total_violations} violation{'s' if self.total_violations != 1 else ''}"
        numbers = [n for n, _, _ in self.groups]
        if numbers:
            summary += (
                " (invariant" + ("s " if len(numbers) > 1 else " ") + ", ".join(map(str, numbers)) + ")"
            )
        if self.error is not None:
            summary += "; stopped at an unusable line"
        elif self.snapshots == 0 and not self.unread:
            summary += "; empty trace: nothing judged"
        elif self.unread and not self.total_violations:
            summary += "; not judged: some stops could not be read"
        elif self.not_judged and not self.total_violations:
            summary += "; not judged: no vcore, or something pointed at missing, at some stops"
        return summary


# What rust/core/src/snapshot.rs adds to a line that ends inside its object.
TRUNCATED_HINT = " (the line ends inside the object: a truncated line?)"


def _report(raw: Any, path: Optional[str]) -> TraceReport:
    error = None
    if raw.error is not None:
        line, column, key, message, detail = raw.error
        error = {"line": line, "column": column, "key": key, "message": message, "detail": detail}
    return TraceReport(
        path=path,
        snapshots=raw.snapshots,
        violations=list(raw.violations),
        error=error,
        total_violations=raw.total_violations,
        groups=[tuple(g) for g in raw.groups],
        not_judged=raw.not_judged,
        first_not_judged=raw.first_not_judged,
        unread=raw.unread,
        first_unread=raw.first_unread,
        verdict=raw.verdict,
    )


DEFAULT_MAX_LINE_BYTES = 64 << 20
DEFAULT_KEEP = 1000
"""Violations of a snapshot trace the text report prints (the rest are counted per invariant)."""


def check_trace(
    path: Union[str, os.PathLike[str]],
    variant: Optional[str] = None,
    *,
    same_vm: bool = False,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    keep: int = DEFAULT_KEEP,
) -> TraceReport:
    """Replay a JSONL trace (one snapshot per line; ``"-"`` streams stdin).

    Parsing and checking run in Rust, streamed, lines at most
    ``max_line_bytes`` long; ``keep`` violations are kept in full, the rest
    counted per invariant.  ``same_vm`` as for :class:`Checker`.  Raises
    OSError if the file cannot be opened; an unusable line is reported in
    ``TraceReport.error``.
    """
    _check_variant(variant)
    name = os.fspath(path)
    if name == "-":
        return _report(_core.check_trace_stdin(variant, same_vm, max_line_bytes, keep), "<stdin>")
    return _report(_core.check_trace_file(name, variant, same_vm, max_line_bytes, keep), str(name))


def check_trace_text(text: str, variant: Optional[str] = None, *, same_vm: bool = False) -> TraceReport:
    """Replay a JSONL trace held in a string."""
    _check_variant(variant)
    return _report(_core.check_trace_text(text, variant, same_vm), None)


# --------------------------------------------------------------------------
# pyvcore check


def _is_event_log(path: str) -> bool:
    """Whether the file starts with the event-log header line (read with a
    bound: the header is small, and a trace may have no newline at all)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return bool(_core.is_event_log(f.readline(64 << 10)))
    except OSError:
        return False


def _unusable(args: argparse.Namespace, message: str) -> int:
    """A trace that cannot be read: the report's JSON (verdict "unusable input") with
    --json, else one line; exit 2."""
    if not args.json:
        raise PyvcoreError(message)
    print(f"pyvcore check: {message}", file=sys.stderr)  # the one line, as without --json
    error = {"line": None, "column": None, "key": "", "message": message, "detail": message, "text": message}
    print(json.dumps(TraceReport(args.trace, 0, [], error, verdict="unusable input").to_dict()))
    return 2


def _directory_message(path: Path) -> str:
    """What `pyvcore check DIR` says: what it reads instead, and the trace a report
    folder of `pyvcore diff --report` holds."""
    message = (
        f"{cannot_read(escape(str(path)), errno.EISDIR)}; pyvcore check reads one file: a snapshot trace "
        "(JSONL, one snapshot per line, as pv-watch and `pyvcore diff --trace` write), "
        "a `pyvcore trace` event log, or '-' for stdin"
    )
    inside = path / "trace.jsonl"
    if inside.is_file():
        message += f" (this one holds {escape(str(inside))})"
    return message


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "vmcore", None):  # post-mortem: pyvcore.vmcore reads the dump
        from pyvcore.vmcore_cli import run as run_vmcore

        return int(run_vmcore(args))
    given = [opt for opt in ("vmlinux", "modules") if getattr(args, opt, None)]
    if given:
        raise PyvcoreError(
            f"--{given[0]} goes with --vmcore (a trace carries its snapshots; nothing else is read)"
        )
    if args.trace is None:
        raise PyvcoreError("give a TRACE.jsonl (or --vmcore FILE --vmlinux VMLINUX)")
    if args.max_line_bytes < 1:
        raise PyvcoreError(f"--max-line-bytes must be at least 1, not {args.max_line_bytes}")
    if args.trace != "-" and Path(args.trace).is_dir():
        return _unusable(args, _directory_message(Path(args.trace)))
    if args.trace != "-" and _is_event_log(args.trace):  # a continuous-trace event log (pyvcore trace)
        from pyvcore.trace import check_event_log
        from pyvcore.variant_fit import event_log_variant

        logged = event_log_variant(args.trace)
        if args.variant is not None and logged is not None and args.variant != logged:
            return _unusable(
                args,
                f"{escape(args.trace)} is a `pyvcore trace` event log of a {logged} kernel (its header); it is "
                f"replayed as that variant, with that kernel's layout: --variant {args.variant} cannot judge it",
            )

        return check_event_log(args.trace, as_json=args.json, every=args.all)
    keep = sys.maxsize if args.all or args.json else DEFAULT_KEEP
    try:
        report = check_trace(
            args.trace, args.variant, same_vm=args.same_vm, max_line_bytes=args.max_line_bytes, keep=keep
        )
    except OSError as e:
        return _unusable(args, cannot_read(escape(args.trace), e))
    if args.json:
        if report.error is not None:  # the one line, as without --json
            name = escape(report.path or "<trace>")
            print(f"pyvcore check: {report._error_line(name)}", file=sys.stderr)
        print(json.dumps(report.to_dict()))
    else:
        text = report.format_text(explain=not args.no_explain, prefix="pyvcore check: ")
        if report.error is not None:
            print(text, file=sys.stderr)
        else:
            print(text)
    return report.exit_code


def register(subparsers: Any) -> None:
    """Add ``pyvcore check TRACE.jsonl [--json] [--all] [--variant V] [--same-vm]``."""
    from pyvcore.trace_report import SHOWN

    p = subparsers.add_parser(
        "check",
        help="check a JSONL trace of snapshots against the vcore invariants",
        description=(
            "Replay a trace (one snapshot JSON object per line, e.g. a pv-watch log; '-' streams "
            "stdin) through the checker. Prints each violation with its invariant number, the line "
            "and stop label, and the fields involved, then one line per invariant with what a "
            "violation usually means. Exit status: 0 clean, 1 violations, 2 unusable input, empty "
            "trace or a stop not judged (no vcore found), 3 internal error."
        ),
    )
    p.add_argument("trace", metavar="TRACE.jsonl", nargs="?", help="trace file ('-' reads stdin)")
    p.add_argument("--vmcore", metavar="FILE", help="judge a kdump/ELF vmcore instead (needs --vmlinux)")
    p.add_argument(
        "--vmlinux", metavar="VMLINUX", type=cliargs.vmlinux, help="with --vmcore: the dumped kernel (BTF)"
    )
    p.add_argument(
        "--modules",
        metavar="DIR",
        type=cliargs.input_dir,
        help="with --vmcore: kvm.ko/kvm-hv.ko (.ko or .ko.xz) for their BTF",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument(
        "--variant",
        choices=VARIANTS,
        default=None,
        help="judge every line as this variant (default: each line's own 'variant')",
    )
    p.add_argument(
        "--same-vm",
        action="store_true",
        help="the trace covers one VM's life: also check between lines what never changes "
        "within it (vcpu ids and ptids, first_vcpuid, the LPID; num_threads never shrinks)",
    )
    p.add_argument(
        "--max-line-bytes",
        type=int,
        default=DEFAULT_MAX_LINE_BYTES,
        metavar="N",
        help=f"refuse a line longer than N bytes (default {DEFAULT_MAX_LINE_BYTES})",
    )
    p.add_argument("--no-explain", action="store_true", help="omit the per-invariant explanations")
    p.add_argument(
        "--all",
        action="store_true",
        help=f"print every violation (default: the first {DEFAULT_KEEP:,} of a snapshot trace, the "
        f"first {SHOWN} of an event log, with the events before each; --json lists every one)",
    )
    p.set_defaults(func=_run)


__all__ = [
    "INVARIANTS",
    "VARIANTS",
    "CheckOutcome",
    "Checker",
    "InvariantInfo",
    "SnapshotError",
    "TraceReport",
    "Violation",
    "check_trace",
    "check_trace_text",
    "escape",
    "invariants",
    "register",
]
