"""Writers of a :class:`pyvcore.timeline.Timeline`: trace-event JSON, a self-contained page, a PNG.

The JSON follows the Trace Event Format that chrome://tracing and Perfetto read
(one object with ``traceEvents``; ``ph`` "M" names processes and threads, "X"
complete slices, "i" instants, "s"/"f" flow arrows; ``ts``/``dur`` in
microseconds).  Process 1 holds the hardware threads, 2 the vcores, 3 the
violations.  A sampled trace has only instants ("i"): the stops are points.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyvcore.timeline import STATES, Flow, Lane, Timeline

PIDS = {"threads": 1, "vcores": 2, "violations": 3}
GROUP_NAMES = {"threads": "hardware threads", "vcores": "vcores", "violations": "violations"}
# A sampled trace without timebase is laid out one stop per millisecond.
STOP_US = 1000.0


def _lanes(tl: Timeline) -> list[Lane]:
    lanes = tl.sorted_lanes()
    if tl.violations and not any(lane.group == "violations" for lane in lanes):
        lanes.append(Lane("violations", "violations", "violations"))
    return lanes


def chrome_trace(tl: Timeline) -> dict[str, Any]:
    """The trace-event JSON object of ``tl`` (``json.dumps`` it to a file)."""
    scale = STOP_US if tl.unit == "stop" else 1.0
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
    for mark in tl.marks:
        pid, tid = tids[mark.lane]
        event: dict[str, Any] = {
            "name": mark.label,
            "cat": mark.state,
            "pid": pid,
            "tid": tid,
            "ts": mark.ts * scale,
            "args": mark.args,
        }
        if mark.end is None:
            event.update(ph="i", s="t")
        else:
            event.update(ph="X", dur=max(mark.end - mark.ts, 0.0) * scale)
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
                "ts": flow.ts * scale,
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
                "ts": v.ts * scale,
                "args": {"invariant": v.invariant, "message": v.message, "stop": v.stop},
            }
        )
    other = {
        "source": tl.source,
        "title": tl.title,
        "x": "stop number, 1 ms per stop" if tl.unit == "stop" else "timebase, microseconds",
    }
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


# ---------------------------------------------------------------------- HTML
LABEL_W, LANE_H, PLOT_W, TOP = 230, 28, 1100, 40

_SCRIPT = r"""
(function () {
  var svg = document.getElementById('timeline'), plot = document.getElementById('plot');
  var t0 = +svg.dataset.t0, t1 = +svg.dataset.t1, x0 = +svg.dataset.x0, w = +svg.dataset.w;
  var view = [t0, t1];
  function X(t) { return x0 + (t - view[0]) / (view[1] - view[0]) * w; }
  function draw() {
    plot.querySelectorAll('[data-t]').forEach(function (el) {
      var a = X(+el.dataset.t);
      if (el.tagName === 'rect') { el.setAttribute('x', a); el.setAttribute('width', Math.max(1, X(+el.dataset.t2) - a)); }
      else if (el.tagName === 'circle') { el.setAttribute('cx', a); }
      else if (el.tagName === 'line') { el.setAttribute('x1', a); el.setAttribute('x2', X(+el.dataset.t)); }
      else if (el.tagName === 'path') { el.setAttribute('transform', 'translate(' + a + ',0)'); }
    });
    document.getElementById('range').textContent = view[0].toFixed(2) + ' .. ' + view[1].toFixed(2) + ' ' + svg.dataset.unit;
  }
  svg.addEventListener('wheel', function (e) {
    e.preventDefault();
    var r = svg.getBoundingClientRect(), f = e.deltaY < 0 ? 0.8 : 1.25;
    var at = view[0] + (e.clientX - r.left - x0) / w * (view[1] - view[0]);
    view = [at - (at - view[0]) * f, at + (view[1] - at) * f];
    draw();
  }, {passive: false});
  var drag = null;
  svg.addEventListener('mousedown', function (e) { drag = [e.clientX, view[0], view[1]]; });
  window.addEventListener('mouseup', function () { drag = null; });
  window.addEventListener('mousemove', function (e) {
    if (!drag) return;
    var dt = (e.clientX - drag[0]) / w * (drag[2] - drag[1]);
    view = [drag[1] - dt, drag[2] - dt];
    draw();
  });
  svg.addEventListener('dblclick', function () { view = [t0, t1]; draw(); });
  plot.addEventListener('click', function (e) {
    var el = e.target.closest('[data-info]');
    if (el) document.getElementById('details').textContent = el.dataset.info;
  });
  draw();
})();
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


