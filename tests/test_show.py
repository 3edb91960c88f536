"""`pyvcore show`: every stop of the recorded lab traces, rendered like pv-check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pyvcore.checker import check_trace
from pyvcore.cli import main

TRACES = sorted((Path(__file__).parent / "checker_live").glob("*.jsonl"))


def show(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["show", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.stem)
def test_every_recorded_stop_renders_within_80_columns(capsys, trace):
    stops = [line for line in trace.read_text().splitlines() if line.strip()]
    code, out, err = show(capsys, trace, "--colour", "never")
    assert err == ""
    assert code == check_trace(str(trace)).exit_code  # the same verdict as `pyvcore check`
    heads = re.findall(r"^== line (\d+)  stop (\S+)$", out, re.M)
    assert [int(n) for n, _ in heads] == list(range(1, len(stops) + 1))
    assert [label for _, label in heads] == [json.loads(s)["stop"] for s in stops]
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "Traceback" not in out
    # one verdict per thread per stop, and the legend once
    threads = sum(len(json.loads(s)["threads"]) for s in stops)
    assert (
        len(re.findall(r"^\d+\s+t\d\s+\S+\s+\S+\s+(ok|allowed-now|violation|not judged)", out, re.M))
        == threads
    )
    assert out.count("allowed-now = different") == 1


def test_a_violation_is_shown_on_its_thread_and_explained_once(capsys):
    trace = Path(__file__).parent / "checker_live" / "all-stock.jsonl"
    report = check_trace(str(trace))
    line = report.violations[0].line
    code, out, _ = show(capsys, trace, "--line", line)
    assert code == 1
    assert out.count(f"== line {line} ") == 1 and out.count("== line") == 1
    assert re.search(r"^\d+\s+t\d\s+\S+\s+\S+\s+violation$", out, re.M)
    assert "violation of invariant 8: threads of one core disagree on LPIDR" in out
    # the explanation is printed under the first violation of the invariant only
    explained = [i for i, s in enumerate(out.splitlines()) if s.startswith("    ") and "LPIDR" in s]
    assert explained and len(explained) <= 3


def test_stop_label_selects_by_function_or_full_label(capsys):
    trace = Path(__file__).parent / "checker_live" / "novcpu0-patched.jsonl"
    labels = [json.loads(s)["stop"] for s in trace.read_text().splitlines() if s.strip()]
    code, out, _ = show(capsys, trace, "--stop", "kvm_do_nap")
    assert code == 0
    assert out.count("== ") == sum(lab.split("@")[0] == "kvm_do_nap" for lab in labels) > 0
    code, out, _ = show(capsys, trace, "--stop", labels[0])
    assert out.count("== ") == labels.count(labels[0])


def test_the_live_colour_is_inside_cells(capsys):
    trace = Path(__file__).parent / "checker_live" / "all-stock.jsonl"
    line = check_trace(str(trace)).violations[0].line
    _, out, _ = show(capsys, trace, "--line", line, "--colour", "always")
    for text in out.splitlines():
        codes = re.findall(r"\x1b\[([0-9;]*)m", text)
        assert not codes or codes[-1] == "0"
    assert "\x1b[31mviolation\x1b[0m" in out


@pytest.mark.parametrize(
    "content, args, message",
    [
        (TRACES[0].read_text().splitlines()[0] + "\n", ["--line", "5"], "no line 5"),
        ('{"format": "pyvcore-events", "version": 1}\n', [], "the event log has no store to show"),
        ("{not json\n", [], "t.jsonl:1:2: not JSON"),
        ('{"stop": "x"}\n', [], "t.jsonl:1:13: key `variant`: missing field `variant`"),
        ("[1, 2]\n", [], "t.jsonl:1: a snapshot is a JSON object, not an array"),
        (b"\xff\xfe\n", [], "t.jsonl:1:1: not UTF-8 text (byte 0xff)"),
        ('{"variant": "modern", "threads": [{"cpu": 0}]}\n', [], ":1:"),
    ],
)
def test_unusable_input_is_one_line_and_exit_2(capsys, tmp_path, content, args, message):
    path = tmp_path / "t.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, _out, err = show(capsys, path, *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_missing_file(capsys, tmp_path):
    code, _, err = show(capsys, tmp_path / "nope.jsonl")
    assert code == 2 and "cannot read" in err


def _stop(name: str, line: int) -> dict:
    return json.loads((Path(__file__).parent / "checker_live" / name).read_text().splitlines()[line - 1])


def _verdicts(out: str) -> dict[str, str]:
    """The verdict column of the check table: thread or vcore row -> verdict."""
    return dict(re.findall(r"^(?:\d+|-)\s+(t\d|vc\d)\s+\S+\s+\S+\s+(.+)$", out, re.M))


def test_a_core_wide_violation_is_on_the_vcore_row_not_every_thread(capsys, tmp_path):
    # line 9 of the cede trace: threads 0-2 are entering while the model has no vcpu placed
    # yet (allowed now); an entry bit past the core's 4 threads breaks invariant 10, a field
    # of the vcore (vcores[0].entry_exit_map), not of any thread
    snap = _stop("cede-patched.jsonl", 9)
    snap["vcores"][0]["entry_exit_map"] |= 0x80
    trace = tmp_path / "corewide.jsonl"
    trace.write_text(json.dumps(snap) + "\n")
    code, out, _ = show(capsys, trace, "--colour", "never")
    assert code == 1
    verdicts = _verdicts(out)
    assert [verdicts[f"t{i}"].split(":")[0] for i in range(4)] == ["allowed-now"] * 3 + ["ok"]
    assert verdicts["vc0"] == "violation: invariant 10"
    assert out.count("violation of invariant 10: entry_exit_map 0x82 has bits outside") == 1


def test_a_violation_marks_the_threads_its_fields_or_message_name():
    from types import SimpleNamespace

    from pyvcore import stopview

    snap = _stop("cede-patched.jsonl", 1)
    predicted = [dict(t["kvm_hstate"]) for t in snap["threads"]]
    vcpu2 = next(j for j, v in enumerate(snap["vcpus"]) if v["vcpu_id"] == 2)
    cases = [
        # a vcpu's field: the thread whose PACA holds that vcpu (vcpu 2 is on thread 2)
        ({f"vcpus[{vcpu2}].ceded": 1}, "", {"t2"}),
        # registers of two threads
        ({"threads[1].lpidr": "0x0", "threads[3].lpidr": "0x1"}, "", {"t1", "t3"}),
        # no fields: the threads the message names
        ({}, "thread 3 (ptid 3) wrote LPIDR inside KVM", {"t3"}),
    ]
    for fields, message, marked in cases:
        v = SimpleNamespace(invariant=7, message=message or "x", fields=fields)
        verdicts = _verdicts(stopview.check_text(snap, stopview.Judgement([v], predicted)))
        assert {row for row, verdict in verdicts.items() if verdict.startswith("violation")} == marked
    # a VM field alone (kvm.lpid) is core-wide: its vcore's row, no thread
    v = SimpleNamespace(invariant=8, message="x", fields={"kvm.lpid": "0x1"})
    verdicts = _verdicts(stopview.check_text(snap, stopview.Judgement([v], predicted)))
    assert {row for row, verdict in verdicts.items() if verdict.startswith("violation")} == {"vc0"}


def test_threads_table_shows_lpidr_and_sdr1_with_the_partitions(capsys):
    trace = Path(__file__).parent / "checker_live" / "cede-patched.jsonl"
    snaps = [json.loads(s) for s in trace.read_text().splitlines()]
    guest = next(n for n, s in enumerate(snaps, 1) if s["threads"][0]["lpidr"])
    code, out, _ = show(capsys, trace, "--line", guest, "--colour", "never")
    assert code == 0
    kvm = snaps[guest - 1]["kvm"]
    assert (
        f"partition: guest lpid {kvm['lpid']:#x} sdr1 {kvm['sdr1']:#x}; "
        f"host lpid {kvm['host_lpid']:#x} sdr1 {kvm['host_sdr1']:#x}" in out
    )
    assert re.search(r"^cpu\s+t\s+in_guest .* lpidr\s+sdr1$", out, re.M)
    rows = re.findall(
        r"^(\d+)\s+t\d\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+(0x\w+)\s+(0x\w+)$", out, re.M
    )
    assert rows == [
        (str(t["cpu"]), f"{t['lpidr']:#x}", f"{t['sdr1']:#x}") for t in snaps[guest - 1]["threads"]
    ]


def test_line_numbers_start_at_1(capsys, tmp_path):
    """`--line 0` is refused before the trace is read: lines start at 1, as check counts them."""
    trace = tmp_path / "t.jsonl"
    trace.write_text("")
    assert main(["show", str(trace), "--line", "0"]) == 2
    assert capsys.readouterr().err == "pyvcore show: argument --line: lines start at 1, not 0\n"


def test_vcore_line_decodes_entry_exit_and_breaks_only_between_fields(capsys) -> None:
    """The vcore line names the threads entered and exiting (as pv-vcore does), and at 80
    columns it breaks only between two fields, never between a field and its value."""
    trace = Path(__file__).parent / "checker_live" / "all-stock.jsonl"
    _, out, _ = show(capsys, str(trace), "--line", "7")
    start = next(i for i, line in enumerate(out.splitlines()) if line.startswith("vc0 "))
    block = out.splitlines()[start : start + 3]
    assert all(len(line) <= 80 for line in block)
    assert "entry_exit_map 0xa0b: entered {0,1,3} exiting {1,3}" in "\n".join(block)
    assert "napping_threads {}" in "\n".join(block) and "runner vcpu 1" in "\n".join(block)
    for line in block[:-1]:
        assert line.endswith(","), line


def test_a_stop_not_judged_exits_2_as_pyvcore_check_does(capsys, tmp_path):
    """`pyvcore check` exits 2 when a stop is not judged (never clean); `show` on that stop
    exited 0 while printing "not judged".  Now both give 2 for it: a stop with no vcore, and
    a stop lacking a thread of its core; a clean stop and a violation keep 0 and 1, and a
    violation elsewhere in the stops shown still makes it 1, as check's verdict."""
    from pyvcore.checker import check_trace

    records = [json.loads(s) for s in TRACES[0].read_text().splitlines() if s.strip()]
    clean = records[0]
    no_vcore = {**clean, "vcores": [], "vcpus": [], "stop": "no-vcore"}
    for h in (t["kvm_hstate"] for t in no_vcore["threads"]):
        h.update(kvm_vcpu=0, kvm_vcore=0)
    alone = {**clean, "threads": clean["threads"][:1], "stop": "alone"}
    stock = [json.loads(s) for s in (Path(__file__).parent / "checker_live" / "all-stock.jsonl").open()][6]
    trace = tmp_path / "mixed.jsonl"
    trace.write_text("\n".join(json.dumps(r) for r in (clean, no_vcore, alone, stock)) + "\n")
    for line, want in ((1, 0), (2, 2), (3, 2), (4, 1)):
        one = tmp_path / f"line{line}.jsonl"
        one.write_text(trace.read_text().splitlines()[line - 1] + "\n")
        assert check_trace(str(one)).exit_code == want, line
        code, out, _ = show(capsys, trace, "--line", line, "--colour", "never")
        assert code == want, (line, out)
        if want == 2:
            assert "not judged" in out
    # every stop: the trace's verdict, violations first (1), as check
    assert show(capsys, trace)[0] == check_trace(str(trace)).exit_code == 1
    two = tmp_path / "two.jsonl"
    two.write_text("\n".join(json.dumps(r) for r in (clean, alone)) + "\n")
    assert show(capsys, two)[0] == check_trace(str(two)).exit_code == 2
    assert show(capsys, two, "--line", 1)[0] == 0


