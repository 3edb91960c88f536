"""`pyvcore diff` without a lab: the offline half (re-check, table, JSON, exit codes).

The trace below is four consecutive pv-watch records from a real run of the
``all`` scenario on patched QEMU (6.12 kernel): one entry stop and three stops
in kvmhv_switch_to_host while the four threads exit one after the other.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pyvcore import diff
from pyvcore.diff import LiveRun, format_table, stop_kind, summarize

# Recorded by `pyvcore diff --scenario all` (pv-watch --log), 2026-11-25.
REAL_TRACE = r"""
{"variant":"modern","threads_per_core":4,"stop":"kvmppc_hv_entry@cpu0","threads":[{"cpu":0,"hw_cpu_id":8,"kvm_hstate":{"in_guest":0,"napping":0,"hwthread_req":0,"hwthread_state":2,"ptid":0,"kvm_vcpu":13835058055320740864,"kvm_vcore":13835058055328945920},"lpidr":0,"sdr1":2080374791},{"cpu":1,"hw_cpu_id":9,"kvm_hstate":{"in_guest":4,"napping":0,"hwthread_req":1,"hwthread_state":2,"ptid":1,"kvm_vcpu":13835058055320731648,"kvm_vcore":13835058055328945920},"lpidr":0,"sdr1":2080374791},{"cpu":2,"hw_cpu_id":10,"kvm_hstate":{"in_guest":4,"napping":0,"hwthread_req":1,"hwthread_state":2,"ptid":2,"kvm_vcpu":13835058055320750080,"kvm_vcore":13835058055328945920},"lpidr":0,"sdr1":2080374791},{"cpu":3,"hw_cpu_id":11,"kvm_hstate":{"in_guest":4,"napping":0,"hwthread_req":1,"hwthread_state":2,"ptid":3,"kvm_vcpu":13835058055955096576,"kvm_vcore":13835058055328945920},"lpidr":0,"sdr1":2080374791}],"vcores":[{"addr":13835058055328945920,"n_runnable":4,"num_threads":4,"napping_threads":0,"first_vcpuid":0,"pcpu":0,"vcore_state":4,"in_guest":0,"entry_exit_map":14,"runner":13835058055320731648,"kvm":13835058055354286080}],"vcpus":[{"addr":13835058055320740864,"vcpu_id":0,"vcore":13835058055328945920,"ptid":0,"cpu":0,"thread_cpu":0,"state":1,"ceded":0},{"addr":13835058055320731648,"vcpu_id":1,"vcore":13835058055328945920,"ptid":1,"cpu":0,"thread_cpu":1,"state":1,"ceded":0},{"addr":13835058055320750080,"vcpu_id":2,"vcore":13835058055328945920,"ptid":2,"cpu":0,"thread_cpu":2,"state":1,"ceded":0},{"addr":13835058055955096576,"vcpu_id":3,"vcore":13835058055328945920,"ptid":3,"cpu":0,"thread_cpu":3,"state":1,"ceded":0}],"kvm":{"lpid":1,"sdr1":1962934278,"host_lpid":0,"host_sdr1":2080374791},"violations":[]}
{"variant":"modern","threads_per_core":4,"stop":"kvmhv_switch_to_host@cpu1","threads":[{"cpu":0,"hw_cpu_id":8,"kvm_hstate":{"in_guest":4,"napping":0,"hwthread_req":0,"hwthread_state":2,"ptid":0,"kvm_vcpu":13835058055320740864,"kvm_vcore":13835058055328945920},"lpidr":1,"sdr1":1962934278},{"cpu":1,"hw_cpu_id":9,"kvm_hstate":{"in_guest":4,"napping":0,"hwthread_req":1,"hwthread_state":2,"ptid":1,"kvm_vcpu":13835058055320731648,"kvm_vcore":13835058055328945920},"lpidr":1,"sdr1":1962934278},{"cpu":2,"hw_cpu_id":10,"kvm_hstate":{"in_guest":4,"napping":0,"hwthread_req":1,"hwthread_state":2,"ptid":2,"kvm_vcpu":13835058055320750080,"kvm_vcore":13835058055328945920},"lpidr":1,"sdr1":1962934278},{"cpu":3,"hw_cpu_id":11,"kvm_hstate":{"in_guest":4,"napping":0,"hwthread_req":1,"hwthread_state":2,"ptid":3,"kvm_vcpu":13835058055955096576,"kvm_vcore":13835058055328945920},"lpidr":1,"sdr1":1962934278}],"vcores":[{"addr":13835058055328945920,"n_runnable":4,"num_threads":4,"napping_threads":0,"first_vcpuid":0,"pcpu":0,"vcore_state":4,"in_guest":1,"entry_exit_map":1551,"runner":13835058055320731648,"kvm":13835058055354286080}],"vcpus":[{"addr":13835058055320740864,"vcpu_id":0,"vcore":13835058055328945920,"ptid":0,"cpu":0,"thread_cpu":0,"state":1,"ceded":0},{"addr":13835058055320731648,"vcpu_id":1,"vcore":13835058055328945920,"ptid":1,"cpu":-1,"thread_cpu":-1,"state":1,"ceded":0},{"addr":13835058055320750080,"vcpu_id":2,"vcore":13835058055328945920,"ptid":2,"cpu":-1,"thread_cpu":-1,"state":1,"ceded":0},{"addr":13835058055955096576,"vcpu_id":3,"vcore":13835058055328945920,"ptid":3,"cpu":0,"thread_cpu":3,"state":1,"ceded":0}],"kvm":{"lpid":1,"sdr1":1962934278,"host_lpid":0,"host_sdr1":2080374791},"violations":[]}
{"variant":"modern","threads_per_core":4,"stop":"kvmhv_switch_to_host@cpu2","threads":[{"cpu":0,"hw_cpu_id":8,"kvm_hstate":{"in_guest":4,"napping":0,"hwthread_req":0,"hwthread_state":2,"ptid":0,"kvm_vcpu":13835058055320740864,"kvm_vcore":13835058055328945920},"lpidr":1,"sdr1":1962934278},{"cpu":1,"hw_cpu_id":9,"kvm_hstate":{"in_guest":4,"napping":0,"hwthread_req":1,"hwthread_state":2,"ptid":1,"kvm_vcpu":13835058055320731648,"kvm_vcore":13835058055328945920},"lpidr":1,"sdr1":1962934278},{"cpu":2,"hw_cpu_id":10,"kvm_hstate":{"in_guest":4,"napping":0,"hwthread_req":1,"hwthread_state":2,"ptid":2,"kvm_vcpu":13835058055320750080,"kvm_vcore":13835058055328945920},"lpidr":1,"sdr1":1962934278},{"cpu":3,"hw_cpu_id":11,"kvm_hstate":{"in_guest":4,"napping":0,"hwthread_req":1,"hwthread_state":2,"ptid":3,"kvm_vcpu":13835058055955096576,"kvm_vcore":13835058055328945920},"lpidr":1,"sdr1":1962934278}],"vcores":[{"addr":13835058055328945920,"n_runnable":4,"num_threads":4,"napping_threads":0,"first_vcpuid":0,"pcpu":0,"vcore_state":4,"in_guest":1,"entry_exit_map":1807,"runner":13835058055320731648,"kvm":13835058055354286080}],"vcpus":[{"addr":13835058055320740864,"vcpu_id":0,"vcore":13835058055328945920,"ptid":0,"cpu":-1,"thread_cpu":-1,"state":1,"ceded":0},{"addr":13835058055320731648,"vcpu_id":1,"vcore":13835058055328945920,"ptid":1,"cpu":-1,"thread_cpu":-1,"state":1,"ceded":0},{"addr":13835058055320750080,"vcpu_id":2,"vcore":13835058055328945920,"ptid":2,"cpu":-1,"thread_cpu":-1,"state":1,"ceded":0},{"addr":13835058055955096576,"vcpu_id":3,"vcore":13835058055328945920,"ptid":3,"cpu":0,"thread_cpu":3,"state":1,"ceded":0}],"kvm":{"lpid":1,"sdr1":1962934278,"host_lpid":0,"host_sdr1":2080374791},"violations":[]}
{"variant":"modern","threads_per_core":4,"stop":"kvmhv_switch_to_host@cpu0","threads":[{"cpu":0,"hw_cpu_id":8,"kvm_hstate":{"in_guest":4,"napping":0,"hwthread_req":0,"hwthread_state":2,"ptid":0,"kvm_vcpu":13835058055320740864,"kvm_vcore":13835058055328945920},"lpidr":1,"sdr1":1962934278},{"cpu":1,"hw_cpu_id":9,"kvm_hstate":{"in_guest":4,"napping":0,"hwthread_req":1,"hwthread_state":2,"ptid":1,"kvm_vcpu":13835058055320731648,"kvm_vcore":13835058055328945920},"lpidr":1,"sdr1":1962934278},{"cpu":2,"hw_cpu_id":10,"kvm_hstate":{"in_guest":4,"napping":0,"hwthread_req":1,"hwthread_state":2,"ptid":2,"kvm_vcpu":13835058055320750080,"kvm_vcore":13835058055328945920},"lpidr":1,"sdr1":1962934278},{"cpu":3,"hw_cpu_id":11,"kvm_hstate":{"in_guest":4,"napping":0,"hwthread_req":1,"hwthread_state":2,"ptid":3,"kvm_vcpu":13835058055955096576,"kvm_vcore":13835058055328945920},"lpidr":1,"sdr1":1962934278}],"vcores":[{"addr":13835058055328945920,"n_runnable":4,"num_threads":4,"napping_threads":0,"first_vcpuid":0,"pcpu":0,"vcore_state":4,"in_guest":1,"entry_exit_map":3855,"runner":13835058055320731648,"kvm":13835058055354286080}],"vcpus":[{"addr":13835058055320740864,"vcpu_id":0,"vcore":13835058055328945920,"ptid":0,"cpu":-1,"thread_cpu":-1,"state":1,"ceded":0},{"addr":13835058055320731648,"vcpu_id":1,"vcore":13835058055328945920,"ptid":1,"cpu":-1,"thread_cpu":-1,"state":1,"ceded":0},{"addr":13835058055320750080,"vcpu_id":2,"vcore":13835058055328945920,"ptid":2,"cpu":-1,"thread_cpu":-1,"state":1,"ceded":0},{"addr":13835058055955096576,"vcpu_id":3,"vcore":13835058055328945920,"ptid":3,"cpu":-1,"thread_cpu":-1,"state":1,"ceded":0}],"kvm":{"lpid":1,"sdr1":1962934278,"host_lpid":0,"host_sdr1":2080374791},"violations":[]}
""".strip()


def real_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in REAL_TRACE.splitlines()]


def swap_ptids(record: dict[str, Any], a: int, b: int) -> dict[str, Any]:
    bad = copy.deepcopy(record)
    ha, hb = bad["threads"][a]["kvm_hstate"], bad["threads"][b]["kvm_hstate"]
    ha["ptid"], hb["ptid"] = hb["ptid"], ha["ptid"]
    return bad


def fake_run(records: list[dict[str, Any]], tmp_path: Path) -> LiveRun:
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps(r) + "\n" for r in records))
    return LiveRun(
        scenario="all",
        qemu="patched",
        trace=trace,
        records=records,
        reports=[],
        timings={"boot_s": 17.0, "attach_s": 3.5, "watch_s": 2.9},
        watch={"ended_by": "stops"},
        status={},
        console="",
    )


def test_stop_kind_drops_the_per_hit_decoration() -> None:
    assert stop_kind({"stop": "kvmhv_switch_to_host@cpu2"}) == "kvmhv_switch_to_host"
    assert stop_kind({"stop": "kvm_do_nap"}) == "kvm_do_nap"
    assert stop_kind({}) == "?"


def test_real_trace_is_clean_and_tabulated_per_stop_kind() -> None:
    summary = summarize(real_records())
    assert summary.violations == []
    assert summary.mismatches == []  # pv-watch's in-gdb verdicts ([] each) agree
    assert list(summary.stops) == ["kvmppc_hv_entry", "kvmhv_switch_to_host"]
    assert summary.stops["kvmppc_hv_entry"]["snapshots"] == 1
    assert summary.stops["kvmhv_switch_to_host"]["snapshots"] == 3
    assert all(row["check_ms"] > 0 for row in summary.stops.values())


def test_swapped_ptids_are_reported_with_invariant_stop_and_fields() -> None:
    records = real_records()
    records[3] = swap_ptids(records[3], 1, 2)
    summary = summarize(records)
    assert summary.violations, "a ptid swapped between threads 1 and 2 went unnoticed"
    inv3 = [v for v in summary.violations if v["invariant"] == 3]
    assert inv3 and all(v["stop"] == "kvmhv_switch_to_host@cpu0" and v["line"] == 4 for v in inv3)
    assert any("ptid" in key for v in inv3 for key in v["fields"])
    # The record still carries pv-watch's clean verdict: the disagreement is flagged too.
    assert summary.mismatches and summary.mismatches[0]["line"] == 4
    assert summary.stops["kvmhv_switch_to_host"]["violations"] == len(summary.violations)


def test_prepatch_and_modern_agree_on_a_dense_vcore() -> None:
    """vcpus 0-3 all running: packing (prepatch) and alignment give the same threads."""
    for variant in ("modern", "prepatch"):
        assert summarize(real_records(), variant).violations == [], variant


def test_table_lists_every_stop_kind_and_the_verdict(tmp_path: Path) -> None:
    run = fake_run(real_records(), tmp_path)
    text = format_table(run, summarize(run.records))
    assert "kvmppc_hv_entry" in text and "kvmhv_switch_to_host" in text
    assert "verdict: clean" in text
    bad = fake_run([swap_ptids(r, 0, 3) for r in real_records()], tmp_path)
    text = format_table(bad, summarize(bad.records))
    assert "invariant 3" in text and "violations" in text


@pytest.mark.parametrize(
    "case, code",
    [("clean", 0), ("corrupted", 1), ("empty", 2), ("lab-fails", 2)],
)
def test_cli_json_and_exit_codes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str, code: int
) -> None:
    records = real_records()
    if case == "corrupted":
        records[1] = swap_ptids(records[1], 0, 1)
    if case == "empty":
        records = []

    def fake_run_live(scenario: str, **kwargs: Any) -> LiveRun:
        if case == "lab-fails":
            raise RuntimeError("boot hung twice")
        assert scenario == "all" and kwargs["qemu"] == "stock" and kwargs["stops"] == 4
        return fake_run(records, tmp_path)

    monkeypatch.setattr(diff, "run_live", fake_run_live)
    from pyvcore.cli import main

    rc = main(["diff", "--scenario", "all", "--qemu", "stock", "--stops", "4", "--json"])
    out, err = capsys.readouterr()
    assert rc == code
    if case == "lab-fails":
        assert "could not run" in err and "boot hung twice" in err
        return
    doc = json.loads(out)
    assert doc["scenario"] == "all"
    for _kind, row in doc["stops"].items():
        assert isinstance(row["snapshots"], int) and isinstance(row["violations"], int)
        assert isinstance(row["check_ms"], float)
    if case == "corrupted":
        assert doc["violations"] and {"invariant", "stop", "fields"} <= set(doc["violations"][0])
        assert 3 in {v["invariant"] for v in doc["violations"]}
    else:
        assert doc["violations"] == []


def test_table_names_watched_points_that_were_never_hit(tmp_path: Path) -> None:
    run = fake_run(real_records(), tmp_path)
    run.watch = {"pv_watch": "pv-watch: on at kvmppc_run_core, kvmppc_hv_entry, kvmhv_switch_to_host; log x"}
    text = format_table(run, summarize(run.records))
    assert "(watched, never hit)" in text and "kvmppc_run_core" in text.split("never hit)")[1]


def test_stops_of_one_run_are_counted_as_pairs_and_v2_fields_tallied(tmp_path: Path) -> None:
    """The three kvmhv_switch_to_host stops carry the seq of their run: two
    consecutive pairs are judged as one run (the first stop has no seq)."""
    records = real_records()
    for r in records[1:]:
        r["version"] = 2  # the v1 recording with version-2 fields added
        r["vcores"][0]["seq"] = 4
    records[2]["tb"], records[2]["tb_freq"] = "0x1d4c0b2f3a", 512_000_000
    records[2]["vcores"][0].update(tb_offset="0x3000000", tb_offset_applied="0x3000000")
    records[3]["vcores"][0].update(tb_offset="0x3000000", tb_offset_applied="0x0")
    records[2]["threads"][2].update(
        dpdes="0x4", hdec="0xfff25ffe", pc="0xc000000000115690", msr="0x9000000002803003"
    )
    summary = summarize(records)
    assert summary.violations == [] and summary.same_run_pairs == 2
    assert summary.fields["tb"] == 1 and summary.fields["dpdes"] == 1 and summary.fields["dpdes pending"] == 1
    text = format_table(fake_run(records, tmp_path), summary)
    assert "history: 2 consecutive stop pairs judged as one vcore run" in text
    assert "tb 1/4" in text and "dpdes 1/4" in text and "a DPDES bit set at 1 stops" in text
    assert "tb_offset 2/4, tb_offset_applied 2/4" in text and "a timebase offset in force at 1 stops" in text
    # A new run between them (seq 5): the pair proves nothing and is not counted.
    records[3]["vcores"][0]["seq"] = 5
    assert summarize(records).same_run_pairs == 1
    # Within one run the exit part of the entry/exit word never shrinks (11).
    records[3]["vcores"][0].update(seq=4, entry_exit_map=0x10F)
    assert 11 in {v["invariant"] for v in summarize(records).violations}


def test_every_tool_numbers_a_stop_as_its_line_from_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One convention: stop N is line N of the trace, from 1. diff's table and --json,
    check, show --line, the timeline's stop axis and pv-watch's summary agree on it."""
    from pyvcore.cli import main
    from pyvcore.timeline import from_snapshots, read_lines
    from pyvcore.watchsummary import WatchTally

    records = real_records()
    records[2] = swap_ptids(records[2], 1, 2)  # the third stop, line 3
    run = fake_run(records, tmp_path)
    summary = summarize(run.records)
    assert {v["line"] for v in summary.violations} == {3} and summary.mismatches[0]["line"] == 3
    assert "first at line 3, kvmhv_switch_to_host@cpu2)" in format_table(run, summary)
    assert main(["check", "--json", str(run.trace)]) == 1
    assert {v["line"] for v in json.loads(capsys.readouterr().out)["violations"]} == {3}
    assert main(["show", str(run.trace), "--line", "3"]) == 1
    shown = capsys.readouterr().out
    assert "kvmhv_switch_to_host@cpu2" in shown and "invariant 3" in shown
    by_stop = from_snapshots("t", read_lines(run.trace), by_stop=True)
    assert sorted({m.ts for m in by_stop.marks}) == [1.0, 2.0, 3.0, 4.0]
    assert {v.ts for v in by_stop.violations} == {3.0}
    watch = WatchTally()
    for n, rec in enumerate(records, 1):
        watch.record(rec["stop"], [{"invariant": 3, "message": "m"}] if n == 3 else [])
    assert watch.by_invariant[3].first_stop == 3


