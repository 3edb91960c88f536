"""The seed's versions of invariant 13's "a secondary out of KVM while vc->in_guest is
still 1" and 14's "a napping_threads bit of a thread in the guest or out of KVM", each
next to the state a correct seed kernel shows that differs from it by one field (it must
pass).

The verdicts come from the seed's code (e0b7ec058c0e, v3.14; book3s_hv_rmhandlers.S):
kvm_start_guest counts a secondary in nap_count only after `bl kvmppc_hv_entry` returned,
which for a secondary is only through secondary_too_late's spin until VCORE_IN_GUEST is 0;
kvmppc_h_cede sets the thread's bit by HSTATE_PTID with in_guest HOST_HV (stored first
by kvmppc_interrupt_hv), and kvm_end_cede clears it before the thread returns to the
guest or leaves; kvmppc_run_core (book3s_hv.c) zeroes nap_count and napping_threads at
the start of each run.  A seed PACA keeps kvm_vcore after a run, so the cede rule is
judged on the PACA at vc->pcpu + ptid only."""

from __future__ import annotations

import json
from typing import Any

import checker_states as cs
import pytest
from checker_states import GUEST_HV, HOST_HV, IN_IDLE, IN_KERNEL, IN_KVM, NONE, hstate, running, vcpu
from heldback_states import assert_verdict, check_lines_through_cli, host_regs, named_cases

from pyvcore.checker import check_trace_text

CASES, case = named_cases()


# ---------------- 13: a secondary past its wait, through nap_count ----------------
def secondary_counted(vcore_in_guest: int, threads: int = 4) -> dict[str, Any]:
    """Seed: every thread entered and began its exit (entries == exits); thread 0 still in
    KVM (HOST_HV, the switch back under way or done); secondary 1 finished its pass:
    in_guest NONE, kvm_vcpu cleared, counted in nap_count, napping in the host."""
    s = running("seed", threads=threads, vcpu_ids=range(threads))
    vc = s["vcores"][0]
    vc.update(entry_exit_count=threads | (threads << 8), in_guest=vcore_in_guest, nap_count=1)
    for t in range(threads):
        hstate(s, t)["in_guest"] = HOST_HV
    if vcore_in_guest == 0:
        host_regs(s)
    hstate(s, 1).update(in_guest=NONE, kvm_vcpu=0, hwthread_state=IN_IDLE)
    return s


@case("seed-secondary-counted-in-nap-count-while-vcore-in-guest-1", 13)
def _():
    return secondary_counted(1)


@case("seed8-secondary-counted-in-nap-count-while-vcore-in-guest-1", 13)
def _():
    return secondary_counted(1, threads=8)


@case("seed-secondary-counted-in-nap-count-after-in-guest-0", 0)
def _():
    return secondary_counted(0)


@case("seed-secondary-started-not-entered-while-vcore-in-guest-1", 0)
def _():
    # a latecomer started on thread 3 (kvm_vcpu, kvm_vcore set; in_guest NONE), none counted
    s = running("seed", vcpu_ids=(0, 1, 2))
    s["vcores"][0]["num_threads"] = 4
    hstate(s, 3).update(kvm_vcore=cs.VCORE, kvm_vcpu=cs.vcpu_addr(3), in_guest=NONE, hwthread_state=IN_KVM)
    s["vcpus"].append(
        {
            "addr": cs.vcpu_addr(3),
            "vcpu_id": 3,
            "vcore": cs.VCORE,
            "ptid": 3,
            "cpu": 0,
            "state": 1,
            "ceded": 0,
        }
    )
    s["vcores"][0].update(n_runnable=4, n_woken=3)
    return s


@case("seed-secondary-left-from-an-earlier-run-while-vcore-in-guest-1", 0)
def _():
    # thread 3 ran vcpu 3 in an earlier run: kvm_vcore kept, out of KVM, no vcpu; this
    # run has vcpus 0-2 and nap_count 0.  Its PACA alone says nothing about this run.
    s = running("seed", vcpu_ids=(0, 1, 2))
    s["vcores"][0]["num_threads"] = 4
    hstate(s, 3).update(kvm_vcore=cs.VCORE, ptid=3, in_guest=NONE)
    return s


# ---------------- 14: a secondary's napping bit outside its cede ----------------
@case("seed-thread2-in-guest-with-its-napping-bit", 14)
def _():
    s = running("seed")
    s["vcores"][0]["napping_threads"] = 0x4
    return s


@case("seed-thread2-in-its-cede-with-its-napping-bit", 0)
def _():
    s = running("seed")  # kvmppc_h_cede: HOST_HV, bit set, NAPPING_CEDE not yet stored
    hstate(s, 2)["in_guest"] = HOST_HV
    s["vcores"][0]["napping_threads"] = 0x4
    vcpu(s, 2)["ceded"] = 1
    return s


