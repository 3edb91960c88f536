"""The explorer on all three variants, through the API and `pyvcore explore`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pyvcore import ModelError, explore
from pyvcore.cli import main


@pytest.mark.parametrize("variant", ["seed", "modern"])
@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_seed_and_modern_hold(variant: str, threads: int) -> None:
    r = explore(variant, threads)
    assert r.ok and r.complete, (r.violated, r.counterexample)
    assert r.counterexample is None and r.violated is None
    assert r.states > 10 and r.transitions >= r.states - 1 and r.finished_runs > 0


@pytest.mark.parametrize("variant", ["seed", "modern"])
def test_four_threads_well_under_a_second_of_cpu(variant: str) -> None:
    r = explore(variant, 4)
    assert r.ok and r.complete
    assert r.states > 10_000
    # The target is < 1 s on an idle machine; allow for a loaded CI host.
    assert r.seconds < 5


def test_prepatch_finds_the_doorbell_misdelivery() -> None:
    r = explore("prepatch", 4)
    assert not r.ok and r.violation is not None
    assert r.violation.invariant == 29
    assert "doorbell" in r.violated and "instead of" in r.violated
    trace = r.counterexample
    assert trace is not None and 4 <= len(trace) <= 10
    assert trace[-1].startswith("doorbell(")
    # Replaying the trace shows the misdelivery: the doorbell reaches another vcpu.
    vc = r.replay()
    assert any(v.invariant == 29 for v in vc.violations)
    fields = r.violation.fields
    assert fields["delivered_vcpu"] != fields["intended_vcpu"]


@pytest.mark.parametrize("vcpus", [[1, 2], [2], [0, 3]])
def test_prepatch_subsets_of_vcpus(vcpus: list) -> None:
    r = explore("prepatch", 4, vcpus)
    assert r.violation is not None and r.violation.invariant == 29
    seed = explore("seed", 4, vcpus)
    assert seed.ok and seed.complete


def test_same_vcore_other_than_zero() -> None:
    r = explore("modern", 4, [4, 5, 6, 7])
    assert r.ok and r.complete and r.vcpus == [4, 5, 6, 7]


def test_modern_with_exit_requests_holds() -> None:
    plain = explore("modern", 3)
    r = explore("modern", 3, exit_request=True)
    assert r.ok and r.complete and r.states > plain.states
    assert "VCORE_EXIT_REQ" in r.bounds


@pytest.mark.parametrize(
    "variant,fault,invariant",
    [
        ("seed", "no-cede-exit", 25),
        ("modern", "no-cede-exit", 25),
        ("seed", "early-switch-out", None),
        ("modern", "early-switch-out", None),
        ("seed", "no-exit-ipi", 30),
    ],
)
def test_injected_faults_are_caught(variant: str, fault: str, invariant) -> None:
    """The verdict "all invariants hold" is not vacuous: each broken rule is found."""
    r = explore(variant, 3, fault=fault)
    assert r.violation is not None, fault
    if invariant is not None:
        assert r.violation.invariant == invariant
    assert r.counterexample and len(r.counterexample) <= 16
    assert f"FAULT {fault}" in r.bounds


def test_unknown_fault_and_bad_bounds() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        explore("seed", 2, fault="nope")
    with pytest.raises(ValueError, match="max_cedes"):
        explore("seed", 2, max_cedes=-1)
    with pytest.raises(ValueError, match="max_prods"):
        explore("seed", 2, max_prods=256)


def test_symmetry_does_not_change_the_verdict() -> None:
    with_sym = explore("seed", 3)
    without = explore("seed", 3, symmetry=False)
    assert with_sym.ok and without.ok
    assert with_sym.states < without.states


def test_bounds_are_reported_and_change_the_size() -> None:
    small = explore("seed", 3, max_cedes=0, max_prods=0)
    big = explore("seed", 3, max_cedes=3)
    assert small.ok and big.ok
    assert small.states < big.states
    assert "cede" in big.bounds and "one run" in big.bounds


def test_max_states_marks_the_report_incomplete() -> None:
    r = explore("modern", 4, max_states=100)
    assert not r.complete and r.states <= 101


def test_counterexample_as_a_snapshot_trace(tmp_path) -> None:
    """The counterexample replays into snapshots that pyvcore check reads; the
    checker flags the misplaced vcpu on its own (static 29)."""
    path = tmp_path / "cex.jsonl"
    assert main(["explore", "--variant", "prepatch", "--threads", "4", "--trace", str(path)]) == 1
    lines = path.read_text().splitlines()
    r = explore("prepatch", 4)
    assert len(lines) == len(r.counterexample) + 1
    assert json.loads(lines[-1])["event"] == r.counterexample[-1]
    from pyvcore import check_trace

    report = check_trace(str(path))
    assert report.snapshots == len(lines)
    assert any(v.invariant == 29 for v in report.violations)
    # A seed run has no counterexample, so nothing is written.
    other = tmp_path / "none.jsonl"
    assert main(["explore", "--variant", "seed", "--threads", "2", "--trace", str(other)]) == 0
    assert not other.exists()


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        explore("p8", 4)
    with pytest.raises(ValueError):
        explore("seed", 9)
    with pytest.raises(ModelError, match="one vcore"):
        explore("seed", 4, [1, 5])
    with pytest.raises(ModelError, match="already exists"):
        explore("seed", 4, [1, 1])
    with pytest.raises(ModelError, match="no vcpus"):
        explore("seed", 4, [])


def test_cli_exit_codes_and_json(capsys: pytest.CaptureFixture) -> None:
    assert main(["explore", "--variant", "prepatch", "--threads", "4", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    for key in ("states", "transitions", "seconds", "counterexample", "violated"):
        assert key in out
    assert out["violated"].startswith("invariant 29")
    assert out["counterexample"][-1].startswith("doorbell(")

    assert main(["explore", "--variant", "seed", "--threads", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counterexample"] is None and out["violated"] is None and out["states"] > 0

    assert main(["explore", "--variant", "modern", "--threads", "2"]) == 0
    text = capsys.readouterr().out
    assert "all invariants hold" in text and "bounds:" in text

    assert main(["explore", "--variant", "prepatch", "--threads", "2", "--vcpus", "1"]) == 1
    text = capsys.readouterr().out
    assert "counterexample" in text and "violated: invariant 29" in text

    assert main(["explore", "--variant", "seed", "--threads", "4", "--vcpus", "1,7"]) == 2
    assert "one vcore" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["explore", "--variant", "seed", "--threads", "9"],
        ["explore", "--variant", "p8", "--threads", "4"],
        ["explore", "--variant", "seed", "--threads", "4", "--vcpus", "x"],
        ["explore", "--threads", "4"],
        ["explore", "--variant", "seed", "--threads", "2", "--max-cedes", "-1"],
        ["explore", "--variant", "seed", "--threads", "2", "--max-cedes", "300"],
        ["explore", "--variant", "seed", "--threads", "2", "--max-states", "-5"],
        ["explore", "--variant", "seed", "--threads", "2", "--fault", "nope"],
    ],
)
def test_cli_bad_arguments_exit_2(argv: list) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_cli_as_a_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pyvcore", "explore", "--variant", "prepatch", "--threads", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "doorbell(vcpu=" in proc.stdout


@pytest.mark.skipif(
    not os.environ.get("PYVCORE_SLOW"),
    reason="the full 8-thread exploration takes 30-60 s: set PYVCORE_SLOW=1 "
    "(tests/benchmarks/bench_model.py runs it too)",
)
@pytest.mark.parametrize("variant", ["seed", "modern"])
def test_eight_threads_complete(variant: str) -> None:
    """The full 8-thread exploration (about half a minute on an idle 2-core machine)."""
    r = explore(variant, 8)
    assert r.ok and r.complete and r.states > 100_000


def test_eight_threads_prepatch_fast() -> None:
    r = explore("prepatch", 8)
    assert r.violation is not None and r.violation.invariant == 29 and len(r.counterexample) <= 10
