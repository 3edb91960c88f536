"""The explorer on all three variants, through the API and `pyvcore explore`."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyvcore import ModelError, explore
from pyvcore.cli import main
from pyvcore.model import FAULT_INFO, FAULTS


@pytest.mark.parametrize("variant", ["seed", "modern"])
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_seed_and_modern_hold(variant: str, threads: int) -> None:
    r = explore(variant, threads)
    assert r.ok and r.complete, (r.violated, r.counterexample)
    assert r.counterexample is None and r.violated is None
    assert r.states > 10 and r.transitions >= r.states - 1 and r.finished_runs > 0


@pytest.mark.parametrize("variant", ["seed", "modern"])
def test_four_threads_with_doorbells(variant: str) -> None:
    """Doorbells are explored: sent, pending across cedes and exits, taken."""
    r = explore(variant, 4)
    assert r.ok and r.complete and r.states > 10_000
    assert "msgsndp" in r.bounds
    assert explore(variant, 4, max_doorbells=0).states < r.states


def test_prepatch_finds_the_doorbell_misdelivery() -> None:
    r = explore("prepatch", 4)
    assert not r.ok and r.violation is not None
    assert r.violation.invariant == 29
    assert r.violated is not None and "doorbell" in r.violated
    trace = r.counterexample
    assert trace is not None and 4 <= len(trace) <= 9
    # Replaying the trace shows the misdelivery: the doorbell for thread N
    # reaches another vcpu, or cannot reach vcpu N, which prepatch placed on
    # another thread (the shortest: the msgsndp itself, 8 events).
    vc = r.replay()
    assert any(v.invariant == 29 for v in vc.violations)
    fields = r.violation.fields
    if trace[-1].startswith("take_doorbell("):
        assert fields["delivered_vcpu"] != fields["intended_vcpu"]
    else:
        assert trace[-1].startswith("doorbell(")
        assert fields["runs_on_thread"] != fields["thread"]


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
    plain = explore("modern", 2)
    r = explore("modern", 2, exit_request=True)
    assert r.ok and r.complete and r.states > plain.states
    assert "VCORE_EXIT_REQ" in r.bounds


@pytest.mark.parametrize("variant", ["seed", "prepatch"])
def test_exit_request_is_refused_where_the_kernel_has_none(
    variant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """VCORE_EXIT_REQ is a bit of modern's entry_exit_map: asking for it on a kernel that counts
    in entry_exit_count would change nothing, so it is refused (like a fault not modelled)."""
    with pytest.raises(ValueError, match=r"exit requests \(--exit-request\) are modern only"):
        explore(variant, 2, exit_request=True)
    assert main(["explore", "--variant", variant, "--threads", "2", "--exit-request"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"pyvcore explore: exit requests (--exit-request) are modern only: the {variant} kernel counts "
        "entries and exits "
        "in vc->entry_exit_count, which has no VCORE_EXIT_REQ bit (bit 16 of modern's entry_exit_map, "
        "set from another subcore)"
    ]


# Each fault reintroduces a real bug class; the explorer finds a shortest
# counterexample and names the invariant it breaks.
FAULT_CASES = [
    ("seed", "no-cede-exit", 25),
    ("modern", "no-cede-exit", 25),
    ("seed", "early-switch-out", None),
    ("modern", "early-switch-out", None),
    ("seed", "no-exit-ipi", 30),
    ("seed", "start-before-grab", None),
    ("modern", "start-before-grab", None),
    ("seed", "nap-counted-before-clear", None),
    ("seed", "latecomer-released-early", None),
    ("modern", "latecomer-released-early", None),
    ("seed", "in-guest-not-cleared", None),
    ("modern", "in-guest-not-cleared", None),
    ("seed", "doorbell-wrong-sibling", 29),
    ("modern", "doorbell-wrong-sibling", 29),
    ("seed", "doorbell-lost-on-wake", 29),
    ("modern", "doorbell-lost-on-wake", 29),
]


@pytest.mark.parametrize("variant,fault,invariant", FAULT_CASES)
def test_injected_faults_are_caught(variant: str, fault: str, invariant: int | None) -> None:
    """The verdict "all invariants hold" is not vacuous: each broken rule is found."""
    r = explore(variant, 2, fault=fault)
    assert r.violation is not None, fault
    if invariant is not None:
        assert r.violation.invariant == invariant, r.violated
    assert r.counterexample and len(r.counterexample) <= 16
    assert f"FAULT {fault}" in r.bounds and r.fault == fault
    # The same model without the fault holds: the fault is the cause, and the
    # counterexample's events are legal and clean without it.
    assert explore(variant, 2).ok
    assert r.without_fault is None


def test_a_counterexample_that_does_not_need_the_fault_says_so(capsys: pytest.CaptureFixture) -> None:
    """Prepatch's own doorbell misdelivery (8 events) is shorter than what most faults break:
    the report says the counterexample holds without the fault, naming the invariant and event,
    rather than letting it pass for the fault's.  A fault whose counterexample needs it
    (doorbell-wrong-sibling: the doorbell lands on thread 0) gets no note."""
    own = explore("prepatch", 4)
    r = explore("prepatch", 4, fault="in-guest-not-cleared")
    assert own.violation is not None and r.counterexample == own.counterexample
    assert r.without_fault == (own.violation.invariant, len(own.counterexample or []))
    assert (
        main(["explore", "--variant", "prepatch", "--threads", "4", "--fault", "in-guest-not-cleared"]) == 1
    )
    text = capsys.readouterr().out
    assert (
        "note: this counterexample does not need fault in-guest-not-cleared: without it the same events "
        "break invariant 29 (doorbell delivery) after event 8, so prepatch's own bug is found first" in text
    )
    needed = explore("prepatch", 4, fault="doorbell-wrong-sibling")
    assert needed.violation is not None and needed.without_fault is None
    assert needed.counterexample != own.counterexample
    assert (
        main(
            [
                "explore",
                "--variant",
                "prepatch",
                "--threads",
                "4",
                "--fault",
                "doorbell-wrong-sibling",
                "--json",
            ]
        )
        == 1
    )
    assert json.loads(capsys.readouterr().out)["without_fault"] is None


def test_every_fault_is_tested_and_cites_its_fix() -> None:
    tested = {fault for _, fault, _ in FAULT_CASES}
    assert tested == set(FAULTS)
    for name, info in FAULT_INFO.items():
        assert info.variants, name
        if info.fixed_by is not None:  # a commit: "Linux 7b444c6710c6"
            assert re.fullmatch(r"(Linux|QEMU) [0-9a-f]{12}", info.fixed_by), (name, info.fixed_by)
            assert info.description.startswith(f"the bug fixed by {info.fixed_by}: "), name
        else:  # no fixing commit known: where the rule is
            assert re.match(r"breaks the rule in Linux \S+\.[Sch]\b[^:]*: \S", info.description), name
        assert "and earlier" not in info.description and "((" not in info.description, name
    assert FAULT_INFO["no-exit-ipi"].fixed_by is None
    assert FAULT_INFO["start-before-grab"].description == (
        "the bug fixed by Linux 7b444c6710c6: grab every secondary before starting any"
    )


def test_a_fault_without_a_known_fix_names_where_its_rule_is() -> None:
    from pyvcore.explore_report import format_result

    text = " ".join(format_result(explore("seed", 2, fault="no-exit-ipi")).split("\n  "))  # unwrapped
    assert (
        "\nfault: no-exit-ipi injected (breaks the rule in Linux book3s_hv_rmhandlers.S kvmhv_commence_exit: "
        in text
    )
    assert "fixed by Linux book3s" not in text


def test_doorbell_faults_name_what_breaks() -> None:
    wrong = explore("modern", 4, fault="doorbell-wrong-sibling")
    assert "pending on thread" in wrong.violated
    lost = explore("seed", 4, fault="doorbell-lost-on-wake")
    assert "lost" in lost.violated
    assert any(e.startswith("cede(") for e in lost.counterexample)


def test_partial_order_reduction_keeps_the_verdicts() -> None:
    """The doorbell reduction (opt-in) finds the same bugs."""
    for variant in ("seed", "modern"):
        reduced = explore(variant, 2, partial_order=True)
        plain = explore(variant, 2)
        assert reduced.ok and plain.ok and reduced.complete and plain.complete
    for variant, fault, _ in FAULT_CASES:
        a = explore(variant, 2, fault=fault, partial_order=True)
        b = explore(variant, 2, fault=fault)
        assert a.violation is not None and b.violation is not None
        assert a.violation.invariant == b.violation.invariant, (fault, a.violated, b.violated)


def test_subsumption_explores_fewer_states_and_keeps_the_counterexamples() -> None:
    """A state equal to one already kept but for more of the budget used is
    not explored again: fewer states, the same verdicts, counterexamples
    just as short."""
    for variant in ("seed", "modern"):
        merged = explore(variant, 4)
        every = explore(variant, 4, subsumption=False)
        assert merged.ok and every.ok and merged.complete and every.complete
        assert merged.states < every.states / 2
    for variant, fault, _ in FAULT_CASES:
        a = explore(variant, 4, fault=fault)
        b = explore(variant, 4, fault=fault, subsumption=False)
        assert a.violation is not None and b.violation is not None
        assert a.violation.invariant == b.violation.invariant, (fault, a.violated, b.violated)
        assert len(a.counterexample or []) == len(b.counterexample or []), fault


# The smaller bounds under which the full N = 4 search stays a few seconds.
SMALL = {"max_doorbells": 0, "max_prods": 0, "max_cedes": 1}


@pytest.mark.parametrize("variant", ["seed", "modern"])
def test_no_reduction_gives_the_same_verdicts(variant: str, capsys: pytest.CaptureFixture) -> None:
    """Every merging (symmetry, subsumption, dead values) against the full
    search (``reduction=False``): the same verdicts and counterexamples as
    short, with the state counts printed."""
    cases: list[tuple[int, dict[str, int], str | None]] = [(n, {}, None) for n in (1, 2)]
    cases.append((4, SMALL, None))
    cases += [(2, {}, f) for v, f, _ in FAULT_CASES if v == variant]
    cases += [(4, SMALL, f) for v, f, _ in FAULT_CASES if v == variant and "doorbell" not in f]
    with capsys.disabled():
        for threads, bounds, fault in cases:
            reduced = explore(variant, threads, fault=fault, **bounds)
            full = explore(variant, threads, fault=fault, reduction=False, **bounds)
            print(
                f"\n  {variant} N={threads} {fault or 'no fault'}{' (small bounds)' if bounds else ''}: "
                f"{reduced.states:,} states reduced, {full.states:,} full",
                end="",
            )
            assert reduced.complete and full.complete
            assert reduced.states <= full.states
            assert (reduced.violation is None) == (full.violation is None), (threads, fault)
            if full.violation is not None:
                assert reduced.violation is not None
                assert reduced.violation.invariant == full.violation.invariant, (threads, fault)
                assert len(reduced.counterexample or []) == len(full.counterexample or []), (threads, fault)


def test_faults_are_found_at_every_thread_count() -> None:
    """Each fault is found at N = 2, 4 and 8 naming the same invariant (the
    N = 8 searches included: a shortest counterexample is a few thousand
    states away); at N = 1 a fault that shows is named alike."""
    for variant, fault, _ in FAULT_CASES:
        found = {n: explore(variant, n, fault=fault) for n in (1, 2, 4, 8)}
        named = found[2].violation
        assert named is not None, fault
        for n in (4, 8):
            v = found[n].violation
            assert v is not None and v.invariant == named.invariant, (fault, n, found[n].violated)
        one = found[1]
        assert one.complete
        if one.violation is not None:
            assert one.violation.invariant == named.invariant, (fault, one.violated)


def test_dead_values_merge_states_and_keep_the_verdicts() -> None:
    """Forgetting the values nothing reads again merges states and changes no
    verdict.  Few since an H_PROD waits for the cede it changes: the prodded
    flags and the kicked threads' IPI flags it merged no longer arise (12
    states of 28,886 at seed N = 4)."""
    for variant in ("seed", "modern"):
        merged = explore(variant, 4)
        kept = explore(variant, 4, forget_dead=False)
        assert merged.ok and kept.ok and merged.complete and kept.complete
        assert merged.states < kept.states, (merged.states, kept.states)
        assert "values nothing reads again" in merged.bounds
        assert "values nothing reads again" not in kept.bounds
    for variant, fault, _ in FAULT_CASES:
        a = explore(variant, 4, fault=fault)
        b = explore(variant, 4, fault=fault, forget_dead=False)
        assert a.violation is not None and b.violation is not None
        assert a.violation.invariant == b.violation.invariant, (fault, a.violated, b.violated)
        assert len(a.counterexample or []) == len(b.counterexample or []), fault


def test_cli_no_reduction(capsys: pytest.CaptureFixture) -> None:
    assert main(["explore", "--variant", "seed", "--threads", "2", "--no-reduction", "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert main(["explore", "--variant", "seed", "--threads", "2", "--json"]) == 0
    reduced = json.loads(capsys.readouterr().out)
    assert reduced["states"] < full["states"]
    assert "not explored again" in reduced["bounds"] and "not explored again" not in full["bounds"]
    assert main(["explore", "--variant", "seed", "--threads", "2", "--keep-dead-values", "--json"]) == 0
    kept = json.loads(capsys.readouterr().out)
    assert reduced["states"] < kept["states"] < full["states"]


def test_unknown_fault_and_bad_bounds() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        explore("seed", 2, fault="nope")
    with pytest.raises(ValueError, match="max_cedes"):
        explore("seed", 2, max_cedes=-1)
    with pytest.raises(ValueError, match="max_prods"):
        explore("seed", 2, max_prods=256)


def test_symmetry_does_not_change_the_verdict() -> None:
    with_sym = explore("seed", 4, max_doorbells=0)
    without = explore("seed", 4, max_doorbells=0, symmetry=False)
    assert with_sym.ok and without.ok
    assert with_sym.states < without.states


def test_bounds_are_reported_and_change_the_size() -> None:
    small = explore("seed", 2, max_cedes=0, max_prods=0)
    big = explore("seed", 2, max_cedes=3)
    assert small.ok and big.ok
    assert small.states < big.states
    assert "cede" in big.bounds and "one run" in big.bounds


def test_budgets_mark_the_report_incomplete(capsys: pytest.CaptureFixture) -> None:
    """Running out of a budget is never a proof: incomplete, exit 2."""
    r = explore("modern", 4, max_states=100)
    assert not r.complete and r.ok and r.incomplete == "the state budget ran out"
    assert r.states < 100 + 20_000  # checked between batches
    m = explore("modern", 4, max_memory=1 << 20)
    assert m.incomplete == "the memory budget ran out"
    assert main(["explore", "--variant", "modern", "--threads", "4", "--max-states", "100"]) == 2
    assert "INCOMPLETE" in capsys.readouterr().out
    assert main(["explore", "--variant", "modern", "--threads", "4", "--max-memory", "1M", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["complete"] is False and out["incomplete"] == "the memory budget ran out"


def test_progress_is_reported_and_can_stop_the_search() -> None:
    seen: list[int] = []

    def progress(p: object) -> None:
        seen.append(p.states)  # type: ignore[attr-defined]
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        explore("modern", 4, progress=progress)
    assert len(seen) == 2 and seen[0] > 0


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
    for threads in (0, 3, 5, 6, 7, 9):
        with pytest.raises(ValueError, match="1, 2, 4 or 8"):
            explore("seed", threads)
    with pytest.raises(ModelError, match="one vcore"):
        explore("seed", 4, [1, 5])
    with pytest.raises(ValueError, match="out of range"):
        explore("seed", 4, [2**40])
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
    assert out["counterexample"][-1].startswith(("doorbell(", "take_doorbell("))

    assert main(["explore", "--variant", "seed", "--threads", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counterexample"] is None and out["violated"] is None and out["states"] > 0

    assert main(["explore", "--variant", "modern", "--threads", "2"]) == 0
    text = capsys.readouterr().out
    assert "all invariants hold" in text and "bounds:" in text

    assert main(["explore", "--variant", "prepatch", "--threads", "2", "--vcpus", "1"]) == 1
    text = capsys.readouterr().out
    assert "counterexample" in text and "violated after event " in text and ": invariant 29 (" in text

    assert main(["explore", "--variant", "seed", "--threads", "4", "--vcpus", "1,7"]) == 2
    assert "one vcore" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["explore", "--variant", "seed", "--threads", "9"],
        ["explore", "--variant", "modern", "--threads", "6", "--vcpus", "6-11"],
        ["explore", "--variant", "seed", "--threads", "3"],
        ["explore", "--variant", "seed", "--threads", "4", "--vcpus", "0-10000000000"],
        ["explore", "--variant", "seed", "--threads", "4", "--vcpus", "99999999999999999999999"],
        ["explore", "--variant", "seed", "--threads", "4", "--vcpus", "3-1"],
        ["explore", "--variant", "seed", "--threads", "4", "--vcpus", ","],
        ["explore", "--variant", "seed", "--threads", "2", "--max-memory", "lots"],
        ["explore", "--variant", "p8", "--threads", "4"],
        ["explore", "--variant", "seed", "--threads", "4", "--vcpus", "x"],
        ["explore", "--threads", "4"],
        ["explore", "--variant", "seed", "--threads", "2", "--max-cedes", "-1"],
        ["explore", "--variant", "seed", "--threads", "2", "--max-cedes", "300"],
        ["explore", "--variant", "seed", "--threads", "2", "--max-states", "-5"],
        ["explore", "--variant", "seed", "--threads", "2", "--fault", "nope"],
    ],
)
def test_cli_bad_arguments_exit_2(argv: list, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyvcore explore: ") and len(err.splitlines()) == 1, err


def test_cli_names_the_bad_vcpu_argument(capsys: pytest.CaptureFixture) -> None:
    assert main(["explore", "--variant", "seed", "--threads", "4", "--vcpus", "99999999999999999999999"]) == 2
    err = capsys.readouterr().err
    assert "--vcpus: 99999999999999999999999 is too large" in err and "Traceback" not in err
    assert main(["explore", "--variant", "seed", "--threads", "4", "--vcpus", "0-10000000000"]) == 2
    assert "--vcpus: 10000000000 is too large" in capsys.readouterr().err
    assert main(["explore", "--variant", "seed", "--threads", "4", "--vcpus", "0-100"]) == 2
    assert "more than a vcore holds" in capsys.readouterr().err


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
    reason="the full 8-thread exploration (1.9-3.1 million states with doorbells, about 0.3 GB) takes "
    "6-9 CPU seconds, half a minute on a loaded 2-core machine: set PYVCORE_SLOW=1 "
    "(tests/benchmarks/bench_model.py runs it too)",
)
@pytest.mark.parametrize("variant", ["seed", "modern"])
def test_eight_threads_complete(variant: str) -> None:
    """The full 8-thread exploration, doorbells included: seed and modern hold at N = 8."""
    r = explore(variant, 8)
    assert r.ok and r.complete and r.states > 100_000


def test_eight_threads_prepatch_fast() -> None:
    r = explore("prepatch", 8)
    assert r.violation is not None and r.violation.invariant == 29 and len(r.counterexample) <= 12


def test_trace_with_a_fault_is_refused_not_written_wrong(tmp_path, capsys):
    """A faulty counterexample replayed on the rule-keeping snapshot model would show no fault
    (or be refused mid-way): --trace with --fault is one clear error, and no file is written."""
    from pyvcore.explorer import main

    out = tmp_path / "cex.jsonl"
    code = main(
        ["--variant", "seed", "--threads", "4", "--fault", "in-guest-not-cleared", "--trace", str(out)]
    )
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "--trace cannot be combined with --fault" in err and "Traceback" not in err
    result = explore("seed", 4, fault="in-guest-not-cleared")
    assert result.violation is not None
    with pytest.raises(ValueError, match="cannot be replayed"):
        result.trace_lines()


def test_prepatch_report_says_what_each_invariant_29_is() -> None:
    """`explore prepatch` names invariant 29 twice: once as the per-state check it leaves
    out, once as the violation. The words must be true: the per-state check would have
    reported the run before any doorbell, and the violation came from the run's events."""
    from pyvcore import Checker
    from pyvcore.explorer import format_result

    r = explore("prepatch", 4)
    assert r.ignored == [29] and r.violation is not None and r.violation.invariant == 29
    text = format_result(r)
    lines = text.splitlines()
    note = " ".join(line.strip() for line in lines if "not per" in line or line.startswith("  "))
    assert note.startswith("invariant 29 (doorbell delivery) is judged on the doorbells the run sends")
    assert "not reported" not in text
    # True: the per-state check reports the counterexample's states before its doorbell ...
    checker = Checker()
    states = r.trace_lines()
    flagged = [i for i, line in enumerate(states) if any(v.invariant == 29 for v in checker.check(line))]
    first_doorbell = next(i for i, e in enumerate(r.counterexample or [], 1) if e.startswith("doorbell("))
    assert flagged and flagged[0] < first_doorbell
    assert "would reach vcpu" in checker.check(states[flagged[0]])[0].message  # the words quoted
    # ... and a search with it kept stops there, without sending a doorbell.
    kept = explore("prepatch", 4, ignore=[])
    assert kept.violation is not None and kept.violation.invariant == 29
    assert not any(e.startswith("doorbell(") for e in kept.counterexample or [])
    # The violation line: the event it follows, the invariant's name, and that it was the
    # events (the per-state check cannot have produced it).
    violated = next(line for line in lines if line.startswith("violated"))
    n = len(r.counterexample or [])
    assert violated == (
        f"violated after event {n}: invariant 29 (doorbell delivery), judged on the run's events: "
        f"{r.violation.message}"
    )
    assert r.violation.message not in {v.message for line in states for v in checker.check(line)}
    # Where nothing is left out, neither is said.
    seed = format_result(explore("seed", 2, fault="no-exit-ipi"))
    assert "not per state" not in seed and "judged on the run's events" not in seed
    assert "violated after event " in seed


