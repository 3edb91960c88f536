"""Check observed (or modelled) vcore states against the VCORE_SPEC invariants.

A *snapshot* is one stop of a POWER8 core: every hardware thread's PACA
``kvm_hstate``, the vcores and their vcpus (contract 2; the Rust structs in
``rust/view.rs`` are the reference).  :class:`Checker` evaluates the §4
invariants on each snapshot and, between consecutive snapshots, the
transition invariants; :func:`check_trace` replays a JSONL trace (one
snapshot per line) and ``pyvcore check TRACE.jsonl`` is its command line.

Parsing and checking run in Rust (``pyvcore._core``); this module only
wraps the results::

    >>> from pyvcore import Checker
    >>> checker = Checker()
    >>> for v in checker.check(snapshot):       # dict or JSON text
    ...     print(v.invariant, v.message, v.fields)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from pyvcore import _core

SnapshotError = _core.SnapshotError
"""Raised for a snapshot that cannot be used (a ValueError): ``.key`` is the
path of the offending key (``threads[1].kvm_hstate.ptid``, "" for the whole
snapshot), ``.line`` the trace line (or None), ``.reason`` the bare reason."""

INVARIANTS: dict[int, str] = dict(_core.invariant_descriptions())
"""Invariant number -> one-line statement, for every invariant checked."""

VARIANTS = ("seed", "modern", "prepatch")

Snapshot = Union[Mapping[str, Any], str, bytes]

# Field names whose values read best in hex (pointers, SPRs, bit words).
_HEX_FIELDS = {
    "kvm_vcpu",
    "kvm_vcore",
    "addr",
    "vcore",
    "runner",
    "kvm",
    "lpidr",
    "sdr1",
    "lpid",
    "host_lpid",
    "host_sdr1",
    "entry_exit_map",
    "entry_exit_count",
    "napping_threads",
}


def _show(key: str, value: Any) -> str:
    name = key.rsplit(".", 1)[-1]
    if isinstance(value, int) and not isinstance(value, bool) and name in _HEX_FIELDS:
        return f"{key}={value:#x}"
    return f"{key}={value}"


@dataclass(frozen=True)
class Violation:
    """One broken invariant.

    ``invariant`` is its VCORE_SPEC §4 number (29: doorbell delivery),
    ``message`` says what is wrong in one line, ``fields`` maps the JSON path
    of each field involved to its observed value; ``line`` and ``stop`` say
    which snapshot of a trace it came from.
    """

    invariant: int
    message: str
    fields: dict[str, Any] = field(default_factory=dict)
    line: Optional[int] = None
    stop: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "invariant": self.invariant,
            "message": self.message,
            "fields": dict(self.fields),
            "line": self.line,
            "stop": self.stop,
        }

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.stop:
            where.append(f"stop {self.stop}")
        head = f"invariant {self.invariant}"
        if where:
            head += f" ({', '.join(where)})"
        text = f"{head}: {self.message}"
        if self.fields:
            text += " [" + ", ".join(_show(k, v) for k, v in self.fields.items()) + "]"
        return text


def _as_json(snapshot: Snapshot) -> str:
    if isinstance(snapshot, str):
        return snapshot
    if isinstance(snapshot, (bytes, bytearray)):
        return bytes(snapshot).decode("utf-8", errors="replace")
    if isinstance(snapshot, Mapping):
        try:
            return json.dumps(snapshot)
        except (TypeError, ValueError) as e:
            raise _snapshot_error(f"snapshot is not JSON-serialisable: {e}") from None
    raise TypeError(f"a snapshot is a dict or JSON text, not {type(snapshot).__name__}")


def _snapshot_error(reason: str, key: str = "", line: Optional[int] = None) -> Exception:
    """A SnapshotError raised from Python, with the attributes the Rust side sets."""
    err = SnapshotError(reason)
    err.key, err.line, err.reason = key, line, reason
    return err


def _violation(raw: Any, line: Optional[int] = None, stop: Optional[str] = None) -> Violation:
    invariant, message, fields = raw
    return Violation(invariant, message, fields, line, stop)


class Checker:
    """Checks snapshots one after the other.

    ``variant`` ("seed", "modern", "prepatch") overrides the snapshots' own
    "variant" key; None uses theirs.

    ``same_vm=True`` says the snapshots all belong to one VM's life: then
    :meth:`check` also judges the step from the previous snapshot (vcpu ids
    and ptids, first_vcpuid, LPID unchanged, num_threads never shrinking).
    Off by default: between breakpoint samples a VM can be destroyed and
    created again at the same addresses, which explains any such change.
    Call :meth:`reset` to start a new sequence.
    """

    def __init__(self, variant: Optional[str] = None, *, same_vm: bool = False) -> None:
        if variant is not None and variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r} (expected one of {', '.join(VARIANTS)})")
        self._core = _core.CoreChecker(variant, same_vm)
        self.variant = variant
        self.same_vm = same_vm

    def check(self, snapshot: Snapshot, *, line: Optional[int] = None) -> list[Violation]:
        """Violations of this snapshot (and, with ``same_vm``, of the step from
        the previous one).

        Raises :class:`SnapshotError` if the snapshot misses a key or has a
        wrongly typed one (the previous snapshot is then kept).
        """
        text = _as_json(snapshot)
        found = self._core.check_json(text, line)
        if not found:
            return []
        stop = snapshot.get("stop") if isinstance(snapshot, Mapping) else _stop_of(text)
        return [_violation(v, line, stop if isinstance(stop, str) else None) for v in found]

    def predict(self, snapshot: Snapshot) -> list[dict[str, Any]]:
        """Per thread of the core, what the model expects its PACA to hold:
        ``{"thread", "cpu", "ptid", "kvm_vcpu", "kvm_vcore", "vcpu_id"}``,
        None where any value is allowed (a stale field)."""
        return list(self._core.predict_json(_as_json(snapshot)))

    def reset(self) -> None:
        """Forget the previous snapshot."""
        self._core.reset()


def _stop_of(text: str) -> Optional[str]:
    try:
        stop = json.loads(text).get("stop")
    except (ValueError, AttributeError):
        return None
    return stop if isinstance(stop, str) else None


@dataclass
class TraceReport:
    """The result of replaying a trace.

    ``error`` is set (a dict with ``line``, ``key``, ``message``, ``text``)
    when a line could not be used; the lines before it were checked.
    """

    path: Optional[str]
    snapshots: int
    violations: list[Violation]
    error: Optional[dict[str, Any]] = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.violations

    @property
    def exit_code(self) -> int:
        """0 clean, 1 violations, 2 unusable input."""
        if self.error is not None:
            return 2
        return 1 if self.violations else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace": self.path,
            "snapshots": self.snapshots,
            "ok": self.ok,
            "violations": [v.to_dict() for v in self.violations],
            "error": self.error,
        }

    def format_text(self) -> str:
        name = self.path or "<trace>"
        lines = []
        for v in self.violations:
            where = f"{name}:{v.line}"
            if v.stop:
                where += f" [{v.stop}]"
            lines.append(f"{where}: invariant {v.invariant}: {v.message}")
            if v.fields:
                lines.append("    " + ", ".join(_show(k, val) for k, val in v.fields.items()))
        if self.error is not None:
            lines.append(f"{name}: {self.error['text']}")
        numbers = sorted({v.invariant for v in self.violations})
        summary = f"{self.snapshots} snapshot{'s' if self.snapshots != 1 else ''}, "
        summary += f"{len(self.violations)} violation{'s' if len(self.violations) != 1 else ''}"
        if numbers:
            summary += (
                " (invariant" + ("s " if len(numbers) > 1 else " ") + ", ".join(map(str, numbers)) + ")"
            )
        if self.error is not None:
            summary += "; stopped at an unusable line"
        lines.append(summary)
        return "\n".join(lines)


def _report(raw: Mapping[str, Any], path: Optional[str]) -> TraceReport:
    violations = [_violation(item["violation"], item["line"], item["stop"]) for item in raw["violations"]]
    return TraceReport(path, raw["snapshots"], violations, raw["error"])


def check_trace(
    path: Union[str, os.PathLike[str]], variant: Optional[str] = None, *, same_vm: bool = False
) -> TraceReport:
    """Replay a JSONL trace (one snapshot per line; ``"-"`` reads stdin).

    Parsing and checking run in Rust.  ``same_vm`` as for :class:`Checker`.
    Raises OSError if the file cannot be opened; an unusable line is
    reported in ``TraceReport.error``.
    """
    if variant is not None and variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} (expected one of {', '.join(VARIANTS)})")
    name = str(path)
    if name == "-":
        return _report(_core.check_trace_text(sys.stdin.read(), variant, same_vm), "<stdin>")
    return _report(_core.check_trace_file(name, variant, same_vm), name)


def check_trace_text(text: str, variant: Optional[str] = None, *, same_vm: bool = False) -> TraceReport:
    """Replay a JSONL trace held in a string."""
    return _report(_core.check_trace_text(text, variant, same_vm), None)


# --------------------------------------------------------------------------
# pyvcore check


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "vmcore", None):  # post-mortem: pyvcore.vmcore reads the dump
        from pyvcore.vmcore_cli import run as run_vmcore

        return run_vmcore(args)
    if args.trace is None:
        print("pyvcore check: give a TRACE.jsonl (or --vmcore FILE --vmlinux VMLINUX)", file=sys.stderr)
        return 2
    try:
        report = check_trace(args.trace, args.variant, same_vm=args.same_vm)
    except OSError as e:
        message = f"cannot read {args.trace}: {e.strerror or e}"
        if args.json:
            print(
                json.dumps(
                    {
                        "trace": args.trace,
                        "snapshots": 0,
                        "ok": False,
                        "violations": [],
                        "error": {"line": None, "key": "", "message": message, "text": message},
                    }
                )
            )
        else:
            print(f"pyvcore check: {message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        text = report.format_text()
        if report.error is not None:
            print(text, file=sys.stderr)
        else:
            print(text)
    return report.exit_code


def register(subparsers: Any) -> None:
    """Add ``pyvcore check TRACE.jsonl [--json] [--variant V]``."""
    p = subparsers.add_parser(
        "check",
        help="check a JSONL trace of snapshots against the vcore invariants",
        description=(
            "Replay a trace (one snapshot JSON object per line, e.g. a pv-watch log) through "
            "the checker. Prints each violation with its invariant number, the line and stop "
            "label, and the fields involved. Exit status: 0 clean, 1 violations, 2 unusable input."
        ),
    )
    p.add_argument("trace", metavar="TRACE.jsonl", nargs="?", help="trace file ('-' reads stdin)")
    p.add_argument("--vmcore", metavar="FILE", help="judge a kdump/ELF vmcore instead (needs --vmlinux)")
    p.add_argument("--vmlinux", metavar="VMLINUX", help="with --vmcore: the dumped kernel (BTF)")
    p.add_argument(
        "--modules", metavar="DIR", help="with --vmcore: kvm.ko/kvm-hv.ko (.ko or .ko.xz) for their BTF"
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
    p.set_defaults(func=_run)


__all__ = [
    "INVARIANTS",
    "VARIANTS",
    "Checker",
    "SnapshotError",
    "TraceReport",
    "Violation",
    "check_trace",
    "check_trace_text",
    "register",
]
