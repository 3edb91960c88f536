"""The processes and ports of a lab run: QEMU started in its own process group, found again
by pid (guarded against pid reuse), signalled as a group and waited for; free TCP ports for
its gdbstub. Nothing here knows QEMU's command line or the machine lock.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import psutil


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on host right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def pid_alive(pid: object) -> bool:
    """True when ``pid`` is a live process (a zombie counts as dead)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # exists, but not ours to inspect


def process_cmdline(pid: int) -> str:
    """The command line of ``pid`` as one string ("?" when it cannot be read)."""
    try:
        return " ".join(psutil.Process(pid).cmdline()).strip() or "?"
    except psutil.Error:
        return "?"


def is_qemu_process(pid: int) -> bool:
    """pid is alive and is a qemu-system-ppc64 (guards against pid reuse)."""
    return pid_alive(pid) and "qemu-system-ppc64" in process_cmdline(pid)


_PR_SET_PDEATHSIG = 1


def _child_setup(detached: bool, parent_pid: int) -> None:
    """Runs in the child between fork and exec."""
    if detached:
        os.setsid()  # survives the CLI; Ctrl-C in the terminal does not reach it
        return
    os.setpgid(0, 0)  # own process group: Ctrl-C goes to the caller, which stops QEMU cleanly
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the caller died before prctl took effect
        os._exit(1)


def spawn(
    cmd: Sequence[str], *, console: Path, stderr: Path, lock_fd: int, detached: bool
) -> subprocess.Popen[bytes]:
    """Start QEMU in its own process group, holding the machine lock through ``lock_fd``.

    Not detached: QEMU gets SIGKILL when the calling thread dies (PR_SET_PDEATHSIG).
    Detached (`lab up`): its own session, outliving the caller."""
    parent = os.getpid()
    with open(console, "wb") as out, open(stderr, "wb") as err:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            pass_fds=(lock_fd,),
            preexec_fn=lambda: _child_setup(detached, parent),
        )


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal QEMU's process group (it is its own leader), falling back to the pid."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def wait_reaped(pid: int, timeout: float) -> bool:
    """Wait until ``pid``, ended, is no longer listed: a QEMU that is not our child (`lab up`
    detached it) stays a zombie until its parent (init, or a subreaper) reaps it.  True once
    it is gone (or the pid is another, live process's again), False if still a zombie after
    ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def wait_gone(pid: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Wait until pid has exited (reaping it when it is our child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return True
        elif not pid_alive(pid):
            return True
        time.sleep(0.05)
    return proc.poll() is not None if proc is not None else not pid_alive(pid)
