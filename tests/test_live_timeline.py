"""The timeline and the --report folder made from a live `pyvcore diff` trace (the cede scenario).

The live run is the session's shared one (tests/conftest.py); each output
format is checked as tests/test_timeline.py checks it on recorded traces:
the trace-event JSON read back per lane, the page rendered by headless
Chromium (lanes in its DOM, screenshot kept), the PNG non-trivial.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
from test_timeline import _chromium, _Dom, trace_events

from pyvcore.diff import result_of
from pyvcore.diff_report import write_report
from pyvcore.timeline import load, write

pytestmark = [pytest.mark.lab, pytest.mark.gdb]


def test_timeline_of_a_live_cede_trace_in_every_format(live_run: Callable[..., Any], tmp_path: Path) -> None:
    run = live_run("cede")
    tl = load(run.trace)
    snapshots = len(run.snapshots)
    assert tl.stops == snapshots > 0
    parsed = trace_events(write(tl, tmp_path / "cede.json"))
    threads = {name: c for name, c in parsed["lanes"].items() if name.startswith("cpu ")}
    assert len(threads) == 4 and all(c == Counter({"i": snapshots}) for c in threads.values())
    states = {e["cat"] for e in parsed["events"] if e.get("ph") == "i"}
    assert {"entering", "exiting"} <= states  # the run passes through entry and exit

    import subprocess

    page = write(tl, tmp_path / "cede.html")
    browser = _chromium()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'p'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    parsed_dom = _Dom()
    parsed_dom.feed(dom.stdout)
    assert [lane for lane in parsed_dom.lanes if lane.startswith("cpu")] == [
        "cpu 0",
        "cpu 1",
        "cpu 2",
        "cpu 3",
    ]
    shot = Path(os.environ.get("PYVCORE_ARTIFACTS") or tmp_path) / "timeline-live-cede.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1400,480", page.as_uri()], timeout=120, check=True
    )
    print(f"timeline screenshot: {shot}")

    image = pytest.importorskip("matplotlib.image")
    pixels = image.imread(write(tl, tmp_path / "cede.png"))
    assert (
        pixels.shape[1] > 1000
        and len({tuple(px[:3]) for px in pixels[::9, ::9].reshape(-1, pixels.shape[2])}) > 10
    )


def test_report_folder_of_a_live_run(live_run: Callable[..., Any], tmp_path: Path) -> None:
    run = live_run("cede")
    result = result_of(run)
    written = {p.name for p in write_report(tmp_path, result, "table")}
    assert {
        "table.txt",
        "diff.json",
        "trace.jsonl",
        "timeline.html",
        "timeline.json",
        "console.log",
    } <= written
    doc = json.loads((tmp_path / "diff.json").read_text())
    assert doc["verdict"] == result.verdict and doc["judged"] == result.judged
    assert "PYVCORE" in (tmp_path / "console.log").read_text()
    assert len((tmp_path / "trace.jsonl").read_text().splitlines()) == len(run.records)
