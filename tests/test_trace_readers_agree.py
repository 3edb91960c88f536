"""`pyvcore check`, `show` and `timeline` read a snapshot trace one way (pyvcore.jsonl.stops):
over the same bad input they refuse the same line with the same FILE:LINE:COLUMN message
(check's, from the Rust parser) and exit 2 alike; a stop check cannot judge is "not judged"
in all three (exit 2), never drawn or shown as clean."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pyvcore.cli import main

CEDE = Path(__file__).parent / "checker_live" / "cede-patched.jsonl"
GOOD = CEDE.read_text().splitlines()[0]


def _with(change: Any) -> str:
    rec = copy.deepcopy(json.loads(GOOD))
    change(rec)
    return json.dumps(rec)


def _ptid(value: Any) -> Any:
    return lambda rec: rec["threads"][1]["kvm_hstate"].__setitem__("ptid", value)


BAD = {
    "empty-object": "{}",
    "no-snapshot-keys": '{"foo": 1}',
    "no-threads": _with(lambda rec: rec.__setitem__("threads", [])),
    "ptid-a-string": _with(_ptid("one")),
    "ptid-too-big": _with(_ptid(2**70)),
    # Only like pv-watch's record of a stop it could not read: its error is not text.
    "like-an-unread-stop": '{"stop": "kvmppc_run_core", "error": 5}',
    "an-array": "[1, 2]",
    "not-json": '{"stop" "x"}',
    "a-word": "not json",
    "cut-short": '{"stop": "x',
}


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    got = capsys.readouterr()
    return code, got.out, got.err


def _readers(trace: Path, tmp_path: Path) -> dict[str, list[str]]:
    return {
        "check": ["check", str(trace)],
        "show": ["show", str(trace)],
        "timeline": ["timeline", str(trace), "-o", str(tmp_path / "t.html")],
    }


@pytest.mark.parametrize("where", ["first line", "after a good stop"])
@pytest.mark.parametrize("bad", list(BAD), ids=list(BAD))
def test_check_show_and_timeline_refuse_a_bad_line_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str, where: str
) -> None:
    trace = tmp_path / "bad.jsonl"
    lines = [BAD[bad]] if where == "first line" else [GOOD, BAD[bad]]
    trace.write_text("\n".join(lines) + "\n")
    messages = {}
    for name, argv in _readers(trace, tmp_path).items():
        code, _out, err = _run(capsys, argv)
        assert code == 2, (name, err)
        assert "Traceback" not in err and "Error:" not in err, err
        first = err.splitlines()[0]
        assert first.startswith(f"pyvcore {name}: {trace}:{len(lines)}"), first
        # show adds how many stops it showed before the bad line; the message is check's
        messages[name] = first.removeprefix(f"pyvcore {name}: ").split("; only the ")[0]
    assert messages["show"] == messages["check"] == messages["timeline"]
    assert not (tmp_path / "t.html").exists()


def test_a_binary_file_is_refused_alike_with_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "bin.jsonl"
    trace.write_bytes(b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 16 + b"\xd0\x61\n")
    for name, argv in _readers(trace, tmp_path).items():
        code, _out, err = _run(capsys, argv)
        assert code == 2
        assert err.startswith(f"pyvcore {name}: {trace}:1:25: not UTF-8 text (byte 0xd0)"), err


def test_a_stop_not_judged_is_not_judged_in_all_three(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """threads[1] deleted: check cannot judge the stop; show says so, and the timeline draws
    it but says "not judged" in its summary line and on the page, and exits 2, as check."""
    trace = tmp_path / "nj.jsonl"
    trace.write_text(_with(lambda rec: rec["threads"].pop(1)) + "\n")
    page = tmp_path / "t.html"
    codes, outs = {}, {}
    for name, argv in _readers(trace, tmp_path).items():
        codes[name], outs[name], _err = _run(capsys, argv)
    assert codes == {"check": 2, "show": 2, "timeline": 2}
    assert "1 stop not judged" in outs["check"]
    assert "not judged" in outs["show"]
    assert "1 stops," in outs["timeline"] and "1 stop not judged (first at line 1: " in outs["timeline"]
    html = page.read_text()
    assert '<b class="not-judged">1 stop not judged</b>' in html
    assert '<li class="not-judged"' in html and "line 1 (" in html
    json_out = tmp_path / "t.json"
    assert main(["timeline", str(trace), "-o", str(json_out)]) == 2
    assert json.loads(json_out.read_text())["otherData"]["not_judged_lines"] == [1]


def test_a_stop_pv_watch_could_not_read_is_not_judged_in_all_three(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pv-watch's record of a stop it could not read between two stops: each reader says the
    stop was not judged, with its line, and exits 2, as check."""
    lines = CEDE.read_text().splitlines()[:2]
    unread = '{"stop": "kvmppc_run_core", "error": "Cannot access memory at 0x8"}'
    trace = tmp_path / "gap.jsonl"
    trace.write_text("\n".join([lines[0], unread, lines[1]]) + "\n")
    codes, outs = {}, {}
    for name, argv in _readers(trace, tmp_path).items():
        codes[name], outs[name], _err = _run(capsys, argv)
    assert codes == {"check": 2, "show": 2, "timeline": 2}
    assert (
        f"1 stop pv-watch could not read, not judged (first at {trace}:2 [kvmppc_run_core]" in outs["check"]
    )
    assert "== line 2  stop kvmppc_run_core" in outs["show"] and "could not read this stop" in outs["show"]
    assert "2 stops," in outs["timeline"] and "1 stop not judged (first at line 2: " in outs["timeline"]


