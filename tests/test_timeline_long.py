"""`pyvcore timeline` on a long event log: small files that keep every state change, short
naps that stay visible, round ticks.

The log is generated in the format of rust/core/src/shadow/mod.rs (pyvcore-events,
version 1): 15 s of host, then cycles of 2.5 ms in which each of 4 threads enters the
guest, cedes and naps for 1 ms (``napping`` = NAPPING_CEDE), wakes and leaves, as
kvmppc_h_cede / kvm_end_cede in arch/powerpc/kvm/book3s_hv_rmhandlers.S store them.
A nap is then a sixteenth of a pixel of the whole picture.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pyvcore.cli import main
from pyvcore.timeline import STATES, Timeline, load, write
from pyvcore.timeline_html import PER_UNIT, page_data

TB = 512_000_000  # ticks per second
VCORE = "0xc000000028186a00"
VCPUS = [f"0xc0000000042e{i:x}400" for i in range(4)]


def _long_log(path: Path, cycles: int = 800) -> Path:
    header = {"format": "pyvcore-events", "version": 1, "variant": "modern", "threads_per_core": 4}
    lines: list[dict[str, Any]] = [{**header, "tb_freq": TB}]
    seq = 0

    def ev(tb: int, cpu: int, field: str, new: Any) -> None:
        nonlocal seq
        seq += 1
        lines.append(
            {"seq": seq, "tb": tb, "cpu": cpu, "pc": "0xc0", "field": field, "old": None, "new": new}
        )

    for i in range(4):
        ev(TB + i, i, f"threads[{i}].kvm_hstate.hwthread_state", 0)
        ev(TB + 4 + i, 0, f"vcpus[{VCPUS[i]}].vcpu_id", i)
    start = 15 * TB
    for i in range(4):
        ev(start + i, 0, f"threads[{i}].kvm_hstate.kvm_vcpu", VCPUS[i])
        ev(start + 4 + i, 0, f"threads[{i}].kvm_hstate.kvm_vcore", VCORE)
        if i == 0:  # the vcore's timebase offset, read when it is found (0: the lab's), same store
            for f in ("tb_offset", "tb_offset_applied"):
                lines.append({**lines[-1], "field": f"vcores[{VCORE}].{f}", "new": "0x0"})
    period = TB * 25 // 10_000  # 2.5 ms
    for k in range(cycles):
        base = start + 1000 + k * period
        ev(base, 0, f"vcores[{VCORE}].vcore_state", 2)  # VCORE_RUNNING
        for i in range(4):
            t = base + 100 * i
            ev(t, i, f"threads[{i}].kvm_hstate.in_guest", 2)  # KVM_GUEST_MODE_GUEST
            ev(t + 51_200, i, f"threads[{i}].kvm_hstate.napping", 1)  # 0.1 ms: NAPPING_CEDE
            ev(t + 51_200 + 512_000, i, f"threads[{i}].kvm_hstate.napping", 0)  # 1 ms nap
            ev(t + 1_000_000, i, f"threads[{i}].kvm_hstate.in_guest", 0)
        ev(base + 1_100_000, 0, "threads[0].msgsnd", 1 + k % 3)
        ev(base + 1_200_000, 0, f"vcores[{VCORE}].vcore_state", 0)  # VCORE_INACTIVE
    end = start + 1000 + cycles * period
    lines.append({"seq": seq, "tb": end - 10, "invariant": 14, "message": "thread 1 napping"})
    lines.append({"end": True, "tb": end})
    path.write_text("\n".join(json.dumps(x, separators=(",", ":")) for x in lines) + "\n")
    return path


@pytest.fixture(scope="module")
def long_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _long_log(tmp_path_factory.mktemp("long") / "events.jsonl")


@pytest.fixture(scope="module")
def long_timeline(long_log: Path) -> Timeline:
    return load(long_log)


def _changes(tl: Timeline) -> int:
    """State changes drawn: one per slice (a run of one state) and per arrow and violation."""
    return len(tl.marks) + len(tl.flows) + len(tl.violations)


def _embedded(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="timeline-data">(.*?)</script>', page, re.S)
    assert found, "the page has no embedded data"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def test_html_is_small_and_keeps_every_state_change(long_timeline: Timeline, tmp_path: Path) -> None:
    tl = long_timeline
    assert sum(m.state == "napping" for m in tl.marks) == 4 * 800
    page = write(tl, tmp_path / "long.html").read_text(encoding="utf-8")
    per_change = len(page.encode()) / _changes(tl)
    print(f"long.html: {len(page.encode()):,} bytes, {_changes(tl):,} changes, {per_change:.1f} bytes each")
    assert per_change < 40  # the SVG page with the data in every element: 427
    assert page.count("in guest (vcpu 1)") == 1  # each label is written once
    data = _embedded(page)
    assert data == json.loads(json.dumps(page_data(tl)))  # the page holds exactly the data
    # decoded, the page's lanes are the timeline's marks, to the nanosecond
    for lane in data["lanes"]:
        marks = [m for m in tl.marks if m.lane == lane["key"]]
        starts, at = [], 0
        for delta in lane["t"]:
            at += delta
            starts.append(at)
        got = [
            (t, d, data["states"][s], data["strings"][lab], data["records"][a])
            for t, d, s, lab, a in zip(
                starts, lane.get("d", [None] * len(starts)), lane["s"], lane["l"], lane["a"]
            )
        ]
        want = [
            (
                round(m.ts * PER_UNIT),
                None if m.end is None else round(m.end * PER_UNIT) - round(m.ts * PER_UNIT),
                m.state,
                m.label,
                m.args,
            )
            for m in marks
        ]
        assert got == want, lane["key"]
    assert len(data["flows"]) == len(tl.flows) == 800
    assert [v[1] for v in data["violations"]] == [14]


def test_perfetto_json_is_small_and_its_args_rebuild_every_record(
    long_timeline: Timeline, tmp_path: Path
) -> None:
    tl = long_timeline
    out = write(tl, tmp_path / "long.json")
    size = out.stat().st_size
    print(f"long.json: {size:,} bytes, {size / _changes(tl):.1f} bytes per change")
    assert size / _changes(tl) < 150  # full records on every slice, with blanks: 242
    events = json.loads(out.read_text())["traceEvents"]
    lane_of = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    record: dict[str, dict[str, Any]] = {}
    rebuilt: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e["ph"] == "X":
            lane = lane_of[(e["pid"], e["tid"])]
            record[lane] = {**record.get(lane, {}), **e.get("args", {})}
            rebuilt.setdefault(lane, []).append(dict(record[lane]))
    for lane, records in rebuilt.items():
        assert records == [m.args for m in tl.marks if m.lane == lane]  # lane titles are their keys


def _colour_pixels(pixels: Any, colour: str, tolerance: float = 0.06) -> int:
    rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    close = abs(pixels[:, :, 0] - rgb[0]) < tolerance
    for c in (1, 2):
        close &= abs(pixels[:, :, c] - rgb[c]) < tolerance
    return int(close.sum())


def test_png_draws_short_naps_on_top(long_timeline: Timeline, tmp_path: Path) -> None:
    image = pytest.importorskip("matplotlib.image", reason="the .png writer needs matplotlib")
    pixels = image.imread(write(long_timeline, tmp_path / "long.png"))
    naps = _colour_pixels(pixels, STATES["napping"])
    print(f"napping pixels: {naps}")
    assert naps > 2_000  # drawn under their neighbours, at their width: 216 (the legend's key)


def test_png_ticks_are_round_numbers(long_timeline: Timeline) -> None:
    pytest.importorskip("matplotlib", reason="the .png writer needs matplotlib")
    import matplotlib.pyplot as plt

    from pyvcore.timeline_render import png_figure

    # the first cycle alone, 15 s into the boot: ms ticks, no offset, no thirds
    narrow = Timeline("continuous", "us", "narrow", lanes=long_timeline.lanes)
    narrow.marks = [m for m in long_timeline.marks if 15_000_000 <= m.ts <= 15_000_600]
    for tl, unit in ((long_timeline, "(s)"), (narrow, "(ms)")):
        fig = png_figure(tl)
        fig.canvas.draw()
        ax = fig.axes[0]
        labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert ax.xaxis.get_offset_text().get_text() == ""
        assert unit in ax.get_xlabel()
        values = [float(x.replace("\u2212", "-")) for x in labels]
        steps = {round(b - a, 9) for a, b in zip(values, values[1:])}
        assert len(steps) == 1, labels
        step = steps.pop()
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert round(mantissa, 6) in (1, 2, 2.5, 5), labels
        assert all(abs(v / step - round(v / step)) < 1e-6 for v in values), labels
        plt.close(fig)


def test_cli_prints_the_size(long_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "long.html"
    assert main(["timeline", str(long_log), "-o", str(out)]) == 1  # drawn, with the log's violation
    printed = capsys.readouterr().out
    assert f"{out.stat().st_size:,} bytes" in printed
    # every count of the summary with the size's thousands separators (thousands of states)
    states, arrows = re.search(r", ([\d,]+) state changes, ([\d,]+) arrows, ", printed).groups()  # type: ignore[union-attr]
    assert int(states.replace(",", "")) >= 1000 and states == f"{int(states.replace(',', '')):,}", printed
    assert arrows == f"{int(arrows.replace(',', '')):,}", printed


def test_html_draws_short_naps_in_headless_chromium(long_log: Path, tmp_path: Path) -> None:
    from test_timeline import _chromium

    image = pytest.importorskip("matplotlib.image", reason="reading the screenshot needs matplotlib")
    page = tmp_path / "long.html"
    assert main(["timeline", str(long_log), "-o", str(page)]) == 1
    shot = tmp_path / "long-shot.png"
    done = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1400,420",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    naps = _colour_pixels(image.imread(shot), STATES["napping"])
    print(f"napping pixels on the page: {naps}")
    assert naps > 1_000  # the legend's key alone is ~150
