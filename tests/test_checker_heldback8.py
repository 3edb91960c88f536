"""Held-back inputs, third pass: the entry/exit word tied to the threads it
counts (10), a thread executing the guest with no vcpu (23), and the host
clause of the doorbell rule on a snapshot of two cores (31).  Each input is
written as a user writes it for `pyvcore check`, next to the state a correct
kernel shows that differs from it by one field (it must pass).

The verdicts come from the Debian 6.12 source (the seed's ordering is the
same where named): book3s_hv_rmhandlers.S kvmppc_hv_entry (in_guest HOST_HV
first, then the entry bit by HSTATE_PTID -- seed: the entry count -- and
only later fast_guest_return's GUEST_HV, entered with r4 = the PACA's
kvm_vcpu), kvmppc_interrupt_hv (HOST_HV before anything else on the way
out), kvmhv_switch_to_host (KVM_GUEST_MODE_NONE as its last store; DPDES
saved and cleared after the LPIDR switch, before vc->in_guest = 0);
book3s_hv_builtin.c kvmhv_commence_exit (the exit bit 0x100 << ptid, set by
the exiting thread itself)."""

from __future__ import annotations

import json
from typing import Any

import checker_states as cs
import pytest
from checker_states import HOST_HV, IN_IDLE, IN_KERNEL, NONE, hstate, running, vcpu
from heldback_states import assert_verdict, check_lines_through_cli, host_regs, named_cases

from pyvcore.checker import check_trace_text

# name -> (the invariant a correct checker reports, 0 = clean; the stop)
CASES, case = named_cases()


def exiting(s: dict[str, Any], thread: int) -> dict[str, Any]:
    """Thread `thread` took an interrupt from the guest and began its exit:
    in_guest HOST_HV (kvmppc_interrupt_hv), then its exit bit."""
    hstate(s, thread)["in_guest"] = HOST_HV
    return s


# ---------------- class 2: the entry/exit word and the guest threads (10) ----------------
@case("modern-thread2-in-guest-without-its-entry-bit", 10)
def _():
    s = running()
    s["vcores"][0]["entry_exit_map"] = 0xB  # threads 0, 1, 3 entered; thread 2 executes the guest
    return s


@case("modern-thread2-in-guest-with-its-entry-bit", 0)
def _():
    return running()  # 0xf: every guest thread counted


@case("modern8-thread7-in-guest-after-its-exit-bit", 10)
def _():
    s = running(threads=8, vcpu_ids=range(8))
    s["vcores"][0]["entry_exit_map"] = 0x80FF
    return s


@case("modern8-thread7-exiting-after-its-exit-bit", 0)
def _():
    s = running(threads=8, vcpu_ids=range(8))
    s["vcores"][0]["entry_exit_map"] = 0x80FF
    return exiting(s, 7)


@case("modern2-novcpu0-thread1-in-guest-uncounted", 10)
def _():
    s = running(threads=2, vcpu_ids=(1,))
    s["vcores"][0]["entry_exit_map"] = 0x1  # only thread 0's no-vcpu entry
    return s


@case("modern2-novcpu0-thread1-in-guest-counted", 0)
def _():
    return running(threads=2, vcpu_ids=(1,))  # 0x3


@case("modern-holes-thread3-in-guest-after-thread3-exit", 10)
def _():
    s = running(vcpu_ids=(1, 3), num_threads=4)
    s["vcores"][0]["entry_exit_map"] = 0x80B  # thread 3's exit bit, yet GUEST_HV
    return s


@case("modern-entered-thread2-out-of-kvm-not-exiting", 10)
def _():
    s = running()
    hstate(s, 2)["in_guest"] = NONE  # entry bit set, no exit bit, PACA says out of KVM
    return s


@case("modern-entered-thread2-in-real-mode-not-exiting", 0)
def _():
    return exiting(running(), 2)  # HOST_HV (an hcall in real mode), not yet counted as exiting


