"""`pyvcore check` and the CLI error policy on bad input: each failure once
seen, with the smallest input that showed it (exit 0 clean, 1 violations, 2
unusable / empty / not judged, 3 internal error; no traceback anywhere)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import checker_states as cs
import pytest

from pyvcore import cli


def run(*args, stdin=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "pyvcore", *map(str, args)],
        capture_output=True,
        input=stdin,
        timeout=120,
        env=env,
    )


def out(r):
    return r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")


GOOD = json.dumps(cs.running()).encode()


def test_empty_trace_exits_2():
    r = run("check", "-", stdin=b"")
    assert r.returncode == 2 and b"empty trace" in r.stdout
    r = run("check", "-", stdin=b"\n\n")
    assert r.returncode == 2


def test_a_stop_without_a_vcore_is_not_judged_not_clean():
    snap = cs.running()
    snap["vcores"], snap["vcpus"] = [], []
    r = run("check", "-", stdin=json.dumps(snap).encode() + b"\n")
    assert r.returncode == 2 and b"not judged" in r.stdout
    r = run("check", "-", "--json", stdin=json.dumps(snap).encode() + b"\n")
    report = json.loads(r.stdout)
    assert report["verdict"] == "not judged" and report["not_judged"] == 1 and not report["ok"]


def test_invalid_utf8_on_stdin_is_one_line_exit_2():
    r = run("check", "-", stdin=GOOD + b"\n\xff\xfe\n")
    assert r.returncode == 2 and b"Traceback" not in r.stderr
    assert b"pyvcore check: <stdin>:2:1: not UTF-8" in r.stderr


def test_broken_pipe_exits_quietly():
    lines = b"\n".join([json.dumps(cs.stock_qemu()).encode()] * 2000) + b"\n"
    p = subprocess.Popen(
        f"{sys.executable} -m pyvcore check - | head -1; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = p.communicate(lines, timeout=120)
    assert stdout.count(b"\n") == 1
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr
    # the verdict (1) never reached the reader: not 0, the shell's 141 for a closed pipe
    assert p.returncode in (1, 141), p.returncode


def test_line_longer_than_the_cap_is_refused_with_its_number():
    r = run("check", "-", "--max-line-bytes", "100", stdin=b"\n" + b"x" * 1000 + b"\n")
    assert r.returncode == 2 and b"<stdin>:2: line longer than 100 bytes" in r.stderr


def test_dev_zero_is_refused_not_read_forever():
    r = run("check", "/dev/zero", "--max-line-bytes", "100000")
    assert r.returncode == 2 and b"/dev/zero:1: line longer than" in r.stderr


def test_output_is_grouped_per_invariant():
    lines = b"\n".join([GOOD] + [json.dumps(cs.stock_qemu()).encode()] * 3) + b"\n"
    r = run("check", "-", stdin=lines)
    assert r.returncode == 1
    assert b"15x invariant 8, first at line 2: partition registers" in r.stdout
    assert r.stdout.count(b"more: pyvcore invariants 8") == 1  # explained once


def test_control_characters_in_labels_are_escaped():
    snap = cs.stock_qemu()
    snap["stop"] = "x\nforged.jsonl:1 [y]: invariant 1: \x1b[2J"
    r = run("check", "-", stdin=json.dumps(snap).encode() + b"\n")
    assert r.returncode == 1
    assert b"\x1b" not in r.stdout and b"\nforged" not in r.stdout
    assert b"x\\nforged" in r.stdout and b"\\x1b[2J" in r.stdout


@pytest.mark.parametrize(
    "mutate, expected",
    [
        # valid JSON, wrong type: said so, with the key
        (
            lambda t: t.replace('"variant": "modern"', '"variant": 7'),
            [b"key `variant`", b"wrong JSON type", b"seed"],
        ),
        (lambda t: t.replace('"pcpu": 0', '"pcpu": NaN'), [b"not JSON", b"NaN and Infinity are not JSON"]),
        (lambda t: "\ufeff" + t, None),  # a byte order mark is skipped
        (
            lambda t: t.replace('"pcpu": 0', '"pcpu": 18446744073709551616'),
            [b"vcores[0].pcpu", b"2^64 or more"],
        ),
        (lambda t: t.replace('"pcpu": 0', '"pcpu": ' + "9" * 5000), [b"not JSON", b"too many digits"]),
        (
            lambda t: t.replace('"kvm_hstate": {', '"kvm_hstate": [', 1).replace(
                '"in_guest": 0}', '"in_guest": 0]', 1
            ),
            [b"threads[0].kvm_hstate", b"an array where an object is expected"],
        ),
    ],
    ids=["wrong-type", "nan", "bom", "2^64", "5000-digits", "array-for-object"],
)
def test_errors_name_key_line_column_and_what_was_expected(mutate, expected):
    snap = cs.running(vcpu_ids=(1, 2, 3), num_threads=4)
    text = mutate(json.dumps(snap))
    r = run("check", "-", stdin=text.encode() + b"\n")
    if expected is None:
        assert r.returncode == 0, out(r)
        return
    assert r.returncode == 2, out(r)
    # the place is said as every reader says it: <stdin>:LINE:COLUMN: ...
    assert re.match(rb"pyvcore check: <stdin>:1:\d+: ", r.stderr) and b"Traceback" not in r.stderr
    for e in expected:
        assert e in r.stderr, r.stderr


def test_missing_file_is_named_once():
    r = run("check", "/nonexistent/t.jsonl")
    assert r.returncode == 2 and r.stderr.count(b"/nonexistent/t.jsonl") == 1


def test_internal_error_is_one_line_exit_3(monkeypatch, capsys):
    import pyvcore.checker as checker

    def boom(args):
        raise RuntimeError("bad state\nsecond line")

    monkeypatch.setattr(checker, "_run", boom)
    monkeypatch.setattr(checker, "register", _register_with(boom))
    monkeypatch.delenv("PYVCORE_DEBUG", raising=False)
    assert cli.main(["check", "x"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "please report" in err and "Traceback" not in err
    monkeypatch.setenv("PYVCORE_DEBUG", "1")
    assert cli.main(["check", "x"]) == 3
    assert "Traceback" in capsys.readouterr().err


def _register_with(func):
    def register(subparsers):
        p = subparsers.add_parser("check")
        p.add_argument("trace")
        p.set_defaults(func=func)

    return register


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    import pyvcore.checker as checker

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(checker, "register", _register_with(interrupted))
    assert cli.main(["check", "x"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_a_pyvcore_error_is_one_line_with_its_exit_code(monkeypatch, capsys):
    import pyvcore.checker as checker
    from pyvcore.errors import PyvcoreError

    def refuse(args):
        raise PyvcoreError("cannot do that", exit_code=2)

    monkeypatch.setattr(checker, "register", _register_with(refuse))
    assert cli.main(["check", "x"]) == 2
    assert capsys.readouterr().err == "pyvcore check: cannot do that\n"


def test_invariants_command_covers_the_table():
    from pyvcore import _core

    r = run("invariants", "--json")
    rows = json.loads(r.stdout)
    assert r.returncode == 0
    assert [row["number"] for row in rows] == [i.number for i in _core.invariants()]
    for i in _core.invariants():
        r = run("invariants", str(i.number))
        text = r.stdout.decode()
        assert r.returncode == 0 and f"invariant {i.number}: {i.title}" in text
        assert "source:" in text and "a violation means:" in text
    r = run("invariants", "99")
    assert r.returncode == 2 and b"no invariant 99" in r.stderr


def test_no_env_leaks_into_the_debug_switch():
    env = dict(os.environ, PYVCORE_DEBUG="0")
    r = run("check", "/nonexistent", env=env)
    assert r.returncode == 2 and b"Traceback" not in r.stderr


def test_ctrl_c_on_an_idle_stdin_pipe_exits_130():
    """The trace is streamed from a pipe that stays open: SIGINT stops the
    read at once (exit 130, one line), without waiting for more input."""
    import signal
    import time

    p = subprocess.Popen(
        [sys.executable, "-m", "pyvcore", "check", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert p.stdin is not None
    p.stdin.write(GOOD + b"\n")
    p.stdin.flush()
    time.sleep(2)  # let it start and block on the pipe
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130 and err == b"pyvcore check: interrupted\n"
