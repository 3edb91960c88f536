"""Held-back inputs for the checker's bug classes, part 1: the windows of
17 (scope), the counters of 16, vc->in_guest after the run (13); part 2
(31, 32) and the tests are in test_checker_heldback.py.  Each case is a
stop as a user writes it for `pyvcore check`, with the verdict the kernel
source gives (named in the case) and, next to it, the correct kernel state
that must pass."""

from __future__ import annotations

from typing import Any, Callable

import checker_states as cs
from checker_states import HOST_HV, IN_KVM, NONE, hstate, running

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
