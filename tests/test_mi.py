"""Unit tests of the MI driver against local targets (no lab, no QEMU).

A tiny native program compiled here stands in for the lab: it runs until
interrupted and calls a function we can break on, which is all the driver's
target control needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from pyvcore.mi import GdbCommandError, GdbExited, GdbMI, MIError, MITimeout, mi_quote

GDB = shutil.which("gdb-multiarch")
pytestmark = [
    pytest.mark.gdb,
    pytest.mark.skipif(GDB is None, reason="gdb-multiarch is not installed (pyvcore lab setup installs it)"),
]

SPIN_C = r"""
#include <unistd.h>
volatile unsigned long counter;
void tick(void) { counter++; }
int main(void) { for (;;) { tick(); usleep(1000); } }
"""


@pytest.fixture(scope="module")
def spin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: needed to build the native test target")
    out = tmp_path_factory.mktemp("spin")
    (out / "spin.c").write_text(SPIN_C)
    subprocess.run(["gcc", "-g", "-O0", "-o", str(out / "spin"), str(out / "spin.c")], check=True)
    return out / "spin"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (its parent reaps it later).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _inferior_pid(gdb: GdbMI) -> int:
    groups = gdb.execute("-list-thread-groups").payload["groups"]
    return int(groups[0]["pid"])


def test_error_becomes_exception_with_gdbs_message() -> None:
    with GdbMI() as gdb:
        with pytest.raises(GdbCommandError) as exc:
            gdb.console("pv-no-such-command")
        assert 'Undefined command: "pv-no-such-command"' in exc.value.message
        with pytest.raises(GdbCommandError, match="Undefined MI command"):
            gdb.execute("-no-such-mi-command")
        # The driver is still in step after errors.
        assert gdb.console("python print(6 * 7)").console == "42\n"


def test_console_output_collected_whole_and_json_parsed() -> None:
    with GdbMI() as gdb:
        result = gdb.console("python [print(i) for i in range(3000)]")
        assert result.message == "done"
        assert result.console.splitlines() == [str(i) for i in range(3000)]
        doc = gdb.console_json(
            'python import json; print("a header line"); print(json.dumps({"x": [1, 2], "s": "q\\"uote"}))'
        )
        assert doc == {"x": [1, 2], "s": 'q"uote'}
        with pytest.raises(MIError, match="expected one JSON line"):
            gdb.console_json('python print("no json here")')


def test_tokens_increase_and_each_result_matches_its_command() -> None:
    with GdbMI() as gdb:
        first = gdb.console("python print('one')")
        second = gdb.console("python print('two')")
        assert second.token == first.token + 1
        assert (first.console, second.console) == ("one\n", "two\n")


def test_deadline_raises_and_late_output_is_not_mixed_into_the_next_command() -> None:
    with GdbMI() as gdb:
        started = time.monotonic()
        with pytest.raises(MITimeout):
            gdb.console("python import time; time.sleep(1.5); print('late')", timeout=0.3)
        assert time.monotonic() - started < 1.2
        # gdb is still sleeping: the next command waits for it, and gets only its own output.
        after = gdb.console("python print('mine')", timeout=10)
        assert after.console == "mine\n"
        assert "late" not in after.console


def test_gdb_dying_is_reported() -> None:
    with GdbMI() as gdb, pytest.raises(GdbExited):
        gdb.console("python import os; os._exit(3)", timeout=10)


def test_missing_gdb_binary_is_a_clear_error() -> None:
    with pytest.raises(MIError, match="not found"):
        GdbMI("/nonexistent/gdb-multiarch")


def test_mi_quote_escapes() -> None:
    assert mi_quote('a "b" \\c') == '"a \\"b\\" \\\\c"'


def test_interrupt_continue_and_breakpoint_stop(spin: Path) -> None:
    with GdbMI(args=[str(spin)]) as gdb:
        with pytest.raises(MIError, match="not running"):
            gdb.interrupt()
        assert gdb.execute("-exec-run").message == "running"
        time.sleep(0.3)
        stop = gdb.interrupt(timeout=10)
        assert stop["reason"] == "signal-received"
        assert stop["signal-name"] in ("SIGINT", "SIGTRAP", "0")
        # (The counter may still be 0 on a loaded machine: only the stops below count.)
        before = int(gdb.execute("-data-evaluate-expression counter").payload["value"])

        gdb.execute("-break-insert tick")
        stop = gdb.cont(timeout=10)
        assert stop["reason"] == "breakpoint-hit"
        assert stop["frame"]["func"] == "tick"
        stop = gdb.cont(timeout=10)
        assert stop["reason"] == "breakpoint-hit"
        after = int(gdb.execute("-data-evaluate-expression counter").payload["value"])
        assert after == before + 1  # exactly one more tick() ran between the two stops

        gdb.execute("-break-delete")
        gdb.cont(wait=False)
        with pytest.raises(MITimeout):
            gdb.wait_for_stop(timeout=0.3)  # running freely: no stop comes
        assert gdb.interrupt(timeout=10)["reason"] == "signal-received"


def test_cleanup_after_a_failing_test_body_leaves_no_process(spin: Path) -> None:
    pids = {}
    with pytest.raises(RuntimeError, match="test body failed"), GdbMI(args=[str(spin)]) as gdb:
        gdb.execute("-exec-run")
        time.sleep(0.2)
        gdb.interrupt(timeout=10)
        pids = {"gdb": gdb.process.pid, "inferior": _inferior_pid(gdb)}
        gdb.cont(wait=False)  # leave the inferior running on purpose
        raise RuntimeError("test body failed")
    assert pids and all(pid > 0 for pid in pids.values())
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pids["gdb"])
    assert not _alive(pids["inferior"])


def test_hung_gdb_is_killed_on_close() -> None:
    gdb = GdbMI()
    with pytest.raises(MITimeout):
        # gdb ignores -gdb-exit while Python blocks; close() must still end it.
        gdb.console("python import time; time.sleep(60)", timeout=0.2)
    started = time.monotonic()
    gdb.close(timeout=1.0)
    assert gdb.process.poll() is not None
    assert time.monotonic() - started < 5


def test_inferior_exit_ends_a_wait_for_stop(tmp_path: Path) -> None:
    src = tmp_path / "short.c"
    src.write_text("#include <unistd.h>\nint main(void) { usleep(200000); return 0; }\n")
    subprocess.run(["gcc", "-o", str(tmp_path / "short"), str(src)], check=True)
    with GdbMI(args=[str(tmp_path / "short")]) as gdb:
        gdb.execute("-exec-run")
        stop = gdb.wait_for_stop(timeout=10)
        assert stop["reason"] in ("exited-normally", "thread-group-exited")
        assert gdb.target_exited and not gdb.running
        with pytest.raises(GdbCommandError, match="not being run"):
            gdb.execute("-exec-continue")
