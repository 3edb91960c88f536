"""The model through its Python API: every transition (legal and illegal),
a seed run step by step (e0b7ec058c0e), and property tests (random event
sequences never crash; every reachable seed/modern state passes the checker)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyvcore
from pyvcore import Checker, ModelError, Vcore
from pyvcore.model import (
    EVENT_FORMS,
    EVENT_LABELS,
    MAX_VCPU_ID,
    THREAD_COUNTS,
    VARIANTS,
    VCORE_STATE_NAMES,
    Event,
    InvariantError,
)

VCORE = 0xC000000003000000


def vcpu_addr(vcpu_id: int) -> int:
    return 0xC000000004000000 + vcpu_id * 0x4000


def row(vc: Vcore, thread: int) -> dict:
    return vc.paca_table()[thread]


def test_worked_example_3_11_row_by_row() -> None:
    """seed, N = 4, vcpus 1 and 2 runnable, thread 0 has no vcpu.

    (Long: one kernel step after another, each row checked where it happens.)"""
    vc = Vcore("seed", threads=4, vcpus=[1, 2], strict=True)
    assert row(vc, 0)["hwthread_state"] == 0
    assert [row(vc, t)["hwthread_state"] for t in (1, 2, 3)] == [1, 1, 1]
    assert all(r["hwthread_req"] == 0 for r in vc.paca_table())

    vc.runnable(1, 2)
    vc.run_core(runner=1, start=False)  # row "run_core reset" + row "grab"
    v = vc.vcore
    assert (v["n_woken"], v["nap_count"], v["entry_exit_count"]) == (0, 0, 0)
    assert (v["vcore_state"], v["vcore_state_name"], v["in_guest"], v["napping_threads"]) == (
        2,
        "VCORE_STARTING",
        0,
        0,
    )
    for t in (1, 2, 3):
        assert (row(vc, t)["hwthread_req"], row(vc, t)["kvm_vcpu"]) == (1, 0)

    vc.start_thread(1)  # row "start_thread x2"
    vc.start_thread(2)
    assert (vc.vcore["pcpu"], vc.vcore["n_woken"]) == (0, 2)
    for t, v_id in ((1, 1), (2, 2)):
        r = row(vc, t)
        assert (r["kvm_vcpu"], r["kvm_vcore"], r["ptid"], r["ipi"]) == (vcpu_addr(v_id), VCORE, t, True)
    assert row(vc, 3)["ipi"] is False

    vc.vcore_entry()  # row "thread-0 fixup, RUNNING"
    assert vc.vcore["vcore_state_name"] == "VCORE_RUNNING" and vc.vcore["vcore_state"] == 3
    assert (row(vc, 0)["kvm_vcore"], row(vc, 0)["ptid"], row(vc, 0)["kvm_vcpu"]) == (VCORE, 0, 0)

    vc.enter(0)  # row "T0 kvmppc_hv_entry"
    vc.switch_in()
    assert (vc.vcore["entry_exit_count"], vc.vcore["in_guest"]) == (1, 1)
    assert row(vc, 0)["in_guest"] == 4 and row(vc, 0)["lpidr"] == vc.snapshot()["kvm"]["lpid"]

    vc.guest_entry(0)  # row "T0 no_guest nap"
    assert vc.vcore["napping_threads"] == 0b0001
    assert (row(vc, 0)["napping"], row(vc, 0)["hwthread_req"], row(vc, 0)["phase"]) == (2, 1, "novcpu_nap")

    vc.enter(1)  # row "T1/T2 wake"
    assert vc.vcore["entry_exit_count"] == 2
    assert (row(vc, 1)["hwthread_state"], row(vc, 1)["in_guest"]) == (2, 4)
    vc.guest_entry(1)
    assert row(vc, 1)["in_guest"] == 3
    vc.enter(2)
    vc.guest_entry(2)
    assert vc.vcore["entry_exit_count"] == 3
    assert row(vc, 3)["hwthread_state"] == 1  # stays asleep

    vc.exit(1, trap=0xC00)  # row "T1 exits (hcall to QEMU)"
    assert vc.vcore["entry_exit_count"] == 0x103
    assert row(vc, 0)["ipi"] is True  # the napping thread 0 gets an IPI
    assert row(vc, 1)["in_guest"] == 4
    with pytest.raises(ModelError, match="waits for vc->in_guest == 0"):
        vc.tail(1)
    vc.exit(2)  # HDEC
    assert vc.vcore["entry_exit_count"] == 0x203

    vc.wake(0)  # row "T0 wakes"
    assert vc.vcore["entry_exit_count"] == 0x303
    assert vc.vcore["napping_threads"] == 1  # bit 0 still set
    r0 = row(vc, 0)
    assert (r0["napping"], r0["hwthread_req"], r0["hwthread_state"]) == (0, 0, 2)
    vc.switch_out()
    assert vc.vcore["in_guest"] == 0 and row(vc, 0)["in_guest"] == 0
    assert row(vc, 0)["lpidr"] == vc.snapshot()["kvm"]["host_lpid"]

    vc.tail(1)  # row "tails"
    r1 = row(vc, 1)
    assert (r1["in_guest"], r1["kvm_vcpu"], r1["hwthread_state"], vc.vcore["nap_count"]) == (0, 0, 1, 1)
    vc.tail(2)
    assert vc.vcore["nap_count"] == 2

    vc.release()  # row "C side"
    assert vc.vcore["vcore_state_name"] == "VCORE_EXITING"
    assert all((r["hwthread_req"], r["kvm_vcpu"]) == (0, 0) for r in vc.paca_table())
    assert (row(vc, 1)["kvm_vcore"], row(vc, 1)["ptid"]) == (VCORE, 1)  # stale, as the seed leaves it
    vc.finish()
    assert vc.vcore["vcore_state_name"] == "VCORE_INACTIVE"
    assert vc.vcore["runnable"] == [2]  # vcpu 1 went to userspace with its hcall
    assert [v["state"] for v in vc.vcpus] == [2, 1]


def thread_of(vc: Vcore, vcpu_id: int) -> int:
    """The hardware thread whose PACA holds vcpu_id."""
    return next(r["thread"] for r in vc.paca_table() if r["vcpu_id"] == vcpu_id)


def full_run(variant: str) -> Vcore:
    """A run touching every event kind (threads looked up: prepatch places vcpus its own way)."""
    vc = Vcore(variant, threads=4, vcpus=[0, 1, 2, 3], strict=variant != "prepatch")
    vc.runnable(1, 2)
    vc.block(2)
    vc.runnable(2)
    vc.run_core(runner=1)
    vc.enter(0)
    vc.switch_in()
    vc.guest_entry(0)
    for v in (1, 2):
        t = thread_of(vc, v)
        if t != 0:
            vc.enter(t)
            vc.guest_entry(t)
    vc.runnable(3)  # late joiner
    t3 = thread_of(vc, 3)
    vc.enter(t3)
    vc.guest_entry(t3)
    vc.prod(2)
    assert not vc.cede(thread_of(vc, 2)).ceded_to_nap  # prodded: returns at once
    assert vc.cede(thread_of(vc, 1)).ceded_to_nap
    vc.wake(thread_of(vc, 1))  # DEC
    t2 = thread_of(vc, 2)
    vc.doorbell(1, t2)  # msgsndp: DPDES bit t2
    assert vc.paca_table()[t2]["doorbell"]
    assert vc.take_doorbell(t2) == 2  # the vcpu on that thread, whoever the doorbell meant
    vc.exit(t3, trap=0xC00)
    for r in vc.paca_table():
        if r["phase"] == "in_guest":
            vc.exit(r["thread"])
        elif r["phase"] in ("novcpu_nap", "cede_nap"):
            vc.wake(r["thread"])
    vc.switch_out()
    for r in vc.paca_table():
        if r["thread"] and r["phase"] in ("exiting", "too_late"):
            vc.tail(r["thread"])
    vc.release()
    vc.finish()
    for r in vc.paca_table():
        if r["phase"] == "spinning":
            vc.return_to_idle(r["thread"])
    return vc


@pytest.mark.parametrize("variant", ["seed", "modern", "prepatch"])
def test_every_event_kind_legal_somewhere(variant: str) -> None:
    vc = full_run(variant)
    names = {e.split("(")[0] for e in vc.trace}
    expected = {f.split("(")[0] for f in EVENT_FORMS}
    # Their own tests: they need a run that ends another way.
    expected -= {"exit_request", "vcore_blocked", "vcore_wake"}
    if variant != "modern":
        expected.discard("return_to_idle")
    assert names == expected
    assert vc.vcore["vcore_state_name"] == "VCORE_INACTIVE"


@pytest.mark.parametrize("variant", ["seed", "modern"])
def test_checker_accepts_every_model_step(variant: str) -> None:
    """The checker, fed the model's snapshots in order, finds nothing."""
    vc = Vcore(variant, threads=4, vcpus=[0, 1, 2, 3])
    checker = Checker(variant)
    original = vc.apply
    seen = []

    def apply_and_check(event: str):
        step = original(event)
        seen.append((event, checker.check(vc.snapshot())))
        return step

    vc.apply = apply_and_check  # type: ignore[method-assign]
    full_run_on(vc)
    assert len(seen) > 20
    assert [(e, v) for e, v in seen if v] == []


