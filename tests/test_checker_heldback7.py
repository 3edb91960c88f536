"""Held-back inputs, second pass: doorbells on threads a core does not have
(31), the MSR bits of KVM's real-mode code (32), what stays fixed between two
stops of one vcore run (16's counters, 19's runner), and a variant given for
a trace whose stops have the other layout.  Each input is written as a user
writes it for `pyvcore check` and run through that command.

The verdicts come from the kernel source named in each case:
book3s_hv.c kvmppc_run_core (hard_irq_disable, the n_woken/nap_count reset
before VCORE_STARTING), kvmppc_run_vcpu (vc->runner set around
kvmppc_run_core), kvmppc_start_thread (++n_woken);
book3s_hv_rmhandlers.S kvmppc_hv_entry_trampoline (rfid with IR/DR cleared),
kvmhv_switch_to_host (DPDES saved and cleared after the LPIDR switch, before
vc->in_guest is cleared; the seed too: b005255e12a3)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from typing import Any, Callable

import checker_states as cs
import pytest
from checker_states import HOST_HV, IN_KVM, NONE, hstate, running, vcpu, vcpu_addr
from heldback_states import after_back

from pyvcore.checker import check_trace_text

HOST_VIRT = 0x9000000000009033  # HV, EE, IR, DR: host kernel code
REAL = 0x9000000002803003  # HV, real mode, EE 0: KVM's real-mode code (as read in the lab)
GUEST = 0x8000000000001033  # HV 0: the guest

# name -> (invariant a correct checker reports, 0 = clean; the trace's lines)
CASES: dict[str, tuple[int, Callable[[], list[dict[str, Any]]]]] = {}


def case(name: str, expect: int) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    def deco(fn: Callable[[], Any]) -> Callable[[], Any]:
        def lines() -> list[dict[str, Any]]:
            out = fn()
            return out if isinstance(out, list) else [out]

        CASES[name] = (expect, lines)
        return fn

    return deco


def dpdes(s: dict[str, Any], values: list[int | None]) -> dict[str, Any]:
    s["version"] = 2
    for t, d in zip(s["threads"], values):
        if d is not None:
            t["dpdes"] = hex(d)
    return s


def msr(s: dict[str, Any], values: list[int | None]) -> dict[str, Any]:
    s["version"] = 2
    for t, m in zip(s["threads"], values):
        if m is not None:
            t["msr"] = hex(m)
    return s


# ---------------- doorbells for a thread the core does not have (31) ----------------
@case("2-threads-doorbell-for-thread-2", 31)
def _():
    return dpdes(running(threads=2, vcpu_ids=(0, 1)), [0x4, 0x4])


@case("4-threads-doorbell-for-thread-4-stopping-thread-only", 31)
def _():
    return dpdes(running(), [None, None, 0x10, None])


@case("8-threads-doorbell-for-thread-7-everywhere", 0)
def _():
    return dpdes(running(threads=8, vcpu_ids=range(8)), [0x80] * 8)


@case("4-threads-vc-dpdes-high-bit-from-userspace", 0)
def _():
    # KVM_SET_ONE_REG writes vc->dpdes whole (kvmppc_set_one_reg_hv): not judged.
    s = dpdes(running(), [0] * 4)
    s["vcores"][0]["dpdes"] = "0x30"
    return s


def seed_switching_back(vcore_in_guest: int) -> dict[str, Any]:
    """Seed, thread 0 in the switch back: every entered thread has exited, the
    core is on the host LPIDR; with vc->in_guest 1 thread 0 has not reached the
    DPDES save yet, with 0 it has cleared DPDES."""
    s = after_back(4, (0, 1, 2, 3), variant="seed", vcore_in_guest=vcore_in_guest)
    hstate(s, 0)["in_guest"] = HOST_HV
    return s


@case("seed-doorbell-pending-before-the-dpdes-save", 0)
def _():
    return dpdes(seed_switching_back(1), [0x4, None, None, None])


@case("seed-doorbell-pending-after-in-guest-0", 31)
def _():
    s = seed_switching_back(0)
    hstate(s, 0)["in_guest"] = NONE
    return dpdes(s, [0x4, None, None, None])


# ---------------- MSR[PR] / MSR[EE] in KVM's real-mode code (32) ----------------
@case("thread0-novcpu-nap-problem-state", 32)
def _():
    s = running(vcpu_ids=(1, 2, 3))
    return msr(s, [0x9000000000004000, GUEST, GUEST, GUEST])


@case("thread2-guest-hv-real-mode-ee-on", 32)
def _():
    s = running()
    return msr(s, [GUEST, GUEST, REAL | 0x8000, GUEST])


@case("8-threads-thread5-cede-nap-ee-on", 32)
def _():
    s = running(threads=8, vcpu_ids=range(8))
    hstate(s, 5).update(napping=cs.CEDE, in_guest=HOST_HV)
    vcpu(s, 5)["ceded"] = 1
    s["vcores"][0]["napping_threads"] = 1 << 5
    return msr(s, [GUEST] * 5 + [REAL | 0x8000] + [GUEST] * 2)


@case("thread2-guest-hv-on-its-way-in-real-mode", 0)
def _():
    return msr(running(), [GUEST, GUEST, REAL, GUEST])


@case("host-thread-ee-on-outside-kvm", 0)
def _():
    s = running(vcpu_ids=(0, 1, 2))
    # grabbed, on its way from the idle loop (in_guest NONE: host code)
    hstate(s, 3).update(hwthread_req=1, hwthread_state=cs.IN_KERNEL, in_guest=NONE)
    return msr(s, [GUEST, GUEST, GUEST, HOST_VIRT])


@case("grabbed-idle-thread3-in-guest-mode-with-in-guest-none", 32)
def _():
    # thread 3 holds no vcpu and its PACA says host, but it executes with
    # MSR[HV] 0: its next hypervisor interrupt would be handled as the host's
    return msr(running(vcpu_ids=(0, 1, 2)), [GUEST, GUEST, GUEST, GUEST])


@case("8-threads-thread6-released-in-guest-mode", 32)
def _():
    s = after_back(8, range(8), vcore_in_guest=0)
    hstate(s, 6).update(in_guest=NONE, kvm_vcpu=0)
    return msr(s, [REAL] + [None] * 5 + [GUEST, None])


@case("grabbed-idle-thread3-in-host-real-mode", 0)
def _():
    return msr(running(vcpu_ids=(0, 1, 2)), [GUEST, GUEST, GUEST, 0x9000000000001001])


@case("v1-cede-nap-no-msr", 0)
def _():
    s = running(threads=8, vcpu_ids=range(8))
    hstate(s, 5).update(napping=cs.CEDE, in_guest=HOST_HV)
    vcpu(s, 5)["ceded"] = 1
    s["vcores"][0]["napping_threads"] = 1 << 5
    return s


# ---------------- two stops of one vcore run (16, 19) ----------------
def seq(s: dict[str, Any], n: int | None) -> dict[str, Any]:
    s = copy.deepcopy(s)
    s["version"] = 2
    if n is not None:
        s["vcores"][0]["seq"] = n
    return s


def seed_pair(key: str, before: int, after: int, seqs: tuple[int, int]) -> list[dict[str, Any]]:
    a = running("seed", vcpu_ids=(0, 1, 2, 3))
    a["vcores"][0].update(n_woken=3, nap_count=0)
    b = copy.deepcopy(a)
    a["vcores"][0][key], b["vcores"][0][key] = before, after
    if key == "nap_count":
        # secondaries that napped: their PACA no longer holds a vcpu, and the
        # exit is under way (both stops)
        for s in (a, b):
            s["vcores"][0]["entry_exit_count"] = 0x404
            s["vcores"][0]["in_guest"] = 0
            for t in range(4):
                s["threads"][t]["lpidr"], s["threads"][t]["sdr1"] = cs.HOST_LPID, cs.HOST_SDR1
                h = hstate(s, t)
                h.update(in_guest=NONE if t else HOST_HV, hwthread_state=IN_KVM)
                if t:
                    h["kvm_vcpu"] = 0
            for v in s["vcpus"]:
                v["cpu"] = -1
            s["vcores"][0]["vcore_state"] = cs.RUNNING["seed"]
        a["vcores"][0]["nap_count"], b["vcores"][0]["nap_count"] = before, after
    return [seq(a, seqs[0]), seq(b, seqs[1])]


@case("seed-n-woken-down-in-one-run", 16)
def _():
    return seed_pair("n_woken", 3, 2, (5, 5))


@case("seed-n-woken-down-across-runs", 0)
def _():
    return seed_pair("n_woken", 3, 2, (5, 6))


@case("seed-nap-count-down-in-one-run", 16)
def _():
    return seed_pair("nap_count", 3, 1, (5, 5))


@case("seed-nap-count-up-in-one-run", 0)
def _():
    return seed_pair("nap_count", 1, 3, (5, 5))


def runner_pair(seqs: tuple[int | None, int | None], second_state: int = 4) -> list[dict[str, Any]]:
    a = running(vcpu_ids=(0, 1, 2, 3))
    b = copy.deepcopy(a)
    b["vcores"][0]["runner"] = hex(vcpu_addr(2))
    b["vcores"][0]["vcore_state"] = second_state
    return [seq(a, seqs[0]), seq(b, seqs[1])]


@case("modern-runner-changed-in-one-run", 19)
def _():
    return runner_pair((7, 7))


@case("modern-runner-changed-across-runs", 0)
def _():
    return runner_pair((7, 8))


@case("modern-runner-changed-no-seq", 0)
def _():
    return runner_pair((None, None))


@case("seed-nap-count-above-n-woken-starting", 16)
def _():
    # STARTING, nothing started yet: a nap counted here is a thread of an
    # earlier run still counting (kvmppc_wait_for_nap gave up) or a nap
    # without a start.
    s = running("seed", vcpu_ids=(0, 1, 2, 3))
    s["vcores"][0].update(vcore_state=2, in_guest=0, entry_exit_count=0, n_woken=0, nap_count=1)
    for t in range(4):
        s["threads"][t]["lpidr"], s["threads"][t]["sdr1"] = cs.HOST_LPID, cs.HOST_SDR1
        hstate(s, t).update(
            kvm_vcpu=0, in_guest=NONE, napping=0, hwthread_state=cs.IN_IDLE if t else cs.IN_KERNEL
        )
    for v in s["vcpus"]:
        v["cpu"] = -1
    return s


def timebase_pair(ticks: tuple[int, int], offset: int = 0, guest_first: bool = False) -> list[dict[str, Any]]:
    """Two stops of run 9 with the vcore's tb_offset (``ticks``: host ticks).  With
    ``guest_first`` the first stop is inside the guest with the offset in force (thread 0 has
    stored tb_offset_applied, written TBU40 and set in_guest: kvmppc_hv_entry), so its tb is the
    host's plus the offset, and the second is after the switch back (kvmhv_switch_to_host has
    taken the offset off and cleared in_guest), so its tb is the host's."""
    out = []
    for i, t in enumerate(ticks):
        on = guest_first and i == 0
        s = seq(running() if i == 0 or not guest_first else after_back(4, (0, 1, 2, 3), vcore_in_guest=0), 9)
        s.update(tb=hex((t + (offset if on else 0)) % 2**64), tb_freq=512000000)
        for vc in s["vcores"]:
            vc.update(tb_offset=hex(offset % 2**64), tb_offset_applied=hex(offset % 2**64 if on else 0))
        out.append(s)
    return out


