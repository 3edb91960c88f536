"""The bug classes the checker learned (each check both ways), the inputs that
must get the right verdict, snapshot v2 fields (hex or integer), and the
stops provably in one vcore run."""

from __future__ import annotations

import json

import checker_states as cs
import pytest
from checker_states import HOST_HV, IN_IDLE, IN_KVM, NONE, hstate, running, vcpu, vcpu_addr

from pyvcore import Checker
from pyvcore.checker import check_trace_text


def numbers(snapshot, variant=None):
    return sorted({v.invariant for v in Checker(variant).check(snapshot)})


# --- inputs that must get the right verdict ---------------------------------


def seed_starting(grabbed: bool):
    """Seed layout, 4 threads, vcpus 0 and 1, STARTING: thread 1 holds vcpu 1
    (ptid 1, IN_KVM, HOST_HV, counted in entry_exit_count)."""
    s = running("seed", vcpu_ids=(0, 1), num_threads=2)
    vc = s["vcores"][0]
    vc.update(vcore_state=2, in_guest=0, entry_exit_count=1, n_woken=1)
    hstate(s, 0).update(in_guest=NONE, kvm_vcpu=vcpu_addr(0))
    hstate(s, 1).update(in_guest=HOST_HV, hwthread_state=IN_KVM)
    for t in s["threads"]:  # no partition switch yet
        t["lpidr"], t["sdr1"] = cs.HOST_LPID, cs.HOST_SDR1
    for t in (2, 3):
        hstate(s, t).update(hwthread_req=1 if grabbed else 0, hwthread_state=IN_IDLE, in_guest=NONE)
    return s


def test_seed_starting_with_ungrabbed_siblings_breaks_17():
    found = Checker().check(seed_starting(grabbed=False))
    assert {v.invariant for v in found} == {17}, [str(v) for v in found]
    assert sorted(k for v in found for k in v.fields if "hwthread_req" in k) == [
        "threads[2].kvm_hstate.hwthread_req",
        "threads[3].kvm_hstate.hwthread_req",
    ]


def test_seed_starting_with_grabbed_siblings_passes():
    assert numbers(seed_starting(grabbed=True)) == []


def test_seed_running_with_ungrabbed_siblings_still_breaks_17():
    s = seed_starting(grabbed=False)
    s["vcores"][0]["vcore_state"] = cs.RUNNING["seed"]
    assert 17 in numbers(s)


def seed_after_vcore_entry(cleared: bool):
    """Seed, vcpus 0-2, RUNNING, in kvmppc_run_core after __kvmppc_vcore_entry
    returned: entry_exit_count 0x303, in_guest 0, n_woken 2, nap_count 2,
    every vcpu's cpu -1."""
    s = running("seed", vcpu_ids=(0, 1, 2), num_threads=3)
    s["stop"] = "kvmppc_run_core"
    s["vcores"][0].update(entry_exit_count=0x303, in_guest=0, n_woken=2, nap_count=2)
    for t in s["threads"]:
        t["lpidr"], t["sdr1"] = cs.HOST_LPID, cs.HOST_SDR1
    for v in s["vcpus"]:
        v["cpu"] = -1
    hstate(s, 0).update(in_guest=NONE, kvm_vcpu=0)
    for t in (1, 2):
        if cleared:
            hstate(s, t).update(kvm_vcpu=0, in_guest=NONE, hwthread_state=IN_IDLE, hwthread_req=1)
        else:
            hstate(s, t).update(in_guest=NONE, hwthread_state=IN_KVM, hwthread_req=1)
    return s


def test_nap_counted_before_the_paca_vcpu_was_cleared_breaks_16():
    found = Checker().check(seed_after_vcore_entry(cleared=False))
    assert {v.invariant for v in found} == {16}, [str(v) for v in found]
    assert "before its PACA's vcpu was cleared" in found[0].message


def test_nap_counted_after_the_paca_vcpu_was_cleared_passes():
    assert numbers(seed_after_vcore_entry(cleared=True)) == []


def doorbell_on_thread0():
    """Modern, 4 threads, all four vcpus in the guest just after thread 0's
    entry; the doorbell vcpu 0 sent to thread 2 is pending on thread 0 only."""
    s = running()
    s["version"] = 2
    for t in s["threads"]:
        t["dpdes"] = "0x0"
    s["threads"][0]["dpdes"] = "0x4"
    return s


def test_doorbell_pending_on_the_wrong_thread_breaks_31_naming_the_threads():
    found = Checker().check(doorbell_on_thread0())
    assert {v.invariant for v in found} == {31}, [str(v) for v in found]
    assert "thread 0 0x4" in found[0].message and "thread 2 0x0" in found[0].message
    assert found[0].fields["threads[0].dpdes"] == "0x4"


