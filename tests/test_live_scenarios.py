"""Live differential tests: the model against the real kernel under patched QEMU.

For every lab scenario one boot (shared through ``tests/conftest.py``): gdb
attaches through the MI driver, ``pv-watch`` snapshots the core at its
breakpoints for a bounded number of stops, the guest then finishes and
reports.  Each test asserts one thing on that recorded run: the model accepts
every snapshot, the stops covered the state the scenario exists for, the
guest's own view agrees with what gdb read, and the offline ``pyvcore check``
gives the verdicts pv-watch gave inside gdb.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from typing import Any, Callable

import pytest

from pyvcore.diff import SCENARIOS, live_invariants, summarize

pytestmark = [pytest.mark.lab, pytest.mark.gdb]

# Kernel constants (arch/powerpc/include/asm/kvm_book3s_asm.h, modern numbering: 6.12 is what the lab boots).
NAPPING_CEDE = 1
NAPPING_NOVCPU = 2
VCORE_RUNNING = 4
VCORE_EXITING = 5


# ------------------------------------------------------------ state predicates
def hstate(snapshot: dict[str, Any], thread: int) -> dict[str, Any]:
    return snapshot["threads"][thread]["kvm_hstate"]


def thread0_naps_without_vcpu(s: dict[str, Any]) -> bool:
    """Thread 0 entered for the vcore with no vcpu of its own and naps (inv. 26)."""
    h = hstate(s, 0)
    return h["kvm_vcore"] != 0 and h["kvm_vcpu"] == 0 and h["napping"] == NAPPING_NOVCPU


def cede_with_napping_threads(s: dict[str, Any]) -> bool:
    """A thread naps on H_CEDE and its bit is set in its vcore's napping_threads."""
    for t in s["threads"]:
        h = t["kvm_hstate"]
        if h["napping"] != NAPPING_CEDE:
            continue
        for vc in s.get("vcores", []):
            if vc["addr"] == h["kvm_vcore"] and vc["napping_threads"] & (1 << h["ptid"]):
                return True
    return False


def exit_in_progress(s: dict[str, Any]) -> bool:
    """Some vcore has started exiting: exit bits in entry_exit_map, or EXITING."""
    for vc in s.get("vcores", []):
        if vc.get("vcore_state") == VCORE_EXITING:
            return True
        eem = vc.get("entry_exit_map")
        if eem is not None and (eem & 0xFF) and (eem >> 8) & 0xFF:
            return True
    return False


def active_vcore(s: dict[str, Any]) -> int:
    """The vcore thread 0 is taking part in (0 when none)."""
    return hstate(s, 0)["kvm_vcore"]


def vcore_switches(snapshots: Iterable[dict[str, Any]]) -> list[int]:
    """Thread 0's vcore over time, repeats and idle stops removed."""
    seq: list[int] = []
    for s in snapshots:
        vc = active_vcore(s)
        if vc and (not seq or seq[-1] != vc):
            seq.append(vc)
    return seq


# The state each scenario exists to produce, and how to recognise it.
COVERAGE: dict[str, tuple[str, Callable[[list[dict[str, Any]]], bool]]] = {
    "novcpu0": (
        "thread 0 napping with kvm_vcore set and no vcpu",
        lambda snaps: any(thread0_naps_without_vcpu(s) for s in snaps),
    ),
    "cede": (
        "a thread napping on H_CEDE with its napping_threads bit set",
        lambda snaps: any(cede_with_napping_threads(s) for s in snaps),
    ),
    "exits": (
        "a vcore with an exit in progress",
        lambda snaps: any(exit_in_progress(s) for s in snaps),
    ),
    "two-vcores": (
        "two vcores alternating on the core (A, B, A at least)",
        lambda snaps: len(set(vcore_switches(snaps))) >= 2 and len(vcore_switches(snaps)) >= 3,
    ),
}


# ---------------------------------------------------------------------- tests
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_model_accepts_every_snapshot(live_run: Callable[..., Any], scenario: str) -> None:
    run = live_run(scenario)
    snaps = run.snapshots
    assert len(snaps) >= 10, f"only {len(snaps)} snapshots taken; watch: {run.watch}"
    # Snapshots must really be of the running VM, not of an idle core.
    assert any(h["kvm_hstate"]["kvm_vcore"] for s in snaps for h in s["threads"]), (
        "no thread ever had kvm_vcore set: the watch did not see the VM run"
    )
    summary = summarize(run.records)
    assert summary.violations == [], "\n".join(json.dumps(v) for v in summary.violations[:10])


