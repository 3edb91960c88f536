"""Running QEMU powernv8 for the lab: command line, console parsing, the machine lock,
ports, process spawning and QMP.

Everything here except :func:`spawn` and the QMP calls is pure and unit-tested without QEMU.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from pyvcore.errors import PyvcoreError
from pyvcore.lab.guest import ConsoleLog, parse_console

# Re-exported: the lab's process helpers lived here before pyvcore.lab.process.
from pyvcore.lab.process import free_port as free_port
from pyvcore.lab.process import is_qemu_process as is_qemu_process
from pyvcore.lab.process import kill_group, pid_alive, process_cmdline, wait_gone
from pyvcore.lab.process import port_in_use as port_in_use
from pyvcore.lab.process import spawn as spawn

LOCK_FILE = Path("/tmp/pyvcore-qemu.lock")
QEMU_DATA_DIR = Path("/usr/share/qemu")
MACHINE = "powernv8"
CPU = "POWER8"
MEMORY = "2G"
from pyvcore.lab.scenarios import THREAD_CHOICES  # noqa: E402


class LabError(PyvcoreError, RuntimeError):
    """A lab failure with a one-line, user-facing message (plus optional detail lines).

    A :class:`pyvcore.errors.PyvcoreError`: one escaping a command is its one line, exit 2."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class LabBusy(LabError):
    """Another QEMU holds the machine lock."""


# --------------------------------------------------------------------------- command line


def kernel_append(
    scenario: str, hold: int, extra: Sequence[str] = (), start_timeout: float | None = None
) -> str:
    """The kernel command line: hvc0 console plus the keys /init reads (guest/init.sh).

    ``start_timeout``: seconds the guest VMM waits for every vcpu's first run before it
    says STALLED (None: its default, 15 s, 45 s at 8 threads)."""
    keys = ["console=hvc0", f"pyvcore.scenario={scenario}", f"pyvcore.hold={int(hold)}"]
    if start_timeout is not None:
        keys.append(f"pyvcore.start_timeout={int(start_timeout)}")
    return " ".join([*keys, *extra])


def qemu_command(
    qemu: Path | str,
    *,
    vmlinux: Path | str,
    initrd: Path | str,
    threads: int,
    scenario: str,
    hold: int,
    gdb_port: int,
    qmp_socket: Path | str,
    data_dir: Path | str = QEMU_DATA_DIR,
    append_extra: Sequence[str] = (),
    extra: Sequence[str] = (),
    phbs: bool = False,
    start_timeout: float | None = None,
) -> list[str]:
    """The QEMU command line of a lab boot (``start_timeout``: see :func:`kernel_append`).

    One POWER8 core with ``threads`` hardware threads (SMT, hash MMU). The gdbstub listens on
    127.0.0.1 only (``-s`` would listen on every interface and give whoever connects the whole
    machine) and QMP on a unix socket in a private directory. ``extra`` (say ``-plugin
    PATH,k=v``) goes last.

    No PCI host bridges unless ``phbs``: the lab uses no PCI device, and skiboot spends
    about 3.4 s training the links of powernv8's three PHB3s (the stage where boots were
    seen to hang). powernv8 creates its PHBs, its BMC and its PNOR only when defaults are
    enabled (hw/ppc/pnv.c, ``pnv_chip_power8_instance_init``, ``pnv_init``);
    ``-nodefaults`` drops them all, so the BMC simulator and its BT interface are added
    back for OPAL's power-off (``pnv_powerdown_notify``) and the console goes to the
    first serial port explicitly. ``phbs=True`` is the machine as QEMU builds it.
    """
    if threads not in THREAD_CHOICES:
        raise LabError(f"--threads must be one of {', '.join(map(str, THREAD_CHOICES))}, not {threads}")
    machine = (
        ["-nographic"]
        if phbs
        else [
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-device",
            "ipmi-bmc-sim,id=bmc0",
            "-device",
            "isa-ipmi-bt,bmc=bmc0,irq=10",
        ]
    )
    return [
        str(qemu),
        "-L", str(data_dir),
        "-M", MACHINE,
        "-cpu", CPU,
        "-smp", f"{threads},cores=1,threads={threads}",
        "-m", MEMORY,
        *machine,
        "-kernel", str(vmlinux),
        "-initrd", str(initrd),
        "-append", kernel_append(scenario, hold, append_extra, start_timeout),
        "-gdb", f"tcp:127.0.0.1:{gdb_port}",
        "-qmp", f"unix:{qmp_socket},server=on,wait=off",
        *extra,
    ]  # fmt: skip