@case("seed-four-in-guest-one-exit-counted", 10)
def _():
    s = running("seed")
    s["vcores"][0]["entry_exit_count"] = 0x104  # 4 entered, 1 exiting, 4 still GUEST_HV
    return s


@case("seed-three-in-guest-one-exit-counted", 0)
def _():
    s = running("seed")
    s["vcores"][0]["entry_exit_count"] = 0x104
    return exiting(s, 3)


@case("seed8-holes-three-in-guest-two-entries", 10)
def _():
    s = running("seed", threads=8, vcpu_ids=(0, 3, 5), num_threads=8)
    s["vcores"][0]["entry_exit_count"] = 0x2  # one short of the three guest threads
    return s


@case("seed8-holes-three-in-guest-three-entries", 0)
def _():
    return running("seed", threads=8, vcpu_ids=(0, 3, 5), num_threads=8)


@case("prepatch2-in-guest-after-both-exits", 10)
def _():
    s = running("prepatch", threads=2, vcpu_ids=(0, 1))
    s["vcores"][0]["entry_exit_count"] = 0x202
    return exiting(s, 0)  # thread 1 still GUEST_HV with both exits counted


@case("prepatch2-both-exiting", 0)
def _():
    s = running("prepatch", threads=2, vcpu_ids=(0, 1))
    s["vcores"][0]["entry_exit_count"] = 0x202
    return exiting(exiting(s, 0), 1)


# ---------------- class 2: n_woken and the vcpus it counts (16) ----------------
@case("seed-n-woken-3-with-2-secondary-vcpus", 16)
def _():
    s = running("seed", vcpu_ids=(0, 1, 2), num_threads=3)
    s["vcores"][0]["n_woken"] = 3  # vcpus 1 and 2 are the only ones a secondary runs
    return s


@case("seed-n-woken-2-with-2-secondary-vcpus", 0)
def _():
    return running("seed", vcpu_ids=(0, 1, 2), num_threads=3)


@case("seed-novcpu0-n-woken-3-with-vcpus-1-2", 16)
def _():
    s = running("seed", vcpu_ids=(1, 2), num_threads=2)
    s["vcores"][0]["n_woken"] = 3
    return s


@case("seed8-holes-n-woken-3-with-vcpus-0-3-5", 16)
def _():
    s = running("seed", threads=8, vcpu_ids=(0, 3, 5), num_threads=3)
    s["vcores"][0]["n_woken"] = 3
    return s


@case("prepatch-n-woken-3-with-2-secondary-vcpus", 16)
def _():
    s = running("prepatch", vcpu_ids=(0, 1, 2), num_threads=3)
    s["vcores"][0]["n_woken"] = 3  # below the core's 3 secondaries, above its 2 vcpus
    return s


@case("seed-n-woken-3-vcore-not-fully-listed", 0)
def _():
    # num_threads 4 but only vcpus 0-2 listed: the fourth may be the third secondary
    s = running("seed", vcpu_ids=(0, 1, 2), num_threads=4)
    s["vcores"][0]["n_woken"] = 3
    hstate(s, 3)["kvm_vcpu"] = 0
    return s


# ---------------- class 2: napping_threads and the threads it marks (14) ----------------
@case("modern-thread2-in-guest-with-its-napping-bit", 14)
def _():
    s = running()
    s["vcores"][0]["napping_threads"] = 0x4
    return s


@case("modern-thread2-in-its-cede-with-its-napping-bit", 0)
def _():
    s = exiting(running(), 2)  # H_CEDE: bit set (lwarx/stwcx.), NAPPING_CEDE not yet stored
    s["vcores"][0]["napping_threads"] = 0x4
    vcpu(s, 2)["ceded"] = 1
    return s


@case("modern8-novcpu0-thread7-in-guest-with-its-napping-bit", 14)
def _():
    s = running(threads=8, vcpu_ids=range(1, 8))
    s["vcores"][0]["napping_threads"] = 0x81  # thread 0's no-vcpu bit and thread 7's
    return s


