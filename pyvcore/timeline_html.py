"""The self-contained HTML page of a :class:`pyvcore.timeline.Timeline`: one canvas, the data once.

The page holds the timeline once, as compact JSON in a ``<script
type="application/json">`` element, and a small script draws it on a canvas
(wheel: zoom, drag: pan, double click: the whole trace, click: the fields of what is under
the pointer).  Nothing is loaded from the network.  What keeps a long trace
small (a 5 s cede trace is 60,000 events, 28,000 states):

* every distinct string (a state's label) and every distinct field record (a
  thread's ``kvm_hstate`` at a slice's start) is written once, in a table; a
  slice refers to them by index;
* times are integers of 1/1000 of the unit (nanoseconds of timebase time, or
  thousandths of a stop), each lane's start times delta-coded, each slice's
  length next to it; a point (a sampled stop) has no length;
* the lanes already hold one slice per run of one state: a state lasts from the
  change that made it to the next change (:mod:`pyvcore.timeline_events`).

Short states are drawn last and at least two pixels wide (``ACCENT``): a nap of a
millisecond in a trace of twenty seconds is a stroke, not lost under its
neighbours.  A table under the picture counts each state per lane with its total
time, so a state too short to see at a zoom is still listed.
"""

from __future__ import annotations

import html
import json
from collections import Counter, defaultdict
from typing import Any

from pyvcore.timeline import STATES, Lane, Timeline

LABEL_W, LANE_H, PLOT_W, TOP = 230, 28, 1100, 44
# Drawn on top of the other states, in this order (the last on top), never thinner than two pixels.
ACCENT = ("guest", "napping")
# Integers per unit of time in the page's data (ns per µs of timebase, or 1/1000 stop).
PER_UNIT = 1000