def full_run_on(vc: Vcore) -> None:
    for event in full_run(vc.variant).trace[4:]:  # skip the create_vcpu events
        vc.apply(event)


ILLEGAL_AT_START = [
    ("run_core(runner=0)", "not runnable"),
    ("enter(thread=1)", "not a grabbed thread"),
    ("enter(thread=0)", "thread 0 enters only"),
    ("switch_in", "only thread 0"),
    ("guest_entry(thread=0)", "switched the MMU"),
    ("guest_entry(thread=2)", "has not entered"),
    ("cede(thread=1)", "not running a guest vcpu"),
    ("wake(thread=0)", "not napping"),
    ("exit(thread=0)", "not in the guest"),
    ("switch_out", "has not started exiting"),
    ("tail(thread=1)", "not exiting"),
    ("tail(thread=0)", "switch_out"),
    ("release", "has not returned"),
    ("finish", "not been released"),
    ("return_to_idle(thread=1)", "not spinning"),
    ("start_thread(vcpu=0)", "start-up"),
    ("vcore_entry", "start-up"),
    ("doorbell(vcpu=0, thread=1)", "not executing in the guest"),
    ("take_doorbell(thread=1)", "not executing a vcpu"),
    ("fly(thread=1)", "unknown event name"),
    ("block(vcpu=0)", "not runnable"),
    ("runnable(vcpu=9)", "not in this vcore"),
    ("enter(thread=7)", "does not exist"),
    ("create_vcpu(vcpu=0)", "already exists"),
    ("create_vcpu(vcpu=5)", "one vcore"),
    ("prod(vcpu=6)", "not in this vcore"),
    ("create_vcpu(vcpu=4294967295)", "out of range"),
    ("runnable(vcpu=4294967295)", "not in this vcore"),
]