def test_bounds_print_short_by_default_every_clause_with_verbose_and_whole_in_json(
    capsys: pytest.CaptureFixture,
) -> None:
    from pyvcore.explore_report import WIDTH, budget, clauses

    argv = ["explore", "--variant", "seed", "--threads", "2"]
    r = explore("seed", 2)
    assert main(argv) == 0
    short = capsys.readouterr().out.splitlines()
    assert (
        short[1]
        == "bounds: 1 cede per vcpu and 2 in total, 1 H_PROD, 1 doorbell (defaults; --verbose: every bound)"
    )
    # The numbers are the search's own: change one and the line follows, naming the option.
    assert main([*argv, "--max-cedes", "3", "--max-doorbells", "2", "--no-symmetry"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, x in enumerate(lines) if x.startswith("bounds: "))
    more = itertools.takewhile(lambda x: x.startswith("  "), lines[at + 1 :])
    line = " ".join([lines[at], *(x.strip() for x in more)])
    assert line.startswith("bounds: 1 cede per vcpu and 3 in total, 1 H_PROD, 2 doorbells; given: ")
    assert "--max-cedes 3, --max-doorbells 2, --no-symmetry" in line
    assert "3 in total" in explore("seed", 2, max_cedes=3).bounds  # what the line was read from
    # --verbose: every clause of the sentence, each once, wrapped to the width.
    assert main([*argv, "--verbose"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("bounds:")
    block = lines[
        start + 1 : start + 1 + next(i for i, x in enumerate(lines[start + 1 :]) if not x.startswith("  "))
    ]
    joined = []
    for x in block:
        if x.startswith("    "):
            joined[-1] += " " + x.strip()
        else:
            joined.append(x.strip())
    assert joined == clauses(r.bounds) and all(len(x) <= WIDTH for x in block)
    # --json: the whole sentence.
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bounds"] == r.bounds
    # The numbers are found in every form the explorer words them in.
    for kwargs in ({}, {"threads": 8, "max_states": 10}, {"cedes_per_vcpu": 2, "max_prods": 0}):
        threads = kwargs.pop("threads", 4)
        bounds = explore("modern", threads, **kwargs).bounds
        assert budget(bounds), bounds


def test_a_fault_is_its_own_line() -> None:
    from pyvcore.explore_report import format_result

    r = explore("seed", 4, fault="doorbell-lost-on-wake")
    text = format_result(r)
    assert "\nfault: doorbell-lost-on-wake injected (the bug fixed by QEMU 06229545f55a: target/ppc: " in text
    assert "FAULT" not in text and "FAULT" not in format_result(r, verbose=True)
    assert "FAULT doorbell-lost-on-wake" in r.bounds  # --json keeps it in the sentence


def test_memory_is_named_for_what_it_is(capsys: pytest.CaptureFixture) -> None:
    """The estimate is the search's structures, not the process: the report says so and puts
    the process's real peak RSS (getrusage) beside it; --json keeps `peak_memory`, adds `peak_rss`."""
    import resource

    assert main(["explore", "--variant", "seed", "--threads", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert out["peak_memory"] > 0 and 0 < out["peak_rss"] <= rss
    assert main(["explore", "--variant", "seed", "--threads", "2"]) == 0
    text = capsys.readouterr().out
    assert "peak memory" not in text
    assert re.search(
        r", search structures ~[\d,]+ MiB \(estimate\), process peak RSS [1-9][\d,]* MiB\n", text
    )


def test_violation_fields_print_bit_words_in_hex_as_the_message_does() -> None:
    from pyvcore.checker import field_value
    from pyvcore.explore_report import format_result

    text = format_result(explore("modern", 2, fault="early-switch-out"))
    assert "entry_exit_map 0x103 has" in text and "\n    vcores[0].entry_exit_map = 0x103\n" in text
    assert "\n    vcores[0].in_guest = 0" in text
    # a step invariant's old value reads as the field it is the old value of
    assert field_value("previous", 3, {"vcores[0].napping_threads": 1, "previous": 3}) == "0x3"
    assert field_value("previous", 3, {"vcpus[0].ptid": 1, "previous": 3}) == "3"
    assert field_value("vcpus[0].addr", 0xC000_0000_0000_0000) == "0xc000000000000000"


@pytest.mark.parametrize(
    ("fault", "variant"),
    [(f, v) for f, info in FAULT_INFO.items() for v in info.not_modelled],
)
def test_a_fault_the_variant_does_not_model_is_refused_with_the_reason(
    fault: str, variant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    info = FAULT_INFO[fault]
    assert variant not in info.variants
    with pytest.raises(ValueError, match=f"fault {fault} is not modelled for {variant}: "):
        explore(variant, 2, fault=fault)
    assert main(["explore", "--variant", variant, "--threads", "2", "--fault", fault]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "illegal event" not in err, err
    assert err.startswith(f"pyvcore explore: fault {fault} is not modelled for {variant}: "), err
    assert err.endswith("(it applies to " + ", ".join(info.variants) + ")"), err


def test_every_fault_is_modelled_or_says_why_for_each_variant() -> None:
    from pyvcore.model import VARIANTS

    for fault, info in FAULT_INFO.items():
        assert sorted([*info.variants, *info.not_modelled]) == sorted(VARIANTS), fault
    assert set(FAULT_INFO["no-exit-ipi"].not_modelled) == {"modern"}


def test_vcpus_of_another_vcore_are_refused_as_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "--variant", "seed", "--threads", "4", "--vcpus", "0,9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pyvcore explore: --vcpus 0,9: vcpu 9 belongs to vcore 2"), err
    assert "illegal event" not in err and "\n" not in err


def test_the_readme_fault_table_says_what_explore_finds() -> None:
    """Every row of the README's fault table ("inv. K in N events (VARIANT, N=T)", and
    any further "; inv. K in N events (VARIANT, N=T...)" in the same cell) is what
    `explore` finds today, and every fault has a row."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    cells = re.findall(r"^\| `([a-z-]+)` \|.*\| (inv\. \d+ in \d+ events \(\w+, N=\d.*\)) \|$", readme, re.M)
    assert {name for name, _ in cells} == set(FAULTS)
    rows = [
        (name, *clause)
        for name, cell in cells
        for clause in re.findall(r"inv\. (\d+) in (\d+) events \((\w+), N=(\d)", cell)
    ]
    assert len(rows) > len(cells)
    for name, invariant, events, variant, threads in rows:
        r = explore(variant, int(threads), fault=name)
        assert r.violation is not None, name
        assert (r.violation.invariant, len(r.counterexample or [])) == (int(invariant), int(events)), name


@pytest.mark.parametrize(
    ("vcpus", "message"),
    [
        ("-1", "-1 is not a vcpu id: ids are 0 or more"),
        ("1,1", "vcpu 1 given twice: a vcore's vcpus are distinct"),
        ("0-2,2", "vcpu 2 given twice"),
        ("x", "'x' is not a vcpu id"),
    ],
)
def test_bad_vcpu_lists_say_what_is_wrong(capsys, vcpus: str, message: str) -> None:
    assert main(["explore", "--variant", "modern", "--threads", "4", f"--vcpus={vcpus}"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_trace_on_a_clean_run_says_nothing_was_written(tmp_path, capsys) -> None:
    path = tmp_path / "t.jsonl"
    assert main(["explore", "--variant", "modern", "--threads", "2", "--trace", str(path)]) == 0
    assert f"no counterexample: nothing written to {path}" in capsys.readouterr().out
    assert not path.exists()
