"""The lab on real QEMU: boots, status, the CLI, and every way a boot can fail without
leaving a QEMU behind. Needs `pyvcore lab setup` (kernel unpack, patched QEMU)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pyvcore.lab import Lab, LabBusy, LabError, LabNotSetUp
from pyvcore.lab.qemu import acquire_lock, is_qemu_process, pid_alive

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]

# Other engineers' QEMUs on a shared machine: wait for the machine lock rather than fail.
LOCK_WAIT = 600.0


def _require_setup(qemu: str) -> None:
    try:
        Lab("all", qemu=qemu)._prepare()
    except LabNotSetUp as err:
        pytest.skip(f"{err} (the lab tests need `pyvcore lab setup`)")


@pytest.fixture(scope="module", autouse=True)
def lab_is_set_up() -> None:
    _require_setup("stock")


@pytest.fixture
def patched_qemu() -> None:
    _require_setup("patched")


def qemu_children(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split() if is_qemu_process(int(pid))]


def assert_gone(pid: int | None) -> None:
    assert pid is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    assert not pid_alive(pid), f"QEMU pid {pid} is still running"


def assert_lock_released(pid: int) -> None:
    """The machine lock is free, or held by someone else's QEMU (a shared machine), not pid's."""
    try:
        os.close(acquire_lock())
    except LabBusy as busy:
        assert f"pid {pid} " not in str(busy)


def test_lab_boots_all_and_status_has_real_values(patched_qemu: None) -> None:
    with Lab("all", threads=4, qemu="patched", hold=10, lock_wait=LOCK_WAIT) as lab:
        pid = lab.pid
        status = lab.status()
        for key in ("gdb", "vmlinux", "scenario", "qemu", "pid", "console", "modules"):
            assert key in status, key
        assert status["scenario"] == "all" and status["qemu"] == "patched" and status["pid"] == pid
        assert status["ready"] is True and status["run_state"] == "running"
        assert is_qemu_process(pid)
        assert Path(status["vmlinux"]).read_bytes()[:4] == b"\x7fELF"
        assert status["vmlinux"] == str(lab.vmlinux)
        assert "PYVCORE READY scenario=all" in Path(status["console"]).read_text()
        # The gdbstub listens on 127.0.0.1 and accepts a connection.
        host, port = status["gdb"].rsplit(":", 1)
        assert host == "127.0.0.1" and status["gdb"] == lab.gdb_address
        with socket.create_connection((host, int(port)), timeout=5):
            pass
        # QEMU pauses the machine when a gdb client connects: proof the probe reached the stub.
        deadline = time.monotonic() + 10
        while lab.status()["run_state"] != "paused" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lab.status()["run_state"] == "paused"
        lab.resume()
        assert lab.status()["run_state"] == "running"
        # Module sections are kernel addresses (powerpc64: 0xc000...).
        for module in ("kvm", "kvm_hv"):
            for section in (".text", ".data", ".bss"):
                assert status["modules"][module][section] >> 60 == 0xC, (module, section)
            assert Path(status["module_objects"][module]).is_file()
        assert 0 < status["boot_seconds"] < 180
        json.dumps(status)  # the `lab status --json` object
        # After the hold the guest reports per vcpu and powers off; QEMU exits on its own.
        done = lab.wait_for(r"PYVCORE DONE scenario=all status=(\S+)", timeout=120)
        assert done.group(1) == "ok"
        reports = lab.reports()
        assert sorted(r["vcpu"] for r in reports) == [0, 1, 2, 3]
        assert all(r["started"] for r in reports)
        lab.wait_exit(timeout=120)  # /init powers off; OPAL's power-off ends QEMU
        assert not lab.alive() and lab.status()["running"] is False
    assert lab.stopped_by == "guest poweroff"
    assert_gone(pid)
    assert_lock_released(pid)


def test_stock_qemu_hangs_the_vcpus_off_thread_0() -> None:
    """The bug our QEMU patch fixes: on stock QEMU only the vcpu on thread 0 runs."""
    with Lab("all", qemu="stock", hold=0, lock_wait=LOCK_WAIT) as lab:
        status = lab.status()
        assert status["qemu"] == "stock" and status["qemu_binary"] == "/usr/bin/qemu-system-ppc64"
        assert status["ready"] is False
        assert status["stalled"] == [1, 2, 3]
        pid = lab.pid
    assert lab.stopped_by == "qmp quit"  # a clean QMP quit, not a signal
    assert_gone(pid)


def run_cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pyvcore", "lab", *args], capture_output=True, text=True, timeout=timeout
    )


def test_cli_up_status_down_leaves_no_process(patched_qemu: None) -> None:
    up = run_cli("up", "--scenario", "novcpu0", "--wait", str(LOCK_WAIT), timeout=LOCK_WAIT + 400)
    assert up.returncode == 0, up.stderr
    assert "ready in" in up.stderr
    try:
        status = run_cli("status", "--json")
        assert status.returncode == 0, status.stderr
        state = json.loads(status.stdout)
        pid = state["pid"]
        assert is_qemu_process(pid) and state["scenario"] == "novcpu0" and state["ready"]
        assert state["modules"]["kvm_hv"][".text"] >> 60 == 0xC
        # One lab per machine: a second `up`, or a Lab(), is refused and names the running one.
        again = run_cli("up")
        assert again.returncode == 2
        assert f"a lab is already running (pid {pid}" in again.stderr
        with pytest.raises(LabBusy, match=f"already running .*pid {pid}"):
            Lab("all").start()
        human = run_cli("status")
        assert human.returncode == 0 and state["gdb"] in human.stdout
    finally:
        down = run_cli("down")
    assert down.returncode == 0, down.stderr
    assert f"lab stopped (QEMU pid {pid})" in down.stdout
    assert_gone(pid)
    after = run_cli("status", "--json")
    assert after.returncode == 2 and json.loads(after.stdout) == {"running": False}
    assert_lock_released(pid)


def test_busy_gdb_port_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        lab = Lab("all", qemu="stock", gdb_port=port, lock_wait=LOCK_WAIT)
        with pytest.raises(LabError) as err:
            lab.start()
    assert (
        str(err.value)
        == f"gdb port 127.0.0.1:{port} is already in use; pick another or omit it for a free one"
    )
    assert lab.pid is None and qemu_children(os.getpid()) == []


def test_qemu_dying_mid_boot_is_reported_and_reaped() -> None:
    lab = Lab("all", qemu="stock", lock_wait=LOCK_WAIT, log=None)
    killed: list[int] = []

    def kill_once_booting() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            console = lab.console
            if (
                lab.pid
                and console
                and console.exists()
                and "Linux version" in console.read_text(errors="replace")
            ):
                killed.append(lab.pid)
                os.kill(lab.pid, signal.SIGKILL)
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_once_booting)
    killer.start()
    with pytest.raises(LabError) as err:
        lab.start()
    killer.join()
    assert killed, "QEMU never got to the kernel"
    assert str(err.value) == "QEMU died during boot (killed by signal 9)"
    assert err.value.detail.split("console tail:\n", 1)[1].strip()  # the console tail comes with it
    assert_gone(killed[0])
    assert lab.pid is None
    assert_lock_released(killed[0])


def test_hung_boot_is_retried_once_then_fails_with_the_console_tail() -> None:
    # skiboot's PCI probing of the PHBs is seconds of silence: with PHBs (not the lab's
    # default machine) a 1.5 s stall bound calls every boot hung in the firmware stage.
    messages: list[str] = []
    lab = Lab("all", qemu="stock", phbs=True, stall_timeout=1.5, lock_wait=LOCK_WAIT, log=messages.append)
    pids: list[int] = []
    original_boot = lab._boot

    def boot_and_record() -> None:
        try:
            original_boot()
        finally:
            if lab.pid:
                pids.append(lab.pid)

    lab._boot = boot_and_record  # type: ignore[method-assign]
    with pytest.raises(LabError) as err:
        lab.start()
    assert str(err.value).startswith(
        "boot hung 2 times, last in the firmware stage: no console output for 2 s"
    )
    assert "console tail" in err.value.detail
    assert any(m.startswith("boot hung in the firmware stage") and "retrying" in m for m in messages)
    assert [h["stage"] for h in lab.hangs] == ["firmware", "firmware"]
    assert lab.attempts == 2 and len(set(pids)) == 2
    for pid in pids:
        assert_gone(pid)
    assert_lock_released(pid)


CALLER = textwrap.dedent(
    """
    import sys, time
    from pyvcore.lab import Lab
    with Lab("all", qemu="stock", lock_wait=600, log=None) as lab:
        time.sleep(600)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "caller-crash"])
def test_caller_interrupted_or_killed_leaves_no_qemu(sig: int) -> None:
    caller = subprocess.Popen([sys.executable, "-c", CALLER], stderr=subprocess.PIPE, text=True)
    try:
        qemu: list[int] = []
        deadline = time.monotonic() + LOCK_WAIT  # the caller may wait for other QEMUs first
        while not qemu and time.monotonic() < deadline:
            qemu = qemu_children(caller.pid)
            time.sleep(0.2)
        assert qemu, "the caller never started QEMU"
        time.sleep(3)  # into the boot
        caller.send_signal(sig)
        caller.wait(timeout=60)
        assert_gone(qemu[0])
        assert_lock_released(qemu[0])
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
