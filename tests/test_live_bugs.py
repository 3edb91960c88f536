"""Bug detection, both ways, on real lab runs.

* Stock QEMU does not share LPIDR/SDR1 between the threads of a POWER8 core:
  the model's MMU invariants (VCORE_SPEC §4 inv. 8, 9) must flag it, through
  the normal `pyvcore diff` path, with no special case for it anywhere.
* The ``prepatch`` variant (before "Align physical and virtual CPU thread
  numbers") must disagree with the real kernel exactly where that change
  matters: vcpus whose id is not their position among the runnable vcpus.
* A real snapshot with the ptids of two threads swapped must be reported.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from pyvcore.diff import summarize
from pyvcore.mi import iter_jsonl

pytestmark = [pytest.mark.lab, pytest.mark.gdb]

MMU_INVARIANTS = {8, 9}
# Invariants about which thread a vcpu runs on and what ptid it has (§4: 1, 3;
# 6 ties thread_cpu to pcpu + ptid).
ALIGNMENT_INVARIANTS = {1, 3, 6}


@pytest.fixture(scope="module")
def stock_diff(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`pyvcore diff --scenario all --qemu stock --json`, run as a user runs it."""
    trace = tmp_path_factory.mktemp("stock") / "all-stock.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "pyvcore", "diff", "--scenario", "all", "--qemu", "stock",
         "--stops", "40", "--deadline", "60", "--no-reports", "--json", "--trace", str(trace), "--lock-wait", "600"],
        capture_output=True, text=True, timeout=1000,
    )
    assert proc.returncode != 2, f"pyvcore diff could not run:\n{proc.stderr[-3000:]}"
    return {"rc": proc.returncode, "doc": json.loads(proc.stdout), "trace": trace, "stderr": proc.stderr}


def test_stock_qemu_lpidr_sdr1_bug_is_flagged_by_the_mmu_invariants(stock_diff: dict[str, Any]) -> None:
    doc = stock_diff["doc"]
    assert stock_diff["rc"] == 1
    assert doc["snapshots"] > 0
    assert sum(k["violations"] for k in doc["stops"].values()) == len(doc["violations"]) > 0
    flagged = {v["invariant"] for v in doc["violations"]}
    assert flagged & MMU_INVARIANTS, f"violations named {sorted(flagged)}, none of inv. 8/9"
    mmu = [v for v in doc["violations"] if v["invariant"] in MMU_INVARIANTS]
    # The violation names the registers involved, as read from the threads.
    assert any("lpidr" in json.dumps(v["fields"]).lower() or "sdr1" in json.dumps(v["fields"]).lower() for v in mmu)
    for v in doc["violations"]:
        assert isinstance(v["invariant"], int) and v.get("stop") is not None


def test_stock_trace_replays_to_the_same_verdict(stock_diff: dict[str, Any]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pyvcore", "check", str(stock_diff["trace"]), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    offline = sorted(v["invariant"] for v in json.loads(proc.stdout)["violations"])
    assert offline == sorted(v["invariant"] for v in stock_diff["doc"]["violations"])


def test_stock_qemu_secondaries_hold_the_host_lpidr(stock_diff: dict[str, Any]) -> None:
    """What the invariants flag is really there in the registers gdb read."""
    seen = False
    for s in iter_jsonl(stock_diff["trace"]):
        kvm = s.get("kvm") or {}
        vcores = {vc["addr"]: vc for vc in s.get("vcores", [])}
        t0 = s["threads"][0]
        vc = vcores.get(t0["kvm_hstate"]["kvm_vcore"])
        if not kvm or not vc or not vc["in_guest"] or t0.get("lpidr") != kvm["lpid"]:
            continue
        if any(t.get("lpidr") is not None and t["lpidr"] != kvm["lpid"] for t in s["threads"][1:]):
            seen = True
            break
    assert seen, "no stop showed thread 0 in the guest partition and a sibling with another LPIDR"


# --------------------------------------------------------------- prepatch
@pytest.mark.parametrize("scenario", ["novcpu0", "sparse"])
def test_prepatch_disagrees_where_vcpu_ids_have_gaps(live_run: Callable[..., Any], scenario: str) -> None:
    """novcpu0 runs only vcpu 1, sparse vcpus 0, 2, 3: before the change they
    would have been packed onto threads 0.., so the real kernel breaks the
    prepatch model's alignment, and only that."""
    run = live_run(scenario)
    modern = summarize(run.records, "modern")
    prepatch = summarize(run.records, "prepatch")
    assert modern.violations == []
    flagged = {v["invariant"] for v in prepatch.violations}
    assert flagged, "prepatch accepted every snapshot of a thread-aligned kernel"
    assert flagged <= ALIGNMENT_INVARIANTS, f"prepatch also disagreed on {sorted(flagged - ALIGNMENT_INVARIANTS)}"


def test_prepatch_agrees_where_ids_are_dense(live_run: Callable[..., Any]) -> None:
    """With vcpus 0-3 all runnable, packing and aligning give the same threads."""
    run = live_run("all")
    prepatch = summarize(run.records, "prepatch")
    assert {v["invariant"] for v in prepatch.violations} & ALIGNMENT_INVARIANTS == set()


# --------------------------------------------------------------- corruption
def _swap_ptids(snapshot: dict[str, Any]) -> dict[str, Any] | None:
    """The snapshot with kvm_hstate.ptid swapped between two threads holding vcpus."""
    holders = [i for i, t in enumerate(snapshot["threads"]) if t["kvm_hstate"]["kvm_vcpu"]]
    pairs = [(a, b) for a in holders for b in holders
             if a < b and snapshot["threads"][a]["kvm_hstate"]["ptid"] != snapshot["threads"][b]["kvm_hstate"]["ptid"]]
    if not pairs:
        return None
    a, b = pairs[0]
    bad = copy.deepcopy(snapshot)
    ha, hb = bad["threads"][a]["kvm_hstate"], bad["threads"][b]["kvm_hstate"]
    ha["ptid"], hb["ptid"] = hb["ptid"], ha["ptid"]
    bad.pop("violations", None)
    return bad


def test_corrupted_snapshot_is_reported(live_run: Callable[..., Any], tmp_path: Path) -> None:
    from pyvcore import Checker

    run = live_run("all")
    corrupted = [c for c in map(_swap_ptids, run.snapshots) if c is not None]
    assert corrupted, "no snapshot had two threads holding vcpus"
    sample = corrupted[: min(20, len(corrupted))]
    for bad in sample:
        found = Checker().check(bad)
        assert any(v.invariant == 3 for v in found), (bad.get("stop"), [v.to_dict() for v in found])
    # And through the CLI, as a trace.
    trace = tmp_path / "corrupted.jsonl"
    trace.write_text("".join(json.dumps(s) + "\n" for s in sample))
    proc = subprocess.run([sys.executable, "-m", "pyvcore", "check", str(trace), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert 3 in {v["invariant"] for v in json.loads(proc.stdout)["violations"]}