def test_a_clean_trace_is_not_reported_not_judged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "t.html"
    assert main(["check", str(CEDE)]) == main(["timeline", str(CEDE), "-o", str(page)])
    assert "not judged" not in capsys.readouterr().out.splitlines()[-1]
    assert 'class="not-judged"' not in page.read_text()


def test_a_report_folder_names_its_trace_in_all_three(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "rep"
    folder.mkdir()
    (folder / "trace.jsonl").write_text(GOOD + "\n")
    for name, argv in _readers(folder, tmp_path).items():
        code, _out, err = _run(capsys, argv)
        assert code == 2
        assert err.startswith(f"pyvcore {name}: cannot read {folder}: Is a directory"), err
        assert f"(this one holds {folder / 'trace.jsonl'})" in err, err


def test_stdin_is_read_and_refused_as_check_reads_it(tmp_path: Path) -> None:
    """'-' (check reads fd 0 in Rust, so a real pipe): the same <stdin>:LINE:COLUMN line."""
    import subprocess
    import sys

    text = GOOD + "\n" + BAD["ptid-a-string"] + "\n"
    firsts = {}
    for name, argv in _readers(Path("-"), tmp_path).items():
        done = subprocess.run(
            [sys.executable, "-m", "pyvcore", *argv], input=text, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2, (name, done.stderr)
        first = done.stderr.splitlines()[0]
        firsts[name] = first.removeprefix(f"pyvcore {name}: ").split("; only the ")[0]
    assert firsts["check"].startswith("<stdin>:2:")
    assert firsts["show"] == firsts["check"] == firsts["timeline"]


def test_a_diff_reports_unread_stop_is_drawn_as_not_judged() -> None:
    """`pyvcore diff --report` draws its run's records (pyvcore.diff_report): a stop pv-watch
    could not read is not drawn (nothing was seen) but counted not judged on the page, never
    left out silently."""
    from pyvcore.timeline import from_snapshots

    records = [
        (1, json.loads(GOOD)),
        (2, {"stop": "kvmppc_run_core", "error": "Cannot access memory at address 0x10\nmore"}),
    ]
    tl = from_snapshots("run", records)
    assert tl.stops == 1 and {m.ts for m in tl.marks} == {1.0}
    assert tl.not_judged == [
        (2.0, "kvmppc_run_core", 2, "the stop could not be read (Cannot access memory at address 0x10)")
    ]
    assert tl.not_judged_text().startswith("1 stop not judged (first at line 2: the stop could not be read")


def test_an_empty_trace_is_worded_alike(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty file: all three say "empty trace" (and what they could not do) and exit 2."""
    trace = tmp_path / "empty.jsonl"
    trace.write_text("\n\n")
    for name, argv in _readers(trace, tmp_path).items():
        code, out, err = _run(capsys, argv)
        assert code == 2, name
        assert "empty trace: nothing " in out + err, (name, out, err)
