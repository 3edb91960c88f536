"""Lab's boot, wait and stop paths against a fake QEMU: a script that prints a boot's
console lines. No QEMU, no kernel, and a private lock file instead of the machine's."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import pyvcore.lab as lab_module
from pyvcore.lab import Lab, LabError
from pyvcore.lab.inputs import BootKernel
from pyvcore.lab.qemu import acquire_lock, pid_alive

# Each mode prints these lines, then ends as its last entry says: "sleep" waits to be
# killed, a number exits with that status.
FAKE_QEMU = """\
import sys, time
mode = sys.argv[1]
boot = ["INIT: Starting kernel at 0", "PYVCORE INIT", "PYVCORE KVM"]
lines = {
    "ready": boot + ["PYVCORE READY scenario=all", "PYVCORE DONE scenario=all status=ok", "sleep"],
    "other": boot + ["PYVCORE READY scenario=cede", "sleep"],
    "failed": boot + ["PYVCORE DONE scenario=all status=vcpu-create-failed", "sleep"],
    "stalled": boot + ["PYVCORE STALLED scenario=all waiting=1,2", "sleep"],
    "dies": ["INIT: Starting kernel at 0", "3"],
    "silent": ["sleep"],
}[mode]
for line in lines:
    if line == "sleep":
        time.sleep(300)
    elif line.isdigit():
        print("qemu-system-ppc64: the fake gave up", file=sys.stderr)
        sys.exit(int(line))
    else:
        print(line, flush=True)
        time.sleep(0.05)
"""


@pytest.fixture
def fake_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A factory of Labs whose QEMU is the fake above in a given mode."""
    fake = tmp_path / "qemu-system-ppc64"  # the name is what Lab.stop checks before killing
    fake.write_text(FAKE_QEMU)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lock = tmp_path / "lock"
    monkeypatch.setattr(lab_module, "acquire_lock", lambda wait=0.0: acquire_lock(lock, wait))
    labs: list[Lab] = []

    def make(mode: str, **kwargs: Any) -> Lab:
        monkeypatch.setattr(lab_module, "qemu_command", lambda *a, **k: [sys.executable, str(fake), mode])
        lab = Lab("all", 4, log=None, **kwargs)
        lab._prepared = True
        lab.qemu_binary = lab.vmlinux = lab.initrd = fake
        lab.boot_kernel = BootKernel(vmlinux=fake, modules={}, busybox=fake, label="fake")
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.stop()


def test_a_ready_boot_is_up_waits_for_lines_and_stops_leaving_no_process(fake_lab: Any) -> None:
    lab = fake_lab("ready")
    lab.start()
    pid = lab.pid
    assert pid is not None and lab.alive()
    status = lab.status()
    assert status["ready"] and status["running"] and status["attempts"] == 1
    assert set(status["stages"]) == {"firmware", "kernel", "modules", "vmm"}
    assert lab.wait_for(r"PYVCORE DONE scenario=\S+ status=(\S+)", timeout=10).group(1) == "ok"
    with pytest.raises(LabError, match="timed out after 0 s waiting for 'NEVER'"):
        lab.wait_for("NEVER", timeout=0.2)
    lab.stop()
    assert lab.stopped_by == "SIGTERM"  # the fake has no QMP socket to quit over
    assert not pid_alive(pid) and lab.pid is None and not lab.alive()


def test_a_guest_ready_for_another_scenario_is_refused(fake_lab: Any) -> None:
    lab = fake_lab("other")
    with pytest.raises(LabError, match="READY for scenario 'cede', not 'all'"):
        lab.start()
    assert lab.pid is None


def test_a_guest_that_fails_before_ready_is_an_error_naming_its_status(fake_lab: Any) -> None:
    with pytest.raises(
        LabError, match=r"failed before it was ready: PYVCORE DONE .*status=vcpu-create-failed"
    ):
        fake_lab("failed").start()


def test_stalled_vcpus_leave_the_lab_up(fake_lab: Any) -> None:
    lab = fake_lab("stalled")
    lab.start()
    assert lab.alive() and lab.status()["stalled"] == [1, 2] and not lab.status()["ready"]


def test_qemu_dying_in_boot_names_its_exit_status_and_stderr(fake_lab: Any) -> None:
    with pytest.raises(LabError, match=r"QEMU died during boot \(exit status 3\): .*the fake gave up"):
        fake_lab("dies").start()


def test_a_silent_boot_is_hung_retried_then_refused(fake_lab: Any) -> None:
    lab = fake_lab("silent", stall_timeout=0.5, retries=1)
    started = time.monotonic()
    with pytest.raises(LabError, match="boot hung 2 times, last in the firmware stage: no console output"):
        lab.start()
    assert [h["stage"] for h in lab.hangs] == ["firmware", "firmware"] and time.monotonic() - started < 30
    assert lab.pid is None and not any(p.endswith("qemu-system-ppc64") for p in _children())


def _children() -> list[str]:
    """Command lines of this process's live children."""
    return [" ".join(child.cmdline()) for child in psutil.Process().children() if child.is_running()]