_SCRIPT = r"""
(function () {
  var D = JSON.parse(document.getElementById('timeline-data').textContent);
  var cv = document.getElementById('timeline'), ctx = cv.getContext('2d');
  var LW = D.geometry[0], LH = D.geometry[1], W = D.geometry[2], TOP = D.geometry[3];
  var H = TOP + LH * D.lanes.length + 8, dpr = window.devicePixelRatio || 1;
  cv.width = (LW + W + 10) * dpr; cv.height = H * dpr;
  cv.style.width = (LW + W + 10) + 'px'; cv.style.height = H + 'px';
  ctx.scale(dpr, dpr);
  function undelta(a) { var acc = 0; for (var i = 0; i < a.length; i++) { acc += a[i]; a[i] = acc; } }
  D.lanes.forEach(function (lane) { undelta(lane.t); });
  var ft = D.flows.map(function (f) { return f[0]; }); undelta(ft);
  D.flows.forEach(function (f, i) { f[0] = ft[i]; });
  var view = [D.v0, D.v1], arrows = document.getElementById('arrows'), MAX_ARROWS = 400;
  function X(t) { return LW + (t - view[0]) / (view[1] - view[0]) * W; }
  function T(x) { return view[0] + (x - LW) / W * (view[1] - view[0]); }
  var UNITS = D.ordinal ? [[1, D.unit]] : [[1e6, 's'], [1e3, 'ms'], [1, 'µs'], [1e-3, 'ns']];
  function unitFor(span) {
    for (var i = 0; i < UNITS.length; i++) if (span >= 2 * UNITS[i][0] || i === UNITS.length - 1) return UNITS[i];
  }
  function fmt(t, u, digits) { var v = t / D.per / u[0]; return (+v.toPrecision(digits || 12)).toString(); }
  function axis() {
    var span = (view[1] - view[0]) / D.per, u = unitFor(span), raw = span / u[0] / 8;
    var p = Math.pow(10, Math.floor(Math.log10(raw))), step = p;
    [1, 2, 5, 10].some(function (m) { step = m * p; return m * p >= raw; });
    if (D.ordinal) step = Math.max(1, step);
    ctx.fillStyle = '#333'; ctx.strokeStyle = '#ddd'; ctx.font = '11px sans-serif'; ctx.textAlign = 'center';
    var s = step * u[0] * D.per, first = Math.ceil(view[0] / s) * s;
    for (var t = first; t <= view[1]; t += s) {
      var x = X(t); ctx.beginPath(); ctx.moveTo(x, TOP - 6); ctx.lineTo(x, H - 8); ctx.stroke();
      ctx.fillText(fmt(Math.round(t / s) * s, u), x, TOP - 9);
    }
    ctx.textAlign = 'left';
    document.getElementById('range').textContent =
      'shown: ' + fmt(view[0], u, 7) + ' .. ' + fmt(view[1], u, 7) + ' ' + u[1] + ' (' + D.axis + ')';
  }
  var PASSES = [];
  for (var p = 0; p <= Math.max.apply(null, D.accent.concat([0])); p++) PASSES.push(p);
  function slices(lane, pass, fn) {
    for (var i = 0; i < lane.t.length; i++) if (D.accent[lane.s[i]] === pass) fn(i);
  }
  function draw() {
    ctx.clearRect(0, 0, LW + W + 10, H);
    ctx.font = '12px monospace'; ctx.fillStyle = '#000'; ctx.textAlign = 'left';
    D.lanes.forEach(function (lane, r) { ctx.fillText(lane.title, 8, TOP + r * LH + LH / 2 + 4); });
    ctx.save(); ctx.beginPath(); ctx.rect(LW, 0, W, H); ctx.clip();
    axis();
    var points = 0;
    D.lanes.forEach(function (lane, r) {
      var y = TOP + r * LH;
      ctx.fillStyle = '#fafafa'; ctx.fillRect(LW, y, W, LH - 2);
      PASSES.forEach(function (pass) {
        slices(lane, pass, function (i) {
          var a = X(lane.t[i]);
          ctx.fillStyle = D.colours[lane.s[i]];
          if (lane.d) {
            var b = X(lane.t[i] + lane.d[i]);
            if (b < LW || a > LW + W) return;
            a = Math.floor(a);  // whole pixels: no blending of neighbours into a colour of no state
            ctx.fillRect(a, y + 3, Math.max(Math.round(b) - a, pass ? 2 : 1), LH - 8);
          } else {
            if (a < LW - 6 || a > LW + W + 6) return;
            ctx.beginPath(); ctx.arc(a, y + LH / 2 - 1, 5, 0, 2 * Math.PI); ctx.fill(); points++;
          }
        });
      });
      if (lane.group === 'violations') {
        ctx.fillStyle = D.violationColour;
        D.violations.forEach(function (v) {
          var x = X(v[0]); ctx.beginPath(); ctx.moveTo(x, y + 2); ctx.lineTo(x + 6, y + LH - 4);
          ctx.lineTo(x - 6, y + LH - 4); ctx.fill();
        });
      }
    });
    var inView = D.flows.filter(function (f) { var x = X(f[0]); return x >= LW && x <= LW + W; });
    document.getElementById('arrows-note').textContent = inView.length > MAX_ARROWS ?
      inView.length + ' arrows here: zoom in to see them (at most ' + MAX_ARROWS + ' are drawn)' : '';
    if (arrows.checked && inView.length <= MAX_ARROWS) {
      ctx.strokeStyle = 'rgba(0,0,0,0.55)'; ctx.fillStyle = 'rgba(0,0,0,0.55)';
      inView.forEach(function (f) {
        var x = X(f[0]); if (x < LW || x > LW + W) return;
        var y1 = TOP + f[1] * LH + LH / 2, y2 = TOP + f[2] * LH + LH / 2, dir = y2 > y1 ? 1 : -1;
        ctx.beginPath(); ctx.moveTo(x, y1); ctx.lineTo(x, y2); ctx.stroke();
        ctx.beginPath(); ctx.moveTo(x, y2); ctx.lineTo(x - 3, y2 - 6 * dir); ctx.lineTo(x + 3, y2 - 6 * dir); ctx.fill();
      });
    }
    ctx.restore();
    cv.dataset.points = points;
  }
  function zoomTo(a, b) { view = [a, b]; draw(); }
  cv.addEventListener('wheel', function (e) {
    e.preventDefault();
    var r = cv.getBoundingClientRect(), f = e.deltaY < 0 ? 0.8 : 1.25, at = T(e.clientX - r.left);
    zoomTo(at - (at - view[0]) * f, at + (view[1] - at) * f);
  }, {passive: false});
  var drag = null;
  cv.addEventListener('mousedown', function (e) { drag = [e.clientX, view[0], view[1], false]; });
  window.addEventListener('mouseup', function () { setTimeout(function () { drag = null; }, 0); });
  window.addEventListener('mousemove', function (e) {
    if (!drag || e.clientX === drag[0]) return;
    var dt = (e.clientX - drag[0]) / W * (drag[2] - drag[1]); drag[3] = true;
    zoomTo(drag[1] - dt, drag[2] - dt);
  });
  cv.addEventListener('dblclick', function () { zoomTo(D.t0, D.t1); });
  arrows.addEventListener('change', draw);
  function when(t) { var u = unitFor((view[1] - view[0]) / D.per); return fmt(t, u) + ' ' + u[1]; }
  function show(obj) { document.getElementById('details').textContent = JSON.stringify(obj, null, 1); }
  cv.addEventListener('click', function (e) {
    if (drag && drag[3]) return;
    var rect = cv.getBoundingClientRect(), x = e.clientX - rect.left, y = e.clientY - rect.top;
    var r = Math.floor((y - TOP) / LH), lane = D.lanes[r];
    if (!lane) return;
    if (lane.group === 'violations') {
      var near = D.violations.filter(function (v) { return Math.abs(X(v[0]) - x) <= 6; })[0];
      if (near) show({invariant: near[1], message: D.strings[near[2]], at: D.strings[near[3]], time: when(near[0])});
      return;
    }
    var hit = -1;
    PASSES.forEach(function (pass) {
      slices(lane, pass, function (i) {
        var a = X(lane.t[i]), b = lane.d ? Math.max(X(lane.t[i] + lane.d[i]), a + (pass ? 2 : 1)) : a;
        if (lane.d ? (x >= a && x <= b) : Math.abs(x - a) <= 5) hit = i;
      });
    });
    if (hit < 0) return;
    var info = {state: D.strings[lane.l[hit]], at: when(lane.t[hit])};
    if (lane.d) info.lasts = when(lane.d[hit]);
    Object.assign(info, D.records[lane.a[hit]]);
    show(info);
  });
  document.querySelectorAll('[data-zoom]').forEach(function (el) {
    el.addEventListener('click', function () {
      var t = +el.dataset.zoom, half = (D.t1 - D.t0) / 200; zoomTo(t - half, t + half);
    });
  });
  draw();
})();
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _lanes(tl: Timeline) -> list[Lane]:
    lanes = tl.sorted_lanes()
    if tl.violations and not any(lane.group == "violations" for lane in lanes):
        lanes.append(Lane("violations", "violations", "violations"))
    return lanes


class _Table:
    """Distinct values, each written once: ``index(value)`` is its position in ``items``."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._seen: dict[str, int] = {}

    def index(self, value: Any) -> int:
        key = json.dumps(value, sort_keys=True)
        if key not in self._seen:
            self._seen[key] = len(self.items)
            self.items.append(value)
        return self._seen[key]