THREE_HOURS = (3 * 3600 * 512000000) >> 24 << 24  # a migrated guest's offset, 2^24-aligned
HOST = 1 << 44  # 9.5 hours of host timebase: a guest three hours behind reads a smaller tb


@case("modern-timebase-backwards-in-one-run-not-judged", 0)
def _():
    return timebase_pair((0x2000000000, 0x1FFF000000))


@case("modern-run-lasts-20-s-of-timebase", 44)
def _():
    return timebase_pair((0x2000000000, 0x2000000000 + 20 * 512000000))


@case("modern-guest-behind-its-host-offset-in-force-on-the-first-stop-only", 0)
def _():
    # half a second of host time; the first stop read the guest's TB, three hours behind
    return timebase_pair((HOST, HOST + 256000000), -THREE_HOURS, guest_first=True)


@case("modern-guest-ahead-of-its-host-offset-in-force-on-the-first-stop-only", 0)
def _():
    return timebase_pair((HOST, HOST + 256000000), THREE_HOURS, guest_first=True)


@case("modern-run-lasts-20-s-of-host-timebase-across-the-guest-offset", 44)
def _():
    # the raw tb went backwards by hours: only the host's timebase shows the hang
    return timebase_pair((HOST, HOST + 20 * 512000000), THREE_HOURS, guest_first=True)