# --------------------------------------------------------------------------- console


class ConsoleFile:
    """Incremental reader of the console log QEMU writes.

    The PYVCORE lines are parsed by the guest side's own parser
    (:func:`pyvcore.lab.guest.parse_console`), re-run only when new text came."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = ""
        self._offset = 0
        self._parsed = ConsoleLog()
        self._parsed_len = -1

    def poll(self) -> bool:
        """Read what is new; True if anything was."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return False
        if not data:
            return False
        self._offset += len(data)
        self.text += data.decode("utf-8", errors="replace").replace("\r", "")
        return True

    @property
    def lines(self) -> list[str]:
        """Complete lines so far (a trailing partial line is left out)."""
        return self.text.split("\n")[:-1]

    @property
    def parsed(self) -> ConsoleLog:
        """The PYVCORE lines of the complete lines so far, parsed."""
        complete = self.text[: self.text.rfind("\n") + 1]  # a half-written line may hold half an address
        if self._parsed_len != len(complete):
            self._parsed = parse_console(complete)
            self._parsed_len = len(complete)
        return self._parsed

    def wait_for(self, regex: str, timeout: float, alive: Callable[[], bool]) -> re.Match[str]:
        """Wait until a complete line (since the start) matches ``regex``; returns the match.
        ``alive`` says whether QEMU still runs. Raises LabError with the console tail on
        timeout, or when QEMU ended and its last lines do not match."""
        pattern = re.compile(regex)
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            self.poll()
            lines = self.lines
            for index in range(checked, len(lines)):
                if match := pattern.search(lines[index]):
                    return match
            checked = len(lines)
            if not alive():
                self.poll()
                if len(self.lines) > checked:
                    continue
                raise LabError(
                    f"QEMU exited before the console matched {regex!r}", f"console tail:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise LabError(
                    f"timed out after {timeout:.0f} s waiting for {regex!r}", f"console tail:\n{self.tail()}"
                )
            time.sleep(0.1)

    def tail(self, n: int = 25) -> str:
        return "\n".join(self.text.rstrip("\n").split("\n")[-n:])


