"""Snapshots for the checker tests: a builder for one POWER8 core running one
vcore, and the states a correct 6.12 kernel was seen to show in the lab (a
checker must accept them).

Numbers follow the kernel: modern vcore_state RUNNING 4 / EXITING 5 /
INACTIVE 0, seed RUNNING 3; in_guest HOST_HV 4 / GUEST_HV 3; hwthread_state
IN_KERNEL 0 / IN_IDLE 1 / IN_KVM 2; napping CEDE 1 / NOVCPU 2.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, Optional

VCORE = 0xC000000012340000
KVM = 0xC000000056780000
GUEST_LPID = 0x1
GUEST_SDR1 = 0x3F00000000000012
HOST_LPID = 0x0
HOST_SDR1 = 0x00000001FE000011

NONE, GUEST_HV, HOST_HV = 0, 3, 4
IN_KERNEL, IN_IDLE, IN_KVM = 0, 1, 2
CEDE, NOVCPU = 1, 2
RUNNING = {"modern": 4, "seed": 3, "prepatch": 3}
EXITING = {"modern": 5, "seed": 4, "prepatch": 4}
INACTIVE = 0


def vcpu_addr(vcpu_id: int) -> int:
    return 0xC000000090000000 + vcpu_id * 0x2000


def running(
    variant: str = "modern",
    threads: int = 4,
    vcpu_ids: Iterable[int] = (0, 1, 2, 3),
    num_threads: Optional[int] = None,
) -> dict[str, Any]:
    """A vcore in the middle of a run: every listed vcpu executes the guest on
    thread pcpu + (vcpu_id - first_vcpuid); thread 0 switched the MMU (and,
    with no vcpu of its own, naps with NAPPING_NOVCPU); unused secondaries are
    grabbed and idle."""
    ids = sorted(vcpu_ids)
    modern = variant == "modern"
    entered = [0] + [i for i in ids if i != 0]
    snap: dict[str, Any] = {
        "variant": variant,
        "threads_per_core": threads,
        "stop": "guest",
        "threads": [],
        "vcores": [
            {
                "addr": VCORE,
                "first_vcpuid": 0,
                "pcpu": 0,
                "num_threads": num_threads
                if num_threads is not None
                else max(len(ids), max(ids, default=0) + 1),
                "n_runnable": len(ids),
                "vcore_state": RUNNING[variant],
                "in_guest": 1,
                "napping_threads": 0 if 0 in ids else 1,
                "runner": vcpu_addr(ids[0]) if ids else 0,
                "kvm": KVM,
            }
        ],
        "vcpus": [],
        "kvm": {"lpid": GUEST_LPID, "sdr1": GUEST_SDR1, "host_lpid": HOST_LPID, "host_sdr1": HOST_SDR1},
    }
    vc = snap["vcores"][0]
    if modern:
        vc["entry_exit_map"] = sum(1 << i for i in entered)
    else:
        vc["entry_exit_count"] = len(entered)
        vc["n_woken"] = len([i for i in ids if i != 0])
        vc["nap_count"] = 0
    for t in range(threads):
        has_vcpu = t in ids
        hstate = {
            "kvm_vcpu": vcpu_addr(t) if has_vcpu else 0,
            "kvm_vcore": VCORE if (has_vcpu or t == 0) else 0,
            "ptid": t,
            "hwthread_req": 1,
            "hwthread_state": IN_KVM if t != 0 else IN_KERNEL,
            "napping": 0,
            "in_guest": GUEST_HV if has_vcpu else (HOST_HV if t == 0 else NONE),
        }
        if t != 0 and not has_vcpu:
            hstate["hwthread_state"] = IN_IDLE
        if t == 0 and not has_vcpu:
            hstate["napping"] = NOVCPU
        snap["threads"].append(
            {"cpu": t, "hw_cpu_id": 8 + t, "lpidr": GUEST_LPID, "sdr1": GUEST_SDR1, "kvm_hstate": hstate}
        )
    if not modern:
        # The seed's kvm_vcore is never cleared; a secondary without a vcpu
        # keeps whatever it had (here: never written).
        pass
    for i in ids:
        v = {"addr": vcpu_addr(i), "vcpu_id": i, "vcore": VCORE, "ptid": i, "cpu": 0, "state": 1, "ceded": 0}
        if modern:
            v["thread_cpu"] = i
        snap["vcpus"].append(v)
    return snap


def hstate(snap: dict[str, Any], thread: int) -> dict[str, Any]:
    return snap["threads"][thread]["kvm_hstate"]


def vcpu(snap: dict[str, Any], vcpu_id: int) -> dict[str, Any]:
    return next(v for v in snap["vcpus"] if v["vcpu_id"] == vcpu_id)


def clone(snap: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(snap)


# --- states seen on a correct kernel in the lab ("must accept"), modern 6.12 --


def live_four_vcpus(vcore_in_guest: int = 1) -> dict[str, Any]:
    """Observed: 4 vcpus spinning, stopped while every thread is in host-side
    entry/exit code: ptid 0..3, one kvm_vcore, hwthread_state 2, in_guest 4,
    n_runnable 4, num_threads 4, entry_exit_map 0xf0f."""
    s = running()
    s["stop"] = "attach"
    s["vcores"][0]["entry_exit_map"] = 0xF0F
    s["vcores"][0]["in_guest"] = vcore_in_guest
    for t in range(4):
        h = hstate(s, t)
        h["in_guest"] = HOST_HV
        h["hwthread_state"] = IN_KVM
    for v in s["vcpus"]:
        v["cpu"] = -1
        v["thread_cpu"] = -1
    if vcore_in_guest == 0:
        for t in s["threads"]:
            t["lpidr"], t["sdr1"] = HOST_LPID, HOST_SDR1
    return s


def live_only_vcpu1() -> dict[str, Any]:
    """Observed (novcpu0): only vcpu 1 runs; thread 0 switched the MMU with no
    vcpu (kvm_vcore set, kvm_vcpu 0, napping 2, hwthread_req 1); threads 2-3
    idle, outside the vcore, with the stale ptid of an earlier run."""
    s = running(vcpu_ids=(1,), num_threads=2)
    s["stop"] = "kvm_do_nap"
    s["vcpus"].insert(
        0,
        {
            "addr": vcpu_addr(0),
            "vcpu_id": 0,
            "vcore": VCORE,
            "ptid": 0,
            "cpu": -1,
            "thread_cpu": -1,
            "state": 2,
            "ceded": 0,
        },
    )
    for t in (2, 3):
        h = hstate(s, t)
        h.update(ptid=t, kvm_vcore=0, kvm_vcpu=0, hwthread_state=IN_IDLE, in_guest=NONE)
    return s


def exit_in_progress() -> dict[str, Any]:
    """A PACA still holds a vcpu whose cpu/thread_cpu are already -1: thread 1
    took an exit (commence_exit set its exit bit and cleared cpu/thread_cpu),
    which IPI'd the others."""
    s = running()
    s["vcores"][0]["entry_exit_map"] = 0x20F
    hstate(s, 1)["in_guest"] = HOST_HV
    vcpu(s, 1).update(cpu=-1, thread_cpu=-1)
    return s