@dataclass(frozen=True)
class _Scale:
    """Where a time (x, pixels) and a lane (y, pixels) are drawn on the page."""

    t0: float
    t1: float
    row: dict[str, int]

    def x(self, t: float) -> float:
        return LABEL_W + (t - self.t0) / (self.t1 - self.t0) * PLOT_W

    def y(self, lane: str) -> int:
        return TOP + LANE_H * self.row[lane]


def _lane_svg(tl: Timeline, lane: Lane, sc: _Scale) -> str:
    """One lane's SVG group: its background, its points and slices, and (the violations
    lane) a triangle per violation."""
    yy = sc.y(lane.key)
    parts = [
        f'<g class="lane lane-{lane.group}" data-lane="{_esc(lane.key)}">'
        f'<rect class="lane-bg" x="{LABEL_W}" y="{yy}" width="{PLOT_W}" height="{LANE_H - 2}" fill="#fafafa"/>'
    ]
    for mark in (m for m in tl.marks if m.lane == lane.key):
        info = _esc(json.dumps({"state": mark.label, **mark.args}))
        colour = STATES.get(mark.state, "#607d8b")
        tip = f"<title>{_esc(mark.label)} @ {mark.ts:g}</title>"
        if mark.end is None:
            parts.append(
                f'<circle class="point state-{mark.state}" data-t="{mark.ts}" data-info="{info}" '
                f'cx="{sc.x(mark.ts):.1f}" cy="{yy + LANE_H / 2 - 1}" r="5" fill="{colour}">{tip}</circle>'
            )
        else:
            parts.append(
                f'<rect class="slice state-{mark.state}" data-t="{mark.ts}" data-t2="{mark.end}" data-info="{info}" '
                f'x="{sc.x(mark.ts):.1f}" y="{yy + 3}" width="{max(1.0, sc.x(mark.end) - sc.x(mark.ts)):.1f}" '
                f'height="{LANE_H - 8}" fill="{colour}">{tip}</rect>'
            )
    if lane.group == "violations":
        for v in tl.violations:
            info = _esc(json.dumps({"invariant": v.invariant, "message": v.message, "stop": v.stop}))
            parts.append(
                f'<path class="violation" data-invariant="{v.invariant}" data-t="{v.ts}" data-info="{info}" '
                f'transform="translate({sc.x(v.ts):.1f},0)" d="M0,{yy + 2} l6,{LANE_H - 6} l-12,0 z" '
                f'fill="{STATES["violation"]}"><title>invariant {v.invariant}: {_esc(v.message)} '
                f"({_esc(v.stop)})</title></path>"
            )
    parts.append("</g>")
    return "".join(parts)


def _flow_svg(flow: Flow, sc: _Scale) -> str:
    """One arrow between two lanes (a doorbell, an IPI, ...)."""
    return (
        f'<line class="flow" data-t="{flow.ts}" x1="{sc.x(flow.ts):.1f}" x2="{sc.x(flow.ts):.1f}" '
        f'y1="{sc.y(flow.src) + LANE_H / 2}" y2="{sc.y(flow.dst) + LANE_H / 2}" stroke="#000" '
        f'marker-end="url(#arrow)"><title>{_esc(flow.name)} {_esc(flow.src)} -> {_esc(flow.dst)}</title></line>'
    )