@pytest.mark.parametrize("variant", ["seed", "modern", "prepatch"])
@pytest.mark.parametrize("event,why", ILLEGAL_AT_START)
def test_illegal_event_is_a_clear_error_and_changes_nothing(variant: str, event: str, why: str) -> None:
    vc = Vcore(variant, threads=4, vcpus=[0, 1, 2, 3])
    before = vc.snapshot_json()
    with pytest.raises(ModelError) as info:
        vc.apply(event)
    assert why in str(info.value)
    assert info.value.reason in str(info.value)
    assert vc.snapshot_json() == before
    assert vc.trace == [f"create_vcpu(vcpu={i})" for i in range(4)]


def test_illegal_in_the_middle_of_a_run() -> None:
    vc = Vcore("seed", threads=4, vcpus=[0, 1, 2])
    vc.runnable(0, 1)
    vc.run_core(runner=0, start=False)
    with pytest.raises(ModelError, match="not been started"):
        vc.vcore_entry()
    vc.start_thread(0)
    with pytest.raises(ModelError, match="already started"):
        vc.start_thread(0)
    with pytest.raises(ModelError, match="already runnable"):
        vc.runnable(0)
    with pytest.raises(ModelError, match="holds vc->lock"):
        vc.runnable(2)
    vc.start_thread(1)
    vc.vcore_entry()
    vc.enter(1)
    with pytest.raises(ModelError, match="waits for vc->in_guest"):
        vc.guest_entry(1)
    with pytest.raises(ModelError, match="running"):
        vc.block(0)
    vc.enter(0)
    vc.switch_in()
    vc.guest_entry(0)
    vc.guest_entry(1)
    with pytest.raises(ModelError, match="has not started exiting"):
        vc.switch_out()
    vc.exit(0)
    with pytest.raises(ModelError, match="exits == entries"):
        vc.switch_out()
    vc.exit(1)
    vc.switch_out()
    with pytest.raises(ModelError, match="nap_count 0 < n_woken 1"):
        vc.release()


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        Vcore("p8")
    for n in (0, 9, -1, 1000, 2**70, "4"):
        with pytest.raises(ValueError, match="1, 2, 4 or 8"):
            Vcore("seed", threads=n)
    with pytest.raises(ModelError, match="bad event"):
        Vcore("seed").apply("fly(1)")
    with pytest.raises(ModelError, match="bad event"):
        Vcore("seed").enter(-1)
    with pytest.raises(ModelError, match="out of range"):
        Vcore("seed").enter(2**40)
    with pytest.raises(ValueError, match="cpu_base"):
        Vcore("seed", cpu_base=-4)
    with pytest.raises(ModelError, match="not thread 0"):
        Vcore("seed", threads=4, cpu_base=6)
    with pytest.raises(ModelError, match="no runnable vcpu"):
        Vcore("seed", vcpus=[0]).run_core()