def test_doorbell_state_shared_by_the_core_passes():
    s = doorbell_on_thread0()
    for t in s["threads"]:
        t["dpdes"] = "0x4"
    assert numbers(s) == []


def test_doorbell_read_on_one_thread_only_is_judged():
    """Live, DPDES is read once per stop (on the stopping thread): 31 is judged."""
    s = doorbell_on_thread0()
    for t in s["threads"][1:]:
        del t["dpdes"]
    outcome = Checker().check_outcome(s)
    assert outcome.verdict == "clean" and 31 in outcome.judged


def doorbell_after_switch_back(dpdes: str, vcore_in_guest: int = 0):
    """Thread 0 back in the host (host LPIDR, vc->in_guest 0), DPDES read on thread 1."""
    s = after_switch_back(vcore_in_guest)
    s["version"] = 2
    s["threads"][1]["dpdes"] = dpdes
    return s


def test_guest_doorbell_left_pending_in_the_host_breaks_31():
    found = Checker().check(doorbell_after_switch_back("0x4"))
    assert {v.invariant for v in found} == {31}, [str(v) for v in found]
    assert "doorbell for thread 2 is pending in the host partition" in found[0].message
    assert found[0].fields["threads[1].dpdes"] == "0x4"


def test_no_doorbell_in_the_host_passes():
    assert numbers(doorbell_after_switch_back("0x0")) == []


def test_doorbell_pending_during_the_switch_back_passes():
    # kvmhv_switch_to_host clears DPDES before storing 0 to VCORE_IN_GUEST:
    # with in_guest still 1 the saved doorbell may still be in the register.
    s = doorbell_after_switch_back("0x4")
    s["vcores"][0]["in_guest"] = 1
    hstate(s, 0)["in_guest"] = HOST_HV
    assert 31 not in numbers(s)


# --- the switch back (Linux 7fe4e1176dfe) ------------------------------------


def after_switch_back(vcore_in_guest: int):
    """Thread 0 back in the host (in_guest NONE, host LPIDR), every entered
    thread exiting (0xf0f)."""
    s = cs.live_four_vcpus(vcore_in_guest=0)
    s["vcores"][0]["in_guest"] = vcore_in_guest
    hstate(s, 0)["in_guest"] = NONE
    return s


def test_vcore_in_guest_left_set_after_the_switch_back_breaks_13():
    found = Checker().check(after_switch_back(1))
    assert {v.invariant for v in found} == {13}, [str(v) for v in found]


def test_vcore_in_guest_cleared_after_the_switch_back_passes():
    assert numbers(after_switch_back(0)) == []
    # During the switch back (thread 0 still HOST_HV) in_guest 1 is allowed.
    assert numbers(cs.switch_back_in_progress()) == []


# --- 17 during the exit (modern: until EXITING) -----------------------------


def test_modern_running_with_an_exit_under_way_keeps_its_siblings_grabbed():
    s = cs.exit_in_progress()
    assert numbers(s) == []
    hstate(s, 3)["hwthread_req"] = 0
    hstate(s, 3)["in_guest"] = NONE
    hstate(s, 3)["kvm_vcpu"] = 0
    s["vcores"][0]["entry_exit_map"] = 0x207
    assert 17 in numbers(s)


# --- 32: a thread in KVM runs in real mode (Linux 56376c5864f8) -------------

HOST_VIRTUAL = 0x9000000000009033  # HV, EE, IR, DR, RI, LE
REAL_MODE = 0x9000000002803003  # HV, real mode (seen in kvm_do_nap)


def thread0_cede_nap(msr: int):
    s = running(vcpu_ids=(0, 1, 2, 3))
    s["version"] = 2
    hstate(s, 0).update(napping=cs.CEDE, in_guest=HOST_HV)
    vcpu(s, 0)["ceded"] = 1
    s["vcores"][0]["napping_threads"] = 1
    for t in s["threads"]:
        t["msr"] = hex(REAL_MODE if t is not s["threads"][0] else msr)
        t["pc"] = "0xc000000000115690"
    for t in s["threads"][1:]:
        t["msr"] = "0x8000000000001033"  # the guest's own MSR (HV clear)
    return s


def test_thread_woken_from_a_cede_nap_into_host_code_breaks_32():
    found = Checker().check(thread0_cede_nap(HOST_VIRTUAL))
    assert {v.invariant for v in found} == {32}, [str(v) for v in found]
    assert "pc 0xc000000000115690" in found[0].message