# ---------------- class 3: vc->in_guest seen from a finished secondary (13) ----------------
def secondary_done(vcore_in_guest: int, threads: int = 4) -> dict[str, Any]:
    """Modern: every thread exited (map full); thread 0 still in KVM
    (HOST_HV, the switch back under way); secondary 1 already out of KVM
    (in_guest NONE) and about to clear its PACA (kvm_vcore still set)."""
    s = running(threads=threads, vcpu_ids=range(threads))
    m = (1 << threads) - 1
    vc = s["vcores"][0]
    vc.update(entry_exit_map=m | (m << 8), in_guest=vcore_in_guest)
    for t in range(threads):
        exiting(s, t)
    if vcore_in_guest == 0:
        host_regs(s)
    hstate(s, 1)["in_guest"] = NONE
    for v in s["vcpus"]:
        v.update(cpu=-1, thread_cpu=-1)
    return s


@case("modern-secondary-left-kvm-while-vcore-in-guest-1", 13)
def _():
    return secondary_done(1)


@case("modern8-secondary-left-kvm-while-vcore-in-guest-1", 13)
def _():
    return secondary_done(1, threads=8)


@case("modern-secondary-left-kvm-after-in-guest-0", 0)
def _():
    return secondary_done(0)


@case("modern-secondary-started-not-entered-while-vcore-in-guest-1", 0)
def _():
    # a latecomer started on thread 3 (kvm_vcore set, NONE) with no exit bit of its own
    s = running(vcpu_ids=(0, 1, 2))
    s["vcores"][0]["num_threads"] = 4
    hstate(s, 3).update(kvm_vcore=cs.VCORE, kvm_vcpu=cs.vcpu_addr(3), in_guest=NONE)
    s["vcpus"].append(
        {
            "addr": cs.vcpu_addr(3),
            "vcpu_id": 3,
            "vcore": cs.VCORE,
            "ptid": 3,
            "cpu": 0,
            "thread_cpu": 3,
            "state": 1,
            "ceded": 0,
        }
    )
    s["vcores"][0]["n_runnable"] = 4
    return s


# ---------------- class 3 / 13: thread 0 back in the host before every exit ----------------
def no_regs(s: dict[str, Any]) -> dict[str, Any]:
    """A reader without LPIDR/SDR1 (8 cannot see the switch back)."""
    for t in s["threads"]:
        t.pop("lpidr", None)
        t.pop("sdr1", None)
    return s


@case("modern-thread0-back-while-threads-1-3-in-guest", 13)
def _():
    s = no_regs(running())
    s["vcores"][0]["entry_exit_map"] = 0x10F  # thread 0 exited; 1-3 still in the guest
    hstate(s, 0)["in_guest"] = NONE
    return s


@case("modern-thread0-exit-bit-still-in-kvm-waiting", 0)
def _():
    s = no_regs(running())
    s["vcores"][0]["entry_exit_map"] = 0x10F  # thread 0 waits in kvmhv_switch_to_host
    hstate(s, 0).update(in_guest=HOST_HV, napping=0)
    return s


@case("seed8-thread0-back-with-one-of-three-exiting", 13)
def _():
    s = no_regs(running("seed", threads=8, vcpu_ids=(0, 3, 5), num_threads=3))
    s["vcores"][0]["entry_exit_count"] = 0x103
    hstate(s, 0).update(in_guest=NONE, hwthread_state=IN_KERNEL)
    return s


@case("seed-secondaries-entered-before-thread0-no-exit", 0)
def _():
    # kvmppc_run_core has started vcpus 1-2, they counted their entries and wait for
    # vc->in_guest; thread 0 (no vcpu) has not entered kvmppc_hv_entry yet
    s = no_regs(running("seed", vcpu_ids=(1, 2), num_threads=2))
    s["vcores"][0].update(entry_exit_count=0x2, in_guest=0, napping_threads=0)
    hstate(s, 0).update(in_guest=NONE, napping=0, hwthread_state=IN_KERNEL)
    for t in (1, 2):
        hstate(s, t)["in_guest"] = HOST_HV
    return s