@case("seed-thread2-napping-in-its-cede", 0)
def _():
    s = running("seed")
    hstate(s, 2).update(in_guest=HOST_HV, napping=cs.CEDE)  # naps with hwthread_state IN_KVM
    s["vcores"][0]["napping_threads"] = 0x4
    vcpu(s, 2)["ceded"] = 1
    return s


@case("seed8-novcpu0-thread7-in-guest-with-its-napping-bit", 14)
def _():
    s = running("seed", threads=8, vcpu_ids=range(1, 8))
    s["vcores"][0]["napping_threads"] = 0x81  # thread 0's no-vcpu bit and thread 7's
    return s


@case("seed-thread2-finished-with-its-napping-bit", 14)
def _():
    # thread 2 finished its pass (out of KVM, counted) with its bit still set
    s = secondary_counted(0)
    hstate(s, 2).update(in_guest=NONE, kvm_vcpu=0, hwthread_state=IN_IDLE)
    s["vcores"][0].update(nap_count=2, napping_threads=0x4)
    return s


@case("seed-stale-paca-on-another-core-while-this-core-cedes", 0)
def _():
    # the vcore now runs on core 1 (cpus 4-7, pcpu 4) and thread 6 (ptid 2) cedes; cpu 2
    # on core 0 still holds kvm_vcore and ptid 2 from a run there, out of KVM
    s = running("seed")
    for t in s["threads"]:
        t["cpu"] += 4
        t["hw_cpu_id"] += 4
    s["vcores"][0]["pcpu"] = 4
    hstate(s, 2)["in_guest"] = HOST_HV
    vcpu(s, 2)["ceded"] = 1
    s["vcores"][0]["napping_threads"] = 0x4
    for v in s["vcpus"]:
        v["cpu"] = 4
    core0 = [
        {
            "cpu": c,
            "hw_cpu_id": c,
            "lpidr": cs.HOST_LPID,
            "sdr1": cs.HOST_SDR1,
            "kvm_hstate": {
                "kvm_vcpu": 0,
                "kvm_vcore": cs.VCORE if c == 2 else 0,
                "ptid": 2 if c == 2 else 0,
                "hwthread_req": 0,
                "hwthread_state": IN_KERNEL if c == 0 else IN_IDLE,
                "napping": 0,
                "in_guest": NONE,
            },
        }
        for c in range(4)
    ]
    s["threads"] = core0 + s["threads"]
    return s


@case("seed-stale-paca-on-this-core-executing-the-guest-with-the-bit", 14)
def _():
    # the same, but the PACA that runs ptid 2 (cpu 6) executes the guest with the bit set
    s = CASES["seed-stale-paca-on-another-core-while-this-core-cedes"][1]()
    s["threads"][6]["kvm_hstate"]["in_guest"] = GUEST_HV  # cpu 6
    vcpu(s, 2)["ceded"] = 0
    return s


NAMES = sorted(CASES)


@pytest.mark.parametrize("name", NAMES)
def test_verdict(name: str) -> None:
    expect, build = CASES[name]
    assert_verdict(name, expect, build())


def test_pyvcore_check_on_every_case(tmp_path) -> None:
    """Through the command a user runs: every case one line of one trace."""
    cases = [(n, CASES[n][0], CASES[n][1]()) for n in NAMES]
    check_lines_through_cli(tmp_path / "seed13-14.jsonl", cases)


def test_messages_say_what_is_wrong() -> None:
    def first(name: str) -> str:
        return str(check_trace_text(json.dumps(CASES[name][1]()) + "\n").violations[0])

    assert "nap_count is 1" in first("seed-secondary-counted-in-nap-count-while-vcore-in-guest-1")
    assert "only after its wait for thread 0's store of 0" in first(
        "seed-secondary-counted-in-nap-count-while-vcore-in-guest-1"
    )
    assert "its bit is set in napping_threads 0x4" in first("seed-thread2-in-guest-with-its-napping-bit")
    assert "is out of KVM (in_guest NONE)" in first("seed-thread2-finished-with-its-napping-bit")


def test_the_table_says_why_the_rest_is_not_judged_for_the_seed() -> None:
    from pyvcore import _core

    rows = {i.number: i for i in _core.invariants()}
    assert "the seed's count does not say which thread exited" in rows[13].window
    assert "seed by nap_count above 0 in a run" in rows[13].window
    assert "seed in RUNNING and EXITING on the PACA at vc->pcpu + ptid" in rows[14].window
    assert "a secondary that has begun its exit: modern only" in rows[14].window