def test_thread_napping_in_real_mode_passes():
    assert numbers(thread0_cede_nap(REAL_MODE)) == []


def test_v1_snapshot_without_registers_judges_neither_31_nor_32():
    outcome = Checker().check_outcome(running())
    assert outcome.verdict == "clean"
    not_judged = dict(outcome.not_judged)
    assert not_judged[31] == "no DPDES read" and not_judged[32] == "no MSR read"
    assert 31 not in outcome.judged and 8 in outcome.judged


# --- snapshot v2: hex strings and integers ----------------------------------


def hexed(value):
    if isinstance(value, dict):
        return {k: hex(v) if k in HEX and isinstance(v, int) else hexed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hexed(v) for v in value]
    return value


HEX = {
    "kvm_vcpu",
    "kvm_vcore",
    "addr",
    "vcore",
    "runner",
    "kvm",
    "lpidr",
    "sdr1",
    "lpid",
    "host_lpid",
    "host_sdr1",
}


@pytest.mark.parametrize("name", ["running", "live_only_vcpu1", "exit_in_progress"])
def test_hex_and_integer_addresses_give_the_same_verdict(name):
    snap = cs.MUST_ACCEPT[name]()
    assert numbers(hexed(snap)) == numbers(snap) == []
    broken = cs.stock_qemu()
    assert [str(v) for v in Checker().check(hexed(broken))] == [str(v) for v in Checker().check(broken)]
    assert [str(v) for v in Checker().check(json.dumps(hexed(broken)))] == [
        str(v) for v in Checker().check(broken)
    ]


def test_violation_fields_give_addresses_as_hex_strings():
    found = Checker().check(cs.stock_qemu())
    assert any(v.fields.get("threads[1].lpidr") == "0x0" for v in found)
    assert all(isinstance(val, (str, int)) for v in found for val in v.fields.values())


def test_bad_hex_string_names_the_key():
    s = running()
    s["vcores"][0]["addr"] = "0xZZ"
    with pytest.raises(Exception) as e:
        Checker().check(json.dumps(s))
    assert e.value.key == "vcores[0].addr" and "hex string" in str(e.value)


# --- stops provably in one vcore run (vcores[].seq) -------------------------


def with_seq(snap, seq):
    snap["version"] = 2  # seq is a version-2 field
    snap["vcores"][0]["seq"] = seq
    return snap


def test_same_run_entry_word_going_back_breaks_11():
    first = with_seq(cs.exit_in_progress(), 7)  # 0x20f: an exit began
    later = with_seq(running(), 7)  # 0x00f: the exit bit is gone in the same run
    report = check_trace_text("\n".join(json.dumps(s) for s in (first, later)))
    assert {v.invariant for v in report.violations} == {11}
    assert report.violations[0].line == 2


def test_a_new_run_or_no_seq_proves_nothing():
    first, later = cs.exit_in_progress(), running()
    text = "\n".join(json.dumps(s) for s in (first, later))
    assert check_trace_text(text).exit_code == 0
    text = "\n".join(json.dumps(s) for s in (with_seq(first, 7), with_seq(later, 8)))
    assert check_trace_text(text).exit_code == 0


def test_same_run_in_guest_back_to_1_after_the_switch_back_breaks_7():
    back = with_seq(cs.live_four_vcpus(vcore_in_guest=0), 3)
    again = with_seq(cs.live_four_vcpus(vcore_in_guest=1), 3)
    report = check_trace_text("\n".join(json.dumps(s) for s in (back, again)))
    assert 7 in {v.invariant for v in report.violations}


def test_a_dict_without_variant_takes_the_checkers():
    s = running("seed")
    del s["variant"]
    assert Checker("seed").check(s) == []
    with pytest.raises(Exception) as e:
        Checker().check(s)
    assert e.value.key == "variant"


def test_a_stop_at_kvmppc_run_core_entry_is_not_yet_the_new_run():
    """The reader counts a run at kvmppc_run_core's entry, before the run
    resets entry_exit_map: that stop (vcore INACTIVE, the previous run's map)
    and the next stop of the run share `seq` but not the words (seen live:
    a false invariant 11 at kvmppc_start_thread on the unmutated kernel)."""
    entry = with_seq(cs.inactive_with_stale_words(), 5)  # map 0xf0f from the last run
    entry["stop"] = "kvmppc_run_core#5"
    started = with_seq(running(), 5)  # map 0x00f: the new run after its reset
    started["stop"] = "kvmppc_start_thread@cpu0"
    report = check_trace_text("\n".join(json.dumps(s) for s in (entry, started)))
    assert report.exit_code == 0, report.format_text()
