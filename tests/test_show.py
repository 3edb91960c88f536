"""`pyvcore show`: every stop of the recorded lab traces, rendered like pv-check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pyvcore.checker import check_trace
from pyvcore.cli import main

TRACES = sorted((Path(__file__).parent / "checker_live").glob("*.jsonl"))


def show(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["show", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.stem)
def test_every_recorded_stop_renders_within_80_columns(capsys, trace):
    stops = [line for line in trace.read_text().splitlines() if line.strip()]
    code, out, err = show(capsys, trace, "--colour", "never")
    assert err == ""
    assert code == check_trace(str(trace)).exit_code  # the same verdict as `pyvcore check`
    heads = re.findall(r"^== line (\d+)  stop (\S+)$", out, re.M)
    assert [int(n) for n, _ in heads] == list(range(1, len(stops) + 1))
    assert [label for _, label in heads] == [json.loads(s)["stop"] for s in stops]
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "Traceback" not in out
    # one verdict per thread per stop, and the legend once
    threads = sum(len(json.loads(s)["threads"]) for s in stops)
    assert (
        len(re.findall(r"^\d+\s+t\d\s+\S+\s+\S+\s+(ok|allowed-now|violation|not judged)", out, re.M))
        == threads
    )
    assert out.count("allowed-now = different") == 1


def test_a_violation_is_shown_on_its_thread_and_explained_once(capsys):
    trace = Path(__file__).parent / "checker_live" / "all-stock.jsonl"
    report = check_trace(str(trace))
    line = report.violations[0].line
    code, out, _ = show(capsys, trace, "--line", line)
    assert code == 1
    assert out.count(f"== line {line} ") == 1 and out.count("== line") == 1
    assert re.search(r"^\d+\s+t\d\s+\S+\s+\S+\s+violation$", out, re.M)
    assert "violation of invariant 8: threads of one core disagree on LPIDR" in out
    # the explanation is printed under the first violation of the invariant only
    explained = [i for i, s in enumerate(out.splitlines()) if s.startswith("    ") and "LPIDR" in s]
    assert explained and len(explained) <= 3


def test_stop_label_selects_by_function_or_full_label(capsys):
    trace = Path(__file__).parent / "checker_live" / "novcpu0-patched.jsonl"
    labels = [json.loads(s)["stop"] for s in trace.read_text().splitlines() if s.strip()]
    code, out, _ = show(capsys, trace, "--stop", "kvm_do_nap")
    assert code == 0
    assert out.count("== ") == sum(lab.split("@")[0] == "kvm_do_nap" for lab in labels) > 0
    code, out, _ = show(capsys, trace, "--stop", labels[0])
    assert out.count("== ") == labels.count(labels[0])


def test_the_live_colour_is_inside_cells(capsys):
    trace = Path(__file__).parent / "checker_live" / "all-stock.jsonl"
    line = check_trace(str(trace)).violations[0].line
    _, out, _ = show(capsys, trace, "--line", line, "--colour", "always")
    for text in out.splitlines():
        codes = re.findall(r"\x1b\[([0-9;]*)m", text)
        assert not codes or codes[-1] == "0"
    assert "\x1b[31mviolation\x1b[0m" in out


@pytest.mark.parametrize(
    "content, args, message",
    [
        (TRACES[0].read_text().splitlines()[0] + "\n", ["--line", "5"], "no line 5"),
        ('{"format": "pyvcore-events", "version": 1}\n', [], "is an event log"),
        ("not json\n", [], ":1: not JSON"),
        ('{"stop": "x"}\n', [], ":1: not a snapshot"),
        ('{"variant": "modern", "threads": [{"cpu": 0}]}\n', [], ":1:"),
    ],
)
def test_unusable_input_is_one_line_and_exit_2(capsys, tmp_path, content, args, message):
    path = tmp_path / "t.jsonl"
    path.write_text(content)
    code, _out, err = show(capsys, path, *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_missing_file(capsys, tmp_path):
    code, _, err = show(capsys, tmp_path / "nope.jsonl")
    assert code == 2 and "cannot read" in err