def test_cede_to_exit_rule_and_prod() -> None:
    vc = Vcore("modern", threads=2, vcpus=[0, 1], strict=True)
    vc.runnable(0, 1)
    vc.run_core()
    vc.enter(0)
    vc.switch_in()
    vc.guest_entry(0)
    vc.enter(1)
    vc.guest_entry(1)
    assert vc.cede(1).ceded_to_nap
    assert vc.paca_table()[1]["napping"] == 1 and vc.vcpus[1]["ceded"] == 1
    step = vc.cede(0)  # every entered thread would nap: exit instead
    assert not step.ceded_to_nap
    assert vc.paca_table()[0]["phase"] == "exiting"
    assert vc.paca_table()[1]["ipi"]  # modern: IPI every entered thread but self
    vc.prod(1)
    assert vc.vcpus[1]["prodded"] == 1


@pytest.mark.parametrize("variant,sleeping", [("seed", 1), ("modern", 3)])
def test_all_ceded_vcore_sleeps(variant: str, sleeping: int) -> None:
    vc = Vcore(variant, threads=2, vcpus=[0, 1], strict=True)
    vc.runnable(1)
    vc.run_core()
    vc.enter(0)
    vc.switch_in()
    vc.guest_entry(0)
    vc.enter(1)
    vc.guest_entry(1)
    assert not vc.cede(1).ceded_to_nap  # thread 0 naps without a vcpu: the cede exits
    vc.wake(0)
    vc.switch_out()
    vc.tail(1)
    vc.release()
    vc.finish()
    assert vc.vcpus[1]["ceded"] == 1 and vc.vcore["runnable"] == [1]
    with pytest.raises(ModelError, match="vcore_blocked"):
        vc.run_core()
    vc.vcore_blocked()
    assert (vc.vcore["vcore_state"], vc.vcore["vcore_state_name"]) == (sleeping, "VCORE_SLEEPING")
    with pytest.raises(ModelError, match="not inactive"):
        vc.vcore_blocked()
    vc.vcore_wake(1)
    assert vc.vcore["vcore_state_name"] == "VCORE_INACTIVE" and vc.vcpus[1]["ceded"] == 0
    vc.run_core()
    assert vc.vcore["vcore_state_name"] == "VCORE_RUNNING"


