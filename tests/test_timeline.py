"""`pyvcore timeline`: lanes from a recorded lab trace and from an event log, in all three formats.

The HTML is rendered by headless Chromium (Debian's ``chromium``): its DOM after
the page's script ran is queried for the lanes and the violation marks, and a
screenshot is kept (its path is printed; set PYVCORE_ARTIFACTS to keep it in a
chosen directory).  The JSON is read back as trace-event JSON: slices and
instants counted per thread lane.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pyvcore.cli import main
from pyvcore.timeline import TimelineError, load, thread_state, write

LIVE = Path(__file__).parent / "checker_live"
STOCK = LIVE / "all-stock.jsonl"  # stock QEMU: invariant 8 at four stops
CEDE = LIVE / "cede-patched.jsonl"


def trace_events(path: Path) -> dict[str, Any]:
    """Parse a trace-event JSON file by the format's rules: lanes by (pid, tid) named by "M" events."""
    doc = json.loads(path.read_text())
    assert isinstance(doc["traceEvents"], list)
    names = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in doc["traceEvents"]
        if e["ph"] == "M" and e["name"] == "thread_name"
    }
    per_lane: dict[str, Counter[str]] = {}
    for e in doc["traceEvents"]:
        if e["ph"] in ("X", "i"):
            assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0
            if e["ph"] == "X":
                assert e["dur"] >= 0
            per_lane.setdefault(names[(e["pid"], e["tid"])], Counter())[e["ph"]] += 1
    flows = Counter(e["ph"] for e in doc["traceEvents"] if e["ph"] in ("s", "f"))
    return {"lanes": per_lane, "flows": flows, "events": doc["traceEvents"], "names": names}


