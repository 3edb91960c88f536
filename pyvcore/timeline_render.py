"""Writers of a :class:`pyvcore.timeline.Timeline`: trace-event JSON, a self-contained page, a PNG.

The JSON follows the Trace Event Format that chrome://tracing and Perfetto read
(one object with ``traceEvents``; ``ph`` "M" names processes and threads, "X"
complete slices, "i" instants, "s"/"f" flow arrows; ``ts``/``dur`` in
microseconds, to the nanosecond).  Process 1 holds the hardware threads, 2 the
vcores, 3 the violations.  A sampled trace has only instants ("i"): the stops are
points.  Nothing is repeated that a reader has already: a slice's ``args`` are
the fields that changed since the previous slice of its lane (the first slice of
a lane has them all), and the file is written without blanks.

The PNG is drawn by matplotlib; the page (``.html``) by :mod:`pyvcore.timeline_html`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyvcore.timeline import STATES, Lane, Timeline

PIDS = {"threads": 1, "vcores": 2, "violations": 3}
GROUP_NAMES = {"threads": "hardware threads", "vcores": "vcores", "violations": "violations"}
# A sampled trace without timebase is laid out one stop per millisecond.
STOP_US = 1000.0


def _lanes(tl: Timeline) -> list[Lane]:
    lanes = tl.sorted_lanes()
    if tl.violations and not any(lane.group == "violations" for lane in lanes):
        lanes.append(Lane("violations", "violations", "violations"))
    return lanes


def _us(value: float) -> float | int:
    """Microseconds to the nanosecond (the timebase ticks at 512 MHz, ~2 ns): ``1.5``, ``7``."""
    rounded = round(value, 3)
    return int(rounded) if rounded == int(rounded) else rounded


def chrome_trace(tl: Timeline) -> dict[str, Any]:
    """The trace-event JSON object of ``tl`` (``json.dumps`` it to a file)."""
    scale = STOP_US if tl.ordinal else 1.0
    events: list[dict[str, Any]] = []
    tids: dict[str, tuple[int, int]] = {}
    for pid_group, pid in PIDS.items():
        events.append(
            {
                "ph": "M",
                "name": "process_name",
                "pid": pid,
                "tid": 0,
                "args": {"name": GROUP_NAMES[pid_group]},
            }
        )
        events.append(
            {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "args": {"sort_index": pid}}
        )
    for index, lane in enumerate(_lanes(tl), 1):
        tids[lane.key] = (PIDS[lane.group], index)
        pid, tid = tids[lane.key]
        events.append(
            {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": lane.title}}
        )
        events.append(
            {"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid, "args": {"sort_index": index}}
        )
    previous: dict[str, dict[str, Any]] = {}
    for mark in tl.marks:
        pid, tid = tids[mark.lane]
        before = previous.get(mark.lane)
        previous[mark.lane] = mark.args
        event: dict[str, Any] = {
            "name": mark.label,
            "cat": mark.state,
            "pid": pid,
            "tid": tid,
            "ts": _us(mark.ts * scale),
        }
        changed = (
            mark.args
            if before is None
            else {k: v for k, v in mark.args.items() if k not in before or before[k] != v}
        )
        if changed:
            event["args"] = changed
        if mark.end is None:
            event.update(ph="i", s="t")
        else:
            event.update(ph="X", dur=_us(max(mark.end - mark.ts, 0.0) * scale))
        events.append(event)
    for number, flow in enumerate(tl.flows, 1):
        for ph, key in (("s", flow.src), ("f", flow.dst)):
            pid, tid = tids[key]
            event = {
                "ph": ph,
                "id": number,
                "name": flow.name,
                "cat": "flow",
                "pid": pid,
                "tid": tid,
                "ts": _us(flow.ts * scale),
            }
            if ph == "f":
                event["bp"] = "e"
            events.append(event)
    for v in tl.violations:
        pid, tid = tids["violations"]
        events.append(
            {
                "ph": "i",
                "s": "t",
                "name": f"invariant {v.invariant}",
                "cat": "violation",
                "pid": pid,
                "tid": tid,
                "ts": _us(v.ts * scale),
                "args": {"invariant": v.invariant, "message": v.message, "stop": v.stop},
            }
        )
    other: dict[str, Any] = {
        "source": tl.source,
        "title": tl.title,
        "x": f"{tl.unit} number, 1 ms per {tl.unit}" if tl.ordinal else "timebase, microseconds",
    }
    if tl.not_judged:  # never counted clean: said where the trace's own description is
        other["not_judged"] = tl.not_judged_text()
        other["not_judged_lines"] = [line for _ts, _stop, line, _why in tl.not_judged]
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


# ----------------------------------------------------------------------- PNG
PNG_WIDTH_PX = 1320  # 12 in at 110 dpi
# Arrows are drawn with heads up to this many; more are thin lines (a boot's IPIs are thousands).
PNG_ARROW_HEADS = 200


def time_unit(tl: Timeline, span: tuple[float, float] | None = None) -> tuple[float, str]:
    """(divisor, name) for the x axis: stops as they are; timebase µs as s, ms or µs by the
    span drawn (``span``, default the whole trace)."""
    if tl.ordinal:
        return 1.0, tl.unit
    t0, t1 = span or tl.span
    for scale, name in ((1e6, "s"), (1e3, "ms")):
        if t1 - t0 >= 2 * scale:
            return scale, name
    return 1.0, "µs"


# The PNG text key that names the command a picture was drawn with (``command`` below).
PNG_COMMAND_KEY = "Software"


def png_picture(tl: Timeline, out: Path, command: str | None = None) -> None:
    """Write the static picture of ``tl`` (:func:`png_figure`) to ``out``; ``command``, the
    ``pyvcore timeline`` options it was drawn with, goes into the PNG's text chunk
    ``Software`` (so a picture says how to draw it again: :func:`png_command`)."""
    fig = png_figure(tl)  # TimelineError without matplotlib
    import matplotlib.pyplot as plt

    fig.savefig(out, metadata={PNG_COMMAND_KEY: command or "pyvcore timeline"})
    plt.close(fig)


def png_command(path: Path) -> str | None:
    """The ``pyvcore timeline`` command a PNG written by :func:`png_picture` names, or None
    (another PNG).  Reads the PNG's tEXt chunks (PNG spec, 11.3.4.3) without an image library."""
    data = path.read_bytes()
    at = 8  # after the PNG signature
    while at + 8 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + size]
        if kind == b"tEXt" and b"\0" in body:
            key, text = body.split(b"\0", 1)
            if key.decode("latin-1") == PNG_COMMAND_KEY and text.startswith(b"pyvcore timeline"):
                return text.decode("latin-1")
        if kind == b"IEND":
            break
        at += 12 + size
    return None


