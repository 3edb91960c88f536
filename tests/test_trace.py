"""pyvcore trace without QEMU: the event log read back by `pyvcore check`, the plugin's
content key, the edge comparison with the model, and a run that cannot start."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pyvcore import _core
from pyvcore.cli import main
from pyvcore.lab.plugin_build import MANIFESTS, check_root, plugin_key, source_root
from pyvcore.lab.qemu import LabError
from pyvcore.trace import run_trace
from pyvcore.trace_edges import compare, kernel_edges, label, model_edges

HEADER = {"format": "pyvcore-events", "version": 1, "variant": "modern", "threads_per_core": 4}
VC = "0xc000000028186a00"


def ev(
    seq: int, field: str, old: object, new: object, cpu: int = 0, tb: int | None = None
) -> dict[str, object]:
    return {"seq": seq, "tb": tb or 1000 * seq, "cpu": cpu, "pc": "0xc000000000114000", "field": field,
            "old": old, "new": new}  # fmt: skip


def write_log(path: Path, events: list[dict[str, object]], header: dict[str, object] = HEADER) -> Path:
    path.write_text("\n".join(json.dumps(x) for x in [header, *events]) + "\n")
    return path


def vcore_found(seq: int) -> list[dict[str, object]]:
    """Thread 0's PACA points at a vcore: its fields come in with old = null, one seq (its
    timebase offset 0, as in the lab)."""
    fields = {"n_runnable": 1, "num_threads": 1, "entry_exit_map": 0, "napping_threads": 0,
              "first_vcpuid": 0, "pcpu": 0, "vcore_state": 0, "in_guest": 0,
              "tb_offset": "0x0", "tb_offset_applied": "0x0"}  # fmt: skip
    out = [ev(seq, "threads[0].kvm_hstate.kvm_vcore", "0x0", VC)]
    out += [ev(seq, f"vcores[{VC}].{k}", None, v) for k, v in fields.items()]
    return out


def test_check_reads_a_clean_event_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = [
        *vcore_found(1),
        ev(2, f"vcores[{VC}].vcore_state", 0, 4),
        ev(3, "threads[0].kvm_hstate.in_guest", 0, 4),
        ev(4, f"vcores[{VC}].entry_exit_map", 0, 1),
        ev(5, f"vcores[{VC}].entry_exit_map", 1, 0x101),
        ev(6, "threads[0].kvm_hstate.in_guest", 4, 0),
        ev(7, f"vcores[{VC}].vcore_state", 4, 5),
        ev(8, f"vcores[{VC}].vcore_state", 5, 0),
    ]
    # One thread per core: no secondary to grab, so this short run is complete.
    log = write_log(tmp_path / "events.jsonl", events, {**HEADER, "threads_per_core": 1})
    assert main(["check", str(log)]) == 0
    out = capsys.readouterr().out
    assert "0 violations" in out and f"{len(events)} events" in out
    assert not out.startswith("\n") and "\n\n" not in out, repr(out)  # no blank line for no violation


def test_check_names_the_store_that_breaks_a_step_invariant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [
        *vcore_found(1),
        ev(2, f"vcores[{VC}].vcore_state", 0, 4),
        ev(3, f"vcores[{VC}].vcore_state", 4, 5),
        ev(4, f"vcores[{VC}].vcore_state", 5, 4, cpu=0),  # EXITING -> RUNNING: invariant 19
    ]
    log = write_log(tmp_path / "events.jsonl", events)
    assert main(["check", str(log)]) == 1
    out = capsys.readouterr().out
    assert "seq 4" in out and "invariant 19" in out
    assert main(["check", "--json", str(log)]) == 1
    data = json.loads(capsys.readouterr().out)
    (v,) = [x for x in data["violations"] if x["invariant"] == 19]
    assert v["events"][-1]["field"] == f"vcores[{VC}].vcore_state"
    assert v["events"][-1]["new"] == 4


def test_check_refuses_a_bad_event_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_log(tmp_path / "bad.jsonl", [ev(1, "threads[0].kvm_hstate.bogus", 0, 1)])
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: " in err and "bogus" in err  # PATH:N, as every reader names a line
    empty = write_log(tmp_path / "empty.jsonl", [])
    assert main(["check", str(empty)]) == 2
    assert "no event" in capsys.readouterr().err
    future = write_log(tmp_path / "v2.jsonl", [], {**HEADER, "version": 2})
    assert main(["check", str(future)]) == 2


def test_replay_is_the_same_code_as_the_live_shadow() -> None:
    text = "\n".join(
        json.dumps(x) for x in [HEADER, *vcore_found(1), ev(2, "threads[1].kvm_hstate.in_guest", 0, 3)]
    )
    summary = json.loads(_core.replay_events(text))
    # NONE -> GUEST_HV in one store: the step graph (23), plus what the state itself breaks.
    step = [v for v in summary["violations"] if "in one step" in v["message"]]
    assert [v["invariant"] for v in step] == [23]
    assert step[0]["seq"] == 2
    assert summary["stats"]["events_per_field"]["kvm_hstate.in_guest"] == 1
    with pytest.raises(_core.EventLogError, match=r"^1: not a pyvcore-events header") as e:
        _core.replay_events('{"not": "a header"}')
    assert (e.value.line, e.value.column) == (1, None) and isinstance(e.value, ValueError)


def test_plugin_key_follows_the_sources(tmp_path: Path) -> None:
    root = source_root()
    inputs = [*MANIFESTS, *(p.relative_to(root).as_posix() for p in (root / "rust/plugin/src").rglob("*.rs"))]
    inputs.append("rust/core/src/shadow/checks.rs")
    copy = tmp_path / "src"
    for rel in inputs:
        dest = copy / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest)
    assert plugin_key(copy, inputs) == plugin_key(root, inputs) is not None
    lib = copy / "rust" / "core" / "src" / "shadow" / "checks.rs"
    lib.write_text(lib.read_text() + "\n// changed\n")
    assert plugin_key(copy, inputs) != plugin_key(root, inputs)
    with pytest.raises(LabError, match="rust/plugin"):
        check_root(tmp_path / "nothing")


def test_edges_compare_both_ways() -> None:
    model = model_edges("modern", 2, [0, 1], max_states=300)
    assert ("kvm_hstate.in_guest", "0", "4") in model
    assert ("vcore.vcore_state", "0", "4") in model
    summary = {
        "edges": [
            {"field": "kvm_hstate.in_guest", "old": "0", "new": "4", "pc": "0x1", "fn": "kvmppc_hv_entry"},
            {"field": "kvm_hstate.in_guest", "old": "0", "new": "3", "pc": "0x2", "fn": "weird"},
            {"field": "lpidr", "old": "0 (host)", "new": "guest", "pc": "0x3", "fn": None},
            {"field": "vcpu.trap", "old": "0", "new": "3072", "pc": "0x4", "fn": "kvmppc_hv_entry"},
        ]
    }
    rows = {(r["field"], r["old"], r["new"]): r for r in compare(kernel_edges(summary), model)}
    assert rows[("kvm_hstate.in_guest", "0", "4")]["where"] == "both"
    assert rows[("kvm_hstate.in_guest", "0", "3")]["where"] == "kernel only"
    assert rows[("vcore.vcore_state", "0", "4")]["where"] == "model only"
    assert not any(k[0] == "lpidr" for k in rows), "registers are not modelled as edges"
    assert not any(k[0] == "vcpu.trap" for k in rows), "traps are watched for invariant 45 only"
    assert label("kvm_hstate.kvm_vcore", "0xc000000028186a00") == "ptr"
    assert label("vcore.entry_exit_map", 0x103) == "0x103"


def test_a_trace_that_cannot_start_is_an_error_not_a_crash() -> None:
    result = run_trace("no-such-scenario", baseline=False)
    assert result.verdict == "error" and result.exit_code == 2
    assert result.error


def test_prepatch_is_refuted_by_a_vcpu_placed_past_n_runnable() -> None:
    from pyvcore.trace_edges import refute_prepatch

    c1 = "0xc0000000042e2000"
    lines = [
        json.dumps(e)
        for e in [
            *vcore_found(1),  # n_runnable 1: prepatch would use thread 0 only
            ev(2, "threads[1].kvm_hstate.kvm_vcpu", "0x0", c1),
            ev(2, f"vcpus[{c1}].vcore", None, VC),
            ev(2, f"vcpus[{c1}].vcpu_id", None, 1),
        ]
    ]
    found = refute_prepatch(lines)
    assert found is not None
    assert (found["seq"], found["thread"], found["n_runnable"], found["vcpu_id"]) == (2, 1, 1, 1)
    # vcpu 0 on thread 0 is what prepatch would do too: nothing refuted.
    assert refute_prepatch([line.replace("threads[1]", "threads[0]") for line in lines]) is None


def test_a_deferred_violation_in_the_log_is_deferred_again(tmp_path: Path) -> None:
    """A thread in KVM with no vcore (23) while memory already held the vcore pointer
    (the `behind` line the live plugin writes): the replay defers it as the live run did,
    and the pointer's late store settles it.  Without the line, 23 is reported."""
    # kvmppc_run_core grabs every secondary (on_primary_thread) before
    # kvmppc_start_thread stores thread 0's kvm_vcore (book3s_hv.c)
    grab = [ev(1, f"threads[{t}].kvm_hstate.hwthread_req", 0, 1) for t in (1, 2, 3)]
    thread1_in = [
        # kvmppc_start_thread stores the PACA ptid before kvm_vcore (book3s_hv.c)
        ev(2, "threads[1].kvm_hstate.ptid", 0, 1),
        ev(3, "threads[1].kvm_hstate.hwthread_state", 1, 2, cpu=1),
        ev(4, "threads[1].kvm_hstate.in_guest", 0, 4, cpu=1),
    ]
    behind = [{"seq": 4, "behind": ["threads[1].kvm_hstate.kvm_vcore"]}]
    late = [ev(5, "threads[1].kvm_hstate.kvm_vcore", "0x0", VC)]
    settled = write_log(tmp_path / "settled.jsonl", grab + vcore_found(1) + thread1_in + behind + late)
    summary = json.loads(_core.replay_events(settled.read_text()))
    assert [v["invariant"] for v in summary["violations"]] == []
    assert summary["stats"]["unsettled"] > 0
    raw = write_log(tmp_path / "raw.jsonl", grab + vcore_found(1) + thread1_in + late)
    summary = json.loads(_core.replay_events(raw.read_text()))
    assert 23 in [v["invariant"] for v in summary["violations"]]
    # The timeline reads the same log (the behind line is for the replay only).
    assert main(["timeline", str(settled), "-o", str(tmp_path / "t.json")]) == 0


