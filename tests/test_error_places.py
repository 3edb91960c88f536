"""One style for where an input is wrong: every reader of an input file names the place
``FILE:LINE:COLUMN: message`` (column left out when unknown), the form gcc, grep, rustc,
mypy and ruff print and editors jump to (pyvcore.errors.at, rust/core/src/location.rs).

Every command that reads a trace or log is run over a bad input here, and the first line it
prints must name the file, the line and (where it is known) the column in that form; a
scan of the sources keeps the old ``line N, column C`` / ``at column C`` wordings out, so
that a new reader cannot drift back to them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import checker_states as cs
import pytest

from pyvcore.cli import main

ROOT = Path(__file__).resolve().parent.parent
HEADER = {"format": "pyvcore-events", "version": 1, "variant": "modern", "threads_per_core": 1}
EVENT = {"seq": 1, "tb": 1000, "cpu": 0, "pc": "0xc000000000114000",
         "field": "threads[0].kvm_hstate.kvm_vcore", "old": "0x0", "new": "0x0"}  # fmt: skip
GOOD = json.dumps(cs.running())


def _snapshots(*lines: str) -> str:
    return "\n".join([GOOD, *lines]) + "\n"


def _events(*lines: str) -> str:
    return "\n".join([json.dumps(HEADER), json.dumps(EVENT), *lines]) + "\n"


BAD_KEY = json.dumps({**cs.running(), "variant": 7})
NOT_A_SNAPSHOT = json.dumps({"stop": "x"})
BAD_FIELD = json.dumps({**EVENT, "seq": 2, "field": "threads[0].kvm_hstate.bogus"})

# (id, argv before the file, argv after it, file content, line, column: None = none said)
CASES = [
    ("check-snapshots-not-json", ["check"], [], _snapshots('{"stop" "x"}'), 2, 9),
    ("check-snapshots-cut-short", ["check"], [], _snapshots('{"stop": "x'), 2, 11),
    ("check-snapshots-a-word", ["check"], [], _snapshots("not json"), 2, 2),  # not JSON, not "null"
    ("check-snapshots-bad-key", ["check"], [], _snapshots(BAD_KEY), 2, 13),
    ("check-snapshots-not-utf8", ["check"], [], (GOOD + "\n{").encode() + b"\xff}\n", 2, 2),
    ("check-snapshots-too-long", ["check"], ["--max-line-bytes", "4000"], _snapshots("x" * 5000), 2, None),
    ("check-snapshots-wrong-layout", ["check"], ["--variant", "seed"], _snapshots(GOOD), 1, None),
    ("check-events-not-json", ["check"], [], _events('{"seq": 2 "tb": 1}'), 3, 11),
    ("check-events-bad-field", ["check"], [], _events(BAD_FIELD), 3, None),
    ("show-snapshots-not-json", ["show"], [], _snapshots('{"stop" "x"}'), 2, 9),
    ("show-snapshots-no-threads", ["show"], [], _snapshots(NOT_A_SNAPSHOT), 2, 13),
    ("show-snapshots-bad-key", ["show"], [], _snapshots(BAD_KEY), 2, 13),
    ("show-events-not-json", ["show"], ["--seq", "1"], _events('{"seq": 2 "tb": 1}'), 3, 11),
    ("show-events-bad-field", ["show"], ["--seq", "1"], _events(BAD_FIELD), 3, None),
    ("timeline-snapshots-not-json", ["timeline"], ["-o", "{tmp}/t.html"], _snapshots('{"stop" "x"}'), 2, 9),
    ("timeline-snapshots-bad-key", ["timeline"], ["-o", "{tmp}/t.html"], _snapshots(BAD_KEY), 2, 13),
    ("timeline-events-not-json", ["timeline"], ["-o", "{tmp}/t.html"], _events('{"seq": 2 "tb": 1}'), 3, 11),
    ("timeline-events-bad-field", ["timeline"], ["-o", "{tmp}/t.html"], _events(BAD_FIELD), 3, None),
    ("gdb-status-not-json", ["gdb", "--print", "--status"], [], '{\n  "vmlinux": 1,,\n}\n', 2, 16),
]

# The old wordings of a place: "line 2, column 5", "at column 5", "line 2: ...".
OLD = re.compile(r"line \d+, column|at column \d+|(^|: )line \d+: ")


@pytest.mark.parametrize(("before", "after", "content", "line", "column"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_every_reader_names_the_place_file_line_column(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    before: list[str],
    after: list[str],
    content: str | bytes,
    line: int,
    column: int | None,
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    argv = [*before, str(bad), *(a.replace("{tmp}", str(tmp_path)) for a in after)]
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    place = f"{bad}:{line}" + (f":{column}" if column is not None else "")
    m = re.match(rf"pyvcore {before[0]}: {re.escape(str(bad))}:(\d+)(?::(\d+))?: \S", first)
    assert m, first
    assert first.startswith(f"pyvcore {before[0]}: {place}: "), first
    if column is None:
        assert m.group(2) is None, first  # a column is said only where it is known
    assert not OLD.search(err), err
    assert "Traceback" not in err


def test_the_python_api_and_the_rust_errors_say_the_place_alike(tmp_path: Path) -> None:
    """check_trace's report, SnapshotError and EventLogError carry the line and column as
    values; the report's line and JSON say FILE:LINE:COLUMN."""
    from pyvcore import EventLogError, SnapshotError, _core, check_trace
    from pyvcore.checker import Checker

    trace = tmp_path / "t.jsonl"
    trace.write_text(_snapshots(BAD_KEY))
    report = check_trace(trace)
    assert report.error is not None and (report.error["line"], report.error["column"]) == (2, 13)
    text = report.to_dict()["error"]["text"]
    assert text == f"{trace}:2:13: key `variant`: wrong JSON type for this key: expected " + (
        '"seed", "modern" or "prepatch"'
    )
    assert text in report.format_text()
    with pytest.raises(SnapshotError) as e:
        Checker().check(BAD_KEY, line=9)
    assert (e.value.line, e.value.column, e.value.key) == (9, 13, "variant")
    assert str(e.value) == f"9:13: {e.value.detail}"
    with pytest.raises(EventLogError) as f:
        _core.replay_events(_events('{"seq": 2 "tb": 1}'))
    assert (f.value.line, f.value.column, str(f.value)) == (3, 11, "3:11: not JSON: expected `,` or `}`")


def test_no_source_says_a_place_the_old_way() -> None:
    """The wordings this style replaced stay out of every reader, Python and Rust."""
    old = re.compile(r"line \{[^}]*\}, column|at column \{|\"line \{[^}]*\}: |\}: line \{")
    sources = [*(ROOT / "pyvcore").rglob("*.py"), *(ROOT / "gdb_plugins").rglob("*.py")]
    sources += [p for d in ("core", "python", "plugin") for p in (ROOT / "rust" / d / "src").rglob("*.rs")]
    assert len(sources) > 50
    found = [
        f"{p}:{n}"
        for p in sources
        for n, text in enumerate(p.read_text().splitlines(), 1)
        if old.search(text)
    ]
    assert found == []
