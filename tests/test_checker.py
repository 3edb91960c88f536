"""The checker (pyvcore.checker over rust/invariants.rs): every invariant both
ways, the states a correct kernel was seen to show in the lab, which must pass, the stock-QEMU state, the
transition checks and the Python API."""

from __future__ import annotations

import json

import checker_states as cs
import pytest
from checker_states import (
    CEDE,
    GUEST_HV,
    HOST_HV,
    IN_IDLE,
    IN_KERNEL,
    NONE,
    NOVCPU,
    VCORE,
    clone,
    hstate,
    running,
    vcpu,
    vcpu_addr,
)

import pyvcore
from pyvcore import Checker, SnapshotError, Violation
from pyvcore.checker import INVARIANTS, check_trace_text


def invariants(snapshot, variant=None):
    return sorted({v.invariant for v in Checker(variant).check(snapshot)})


# --- states a correct kernel shows -----------------------------------------


@pytest.mark.parametrize("name", sorted(cs.MUST_ACCEPT))
def test_real_states_pass(name):
    violations = Checker().check(cs.MUST_ACCEPT[name]())
    assert violations == [], [str(v) for v in violations]


def test_observed_live_states_pass_as_json_text():
    for snap in (cs.live_four_vcpus(1), cs.live_only_vcpu1()):
        assert Checker().check(json.dumps(snap)) == []


def test_stock_qemu_secondaries_in_guest_with_host_lpidr_break_8():
    violations = Checker().check(cs.stock_qemu())
    assert {v.invariant for v in violations} == {8}
    # Every secondary executing the guest is named with its LPIDR.
    per_thread = [v for v in violations if "executes the guest" in v.message]
    assert sorted(k for v in per_thread for k in v.fields if k.endswith(".lpidr")) == [
        "threads[1].lpidr",
        "threads[2].lpidr",
        "threads[3].lpidr",
    ]
    assert all(v.fields["kvm.lpid"] == hex(cs.GUEST_LPID) for v in per_thread)


def test_ptid_swapped_between_two_threads_is_flagged():
    s = running()
    hstate(s, 1)["ptid"], hstate(s, 2)["ptid"] = 2, 1
    violations = Checker().check(s)
    assert {v.invariant for v in violations} == {3}
    assert {"threads[1].kvm_hstate.ptid", "threads[2].kvm_hstate.ptid"} <= {
        k for v in violations for k in v.fields
    }


def test_ptid_swap_on_idle_threads_outside_the_vcore_is_flagged_too():
    s = cs.live_only_vcpu1()
    hstate(s, 2)["ptid"], hstate(s, 3)["ptid"] = 3, 2
    assert invariants(s) == [3]


# --- every invariant: a state that breaks it --------------------------------
# (each "holds" side is the matching must-accept state above)


def _mut(base, fn):
    s = clone(base() if callable(base) else base)
    fn(s)
    return s


def _set(path_fn, **kw):
    def apply(s):
        path_fn(s).update(kw)

    return apply


