"""A report that shows only some of the violations says so, with the true total, and the
timeline draws every one: `pyvcore check` (event log and snapshot trace), the text report
of `pyvcore trace`, `pyvcore timeline`.

The event log breaks invariant 19 (vcore_state going backwards, EXITING -> RUNNING, as
kvmppc_run_core in arch/powerpc/kvm/book3s_hv.c never does) 300 times: more than the 200
the shadow keeps with the events before each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pyvcore.cli import main
from pyvcore.timeline import Timeline, Violation, load
from pyvcore.timeline_html import html_page, page_data
from pyvcore.trace import TraceResult
from pyvcore.trace_report import SHOWN, format_result

HEADER = {"format": "pyvcore-events", "version": 1, "variant": "modern", "threads_per_core": 1}
VC = "0xc000000028186a00"
BACKWARDS = 300


def _ev(seq: int, field: str, old: object, new: object) -> dict[str, object]:
    return {"seq": seq, "tb": 1000 * seq, "cpu": 0, "pc": "0xc000000000114000", "field": field,
            "old": old, "new": new}  # fmt: skip


def many_violations(path: Path) -> Path:
    """A log whose vcore goes RUNNING -> EXITING -> RUNNING ... (BACKWARDS times back)."""
    fields = {"n_runnable": 1, "num_threads": 1, "entry_exit_map": 0, "napping_threads": 0,
              "first_vcpuid": 0, "pcpu": 0, "vcore_state": 0, "in_guest": 0,
              "tb_offset": "0x0", "tb_offset_applied": "0x0"}  # fmt: skip
    lines: list[dict[str, Any]] = [HEADER, _ev(1, "threads[0].kvm_hstate.kvm_vcore", "0x0", VC)]
    lines += [_ev(1, f"vcores[{VC}].{k}", None, v) for k, v in fields.items()]
    lines.append(_ev(2, f"vcores[{VC}].vcore_state", 0, 4))
    state = 4
    for seq in range(3, 3 + 2 * BACKWARDS):
        new = 5 if state == 4 else 4  # modern: 4 RUNNING, 5 EXITING
        lines.append(_ev(seq, f"vcores[{VC}].vcore_state", state, new))
        state = new
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def _places(text: str, prefix: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith(prefix))


def test_check_of_an_event_log_says_how_many_of_how_many(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = many_violations(tmp_path / "many.jsonl")
    assert main(["check", str(log)]) == 1
    out = capsys.readouterr().out
    assert _places(out, f"{log}: seq ") == SHOWN == 200
    assert f"first 200 of {BACKWARDS} violations shown; --all prints every one, --json lists every one" in out
    assert f"{BACKWARDS}x invariant 19, first at seq 4 (tb 4000), last at seq {2 + 2 * BACKWARDS}" in out
    assert out.rstrip().endswith(f"{BACKWARDS} violations")

    assert main(["check", "--all", str(log)]) == 1
    out = capsys.readouterr().out
    assert _places(out, f"{log}: seq ") == BACKWARDS and "first 200" not in out

    assert main(["check", "--json", str(log)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert len(data["violations"]) == data["stats"]["violations"] == BACKWARDS
    assert data["stats"]["violations_per_invariant"] == {"19": BACKWARDS}
    # the first 200 carry the events before them, the rest their place only
    assert all(v["events"] for v in data["violations"][:SHOWN])
    assert not any(v["events"] for v in data["violations"][SHOWN:])


def test_trace_report_says_how_many_of_how_many(tmp_path: Path) -> None:
    log = many_violations(tmp_path / "many.jsonl")
    from pyvcore import _core

    summary = json.loads(_core.replay_events(log.read_text()))
    result = TraceResult(scenario="all", qemu="stock", mode="all", verdict="violations", summary=summary)
    text = format_result(result)
    assert _places(text, "seq ") == 200
    assert f"first 200 of {BACKWARDS} violations shown" in text
    assert text.rstrip().endswith(f"verdict: {BACKWARDS} violations")
    result.summary = {**summary, "stats": {**summary["stats"], "violations": 10_995}}
    assert format_result(result).rstrip().endswith("verdict: 10,995 violations")  # as every count
    result.summary = summary
    every = format_result(result, every=True)
    assert _places(every, "seq ") == BACKWARDS and "first 200" not in every


def test_check_of_a_snapshot_trace_says_how_many_of_how_many(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Line 7 of the stock-QEMU trace: invariant 8 twice (LPIDR and SDR1 not shared).
    stop = Path("tests/checker_live/all-stock.jsonl").read_text().splitlines()[6]
    trace = tmp_path / "stock.jsonl"
    trace.write_text((stop + "\n") * 600)
    assert main(["check", "--no-explain", str(trace)]) == 1
    out = capsys.readouterr().out
    assert _places(out, f"{trace}:") == 1000
    assert "first 1,000 of 1,200 violations shown; --all prints every one, --json lists every one" in out
    assert main(["check", "--no-explain", "--all", str(trace)]) == 1
    out = capsys.readouterr().out
    assert _places(out, f"{trace}:") == 1200 and "first 1,000" not in out
    assert main(["check", "--json", str(trace)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert len(data["violations"]) == data["total_violations"] == 1200


def test_timeline_draws_and_counts_every_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = many_violations(tmp_path / "many.jsonl")
    out = tmp_path / "many.html"
    assert main(["timeline", str(log), "-o", str(out)]) == 1
    assert f"{BACKWARDS} violations;" in capsys.readouterr().out
    tl = load(str(log))
    assert len(tl.violations) == BACKWARDS and tl.violations_total is None
    # the last violation is drawn where it happened, not only the first 200
    assert max(v.ts for v in tl.violations) == pytest.approx((2 + 2 * BACKWARDS) * 1000 * 1e6 / 512_000_000)
    assert len(page_data(tl)["violations"]) == BACKWARDS
    page = out.read_text()
    assert f"invariant 19: {BACKWARDS}x" in page and f"<b>{BACKWARDS} violations</b>" in page


def test_timeline_says_it_draws_n_of_m_when_the_checker_listed_fewer() -> None:
    tl = Timeline("continuous", "us", "big")
    tl.violations = [Violation(float(i), 8, "LPIDR differs") for i in range(3)]
    tl.violations_total = 70_000
    tl.violations_per_invariant = {8: 69_990, 45: 10}
    text = tl.violations_text()
    assert text.startswith("70,000 violations (the first 3 drawn") and "pyvcore check" in text
    page = html_page(tl)
    assert "invariant 8: 69,990x" in page and "70,000 violations" in page


# ---------------------------------------------------------------- one wording per problem
CUT = "not JSON: cut short (the line ends inside a value)"


def _cut(path: Path, source: Path, keep_lines: int) -> tuple[Path, int, int]:
    """``source`` cut in the middle of line ``keep_lines + 1``: (file, that line, its length)."""
    lines = source.read_text().splitlines()
    half = lines[keep_lines][: len(lines[keep_lines]) // 2]
    path.write_text("\n".join(lines[:keep_lines]) + "\n" + half)
    return path, keep_lines + 1, len(half)


@pytest.mark.parametrize("kind", ["events", "snapshots"])
def test_a_truncated_line_is_said_alike_by_check_show_and_timeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    source = (
        many_violations(tmp_path / "full.jsonl")
        if kind == "events"
        else Path("tests/checker_live/all-stock.jsonl")
    )
    trace, line, length = _cut(tmp_path / "cut.jsonl", source, 5)
    said = f"{trace}:{line}:{length}: {CUT}"
    commands = [["check", str(trace)], ["timeline", str(trace), "-o", str(tmp_path / "t.html")]]
    if kind == "snapshots":
        commands.append(["show", str(trace)])
    for argv in commands:
        assert main(argv) == 2, argv
        out, err = capsys.readouterr()
        # one line, starting with the command's name (show adds what it could read)
        assert any(line.startswith(f"pyvcore {argv[0]}: {said}") for line in err.splitlines()), (argv, err)
        assert "line 1 column" not in err and "EOF while" not in err and "Unterminated" not in err
    if kind == "snapshots":  # show printed the stops before the cut, and says that is all it read
        assert "only the 5 stops above could be read before it" in err and out.count("== line ") == 5


def test_a_line_that_is_not_json_is_said_alike(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = json.dumps(HEADER)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(header + '\n{"seq": 1 "tb": 2}\n')
    assert main(["check", str(bad)]) == 2
    check_err = capsys.readouterr().err
    assert check_err.startswith(f"pyvcore check: {bad}:2:11: not JSON: ")
    assert main(["timeline", str(bad), "-o", str(tmp_path / "t.html")]) == 2
    assert capsys.readouterr().err.startswith(f"pyvcore timeline: {bad}:2:11: not JSON: ")


@pytest.mark.parametrize("as_json", [False, True])
def test_checks_unusable_line_starts_with_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    """A snapshot trace's unusable line, in the checker's own words or cut short, is
    said on stderr as `pyvcore check: PATH...` (as every error of every command), also
    with --json (whose report still says where)."""
    stock = Path("tests/checker_live/all-stock.jsonl").read_text().splitlines()
    no_variant = tmp_path / "no-variant.jsonl"
    no_variant.write_text(stock[0] + "\n" + '{"version": 2}\n')
    cut, line, length = _cut(tmp_path / "cut.jsonl", Path("tests/checker_live/all-stock.jsonl"), 2)
    expect = {
        no_variant: f"pyvcore check: {no_variant}:2:14: key `variant`: missing field `variant`",
        cut: f"pyvcore check: {cut}:{line}:{length}: {CUT}",
    }
    for trace, said in expect.items():
        assert main(["check", str(trace), *(["--json"] if as_json else [])]) == 2
        out, err = capsys.readouterr()
        assert said in err.splitlines(), err
        if as_json:
            assert json.loads(out)["error"]["line"] in (2, line)


# ---------------------------------------------------------------- the README's outputs
def test_every_file_the_readmes_commands_write_is_ignored_by_git() -> None:
    """Run from the checkout, the README's commands leave nothing untracked."""
    import re
    import shutil
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout: nothing to leave untracked")
    text = (root / "README.md").read_text()
    blocks = "\n".join(re.findall(r"```(?:sh|console)?\n(.*?)```", text, re.S))
    written = {
        m.group(2)
        for m in re.finditer(r"(?:--trace|--out|--report|-o)\s+([\"']?)([\w./-]+)\1", blocks)
        if not m.group(2).isupper() and not m.group(2).startswith(("/", "~", "OUT"))
    }
    assert {"pre.jsonl", "cede.html"} <= written, written
    for name in sorted(written):
        ignored = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", name], check=False)
        assert ignored.returncode == 0, f"{name}: written by a README command, not in .gitignore"