def _ticks(value: float) -> int:
    return round(value * PER_UNIT)


def page_data(tl: Timeline) -> dict[str, Any]:
    """The page's data: every mark, flow and violation of ``tl``, strings and records once.

    Shape: ``lanes`` [{title, key, group, t (delta-coded starts), d (lengths, absent for
    points), s (index in ``states``), l (index in ``strings``), a (index in ``records``)}],
    ``flows`` [[delta-coded t, source row, target row, name index]], ``violations`` [[t,
    invariant, message index, stop index]]; times are integers, ``per`` of them to the unit."""
    lanes = _lanes(tl)
    row = {lane.key: i for i, lane in enumerate(lanes)}
    states, strings, records = _Table(), _Table(), _Table()
    by_lane: dict[str, list[Any]] = defaultdict(list)
    for mark in tl.marks:
        by_lane[mark.lane].append(mark)
    out_lanes = []
    for lane in lanes:
        marks = by_lane.get(lane.key, [])
        starts = [_ticks(m.ts) for m in marks]
        entry: dict[str, Any] = {
            "key": lane.key,
            "title": lane.title,
            "group": lane.group,
            "t": [b - a for a, b in zip([0, *starts], starts)],
            "s": [states.index(m.state) for m in marks],
            "l": [strings.index(m.label) for m in marks],
            "a": [records.index(m.args) for m in marks],
        }
        if any(m.end is not None for m in marks):
            entry["d"] = [
                max(_ticks(m.end if m.end is not None else m.ts) - t, 0) for m, t in zip(marks, starts)
            ]
        out_lanes.append(entry)
    flow_ts = [_ticks(f.ts) for f in tl.flows]
    t0, t1 = tl.span
    if t1 <= t0:
        t0, t1 = t0 - 0.5, t1 + 0.5
    pad = (t1 - t0) * 0.02
    v0, v1 = tl.kvm_span or (t0, t1)
    vpad = (v1 - v0) * 0.02
    return {
        "unit": tl.unit,
        "ordinal": tl.ordinal,
        "axis": f"{tl.unit} number" if tl.ordinal else "timebase time",
        "per": PER_UNIT,
        "t0": _ticks(t0 - pad),
        "t1": _ticks(t1 + pad),
        # the view it opens on: KVM's activity (Timeline.kvm_span), else the whole trace
        "v0": _ticks(v0 - vpad),
        "v1": _ticks(v1 + vpad),
        "geometry": [LABEL_W, LANE_H, PLOT_W, TOP],
        "lanes": out_lanes,
        "states": states.items,
        "colours": [STATES.get(s, "#607d8b") for s in states.items],
        "accent": [ACCENT.index(s) + 1 if s in ACCENT else 0 for s in states.items],
        "violationColour": STATES["violation"],
        "strings": strings.items,
        "records": records.items,
        "flows": [
            [b - a, row[f.src], row[f.dst], strings.index(f.name)]
            for f, a, b in zip(tl.flows, [0, *flow_ts], flow_ts)
        ],
        "violations": [
            [_ticks(v.ts), v.invariant, strings.index(v.message), strings.index(v.stop)]
            for v in tl.violations
        ],
    }


