"""Held-back inputs for the checker's bug classes, part 1: the windows of
17 (scope), the counters of 16, vc->in_guest after the run (13); part 2
(31, 32) and the tests are in test_checker_heldback.py.  Each case is a
stop as a user writes it for `pyvcore check`, with the verdict the kernel
source gives (named in the case) and, next to it, the correct kernel state
that must pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import checker_states as cs
from checker_states import HOST_HV, IN_IDLE, IN_KVM, NONE, hstate, running, vcpu, vcpu_addr

Case = tuple[int, str, int, str, Callable[[], Any]]
CASES: list[Case] = []


def check_lines_through_cli(path: Path, cases: list[tuple[str, int, Any]]) -> None:
    """Write each case's stop (name, the invariant expected, 0 for clean; the
    stop) as one line of the trace `path`, run `pyvcore check --json` on it as
    a user does, and assert that each line reports exactly its invariant and
    each clean twin nothing, with exit 1 and nothing on stderr."""
    path.write_text("".join(json.dumps(stop) + "\n" for _, _, stop in cases))
    r = subprocess.run(
        [sys.executable, "-m", "pyvcore", "check", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1 and r.stderr == "", (r.stdout[-2000:], r.stderr)
    report = json.loads(r.stdout)
    assert report["snapshots"] == len(cases)
    by_line: dict[int, set[int]] = {}
    for v in report["violations"]:
        by_line.setdefault(v["line"], set()).add(v["invariant"])
    for line, (name, expect, _) in enumerate(cases, 1):
        assert by_line.get(line, set()) == ({expect} if expect else set()), name


Builder = Callable[[], dict[str, Any]]


def named_cases() -> tuple[
    dict[str, tuple[int, Builder]], Callable[[str, int], Callable[[Builder], Builder]]
]:
    """A registry of named stops for a test module: (name -> (the invariant a correct checker
    reports, 0 = clean; the builder of the stop), the decorator `case(name, expect)` that adds
    one)."""
    cases: dict[str, tuple[int, Builder]] = {}

    def case(name: str, expect: int) -> Callable[[Builder], Builder]:
        def deco(fn: Builder) -> Builder:
            cases[name] = (expect, fn)
            return fn

        return deco

    return cases, case


def assert_verdict(name: str, expect: int, stop: dict[str, Any]) -> None:
    """`pyvcore.checker.check_trace_text` on the one stop reports exactly `expect` (0: clean)."""
    from pyvcore.checker import check_trace_text

    report = check_trace_text(json.dumps(stop) + "\n")
    found = sorted({v.invariant for v in report.violations})
    assert report.error is None, report.error
    assert found == ([expect] if expect else []), (name, [str(v) for v in report.violations])
    if not expect:
        assert report.verdict == "clean", (name, report.verdict)


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


# ---------------- class 1: invariant scope (17) ----------------
def seed_starting_t0(grab):
    s = running("seed", vcpu_ids=(0, 1), num_threads=2)
    s["stop"] = "kvmppc_start_thread"
    vc = s["vcores"][0]
    vc.update(vcore_state=2, in_guest=0, entry_exit_count=0, n_woken=0, napping_threads=0)
    host_regs(s)
    # only vcpu 0 started so far (thread 0: kvm_vcpu, kvm_vcore, ptid, vcpu->cpu)
    hstate(s, 0).update(in_guest=NONE, kvm_vcpu=vcpu_addr(0), napping=0, hwthread_state=IN_KVM)
    vcpu(s, 1)["cpu"] = -1
    for t in (1, 2, 3):
        hstate(s, t).update(hwthread_req=1 if grab else 0, hwthread_state=IN_IDLE, in_guest=NONE, kvm_vcpu=0)
    return s


@held(
    1,
    "seed-starting-only-vcpu0-started",
    17,
    "seed STARTING, vcpu 0 started on thread 0 first, threads 1-3 not grabbed",
)
def _():
    return seed_starting_t0(False)


@held(1, "seed-starting-only-vcpu0-started-grabbed", 0, "twin: same, threads 1-3 grabbed")
def _():
    return seed_starting_t0(True)


@held(
    1,
    "seed8-starting-thread5-started-thread7-ungrabbed",
    17,
    "seed 8 threads STARTING, thread 5 holds vcpu 5, thread 7 hwthread_req 0",
)
def _():
    s = running("seed", threads=8, vcpu_ids=range(8))
    s["vcores"][0].update(vcore_state=2, in_guest=0, entry_exit_count=0, n_woken=1)
    host_regs(s)
    for t in range(8):
        h = hstate(s, t)
        h.update(in_guest=NONE, hwthread_state=IN_IDLE if t else IN_KVM, kvm_vcpu=0)
    hstate(s, 5).update(kvm_vcpu=vcpu_addr(5))
    for v in s["vcpus"]:
        v["cpu"] = 0 if v["vcpu_id"] == 5 else -1
    hstate(s, 7)["hwthread_req"] = 0
    return s


@held(
    1,
    "seed-starting-threads1and3-ungrabbed",
    17,
    "seed STARTING, thread 2 started; threads 1 and 3 not grabbed",
)
def _():
    s = running("seed", vcpu_ids=(0, 1, 2, 3))
    s["vcores"][0].update(vcore_state=2, in_guest=0, entry_exit_count=0, n_woken=1)
    host_regs(s)
    for t in range(4):
        hstate(s, t).update(in_guest=NONE, hwthread_state=IN_IDLE if t else IN_KVM, kvm_vcpu=0)
    hstate(s, 2)["kvm_vcpu"] = vcpu_addr(2)
    for v in s["vcpus"]:
        v["cpu"] = 0 if v["vcpu_id"] == 2 else -1
    hstate(s, 1)["hwthread_req"] = 0
    hstate(s, 3)["hwthread_req"] = 0
    return s


@held(
    1,
    "prepatch-starting-thread3-ungrabbed",
    17,
    "prepatch STARTING, thread 1 started (entry counted), thread 3 not grabbed",
)
def _():
    s = running("prepatch", vcpu_ids=(0, 1, 2))
    s["vcores"][0].update(vcore_state=2, in_guest=0, entry_exit_count=1, n_woken=1)
    host_regs(s)
    hstate(s, 0).update(in_guest=NONE, hwthread_state=IN_KVM)
    hstate(s, 1).update(in_guest=HOST_HV)
    hstate(s, 2).update(in_guest=NONE, hwthread_state=IN_IDLE, kvm_vcpu=0)
    vcpu(s, 2)["cpu"] = -1
    hstate(s, 3).update(hwthread_req=0)
    return s


@held(
    1,
    "seed-starting-first-state-before-grab",
    0,
    "seed STARTING just after the reset: nothing grabbed, stale in_guest 1 and napping bits (reset stores STARTING before in_guest=0)",
)
def _():
    s = running("seed", vcpu_ids=(0, 1, 2, 3))
    s["vcores"][0].update(
        vcore_state=2, in_guest=1, entry_exit_count=0, n_woken=0, nap_count=0, napping_threads=0x3
    )
    host_regs(s)
    for t in range(4):
        hstate(s, t).update(
            in_guest=NONE, hwthread_state=IN_IDLE if t else IN_KVM, kvm_vcpu=0, hwthread_req=0
        )
    for v in s["vcpus"]:
        v["cpu"] = -1
    return s


def modern_inactive_started(grab3):
    """Modern kvmppc_run_core: threads grabbed and started before vcore_state = RUNNING (state still INACTIVE)."""
    s = running(vcpu_ids=(0, 1, 2, 3))
    s["stop"] = "kvmppc_start_thread"
    vc = s["vcores"][0]
    vc.update(vcore_state=0, in_guest=0, entry_exit_map=0x2, napping_threads=0)
    host_regs(s)
    hstate(s, 0).update(in_guest=NONE, hwthread_state=IN_KVM, kvm_vcpu=vcpu_addr(0), hwthread_req=0)
    hstate(s, 1).update(in_guest=HOST_HV)  # woken, entered, waits for vc->in_guest
    hstate(s, 2).update(in_guest=NONE, hwthread_state=IN_IDLE)  # started, not yet awake
    hstate(s, 3).update(
        in_guest=NONE, hwthread_state=IN_IDLE, kvm_vcpu=0, kvm_vcore=0, hwthread_req=1 if grab3 else 0
    )
    vcpu(s, 3).update(cpu=-1, thread_cpu=-1)
    return s


@held(
    1,
    "modern-inactive-started-thread3-ungrabbed",
    17,
    "modern: threads 0-2 started (state still INACTIVE before RUNNING), thread 3 hwthread_req 0",
)
def _():
    return modern_inactive_started(False)


@held(1, "modern-inactive-started-all-grabbed", 0, "twin: same with thread 3 grabbed")
def _():
    return modern_inactive_started(True)


def modern_exiting(grab3, t2_done):
    s = cs.live_four_vcpus(vcore_in_guest=0)
    s["stop"] = "kvmppc_wait_for_nap"
    vc = s["vcores"][0]
    vc["vcore_state"] = 5
    hstate(s, 0).update(in_guest=NONE)
    for t in (1, 3):
        hstate(s, t).update(in_guest=NONE, kvm_vcpu=0, kvm_vcore=0)
    if t2_done:
        hstate(s, 2).update(in_guest=NONE, kvm_vcpu=0, kvm_vcore=0)
    else:
        hstate(s, 2).update(in_guest=NONE)  # back from kvmppc_hv_entry, about to clear kvm_vcpu
    hstate(s, 3)["hwthread_req"] = 1 if grab3 else 0
    return s


@held(
    1,
    "modern-exiting-before-release-thread3-ungrabbed",
    17,
    "modern EXITING, thread 2 not finished (kvm_vcore set): wait_for_nap not done, yet thread 3 released",
)
def _():
    return modern_exiting(False, False)


@held(1, "modern-exiting-before-release-grabbed", 0, "twin: all grabbed")
def _():
    return modern_exiting(True, False)


@held(
    1,
    "modern-exiting-release-under-way",
    0,
    "twin: every secondary finished, release under way (threads 0-1 released, 2-3 not yet)",
)
def _():
    s = modern_exiting(True, True)
    for t in (0, 1):  # kvmppc_release_hwthread: hwthread_req, kvm_vcpu, kvm_vcore
        hstate(s, t).update(hwthread_req=0, kvm_vcpu=0, kvm_vcore=0)
    return s


def seed_returned(nap_count, released):
    s = running("seed", vcpu_ids=(0, 1, 2), num_threads=3)
    s["stop"] = "kvmppc_run_core"
    s["vcores"][0].update(entry_exit_count=0x303, in_guest=0, n_woken=2, nap_count=nap_count)
    host_regs(s)
    for v in s["vcpus"]:
        v["cpu"] = -1
    hstate(s, 0).update(in_guest=NONE, kvm_vcpu=0, hwthread_state=IN_KVM)
    hstate(s, 1).update(kvm_vcpu=0, in_guest=NONE, hwthread_state=IN_IDLE)
    hstate(s, 2).update(kvm_vcpu=0, in_guest=NONE, hwthread_state=IN_IDLE)
    for t in released:
        hstate(s, t)["hwthread_req"] = 0
    return s


@held(
    1,
    "seed-released-before-nap-count-complete",
    17,
    "seed RUNNING after the vcore entry returned, nap_count 1 < n_woken 2, thread 2 released (2f12f0343684)",
)
def _():
    return seed_returned(1, (0, 1, 2))


@held(
    1,
    "seed-release-under-way-nap-count-complete",
    0,
    "twin: nap_count == n_woken, release under way (threads 0,1 released)",
)
def _():
    return seed_returned(2, (0, 1))


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
    if nap_count:
        # A seed secondary counts itself in nap_count only after its wait in
        # secondary_too_late for vc->in_guest 0, i.e. after thread 0's switch back,
        # which waits for every exit (13): every entered thread has exited, the core
        # is back in the host partition, thread 0 still in KVM (HOST_HV).
        vc.update(in_guest=0, entry_exit_count=len(ids) | (len(ids) << 8))
        hstate(s, 0)["in_guest"] = HOST_HV
        host_regs(s)
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