def grabbed_secondary_in_kernel() -> dict[str, Any]:
    """A grabbed secondary briefly IN_KERNEL with hwthread_req 1 (woken, on
    its way from the idle loop to idle_kvm_start_guest)."""
    s = running(vcpu_ids=(0, 1, 2), num_threads=4)
    h = hstate(s, 3)
    h.update(hwthread_state=IN_KERNEL, hwthread_req=1)
    return s


def switch_back_in_progress() -> dict[str, Any]:
    """vcore in_guest still 1 while every thread already has the host LPIDR:
    thread 0 is between the LPIDR/SDR1 switch back and `in_guest = 0`."""
    s = live_four_vcpus(vcore_in_guest=1)
    for t in s["threads"]:
        t["lpidr"], t["sdr1"] = HOST_LPID, HOST_SDR1
    return s


def inactive_with_stale_words() -> dict[str, Any]:
    """After the run: vcore INACTIVE, released threads, entry_exit_map and
    napping_threads stale (thread 0 left by kvm_novcpu_exit with its napping
    bit still set)."""
    s = running(vcpu_ids=(1, 2, 3), num_threads=4)
    vc = s["vcores"][0]
    vc.update(
        vcore_state=INACTIVE, in_guest=0, entry_exit_map=0xF0F, napping_threads=0x1, runner=0, n_runnable=3
    )
    for i, t in enumerate(s["threads"]):
        t["lpidr"], t["sdr1"] = HOST_LPID, HOST_SDR1
        t["kvm_hstate"].update(
            kvm_vcpu=0,
            kvm_vcore=0,
            hwthread_req=0,
            napping=0,
            in_guest=NONE,
            hwthread_state=IN_KVM if i == 0 else IN_IDLE,
        )
    for v in s["vcpus"]:
        v.update(cpu=-1, thread_cpu=-1)
    return s


def stock_qemu() -> dict[str, Any]:
    """Stock QEMU: only thread 0 got the guest's LPIDR/SDR1; threads 1-3 say
    they execute the guest (in_guest 3) with the host's values."""
    s = running()
    for t in s["threads"][1:]:
        t["lpidr"], t["sdr1"] = HOST_LPID, HOST_SDR1
    return s


def clean_sequence() -> list:
    """Modern samples of one VM in an order a correct kernel can produce
    (any number of steps between them)."""
    return [
        live_only_vcpu1(),
        live_four_vcpus(1),
        switch_back_in_progress(),
        live_four_vcpus(0),
        inactive_with_stale_words(),
        running(vcpu_ids=(1,), num_threads=4),
        running(),
        exit_in_progress(),
        grabbed_secondary_in_kernel(),
    ]


MUST_ACCEPT = {
    "running": running,
    "live_four_vcpus_in_guest_1": lambda: live_four_vcpus(1),
    "live_four_vcpus_in_guest_0": lambda: live_four_vcpus(0),
    "live_only_vcpu1": live_only_vcpu1,
    "exit_in_progress": exit_in_progress,
    "grabbed_secondary_in_kernel": grabbed_secondary_in_kernel,
    "switch_back_in_progress": switch_back_in_progress,
    "inactive_with_stale_words": inactive_with_stale_words,
    "seed_running": lambda: running("seed"),
    "seed_novcpu": lambda: running("seed", vcpu_ids=(1, 2)),
    "prepatch_running": lambda: running("prepatch"),
    "eight_threads": lambda: running(threads=8, vcpu_ids=range(8)),
}