def test_a_version_2_stop_shows_each_threads_registers(capsys, tmp_path):
    """pc, MSR with its mode, DPDES and HDEC (signed: 32 bits on POWER8) per thread, in a table of
    their own under the PACA table; a version-1 stop has none, and no such table."""
    snap = _stop("cede-patched.jsonl", 4)
    regs = [
        (0x9000000000001033, 0, 512),  # MSR[HV] with IR/DR: host
        (0x9000000000001001, 0, 0xFFFFFFF0),  # HV real mode; HDEC expired (-16)
        (0x8000000000001033, 0b100, 7),  # guest; a doorbell pending for thread 2
        (0x8000000000001033, 0, 0xFFFFFFFFFFFFFFFF),  # sign-extended -1
    ]
    for i, (msr, dpdes, hdec) in enumerate(regs):
        snap["threads"][i].update(pc=0xC000000000100000 + 16 * i, msr=msr, dpdes=dpdes, hdec=hdec)
    snap["version"] = 2
    trace = tmp_path / "v2.jsonl"
    trace.write_text(json.dumps(snap) + "\n")
    main(["show", str(trace)])
    out = capsys.readouterr().out
    rows = {line.split()[1]: line.split() for line in out.splitlines() if re.match(r"\d+\s+t\d\s+0xc", line)}
    assert rows["t0"][2:] == ["0xc000000000100000", "0x9000000000001033", "host", "0x0", "512"]
    assert rows["t1"][4:] == ["real", "0x0", "-16"]
    assert rows["t2"][4:] == ["guest", "0x4", "7"]
    assert rows["t3"][6] == "-1"
    v1 = tmp_path / "v1.jsonl"
    v1.write_text(json.dumps(_stop("cede-patched.jsonl", 4)) + "\n")
    main(["show", str(v1)])
    assert " mode " not in capsys.readouterr().out


def test_an_explore_trace_shows_the_event_that_led_to_each_stop(capsys, tmp_path):
    trace = tmp_path / "pp.jsonl"
    assert main(["explore", "--variant", "prepatch", "--threads", "2", "--trace", str(trace)]) == 1
    capsys.readouterr()
    main(["show", str(trace), "--line", "2"])
    assert "== line 2  stop kvmppc_run_vcpu  after runnable(vcpu=1)" in capsys.readouterr().out
