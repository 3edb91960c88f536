"""The text report of ``pyvcore trace`` (and of ``pyvcore check`` on an event log)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyvcore.render import partial, render_table

if TYPE_CHECKING:
    from pyvcore.trace import LabRun, TraceResult


def _n(x: float | int | None, unit: str = "") -> str:
    if x is None:
        return "-"
    return f"{x:,.1f}{unit}" if isinstance(x, float) else f"{x:,}{unit}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def format_timings(traced: LabRun, baseline: LabRun | None) -> str:
    """Boot and scenario time, with and without the plugin."""
    base = baseline or None
    rows = [
        ["boot to READY", _n(traced.boot_s, " s"), _n(base.boot_s if base else None, " s")],
        ["scenario (guest DONE)", _n(traced.scenario_s, " s"), _n(base.scenario_s if base else None, " s")],
    ]
    for r in rows:
        a = float(r[1][:-2].replace(",", "")) if r[1] != "-" else None
        b = float(r[2][:-2].replace(",", "")) if r[2] != "-" else None
        r.append(_ratio(a, b))
    legend = None
    if base is not None:
        legend = (
            "ratio: with / without the plugin, two boots of the same scenario; below 1.00x the boot "
            "without the plugin was the slower one (the host's load differs between boots), not a speed-up"
        )
    return render_table(["time", "with plugin", "without", "ratio"], rows, legend=legend)


SHOWN = 200
"""Violations a text report prints by default: the ones the shadow keeps with the events
before each (``MAX_RECORDED`` in rust/core/src/shadow/record.rs); ``--all`` prints every
one it lists."""


def format_violations(
    summary: dict[str, Any], where: str = "", events: int = 8, *, every: bool = False
) -> str:
    """The first :data:`SHOWN` violations (``every``: all that the shadow listed), each with
    its place and the last ``events`` events before it; then, when some were left out, the
    line saying how many of how many (:func:`pyvcore.render.partial`), and one line per
    invariant with its true count, first and last place."""
    listed = summary.get("violations", [])
    total = int(summary.get("stats", {}).get("violations", len(listed)))
    shown = listed if every else listed[:SHOWN]
    lines = []
    for v in shown:
        lines.append(
            f"{where + ': ' if where else ''}seq {v['seq']} tb {v['tb']} cpu {v['cpu']} pc {v['pc']} "
            f"[{v['field']}]: invariant {v['invariant']}: {v['message']}"
        )
        for e in v.get("events", [])[-events:]:
            lines.append(
                f"    #{e['seq']:<7} tb {e['tb']:<13} cpu {e['cpu']}  {e['pc']}  {e['field']}: {e['old']} -> {e['new']}"
            )
    if every and len(listed) < total:
        lines.append(
            f"{len(listed):,} of {total:,} violations listed: the checker keeps the first "
            f"{len(listed):,} and counts the rest"
        )
    elif more := partial(len(shown), total):
        lines.append(more)
    lines += format_counts(summary)
    return "\n".join(lines)


def format_counts(summary: dict[str, Any]) -> list[str]:
    """One line per invariant: its count (every violation, listed or not), where the first and
    the last listed one are, e.g. ``10,995x invariant 8, first at seq 41,204 (tb ...), last
    listed at seq 9,912,044``.  Empty when the summary has no per-invariant counts (an older
    plugin) or nothing was violated."""
    from pyvcore import _core

    counts = summary.get("stats", {}).get("violations_per_invariant") or {}
    listed = summary.get("violations", [])
    titles = {int(row.number): row.title for row in _core.invariants()}
    lines = []
    for number, count in sorted(counts.items(), key=lambda kv: int(kv[0])):
        mine = [v for v in listed if int(v["invariant"]) == int(number)]
        line = f"{int(count):,}x invariant {number}"
        if mine:
            line += f", first at seq {mine[0]['seq']} (tb {mine[0]['tb']})"
            if len(mine) > 1:
                line += f", last{' listed' if len(mine) < int(count) else ''} at seq {mine[-1]['seq']}"
        title = titles.get(int(number))
        lines.append(f"{line}: {title}" if title else line)
    return lines


def format_exit_ipi(summary: dict[str, Any]) -> str | None:
    """What invariant 45 judged: the first exits (``kvmhv_commence_exit``'s first caller,
    book3s_hv_builtin.c), those by thread 0 without a vcpu (``kvm_novcpu_exit``,
    book3s_hv_rmhandlers.S), the HDEC ones that owe no IPI, and those not judged for want
    of a trap.  None when the summary has no such record (an older plugin)."""
    x = summary.get("exit_ipi")
    if not isinstance(x, dict):
        return None
    line = (
        f"invariant 45: {_n(x.get('owed'))} first exits owed the exit IPI and were judged "
        f"({_n(x.get('owed_novcpu'))} by a thread without a vcpu, kvm_novcpu_exit); "
        f"{_n(x.get('hdec'))} HDEC exits owe none; {_n(x.get('first_exits'))} first exits in all"
    )
    if x.get("unknown_trap"):
        line += (
            f"; {_n(x['unknown_trap'])} not judged (the exiting vcpu's trap was not stored while the "
            "plugin watched, e.g. before the log began)"
        )
    return line


def format_liveness_timebase(summary: dict[str, Any]) -> str | None:
    """What invariants 41-43 could not judge: the events, while a state they time was held,
    whose ``tb`` could not be put on the host's timebase (inside thread 0's switch of the
    vcore's timebase offset in kvmppc_hv_entry / kvmhv_switch_to_host, book3s_hv_rmhandlers.S,
    or a log without the offset), per reason.  None when every such event was judged."""
    counts = summary.get("stats", {}).get("liveness_not_judged") or {}
    if not isinstance(counts, dict) or not counts:
        return None

    def events(n: int) -> str:
        return f"{_n(n)} event{'' if n == 1 else 's'}"

    total = sum(int(n) for n in counts.values())
    why = "; ".join(f"{events(int(n))}: {reason}" for reason, n in sorted(counts.items()))
    return (
        f"invariants 41-43: not judged at {events(total)} where a state they time was held and the "
        f"event's tb could not be put on the host's timebase ({why})"
    )


def format_edges(summary: dict[str, Any], scenario: str, variant: str, threads: int, vcpus: list[int]) -> str:
    """The kernel's edges next to the model's, both gap kinds marked."""
    from pyvcore.trace_edges import compare, kernel_edges, model_edges

    rows = compare(kernel_edges(summary), model_edges(variant, threads, vcpus))
    table = [
        [r["field"], f"{r['old']} -> {r['new']}", r["where"], ", ".join(r["functions"][:3]), r["gap"] or ""]
        for r in rows
    ]
    legend = (
        "kernel only: a model gap; model only: the kernel never took it in this scenario; "
        "why: what the gap is, with the kernel code that makes the edge"
    )
    return render_table(
        ["field", "edge", "seen in", "kernel functions", "why"],
        table,
        title=f"edges, {scenario}",
        legend=legend,
    )


def format_result(result: TraceResult, *, edges: bool = False, every: bool = False) -> str:
    """The whole report."""
    s = result.summary
    stats = s.get("stats", {})
    secs = s.get("seconds") or 0.0
    seen = s.get("stores_seen", 0)
    from pyvcore.lab.inputs import kernel_line

    out = [
        f"pyvcore trace: scenario {result.scenario}, {result.qemu} QEMU, mode {result.mode}; log {result.log}",
        kernel_line(result.traced.status),
        format_timings(result.traced, result.baseline),
        (
            f"stores {_n(seen)} seen ({_n(seen / secs if secs else None)}/s over {secs:.1f} s), "
            f"{_n(stats.get('stores_checked'))} in watched pages decoded; "
            f"{_n(stats.get('events'))} events, {_n(stats.get('distinct_states'))} distinct states, "
            f"{_n(s.get('watched_fields'))} fields watched at the end"
        ),
    ]
    if hung := s.get("hung"):
        out.append(
            f"boot hung in the {hung.get('stage')} stage ({hung.get('reason')}): judged on the trace up to the hang"
        )
    per_field = sorted(stats.get("events_per_field", {}).items(), key=lambda kv: -kv[1])
    out.append(render_table(["field", "events"], [[k, _n(v)] for k, v in per_field]))
    if ipi := format_exit_ipi(s):
        out.append(ipi)
    if unjudged := format_liveness_timebase(s):
        out.append(unjudged)
    if s.get("violations"):
        out.append(format_violations(s, every=every))
    if edges:
        import importlib

        sc = importlib.import_module("pyvcore.lab.scenarios").scenario_named(result.scenario)
        # The model holds one vcore (vcpu ids 0..3 on 4 threads): two-vcores' second
        # vcore (ids 4..7) is left out of the model's walk.
        vcpus = [v for v in sc.ids.get(4, ()) if v < 4]
        out.append(format_edges(s, result.scenario, s.get("variant", "modern"), 4, vcpus))
    if r := s.get("prepatch_refuted_by"):
        out.append(
            f"prepatch refuted by seq {r['seq']} (cpu {r['cpu']}, pc {r['pc']}): {r['field']} = {r['new']} "
            f"(vcpu {r['vcpu_id']}) while the vcore's n_runnable is {r['n_runnable']}: before e0b7ec058c0e "
            f"ptids were handed out 0..n_runnable-1, so no vcpu could land on thread {r['thread']}"
        )
    n = stats.get("violations", 0)
    out.append("verdict: clean" if not n else f"verdict: {n:,} violations")
    return "\n".join(out)