# --------------------------------------------------------------------------- lock


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: cut at the last space that fits (or mid-word
    when a single word is too long) and ended with "..."."""
    if len(text) <= width:
        return text
    cut = text[: width - 3]
    space = cut.rfind(" ")
    if space > 0:
        cut = cut[:space]
    return cut.rstrip(" ,") + "..."


def lock_holder(lock_file: Path = LOCK_FILE) -> str:
    """A description of who holds the machine lock, for the 'a lab is running' error."""
    pid = None
    try:
        info = json.loads(lock_file.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if isinstance(info, dict) and pid_alive(info.get("pid")):
        pid = info["pid"]
    else:
        info = {}
        pid = _flock_pid_from_proc_locks(lock_file)
    if pid is None:
        return "an unknown process"
    text = f"pid {pid} ({shorten(process_cmdline(pid), 120)})"
    if info.get("scenario"):
        text += f", scenario {info['scenario']}, started by {info.get('owner', '?')}"
    return text


def _flock_pid_from_proc_locks(lock_file: Path) -> int | None:
    """The process holding the lock: /proc/locks names the process that took it (say
    `flock`), which may have exited while a child (say the QEMU it ran) keeps the lock
    open; then look for a live process with the file open, preferring a QEMU."""
    try:
        st = lock_file.stat()
        locks = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in locks.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 12345 08:01:1234567 0 EOF"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{st.st_ino}"):
            try:
                pid = int(fields[4])
            except ValueError:
                continue
            if pid_alive(pid):
                return pid
    openers = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if any(_same_file(f.path, st) for f in proc.open_files()):
                openers.append(proc.pid)
    openers.sort(key=lambda pid: "qemu" not in process_cmdline(pid))
    return openers[0] if openers else None


def _same_file(path: str, st: os.stat_result) -> bool:
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


def _say_on_stderr(message: str) -> None:
    print(f"[lab] {message}", file=sys.stderr, flush=True)


def acquire_lock(
    lock_file: Path | None = None, wait: float = 0.0, say: Callable[[str], None] = _say_on_stderr
) -> int:
    """Take the exclusive machine lock; returns the fd (hand it to QEMU).

    With ``wait`` > 0, keep trying that many seconds (tests sharing a machine); ``say``
    hears one line when the wait starts (naming the holder the lock file records) and
    one when it ends with the lock. Raises LabBusy naming the holder when another QEMU
    (lab or by hand) still has it."""
    lock_file = lock_file or LOCK_FILE  # looked up now: tests point it elsewhere
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    started = time.monotonic()
    deadline = started + wait
    waiting = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with contextlib.suppress(OSError):  # what it records is of a holder now gone
                os.ftruncate(fd, 0)
            if waiting:
                say(f"got the machine lock {lock_file} after waiting {time.monotonic() - started:.0f} s")
            return fd
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise
        if time.monotonic() >= deadline:
            break
        if not waiting:
            waiting = True
            say(
                f"waiting up to {wait:g} s for the machine lock {lock_file}, held by {lock_holder(lock_file)}"
            )
        time.sleep(0.5)
    os.close(fd)
    if waiting:
        raise LabBusy(
            f"the machine lock {lock_file} is still held after waiting {wait:g} s "
            f"({lock_holder(lock_file)}); wait longer with --lock-wait SECONDS"
        )
    raise LabBusy(
        f"a QEMU lab is already running on this machine ({lock_holder(lock_file)}); "
        "wait for it with --lock-wait SECONDS, or, if it is your "
        f"`pyvcore lab up` lab, stop it with `pyvcore lab down`: only one QEMU may hold {lock_file}"
    )


def clear_lock_info(lock_file: Path | None = None) -> bool:
    """Empty the lock file's record of its holder when nobody holds the lock any more
    (taken here for an instant, so a new holder's record is never erased). True when
    the lock was free (and its file, if any, is now empty)."""
    lock_file = lock_file or LOCK_FILE
    try:
        fd = os.open(lock_file, os.O_RDWR)
    except OSError:
        return not lock_file.exists()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass  # informational only (another user's file)
    finally:
        os.close(fd)  # releases the flock
    return True


def write_lock_info(fd: int, info: dict[str, object]) -> None:
    """Record the holder in the lock file (read back by :func:`lock_holder`)."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    except OSError:
        pass  # informational only


def end_qemu(pid: int, proc: subprocess.Popen[bytes] | None, qmp_socket: Path | None) -> str:
    """End a running QEMU and leave no process behind: QMP quit, then SIGTERM, then SIGKILL
    to its process group, each given a few seconds. Returns which one ended it: "qmp quit",
    "SIGTERM" or "SIGKILL"."""
    if (
        qmp_socket is not None
        and qmp_socket.exists()
        and qmp_quit(qmp_socket, 3.0)
        and wait_gone(pid, 5.0, proc)
    ):
        return "qmp quit"
    kill_group(pid, signal.SIGTERM)
    if wait_gone(pid, 3.0, proc):
        return "SIGTERM"
    kill_group(pid, signal.SIGKILL)
    wait_gone(pid, 5.0, proc)
    return "SIGKILL"


# --------------------------------------------------------------------------- QMP


def qmp_execute(socket_path: Path | str, command: str, timeout: float = 5.0) -> object:
    """Run one QMP command over a fresh connection (qemu.qmp's synchronous client) and
    return its answer; raises LabError when QMP does not answer within ``timeout`` s."""
    from qemu.qmp.legacy import QEMUMonitorProtocol

    from pyvcore.errors import describe

    client = QEMUMonitorProtocol(str(socket_path))
    try:
        client.connect()
        client.settimeout(timeout)
        return client.cmd(command)
    except Exception as err:  # ConnectError, ExecuteError, OSError, asyncio.TimeoutError
        raise LabError(f"QMP {command} on {socket_path} failed: {describe(err)}") from err
    finally:
        with contextlib.suppress(Exception):
            client.close()


def qmp_quit(socket_path: Path | str, timeout: float = 5.0) -> bool:
    """Ask QEMU to quit over QMP; True if the request reached QEMU (the caller still
    waits for the process to end: that is the proof). QEMU may close the connection
    before it answers, which counts as reached."""
    from qemu.qmp.legacy import QEMUMonitorProtocol

    client = QEMUMonitorProtocol(str(socket_path))
    try:
        client.connect()
    except Exception:
        return False
    try:
        client.settimeout(timeout)
        client.cmd("quit")
    except Exception:
        pass
    finally:
        with contextlib.suppress(Exception):
            client.close()
    return True