def test_exit_request_thread_0_too_late_never_switches() -> None:
    vc = Vcore("modern", threads=2, vcpus=[0, 1], strict=True)
    vc.runnable(1)
    vc.run_core()
    vc.enter(1)
    vc.exit_request()
    assert vc.vcore["entry_exit_map"] == 0x10002
    vc.enter(0)
    assert vc.paca_table()[0]["phase"] == "too_late"
    with pytest.raises(ModelError, match="only thread 0"):
        vc.switch_in()
    vc.exit(1)  # no_switch_exit: the secondary saw the exit while waiting for in_guest
    vc.switch_out()
    assert vc.paca_table()[0]["lpidr"] == 0 and vc.vcore["in_guest"] == 0
    with pytest.raises(ModelError, match="only in the modern kernel"):
        Vcore("seed", vcpus=[0]).exit_request()


def test_doorbell_delivery_seed_vs_prepatch() -> None:
    """A doorbell to thread 0 waits for vcpu 0 on the seed; on prepatch vcpu 2
    sits on thread 0 and takes it (invariant 29)."""
    for variant in ("seed", "prepatch"):
        vc = Vcore(variant, threads=4, vcpus=[0, 1, 2, 3])
        vc.runnable(2)
        vc.run_core()
        vc.enter(0)
        vc.switch_in()
        vc.guest_entry(0)
        if variant == "seed":
            vc.enter(2)
            vc.guest_entry(2)
            vc.doorbell(2, 0)  # nobody on thread 0: pending until vcpu 0 runs
            assert vc.violations == [] and vc.paca_table()[0]["doorbell"]
            with pytest.raises(ModelError, match="not executing a vcpu"):
                vc.take_doorbell(0)
        else:
            vc.doorbell(2, 0)
            assert vc.take_doorbell(0) == 2  # vcpu 2 sits on thread 0
            assert any(v.invariant == 29 and "instead of vcpu 0" in v.message for v in vc.violations)


def test_doorbell_pending_across_an_exit_is_saved_and_restored() -> None:
    """book3s_hv_rmhandlers.S: thread 0 saves DPDES in vc->dpdes at the switch
    back to the host and loads it at the next switch-in; the vcpu takes the
    doorbell in its next run, exactly once."""
    vc = Vcore("modern", threads=2, vcpus=[0, 1], strict=True)
    vc.runnable(0, 1)
    vc.run_core()
    vc.enter(0)
    vc.switch_in()
    vc.guest_entry(0)
    vc.enter(1)
    vc.guest_entry(1)
    vc.doorbell(0, 1)
    vc.exit(1)
    vc.exit(0)
    vc.switch_out()
    assert vc.vcore["dpdes_saved"] == 0b10 and not vc.paca_table()[1]["doorbell"]
    vc.tail(1)
    vc.release()
    vc.finish()
    vc.run_core()
    vc.enter(0)
    vc.switch_in()
    assert vc.paca_table()[1]["doorbell"]
    vc.guest_entry(0)
    vc.enter(1)
    vc.guest_entry(1)
    assert vc.take_doorbell(1) == 1
    with pytest.raises(ModelError, match="no doorbell is pending"):
        vc.take_doorbell(1)


def test_doorbell_wakes_a_ceded_nap() -> None:
    vc = Vcore("seed", threads=4, vcpus=[0, 1, 2, 3], strict=True)
    vc.runnable(0, 1, 2)
    vc.run_core()
    vc.enter(0)
    vc.switch_in()
    vc.guest_entry(0)
    for t in (1, 2):
        vc.enter(t)
        vc.guest_entry(t)
    assert vc.cede(2).ceded_to_nap
    assert not vc.paca_table()[2]["ipi"]
    vc.doorbell(0, 2)
    assert vc.paca_table()[2]["ipi"]  # LPCR[PECEDP]: the doorbell wakes the nap
    vc.wake(2)
    assert vc.take_doorbell(2) == 2