def html_page(tl: Timeline) -> str:
    """One self-contained HTML page: inline SVG lanes + a small script (wheel zoom, drag, click)."""
    lanes = _lanes(tl)
    t0, t1 = tl.span
    if t1 <= t0:
        t0, t1 = t0 - 0.5, t1 + 0.5
    pad = (t1 - t0) * 0.02
    t0, t1 = t0 - pad, t1 + pad
    sc = _Scale(t0, t1, {lane.key: i for i, lane in enumerate(lanes)})
    height = TOP + LANE_H * len(lanes) + 20
    parts = [_lane_svg(tl, lane, sc) for lane in lanes] + [_flow_svg(flow, sc) for flow in tl.flows]
    labels = "".join(
        f'<text class="lane-label" x="8" y="{sc.y(lane.key) + LANE_H / 2 + 4}">{_esc(lane.title)}</text>'
        for lane in lanes
    )
    legend = " ".join(
        f'<span class="key"><i style="background:{c}"></i>{_esc(s)}</span>'
        for s, c in STATES.items()
        if s != "vcore"
    )
    honest = (
        "Sampled trace: each dot is one stop; nothing is drawn between stops because nothing was seen there."
        if tl.source == "sampled"
        else "Continuous event log: each slice lasts from the store that began it to the next change."
    )
    unit = "stop" if tl.unit == "stop" else "µs"
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>pyvcore timeline: {_esc(tl.title)}</title>
<style>
body{{font:13px sans-serif;margin:12px}} svg{{border:1px solid #ccc;cursor:grab;user-select:none}}
.lane-label{{font:12px monospace}} .key{{margin-right:12px}} .key i{{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}}
#details{{font:12px monospace;white-space:pre-wrap;background:#f4f4f4;padding:6px;min-height:1.5em}}
</style></head><body>
<h3>pyvcore timeline: {_esc(tl.title)}</h3>
<p id="summary">{_esc(tl.source)} trace, {sum(1 for ln in lanes if ln.group == "threads")} hardware threads,
{tl.stops or len(tl.marks)} {"stops" if tl.source == "sampled" else "states"}, {len(tl.flows)} arrows,
<b>{len(tl.violations)} violations</b>. {_esc(honest)} Wheel: zoom, drag: pan, double click: reset, click: details.</p>
<p>{legend}</p>
<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{LABEL_W + PLOT_W + 10}" height="{height}"
 data-t0="{t0}" data-t1="{t1}" data-x0="{LABEL_W}" data-w="{PLOT_W}" data-unit="{unit}">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">
<path d="M0,0 L10,5 L0,10 z"/></marker>
<clipPath id="clip"><rect x="{LABEL_W}" y="0" width="{PLOT_W}" height="{height}"/></clipPath></defs>
<text x="{LABEL_W}" y="20" id="range"></text>
{labels}
<g id="plot" clip-path="url(#clip)">{"".join(parts)}</g>
</svg>
<div id="details">click a point, slice or violation</div>
<script>{_SCRIPT}</script>
</body></html>
"""


# ----------------------------------------------------------------------- PNG
def png_picture(tl: Timeline, out: Path) -> None:
    """A static picture (matplotlib, Agg backend): points or slices per lane, arrows, violations."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from pyvcore.timeline import TimelineError

        raise TimelineError("a .png needs matplotlib (pip install matplotlib)") from None
    lanes = _lanes(tl)
    row = {lane.key: len(lanes) - 1 - i for i, lane in enumerate(lanes)}
    fig, ax = plt.subplots(figsize=(12, 0.45 * len(lanes) + 1.6), dpi=110)
    seen: set[str] = set()
    for mark in tl.marks:
        colour = STATES.get(mark.state, "#607d8b")
        label = None if mark.state in seen else mark.state
        seen.add(mark.state)
        if mark.end is None:
            ax.scatter([mark.ts], [row[mark.lane]], s=28, color=colour, label=label, zorder=3)
        else:
            ax.broken_barh(
                [(mark.ts, max(mark.end - mark.ts, 1e-9))],
                (row[mark.lane] - 0.35, 0.7),
                color=colour,
                label=label,
            )
    for flow in tl.flows:
        ax.annotate(
            "",
            xy=(flow.ts, row[flow.dst]),
            xytext=(flow.ts, row[flow.src]),
            arrowprops={"arrowstyle": "->", "lw": 0.8},
        )
    for v in tl.violations:
        ax.scatter([v.ts], [row["violations"]], marker="v", s=60, color=STATES["violation"], zorder=4)
    if tl.violations:
        first = tl.violations[0]
        ax.annotate(
            f"invariant {first.invariant}",
            (first.ts, row["violations"]),
            xytext=(4, 6),
            textcoords="offset points",
            fontsize=8,
            color=STATES["violation"],
        )
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels([lane.title for lane in reversed(lanes)], fontsize=8, family="monospace")
    ax.set_xlabel("stop number (points: sampled stops)" if tl.unit == "stop" else "time (µs, timebase)")
    ax.set_title(f"pyvcore timeline: {tl.title} ({tl.source}, {len(tl.violations)} violations)", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