# ---------------- a guest thread holds its vcpu (23) ----------------
@case("modern-thread2-in-guest-without-kvm-vcpu", 23)
def _():
    s = running()
    hstate(s, 2)["kvm_vcpu"] = 0
    vcpu(s, 2).update(cpu=-1, thread_cpu=-1)
    return s


@case("seed-thread1-in-guest-without-kvm-vcpu", 23)
def _():
    s = running("seed", vcpu_ids=(0, 1))
    hstate(s, 1)["kvm_vcpu"] = 0
    vcpu(s, 1)["cpu"] = -1
    return s


# ---------------- class 4: the host clause is per core (31) ----------------
def two_cores(core1_dpdes: int) -> dict[str, Any]:
    """Core 0 runs the vcore in the guest; core 1 (cpus 4-7) is in the host
    with the host's LPIDR, DPDES read on each of its threads."""
    s = running()
    s["version"] = 2
    for t in s["threads"]:
        t["dpdes"] = "0x0"
    for c in range(4, 8):
        s["threads"].append(
            {
                "cpu": c,
                "hw_cpu_id": 8 + c,
                "lpidr": cs.HOST_LPID,
                "sdr1": cs.HOST_SDR1,
                "dpdes": hex(core1_dpdes),
                "kvm_hstate": {
                    "kvm_vcpu": 0,
                    "kvm_vcore": 0,
                    "ptid": 0,
                    "hwthread_req": 0,
                    "hwthread_state": IN_KERNEL if c == 4 else IN_IDLE,
                    "napping": 0,
                    "in_guest": NONE,
                },
            }
        )
    return s


@case("two-cores-guest-doorbell-left-on-the-host-core", 31)
def _():
    return two_cores(0x2)


@case("two-cores-host-core-without-doorbell", 0)
def _():
    return two_cores(0x0)


@case("two-cores-core1-listed-first-guest-doorbell-on-the-host-core", 31)
def _():
    # the order of the cores in the snapshot does not matter
    s = two_cores(0x8)
    s["threads"] = s["threads"][4:] + s["threads"][:4]
    return s


NAMES = sorted(CASES)


@pytest.mark.parametrize("name", NAMES)
def test_verdict(name: str) -> None:
    expect, build = CASES[name]
    assert_verdict(name, expect, build())


def test_pyvcore_check_on_every_case(tmp_path) -> None:
    """Through the command a user runs: every case one line of one trace;
    each broken line reports only its invariant, each twin nothing; exit 1."""
    cases = [(n, CASES[n][0], CASES[n][1]()) for n in NAMES]
    check_lines_through_cli(tmp_path / "heldback8.jsonl", cases)


def test_messages_say_what_is_wrong() -> None:
    def first(name: str) -> str:
        return str(check_trace_text(json.dumps(CASES[name][1]()) + "\n").violations[0])

    assert "thread 2 executes the guest" in first("modern-thread2-in-guest-without-its-entry-bit")
    assert "not in the entry map" in first("modern-thread2-in-guest-without-its-entry-bit")
    assert "has begun its exit" in first("modern8-thread7-in-guest-after-its-exit-bit")
    assert "out of KVM (in_guest NONE)" in first("modern-entered-thread2-out-of-kvm-not-exiting")
    assert "4 threads execute the guest" in first("seed-four-in-guest-one-exit-counted")
    assert "with no kvm_vcpu" in first("modern-thread2-in-guest-without-kvm-vcpu")
    assert "n_woken 3 exceeds the 2 vcpus" in first("seed-n-woken-3-with-2-secondary-vcpus")
    assert "its bit is set in napping_threads 0x4" in first("modern-thread2-in-guest-with-its-napping-bit")
    assert "only 1 of the 4 entered threads are exiting" in first(
        "modern-thread0-back-while-threads-1-3-in-guest"
    )
    assert "pending in the host partition" in first("two-cores-guest-doorbell-left-on-the-host-core")
    assert "secondaries leave only after thread 0 cleared it" in first(
        "modern-secondary-left-kvm-while-vcore-in-guest-1"
    )
