"""Held-back inputs for the checker's bug classes, part 1: the windows of
17 (scope), the counters of 16, vc->in_guest after the run (13); part 2
(31, 32) and the tests are in test_checker_heldback.py.  Each case is a
stop as a user writes it for `pyvcore check`, with the verdict the kernel
source gives (named in the case) and, next to it, the correct kernel state
that must pass."""

from __future__ import annotations

from typing import Any, Callable

import checker_states as cs
from checker_states import HOST_HV, IN_IDLE, IN_KVM, NONE, hstate, running, vcpu

Case = tuple[int, str, int, str, Callable[[], Any]]
CASES: list[Case] = []


def held(cls: int, name: str, expect: int, desc: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Register a case: class number, name, the invariant a correct checker
    reports (0: the stop is clean) and what the input is."""

    def deco(fn: Callable[[], Any]) -> Callable[[], Any]:
        CASES.append((cls, name, expect, desc, fn))
        return fn

    return deco


def host_regs(s):
    for t in s["threads"]:
        t["lpidr"], t["sdr1"] = cs.HOST_LPID, cs.HOST_SDR1


def after_back(threads, ids, variant="modern", vcore_in_guest=1):
    s = running(variant, threads=threads, vcpu_ids=ids)
    vc = s["vcores"][0]
    ent = [0] + [i for i in ids if i]
    if variant == "modern":
        m = sum(1 << i for i in ent)
        vc["entry_exit_map"] = m | (m << 8)
    else:
        vc["entry_exit_count"] = len(ent) | (len(ent) << 8)
        vc["n_woken"] = len(ent) - 1
    vc["in_guest"] = vcore_in_guest
    host_regs(s)
    for t in range(threads):
        h = hstate(s, t)
        if h["in_guest"] != NONE or t == 0:
            h.update(in_guest=HOST_HV, hwthread_state=IN_KVM, napping=0)
    hstate(s, 0)["in_guest"] = NONE
    for v in s["vcpus"]:
        v["cpu"] = -1
        if "thread_cpu" in v:
            v["thread_cpu"] = -1
    return s


# ---------------- class 2: counters (16) ----------------
def seed_counts(threads, ids, n_woken, nap_count, holding):
    s = running("seed", threads=threads, vcpu_ids=ids, num_threads=len(ids))
    vc = s["vcores"][0]
    vc.update(n_woken=n_woken, nap_count=nap_count, entry_exit_count=len(ids))
    for t in range(1, threads):
        if t in ids and t not in holding:
            hstate(s, t).update(kvm_vcpu=0, in_guest=NONE, hwthread_state=IN_IDLE)
            vcpu(s, t)["cpu"] = -1
    # an exit began: threads not holding exited already
    n_exit = len([t for t in ids if t != 0 and t not in holding])
    vc["entry_exit_count"] = len(ids) + (n_exit << 8)
    for t in holding:
        hstate(s, t)["in_guest"] = HOST_HV
    return s


@held(
    2,
    "seed4-all-woken-at-limit",
    16,
    "seed 4 threads, n_woken 3 (every secondary woken: no start in flight), nap_count 1, 3 still hold a vcpu",
)
def _():
    s = seed_counts(4, (0, 1, 2, 3), 3, 1, (1, 2, 3))
    return s


@held(2, "seed4-all-woken-ok", 0, "twin: nap_count 1, 2 hold (the counted one cleared its vcpu)")
def _():
    return seed_counts(4, (0, 1, 2, 3), 3, 1, (2, 3))


@held(2, "seed2-woken-at-limit", 16, "seed 2 threads, n_woken 1, nap_count 1, thread 1 still holds vcpu 1")
def _():
    return seed_counts(2, (0, 1), 1, 1, (1,))


@held(
    2,
    "seed8-start-in-flight-ok",
    0,
    "seed 8 threads, n_woken 5, nap_count 0, 6 hold (one between its kvm_vcpu store and ++n_woken)",
)
def _():
    return seed_counts(8, tuple(range(8)), 5, 0, (1, 2, 3, 4, 5, 6))


@held(
    2,
    "seed8-start-in-flight-one-past",
    16,
    "seed 8 threads, n_woken 5, nap_count 1, 6 hold: one past the tolerated +1",
)
def _():
    return seed_counts(8, tuple(range(8)), 5, 1, (1, 2, 3, 4, 5, 6))


@held(
    2,
    "prepatch4-nap-before-clear",
    16,
    "prepatch 4 threads, n_woken 2 of vcpus 0-2, nap_count 2, threads 1-2 hold",
)
def _():
    return seed_counts(4, (0, 1, 2), 2, 2, (1, 2)) | {"variant": "prepatch"}


@held(2, "seed-nap-count-exceeds", 16, "seed nap_count 3 > n_woken 1")
def _():
    return seed_counts(4, (0, 1, 2, 3), 1, 3, ())


# ---------------- class 3: in_guest after the switch back (13) ----------------
@held(
    3,
    "modern8-in-guest-1-after-switch-back",
    13,
    "modern 8 threads all exiting 0xffff, thread 0 NONE, vc in_guest 1",
)
def _():
    return after_back(8, range(8))


@held(3, "modern2-in-guest-1-after-switch-back", 13, "modern 2 threads 0x303, thread 0 NONE, in_guest 1")
def _():
    return after_back(2, (0, 1))


@held(3, "seed-in-guest-1-after-switch-back", 13, "seed 4 threads count 0x404, thread 0 NONE, in_guest 1")
def _():
    return after_back(4, (0, 1, 2, 3), "seed")


@held(
    3,
    "modern-in-guest-1-all-exited",
    13,
    "modern, every thread already NONE (secondaries finished), in_guest 1",
)
def _():
    s = after_back(4, (0, 1, 2, 3))
    for t in (1, 2, 3):
        hstate(s, t).update(in_guest=NONE, kvm_vcpu=0, kvm_vcore=0)
    return s


@held(
    3,
    "modern-novcpu-in-guest-1-after-switch-back",
    13,
    "modern, thread 0 had no vcpu (vcpus 1-3), map 0xf0f, thread 0 NONE, in_guest 1",
)
def _():
    s = after_back(4, (1, 2, 3))
    s["vcores"][0]["napping_threads"] = 1  # stale from kvm_novcpu_exit
    return s


@held(
    3,
    "modern-exiting-in-guest-1-thread0-released",
    13,
    "modern EXITING, thread 0 already released (kvm_vcore 0), in_guest 1",
)
def _():
    s = after_back(4, (0, 1, 2, 3))
    s["vcores"][0]["vcore_state"] = 5
    for t in range(4):
        hstate(s, t).update(in_guest=NONE, kvm_vcpu=0, kvm_vcore=0)
    hstate(s, 0)["hwthread_req"] = 0
    return s


@held(3, "seed-exiting-in-guest-1", 13, "seed EXITING (set after release), in_guest 1")
def _():
    s = after_back(4, (0, 1, 2, 3), "seed")
    s["vcores"][0]["vcore_state"] = 4
    s["vcores"][0]["nap_count"] = 3
    for t in range(4):
        hstate(s, t).update(
            in_guest=NONE, kvm_vcpu=0, hwthread_req=0, hwthread_state=IN_KVM if t == 0 else IN_IDLE
        )
    return s


@held(3, "modern-one-still-exiting-in-guest-0", 0, "twin: in_guest 0, thread 2 still HOST_HV")
def _():
    s = after_back(4, (0, 1, 2, 3), vcore_in_guest=0)
    for t in (1, 3):
        hstate(s, t).update(in_guest=NONE, kvm_vcpu=0, kvm_vcore=0)
    return s


@held(3, "modern8-switch-back-in-progress", 0, "twin: thread 0 still HOST_HV, in_guest 1, host LPIDR")
def _():
    s = after_back(8, range(8))
    hstate(s, 0)["in_guest"] = HOST_HV
    return s
