"""The README's invariant list and snapshot format are the table's and
view.rs's: regenerate with `pyvcore invariants --markdown` when a row changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyvcore import _core
from pyvcore.checker import Checker, SnapshotError
from pyvcore.cli import main
from pyvcore.invariants import markdown_table

ROOT = Path(__file__).resolve().parents[1]


def between(text: str, begin: str, end: str) -> str:
    start = text.index(begin)
    start = text.index("\n", start) + 1
    return text[start : text.index(end, start)].strip()


def test_readme_invariant_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    block = between(readme, "<!-- invariants:begin", "<!-- invariants:end -->")
    assert block == markdown_table(), "run: pyvcore invariants --markdown, and paste it into the README"
    for info in _core.invariants():
        assert f"| {info.number} | {info.title} |" in block


def test_readme_snapshot_format_is_view_rs_module_doc():
    readme = (ROOT / "README.md").read_text()
    block = between(readme, "<!-- snapshot-format:begin", "<!-- snapshot-format:end -->")
    view = (ROOT / "rust/core/src/view.rs").read_text().splitlines()
    doc = "\n".join(
        line[4:] if line.startswith("//! ") else line[3:] for line in view if line.startswith("//!")
    )
    fmt = doc[doc.index("# Snapshot format, version 2") :].split("\n", 1)[1].strip()
    assert block == fmt
    for key in ('"version"', '"tb"', '"tb_freq"', '"pc"', '"msr"', '"dpdes"', '"hdec"', '"seq"'):
        assert key in block


def _readme_snapshot() -> dict:
    readme = (ROOT / "README.md").read_text()
    block = between(readme, "<!-- snapshot-format:begin", "<!-- snapshot-format:end -->")
    return json.loads(between(block, "```text", "```"))


def test_readme_snapshot_example_is_a_whole_snapshot_judged_clean(tmp_path: Path) -> None:
    """The README's example is JSON a user can paste (no `...`), the whole core it claims,
    and judged: clean, by `pyvcore check` as by the API."""
    snap = _readme_snapshot()
    assert len(snap["threads"]) == snap["threads_per_core"]
    outcome = Checker().check_outcome(snap)
    assert outcome.violations == [] and outcome.verdict == "clean"
    trace = tmp_path / "one.jsonl"
    trace.write_text(json.dumps(snap) + "\n")
    assert main(["check", "--json", str(trace)]) == 0


def test_a_snapshot_without_its_whole_core_is_not_judged_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Thread 0 alone of a 4-thread core whose vcore says thread 1 entered was judged
    clean; now no invariant is judged on it (the reason says why) and the verdict is
    "not judged" (exit 2).  A cpu listed twice is refused."""
    snap = _readme_snapshot()
    alone = {**snap, "threads": snap["threads"][:1]}
    outcome = Checker().check_outcome(alone)
    assert outcome.verdict == "not judged" and outcome.judged == []
    assert {why for _, why in outcome.not_judged} == {"a thread of the core is not in the snapshot"}
    trace = tmp_path / "alone.jsonl"
    trace.write_text(json.dumps(snap) + "\n" + json.dumps(alone) + "\n")
    assert main(["check", "--json", str(trace)]) == 2
    report = json.loads(capsys.readouterr().out)
    assert (report["verdict"], report["judged"], report["first_not_judged"]) == ("not judged", False, 2)
    assert main(["check", str(trace)]) == 2
    out = capsys.readouterr().out
    assert (
        "1 stop not judged (no vcore found, or a thread of the core or a vcpu/vcore pointed at missing; first at line 2: "
        f"`pyvcore show {trace} --line 2` says which)" in out
    )
    only = tmp_path / "only.jsonl"
    only.write_text(json.dumps(alone) + "\n")
    main(["show", "--width", "300", str(only)])
    shown = capsys.readouterr().out
    assert "(a thread of the core is not in the snapshot)" in shown
    assert shown.count("(a thread of the core is not in the snapshot)") == 1  # one reason, its invariants
    assert "cpu 1, 2, 3 of this stop's core(s) not in the snapshot" in shown
    assert (
        "not judged: a thread of the core is not in the snapshot" in shown
        and "no invariant violated" not in shown
    )
    twice = {**snap, "threads": [*snap["threads"][:3], snap["threads"][2]]}
    with pytest.raises(SnapshotError) as e:
        Checker().check(twice)
    assert (e.value.key, e.value.reason) == (
        "threads[3].cpu",
        "cpu 2 is listed twice (threads[2] and threads[3])",
    )


def test_a_snapshot_without_a_vcpu_it_points_at_is_not_judged_clean(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Thread 1's PACA points at vcpu 1, the vcore's runner: with `"vcpus": []` the stop
    was judged clean; now nothing is judged and the verdict says so."""
    snap = {**_readme_snapshot(), "vcpus": []}
    outcome = Checker().check_outcome(snap)
    assert outcome.verdict == "not judged" and outcome.judged == []
    assert "a vcpu or vcore it points at is not in the snapshot" in {why for _, why in outcome.not_judged}
    trace = tmp_path / "novcpu.jsonl"
    trace.write_text(json.dumps(snap) + "\n")
    assert main(["check", str(trace)]) == 2
    main(["show", "--width", "300", str(trace)])
    assert "not judged: a vcpu or vcore it points at is not in the snapshot" in capsys.readouterr().out


def test_the_check_sections_python_example_runs_as_pasted(capsys: pytest.CaptureFixture[str]) -> None:
    """The Python block of "Check a trace: `pyvcore check`" runs as pasted (from a checkout's
    top directory): it imports what it uses and defines the snapshot it checks."""
    import os
    import re

    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Check a trace: `pyvcore check`")
    block = re.search(r"^```python\n(.*?)^```", readme[start:], re.S | re.M)
    assert block and "snapshot =" in block.group(1) and "import pyvcore\n" in block.group(1)
    here = os.getcwd()
    os.chdir(ROOT)
    try:
        exec(compile(block.group(1), "README.md", "exec"), {})
    finally:
        os.chdir(here)
    out = capsys.readouterr().out
    assert "variant" in out and "20 snapshots" in out
