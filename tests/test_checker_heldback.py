"""Held-back inputs for the checker's bug classes (the windows of 17, the
counters of 16, vc->in_guest after the run (13), the core's DPDES (31), the
mode a thread in KVM runs in (32)): other thread counts, other threads
missing, the other variants, each window's edges and the correct kernel
state next to each, as a user writes them for `pyvcore check`.  Classes
1-3 are built in heldback_states.py, 4-5 here.

Each expected verdict comes from the kernel source named in its case:
book3s_hv.c kvmppc_run_core / kvmppc_start_thread / kvmppc_wait_for_nap /
kvmppc_release_hwthread, book3s_hv_rmhandlers.S kvmppc_hv_entry /
kvmhv_switch_to_host / kvmppc_h_cede / kvm_do_nap."""

from __future__ import annotations

import checker_states as cs
import pytest
from checker_states import HOST_HV, hstate, running, vcpu
from heldback_states import CASES, after_back, check_lines_through_cli, held

from pyvcore import Checker


# ---------------- class 4: doorbells (31) ----------------
def with_dpdes(s, values):
    s["version"] = 2
    for t, d in zip(s["threads"], values):
        if d is not None:
            t["dpdes"] = hex(d)
    return s


@held(
    4, "modern8-thread7-doorbell-on-thread0", 31, "8 threads, doorbell for thread 7 pending on thread 0 only"
)
def _():
    return with_dpdes(running(threads=8, vcpu_ids=range(8)), [0x80] + [0] * 7)


@held(4, "modern-thread1-doorbell-on-thread3", 31, "doorbell for thread 1 seen on thread 3 only")
def _():
    return with_dpdes(running(), [0, 0, 0, 0x2])


@held(4, "modern2-thread1-doorbell-on-thread0", 31, "2 threads, thread 1's doorbell on thread 0 only")
def _():
    return with_dpdes(running(threads=2, vcpu_ids=(0, 1)), [0x2, 0])


@held(
    4,
    "modern8-doorbell-pending-in-host-thread7",
    31,
    "after the switch back (host LPIDR, in_guest 0) DPDES 0x80 read on thread 5",
)
def _():
    s = after_back(8, range(8), vcore_in_guest=0)
    return with_dpdes(s, [None] * 5 + [0x80] + [None] * 2)


@held(
    4,
    "modern-doorbell-saved-in-vcore-after-exit",
    0,
    "twin: after the switch back DPDES 0, vc->dpdes 0x8 (saved)",
)
def _():
    s = after_back(4, (0, 1, 2, 3), vcore_in_guest=0)
    s["vcores"][0]["dpdes"] = "0x8"
    return with_dpdes(s, [0, None, None, None])


@held(
    4,
    "modern-doorbell-pending-while-target-cede-naps",
    0,
    "doorbell 0x4 on every thread while thread 2 naps in H_CEDE (it wakes it): not decidable",
)
def _():
    s = running()
    hstate(s, 2).update(napping=cs.CEDE, in_guest=HOST_HV)
    vcpu(s, 2)["ceded"] = 1
    s["vcores"][0]["napping_threads"] = 0x4
    return with_dpdes(s, [0x4] * 4)


@held(4, "modern8-doorbells-agree", 0, "twin: 8 threads all read 0xff")
def _():
    return with_dpdes(running(threads=8, vcpu_ids=range(8)), [0xFF] * 8)


@held(4, "v1-no-dpdes", 0, "version 1: no DPDES: 31 not judged, exit 0")
def _():
    return running()


# ---------------- class 5: PC / MSR (32) ----------------
HOST_VIRT = 0x9000000000009033
REAL = 0x9000000002803003  # as in the lab: HV, ME.. real mode
GUEST = 0x8000000000001033


def regs(s, msrs, pcs=None):
    s["version"] = 2
    for i, t in enumerate(s["threads"]):
        if msrs[i] is not None:
            t["msr"] = hex(msrs[i])
        if pcs and pcs[i] is not None:
            t["pc"] = hex(pcs[i])
    return s


@held(
    5, "secondary2-cede-woke-into-host", 32, "thread 2 napping CEDE, msr host virtual mode, pc in host code"
)
def _():
    s = running()
    hstate(s, 2).update(napping=cs.CEDE, in_guest=HOST_HV)
    vcpu(s, 2)["ceded"] = 1
    s["vcores"][0]["napping_threads"] = 0x4
    return regs(s, [GUEST, GUEST, HOST_VIRT, GUEST], [None, None, 0xC000000000020000, None])


@held(5, "thread0-novcpu-nap-ir-only", 32, "thread 0 NOVCPU nap, MSR IR on only (DR off)")
def _():
    s = running(vcpu_ids=(1, 2, 3))
    hstate(s, 0)["hwthread_req"] = 1
    return regs(s, [0x9000000000001023, GUEST, GUEST, GUEST])


@held(
    5,
    "thread0-cede-woke-into-host-other-pc",
    32,
    "thread 0 cede nap, host virtual mode at another host PC (idle loop)",
)
def _():
    s = running(vcpu_ids=(0, 1, 2, 3))
    hstate(s, 0).update(napping=cs.CEDE, in_guest=HOST_HV)
    vcpu(s, 0)["ceded"] = 1
    s["vcores"][0]["napping_threads"] = 1
    return regs(s, [HOST_VIRT, GUEST, GUEST, GUEST], [0xC0000000000A1234, None, None, None])