def test_event_objects() -> None:
    e = Event("exit", 1, trap=0xC00)
    assert (e.name, e.label, e.args) == ("exit", "kvmhv_commence_exit", {"thread": 1, "trap": 0xC00})
    assert str(e) == "exit(thread=1, trap=0xc00)" and Event.parse(str(e)) == e
    assert EVENT_LABELS["cede"] == "kvmppc_h_cede"
    with pytest.raises(ValueError, match="missing argument"):
        Event("enter")
    vc = Vcore("seed", threads=2, vcpus=[0])
    step = vc.apply(Event("runnable", vcpu=0))
    assert step.event == "runnable(vcpu=0)" and step.stop == "kvmppc_run_vcpu"
    assert vc.events == [Event("create_vcpu", vcpu=0), Event("runnable", vcpu=0)]


def test_tables_come_from_rust() -> None:
    assert VARIANTS == ("seed", "modern", "prepatch")
    assert VCORE_STATE_NAMES["seed"][3] == "VCORE_RUNNING"
    assert VCORE_STATE_NAMES["modern"][3] == "VCORE_SLEEPING"
    assert THREAD_COUNTS == (1, 2, 4, 8)


def test_readers_name_states_from_the_models_tables() -> None:
    """ppc64's display names are the Rust table's: the vcore_state numbering of each
    variant, and hwthread_state 1 named IN_NAP before the rename, IN_IDLE after."""
    from pyvcore import _core, ppc64

    assert ppc64.VCORE_STATES["prepatch"] == ppc64.VCORE_STATES["seed"] != ppc64.VCORE_STATES["modern"]
    assert ppc64.VCORE_STATES["modern"][4] == "RUNNING" and ppc64.VCORE_STATES["seed"][2] == "STARTING"
    assert ppc64.HWTHREAD_STATES["seed"][1] == "IN_NAP" and ppc64.HWTHREAD_STATES["modern"][1] == "IN_IDLE"
    assert ppc64.GUEST_MODES[4] == "HOST_HV" and ppc64.VCPU_STATES[2] == "BUSY_IN_HOST"
    assert ppc64.NAPPING == {0: "-", 1: "CEDE", 2: "NOVCPU", 3: "UNSPLIT"}
    with pytest.raises(ValueError, match='no kernel names for "vcore_state"'):
        _core.kernel_names("vcore_state", "modern")
    with pytest.raises(ValueError, match="unknown variant"):
        _core.kernel_names("napping", "p9")


@pytest.mark.parametrize("threads", [0, 3, 5, 6, 7, 9, 16])
def test_only_real_thread_counts(threads: int) -> None:
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        Vcore("modern", threads=threads)


def test_vcore_numbering_is_the_kernels() -> None:
    """kvmppc_core_vcpu_create_hv: first_vcpuid = id & ~(threads - 1)."""
    vc = Vcore("modern", threads=4, vcpus=[6])
    assert vc.vcore["first_vcpuid"] == 4 and vc.vcpus[0]["ptid"] == 2
    with pytest.raises(ModelError, match="KVM_MAX_VCPU_IDS"):
        Vcore("modern", threads=4, vcpus=[MAX_VCPU_ID])


def test_strict_mode_raises_on_violation() -> None:
    vc = Vcore("prepatch", threads=4, vcpus=[0, 1, 2, 3], strict=True)
    vc.runnable(1)
    vc.run_core(runner=1, start=False)
    with pytest.raises(InvariantError) as info:
        vc.start_thread(1)  # vcpu 1 in thread 0's PACA
    assert info.value.violations[0].invariant == 29


