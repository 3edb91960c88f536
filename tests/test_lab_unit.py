"""Pure parts of the lab: command line, console parsing, cache keys, apt planning, the lock.
No QEMU needed."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyvcore.lab import SCENARIOS, Lab, LabError, LabNotSetUp
from pyvcore.lab import inputs as labinputs
from pyvcore.lab import qemu as labqemu
from pyvcore.lab.cache import KernelManifest, qemu_build_key, qemu_patches


def test_qemu_command_is_powernv8_smt_with_local_only_gdbstub(tmp_path: Path) -> None:
    cmd = labqemu.qemu_command(
        "/opt/q/qemu-system-ppc64",
        vmlinux="/k/vmlinux",
        initrd="/k/initrd.gz",
        threads=4,
        scenario="novcpu0",
        hold=30,
        gdb_port=4321,
        qmp_socket=tmp_path / "qmp.sock",
    )
    assert cmd[0] == "/opt/q/qemu-system-ppc64"
    assert cmd[cmd.index("-M") + 1] == "powernv8"
    assert cmd[cmd.index("-cpu") + 1] == "POWER8"
    assert cmd[cmd.index("-smp") + 1] == "4,cores=1,threads=4"
    assert cmd[cmd.index("-L") + 1] == "/usr/share/qemu"
    assert cmd[cmd.index("-kernel") + 1] == "/k/vmlinux"
    assert cmd[cmd.index("-initrd") + 1] == "/k/initrd.gz"
    append = cmd[cmd.index("-append") + 1].split()
    assert append[0] == "console=hvc0"
    assert "pyvcore.scenario=novcpu0" in append and "pyvcore.hold=30" in append
    assert not any(a.startswith("pyvcore.start_timeout=") for a in append)  # the VMM's default
    slow = labqemu.kernel_append("cede", 3, ("quiet",), start_timeout=45.0).split()
    assert slow == [
        "console=hvc0",
        "pyvcore.scenario=cede",
        "pyvcore.hold=3",
        "pyvcore.start_timeout=45",
        "quiet",
    ]
    # Never -s (all interfaces); the gdbstub and QMP are reachable only locally.
    assert "-s" not in cmd
    assert cmd[cmd.index("-gdb") + 1] == "tcp:127.0.0.1:4321"
    assert cmd[cmd.index("-qmp") + 1] == f"unix:{tmp_path / 'qmp.sock'},server=on,wait=off"
    # No PHBs by default: -nodefaults, with the BMC added back for OPAL's power-off.
    assert "-nodefaults" in cmd and "-nographic" not in cmd
    assert cmd[cmd.index("-serial") + 1] == "stdio"
    devices = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-device"]
    assert devices == ["ipmi-bmc-sim,id=bmc0", "isa-ipmi-bt,bmc=bmc0,irq=10"]
    with_phbs = labqemu.qemu_command(
        "q", vmlinux="v", initrd="i", threads=8, scenario="all", hold=0, gdb_port=1, qmp_socket="s", phbs=True
    )
    assert "-nographic" in with_phbs and "-nodefaults" not in with_phbs and "-device" not in with_phbs
    plugin = labqemu.qemu_command(
        "q",
        vmlinux="v",
        initrd="i",
        threads=4,
        scenario="all",
        hold=0,
        gdb_port=1,
        qmp_socket="s",
        extra=["-plugin", "/p.so,a=1"],
    )
    assert plugin[-2:] == ["-plugin", "/p.so,a=1"]


def test_qemu_command_rejects_odd_thread_counts() -> None:
    with pytest.raises(LabError, match="threads"):
        labqemu.qemu_command(
            "q", vmlinux="v", initrd="i", threads=3, scenario="all", hold=0, gdb_port=1, qmp_socket="s"
        )


def test_console_file_reads_incrementally_and_parses_pyvcore_lines(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    reader = labqemu.ConsoleFile(log)
    assert reader.poll() is False  # QEMU has not created it yet
    text = (
        "[    1.000] random kernel line\r\n"
        "PYVCORE MODULE kvm .text 0xc008000000010000\r\n"
        "PYVCORE MODULE kvm_hv .text 0xc0080000001a0000\r\n"
        "PYVCORE MODULE kvm_hv .data 0xc0080000001f0000\r\n"
        "[   12.5] kernel noise PYVCORE READY scenario=all\r\n"
        'PYVCORE REPORT {"vcpu": 1, "tir": 1}\r\n'
        "PYVCORE DONE scenario=all status=error reason=stalled\r\n"
        "partial"
    )
    for i in range(0, len(text), 7):  # QEMU writes in arbitrary chunks
        with open(log, "a") as fh:
            fh.write(text[i : i + 7])
        reader.poll()
        if i < 60:
            assert reader.parsed.modules == {}
    assert reader.poll() is False
    console = reader.parsed
    assert console.modules == {
        "kvm": {".text": 0xC008000000010000},
        "kvm_hv": {".text": 0xC0080000001A0000, ".data": 0xC0080000001F0000},
    }
    assert console.ready == "all"
    assert console.reports == [{"vcpu": 1, "tir": 1}]
    assert console.done["status"] == "error" and console.done["reason"] == "stalled"
    assert reader.lines[0] == "[    1.000] random kernel line"
    assert reader.lines[-1].startswith("PYVCORE DONE")
    assert reader.tail(1) == "partial"


def test_qemu_build_key_follows_patch_bytes_order_and_version(tmp_path: Path) -> None:
    a = tmp_path / "0001-a.patch"
    b = tmp_path / "0002-b.patch"
    a.write_text("one\n")
    b.write_text("two\n")
    base = qemu_build_key(qemu_patches(tmp_path), "1:10.0.2+ds-2")
    assert [p.name for p in qemu_patches(tmp_path)] == ["0001-a.patch", "0002-b.patch"]
    assert base == qemu_build_key([a, b], "1:10.0.2+ds-2")
    assert base != qemu_build_key([b, a], "1:10.0.2+ds-2")
    assert base != qemu_build_key([a, b], "1:10.0.3+ds-1")
    b.write_text("two!\n")
    assert base != qemu_build_key(qemu_patches(tmp_path), "1:10.0.2+ds-2")
    (tmp_path / "notes.txt").write_text("not a patch")
    assert len(qemu_patches(tmp_path)) == 2


def test_shipped_patch_touches_lpidr_and_sdr1() -> None:
    patches = qemu_patches()
    assert patches, "pyvcore/lab/qemu-patches/ must hold our QEMU patch series"
    text = patches[0].read_text()
    assert "+++ b/target/ppc/misc_helper.c" in text
    assert "THREAD_SIBLING_FOREACH" in text and "async_run_on_cpu" in text
    assert "helper_store_lpidr" in text and "helper_store_sdr1" in text


def test_bad_scenario_is_one_clear_line() -> None:
    with pytest.raises(LabError) as err:
        Lab(scenario="nosuch")
    message = str(err.value)
    assert "\n" not in message and "'nosuch'" in message
    assert all(name in message for name in SCENARIOS)
    with pytest.raises(LabError, match="qemu must be"):
        Lab(qemu="upstream")


def test_missing_setup_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert KernelManifest.load() is None
    with pytest.raises(LabNotSetUp) as err:
        Lab("all").start()
    message = str(err.value)
    assert "\n" not in message
    assert "kernel" in message and "run `pyvcore lab setup`" in message


def test_cli_bad_scenario_exit_status_and_single_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pyvcore", "lab", "up", "--scenario", "nosuch"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith(
        "pyvcore lab up: argument --scenario: invalid choice: 'nosuch' (choose from"
    )


def test_lock_busy_names_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "q.lock"
    holder = subprocess.Popen(["flock", str(lock), "sleep", "30"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until `flock` really holds it
            if lock.exists():
                fd = os.open(lock, os.O_RDONLY)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except OSError:
                    break
                finally:
                    os.close(fd)
            time.sleep(0.05)
        with pytest.raises(labqemu.LabBusy) as err:
            labqemu.acquire_lock(lock)
        assert "already running" in str(err.value) and "pyvcore lab down" in str(err.value)
        assert "--lock-wait SECONDS" in str(err.value)
        assert f"pid {holder.pid} (flock" in str(err.value)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # flock and the sleep holding the lock
        holder.wait()
    time.sleep(0.2)
    fd = labqemu.acquire_lock(lock)
    os.close(fd)


def test_port_helpers() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert labqemu.port_in_use(port)
    port = labqemu.free_port()
    assert not labqemu.port_in_use(port)


def test_lock_holder_found_when_the_locker_exited(tmp_path: Path) -> None:
    """`flock LOCK qemu...` by hand: if flock itself dies, the child still holds the lock."""
    lock = tmp_path / "q.lock"
    holder = subprocess.Popen(["flock", str(lock), "sleep", "30"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "sleep" not in labqemu.lock_holder(lock):
            time.sleep(0.05)
        holder.kill()  # only flock: `sleep` keeps the locked descriptor
        holder.wait()
        with pytest.raises(labqemu.LabBusy, match=r"pid \d+ \(sleep 30\)"):
            labqemu.acquire_lock(lock)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(holder.pid, signal.SIGKILL)


def test_cli_up_without_setup_is_one_line(tmp_path: Path) -> None:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "pyvcore", "lab", "up"], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("pyvcore lab up: lab not set up: missing the kernel unpack")
    assert proc.stderr.rstrip().endswith("run `pyvcore lab setup`")


def test_status_and_down_of_a_detached_lab_from_its_state_file(tmp_path: Path) -> None:
    """`lab status`/`lab down` work from the state `lab up` leaves (a stand-in QEMU: no QMP
    socket, so `down` falls back to signals and must still leave no process)."""
    fake_qemu = tmp_path / "qemu-system-ppc64"
    fake_qemu.write_bytes(Path("/bin/sleep").read_bytes())
    fake_qemu.chmod(0o755)
    proc = subprocess.Popen([str(fake_qemu), "300"], start_new_session=True)
    console = tmp_path / "console.log"
    console.write_text("PYVCORE MODULE kvm_hv .text 0xc0080000001a0000\nPYVCORE READY scenario=sparse\n")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    state = tmp_path / "cache" / "pyvcore" / "lab" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(
        json.dumps(
            {
                "pid": proc.pid,
                "gdb_port": 1234,
                "vmlinux": "/k/vmlinux",
                "console": str(console),
                "run_dir": str(tmp_path),
                "qmp": str(tmp_path / "qmp" / "qmp.sock"),
                "qemu_binary": str(fake_qemu),
                "scenario": "sparse",
                "threads": 4,
                "qemu": "stock",
                "hold": 0,
                "boot_seconds": 17.5,
                "attempts": 1,
                "started_at": "now",
            }
        )
    )

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pyvcore", "lab", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    try:
        status = cli("status", "--json")
        assert status.returncode == 0, status.stderr
        data = json.loads(status.stdout)
        assert data["pid"] == proc.pid and data["gdb"] == "127.0.0.1:1234" and data["scenario"] == "sparse"
        assert data["modules"] == {"kvm_hv": {".text": 0xC0080000001A0000}} and data["ready"] is True
        human = cli("status")
        assert "module kvm_hv  .text=0xc0080000001a0000" in human.stdout
        down = cli("down")
        assert down.returncode == 0 and f"lab stopped (QEMU pid {proc.pid})" in down.stdout
        assert proc.wait(timeout=10) == -signal.SIGTERM
        assert not state.exists()
        # Another program's lab may hold the machine meanwhile (status names it then).
        after = json.loads(cli("status", "--json").stdout)
        assert after["running"] is False and set(after) <= {"running", "machine_lock_held_by"}
        assert cli("down").stdout.strip() == "no lab is running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_missing_patched_qemu_and_skiboot_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel unpack alone is not a set-up lab: the patched QEMU build and qemu-system-data's
    skiboot are named, with the fix."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    files = {name: tmp_path / name for name in ("vmlinux", "kvm.ko", "kvm-hv.ko", "busybox")}
    for path in files.values():
        path.write_bytes(b"\x7fELF")
    KernelManifest(
        package="linux-image-x",
        version="1",
        vmlinux=str(files["vmlinux"]),
        modules={"kvm": str(files["kvm.ko"]), "kvm_hv": str(files["kvm-hv.ko"])},
        busybox=str(files["busybox"]),
        busybox_version="1",
    ).save()
    assert KernelManifest.load() is not None
    monkeypatch.setattr(labinputs, "QEMU_DATA_DIR", tmp_path / "no-qemu-data")
    with pytest.raises(LabNotSetUp) as err:
        Lab("all", qemu="patched").start()
    message = str(err.value)
    assert "kernel unpack" not in message
    assert "skiboot.lid (qemu-system-data)" in message
    assert "the patched QEMU for the current patch series" in message and str(tmp_path) in message
    assert message.endswith("run `pyvcore lab setup`")


def test_vcpus_get_longer_to_start_only_when_tcg_runs_slow() -> None:
    from pyvcore.lab import Lab

    assert Lab("cede")._start_timeout() is None
    assert Lab("cede", plugin=("/p/libplugin.so", {}))._start_timeout() == 45.0
    assert Lab("all", threads=8, paused=True)._start_timeout() == 135.0


def test_stopping_a_detached_lab_returns_once_qemu_is_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lab down` of a QEMU that is not our child: it returns when the process is gone, not
    while it is still listed <defunct> (here its parent, this test, reaps it after 0.5 s)."""
    import threading

    import psutil

    monkeypatch.setattr(labqemu, "LOCK_FILE", tmp_path / "q.lock")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.01)
    reaper = threading.Timer(0.5, lambda: os.waitpid(child.pid, 0))
    reaper.start()
    lab = Lab("cede")
    lab.pid = child.pid
    t0 = time.monotonic()
    lab.stop()
    took = time.monotonic() - t0
    reaper.join()
    assert took >= 0.4, took
    assert lab.stopped_by == "exited" and lab.pid is None
    child.returncode = 0  # reaped by the timer, not by Popen
