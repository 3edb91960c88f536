"""The seed kernel's worked run (e0b7ec058c0e, POWER7, N = 4): vcore 0 with vcpus 1 and 2
runnable and thread 0 without a vcpu, replayed row by row as snapshots.
Every row is a state of a correct kernel, so the checker must accept each
one and every step between them; a few rows altered the way a bug would
alter them must be flagged."""

from __future__ import annotations

import copy
import json

from pyvcore import Checker
from pyvcore.checker import check_trace_text

VC, KVM = 0xC0000000A0000000, 0xC0000000B0000000
V1, V2 = 0xC0000000C0001000, 0xC0000000C0002000
GUEST_LPID, GUEST_SDR1, HOST_LPID, HOST_SDR1 = 5, 0x7F000012, 0, 0x1E000011
STARTING, RUNNING, EXITING, INACTIVE = 2, 3, 4, 0
IN_KERNEL, IN_NAP, IN_KVM = 0, 1, 2
NONE, GUEST_HV, HOST_HV = 0, 3, 4


def initial():
    def hs(state):
        return {
            "kvm_vcpu": 0,
            "kvm_vcore": 0,
            "ptid": 0,
            "hwthread_req": 0,
            "hwthread_state": state,
            "napping": 0,
            "in_guest": NONE,
        }

    return {
        "variant": "seed",
        "threads_per_core": 4,
        "stop": "initial",
        "threads": [
            {
                "cpu": t,
                "hw_cpu_id": t,
                "lpidr": HOST_LPID,
                "sdr1": HOST_SDR1,
                "kvm_hstate": hs(IN_KERNEL if t == 0 else IN_NAP),
            }
            for t in range(4)
        ],
        "vcores": [
            {
                "addr": VC,
                "first_vcpuid": 0,
                "pcpu": 0,
                "num_threads": 2,
                "n_runnable": 2,
                "vcore_state": INACTIVE,
                "in_guest": 0,
                "entry_exit_count": 0,
                "napping_threads": 0,
                "runner": V1,
                "n_woken": 0,
                "nap_count": 0,
                "kvm": KVM,
            }
        ],
        "vcpus": [
            {"addr": V1, "vcpu_id": 1, "vcore": VC, "ptid": 1, "cpu": -1, "state": 1, "ceded": 0},
            {"addr": V2, "vcpu_id": 2, "vcore": VC, "ptid": 2, "cpu": -1, "state": 1, "ceded": 0},
        ],
        "kvm": {"lpid": GUEST_LPID, "sdr1": GUEST_SDR1, "host_lpid": HOST_LPID, "host_sdr1": HOST_SDR1},
    }