def test_a_release_seen_before_a_late_kvm_vcore_clear_is_deferred(tmp_path: Path) -> None:
    """Invariant 17 in EXITING is judged while a secondary still points at the
    vcore (kvmppc_wait_for_nap has not returned).  Thread 0 polls kvm_vcore in
    memory, so it can release thread 1 before thread 2's callback for its
    kvm_vcore = NULL arrives: the replay defers the violation on that field, as
    the live run did, and the late store settles it.  Without the behind line,
    17 is reported."""
    grab = [ev(1, f"threads[{t}].kvm_hstate.hwthread_req", 0, 1) for t in (1, 2, 3)]
    run = [
        ev(2, "threads[2].kvm_hstate.ptid", 0, 2),  # kvmppc_start_thread: ptid, then kvm_vcore
        ev(2, "threads[2].kvm_hstate.kvm_vcore", "0x0", VC),
        ev(3, f"vcores[{VC}].vcore_state", 0, 4),
        ev(4, f"vcores[{VC}].vcore_state", 4, 5),  # after __kvmppc_vcore_entry
        ev(5, "threads[0].kvm_hstate.kvm_vcore", VC, "0x0"),  # kvmppc_release_hwthread(pcpu)
        ev(6, "threads[1].kvm_hstate.hwthread_req", 1, 0),  # kvmppc_release_hwthread(pcpu + 1)
    ]
    behind = [{"seq": 6, "behind": ["threads[2].kvm_hstate.kvm_vcore"]}]
    late = [ev(7, "threads[2].kvm_hstate.kvm_vcore", VC, "0x0", cpu=2)]
    settled = write_log(tmp_path / "settled.jsonl", grab + vcore_found(1) + run + behind + late)
    summary = json.loads(_core.replay_events(settled.read_text()))
    assert [v["invariant"] for v in summary["violations"]] == []
    raw = write_log(tmp_path / "raw.jsonl", grab + vcore_found(1) + run + late)
    summary = json.loads(_core.replay_events(raw.read_text()))
    assert [v["invariant"] for v in summary["violations"]] == [17]
    assert summary["violations"][0]["fields"]["threads[2].kvm_hstate.kvm_vcore"] == VC