@held(
    5,
    "thread0-host-hv-translation-on",
    32,
    "thread 0 in KVM real-mode code (in_guest HOST_HV, after its nap woke) with translation on: host code",
)
def _():
    s = running(vcpu_ids=(0, 1, 2, 3))
    hstate(s, 0).update(in_guest=HOST_HV, napping=0)
    return regs(s, [HOST_VIRT, GUEST, GUEST, GUEST], [0xC0000000000A1234, None, None, None])


@held(
    5,
    "cede-nap-guest-msr",
    32,
    "thread 2 napping CEDE but its MSR is the guest's (HV 0): the wake went back to the guest with napping still set",
)
def _():
    s = running()
    hstate(s, 2).update(napping=cs.CEDE, in_guest=HOST_HV)
    vcpu(s, 2)["ceded"] = 1
    s["vcores"][0]["napping_threads"] = 0x4
    return regs(s, [GUEST, GUEST, GUEST, GUEST])


@held(5, "cede-nap-real-mode-twin", 0, "twin: thread 2 napping CEDE in real mode")
def _():
    s = running()
    hstate(s, 2).update(napping=cs.CEDE, in_guest=HOST_HV)
    vcpu(s, 2)["ceded"] = 1
    s["vcores"][0]["napping_threads"] = 0x4
    return regs(s, [GUEST, GUEST, REAL, GUEST], [None, None, 0xC000000000115690, None])


@held(5, "cede-nap-v1-no-msr", 0, "version 1, thread 0 napping CEDE, no msr/pc: not judged, exit 0")
def _():
    s = running(vcpu_ids=(0, 1, 2, 3))
    hstate(s, 0).update(napping=cs.CEDE, in_guest=HOST_HV)
    vcpu(s, 0)["ceded"] = 1
    s["vcores"][0]["napping_threads"] = 1
    return s


@held(5, "pc-only-no-msr", 0, "v2 with pc but no msr: 32 not judged, exit 0")
def _():
    s = running(vcpu_ids=(0, 1, 2, 3))
    hstate(s, 0).update(napping=cs.CEDE, in_guest=HOST_HV)
    vcpu(s, 0)["ceded"] = 1
    s["vcores"][0]["napping_threads"] = 1
    s["version"] = 2
    s["threads"][0]["pc"] = "0xc0000000000a1234"
    return s


IDS = [c[1] for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_verdict(case):
    _cls, _name, expect, desc, build = case
    outcome = Checker().check_outcome(build())
    found = sorted({v.invariant for v in outcome.violations})
    if expect:
        assert found == [expect], (desc, [str(v) for v in outcome.violations])
    else:
        assert outcome.verdict == "clean", (desc, [str(v) for v in outcome.violations])


def test_pyvcore_check_on_every_case(tmp_path):
    """Through the command a user runs: every case one line of a trace; each
    broken line reports only its invariant, each twin nothing; exit 1."""
    cases = [(name, expect, build()) for _cls, name, expect, _desc, build in CASES]
    check_lines_through_cli(tmp_path / "heldback.jsonl", cases)


def test_messages_name_the_window():
    by_name = {c[1]: c[4] for c in CASES}

    def first(name):
        return str(Checker().check(by_name[name]())[0])

    assert "thread 3 is not grabbed" in first("modern-inactive-started-thread3-ungrabbed")
    assert "kvmppc_wait_for_nap has not returned" in first("modern-exiting-before-release-thread3-ungrabbed")
    assert "nap_count < n_woken" in first("seed-released-before-nap-count-complete")
    assert "no start is in flight" in first("seed4-all-woken-at-limit")
    assert "VCORE_EXITING" in first("modern-exiting-in-guest-1-thread0-released")
    assert "MSR[HV] 0" in first("cede-nap-guest-msr")
    assert "pc 0xc0000000000a1234" in first("thread0-host-hv-translation-on")


def test_v1_and_pc_only_stops_leave_32_and_31_not_judged():
    for name in ("cede-nap-v1-no-msr", "pc-only-no-msr"):
        build = next(c[4] for c in CASES if c[1] == name)
        outcome = Checker().check_outcome(build())
        assert dict(outcome.not_judged)[32] == "no MSR read"
        assert dict(outcome.not_judged)[31] == "no DPDES read"


def test_a_misplaced_doorbell_is_named_with_the_thread_it_is_for():
    """Issue 10's input: vcpu 0's doorbell to thread 2 pending on thread 0 and not on
    thread 2 (modern, 4 threads, all in the guest).  Invariant 31 says which doorbell
    is where, not only the four readings; a doorbell every thread sees is not named."""
    msgs = [
        v.message for v in Checker("modern").check(with_dpdes(running(), [0x4, 0, 0, 0])) if v.invariant == 31
    ]
    assert len(msgs) == 1, msgs
    assert "the doorbell for thread 2 (DPDES bit 2) is pending on thread 0 only" in msgs[0]
    eight = with_dpdes(running(threads=8, vcpu_ids=range(8)), [0x81] * 4 + [0x01] * 4)
    (msg,) = [v.message for v in Checker("modern").check(eight) if v.invariant == 31]
    assert "the doorbell for thread 7 (DPDES bit 7) is pending on threads 0, 1, 2, 3 only" in msg
    assert "thread 0 (DPDES bit 0)" not in msg
