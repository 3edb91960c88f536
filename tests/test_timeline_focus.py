"""A continuous trace's timeline opens on KVM's activity, not the whole boot (`--whole` draws
it all); the arrows are in the PNG's legend; the command counts "state changes", as the trace
counts "distinct states"; the README's plugin timing claim is the measured range."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_trace import VC, ev, vcore_found, write_log

from pyvcore.cli import main
from pyvcore.timeline import load
from pyvcore.timeline_html import page_data

ROOT = Path(__file__).resolve().parents[1]
TB = 512  # timebase ticks per µs (512 MHz)


@pytest.fixture
def boot_then_kvm(tmp_path: Path) -> Path:
    """Ten seconds of boot (a thread going idle and back, host doorbells), then KVM for one."""
    s = 1_000_000 * TB  # one second of timebase
    events = [
        ev(1, "threads[1].kvm_hstate.hwthread_state", 0, 1, cpu=1, tb=s // 10),
        ev(2, "threads[0].msgsnd", None, 1, cpu=0, tb=s),  # a host IPI: not KVM's
        ev(3, "threads[1].kvm_hstate.hwthread_state", 1, 0, cpu=1, tb=2 * s),
        *[{**e, "tb": 10 * s} for e in vcore_found(4)],
        ev(5, f"vcores[{VC}].vcore_state", 0, 4, tb=10 * s + s // 4),
        ev(6, "threads[0].kvm_hstate.in_guest", 0, 4, tb=10 * s + s // 2),
        ev(7, "threads[0].kvm_hstate.in_guest", 4, 0, tb=11 * s),
    ]
    return write_log(tmp_path / "events.jsonl", events)


def test_the_page_opens_on_kvm_and_says_where_the_trace_starts(boot_then_kvm: Path, tmp_path: Path) -> None:
    tl = load(str(boot_then_kvm), None)
    assert tl.kvm_span is not None
    begin, end = tl.kvm_span
    assert begin == pytest.approx(10e6) and end == tl.span[1]  # µs: the vcore's first slice
    data = page_data(tl)
    assert data["t0"] < data["v0"] < data["v1"] <= data["t1"]
    out = tmp_path / "t.html"
    assert main(["timeline", str(boot_then_kvm), "-o", str(out)]) in (0, 1)
    page = out.read_text()
    assert (
        "It opens on KVM&#x27;s activity, 10.00 s .. 11.00 s" in page
        and "double click shows the whole" in page
    )
    whole = tmp_path / "whole.html"
    assert main(["timeline", str(boot_then_kvm), "--whole", "-o", str(whole)]) in (0, 1)
    assert "It opens on" not in whole.read_text()
    tl.focus = False
    data = page_data(tl)
    assert (data["v0"], data["v1"]) == (data["t0"], data["t1"])


def test_a_sampled_or_kvm_only_trace_opens_whole() -> None:
    tl = load(str(ROOT / "tests/checker_live/cede-patched.jsonl"), None)
    assert tl.kvm_span is None


def test_the_png_draws_kvm_and_its_legend_has_the_arrows(boot_then_kvm: Path) -> None:
    pytest.importorskip("matplotlib", reason="a .png needs matplotlib (pyvcore[timeline])")
    import matplotlib.pyplot as plt

    from pyvcore.timeline_render import png_figure

    tl = load(str(boot_then_kvm), None)
    assert tl.flows, "the fixture has a doorbell"
    fig = png_figure(tl)
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert 9_500 < lo < 10_000 and 11_000 < hi < 11_500  # ms: KVM's second, not the boot's ten
    assert ax.get_xlabel().startswith("timebase time (ms), from KVM's first activity")
    assert "the trace starts at 100.00 ms (`--whole` draws it all)" in ax.get_xlabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "doorbell: sender -> receiver" in labels
    plt.close(fig)
    tl.focus = False
    fig = png_figure(tl)
    assert fig.axes[0].get_xlim()[0] < 0.2 and fig.axes[0].get_xlabel() == "timebase time (s)"
    plt.close(fig)


def test_the_command_counts_state_changes(
    boot_then_kvm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.json"
    main(["timeline", str(boot_then_kvm), "-o", str(out)])
    printed = capsys.readouterr().out
    n = len(load(str(boot_then_kvm), None).marks)
    assert f", {n} state changes, " in printed and " states," not in printed


def test_the_readme_timing_claim_is_the_measured_range() -> None:
    """The README gives the range of the guest's scenario-time ratios the measurements page
    printed, and says what a ratio below 1x is, as trace's timing table does."""
    from pyvcore.trace import LabRun
    from pyvcore.trace_report import format_timings

    page = (ROOT / "docs/measurements.md").read_text()
    table = page[page.index("scenario              boot") :].split("```")[0]
    ratios = [float(r) for r in re.findall(r"^\S+\s+\S+ \S+x\s+\S+ (\S+)x", table, re.M)]
    assert len(ratios) == 7
    readme = (ROOT / "README.md").read_text()
    assert f"{min(ratios):.2f}x-{max(ratios):.2f}x across seven scenarios" in readme
    assert "the boot *without* the plugin was the slower one" in readme
    shown = format_timings(LabRun(boot_s=20.0, scenario_s=4.0), LabRun(boot_s=10.0, scenario_s=5.0))
    assert "0.80x" in shown and "below 1.00x the boot without the plugin was the slower one" in " ".join(
        shown.split()
    )