class _ConsoleLab:
    """A lab whose console holds ``text``: wait_for as the real one (a match, or a timeout)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def wait_for(self, regex: str, timeout: float = 60.0) -> Any:
        import re
        import time

        found = re.search(regex, self.text, re.M)
        if found is None:
            time.sleep(timeout)
            raise RuntimeError(f"no {regex!r} within {timeout} s")
        return found

    def alive(self) -> bool:
        return True


def test_waiting_for_the_guests_reports_ends_when_the_host_reports_a_stuck_cpu() -> None:
    """The host kernel said a CPU is stuck (kvmppc_wait_for_nap): the guest's reports will not
    come, so the wait ends at once, saying why, instead of counting down its whole timeout."""
    import time

    from pyvcore.diff_live import wait_reports

    said: list[str] = []
    stuck = _ConsoleLab("PYVCORE READY\n[   41.2] KVM: CPU 3 seems to be stuck\n")
    t0 = time.monotonic()
    wait_reports(stuck, 5.0, said.append, lambda _: None)
    assert time.monotonic() - t0 < 1.0
    assert "the host kernel says 'KVM: CPU 3 seems to be stuck'" in said[-1], said
    # a guest that finished: no such line; one that stays silent: the whole timeout
    said.clear()
    wait_reports(_ConsoleLab("PYVCORE DONE\n"), 5.0, said.append, lambda _: None)
    assert len(said) == 1
    t0 = time.monotonic()
    wait_reports(_ConsoleLab("PYVCORE READY\n"), 1.5, said.append, lambda _: None)
    assert time.monotonic() - t0 >= 1.4 and "no PYVCORE DONE line within 1.5 s" in said[-1]
