"""The edges of explore's Python API and of `pyvcore explore`: every parameter checked
for its type and range (one ValueError, one line and exit 2 from the command), a faulty
result not replayed, contradictory reductions refused, and what the report and the JSON
say about the counterexample's length, the trace file and the verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyvcore import explore
from pyvcore.cli import main
from pyvcore.explorer import COUNT_LIMITS, SWITCH_PARAMETERS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vcpus": "0-3"}, "vcpus must be a list of vcpu ids such as [0, 1, 2, 3], not '0-3' (str)"),
        ({"vcpus": 3}, "vcpus must be a list of vcpu ids"),
        ({"vcpus": [0, 1.0]}, "not one holding 1.0 (float)"),
        ({"vcpus": [0, True]}, "not one holding True (bool)"),
        ({"ignore": [-1]}, "ignore: there is no invariant -1 (the invariants are 1-"),
        ({"ignore": [999]}, "ignore: there is no invariant 999"),
        ({"ignore": [2**70]}, "there is no invariant"),
        ({"ignore": "29"}, "ignore must be a list of invariant numbers"),
        ({"threads": True}, "threads must be an integer (1, 2, 4 or 8), not True (bool)"),
        ({"threads": 2.0}, "threads must be an integer"),
        ({"variant": 3}, "variant must be a string (seed, modern or prepatch)"),
        ({"fault": 3}, "fault must be None or a fault's name"),
        ({"progress": 3}, "progress must be a callable or None"),
    ],
)
def test_a_bad_parameter_is_one_value_error(kwargs: dict, message: str) -> None:
    """Not a bare TypeError or OverflowError from the extension, and never accepted."""
    args = {"variant": "modern", "threads": 2, **kwargs}
    with pytest.raises(ValueError) as caught:
        explore(**args)
    assert type(caught.value) is ValueError
    text = str(caught.value)
    assert message in text and "\n" not in text, text


def test_the_unknown_invariant_error_names_every_valid_number() -> None:
    from pyvcore import _core

    with pytest.raises(ValueError) as caught:
        explore("modern", 2, ignore=[22])
    text = str(caught.value)
    for info in _core.invariants():
        _, _, rest = text.partition("the invariants are ")
        spans = [part.split("-") for part in rest.split(";")[0].split(", ")]
        assert any(int(s[0]) <= info.number <= int(s[-1]) for s in spans), (info.number, text)
    assert explore("modern", 2, ignore=(29,)).ignored == [29]


@pytest.mark.parametrize("name", sorted(COUNT_LIMITS))
def test_no_count_takes_a_bool_or_a_float(name: str) -> None:
    for value in (True, False, 1.0, "1"):
        with pytest.raises(ValueError, match=f"{name} must be an integer 0..{COUNT_LIMITS[name]} or None"):
            explore("modern", 2, **{name: value})
    with pytest.raises(ValueError, match=f"{name} must be 0..{COUNT_LIMITS[name]}, not -1"):
        explore("modern", 2, **{name: -1})


@pytest.mark.parametrize("name", SWITCH_PARAMETERS)
def test_every_switch_takes_only_true_or_false(name: str) -> None:
    for value in (1, "no", None):
        with pytest.raises(ValueError, match=f"{name} must be True or False, not "):
            explore("modern", 2, **{name: value})


def test_every_int_and_bool_parameter_is_checked() -> None:
    """The tables above cover every parameter of explore() but the positional three, the
    names (variant, fault), the lists (vcpus, ignore) and progress."""
    import inspect

    names = set(inspect.signature(explore).parameters)
    rest = {"variant", "threads", "vcpus", "fault", "ignore", "progress"}
    assert names == set(COUNT_LIMITS) | set(SWITCH_PARAMETERS) | rest


def test_a_faulty_result_is_not_replayed_in_the_model_without_the_fault() -> None:
    result = explore("seed", 4, fault="in-guest-not-cleared")
    assert result.violation is not None
    with pytest.raises(ValueError) as replayed:
        result.replay()
    with pytest.raises(ValueError) as traced:
        result.trace_lines()
    assert str(replayed.value) == str(traced.value)
    assert "fault 'in-guest-not-cleared' cannot be replayed" in str(replayed.value)
    # Without a fault the counterexample still replays to its violation.
    plain = explore("prepatch", 2)
    assert any(v.invariant == 29 for v in plain.replay().violations)


def test_partial_order_without_any_reduction_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="partial_order=True contradicts reduction=False"):
        explore("seed", 2, partial_order=True, reduction=False)
    argv = ["explore", "--variant", "seed", "--threads", "2", "--partial-order", "--no-reduction"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        "pyvcore explore: --partial-order contradicts --no-reduction (the full search, every "
        "reduction off): give one or the other\n"
    )
    assert captured.out == ""
    assert main([*argv, "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "error" and "--partial-order contradicts --no-reduction" in out["error"]


def test_a_partial_order_counterexample_is_not_called_shortest(capsys: pytest.CaptureFixture[str]) -> None:
    reduced = explore("prepatch", 2, partial_order=True)
    assert reduced.violation is not None and reduced.partial_order
    assert not explore("prepatch", 2).partial_order
    assert main(["explore", "--variant", "prepatch", "--threads", "2", "--partial-order"]) == 1
    text = capsys.readouterr().out
    assert "the partial-order reduction may find a longer one than the shortest" in text
    assert "events, shortest" not in text
    assert main(["explore", "--variant", "prepatch", "--threads", "2"]) == 1
    assert "events, shortest; vcpus" in capsys.readouterr().out
    assert main(["explore", "--variant", "prepatch", "--threads", "2", "--partial-order", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["partial_order"] is True


def test_a_trace_file_left_as_it_was_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old.jsonl"
    old.write_text("an earlier counterexample\n")
    assert main(["explore", "--variant", "modern", "--threads", "2", "--trace", str(old)]) == 0
    out = capsys.readouterr().out
    assert f"no counterexample: nothing written to {old} (it already exists and was left as it was)" in out
    assert old.read_text() == "an earlier counterexample\n"
    new = tmp_path / "new.jsonl"
    assert main(["explore", "--variant", "modern", "--threads", "2", "--trace", str(new)]) == 0
    out = capsys.readouterr().out
    assert f"nothing written to {new}\n" in out and "left as it was" not in out


def test_every_json_result_has_a_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    """As ``check --json`` has one, and as the refusal's {"verdict": "error"} has."""
    for argv, code, verdict in (
        (["--variant", "modern", "--threads", "2"], 0, "clean"),
        (["--variant", "prepatch", "--threads", "2"], 1, "violation"),
        (["--variant", "modern", "--threads", "4", "--max-states", "100"], 2, "incomplete"),
        (["--variant", "seed", "--threads", "2", "--fault", "in-guest-not-cleared"], 1, "violation"),
    ):
        assert main(["explore", *argv, "--json"]) == code
        out = json.loads(capsys.readouterr().out)
        assert out["verdict"] == verdict, argv
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Explore the model")[1].split("\n## ")[0]
    assert '`verdict` (`"clean"`, `"violation"` or `"incomplete"`' in section
    assert "cannot be combined with `--fault`" in section


@pytest.mark.parametrize("script", ["bench_model.py", "bench_checker.py"])
def test_a_benchmark_help_is_not_cut_off(script: str) -> None:
    """The whole first paragraph of the docstring, not its first line."""
    path = ROOT / "tests" / "benchmarks" / script
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    source = path.read_text()
    doc = source.split('"""')[1]
    first = " ".join(doc.split("\n\n")[0].split())
    assert first in " ".join(proc.stdout.split())