BREAKS = {
    # 1: ptid == vcpu_id - first_vcpuid, and within the core
    "1 ptid not vcpu_id-first": (running, lambda s: vcpu(s, 3).update(ptid=2), {1, 3, 6}),
    "1 ptid outside core": (running, lambda s: vcpu(s, 3).update(ptid=9), {1, 3, 6}),
    # 2: first_vcpuid / vcpu id range
    "2 first_vcpuid": (running, lambda s: s["vcores"][0].update(first_vcpuid=2), {2, 1, 29}),
    "2 vcpu id out of range": (running, lambda s: vcpu(s, 3).update(vcpu_id=7), {2, 29}),
    # 3: vcpu on the wrong thread
    "3 vcpus swapped": (
        running,
        lambda s: (hstate(s, 1).update(kvm_vcpu=vcpu_addr(2)), hstate(s, 2).update(kvm_vcpu=vcpu_addr(1))),
        {3, 6, 29},
    ),
    "3 kvm_vcore of another vcore": (
        running,
        lambda s: hstate(s, 2).update(kvm_vcore=VCORE + 0x1000),
        {3, 10},
    ),
    # 4: running vcore's pcpu is thread 0
    "4 pcpu not thread 0": (
        lambda: running(threads=4),
        lambda s: s["vcores"][0].update(pcpu=4 + 1),
        {4, 3, 6},
    ),
    # 5: one vcpu per PACA
    "5 vcpu in two PACAs": (
        cs.live_only_vcpu1,
        lambda s: hstate(s, 3).update(kvm_vcpu=vcpu_addr(1)),
        {5, 3, 6, 29},
    ),
    # 6: cpu == pcpu, thread_cpu == pcpu + ptid
    "6 cpu is the thread": (running, lambda s: vcpu(s, 2).update(cpu=2), {6}),
    "6 thread_cpu": (running, lambda s: vcpu(s, 2).update(thread_cpu=1), {6}),
    # 8: partition registers
    "8 stock qemu": (cs.stock_qemu, lambda s: None, {8}),
    "8 thread 0 outside KVM with guest LPIDR": (
        cs.inactive_with_stale_words,
        lambda s: [t.update(lpidr=cs.GUEST_LPID) for t in s["threads"]],
        {8},
    ),
    # 9: nobody in the guest while vc->in_guest == 0
    "9 secondary in guest, in_guest 0": (running, lambda s: s["vcores"][0].update(in_guest=0), {9}),
    # 10: entry/exit word
    "10 exit without entry": (running, lambda s: s["vcores"][0].update(entry_exit_map=0x801 | 0x6), {10}),
    "10 bits outside the core": (running, lambda s: s["vcores"][0].update(entry_exit_map=0x1F), {10}),
    "10 entered thread no longer pointing at vcore": (
        cs.exit_in_progress,
        lambda s: hstate(s, 3).update(kvm_vcore=0, kvm_vcpu=0, in_guest=NONE),
        {10},
    ),
    # 12: thread 0 entered before anyone exits
    "12 exit before thread 0 entered": (
        lambda: running(vcpu_ids=(1, 2)),
        lambda s: (
            s["vcores"][0].update(entry_exit_map=0x206),
            s["vcores"][0].update(napping_threads=0),
            hstate(s, 0).update(napping=0),
            # thread 1 set its exit bit, so it has left the guest (else 10)
            hstate(s, 1).update(in_guest=HOST_HV),
        ),
        {12},
    ),
    "12 in_guest 1 without thread 0's entry": (
        lambda: running(vcpu_ids=(1, 2)),
        lambda s: (
            s["vcores"][0].update(entry_exit_map=0x6, napping_threads=0),
            hstate(s, 0).update(napping=0),
        ),
        {12},
    ),
    # 13: in_guest back to 0 only once every entered thread exits
    "13 in_guest 0 with threads still in": (
        cs.exit_in_progress,
        lambda s: (
            s["vcores"][0].update(in_guest=0),
            [hstate(s, t).update(in_guest=HOST_HV) for t in range(4)],
        ),
        {13},
    ),
    # 14: napping_threads within entered threads; nappers are in KVM
    "14 napping bit of a thread not entered": (
        lambda: running(vcpu_ids=(0, 1, 2)),
        lambda s: s["vcores"][0].update(napping_threads=0x8),
        {14},
    ),
    "14 napping while in the guest": (running, lambda s: hstate(s, 2).update(napping=CEDE), {14, 24}),
    # 15: napping secondary is grabbed
    "15 napping secondary not grabbed": (
        running,
        lambda s: (
            hstate(s, 2).update(napping=CEDE, in_guest=HOST_HV, hwthread_req=0),
            vcpu(s, 2).update(ceded=1),
        ),
        {15, 17, 18},
    ),
    # 17: secondaries grabbed while running
    "17 secondary released while running": (
        lambda: running(vcpu_ids=(0, 1, 2)),
        lambda s: hstate(s, 3).update(hwthread_req=0),
        {17},
    ),
    # 18: secondary in KVM is grabbed and IN_KVM
    "18 secondary in KVM marked idle": (running, lambda s: hstate(s, 1).update(hwthread_state=IN_IDLE), {18}),
    "18 modern secondary in KVM marked IN_KERNEL": (
        running,
        lambda s: hstate(s, 1).update(hwthread_state=IN_KERNEL),
        {18},
    ),
    # 19: vcore_state and runner
    "19 unknown vcore_state": (running, lambda s: s["vcores"][0].update(vcore_state=9), {19}),
    "19 running without runner": (running, lambda s: s["vcores"][0].update(runner=0), {19}),
    "19 runner of another vcore": (
        running,
        lambda s: (
            s["vcpus"].append(
                {"addr": 0xC0000000AAAA0000, "vcpu_id": 4, "vcore": VCORE + 0x1000, "ptid": 0, "cpu": -1}
            )
            or s["vcores"][0].update(runner=0xC0000000AAAA0000)
        ),
        {19},
    ),
    # 20: bookkeeping
    "20 n_runnable above num_threads": (running, lambda s: s["vcores"][0].update(n_runnable=5), {20}),
    "20 runnable count off by two": (running, lambda s: s["vcores"][0].update(n_runnable=2), {20}),
    # 21: one RUNNING vcore per core
    "21 two running vcores": (
        running,
        lambda s: s["vcores"].append(
            dict(
                s["vcores"][0],
                addr=VCORE + 0x1000,
                first_vcpuid=4,
                runner=0,
                entry_exit_map=0,
                napping_threads=0,
            )
        ),
        {21, 19},
    ),
    # 23: in_guest values, and a thread in KVM points at a vcore
    "23 P9 mode on the P8 path": (running, lambda s: hstate(s, 1).update(in_guest=5), {23}),
    "23 in KVM with no vcore": (
        cs.live_only_vcpu1,
        lambda s: hstate(s, 2).update(in_guest=HOST_HV, hwthread_state=2),
        {23},
    ),
    # 24: ceded
    "24 ceding vcpu not ceded": (
        running,
        lambda s: (
            hstate(s, 2).update(napping=CEDE, in_guest=HOST_HV),
            s["vcores"][0].update(napping_threads=0x4),
        ),
        {24},
    ),
    "24 vcpu in guest still ceded": (running, lambda s: vcpu(s, 1).update(ceded=1), {24}),
    # 26: thread 0 novcpu nap shape
    "26 novcpu napping bit missing": (
        cs.live_only_vcpu1,
        lambda s: s["vcores"][0].update(napping_threads=0),
        {26},
    ),
    "26 novcpu on a secondary": (
        cs.live_only_vcpu1,
        lambda s: hstate(s, 1).update(napping=NOVCPU, in_guest=HOST_HV),
        {26, 24},
    ),
    "26 novcpu with kvm_vcore NULL": (
        cs.live_only_vcpu1,
        lambda s: hstate(s, 0).update(kvm_vcore=0),
        {26, 23, 10},
    ),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_invariant_broken(name):
    base, mutate, expected = BREAKS[name]
    s = _mut(base, mutate)
    found = set(invariants(s))
    number = int(name.split()[0])
    assert number in found, [str(v) for v in Checker().check(s)]
    assert found <= expected | {number}, [str(v) for v in Checker().check(s)]


def test_every_checked_invariant_has_a_breaking_test():
    """Every snapshot invariant of the table is broken by some test here, or
    in test_checker_classes.py (16, 29, 31, 32 and the widened windows)."""
    covered = {int(name.split()[0]) for name in BREAKS} | {16, 29, 31, 32}
    snapshot_kind = {i.number for i in pyvcore.checker.invariants() if i.kind == "snapshot"}
    assert snapshot_kind <= covered
    assert set(INVARIANTS) >= snapshot_kind


# --- variant-specific ---------------------------------------------------------


def test_seed_nap_count_above_n_woken_breaks_16():
    s = running("seed")
    s["vcores"][0]["nap_count"] = 5
    # 13 too: a seed secondary counts itself in nap_count only after its wait for
    # vc->in_guest 0 at the switch back, and this run's vc->in_guest is still 1.
    assert invariants(s) == [13, 16]
    # The same stale pair outside a run (reset window) is accepted.
    s["vcores"][0]["vcore_state"] = 0
    assert 16 not in invariants(s)


def test_seed_entry_count_checks():
    s = running("seed")
    s["vcores"][0]["entry_exit_count"] = 0x0302  # 3 exiting of 2 entered
    assert 10 in invariants(s)
    s = running("seed", vcpu_ids=(1, 2))
    s["vcores"][0]["entry_exit_count"] = 4  # 4 entered, only 3 PACAs point at the vcore
    assert invariants(s) == [10]


def test_seed_secondary_waking_from_cede_may_show_in_kernel():
    # The seed's cede wakeup goes through the system reset vector, which
    # stores IN_KERNEL before kvm_start_guest stores IN_KVM.
    s = running("seed")
    hstate(s, 2).update(hwthread_state=IN_KERNEL, in_guest=HOST_HV, napping=CEDE)
    vcpu(s, 2)["ceded"] = 1
    s["vcores"][0]["napping_threads"] = 0x4
    assert invariants(s) == []
    s["variant"] = "modern"
    s["vcores"][0].update(entry_exit_map=0xF, vcore_state=cs.RUNNING["modern"])
    assert invariants(s) == [18]


def test_prepatch_first_come_first_served_ptid_is_a_doorbell_misdelivery():
    # Before the seed commit vcpu 2 could get ptid 1 (and so thread 1) in a
    # run where vcpu 1 was not runnable: a doorbell to virtual thread 1 then
    # reaches vcpu 2.
    s = running("prepatch", vcpu_ids=(0, 2))
    v2 = vcpu(s, 2)
    v2["ptid"] = 1
    hstate(s, 1).update(kvm_vcpu=v2["addr"], kvm_vcore=VCORE, in_guest=GUEST_HV, hwthread_state=2)
    hstate(s, 2).update(kvm_vcpu=0, kvm_vcore=0, in_guest=NONE, hwthread_state=IN_IDLE)
    s["vcores"][0]["entry_exit_count"] = 2
    violations = Checker().check(s)
    assert {v.invariant for v in violations} == {29}
    (v,) = violations
    assert "virtual thread 1 would reach vcpu 2" in v.message
    # Judged as seed, the same state also breaks ptid and alignment.
    assert {1, 29} <= set(invariants(s, "seed"))


def test_modern_eight_thread_core_accepts_split_core_ptids_only_for_modern():
    s = running(threads=8, vcpu_ids=range(8))
    hstate(s, 5)["kvm_vcpu"] = 0
    hstate(s, 5).update(kvm_vcore=0, in_guest=NONE, ptid=1, hwthread_state=IN_IDLE)  # subcore at 4
    vcpu(s, 5)["state"] = 2
    s["vcores"][0]["n_runnable"] = 7
    s["vcores"][0]["entry_exit_map"] = 0xDF
    assert invariants(s) == []
    s["variant"] = "seed"
    del s["vcores"][0]["entry_exit_map"]
    s["vcores"][0].update(entry_exit_count=7, vcore_state=3, n_woken=6, nap_count=0)
    for v in s["vcpus"]:
        v.pop("thread_cpu", None)
    assert invariants(s) == [3]


# --- transitions between samples -----------------------------------------------


def test_ptid_change_between_samples_breaks_1_but_not_for_prepatch():
    checker = Checker(same_vm=True)
    assert checker.check(running()) == []
    later = running()
    vcpu(later, 3)["ptid"] = 2  # also breaks the snapshot form of 1
    found = checker.check(later)
    assert any(v.invariant == 1 and "changed ptid" in v.message for v in found)
    checker = Checker("prepatch", same_vm=True)
    checker.check(running("prepatch"))
    assert not any("changed ptid" in v.message for v in checker.check(later))


def test_num_threads_shrinking_and_first_vcpuid_change_are_flagged():
    checker = Checker(same_vm=True)
    checker.check(running())
    smaller = running(vcpu_ids=(0, 1, 2), num_threads=3)
    found = checker.check(smaller)
    assert [v.invariant for v in found] == [20]
    assert found[0].fields["previous"] == 4
    moved = running()
    moved["vcores"][0]["first_vcpuid"] = 4
    for v in moved["vcpus"]:
        v["vcpu_id"] += 4
    checker.reset()
    checker.check(running())
    assert 2 in {v.invariant for v in checker.check(moved)}


def test_lpid_change_of_the_same_vm_is_flagged():
    checker = Checker(same_vm=True)
    checker.check(running())
    later = running()
    later["kvm"]["lpid"] = 7
    for t in later["threads"]:
        t["lpidr"] = 7
    assert [v.invariant for v in checker.check(later)] == [8]


def test_what_a_run_boundary_explains_is_not_flagged():
    # Exit under way, then a sample where the entry map shrank and the vcore
    # is inactive, then a new run: each pair is explained by a run ending and
    # another starting between the samples.
    for checker in (Checker(), Checker(same_vm=True)):
        seq = [
            cs.live_four_vcpus(1),
            cs.inactive_with_stale_words(),
            running(vcpu_ids=(1,), num_threads=4),
            cs.live_four_vcpus(0),
            running(),
        ]
        for snap in seq:
            assert checker.check(snap) == []


def test_a_vm_created_again_at_the_same_addresses_is_not_flagged_by_default():
    # VM 1 (4 vcpus) is destroyed; VM 2 (3 vcpus, another LPID) gets the freed
    # kvm/vcore/vcpu memory back.  Only `same_vm` makes that a violation.
    vm2 = running(vcpu_ids=(0, 1, 2), num_threads=3)
    vm2["kvm"]["lpid"] = 2
    for t in vm2["threads"]:
        t["lpidr"] = 2
    checker = Checker()
    assert checker.check(running()) == [] and checker.check(vm2) == []
    checker = Checker(same_vm=True)
    checker.check(running())
    assert {v.invariant for v in checker.check(vm2)} == {8, 20}


def test_checker_keeps_previous_snapshot_after_a_bad_one():
    checker = Checker(same_vm=True)
    checker.check(running())
    with pytest.raises(SnapshotError):
        checker.check({"variant": "modern"})
    smaller = running(vcpu_ids=(0, 1, 2), num_threads=3)
    assert [v.invariant for v in checker.check(smaller)] == [20]


# --- predict -----------------------------------------------------------------


def test_predict_places_vcpu_n_on_thread_n():
    s = cs.live_only_vcpu1()
    rows = Checker().predict(s)
    assert [r["thread"] for r in rows] == [0, 1, 2, 3]
    assert rows[0] == {"thread": 0, "cpu": 0, "ptid": 0, "kvm_vcpu": 0, "kvm_vcore": VCORE, "vcpu_id": None}
    assert rows[1]["kvm_vcpu"] == vcpu_addr(1) and rows[1]["vcpu_id"] == 1 and rows[1]["ptid"] == 1
    assert rows[2] == {"thread": 2, "cpu": 2, "ptid": None, "kvm_vcpu": 0, "kvm_vcore": 0, "vcpu_id": None}


def test_predict_follows_vcpu_ids_not_observed_ptid():
    s = running()
    vcpu(s, 2)["ptid"] = 3
    vcpu(s, 3)["ptid"] = 2
    rows = Checker().predict(s)
    assert rows[2]["vcpu_id"] == 2 and rows[3]["vcpu_id"] == 3


def test_predict_outside_a_run():
    rows = Checker().predict(cs.inactive_with_stale_words())
    assert all(r["kvm_vcpu"] == 0 and r["kvm_vcore"] == 0 and r["ptid"] is None for r in rows)
    seed = running("seed")
    seed["vcores"][0]["vcore_state"] = 0
    assert all(r["kvm_vcore"] is None for r in Checker().predict(seed))  # seed leaves it stale


# --- API -----------------------------------------------------------------------


def test_violation_fields_line_stop_and_to_dict():
    s = running()
    s["vcores"][0]["in_guest"] = 0
    (v, *_) = Checker().check(s, line=12)
    assert isinstance(v, Violation)
    assert v.invariant == 9 and v.line == 12 and v.stop == "guest"
    assert v.fields["vcores[0].in_guest"] == 0
    d = v.to_dict()
    assert d == {"invariant": 9, "message": v.message, "fields": v.fields, "line": 12, "stop": "guest"}
    json.dumps(d)
    assert str(v).startswith("invariant 9 (line 12, stop guest): ")


def test_reexports_and_descriptions():
    assert pyvcore.Checker is Checker and pyvcore.check_trace is pyvcore.checker.check_trace
    assert {i.number: i.title for i in pyvcore.checker.invariants()}[3] == "thread alignment"
    assert "PACA" in INVARIANTS[3]
    assert all(isinstance(k, int) and v for k, v in INVARIANTS.items())


def test_variant_override_and_unknown_variant():
    # modern VCORE_POLLING; the seed has no state 6.  Polling is a vcore out
    # of a run (kvmppc_vcore_blocked): released threads, in_guest 0.
    s = cs.inactive_with_stale_words()
    s["vcores"][0].update(vcore_state=6, runner=cs.vcpu_addr(1))
    assert Checker().check(s) == []
    assert [v.invariant for v in Checker("seed").check(s)] == [19]
    with pytest.raises(ValueError, match="unknown variant"):
        Checker("p8")


def test_bad_snapshots_raise_snapshot_error_with_key():
    s = running()
    del hstate(s, 2)["napping"]
    with pytest.raises(SnapshotError) as e:
        Checker().check(s, line=4)
    assert e.value.key == "threads[2].kvm_hstate.napping"
    assert e.value.line == 4
    assert str(e.value).startswith("4: key `threads[2].kvm_hstate.napping`: missing field")
    assert e.value.detail == "key `threads[2].kvm_hstate.napping`: missing field `napping`"
    assert isinstance(e.value, ValueError)
    s = running()
    s["vcpus"][1]["cpu"] = "zero"
    with pytest.raises(SnapshotError) as e:
        Checker().check(s)
    assert e.value.key == "vcpus[1].cpu" and e.value.line is None
    with pytest.raises(SnapshotError):
        Checker().check("not json")
    with pytest.raises(SnapshotError) as e:
        Checker().check({"x": {1, 2}})  # a dict goes to Rust as it is: unknown keys are ignored
    assert e.value.key == "variant" and e.value.line is None and "missing field" in e.value.reason
    bad = running()
    bad["threads"] = {1, 2}  # not a list of objects
    with pytest.raises(SnapshotError) as e:
        Checker().check(bad)
    assert e.value.key.startswith("threads")
    with pytest.raises(TypeError):
        Checker().check(42)


def test_check_trace_text_reports_lines():
    lines = [json.dumps(running()), "", json.dumps(cs.stock_qemu()), json.dumps(running())]
    report = check_trace_text("\n".join(lines))
    assert report.snapshots == 3 and report.exit_code == 1
    assert {v.line for v in report.violations} == {3}
    assert {v.invariant for v in report.violations} == {8}


def test_thread_numbers_come_from_cpu_numbers_not_list_positions():
    # A reader that could not read thread 2 leaves it out: thread 3 is still
    # thread 3 (cpu % threads_per_core), with its own ptid.
    s = cs.live_only_vcpu1()
    del s["threads"][2]
    assert invariants(s) == []
    hstate(s, 2)["ptid"] = 2  # now the entry for cpu 3
    assert invariants(s) == [3]


def test_two_cores_are_judged_per_core():
    s = running()
    idle = [
        {
            "cpu": 4 + t,
            "hw_cpu_id": 16 + t,
            "lpidr": cs.HOST_LPID,
            "sdr1": cs.HOST_SDR1,
            "kvm_hstate": {
                "kvm_vcpu": 0,
                "kvm_vcore": 0,
                "ptid": t,
                "hwthread_req": 0,
                "hwthread_state": IN_IDLE if t else IN_KERNEL,
                "napping": 0,
                "in_guest": NONE,
            },
        }
        for t in range(4)
    ]
    s["threads"] += idle
    assert invariants(s) == []
    rows = Checker().predict(s)
    assert [r["kvm_vcore"] for r in rows[4:]] == [0, 0, 0, 0]
    s["threads"][5]["lpidr"] = cs.GUEST_LPID  # core 1 disagrees with itself
    assert invariants(s) == [8]


# --- real snapshots from the lab (Debian 6.12 kvm-hv on QEMU powernv8, 4 threads) ----------
# tests/checker_live/<scenario>-patched.jsonl: distinct stops of pv-watch sessions on the patched
# QEMU (breakpoints on kvmppc_hv_entry and kvmhv_switch_to_host, every thread), 20 per scenario;
# all-stock.jsonl: the same on stock QEMU 10.0.2, where threads 1-3 keep the host's LPIDR/SDR1.

LIVE = __import__("pathlib").Path(__file__).with_name("checker_live")
PATCHED = sorted(p.name for p in LIVE.glob("*-patched*.jsonl"))


def test_live_fixtures_are_there():
    assert {
        "all-patched-watch.jsonl",
        "cede-patched.jsonl",
        "novcpu0-patched.jsonl",
        "two-vcores-patched.jsonl",
        "exits-patched.jsonl",
        "doorbell-patched.jsonl",
        "sparse-patched.jsonl",
    } <= set(PATCHED)


@pytest.mark.parametrize("name", PATCHED)
def test_live_lab_traces_on_patched_qemu_pass(name):
    report = pyvcore.check_trace(LIVE / name)
    assert report.snapshots == 20
    assert report.exit_code == 0, report.format_text()


def test_live_lab_traces_exercise_the_interesting_states():
    rows = [json.loads(line) for name in PATCHED for line in (LIVE / name).read_text().splitlines()]
    modes = {(t["kvm_hstate"]["in_guest"], t["kvm_hstate"]["napping"]) for r in rows for t in r["threads"]}
    assert {(GUEST_HV, 0), (HOST_HV, NOVCPU), (HOST_HV, 0), (NONE, 0)} <= modes
    assert any(v.get("ceded") == 1 for r in rows for v in r["vcpus"])
    assert {r["vcores"][0]["vcore_state"] for r in rows if r["vcores"]} >= {0, 4, 5}


def _stock_lines(s):
    lp = [t["lpidr"] for t in s["threads"]]
    return len(set(lp)) > 1


def test_live_lab_trace_on_stock_qemu_breaks_8_exactly_where_threads_disagree():
    report = pyvcore.check_trace(LIVE / "all-stock.jsonl")
    assert {v.invariant for v in report.violations} == {8}
    rows = [json.loads(line) for line in (LIVE / "all-stock.jsonl").read_text().splitlines()]
    expected = {i + 1 for i, s in enumerate(rows) if _stock_lines(s)}
    assert expected and {v.line for v in report.violations} == expected
    # Where they disagree, thread 0 holds the guest's LPID and the others the host's.
    for i in expected:
        s = rows[i - 1]
        assert s["threads"][0]["lpidr"] == s["kvm"]["lpid"]
        assert {t["lpidr"] for t in s["threads"][1:]} == {s["kvm"]["host_lpid"]}


def test_live_lab_trace_with_stock_qemu_registers_breaks_8():
    lines = []
    changed = 0
    for line in (LIVE / "all-patched-watch.jsonl").read_text().splitlines():
        s = json.loads(line)
        if s["threads"][0]["lpidr"] == s["kvm"]["lpid"]:
            # What stock QEMU shows: only the thread that wrote LPIDR has it.
            for t in s["threads"][1:]:
                t["lpidr"], t["sdr1"] = s["kvm"]["host_lpid"], s["kvm"]["host_sdr1"]
            changed += 1
        lines.append(json.dumps(s))
    report = check_trace_text("\n".join(lines))
    assert changed >= 5
    assert {v.invariant for v in report.violations} == {8}
    assert len({v.line for v in report.violations}) == changed