def test_modern_specific_fields() -> None:
    vc = Vcore("modern", threads=4, vcpus=[0, 1])
    snap = vc.snapshot()
    assert "entry_exit_map" in snap["vcores"][0] and "entry_exit_count" not in snap["vcores"][0]
    assert "n_woken" not in snap["vcores"][0]
    vc.runnable(1)
    vc.run_core()
    assert vc.vcore["vcore_state_name"] == "VCORE_RUNNING" and vc.vcore["vcore_state"] == 4
    assert vc.vcpus[1]["thread_cpu"] == 1 and vc.vcpus[1]["cpu"] == 0
    assert (row(vc, 0)["kvm_vcore"], row(vc, 0)["kvm_vcpu"]) == (VCORE, 0)  # start_thread(NULL, vc)


def test_copy_replay_and_snapshot_json() -> None:
    vc = full_run("seed")
    again = Vcore("seed", threads=4)
    again.replay(vc.trace)
    assert again.snapshot() == vc.snapshot()
    other = vc.copy()
    other.runnable(0)
    assert other.trace != vc.trace
    line = vc.snapshot_json()
    assert json.loads(line)["variant"] == "seed"
    assert repr(vc).startswith("Vcore('seed', threads=4")
    assert "phase" in vc.format_table()


def test_exported_from_package() -> None:
    assert pyvcore.Vcore is Vcore and pyvcore.ModelError is ModelError
    assert callable(pyvcore.explore)


# -- property tests -----------------------------------------------------------

EVENT_NAMES = sorted({f.split("(")[0] for f in EVENT_FORMS})


@st.composite
def event_texts(draw: st.DrawFn) -> str:
    """Event texts, legal or not, plus some garbage."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.text(max_size=30))
    name = draw(st.sampled_from(EVENT_NAMES))
    args = draw(st.lists(st.integers(-3, 300), max_size=3))
    return f"{name}({', '.join(map(str, args))})" if args or draw(st.booleans()) else name


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    variant=st.sampled_from(["seed", "modern", "prepatch"]),
    threads=st.sampled_from(THREAD_COUNTS),
    events=st.lists(event_texts(), max_size=60),
)
def test_random_event_texts_never_crash(variant: str, threads: int, events: list) -> None:
    vc = Vcore(variant, threads=threads)
    for text in events:
        before = vc.snapshot_json()
        try:
            vc.apply(text)
        except ModelError as e:
            assert str(e).startswith("illegal event")
            assert vc.snapshot_json() == before


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    variant=st.sampled_from(["seed", "modern"]),
    threads=st.sampled_from(THREAD_COUNTS),
    choices=st.lists(st.integers(0, 10_000), min_size=1, max_size=150),
    data=st.data(),
)
def test_random_legal_walks_pass_the_checker(
    variant: str, threads: int, choices: list, data: st.DataObject
) -> None:
    """Every configuration the model accepts (1, 2, 4 or 8 threads, any
    vcore of the kernel's numbering, any subset of its vcpus) agrees with its
    checker: every state reached by legal events satisfies every invariant,
    in the model's own check and through pyvcore.Checker (transitions too)."""
    first = data.draw(st.integers(0, MAX_VCPU_ID // threads - 1)) * threads
    members = data.draw(st.lists(st.integers(0, threads - 1), min_size=1, max_size=threads, unique=True))
    vc = Vcore(variant, threads=threads, vcpus=[first + m for m in members])
    checker = Checker(variant)
    assert checker.check(vc.snapshot()) == []
    for c in choices:
        enabled = vc.enabled()
        if not enabled:
            break
        step = vc.apply(enabled[c % len(enabled)])
        assert step.violations == [], (vc.trace, step.violations)
        assert checker.check(vc.snapshot()) == [], vc.trace


@pytest.mark.parametrize("variant, idle", [("seed", "1 IN_NAP"), ("modern", "1 IN_IDLE")])
def test_format_table_names_numbered_fields_as_pv_paca_does(variant: str, idle: str) -> None:
    vc = pyvcore.Vcore(variant, threads=4, vcpus=[1, 2])
    vc.runnable(1, 2)
    vc.run_core()
    rows = vc.format_table().splitlines()
    assert "0 IN_KERNEL" in rows[1] and idle in rows[4]  # thread 3: no vcpu, still idle
    assert "0 NONE" in rows[1] and "0 -" in rows[1]  # in_guest, napping
