"""The human report of `pyvcore diff`: per stop kind, the violations grouped, the verdict."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from pyvcore.diff_live import LiveRun

if TYPE_CHECKING:
    from pyvcore.diff import Summary


# --------------------------------------------------------------------- the table
def watched_points(watch_result: dict[str, Any]) -> list[str]:
    """Breakpoint labels pv-watch said it planted ("pv-watch: on at A, B; log ..."), all phases."""
    out: list[str] = []
    for entry in [watch_result, *watch_result.get("phases", [])]:
        m = re.search(r"pv-watch: on at ([^;\n]+)", entry.get("pv_watch", ""))
        for label in m.group(1).split(",") if m else []:
            if label.strip() and label.strip() not in out:
                out.append(label.strip())
    return out


def _render(columns: list[str], rows: list[list[str]], legend: str) -> str:
    from pyvcore.render import render_table

    return render_table(columns, rows, legend=legend)


LEGEND = (
    "judged: the vcore and its threads were read and every invariant with its data was checked; "
    "not judged: the stop could not be judged (reason below), never counted as clean"
)


def format_table(run: LiveRun, summary: Summary) -> str:
    """The human report: timings, the per-stop-kind table, violations grouped, the verdict."""
    from pyvcore.lab.inputs import kernel_line

    lines = [
        f"pyvcore diff: scenario {run.scenario}, {run.qemu} QEMU, model variant {summary.variant or 'auto'}",
        kernel_line(run.status),
        "boot {boot:.1f} s, attach {attach:.1f} s, watch {watch:.1f} s; {n} guest reports; trace {trace}".format(
            boot=run.timings.get("boot_s", 0.0),
            attach=run.timings.get("attach_s", 0.0),
            watch=run.timings.get("watch_s", 0.0),
            n=len(run.reports),
            trace=run.trace if run.temp_dir is None or run.trace.exists() else "(removed)",
        ),
        "",
    ]
    columns = ["stop kind", "stops", "judged", "not judged", "violations", "ms/check"]
    rows = [
        [
            kind,
            str(r["stops"]),
            str(r["judged"]),
            str(r["not_judged"]),
            str(r["violations"]),
            f"{r['check_ms']:.3f}",
        ]
        for kind, r in summary.stops.items()
    ]
    total = [
        sum(r[k] for r in summary.stops.values()) for k in ("stops", "judged", "not_judged", "violations")
    ]
    rows.append(["total", *map(str, total), ""])
    lines.append(_render(columns, rows, LEGEND))
    planted = watched_points(run.watch)
    missed = [p for p in planted if p not in summary.stops]
    if missed:
        lines.append("(watched, never hit): " + ", ".join(missed))
    reasons: Counter[str] = Counter()
    for row in summary.stops.values():
        reasons.update(row["reasons"])
    for reason, n in reasons.most_common():
        lines.append(f"not judged: {n}x {reason}")
    lines.append(fields_line(summary))
    lines.append(
        f"history: {summary.same_run_pairs} consecutive stop pairs judged as one vcore run "
        "(same vcores[].seq: invariants 7, 11, 19 between them)"
    )
    lines += _violation_lines(summary)
    lines.append("")
    lines.append(verdict_line(summary))
    return "\n".join(lines)


def fields_line(summary: Summary) -> str:
    """How many judged-or-not snapshots carried each snapshot-v2 field, and the DPDES bits seen."""
    n = summary.total_snapshots
    f = summary.fields
    keys = ("tb", "tb_freq", "pc", "msr", "hdec", "dpdes", "tb_offset", "tb_offset_applied")
    parts = [f"{k} {f.get(k, 0)}/{n}" for k in keys]
    return (
        "snapshot v2 fields (stops carrying them): "
        + ", ".join(parts)
        + f"; a DPDES bit set at {f.get('dpdes pending', 0)} stops, vc->dpdes at {f.get('vcore dpdes pending', 0)}"
        + f"; a timebase offset in force at {f.get('tb offset in force', 0)} stops"
    )


def explain(number: int) -> str | None:
    """The invariant table's short explanation (what it states, what a violation usually means,
    where it comes from), where this pyvcore has the table; None otherwise."""
    from pyvcore import checker

    table = getattr(checker, "invariants", None)
    for info in table() if table is not None else ():
        if int(info.number) == number:
            return f"{info.title}. {info.meaning} (source: {info.source})"
    return None


def _violation_lines(summary: Summary) -> list[str]:
    from pyvcore.diff import hexify

    lines: list[str] = []
    if summary.violations:
        lines += ["", "violations:"]
        shown: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
        for v in summary.violations:
            shown.setdefault((v["invariant"], v.get("message")), []).append(v)
        for (inv, message), group in shown.items():
            first = group[0]
            fields = json.dumps(hexify(first.get("fields", {})), sort_keys=True)
            lines.append(
                f"  invariant {inv}: {message} ({len(group)}x, first at line {first['line']}, "
                f"{first.get('stop')}): {fields}"
            )
        for inv in sorted({v["invariant"] for v in summary.violations}):
            text = explain(int(inv))
            if text:
                lines.append(f"  about invariant {inv}: {text}")
    if summary.mismatches:
        lines += [
            "",
            f"WARNING: {len(summary.mismatches)} snapshots where pv-watch's verdict differs "
            "from the offline check, first: " + json.dumps(summary.mismatches[0]),
        ]
    return lines


def verdict_line(summary: Summary) -> str:
    verdict = summary.verdict
    if verdict == "violations":
        return f"verdict: violations ({len(summary.violations)})"
    if verdict == "not-judged":
        if not summary.stops:
            return "verdict: not judged: no stop was seen, nothing was compared"
        return "verdict: not judged: stop kind(s) never judged: " + ", ".join(summary.never_judged)
    return "verdict: clean: every stop kind was judged and the model accepts every judged stop"
