"""Waiting for the machine lock says so (who holds it, when the wait ends), and the
lock file stops naming its holder once the lock is released."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

import pyvcore.lab.qemu as labqemu
from pyvcore.lab import plugin_build


@contextlib.contextmanager
def held(lock: Path, owner: str) -> Iterator[subprocess.Popen[bytes]]:
    """`flock LOCK sleep 30` holding the lock, its record in the file naming ``owner``."""
    holder = subprocess.Popen(["flock", str(lock), "sleep", "30"], start_new_session=True)
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not _is_held(lock):
            time.sleep(0.05)
        assert _is_held(lock), "flock never took the lock"
        children = psutil.Process(holder.pid).children(recursive=True)  # the `sleep` holding it
        lock.write_text(json.dumps({"pid": holder.pid, "scenario": "cede", "owner": owner}) + "\n")
        yield holder
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
        psutil.wait_procs(children, timeout=10)  # the killed `sleep` has let go of the lock too


def _is_held(lock: Path) -> bool:
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def test_a_wait_says_who_holds_the_lock_and_when_it_got_it(tmp_path: Path) -> None:
    lock = tmp_path / "q.lock"
    said: list[str] = []
    got: list[int] = []
    with held(lock, "test owner") as holder:
        waiter = threading.Thread(target=lambda: got.append(labqemu.acquire_lock(lock, 60, said.append)))
        waiter.start()
        deadline = time.monotonic() + 10
        while not said and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(said) == 1 and not got  # still waiting, and said so once
        os.killpg(holder.pid, signal.SIGKILL)
        waiter.join(30)
    assert len(got) == 1
    os.close(got[0])
    assert said[0].startswith(f"waiting up to 60 s for the machine lock {lock}, held by pid ")
    assert "scenario cede, started by test owner" in said[0]
    assert said[1].startswith(f"got the machine lock {lock} after waiting ") and len(said) == 2


def test_a_wait_that_runs_out_says_so_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = tmp_path / "q.lock"
    with held(lock, "test owner"), pytest.raises(labqemu.LabBusy) as busy:
        labqemu.acquire_lock(lock, wait=1)
    err = capsys.readouterr().err
    assert err.startswith("[lab] waiting up to 1 s for the machine lock") and err.count("\n") == 1
    assert f"the machine lock {lock} is still held after waiting 1 s" in busy.value.message
    assert "started by test owner" in busy.value.message and "--lock-wait SECONDS" in busy.value.message


def test_no_wait_says_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = tmp_path / "q.lock"
    os.close(labqemu.acquire_lock(lock, wait=5))  # free: taken at once, no line
    assert capsys.readouterr().err == ""


def test_the_record_is_cleared_on_release_and_only_then(tmp_path: Path) -> None:
    lock = tmp_path / "q.lock"
    with held(lock, "test owner"):
        assert labqemu.clear_lock_info(lock) is False  # held: the holder's record stays
        assert "test owner" in lock.read_text()
    assert "test owner" in lock.read_text()  # released, not yet cleared
    assert labqemu.clear_lock_info(lock) is True
    assert lock.read_text() == "" and "test owner" not in labqemu.lock_holder(lock)
    assert labqemu.clear_lock_info(tmp_path / "never.lock") is True


def test_stopping_a_lab_clears_the_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyvcore.lab import Lab

    lock = tmp_path / "q.lock"
    monkeypatch.setattr(labqemu, "LOCK_FILE", lock)
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock.write_text(json.dumps({"pid": gone.pid, "owner": "Lab() pid 1"}) + "\n")
    lab = Lab("all", log=None)
    lab.pid = gone.pid  # a QEMU that has ended
    lab.stop()
    assert lock.read_text() == ""


def test_taking_the_lock_forgets_the_last_holder(tmp_path: Path) -> None:
    """A QEMU that ended on its own (--hold) left its record: the next taker drops it
    before writing its own, so the file never names a holder that is gone."""
    lock = tmp_path / "q.lock"
    lock.write_text(json.dumps({"pid": 1, "owner": "a lab that ended"}) + "\n")
    fd = labqemu.acquire_lock(lock)
    try:
        assert lock.read_text() == ""
    finally:
        os.close(fd)


def test_status_names_a_holder_that_lab_up_did_not_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Lab() in a script or a test holds the machine: `lab status` says who, not "no lab"."""
    from pyvcore.cli import main
    from pyvcore.lab import Lab

    lock = tmp_path / "q.lock"
    monkeypatch.setattr(labqemu, "LOCK_FILE", lock)
    monkeypatch.setattr(Lab, "running", classmethod(lambda cls: None))
    monkeypatch.setattr(Lab, "clear_state", staticmethod(lambda: None))
    with held(lock, "Lab() pid 4242 (a test)"):
        assert main(["lab", "status"]) == 2
        err = capsys.readouterr().err
        assert "in use by" in err and "Lab() pid 4242" in err, err
        # an option of the commands that queue, not of `lab status` (which has none)
        assert "`pyvcore lab up --lock-wait SECONDS`" in err and "queue with --lock-wait" not in err, err
        assert main(["lab", "status", "--json"]) == 2
        doc = json.loads(capsys.readouterr().out)
        assert doc["running"] is False and "Lab() pid 4242" in doc["machine_lock_held_by"]
    assert main(["lab", "status"]) == 2
    assert "no lab is running" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command, prefix",
    [
        (["diff", "--scenario", "all"], "pyvcore diff: could not run: "),
        (["trace", "--scenario", "all", "--no-baseline"], "pyvcore trace: could not run: "),
        (["lab", "up"], "pyvcore lab up: a QEMU lab is already running"),
    ],
)
def test_a_busy_lab_with_lock_wait_0_is_one_line_and_exit_2(
    command: list[str],
    prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--lock-wait 0` refuses a busy machine at once: one line naming the holder, exit 2,
    the same words from every command (no lab set up: the inputs are faked, QEMU never runs)."""
    from pyvcore.cli import main
    from pyvcore.lab import Lab

    lock = tmp_path / "q.lock"
    monkeypatch.setattr(labqemu, "LOCK_FILE", lock)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def prepared(lab: Lab) -> None:  # what `lab setup` would have provided
        lab.qemu_binary = lab.vmlinux = lab.initrd = tmp_path / "unused"
        unused = tmp_path / "unused"
        lab.boot_kernel = SimpleNamespace(vmlinux=unused, symbol_file=unused, info={"debug_info": "BTF"})

    monkeypatch.setattr(Lab, "_prepare", prepared)
    monkeypatch.setattr(Lab, "running", classmethod(lambda cls: None))
    monkeypatch.setattr(plugin_build, "ensure_plugin", lambda **kwargs: tmp_path / "plugin.so")
    with held(lock, "a test holding the lab"):
        assert main([*command, "--lock-wait", "0"]) == 2
    lines = capsys.readouterr().err.splitlines()
    # progress lines first (what it was about to do), then the refusal: one line
    assert all(line.startswith(prefix.split(":")[0] + ": ") for line in lines), lines
    assert lines[-1].startswith(prefix) and not any(prefix in line for line in lines[:-1]), lines
    assert "already running on this machine" in lines[-1] and "a test holding the lab" in lines[-1]
    # nothing was logged yet: no `pyvcore-trace-*` (or other) directory is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.lock"]


def test_a_long_holder_command_line_is_cut_between_words() -> None:
    """The busy-lab message quotes the holder's command line cut at a word, with "..."."""
    cmdline = "qemu-system-ppc64 -M powernv8 -smp cores=1,threads=4 -m 4G " + "-append console=hvc0 " * 8
    short = labqemu.shorten(cmdline, 120)
    assert len(short) <= 120 and short.endswith("...")
    kept = short.removesuffix("...")
    assert cmdline.startswith(kept) and cmdline[len(kept)] == " ", short
    assert labqemu.shorten("x" * 200, 120) == "x" * 117 + "..."  # one word: cut where it must
    assert labqemu.shorten("short line", 120) == "short line"