def snapshots(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


# ------------------------------------------------------------------ sampled
def test_sampled_json_has_one_instant_per_stop_on_every_thread_lane(tmp_path: Path) -> None:
    out = write(load(STOCK), tmp_path / "t.json")
    parsed = trace_events(out)
    stops = snapshots(STOCK)
    threads = {name: c for name, c in parsed["lanes"].items() if name.startswith("cpu ")}
    assert sorted(threads) == ["cpu 0 (ptid 0)", "cpu 1 (ptid 1)", "cpu 2 (ptid 2)", "cpu 3 (ptid 3)"]
    for name, counts in threads.items():
        assert counts == Counter({"i": stops}), name  # points only: nothing drawn between stops
    from pyvcore import check_trace

    expected = len(check_trace(str(STOCK)).violations)
    assert expected > 0 and parsed["lanes"]["violations"] == Counter({"i": expected})
    marks = [e for e in parsed["events"] if e.get("cat") == "violation"]
    assert all(
        e["name"] == "invariant 8" and ("LPIDR" in e["args"]["message"] or "SDR1" in e["args"]["message"])
        for e in marks
    )


def test_thread_states_follow_the_kernel_fields() -> None:
    vcore = {"entry_exit_map": 0x203}  # entered {0,1}, exiting {1}
    ids = {0xC1: 7}
    hs = {"in_guest": 3, "napping": 0, "hwthread_state": 2, "ptid": 1, "kvm_vcpu": 0xC1, "kvm_vcore": 0xC0}
    assert thread_state(hs, vcore, ids) == ("guest", "in guest (vcpu 7)")
    assert thread_state({**hs, "napping": 1}, vcore, ids) == ("napping", "napping (cede)")
    assert thread_state({**hs, "napping": 2, "kvm_vcpu": 0}, vcore, ids) == ("napping", "napping (novcpu)")
    assert thread_state({**hs, "in_guest": 4}, vcore, ids)[0] == "exiting"
    assert thread_state({**hs, "in_guest": 4, "ptid": 0}, vcore, ids)[0] == "entering"
    assert thread_state({"in_guest": 0, "hwthread_state": 1}, None, ids)[0] == "idle"
    assert thread_state({"in_guest": 0, "hwthread_state": 2, "kvm_vcore": 0}, None, ids)[0] == "grabbed"
    assert thread_state({"in_guest": 0, "hwthread_state": 0, "hwthread_req": 0}, None, ids)[0] == "host"
    # hex strings (snapshot v2) read the same as integers
    assert thread_state({**hs, "kvm_vcpu": "0xc1"}, vcore, ids) == ("guest", "in guest (vcpu 7)")


def test_png_is_a_real_picture(tmp_path: Path) -> None:
    image = pytest.importorskip("matplotlib.image", reason="the .png writer needs matplotlib")
    out = write(load(STOCK), tmp_path / "t.png")
    pixels = image.imread(out)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 1000
    colours = {tuple(round(float(c), 2) for c in px[:3]) for row in pixels[::7] for px in row[::7]}
    assert len(colours) > 20
    red = ((pixels[:, :, 0] > 0.75) & (pixels[:, :, 1] < 0.15) & (pixels[:, :, 2] < 0.15)).sum()
    assert red > 30, "no violation mark drawn"


# --------------------------------------------------------------- continuous
def _event_log(tmp_path: Path) -> Path:
    """A log in the format of rust/core/src/shadow/mod.rs (pyvcore-events, version 1).

    (Long: the log's events written out one per line, as the plugin writes them.)"""
    header = {
        "format": "pyvcore-events",
        "version": 1,
        "variant": "modern",
        "threads_per_core": 2,
        "tb_freq": 512_000_000,
    }
    vc = "0xc000000028186a00"
    vcpu = "0xc0000000042e2400"
    events = [
        {
            "seq": 1,
            "tb": 1000,
            "cpu": 0,
            "pc": "0xc0",
            "field": "threads[0].kvm_hstate.kvm_vcore",
            "old": None,
            "new": vc,
        },
        # The vcore's timebase offset, read when it is found (0: the lab's).
        *(
            {
                "seq": 1,
                "tb": 1000,
                "cpu": 0,
                "pc": "0xc0",
                "field": f"vcores[{vc}].{f}",
                "old": None,
                "new": "0x0",
            }
            for f in ("tb_offset", "tb_offset_applied")
        ),
        {
            "seq": 1,
            "tb": 1000,
            "cpu": 0,
            "pc": "0xc0",
            "field": f"vcpus[{vcpu}].vcpu_id",
            "old": None,
            "new": 5,
        },
        {
            "seq": 2,
            "tb": 1100,
            "cpu": 1,
            "pc": "0xc0",
            "field": "threads[1].kvm_hstate.hwthread_state",
            "old": 1,
            "new": 2,
        },
        {
            "seq": 3,
            "tb": 1200,
            "cpu": 0,
            "pc": "0xc0",
            "field": "threads[0].kvm_hstate.in_guest",
            "old": 0,
            "new": 4,
        },
        {
            "seq": 4,
            "tb": 1250,
            "cpu": 0,
            "pc": "0xc0",
            "field": "threads[0].kvm_hstate.kvm_vcpu",
            "old": "0x0",
            "new": vcpu,
        },
        {
            "seq": 5,
            "tb": 1300,
            "cpu": 0,
            "pc": "0xc0",
            "field": "threads[0].kvm_hstate.in_guest",
            "old": 4,
            "new": 3,
        },
        {"seq": 6, "tb": 1400, "cpu": 0, "pc": "0xc0", "field": "threads[0].msgsndp", "old": None, "new": 1},
        {
            "seq": 7,
            "tb": 1450,
            "cpu": 0,
            "pc": "0xc0",
            "field": "threads[1].kvm_hstate.host_ipi",
            "old": 0,
            "new": 1,
        },
        {
            "seq": 8,
            "tb": 1500,
            "cpu": 0,
            "pc": "0xc0",
            "field": f"vcores[{vc}].entry_exit_map",
            "old": 1,
            "new": 257,
        },
        {
            "seq": 9,
            "tb": 1600,
            "cpu": 0,
            "pc": "0xc0",
            "field": "threads[0].kvm_hstate.in_guest",
            "old": 3,
            "new": 4,
        },
        {"seq": 10, "tb": 1700, "invariant": 14, "message": "thread 1 napping but not in napping_threads"},
        {
            "seq": 11,
            "tb": 1800,
            "cpu": 0,
            "pc": "0xc0",
            "field": "threads[0].kvm_hstate.in_guest",
            "old": 4,
            "new": 0,
        },
        {"end": True, "tb": 1900},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [header, *events]) + "\n")
    return path


