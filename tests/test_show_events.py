"""`pyvcore show` on an event log (`pyvcore trace --out`): the pv-check tables of the state the
shadow held after a given store (`--seq N`) or at the K-th violation, by replaying the log;
one clear line for a point the log never reaches."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_trace import VC, ev, vcore_found, write_log

from pyvcore import _core
from pyvcore.cli import main

# seq 1: thread 0's PACA points at the INACTIVE vcore (kvmppc_start_thread) with no secondary
# grabbed (invariant 17, three threads: on_primary_thread grabs before any start); seq 2:
# RUNNING, still none grabbed (17 again, three threads); seq 3: EXITING; seq 4: EXITING ->
# RUNNING (invariant 19, a step; 17 again).
EVENTS = [
    *vcore_found(1),
    ev(2, f"vcores[{VC}].vcore_state", 0, 4),
    ev(3, f"vcores[{VC}].vcore_state", 4, 5),
    ev(4, f"vcores[{VC}].vcore_state", 5, 4),
]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return write_log(tmp_path / "events.jsonl", EVENTS)


def show(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main(["show", *map(str, argv), "--colour", "never"])
    out, err = capsys.readouterr()
    return code, out, err


def test_seq_shows_the_state_after_that_store(capsys: pytest.CaptureFixture[str], log: Path) -> None:
    code, out, err = show(capsys, log, "--seq", 3)
    assert (code, err) == (0, "")
    assert re.search(r"^== seq 3  tb 3000  \(13 events applied\)$", out, re.M)
    assert f"vc0 {VC}: EXITING" in out and "RUNNING" not in out
    assert "no invariant violated (modern)" in out
    assert "7 violations" not in out and "6 violations up to" in out  # those of seqs 1 and 2
    assert max(len(line) for line in out.splitlines()) <= 80
    code, out, _ = show(capsys, log, "--seq", 2)
    assert code == 1 and f"vc0 {VC}: RUNNING" in out
    assert "violation of invariant 17: vcore runs, but secondary thread 1 is not grabbed" in out
    assert out.count("[vcores[") == 3  # the shadow's violations made by store 2, one per thread


def test_violation_k_shows_the_state_at_the_store_that_made_it(
    capsys: pytest.CaptureFixture[str], log: Path
) -> None:
    total = json.loads(_core.replay_events(log.read_text()))["stats"]["violations"]
    code, out, err = show(capsys, log, "--violation", total)
    assert (code, err[:0]) == (1, "")
    assert re.search(r"^== seq 4  tb 4000", out, re.M)
    assert f"violation {total} of the log:" in out
    assert "invariant 19" in out
    # its events, oldest first, ending with the store that broke it
    events = re.findall(r"^    #(\d+) tb", out, re.M)
    assert events[-1] == "4" and events[0] == "1"
    code, out, _ = show(capsys, log, "--violation", 1)
    assert code == 1 and re.search(r"^== seq 1 ", out, re.M) and "violation 1 of the log:" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seq", "9"], "seq 9 is past the end of the log (its last store is seq 4)"),
        (["--violation", "99"], "there is no violation 99: the log has 10 violations"),
        (["--line", "2"], "is an event log (pyvcore trace): it has no lines or stops"),
        (["--stop", "kvmppc_hv_entry"], "give --seq N (the state after store N) or --violation K"),
    ],
)
def test_a_point_the_log_never_reaches_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], log: Path, argv: list[str], message: str
) -> None:
    code, out, err = show(capsys, log, *argv)
    assert (code, out) == (2, "")
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_unusable_event_logs(capsys: pytest.CaptureFixture[str], tmp_path: Path, log: Path) -> None:
    bad = write_log(tmp_path / "bad.jsonl", [*EVENTS[:3], ev(5, "threads[0].kvm_hstate.bogus", 0, 1)])
    code, _out, err = show(capsys, bad, "--seq", 1)
    assert code == 2 and f"{bad}:5: key `field`: " in err and "bogus" in err and len(err.splitlines()) == 1
    cut = tmp_path / "cut.jsonl"
    cut.write_text(log.read_text()[:-20])
    code, _out, err = show(capsys, cut, "--seq", 4)
    assert code == 2 and "not JSON" in err and len(err.splitlines()) == 1
    # a snapshot trace takes --line / --stop, not --seq
    trace = Path(__file__).parent / "checker_live" / "cede-patched.jsonl"
    code, _out, err = show(capsys, trace, "--seq", 1)
    assert code == 2 and "trace of snapshots: give --line N or --stop LABEL" in err


def test_the_binding_replays_to_a_point(log: Path) -> None:
    text = log.read_text()
    at = _core.replay_events_at(text, seq=2)
    assert (at.seq, at.tb, at.reached, at.events) == (2, 2000, True, 12)
    assert isinstance(at.snapshot, dict) and at.snapshot["vcores"][0]["vcore_state"] == 4
    assert {v["invariant"] for v in at.violations} == {17}
    assert sorted(v["events"][-1]["seq"] for v in at.violations) == [1, 1, 1, 2, 2, 2]
    before = _core.replay_events_at(text, seq=0)
    assert (before.seq, before.events, before.total_violations) == (None, 0, 0)
    end = _core.replay_events_at(text)
    assert end.seq == 4 and end.total_violations == 10  # 17 x3 at seqs 1 and 2; 17 x3 and 19 at seq 4
    assert not _core.replay_events_at(text, seq=5).reached
    with pytest.raises(ValueError, match="not both"):
        _core.replay_events_at(text, seq=1, violation=1)
    with pytest.raises(ValueError, match="from 1"):
        _core.replay_events_at(text, violation=0)


def test_lpidr_sdr1_in_the_host_are_shown_and_why_they_are_not_judged(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Every thread read LPIDR 0 / SDR1 0x7c000007 in the host: the log holds them, so the
    table shows them (they showed `-`), and invariant 8 says why it is not judged there (it
    said "no LPIDR/SDR1 read").  Once a PACA points at a vcore they are judged as before."""
    host = [("lpidr", "0x0"), ("sdr1", "0x7c000007")]
    events = [
        ev(1 + 2 * i + k, f"threads[{i}].{n}", None, v, cpu=i)
        for i in range(4)
        for k, (n, v) in enumerate(host)
    ]
    log = write_log(tmp_path / "host.jsonl", [*events, *vcore_found(9)])
    code, out, err = show(capsys, log, "--seq", 8, "--width", "300")
    assert (code, err) == (0, "")
    rows = [line.split() for line in out.splitlines() if re.match(r"^\d\s+t\d\s+NONE ", line)]
    assert len(rows) == 4 and all(r[-2:] == ["0x0", "0x7c000007"] for r in rows), out
    assert "8 (LPIDR/SDR1 judged inside KVM only (in the host each thread sets its own at bring-up)" in out
    assert "no LPIDR/SDR1 read" not in out
    code, out, err = show(capsys, log, "--seq", 9, "--width", "300")
    assert "judged inside KVM only" not in out and "no LPIDR/SDR1 read" not in out
    judged = [line for line in out.splitlines() if re.match(r"^\d\s+t\d\s.*\s0x0\s+0x7c000007$", line)]
    assert len(judged) == 4, out  # in the snapshot, judged