def png_figure(tl: Timeline) -> Any:
    """A static picture (a matplotlib Figure, Agg backend): points or slices per lane, arrows, violations.

    One ``broken_barh`` per lane and state (a long trace is tens of thousands of slices);
    the short states (napping, guest) are drawn last and at least two pixels wide; the x
    axis is in s, ms or µs of timebase time (or stop numbers) with round ticks."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.collections import LineCollection
        from matplotlib.ticker import MaxNLocator, ScalarFormatter
    except ImportError:
        from pyvcore.timeline import TimelineError

        raise TimelineError("a .png needs matplotlib (pip install matplotlib)") from None
    from pyvcore.timeline_html import ACCENT

    lanes = _lanes(tl)
    row = {lane.key: len(lanes) - 1 - i for i, lane in enumerate(lanes)}
    kvm = tl.kvm_span
    scale, unit = time_unit(tl, kvm)
    t0, t1 = (t / scale for t in (kvm or tl.span))
    pixel = max(t1 - t0, 1e-9) / PNG_WIDTH_PX
    fig, ax = plt.subplots(figsize=(12, 0.45 * len(lanes) + 1.6), dpi=110)
    bars: dict[tuple[str, str], list[tuple[float, float]]] = {}
    points: dict[str, list[tuple[float, int]]] = {}
    for mark in tl.marks:
        if mark.end is None:
            points.setdefault(mark.state, []).append((mark.ts / scale, row[mark.lane]))
        else:
            width = max(mark.end - mark.ts, 0.0) / scale
            least = 2 * pixel if mark.state in ACCENT else 1e-9
            bars.setdefault((mark.lane, mark.state), []).append((mark.ts / scale, max(width, least)))
    seen: set[str] = set()
    on_top = {state: i + 1 for i, state in enumerate(ACCENT)}  # the last of ACCENT drawn last
    for (lane, state), spans in sorted(bars.items(), key=lambda kv: on_top.get(kv[0][1], 0)):
        ax.broken_barh(
            spans,
            (row[lane] - 0.35, 0.7),
            color=STATES.get(state, "#607d8b"),
            label=None if state in seen else state,
            linewidth=0,
        )
        seen.add(state)
    for state, xy in points.items():
        xs, ys = zip(*xy)
        ax.scatter(xs, ys, s=28, color=STATES.get(state, "#607d8b"), label=state, zorder=3)
    _png_flows(ax, tl, row, scale, LineCollection)
    for v in tl.violations:
        ax.scatter([v.ts / scale], [row["violations"]], marker="v", s=60, color=STATES["violation"], zorder=4)
    if tl.violations:
        first = tl.violations[0]
        ax.annotate(
            f"invariant {first.invariant}",
            (first.ts / scale, row["violations"]),
            xytext=(4, 6),
            textcoords="offset points",
            fontsize=8,
            color=STATES["violation"],
        )
    ax.xaxis.set_major_locator(MaxNLocator(nbins=10, steps=[1, 2, 2.5, 5, 10], integer=tl.ordinal))
    plain = ScalarFormatter(useOffset=False)
    plain.set_scientific(False)
    ax.xaxis.set_major_formatter(plain)
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels([lane.title for lane in reversed(lanes)], fontsize=8, family="monospace")
    if kvm:
        pad = (t1 - t0) * 0.02
        ax.set_xlim(t0 - pad, t1 + pad)
    ax.set_xlabel(_x_label(tl, unit, kvm, scale))
    judged = f", {len(tl.not_judged):,} not judged" if tl.not_judged else ""
    ax.set_title(f"pyvcore timeline: {tl.title} ({tl.source}, {tl.violations_text()}{judged})", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _x_label(tl: Timeline, unit: str, kvm: tuple[float, float] | None, scale: float) -> str:
    if tl.unit == "stop":
        return "stop number (points: sampled stops)"
    if tl.unit == "event":
        if tl.axis_note:  # an event's host timebase not known: said on stderr in full
            return "event number (an event's host timebase is not known)"
        return "event number (the log's timebase does not advance)"
    if kvm is None:
        return f"timebase time ({unit})"
    whole = tl.span[0] / scale
    return (
        f"timebase time ({unit}), from KVM's first activity; the trace starts at {whole:.2f} {unit} "
        "(`--whole` draws it all)"
    )


def _png_flows(ax: Any, tl: Timeline, row: dict[str, int], scale: float, line_collection: Any) -> None:
    """Doorbells and exit IPIs: arrows when few, else one thin translucent line each; one
    legend entry for them either way."""
    if tl.flows:
        names = " / ".join(sorted({f.name for f in tl.flows}))
        ax.plot([], [], color="black", linewidth=0.8, label=f"{names}: sender -> receiver")
    if len(tl.flows) <= PNG_ARROW_HEADS:
        for flow in tl.flows:
            ax.annotate(
                "",
                xy=(flow.ts / scale, row[flow.dst]),
                xytext=(flow.ts / scale, row[flow.src]),
                arrowprops={"arrowstyle": "->", "lw": 0.8},
            )
        return
    segments = [((f.ts / scale, row[f.src]), (f.ts / scale, row[f.dst])) for f in tl.flows]
    ax.add_collection(line_collection(segments, colors="black", linewidths=0.3, alpha=0.15, zorder=2))