def test_event_log_becomes_slices_arrows_and_marks(tmp_path: Path) -> None:
    tl = load(_event_log(tmp_path))
    assert tl.source == "continuous" and tl.unit == "us"
    cpu0 = [(m.label, m.ts, m.end) for m in tl.marks if m.lane == "cpu 0"]
    labels = [label for label, _ts, _end in cpu0]
    assert labels == [
        "entering (vcore assigned)",
        "entering",
        "in guest (vcpu 5)",
        "exiting",
        "entering (vcore assigned)",
    ]
    assert all(end is not None and end >= ts for _l, ts, end in cpu0)
    assert cpu0[1][2] == cpu0[2][1]  # a slice ends where the next begins: every store was seen
    assert [(f.name, f.src, f.dst) for f in tl.flows] == [
        ("doorbell", "cpu 0", "cpu 1"),
        ("exit IPI", "cpu 0", "cpu 1"),
    ]
    assert cpu0[-1][2] == pytest.approx(1900 * 1e6 / 512_000_000)  # the last state lasts to the end line
    assert [(v.invariant, v.message) for v in tl.violations] == [
        (14, "thread 1 napping but not in napping_threads")
    ]
    parsed = trace_events(write(tl, tmp_path / "e.json"))
    assert parsed["lanes"]["cpu 0"] == Counter({"X": 5}) and parsed["lanes"]["cpu 1"] == Counter({"X": 1})
    assert parsed["flows"] == Counter({"s": 2, "f": 2})


def test_an_event_log_whose_timebase_never_advances_is_drawn_by_event_number(tmp_path: Path) -> None:
    """A recorder without the timebase (tb 0 on every line) must not pile every slice at x = 0:
    the axis becomes the event number, in the marks, the violations, the trace JSON, the PNG
    and the page."""
    timed = load(_event_log(tmp_path))
    lines = _event_log(tmp_path).read_text().splitlines()
    flat = [json.dumps({**json.loads(x), "tb": 0}) if '"tb"' in x else x for x in lines]
    path = tmp_path / "flat.jsonl"
    path.write_text("\n".join(flat) + "\n")
    tl = load(path)
    assert tl.unit == "event" and tl.ordinal and tl.kvm_span is None
    cpu0 = [(m.label, m.ts, m.end) for m in tl.marks if m.lane == "cpu 0"]
    # The same slices in the same order as by timebase, one event apart, none of them empty.
    assert [x[0] for x in cpu0] == [m.label for m in timed.marks if m.lane == "cpu 0"]
    starts = [ts for _l, ts, _e in cpu0]
    assert starts == sorted(starts) and len(set(starts)) == len(starts) and starts[0] >= 1
    assert all(end is not None and end > ts for _l, ts, end in cpu0)
    # The violation line's own number among the events (the header not counted).
    at = next(k for k, x in enumerate(flat[1:], 1) if '"invariant"' in x)
    assert [v.ts for v in tl.violations] == [float(at)]
    assert trace_events(write(tl, tmp_path / "e.json"))["lanes"]["cpu 0"] == Counter({"X": 5})
    other = json.loads((tmp_path / "e.json").read_text())["otherData"]
    assert other["x"] == "event number, 1 ms per event"
    page = write(tl, tmp_path / "e.html").read_text()
    assert '"unit":"event","ordinal":true,"axis":"event number"' in page
    assert write(tl, tmp_path / "e.png").stat().st_size > 10_000


# ------------------------------------------------------------------ the page
class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.lanes: list[str] = []
        self.violations: list[str] = []
        self.points = 0
        self.scripts = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "tr" and "lane" in cls:
            self.lanes.append(a.get("data-lane") or "")
        if "violation" in cls:
            self.violations.append(a.get("data-invariant") or "")
        if tag == "canvas":  # written by the page's script once it drew the lanes
            self.points = int(a.get("data-points") or -1)
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if a.get(key) and not str(a[key]).startswith("#"):
                self.external.append(str(a[key]))


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    pytest.skip("headless Chromium is not installed (apt-get install chromium)")