def _duration(value: float, unit: str) -> str:
    if unit in ("stop", "event"):
        return f"{value:g} {unit}s"
    for scale, name in ((1e6, "s"), (1e3, "ms")):
        if value >= scale:
            return f"{value / scale:.3g} {name}"
    return f"{value:.3g} µs"


def _summary_table(tl: Timeline, lanes: list[Lane]) -> str:
    """Per lane, each state with how many slices (or points) and how long in all."""
    count: dict[str, Counter[str]] = defaultdict(Counter)
    total: dict[str, Counter[str]] = defaultdict(Counter)
    for m in tl.marks:
        count[m.lane][m.state] += 1
        if m.end is not None:
            total[m.lane][m.state] += max(m.end - m.ts, 0.0)  # type: ignore[assignment]
    rows = []
    for lane in lanes:
        if lane.group == "violations":
            rows.append(
                f'<tr class="lane" data-lane="{_esc(lane.key)}"><td>{_esc(lane.title)}</td>'
                f"<td>{_esc(tl.violations_text())} (listed above)</td></tr>"
            )
            continue
        cells = []
        order = {state: i for i, state in enumerate(STATES)}
        for state, n in sorted(count[lane.key].items(), key=lambda kv: order.get(kv[0], len(order))):
            held = f", {_duration(total[lane.key][state], tl.unit)}" if total[lane.key] else ""
            colour = STATES.get(state, "#607d8b")
            cells.append(
                f'<span class="key" data-state="{_esc(state)}" data-count="{n}"><i style="background:{colour}"></i>'
                f"{_esc(state)} {n}{held}</span>"
            )
        rows.append(
            f'<tr class="lane" data-lane="{_esc(lane.key)}"><td>{_esc(lane.title)}</td><td>{"".join(cells)}</td></tr>'
        )
    return (
        f'<table id="states"><tr><th>lane</th><th>states: how many, how long</th></tr>{"".join(rows)}</table>'
    )