def test_edges_of_two_vcores_compare_the_first_vcore() -> None:
    """The model holds one vcore: `--edges` on two-vcores walks vcpus 0..3, not 0..7."""
    from pyvcore.trace import TraceResult
    from pyvcore.trace_report import format_result

    summary = {"stats": {"events": 1, "violations": 0}, "variant": "modern", "edges": [
        {"field": "kvm_hstate.in_guest", "old": "0", "new": "4", "pc": "0x1", "fn": "kvmppc_hv_entry", "count": 1}
    ]}  # fmt: skip
    text = format_result(TraceResult("two-vcores", "patched", "all", "clean", summary=summary), edges=True)
    assert "edges, two-vcores" in text
    assert "kvmppc_hv_entry" in text


def test_a_trace_that_decoded_nothing_is_not_judged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A plugin that never saw a store to the watched state (e.g. paca_ptrs never found)
    must not read as clean."""
    import pyvcore.trace as trace
    from pyvcore.lab import plugin_build

    monkeypatch.setattr(plugin_build, "ensure_plugin", lambda **kw: tmp_path / "plugin.so")
    monkeypatch.setattr(trace, "_preflight", lambda scenario, **kw: "vmlinux")
    monkeypatch.setattr(trace, "_boot", lambda scenario, **kw: trace.LabRun(boot_s=1.0))
    nothing = {"stats": {"stores_checked": 0, "events": 0, "violations": 0}, "edges": []}
    monkeypatch.setattr(trace, "_read_summary", lambda path: dict(nothing))
    monkeypatch.setattr(trace, "_refute_prepatch", lambda log: None)
    r = run_trace("all", baseline=False, out=tmp_path / "ev.jsonl")
    assert (r.verdict, r.exit_code) == ("error", 2)
    assert "judged nothing" in (r.error or "")


def novcpu_run(msgsnd: bool, trap: int) -> list[dict[str, object]]:
    """Two threads: thread 0 has no vcpu (kvmppc_primary_no_guest naps with
    NAPPING_NOVCPU), thread 1 runs vcpu 1.  Thread 0 wakes, leaves through
    kvm_novcpu_exit with ``trap`` (kvmhv_commence_exit's argument) as the first
    exiter, and sends thread 1 its msgsnd or not."""
    vcpu = "0xc0000000042e2000"
    # kvmppc_run_core grabs thread 1 (on_primary_thread) before any
    # kvmppc_start_thread stores a kvm_vcore (book3s_hv.c).
    events = [ev(1, "threads[1].kvm_hstate.hwthread_req", 0, 1), *vcore_found(1)]
    steps: list[tuple[str, object, object, int]] = [
        ("threads[1].kvm_hstate.hwthread_state", 1, 0, 1),
        ("threads[1].kvm_hstate.hwthread_state", 0, 2, 1),
        ("threads[1].kvm_hstate.ptid", 0, 1, 0),
        ("threads[1].kvm_hstate.kvm_vcpu", "0x0", vcpu, 0),
        ("threads[1].kvm_hstate.kvm_vcore", "0x0", VC, 0),
        (f"vcores[{VC}].vcore_state", 0, 4, 0),
        ("threads[0].kvm_hstate.in_guest", 0, 4, 0),
        (f"vcores[{VC}].entry_exit_map", 0, 1, 0),
        ("threads[0].mtspr_lpidr", "0x0", "0x1", 0),
        (f"vcores[{VC}].in_guest", 0, 1, 0),
        (f"vcores[{VC}].napping_threads", 0, 1, 0),
        ("threads[0].kvm_hstate.napping", 0, 2, 0),
        ("threads[1].kvm_hstate.in_guest", 0, 4, 1),
        (f"vcores[{VC}].entry_exit_map", 1, 3, 1),
        ("threads[1].lpidr", None, "0x1", 1),
        ("threads[1].kvm_hstate.in_guest", 4, 2, 1),
        ("threads[0].kvm_hstate.napping", 2, 0, 0),  # kvm_novcpu_wakeup
        (f"vcores[{VC}].napping_threads", 1, 0, 0),
        ("threads[0].kvmhv_commence_exit", None, trap, 0),  # kvm_novcpu_exit's call
        (f"vcores[{VC}].entry_exit_map", 3, 0x103, 0),
        *([("threads[0].msgsnd", None, 1, 0)] if msgsnd else []),
        ("threads[1].kvm_hstate.in_guest", 2, 4, 1),
        (f"vcores[{VC}].entry_exit_map", 0x103, 0x303, 1),
        ("threads[0].mtspr_lpidr", "0x1", "0x0", 0),
        (f"vcores[{VC}].in_guest", 1, 0, 0),  # thread 0's next watched store
    ]
    for k, (field, old, new, cpu) in enumerate(steps):
        events.append(ev(2 + k, field, old, new, cpu=cpu))
    return events


@pytest.mark.parametrize(
    ("msgsnd", "trap", "code"),
    [(True, 0, 0), (False, 0, 1), (False, 0x500, 1), (False, 0x980, 0)],
    ids=["ipi-sent", "decrementer-wake-no-ipi", "external-wake-no-ipi", "hdec-owes-none"],
)
def test_check_judges_the_exit_ipi_of_a_thread_without_a_vcpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], msgsnd: bool, trap: int, code: int
) -> None:
    log = write_log(tmp_path / "novcpu.jsonl", novcpu_run(msgsnd, trap), {**HEADER, "threads_per_core": 2})
    assert main(["check", str(log)]) == code
    out = capsys.readouterr().out
    owed = 0 if trap == 0x980 else 1
    assert f"invariant 45: {owed} first exits owed the exit IPI and were judged ({owed} by a thread" in out
    if code:
        assert f"invariant 45: thread 0 began the exit of vcore {VC} first" in out
        assert f"trap {trap:#x}" in out and "thread(s) 1 " in out
    else:
        assert "0 violations" in out


def test_a_boot_that_hangs_in_kvm_is_judged_on_its_trace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A kvm-hv that hangs the host (the vmm stage stalls) is neither retried nor an error:
    QEMU is quit and the trace up to the hang is the verdict."""
    import pyvcore.lab as lab_pkg
    import pyvcore.trace as trace
    from pyvcore.lab import plugin_build

    made: list[dict[str, Any]] = []

    class HungLab:
        def __init__(self, scenario: str, **kw: Any) -> None:
            made.append(kw)
            self.boot_seconds = None
            self.hung = {"stage": "vmm", "reason": "no console output for 50 s", "attempt": 1}
            self.stopped = False

        def __enter__(self) -> HungLab:
            return self

        def __exit__(self, *exc: object) -> None:
            self.stop()

        def wait_for(self, pattern: str, timeout: float) -> None:
            raise AssertionError("a hung guest is not waited for")

        def status(self) -> dict[str, Any]:
            return {}

        def reports(self) -> list[Any]:
            return []

        def stop(self) -> None:
            self.stopped = True

    monkeypatch.setattr(plugin_build, "ensure_plugin", lambda **kw: tmp_path / "plugin.so")
    monkeypatch.setattr(trace, "_preflight", lambda scenario, **kw: "vmlinux")
    monkeypatch.setattr(lab_pkg, "Lab", HungLab)
    seen = {"stats": {"stores_checked": 9, "events": 9, "violations": 1}, "edges": [],
            "violations": [{"invariant": 12, "seq": 7, "tb": 1, "cpu": 1, "pc": "0x1", "field": "f",
                            "message": "m", "events": []}]}  # fmt: skip
    monkeypatch.setattr(trace, "_read_summary", lambda path: json.loads(json.dumps(seen)))
    monkeypatch.setattr(trace, "_refute_prepatch", lambda log: None)
    r = run_trace("all", baseline=False, out=tmp_path / "ev.jsonl")
    assert made[0]["judge_hang"] is True
    assert (r.verdict, r.exit_code) == ("violations", 1)
    assert r.summary["hung"]["stage"] == "vmm"
    from pyvcore.trace_report import format_result

    assert "boot hung in the vmm stage" in format_result(r)


def test_trace_progress_says_what_happens_in_the_users_terms(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pyvcore trace` boots the lab (a fake QEMU that prints a boot's console lines) with
    the plugin: its progress names the plugin and what it checks, never gdb (the user
    asked for a trace, not a debugger)."""
    import sys

    from test_lab_fake_boot import FAKE_QEMU

    import pyvcore.lab as lab_pkg
    import pyvcore.trace as trace
    from pyvcore.lab import plugin_build
    from pyvcore.lab.inputs import BootKernel
    from pyvcore.lab.qemu import acquire_lock

    fake = tmp_path / "qemu-system-ppc64"
    fake.write_text(FAKE_QEMU)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(lab_pkg, "acquire_lock", lambda wait=0.0: acquire_lock(tmp_path / "lock", wait))
    monkeypatch.setattr(lab_pkg, "qemu_command", lambda *a, **k: [sys.executable, str(fake), "ready"])
    real_lab = lab_pkg.Lab

    class FakeLab(real_lab):  # type: ignore[misc,valid-type]
        """The real Lab, booting the fake QEMU (nothing to prepare)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._prepared = True
            self.qemu_binary = self.vmlinux = self.initrd = fake
            self.boot_kernel = BootKernel(vmlinux=fake, modules={}, busybox=fake, label="fake")

    monkeypatch.setattr(lab_pkg, "Lab", FakeLab)
    monkeypatch.setattr(plugin_build, "ensure_plugin", lambda **kw: tmp_path / "plugin.so")
    monkeypatch.setattr(trace, "_preflight", lambda scenario, **kw: "vmlinux")
    monkeypatch.setattr(
        trace, "_read_summary", lambda path: {"stats": {"stores_checked": 1, "violations": 0}}
    )
    monkeypatch.setattr(trace, "_refute_prepatch", lambda log: None)
    code = main(["trace", "--scenario", "all", "--seconds", "1", "--out", str(tmp_path / "ev.jsonl")])
    progress = capsys.readouterr().err.splitlines()
    assert code == 0, progress
    assert all(line.startswith("pyvcore trace: ") for line in progress), progress
    assert not [line for line in progress if "gdb" in line], progress
    said = "\n".join(progress)
    assert (
        "booting the lab without the plugin, to time the run it slows down: scenario all, patched QEMU"
        in said
    )
    assert "booting the lab with the plugin checking every store of all code: scenario all" in said
    ready = [line for line in progress if " ready in " in line]
    assert len(ready) == 2 and ": console " in ready[0] and ": the QEMU plugin loaded, console " in ready[1]
    assert "the guest runs scenario all for 1 s, the plugin checking every store ..." in said
    # A lab booted for gdb (`lab up`, `diff`) still names its gdbstub.
    said_by_lab: list[str] = []
    lab = FakeLab("all", 4, log=said_by_lab.append)
    with lab:
        address = lab.gdb_address
    assert f"ready in {lab.boot_seconds:.1f} s: gdb {address}, console " in said_by_lab[-1]


@pytest.mark.parametrize("logged", [False, True])
def test_a_failed_trace_leaves_no_empty_directory_and_names_a_log_it_keeps(
    logged: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A boot that fails removes the run's `pyvcore-trace-*` directory, unless the plugin
    had logged events: then the log stays and the one-line error names it (no QEMU: faked)."""
    import tempfile

    import pyvcore.trace as trace
    from pyvcore.lab import plugin_build

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(plugin_build, "ensure_plugin", lambda **kw: tmp_path / "plugin.so")
    monkeypatch.setattr(trace, "_preflight", lambda scenario, **kw: "vmlinux")

    def failing_boot(scenario: str, **kw: object) -> trace.LabRun:
        plugin = kw["plugin"]
        assert isinstance(plugin, tuple)
        if logged:
            Path(plugin[1]["log"]).write_text('{"format": "pyvcore-events"}\n')
        raise RuntimeError("QEMU exited during boot")

    monkeypatch.setattr(trace, "_boot", failing_boot)
    r = run_trace("all", baseline=False)
    assert (r.verdict, r.exit_code) == ("error", 2)
    left = list(tmp_path.glob("pyvcore-trace-*"))
    if logged:
        assert len(left) == 1 and r.log == str(left[0] / "events.jsonl")
        assert r.error == f"QEMU exited during boot (the event log so far is kept: {r.log})"
    else:
        assert left == [] and r.error == "QEMU exited during boot" and r.log is None


def test_exit_ipi_summary_says_why_an_exit_was_not_judged() -> None:
    """Invariant 45's line counts the first exits judged, and says an exit whose vcpu trap
    was never seen stored (e.g. stored before the log began) was not judged; no record, no line."""
    from pyvcore.trace_report import format_exit_ipi

    stats = {"owed": 12, "owed_novcpu": 3, "hdec": 1840, "first_exits": 1853, "unknown_trap": 1}
    line = format_exit_ipi({"exit_ipi": stats})
    assert line is not None
    assert "12 first exits owed the exit IPI" in line and "1,853 first exits in all" in line
    assert "1 not judged (the exiting vcpu's trap was not stored while the plugin watched" in line
    assert "not judged" not in (format_exit_ipi({"exit_ipi": dict(stats, unknown_trap=0)}) or "")
    assert format_exit_ipi({}) is None


AHEAD = 1 << 40  # about 36 minutes of 512 MHz ticks: a migrated guest's timebase offset


def grab_across_the_offset_switch(held_s: float, off: int | None) -> list[dict[str, object]]:
    """Thread 1 is grabbed and still IN_KERNEL when thread 0 enters the guest and adds the
    vcore's timebase offset ``off`` (kvmppc_hv_entry: tb_offset_applied, TBU40, then
    in_guest); thread 0's events ``held_s`` of host time later read the guest's timebase.
    ``off`` None: a log from a plugin that did not watch the offset."""
    fields: dict[str, object] = {"n_runnable": 1, "num_threads": 1, "entry_exit_map": 0,
                                 "napping_threads": 0, "first_vcpuid": 0, "pcpu": 0, "vcore_state": 0,
                                 "in_guest": 0}  # fmt: skip
    if off is not None:
        fields |= {"tb_offset": hex(off), "tb_offset_applied": "0x0"}
    out: list[dict[str, object]] = []
    host, seq = 1_000_000, 0

    def at(field: str, old: object, new: object, cpu: int = 0, applied: int = 0) -> None:
        nonlocal host, seq
        host, seq = host + 1000, seq + 1
        out.append(ev(seq, field, old, new, cpu=cpu, tb=(host + applied) % 2**64))

    at("threads[1].kvm_hstate.hwthread_state", None, 1, cpu=1)  # IN_IDLE
    at("threads[1].kvm_hstate.hwthread_req", 0, 1)  # kvmppc_grab_hwthread
    at("threads[1].kvm_hstate.hwthread_state", 1, 0, cpu=1)  # IN_KERNEL: woken
    host, seq = host + 1000, seq + 1
    out.append(ev(seq, "threads[0].kvm_hstate.kvm_vcore", "0x0", VC, tb=host))
    out += [ev(seq, f"vcores[{VC}].{k}", None, v, tb=host) for k, v in fields.items()]
    at(f"vcores[{VC}].vcore_state", 0, 4)
    at("threads[0].kvm_hstate.in_guest", 0, 4)
    at(f"vcores[{VC}].entry_exit_map", 0, 1)
    applied = off or AHEAD  # what the TBU40 write adds, logged or not
    if off is not None:
        at(f"vcores[{VC}].tb_offset_applied", "0x0", hex(off))
    at(f"vcores[{VC}].in_guest", 0, 1, applied=applied)
    for k in range(4):
        host += int(held_s / 4 * 512_000_000)
        at("threads[0].msgsndp", None if k == 0 else 1, 1, applied=applied)
    at("threads[1].kvm_hstate.hwthread_state", 0, 2, cpu=1, applied=applied)  # IN_KVM
    return out


@pytest.mark.parametrize("off", [AHEAD, 2**64 - AHEAD], ids=["guest ahead", "guest behind"])
def test_check_times_41_43_on_the_host_timebase(
    off: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A grab spanning thread 0's switch of a large timebase offset is no alarm (the raw TBs
    are 36 minutes apart, or go backwards), and a real overrun inside the guest's window is
    still flagged, measured in host time."""
    header = {**HEADER, "threads_per_core": 2, "tb_freq": 512_000_000}
    ok = write_log(tmp_path / "ok.jsonl", grab_across_the_offset_switch(0.05, off), header)
    assert main(["check", str(ok)]) == 0
    out = capsys.readouterr().out
    assert "0 violations" in out and "invariant 41" not in out
    # The one event between the store to tb_offset_applied and in_guest is not placed.
    assert "not judged at 1 event where" in out and "inside its switch of the timebase offset" in out
    bad = write_log(tmp_path / "bad.jsonl", grab_across_the_offset_switch(3.0, off), header)
    assert main(["check", "--json", str(bad)]) == 1
    (v,) = json.loads(capsys.readouterr().out)["violations"]
    assert v["invariant"] == 41 and "after 1500.0 ms" in v["message"], v["message"]


def test_check_of_a_log_without_the_offset_says_41_43_are_not_judged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log from a plugin that did not watch the vcore's timebase offset still replays;
    inside a run its events' timebase is not known on the host's, so the overrun is not
    guessed at, and the report says what was not judged and why."""
    header = {**HEADER, "threads_per_core": 2, "tb_freq": 512_000_000}
    old = write_log(tmp_path / "old.jsonl", grab_across_the_offset_switch(3.0, None), header)
    assert main(["check", str(old)]) == 0
    out = capsys.readouterr().out
    assert "0 violations" in out
    assert "invariants 41-43: not judged at 9 events where a state they time was held" in out
    assert "the event log does not carry the timebase offset of thread 0's vcore" in out