def test_html_renders_in_headless_chromium_with_lanes_and_violation_marks(tmp_path: Path) -> None:
    page = write(load(STOCK), tmp_path / "stock.html")
    browser = _chromium()
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = _Dom()
    parsed.feed(dom.stdout)
    assert [lane for lane in parsed.lanes if lane.startswith("cpu")] == ["cpu 0", "cpu 1", "cpu 2", "cpu 3"]
    assert any(lane.startswith("vcore 0x") for lane in parsed.lanes) and "violations" in parsed.lanes
    assert parsed.violations and set(parsed.violations) == {"8"}
    assert parsed.points == 5 * snapshots(STOCK)  # 4 threads + 1 vcore, one point per stop
    assert parsed.external == [], "the page must not load anything from outside"
    assert "shown: 0.62 .. 20.38 stop" in dom.stdout  # the script ran: the axis range was written
    artifacts = Path(os.environ.get("PYVCORE_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "timeline-all-stock.png"
    done = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1400,520", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and shot.stat().st_size > 10_000, done.stderr[-2000:]
    print(f"timeline screenshot: {shot}")


# ------------------------------------------------------------------ the CLI
def test_cli_formats_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["timeline", str(CEDE), "-o", str(tmp_path / "c.json")]) == 0
    assert main(["timeline", str(STOCK), "-o", str(tmp_path / "s.html")]) == 1  # drawn, with violations
    out = capsys.readouterr().out
    assert "4 thread lanes, 20 stops" in out and "violations" in out
    bad = tmp_path / "bad.jsonl"
    for content, message in [
        ("", "empty trace"),
        ("{not json\n", "bad.jsonl:1:2: not JSON"),
        ("[1, 2]\n", "bad.jsonl:1: a snapshot is a JSON object, not an array"),
        (b"\xff\xfe\n", "bad.jsonl:1:1: not UTF-8 text (byte 0xff)"),
        ('{"stop": "x", "error": 5}\n', "bad.jsonl:1:25: key `variant`: missing field"),
        # Only a stop pv-watch could not read: nothing to draw.
        ('{"stop": "x", "error": "Cannot access memory"}\n', "no stop in this trace has a snapshot"),
    ]:
        if isinstance(content, bytes):
            bad.write_bytes(content)
        else:
            bad.write_text(content)
        assert main(["timeline", str(bad), "-o", str(tmp_path / "x.html")]) == 2
        assert message in capsys.readouterr().err
    assert main(["timeline", str(CEDE), "-o", str(tmp_path / "x.svgz")]) == 2
    assert "unknown output format .svgz" in capsys.readouterr().err
    assert main(["timeline", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_line_check_refuses_refuses_the_timeline(tmp_path: Path) -> None:
    """A line `pyvcore check` refuses (here one only like pv-watch's record of a stop it could
    not read: its error is not text) is not skipped: the timeline is refused with check's
    FILE:LINE:COLUMN line, not drawn with a silent gap (pyvcore.jsonl.stops)."""
    lines = CEDE.read_text().splitlines()[:3]
    trace = tmp_path / "gap.jsonl"
    trace.write_text("\n".join([lines[0], '{"stop": "kvmppc_run_core", "error": 5}', *lines[1:]]) + "\n")
    with pytest.raises(TimelineError) as refused:
        load(trace)
    assert str(refused.value) == f"{trace}:2:39: key `variant`: missing field `variant`"


def _with_offset(recs: list[dict[str, Any]], offset: int, applied: list[bool]) -> list[dict[str, Any]]:
    """The vcores of each stop with vc->tb_offset and, where ``applied``, the offset in force
    (tb_offset_applied set and in_guest 1, as thread 0 leaves kvmppc_hv_entry)."""
    for rec, on in zip(recs, applied):
        rec["version"] = 2  # the v1 recording with version-2 fields added
        for vc in rec["vcores"]:
            vc["tb_offset"] = hex(offset)
            vc["tb_offset_applied"] = hex(offset if on else 0)
            vc["in_guest"] = 1 if on else 0
    return recs


def test_timebase_places_stops_in_microseconds(tmp_path: Path) -> None:
    recs = _with_offset([json.loads(x) for x in CEDE.read_text().splitlines()[:2]], 0, [False, False])
    recs[0]["tb"], recs[1]["tb"] = "0x200", 512 + 512_000  # 1 ms later at 512 MHz
    trace = tmp_path / "tb.jsonl"
    trace.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    tl = load(trace)
    assert tl.unit == "us" and sorted({m.ts for m in tl.marks}) == pytest.approx([1.0, 1001.0])
    assert tl.axis_note is None
    spread = load(trace, by_stop=True)
    assert spread.unit == "stop" and sorted({m.ts for m in spread.marks}) == [1.0, 2.0]
    with pytest.raises(TimelineError):
        load(tmp_path / "nope.jsonl")


def test_a_stop_in_the_guest_is_placed_on_the_host_timebase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A migrated guest's timebase offset (hours, a multiple of 2^24 ticks) is in force on the
    second stop only: that stop's tb is the guest's, and it is drawn where the host's timebase
    puts it (1 ms after the first), not hours away.  A stop whose host timebase cannot be
    known (thread 0 between storing tb_offset_applied and setting in_guest) puts the whole
    trace on the stop-number axis and says why."""
    offset = (3 * 3600 * 512_000_000) >> 24 << 24
    recs = _with_offset([json.loads(x) for x in CEDE.read_text().splitlines()[:2]], offset, [False, True])
    recs[0]["tb"], recs[1]["tb"] = "0x200", hex(512 + 512_000 + offset)
    trace = tmp_path / "tb.jsonl"
    trace.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    tl = load(trace)
    assert tl.unit == "us" and sorted({m.ts for m in tl.marks}) == pytest.approx([1.0, 1001.0])
    recs[1]["vcores"][0]["in_guest"] = 0
    trace.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    tl = load(trace)
    assert tl.unit == "stop" and sorted({m.ts for m in tl.marks}) == [1.0, 2.0]
    assert tl.axis_note and "line 2's host timebase is not known" in tl.axis_note
    assert "switch of the timebase offset" in tl.axis_note
    from pyvcore.cli import main

    main(["timeline", str(trace), "-o", str(tmp_path / "t.json")])
    assert "drawn by stop number: line 2" in capsys.readouterr().err


def test_vcore_state_names_follow_each_variants_numbering() -> None:
    """The lane names come from the model's one vcore_state table: state 3 is RUNNING in
    the seed and in prepatch (which share the v3.14 numbering) and SLEEPING in modern."""
    from pyvcore.timeline import vcore_label, vcore_state

    vcore = {"vcore_state": 3, "in_guest": 0, "entry_exit_map": 0}
    assert vcore_state(vcore, "seed") == vcore_state(vcore, "prepatch") == "vcore RUNNING"
    assert vcore_label(vcore, "prepatch").startswith("RUNNING in_guest 0")
    assert vcore_label(vcore, "modern").startswith("SLEEPING") and vcore_label(vcore, None).startswith(
        "SLEEPING"
    )
    assert vcore_label({"vcore_state": 42}, "seed").startswith("42 in_guest")


# The VCORE_* values of struct kvmppc_vcore.vcore_state (arch/powerpc/include/asm/kvm_host.h),
# written out from the kernel: v3.14 (seed; prepatch is the seed before e0b7ec058c0e) and
# 6.12 (modern: PREEMPT and PIGGYBACK inserted, STARTING gone, POLLING added).
KERNEL_VCORE_STATES = {
    "seed": ["INACTIVE", "SLEEPING", "STARTING", "RUNNING", "EXITING"],
    "prepatch": ["INACTIVE", "SLEEPING", "STARTING", "RUNNING", "EXITING"],
    "modern": ["INACTIVE", "PREEMPT", "PIGGYBACK", "SLEEPING", "RUNNING", "EXITING", "POLLING"],
}


@pytest.mark.parametrize("variant", sorted(KERNEL_VCORE_STATES))
def test_every_vcore_state_is_drawn_with_its_kernel_name(tmp_path: Path, variant: str) -> None:
    """Every vcore_state value of each variant is a lane state named as the kernel names it, with
    its own colour, in the continuous view (an event log storing each value in turn) as in the
    sampled one; a value the kernel never stores stays "vcore" with its number in the label.
    (A real cede log drew VCORE_PREEMPT as a nameless "vcore" slice.)"""
    from pyvcore.timeline import STATES, vcore_label, vcore_state

    names = KERNEL_VCORE_STATES[variant]
    for value, name in enumerate(names):
        vcore = {"vcore_state": value, "in_guest": 0, "entry_exit_map": 0}
        assert vcore_state(vcore, variant) == f"vcore {name}", (variant, value)
        assert vcore_label(vcore, variant).startswith(f"{name} in_guest 0"), (variant, value)
    assert {f"vcore {n}" for n in names} <= set(STATES), "every named state has a colour"
    assert vcore_state({"vcore_state": len(names)}, variant) == "vcore"

    header = {"format": "pyvcore-events", "version": 1, "variant": variant, "threads_per_core": 4}
    vc = "0xc000000028186a00"
    events = [
        {"seq": n + 1, "tb": 1000 * (n + 1), "cpu": 0, "pc": "0xc0", "field": f"vcores[{vc}].vcore_state"}
        | {"old": n - 1 if n else None, "new": n}
        for n in range(len(names))
    ]
    log = tmp_path / "events.jsonl"
    log.write_text("\n".join(json.dumps(x) for x in [header, *events]) + "\n")
    drawn = [m.state for m in load(log).marks if m.lane == f"vcore {vc}"]
    assert drawn == [f"vcore {n}" for n in names]


def test_a_trace_on_stdin_is_read_as_show_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "-" is stdin for timeline as for show (one JSONL reader, pyvcore.jsonl): the same stops."""
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(CEDE.read_text()))
    assert load("-").stops == load(CEDE).stops == 20


def test_without_o_the_page_goes_to_the_current_directory_as_help_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sub").mkdir()
    shutil.copy(Path(__file__).parent / "checker_live" / "cede-patched.jsonl", tmp_path / "sub" / "run.jsonl")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["timeline", "--help"])
    assert "in the current directory" in " ".join(capsys.readouterr().out.split())
    assert main(["timeline", "sub/run.jsonl"]) == 0
    assert capsys.readouterr().out.startswith("run.html: ")
    assert (tmp_path / "run.html").is_file() and not (tmp_path / "sub" / "run.html").exists()


def test_an_event_log_with_a_timebase_offset_is_drawn_on_the_host_timebase(tmp_path: Path) -> None:
    """Thread 0 adds a 2^40-tick offset (36 minutes) to the core's TB while it runs the vcore:
    the events read then are drawn at host time, not 36 minutes on (or back); the one event
    inside the switch (tb_offset_applied stored, in_guest not yet) sits at the event before it."""
    from test_trace import AHEAD, grab_across_the_offset_switch

    header = {"format": "pyvcore-events", "version": 1, "variant": "modern", "threads_per_core": 2}
    for off in (AHEAD, 2**64 - AHEAD):
        log = tmp_path / "events.jsonl"
        events = grab_across_the_offset_switch(0.05, off)
        log.write_text("\n".join(json.dumps(x) for x in [header, *events]) + "\n")
        tl = load(str(log))
        assert tl.unit == "us" and tl.axis_note is None
        times = [m.ts for m in tl.marks]
        # 1,000,000 ticks at the start (~1953 µs), 50 ms of host time in the guest
        assert min(times) > 1000 and max(times) < 1953 + 50_000 + 100, (off, max(times))


def test_an_event_log_without_the_offset_is_drawn_by_event_number_saying_why(tmp_path: Path) -> None:
    """A log from a plugin that did not watch the vcore's timebase offset: inside a run the
    host timebase is not known, so the log is drawn by event number and the note says why."""
    from test_trace import grab_across_the_offset_switch

    header = {"format": "pyvcore-events", "version": 1, "variant": "modern", "threads_per_core": 2}
    log = tmp_path / "events.jsonl"
    log.write_text(
        "\n".join(json.dumps(x) for x in [header, *grab_across_the_offset_switch(0.05, None)]) + "\n"
    )
    tl = load(str(log))
    assert tl.unit == "event"
    assert tl.axis_note and tl.axis_note.startswith(
        "drawn by event number: line 5's host timebase is not known"
    )
    assert "does not carry the timebase offset of thread 0's vcore" in tl.axis_note