def _not_judged_text(tl: Timeline) -> str:
    """``, <b>N stops not judged</b> (...)`` in the summary: such a stop is never clean."""
    text = tl.not_judged_text()
    if not text:
        return ""
    head, _, rest = text.partition(" (")
    return f', <b class="not-judged">{_esc(head)}</b> ({_esc(rest)}'


def _not_judged_list(tl: Timeline) -> str:
    """One line per stop the checker could not judge (click: zoom there)."""
    items = "".join(
        f'<li class="not-judged" data-zoom="{_ticks(ts)}">line {line} ({_esc(stop)}): not judged: {_esc(why)}</li>'
        for ts, stop, line, why in tl.not_judged
    )
    return f'<ul id="not-judged">{items}</ul>' if items else ""


def _violation_list(tl: Timeline) -> str:
    """One line per invariant: how many violations, the first one's message (click: zoom there)."""
    first: dict[int, Any] = {}
    for v in tl.violations:
        first.setdefault(v.invariant, v)
    count = tl.violation_counts()
    items = "".join(
        f'<li class="violation" data-invariant="{n}" data-zoom="{_ticks(v.ts)}">invariant {n}: '
        f"{count.get(n, 0):,}x, first at {_esc(v.stop)}: {_esc(v.message)}</li>"
        for n, v in sorted(first.items())
    )
    return f'<ul id="violations">{items}</ul>' if items else ""


def html_page(tl: Timeline) -> str:
    """One self-contained HTML page: the data once (JSON), a canvas, and the script that draws it."""
    lanes = _lanes(tl)
    data = json.dumps(page_data(tl), separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")
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
    threads = sum(1 for ln in lanes if ln.group == "threads")
    what = "stops" if tl.source == "sampled" else "state changes (slices)"
    kvm = tl.kvm_span
    opens = (
        f"It opens on KVM's activity, {kvm[0] / 1e6:.2f} s .. {kvm[1] / 1e6:.2f} s of timebase time (the "
        f"trace spans {tl.span[0] / 1e6:.2f} s .. {tl.span[1] / 1e6:.2f} s: the boot before KVM ran is "
        "left of the view); double click shows the whole trace. "
        if kvm
        else ""
    )
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>pyvcore timeline: {_esc(tl.title)}</title>
<style>
body{{font:13px sans-serif;margin:12px}} canvas{{border:1px solid #ccc;cursor:grab;user-select:none}}
.key{{margin-right:12px;white-space:nowrap}} .key i{{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}}
#details{{font:12px monospace;white-space:pre-wrap;background:#f4f4f4;padding:6px;min-height:1.5em}}
#states td{{padding:2px 8px;font:12px monospace;vertical-align:top}} .violation{{color:#b00;cursor:pointer}}
.not-judged{{color:#8a5a00;cursor:pointer}}
</style></head><body>
<h3>pyvcore timeline: {_esc(tl.title)}</h3>
<p id="summary">{_esc(tl.source)} trace, {threads} hardware threads, {tl.stops or len(tl.marks)} {what},
{len(tl.flows)} arrows, <b>{_esc(tl.violations_text())}</b>{_not_judged_text(tl)}. {_esc(honest)}
{_esc(opens)}Wheel: zoom, drag: pan, double click: the whole trace, click: details. Short states ({", ".join(ACCENT)}) are drawn
on top, at least two pixels wide: where slices are denser than pixels, the table below has the totals.</p>
<p>{legend} <label><input type="checkbox" id="arrows" checked> arrows (doorbells, exit IPIs)</label>
<span id="arrows-note"></span></p>
<div id="range"></div>
<canvas id="timeline" width="{LABEL_W + PLOT_W + 10}" height="{TOP + LANE_H * len(lanes) + 8}"></canvas>
<div id="details">click a slice, point or violation</div>
{_violation_list(tl)}
{_not_judged_list(tl)}
{_summary_table(tl, lanes)}
<script type="application/json" id="timeline-data">{data}</script>
<script>{_SCRIPT}</script>
</body></html>
"""