@pytest.mark.parametrize("scenario", sorted(COVERAGE))
def test_stops_cover_the_scenarios_state(live_run: Callable[..., Any], scenario: str) -> None:
    run = live_run(scenario)
    what, seen = COVERAGE[scenario]
    kinds = sorted({s.get("stop") for s in run.snapshots}, key=str)
    assert seen(run.snapshots), f"{scenario}: never saw {what} in {len(run.snapshots)} stops at {kinds}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_snapshots_differ_between_stops(live_run: Callable[..., Any], scenario: str) -> None:
    """The watcher samples different moments, not one state over and over."""
    run = live_run(scenario)
    distinct = {
        json.dumps(
            {k: v for k, v in s.items() if k not in ("stop", "violations", "seq", "time")}, sort_keys=True
        )
        for s in run.snapshots
    }
    assert len(distinct) >= max(3, len(run.snapshots) // 10)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_vcpu_on_its_own_thread(live_run: Callable[..., Any], scenario: str) -> None:
    """The change under test, seen directly: vcpu N - first_vcpuid runs on thread N."""
    run = live_run(scenario)
    checked = 0
    for s in run.snapshots:
        vcpus = {v["addr"]: v for v in s.get("vcpus", [])}
        vcores = {vc["addr"]: vc for vc in s.get("vcores", [])}
        for thread, t in enumerate(s["threads"]):
            v = vcpus.get(t["kvm_hstate"]["kvm_vcpu"])
            if v is None or v["vcore"] not in vcores:
                continue
            assert v["ptid"] == v["vcpu_id"] - vcores[v["vcore"]]["first_vcpuid"] == thread, (
                s.get("stop"),
                thread,
                v,
            )
            checked += 1
    assert checked > 0, "no stop showed a thread holding a vcpu"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_offline_replay_gives_the_same_verdicts(live_run: Callable[..., Any], scenario: str) -> None:
    """`pyvcore check` on the recorded trace agrees with pv-watch inside gdb."""
    run = live_run(scenario)
    proc = subprocess.run(
        [sys.executable, "-m", "pyvcore", "check", str(run.trace), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    live = [v for r in run.records for v in live_invariants(r)]
    offline = [v["invariant"] for v in report["violations"]]
    assert sorted(offline) == sorted(live)
    assert proc.returncode == (1 if live else 0)
    assert summarize(run.records).mismatches == []


# ------------------------------------------------------------ guest's own view
def vcpu_ptids_seen(snapshots: Iterable[dict[str, Any]]) -> dict[int, set[int]]:
    """vcpu id -> every arch.ptid gdb read for it."""
    seen: dict[int, set[int]] = {}
    for s in snapshots:
        for v in s.get("vcpus", []):
            seen.setdefault(v["vcpu_id"], set()).add(v["ptid"])
    return seen


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_guest_reports_tir_equal_to_the_ptid_gdb_read(live_run: Callable[..., Any], scenario: str) -> None:
    """Inside the guest TIR names the physical thread; gdb read arch.ptid from the host."""
    run = live_run(scenario)
    assert run.reports, "the guest printed no PYVCORE REPORT lines"
    started = [r for r in run.reports if r["started"]]
    assert started, f"no vcpu ever ran: {run.reports}"
    assert all(r["error"] is None for r in run.reports), [r["error"] for r in run.reports]
    seen = vcpu_ptids_seen(run.snapshots)
    compared = 0
    for r in started:
        assert r["tir"] == r["vcpu"] - r["first_vcpuid"], r
        assert r["tir_changes"] == 0, r  # never moved to another thread
        if r["vcpu"] in seen:
            assert seen[r["vcpu"]] == {r["tir"]}, (r["vcpu"], seen[r["vcpu"]], r["tir"])
            compared += 1
    assert compared >= 1, f"gdb never read a vcpu the guest reported on ({sorted(seen)})"


def test_doorbells_reach_the_vcpu_on_the_named_thread_while_watched(live_run: Callable[..., Any]) -> None:
    """msgsndp names a physical thread: with patched QEMU (0002) each one wakes the vcpu
    that gdb saw on that thread, also while pv-watch is stopping the core."""
    run = live_run("doorbell")
    started = [r for r in run.reports if r["started"]]
    tirs = {r["tir"] for r in started}
    assert tirs == {0, 1, 2, 3}
    seen = vcpu_ptids_seen(run.snapshots)
    for r in started:
        assert r["msgsndp_traps"] == 0 and r["program_checks"] == 0, r
        assert r["doorbells_sent"] == len(tirs) - 1, r
        assert r["woken_by"] == sorted(tirs - {r["tir"]}), r
        assert r["doorbells_received"] >= 1, r
        assert seen.get(r["vcpu"], {r["tir"]}) == {r["tir"]}
