"""`pyvcore check TRACE.jsonl [--json] [--variant V]` through a subprocess:
exit 0 clean, 1 violations, 2 unusable input."""

from __future__ import annotations

import json
import subprocess
import sys

import checker_states as cs
import pytest


def run_check(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "pyvcore", "check", *map(str, args)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def write_trace(path, snapshots, extra_lines=()):
    lines = [json.dumps(s) for s in snapshots] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_clean_trace_exits_0(tmp_path):
    trace = write_trace(tmp_path / "ok.jsonl", cs.clean_sequence())
    r = run_check(trace)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 violations" in r.stdout


def test_violations_exit_1_with_invariant_line_stop_and_fields(tmp_path):
    stock = cs.stock_qemu()
    stock["stop"] = "guest_spin"
    trace = write_trace(tmp_path / "stock.jsonl", [cs.running(), stock])
    r = run_check(trace)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{trace}:2 [guest_spin]: invariant 8:" in r.stdout
    assert "threads[1].lpidr=0x0" in r.stdout
    assert "(invariant 8)" in r.stdout.splitlines()[-1]


def test_json_report(tmp_path):
    trace = write_trace(tmp_path / "stock.jsonl", [cs.stock_qemu()])
    r = run_check(trace, "--json")
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report["snapshots"] == 1 and report["ok"] is False and report["error"] is None
    assert {v["invariant"] for v in report["violations"]} == {8}
    assert all(v["line"] == 1 and v["stop"] == "guest" for v in report["violations"])


def test_missing_key_exits_2_naming_key_and_line(tmp_path):
    bad = cs.running()
    del bad["threads"][1]["kvm_hstate"]["hwthread_state"]
    trace = write_trace(tmp_path / "bad.jsonl", [cs.running(), bad])
    r = run_check(trace)
    assert r.returncode == 2
    assert f"{trace}:2:" in r.stderr and "threads[1].kvm_hstate.hwthread_state" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_check(trace, "--json")
    assert r.returncode == 2
    report = json.loads(r.stdout)
    assert report["error"]["line"] == 2 and report["error"]["key"] == "threads[1].kvm_hstate.hwthread_state"
    assert report["error"]["text"].startswith(f"{trace}:2:")
    assert report["snapshots"] == 1


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda s: s["threads"][1].update(msr="0x9000000002803003"), "threads[1].msr"),
        (lambda s: s["threads"][0].update(dpdes="0x2"), "threads[0].dpdes"),
        (lambda s: s["threads"][2].update(pc="0xc000000000115690"), "threads[2].pc"),
        (lambda s: s["threads"][3].update(hdec="0xffffff00"), "threads[3].hdec"),
        (lambda s: s.update(tb="0x1d4c0b2f3a"), "tb"),
        (lambda s: s["vcores"][0].update(seq=3), "vcores[0].seq"),
        (lambda s: s["vcores"][0].update(tb_offset="0x0"), "vcores[0].tb_offset"),
    ],
)
def test_a_version_1_stop_with_a_version_2_field_is_refused(tmp_path, edit, key):
    """A version-1 stop (no "version", or 1) is judged without the version-2 fields; one that
    carries any is not what it claims: refused like any unusable line, naming the line, the
    field and the version.  The same stop saying "version": 2 is judged."""
    bad = cs.running()
    edit(bad)
    trace = write_trace(tmp_path / "v1.jsonl", [cs.running(), bad])
    r = run_check(trace)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{trace}:2: key `{key}`: a version-2 field in a version-1 snapshot" in r.stderr
    assert "Traceback" not in r.stderr
    report = json.loads(run_check(trace, "--json").stdout)
    assert (report["error"]["line"], report["error"]["key"], report["snapshots"]) == (2, key, 1)
    bad["version"] = 1
    assert run_check(write_trace(tmp_path / "v1.jsonl", [bad])).returncode == 2
    bad["version"] = 2
    r = run_check(write_trace(tmp_path / "v2.jsonl", [cs.running(), bad]))
    assert "version-2 field" not in r.stderr and r.returncode in (0, 1), r.stderr


def test_the_recorded_version_1_traces_carry_no_version_2_field():
    """Every v1 trace recorded on the lab (tests/checker_live/) is still read: none has a
    version-2 field, so none is refused."""
    from pathlib import Path

    traces = sorted((Path(__file__).parent / "checker_live").glob("*.jsonl"))
    assert traces
    for trace in traces:
        r = run_check(trace)
        assert r.returncode in (0, 1), (trace, r.stderr)


def test_wrong_type_and_garbage_exit_2(tmp_path):
    bad = cs.running()
    bad["vcores"][0]["pcpu"] = "zero"
    r = run_check(write_trace(tmp_path / "t.jsonl", [bad]))
    assert (
        r.returncode == 2 and f"{tmp_path / 't.jsonl'}:1:" in r.stderr and "key `vcores[0].pcpu`" in r.stderr
    )
    r = run_check(write_trace(tmp_path / "g.jsonl", [], ["{not json"]))
    assert r.returncode == 2 and f"{tmp_path / 'g.jsonl'}:1:2: not JSON: " in r.stderr


def test_missing_file_exits_2(tmp_path):
    r = run_check(tmp_path / "nope.jsonl")
    assert r.returncode == 2 and "cannot read" in r.stderr and "Traceback" not in r.stderr


def test_variant_option_and_stdin(tmp_path):
    snap = cs.running("seed")
    del snap["variant"]
    text = json.dumps(snap) + "\n"
    r = run_check("-", stdin=text)
    assert r.returncode == 2 and "variant" in r.stderr
    r = run_check("-", "--variant", "seed", stdin=text)
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_check("-", "--variant", "p8", stdin=text)
    assert r.returncode == 2  # argparse rejects the choice


def test_check_trace_api_matches_cli(tmp_path):
    from pyvcore import check_trace

    trace = write_trace(tmp_path / "stock.jsonl", [cs.running(), cs.stock_qemu(), cs.running()])
    report = check_trace(trace)
    assert report.exit_code == 1 and report.snapshots == 3
    assert {v.line for v in report.violations} == {2}
    assert json.loads(run_check(trace, "--json").stdout) == json.loads(json.dumps(report.to_dict()))
    with pytest.raises(OSError):
        check_trace(tmp_path / "missing.jsonl")


def test_same_vm_option_enables_the_step_checks(tmp_path):
    fewer = cs.running(vcpu_ids=(0, 1, 2), num_threads=3)
    trace = write_trace(tmp_path / "vm.jsonl", [cs.running(), fewer])
    assert run_check(trace).returncode == 0
    r = run_check(trace, "--same-vm")
    assert r.returncode == 1 and ":2 [guest]: invariant 20:" in r.stdout


def test_vmcore_only_options_with_a_trace_are_refused(tmp_path):
    """--vmlinux/--modules only say where a vmcore's types are: with a trace they would be
    silently ignored, so they are refused in one line."""
    trace = write_trace(tmp_path / "t.jsonl", [cs.running()])
    r = run_check("--modules", str(tmp_path), str(trace))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        "pyvcore check: --modules goes with --vmcore (a trace carries its snapshots; nothing else is read)"
    ]
