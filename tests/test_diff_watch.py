"""The watch loop of `pyvcore diff` against a native target and a stand-in pv-watch.

The stand-in is a gdb Python command with pv-watch's interface (``pv-watch on|off
[--log FILE] [--max-stops N]``) that logs one JSON line per
hit of an internal breakpoint and never stops the target (like a watcher that
finds nothing wrong), or stops it at --max-stops / on a "violation".  It checks
that :func:`pyvcore.diff.watch` ends with exactly what was asked for, under
either behaviour, and leaves the target stopped.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from pyvcore.diff import watch
from pyvcore.mi import GdbMI, iter_jsonl

pytestmark = [
    pytest.mark.gdb,
    pytest.mark.skipif(shutil.which("gdb-multiarch") is None, reason="gdb-multiarch is not installed"),
]

SPIN_C = r"""
#include <unistd.h>
volatile unsigned long counter;
void tick(void) { counter++; }
void never(void) { counter = 0; }
int main(void) { for (;;) { tick(); usleep(2000); } }
"""

FAKE_WATCH = textwrap.dedent(
    '''
    import gdb, json

    class _Bp(gdb.Breakpoint):
        def __init__(self, owner):
            super().__init__("tick", internal=True)
            self.owner = owner
        def stop(self):
            return self.owner.hit()

    class FakeWatch(gdb.Command):
        """Stand-in for pv-watch."""
        def __init__(self):
            super().__init__("pv-watch", gdb.COMMAND_USER)
            self.bp = None
        def invoke(self, arg, from_tty):
            argv = gdb.string_to_argv(arg)
            if argv[0] == "off":
                if self.bp is None:
                    raise gdb.GdbError("pv-watch: not on")
                self.bp.delete(); self.bp = None
                return
            self.log = argv[argv.index("--log") + 1]
            self.max = int(argv[argv.index("--max-stops") + 1])
            self.mode = MODE
            self.n = 0
            self.bp = _Bp(self)
        def hit(self):
            self.n += 1
            counter = int(gdb.parse_and_eval("counter"))
            violations = [8] if self.mode == "violation" and self.n % 7 == 0 else []
            with open(self.log, "a") as fh:
                fh.write(json.dumps({"stop": "tick#%d" % self.n, "counter": counter,
                                     "violations": violations}) + "\\n")
            if self.n >= self.max and self.mode == "stop-at-max":
                # Stop and stay quiet; deleting a breakpoint from inside its own
                # stop() crashes gdb 13.1 (SIGSEGV), so `pv-watch off` does it.
                self.mode = "done"
                return True
            if self.mode == "done":
                return False
            return bool(violations)

    FakeWatch()
    '''
)


@pytest.fixture(scope="module")
def spin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spin")
    (out / "spin.c").write_text(SPIN_C)
    subprocess.run(["gcc", "-g", "-O0", "-o", str(out / "spin"), str(out / "spin.c")], check=True)
    return out / "spin"


@pytest.mark.parametrize("mode", ["keep-running", "stop-at-max", "violation"])
def test_watch_logs_exactly_the_requested_stops_and_leaves_target_stopped(
    spin: Path, tmp_path: Path, mode: str
) -> None:
    plugin = tmp_path / "fake_watch.py"
    plugin.write_text(f"MODE = {mode!r}\n" + FAKE_WATCH)
    log = tmp_path / "trace.jsonl"
    with GdbMI(args=[str(spin)]) as gdb:
        gdb.console(f"source {plugin}")
        gdb.execute("-exec-run")
        gdb.poll_events(0.2)
        result = watch(gdb, log, stops=25, deadline_s=30)
        assert not gdb.running
        records = list(iter_jsonl(log))
        if mode == "stop-at-max":
            assert len(records) == 25
        else:
            # The watcher never stops at 25: the driver interrupts once the log
            # is full, so a few more hits may land before the interrupt.
            assert 25 <= len(records) <= 60
        assert result["ended_by"] == "stops"
        counters = [r["counter"] for r in records]
        assert counters == sorted(counters) and len(set(counters)) == len(counters)
        if mode == "violation":
            assert result["target_stops"] >= 3  # stopped at hits 7, 14, 21 and was continued
        # The target is stopped and the driver still in step.
        assert gdb.execute("-data-evaluate-expression counter").message == "done"


def test_watch_deadline_when_no_stop_comes(spin: Path, tmp_path: Path) -> None:
    plugin = tmp_path / "fake_watch.py"
    plugin.write_text("MODE = 'keep-running'\n" + FAKE_WATCH.replace('"tick", internal', '"never", internal'))
    log = tmp_path / "trace.jsonl"
    with GdbMI(args=[str(spin)]) as gdb:
        gdb.console(f"source {plugin}")
        gdb.execute("-exec-run")
        gdb.poll_events(0.2)
        result = watch(gdb, log, stops=5, deadline_s=1.5)
        assert result["ended_by"] == "deadline"
        assert not gdb.running
        assert not log.exists() or not log.read_text().strip()


def test_a_second_phase_appends_its_stops_to_the_same_trace(spin: Path, tmp_path: Path) -> None:
    plugin = tmp_path / "fake_watch.py"
    plugin.write_text("MODE = 'stop-at-max'\n" + FAKE_WATCH)
    log = tmp_path / "trace.jsonl"
    with GdbMI(args=[str(spin)]) as gdb:
        gdb.console(f"source {plugin}")
        gdb.execute("-exec-run")
        gdb.poll_events(0.2)
        assert watch(gdb, log, stops=10, deadline_s=30)["ended_by"] == "stops"
        second = watch(gdb, log, stops=7, deadline_s=30, append=True)
        assert second["ended_by"] == "stops"
        counters = [r["counter"] for r in iter_jsonl(log)]
        assert len(counters) == 17 and counters == sorted(counters)