def rows():
    """(label, snapshot) for every row of the §3.11 table (some split in two)."""
    s = initial()
    out = [("initial", copy.deepcopy(s))]
    vc, th, vcpus = s["vcores"][0], [t["kvm_hstate"] for t in s["threads"]], s["vcpus"]

    def row(label):
        s["stop"] = label
        out.append((label, copy.deepcopy(s)))

    vc.update(n_woken=0, nap_count=0, entry_exit_count=0, vcore_state=STARTING, in_guest=0, napping_threads=0)
    row("run_core reset")
    for t in (1, 2, 3):
        th[t].update(hwthread_req=1, kvm_vcpu=0)
    row("grab")
    th[1].update(kvm_vcpu=V1, kvm_vcore=VC, ptid=1)
    vcpus[0]["cpu"] = 0
    th[2].update(kvm_vcpu=V2, kvm_vcore=VC, ptid=2)
    vcpus[1]["cpu"] = 0
    vc.update(pcpu=0, n_woken=2)
    row("start_thread x2")
    th[0].update(kvm_vcore=VC, ptid=0)
    vc["vcore_state"] = RUNNING
    row("thread-0 fixup, RUNNING")
    th[0]["in_guest"] = HOST_HV
    vc["entry_exit_count"] = 1
    for t in s["threads"]:
        t["lpidr"], t["sdr1"] = GUEST_LPID, GUEST_SDR1
    vc["in_guest"] = 1
    row("T0 kvmppc_hv_entry")
    vc["napping_threads"] = 0b0001
    th[0].update(napping=2, hwthread_req=1)
    row("T0 no_guest nap")
    th[1].update(hwthread_state=IN_KVM, in_guest=HOST_HV)
    vc["entry_exit_count"] = 2
    row("T1 wakes, enters")
    th[2].update(hwthread_state=IN_KVM, in_guest=HOST_HV)
    vc["entry_exit_count"] = 3
    th[1]["in_guest"] = GUEST_HV
    th[2]["in_guest"] = GUEST_HV
    row("T1/T2 in the guest")
    th[1]["in_guest"] = HOST_HV
    vc["entry_exit_count"] = 0x103
    row("T1 exits (hcall to QEMU)")
    th[2]["in_guest"] = HOST_HV
    vc["entry_exit_count"] = 0x203
    row("T2 HDEC exit")
    th[0].update(napping=0, hwthread_req=0, hwthread_state=IN_KVM)
    vc["entry_exit_count"] = 0x303  # napping bit 0 still set
    row("T0 wakes, exits")
    for t in s["threads"]:
        t["lpidr"], t["sdr1"] = HOST_LPID, HOST_SDR1
    vc["in_guest"] = 0
    row("T0 switched back")
    for t in range(3):
        th[t]["in_guest"] = NONE
    th[1].update(kvm_vcpu=0, hwthread_state=IN_NAP)
    vc["nap_count"] = 1
    row("T1 tail")
    th[2].update(kvm_vcpu=0, hwthread_state=IN_NAP)
    vc["nap_count"] = 2
    row("T2 tail")
    for v in vcpus:
        v["cpu"] = -1
    row("vcpu->cpu = -1")
    for t in range(4):
        th[t].update(hwthread_req=0, kvm_vcpu=0)
    row("release")
    vc["vcore_state"] = EXITING
    row("EXITING")
    vc.update(vcore_state=INACTIVE, runner=0)
    row("INACTIVE")
    return out


def test_every_row_and_step_of_the_worked_example_passes():
    checker = Checker()
    for label, snap in rows():
        assert checker.check(snap) == [], (label, [str(v) for v in checker.check(snap)])
    report = check_trace_text("\n".join(json.dumps(s) for _, s in rows()))
    assert report.snapshots == 19 and report.exit_code == 0


def _broken(label, mutate):
    snap = dict(rows())[label]
    mutate(snap)
    return sorted({v.invariant for v in Checker().check(snap)})


def test_bugs_in_the_worked_example_are_flagged():
    # vcpu 2 started on thread 3 (the pre-change first-come-first-served placement).
    def misplace(s):
        h2, h3 = s["threads"][2]["kvm_hstate"], s["threads"][3]["kvm_hstate"]
        h3.update(
            kvm_vcpu=h2["kvm_vcpu"], kvm_vcore=VC, ptid=3, in_guest=h2["in_guest"], hwthread_state=IN_KVM
        )
        h2.update(kvm_vcpu=0, kvm_vcore=0, in_guest=NONE, hwthread_state=IN_NAP)

    assert {3, 29} <= set(_broken("T1/T2 in the guest", misplace))
    # Thread 0 switched back while T2 was still in the guest.
    assert 9 in _broken("T1 exits (hcall to QEMU)", lambda s: s["vcores"][0].update(in_guest=0))
    # Four entries counted, but only threads 0-2 were ever pointed at the vcore.
    assert _broken("T2 HDEC exit", lambda s: s["vcores"][0].update(entry_exit_count=0x204)) == [10]
    # More threads exiting than entered.
    assert _broken("T2 HDEC exit", lambda s: s["vcores"][0].update(entry_exit_count=0x403)) == [10]
    # Thread 0's novcpu nap without its napping bit.
    assert _broken("T0 no_guest nap", lambda s: s["vcores"][0].update(napping_threads=0)) == [26]
    # nap_count running ahead of n_woken.
    assert _broken("T2 tail", lambda s: s["vcores"][0].update(n_woken=1)) == [16]
    # Secondaries released while the vcore still runs with no exit.
    assert _broken("T1/T2 in the guest", lambda s: s["threads"][3]["kvm_hstate"].update(hwthread_req=0)) == [
        17
    ]