@case("modern-run-timebase-without-the-offset-not-judged", 0)
def _():
    # a stop recorded without vcores[].tb_offset: its tb may be the guest's
    out = timebase_pair((0x2000000000, 0x2000000000 + 20 * 512000000))
    for vc in out[1]["vcores"]:
        del vc["tb_offset"], vc["tb_offset_applied"]
    return out


@case("hdec-expired-in-guest-not-judged", 0)
def _():
    s = msr(running(), [GUEST] * 4)
    s["threads"][2]["hdec"] = "0xffffff00"
    return s


NAMES = sorted(CASES)


@pytest.mark.parametrize("name", NAMES)
def test_verdict(name: str) -> None:
    expect, lines = CASES[name]
    report = check_trace_text("".join(json.dumps(s) + "\n" for s in lines()))
    found = sorted({v.invariant for v in report.violations})
    assert report.error is None, report.error
    assert found == ([expect] if expect else []), (name, [str(v) for v in report.violations])


def test_pyvcore_check_on_each_case(tmp_path) -> None:
    """Through the command a user runs: one file per case, exit 1 with only
    the case's invariant, or exit 0."""
    for name in NAMES:
        expect, lines = CASES[name]
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(s) + "\n" for s in lines()))
        r = subprocess.run(
            [sys.executable, "-m", "pyvcore", "check", "--json", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.stderr == "", (name, r.stderr)
        report = json.loads(r.stdout)
        assert r.returncode == (1 if expect else 0), (name, r.stdout[-1500:])
        assert {v["invariant"] for v in report["violations"]} == ({expect} if expect else set()), name


def test_messages_say_what_is_wrong() -> None:
    def first(name: str) -> str:
        return str(check_trace_text("".join(json.dumps(s) + "\n" for s in CASES[name][1]())).violations[0])

    assert "doorbell pending for thread 2, but the core has 2 threads" in first(
        "2-threads-doorbell-for-thread-2"
    )
    assert "MSR[PR] 1" in first("thread0-novcpu-nap-problem-state")
    assert "MSR[EE] 1" in first("8-threads-thread5-cede-nap-ee-on")
    assert "n_woken went down from 3 to 2" in first("seed-n-woken-down-in-one-run")
    assert "vc->runner changed" in first("modern-runner-changed-in-one-run")
    assert "kvmppc_wait_for_nap timed out" in first("seed-nap-count-above-n-woken-starting")


@pytest.mark.parametrize(
    "given, layout, refused",
    [
        ("prepatch", "modern", True),
        ("seed", "modern", True),
        ("modern", "seed", True),
        ("seed", "prepatch", False),
    ],
)
def test_a_variant_given_must_fit_the_stops_layout(tmp_path, given: str, layout: str, refused: bool) -> None:
    """`pyvcore check --variant V` on stops of the other layout: vcore_state 4
    is the modern RUNNING but the seed's EXITING, so the stop is refused (exit
    2, one line naming the key and both layouts), never judged with misread
    states.  seed and prepatch share their layout."""
    s = running(layout, vcpu_ids=(0, 1, 2, 3))
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(s) + "\n")
    for command in (["check"], ["show", "--line", "1"]):
        r = subprocess.run(
            [sys.executable, "-m", "pyvcore", *command, "--variant", given, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if refused:
            key = "entry_exit_map" if layout == "modern" else "entry_exit_count"
            assert r.returncode == 2, (command, r.stdout + r.stderr)
            assert f"1: key `vcores[0].{key}`" in r.stderr and "Traceback" not in r.stderr, r.stderr
            assert f"the variant given, {given}" in r.stderr
        else:
            assert r.returncode == 0, (command, r.stdout + r.stderr)


def test_a_variant_given_for_an_event_log_must_be_its_own(tmp_path) -> None:
    """An event log is replayed as the kernel its header names: --variant of
    another one was ignored silently; now it is refused (exit 2, one line),
    and the log's own variant is accepted."""
    log = tmp_path / "events.jsonl"
    header = {"format": "pyvcore-events", "tb_freq": 512000000, "threads_per_core": 4, "variant": "modern"}
    event = {"cpu": 0, "field": "threads[0].lpidr", "new": "0x0", "old": None, "pc": "0xc00000000000e0cc"}
    log.write_text(
        json.dumps({**header, "version": 1}) + "\n" + json.dumps({**event, "seq": 1, "tb": 2054180601}) + "\n"
    )
    for variant, code in (("prepatch", 2), ("seed", 2), ("modern", 0)):
        r = subprocess.run(
            [sys.executable, "-m", "pyvcore", "check", "--variant", variant, str(log)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == code, (variant, r.stdout, r.stderr)
        if code == 2:
            assert "event log of a modern kernel" in r.stderr and f"--variant {variant}" in r.stderr
            assert "Traceback" not in r.stderr


def test_a_doorbell_waits_in_vc_dpdes_through_a_run_without_its_vcpu() -> None:
    """Invariant 29 through exits: a doorbell for thread 2 still pending at the
    switch back is saved in vc->dpdes (kvmhv_switch_to_host), stays there
    through a run vcpu 2 is not in (thread 2 has no vcpu to take it), and is
    taken once, by vcpu 2, in the run after; a second take is refused."""
    import pyvcore

    vc = pyvcore.Vcore("modern", threads=4, vcpus=[0, 1, 2, 3], strict=True)

    def run(ids: tuple[int, ...], send: bool = False, take: bool = False) -> int | None:
        vc.run_core()
        vc.enter(0)
        vc.switch_in()
        for t in ids[1:]:
            vc.enter(t)
        for t in ids:
            vc.guest_entry(t)
        if send:
            vc.doorbell(0, 2)
        got = vc.take_doorbell(2) if take else None
        for t in ids:
            vc.exit(t)
        vc.switch_out()
        for t in ids[1:]:
            vc.tail(t)
        vc.release()
        vc.finish()
        return got

    vc.runnable(0, 1, 2, 3)
    run((0, 1, 2, 3), send=True)
    assert vc.vcore["dpdes"] == 0x4
    vc.block(2)
    run((0, 1, 3))
    assert vc.vcore["dpdes"] == 0x4
    vc.runnable(2)
    assert run((0, 1, 2, 3), take=True) == 2
    assert vc.vcore["dpdes"] == 0
    with pytest.raises(pyvcore.ModelError, match="no doorbell is pending for thread 2"):
        run((0, 1, 2, 3), take=True)
    assert vc.violations == []
