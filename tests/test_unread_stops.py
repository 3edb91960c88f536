"""A stop pv-watch could not read (``{"stop": LABEL, "error": MESSAGE}``, gdb_plugins/watch.py
``Watcher.log_error``) in a recorded trace: check, show and timeline all read it as a stop not
judged (exit 2, never clean), name its line, label and error, and go on with the stops after it;
a violation elsewhere still makes the verdict; anything merely like such a line is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyvcore.checker import check_trace
from pyvcore.cli import main

LIVE = Path(__file__).parent / "checker_live"
UNREAD = {"stop": "kvmppc_run_core", "error": "Cannot access memory at address 0x8\nmore"}


def _trace(tmp_path: Path, lines: list[str], at: int) -> Path:
    """The trace ``lines`` with an unread stop inserted as line ``at`` (from 1)."""
    out = [*lines[: at - 1], json.dumps(UNREAD), *lines[at - 1 :]]
    path = tmp_path / "watch.jsonl"
    path.write_text("\n".join(out) + "\n")
    return path


def test_check_counts_it_not_judged_and_judges_the_stops_after_it(tmp_path, capsys) -> None:
    lines = (LIVE / "cede-patched.jsonl").read_text().splitlines()
    clean = check_trace(str(LIVE / "cede-patched.jsonl"))
    assert clean.verdict == "clean"
    path = _trace(tmp_path, lines, 4)
    report = check_trace(str(path))
    assert (report.verdict, report.exit_code, report.snapshots) == ("not judged", 2, len(lines))
    assert (report.unread, report.first_unread) == (1, (4, UNREAD["stop"], UNREAD["error"]))
    assert report.to_dict()["first_unread"] == {"line": 4, **UNREAD}
    assert main(["check", str(path)]) == 2
    out = capsys.readouterr().out
    assert f"1 stop pv-watch could not read, not judged (first at {path}:4 [kvmppc_run_core]: " in out
    assert "Cannot access memory at address 0x8)" in out and "more" not in out
    assert out.rstrip().endswith("not judged: some stops could not be read")


def test_a_violation_after_it_is_still_found(tmp_path) -> None:
    lines = (LIVE / "all-stock.jsonl").read_text().splitlines()
    stock = check_trace(str(LIVE / "all-stock.jsonl"))
    assert stock.verdict == "violations"
    report = check_trace(str(_trace(tmp_path, lines, 2)))
    assert (report.verdict, report.exit_code, report.unread) == ("violations", 1, 1)
    first = {v.invariant for v in stock.violations}
    assert first <= {v.invariant for v in report.violations}


def test_show_prints_it_at_its_line_and_exits_2(tmp_path, capsys) -> None:
    lines = (LIVE / "cede-patched.jsonl").read_text().splitlines()
    path = _trace(tmp_path, lines, 3)
    assert main(["show", str(path), "--line", "3"]) == 2
    out = capsys.readouterr().out
    assert "== line 3  stop kvmppc_run_core" in out
    assert "pv-watch could not read this stop: Cannot access memory at address 0x8" in out
    # The stop after it is shown as usual.
    assert main(["show", str(path), "--line", "4"]) == 0
    assert "== line 4  stop " + json.loads(lines[2])["stop"] in capsys.readouterr().out


def test_timeline_draws_it_as_not_judged(tmp_path, capsys) -> None:
    lines = (LIVE / "cede-patched.jsonl").read_text().splitlines()
    path = _trace(tmp_path, lines, 5)
    out_html = tmp_path / "t.html"
    assert main(["timeline", str(path), "-o", str(out_html)]) == 2
    said = capsys.readouterr().out
    assert "1 stop not judged (first at line 5: the stop could not be read (Cannot access memory" in said
    assert out_html.stat().st_size > 0


@pytest.mark.parametrize(
    "line",
    [
        '{"stop": "x", "error": 5}',
        '{"stop": "x", "error": "e", "cpu": 3}',
        '{"error": "e"}',
    ],
)
def test_a_line_only_like_it_is_refused(tmp_path, line: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(line + "\n")
    report = check_trace(str(path))
    assert report.error is not None and report.error["line"] == 1
    assert (report.verdict, report.unread) == ("unusable input", 0)
