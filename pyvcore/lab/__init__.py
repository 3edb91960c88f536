"""The lab: a real POWER8 KVM-HV host (a Debian kernel or yours, kvm-hv) on QEMU powernv8.

Python API::

    from pyvcore.lab import Lab
    with Lab(scenario="all", threads=4, qemu="patched",   # or "stock", or a QEMU's path
             kernel=None,        # None: setup's default; "7.2", "6.1", ...; or a vmlinux path
             modules=None,       # a directory with kvm.ko/kvm-hv.ko replacing the kernel's
             symbols=None,       # the debug image (DWARF) of a kernel path with neither BTF nor DWARF
             plugin=None,        # (path, {"key": "value"}): a TCG plugin, -plugin path,key=value
             ) as lab:
        lab.gdb_address        # "127.0.0.1:PORT" (gdbstub, localhost only)
        lab.vmlinux            # Path of the vmlinux with the booted kernel's symbols
        lab.console            # Path of the console log
        lab.status()           # the `pyvcore lab status --json` object
        lab.reports()          # PYVCORE REPORT objects parsed from the console
        lab.wait_for(r"PYVCORE DONE", timeout=60)

`pyvcore lab up` starts the same thing detached (state in the cache dir) and
``Lab.running()`` gives a handle on it.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from pyvcore.lab.boot import BootHung, StageTracker, wait_ready
from pyvcore.lab.cache import new_run_dir, state_file
from pyvcore.lab.inputs import QEMU_KINDS, BootKernel, LabNotSetUp, is_path_like
from pyvcore.lab.prepare import prepare
from pyvcore.lab.process import (
    free_port,
    is_qemu_process,
    port_in_use,
    process_cmdline,
    spawn,
    wait_gone,
    wait_reaped,
)
from pyvcore.lab.qemu import (
    ConsoleFile,
    LabBusy,
    LabError,
    acquire_lock,
    clear_lock_info,
    end_qemu,
    qemu_command,
    qmp_execute,
    qmp_quit,
    write_lock_info,
)
from pyvcore.lab.scenarios import SCENARIOS, THREAD_CHOICES

__all__ = ["QEMU_KINDS", "SCENARIOS", "Lab", "LabBusy", "LabError", "LabNotSetUp"]

# Seen: 12-26 s from QEMU start to READY. A boot not ready after BOOT_TIMEOUT is hung; a
# stalled stage is found much sooner (pyvcore.lab.boot).
BOOT_TIMEOUT = 180.0
# Seconds between the guest's PYVCORE POWEROFF line and a QMP quit (OPAL power-off takes < 1 s).
POWEROFF_GRACE = 2.0


def _log(message: str) -> None:
    print(f"[lab] {message}", file=sys.stderr, flush=True)


def _refuse_arguments(scenario: str, threads: int, qemu: str | os.PathLike[str], hold: int) -> None:
    """LabError for a scenario, thread count, QEMU or hold that no boot can take."""
    if scenario not in SCENARIOS:
        raise LabError(f"unknown scenario {scenario!r}; choose one of: {', '.join(SCENARIOS)}")
    if threads not in THREAD_CHOICES:
        raise LabError(f"threads must be one of {', '.join(map(str, THREAD_CHOICES))}, not {threads}")
    if not isinstance(qemu, os.PathLike) and qemu not in QEMU_KINDS and "/" not in qemu:
        raise LabError(f"qemu must be 'patched', 'stock' or the path of a qemu-system-ppc64, not {qemu!r}")
    if hold < 0:
        raise LabError(f"hold must be >= 0 seconds, not {hold}")


class Lab:
    """One QEMU powernv8 boot of the lab (see the module docstring).

    ``hold`` is the guest's pyvcore.hold (seconds the scenario runs before it reports and
    powers off; 0 = until the lab is stopped). ``lock_wait``: seconds to wait for another
    QEMU to release the machine lock (default: fail at once). ``detached`` is for
    `pyvcore lab up`: QEMU outlives this process and its state goes to the cache dir.

    Not detached, QEMU is killed when the thread that started it ends (PR_SET_PDEATHSIG acts
    on the parent *thread*): start a Lab from a thread that outlives its use.
    """

    def __init__(
        self,
        scenario: str = "all",
        threads: int = 4,
        qemu: str | os.PathLike[str] = "patched",
        hold: int = 0,
        *,
        kernel: str | os.PathLike[str] | None = None,
        modules: str | os.PathLike[str] | None = None,
        symbols: str | os.PathLike[str] | None = None,
        plugin: tuple[str | os.PathLike[str], dict[str, str]] | None = None,
        gdb_port: int | None = None,
        boot_timeout: float = BOOT_TIMEOUT,
        stall_timeout: float | None = None,
        retries: int = 1,
        lock_wait: float = 0.0,
        detached: bool = False,
        append: tuple[str, ...] = (),
        log: Callable[[str], None] | None = _log,
        probe: bool = True,
        phbs: bool = False,
        judge_hang: bool = False,
        paused: bool = False,
        name_gdb: bool = True,
    ) -> None:
        _refuse_arguments(scenario, threads, qemu, hold)
        self.scenario = scenario
        self.threads = threads
        self.qemu = os.fspath(qemu)
        self.kernel = None if kernel is None else os.fspath(kernel)
        self.modules = None if modules is None else os.fspath(modules)
        self.symbols = None if symbols is None else os.fspath(symbols)
        self.plugin = plugin
        self.probe = probe
        self.phbs = phbs
        # A boot stalled in the vmm stage (kvm-hv loaded, the guest's vcpus started) is
        # the kernel under test hanging, not a lab fault: with judge_hang it is neither
        # retried nor stopped; `hung` says so and the machine stays up for gdb to judge.
        self.judge_hang = judge_hang
        self.hung: dict[str, Any] | None = None
        # QEMU starts stopped (-S) and start() returns once it runs, without waiting for
        # READY: a debugger attaches before the first instruction, so the kernel is watched
        # from its boot (a kvm-hv that crashes or hangs on its first vcore run included).
        self.paused = paused
        self.name_gdb = name_gdb  # the ready line names the gdbstub (not for `pyvcore trace`)
        self.qemu_probe: dict[str, Any] | None = None
        self.hold = int(hold)
        self.requested_gdb_port = gdb_port
        self.boot_timeout = boot_timeout
        self.stall_timeout = stall_timeout
        self.retries = retries
        self.lock_wait = lock_wait
        self.detached = detached
        self.append = tuple(append)
        self._log = log or (lambda message: None)

        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self.gdb_port: int | None = None
        self.vmlinux: Path | None = None
        self.console: Path | None = None
        self.run_dir: Path | None = None
        self.qmp_socket: Path | None = None
        self.qemu_binary: Path | None = None
        self.initrd: Path | None = None
        self.boot_kernel: BootKernel | None = None
        self.hangs: list[dict[str, Any]] = []  # one per hung attempt: stage, reason
        self._stages: StageTracker | None = None
        self._plugin_args: list[str] = []
        self._prepared = False
        self.qemu_kind: str | None = None
        self.boot_seconds: float | None = None
        self.attempts = 0
        self.stopped_by: str | None = None
        self.started_at: str | None = None
        self._reader: ConsoleFile | None = None
        self._qmp_dir: Path | None = None
        self._atexit = False

    # ----------------------------------------------------------------- public API

    @property
    def gdb_address(self) -> str:
        if self.gdb_port is None:
            raise LabError("the lab is not running")
        return f"127.0.0.1:{self.gdb_port}"

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.stop()

    def start(self) -> Lab:
        """Boot until the guest prints ``PYVCORE READY`` (retrying a hung boot)."""
        if not self._prepared:
            self.prepare()
        for attempt in range(1, self.retries + 2):
            self.attempts = attempt
            try:
                self._boot()
                return self
            except BootHung as hung:
                self.hangs.append({"stage": hung.stage, "reason": hung.reason, "attempt": attempt})
                if self.judge_hang and hung.stage == "vmm" and self.alive():
                    self.hung = self.hangs[-1]
                    self._log(f"boot hung in the {hung}: kept up to be judged")
                    return self
                self.stop()
                if attempt > self.retries:
                    raise LabError(
                        f"boot hung {attempt} times, last in the {hung}", f"console tail:\n{hung.tail}"
                    ) from None
                self._log(f"boot hung in the {hung}; retrying")
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Quit QEMU (QMP quit, then signals) and leave no process behind. Idempotent.

        ``stopped_by`` then says how: "qmp quit", "SIGTERM", "SIGKILL", or "guest poweroff"
        / "exited" when QEMU had already ended."""
        pid, proc = self.pid, self.proc
        if pid is not None and (proc is None or proc.poll() is None) and is_qemu_process(pid):
            self.stopped_by = end_qemu(pid, proc, self.qmp_socket)
        elif pid is not None:
            done = self._reader.parsed.powered_off if self._reader else False
            self.stopped_by = "guest poweroff" if done else "exited"
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        elif pid is not None:  # not our child (`lab down` of a detached lab): gone, not <defunct>
            wait_reaped(pid, 10.0)
        if pid is not None:
            clear_lock_info()  # QEMU held the machine lock: its file no longer names it
        self.proc = None
        self.pid = None
        self.gdb_port = None
        if self._qmp_dir is not None:
            shutil.rmtree(self._qmp_dir, ignore_errors=True)
            self._qmp_dir = None
            self.qmp_socket = None

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and is_qemu_process(self.pid)

    def status(self) -> dict[str, Any]:
        """The `lab status --json` object: what gdb and `diff` are handed (every field: docs/lab.md, "Boots")."""
        reader = self._poll()
        console = reader.parsed if reader else None
        bk = self.boot_kernel
        run_state = None
        if self.alive() and self.qmp_socket is not None:
            try:
                answer = qmp_execute(self.qmp_socket, "query-status", timeout=3.0)
                run_state = answer.get("status") if isinstance(answer, dict) else None
            except LabError as err:
                run_state = f"unknown ({err})"
        return {
            "gdb": self.gdb_address if self.gdb_port else None,
            "vmlinux": str(self.vmlinux) if self.vmlinux else None,
            "scenario": self.scenario,
            "qemu": self.qemu,
            "pid": self.pid,
            "console": str(self.console) if self.console else None,
            "modules": console.modules if console else {},
            "module_objects": {k: str(v) for k, v in bk.modules.items()} if bk else {},
            "threads": self.threads,
            "hold": self.hold,
            "running": self.alive(),
            "run_state": run_state,
            "ready": bool(console and console.ready),
            "stalled": console.stalled if console else None,
            "done": console.done if console else None,
            "boot_seconds": self.boot_seconds,
            "attempts": self.attempts,
            "hangs": self.hangs,
            "hung": self.hung,
            "stages": self._stages.durations() if self._stages else {},
            "started_at": self.started_at,
            "qmp": str(self.qmp_socket) if self.qmp_socket else None,
            "qemu_binary": str(self.qemu_binary) if self.qemu_binary else None,
            "kernel": bk.label if bk else None,
            "kernel_name": self.kernel if self.kernel and not is_path_like(self.kernel) else None,
            "kernel_version": bk.version if bk else None,
            "kernel_info": bk.info if bk else {},
            "qemu_kind": self.qemu_kind,
            "qemu_probe": self.qemu_probe,
            "plugin": self._plugin_text(),
            "run_dir": str(self.run_dir) if self.run_dir else None,
        }

    def resume(self) -> None:
        """Let the machine run again (QMP ``cont``). QEMU pauses it whenever a client connects
        to the gdbstub; a gdb that detaches resumes it, one that dies or a bare TCP probe
        leaves it paused (``status()["run_state"] == "paused"``)."""
        if not self.alive() or self.qmp_socket is None:
            raise LabError("the lab is not running")
        qmp_execute(self.qmp_socket, "cont")

    def wait_exit(self, timeout: float = 60.0) -> None:
        """Wait until the guest has powered off and QEMU has ended.

        Once the guest printed its last line (``PYVCORE POWEROFF``) QEMU is asked to quit
        over QMP after POWEROFF_GRACE seconds, so the end does not depend on OPAL's
        power-off reaching QEMU (it needs the machine's BMC)."""
        if self.pid is None:
            return
        deadline = time.monotonic() + timeout
        off_at: float | None = None
        while not wait_gone(self.pid, 0.2, self.proc):
            reader = self._poll()
            now = time.monotonic()
            if off_at is None and reader is not None and reader.parsed.powered_off:
                off_at = now
            sock = self.qmp_socket
            quit_now = off_at is not None and now - off_at > POWEROFF_GRACE and sock is not None
            if quit_now and sock and qmp_quit(sock, 3.0) and wait_gone(self.pid, 5.0, self.proc):
                return
            if now > deadline:
                tail = reader.tail() if reader else ""
                raise LabError(f"QEMU still running {timeout:.0f} s later", f"console tail:\n{tail}")

    def reports(self) -> list[dict[str, Any]]:
        """Guest-side ``PYVCORE REPORT`` objects seen on the console so far."""
        reader = self._poll()
        return list(reader.parsed.reports) if reader else []

    def wait_for(self, regex: str, timeout: float = 60.0) -> re.Match[str]:
        """Wait until a console line (since boot) matches ``regex``; returns the match.

        Raises LabError with the console tail on timeout or if QEMU exits first."""
        reader = self._poll()
        if reader is None:
            raise LabError("the lab has no console (not started)")
        return reader.wait_for(regex, timeout, self.alive)

    def console_text(self) -> str:
        reader = self._poll()
        return reader.text if reader else ""

    # ----------------------------------------------------------------- detached labs

    @classmethod
    def running(cls) -> Lab | None:
        """The lab started by `pyvcore lab up`, or None if none is running."""
        from pyvcore.lab.state import load_running

        return load_running(cls, state_file())

    def save_state(self) -> Path:
        """Write what `Lab.running()` needs to find this (detached) lab again."""
        from pyvcore.lab.state import save

        return save(self, state_file())

    def _start_timeout(self) -> float | None:
        """How long the guest VMM waits for every vcpu's first run before STALLED.

        Its own default (15 s, 45 s at 8 threads: a few times what a loaded 2-core host
        takes) unless TCG runs slower than usual: under a TCG plugin (every instruction
        calls out of the translated code) or watched by gdb from the first instruction,
        vcpus were seen to start after more than 15 s on a loaded host. Then three times
        that. Stock QEMU's vcpus off thread 0 never run at all, so only the time to say
        so grows."""
        if not (self.plugin or self.paused):
            return None
        return 3 * (45.0 if self.threads > 4 else 15.0)

    def _plugin_text(self) -> str | None:
        if not self.plugin:
            return None
        path, args = self.plugin
        return ",".join([os.fspath(path), *(f"{k}={v}" for k, v in args.items())])

    @staticmethod
    def clear_state() -> None:
        with contextlib.suppress(FileNotFoundError):
            state_file().unlink()

    # ----------------------------------------------------------------- internals

    def _poll(self) -> ConsoleFile | None:
        if self._reader is not None:
            self._reader.poll()
        return self._reader

    def prepare(self) -> Lab:
        """Resolve and check QEMU, kernel, modules and plugin, and build the initramfs
        (all before taking the machine lock: nothing starts when an input is refused).
        :meth:`start` does it when not done yet. Raises LabNotSetUp, KernelRefused, LabError."""
        self._prepare()
        self._prepared = True
        return self

    def _prepare(self) -> None:
        ready = prepare(
            scenario=self.scenario,
            qemu=self.qemu,
            kernel=self.kernel,
            modules=self.modules,
            symbols=self.symbols,
            plugin=self.plugin,
            probe=self.probe,
            lock_wait=self.lock_wait,
            log=self._log,
        )
        self.boot_kernel = ready.boot_kernel
        self.qemu_kind, self.qemu_binary = ready.qemu_kind, ready.qemu_binary
        self._plugin_args = ready.plugin_args
        self.qemu_probe = ready.qemu_probe
        self.vmlinux = ready.vmlinux  # what gdb and the readers load
        self.initrd = ready.initrd

    def _boot(self) -> None:
        assert self.qemu_binary and self.vmlinux and self.initrd
        port = self.requested_gdb_port
        if port is not None and port_in_use(port):
            raise LabError(
                f"gdb port 127.0.0.1:{port} is already in use; pick another or omit it for a free one"
            )
        lock_fd = acquire_lock(wait=self.lock_wait)
        try:
            if port is None:
                port = free_port()
            self.run_dir = new_run_dir(self.scenario)
            self.console = self.run_dir / "console.log"
            stderr = self.run_dir / "qemu.stderr"
            # The QMP socket sits in a private (0700) directory: whoever connects owns QEMU.
            self._qmp_dir = Path(tempfile.mkdtemp(prefix="pyvcore-qmp-"))
            self.qmp_socket = self._qmp_dir / "qmp.sock"
            assert self.boot_kernel is not None
            cmd = qemu_command(
                self.qemu_binary,
                vmlinux=self.boot_kernel.vmlinux,
                initrd=self.initrd,
                threads=self.threads,
                scenario=self.scenario,
                hold=self.hold,
                gdb_port=port,
                qmp_socket=self.qmp_socket,
                append_extra=self.append,
                extra=[*self._plugin_args, *(["-S"] if self.paused else [])],
                phbs=self.phbs,
                start_timeout=self._start_timeout(),
            )
            (self.run_dir / "cmdline").write_text(" ".join(cmd) + "\n")
            started = time.monotonic()
            try:
                self.proc = spawn(
                    cmd, console=self.console, stderr=stderr, lock_fd=lock_fd, detached=self.detached
                )
            except OSError as err:
                raise LabError(f"cannot start {self.qemu_binary}: {err.strerror or err}") from err
            self.pid = self.proc.pid
            self.gdb_port = port
            self.started_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            write_lock_info(
                lock_fd,
                {
                    "pid": self.pid,
                    "scenario": self.scenario,
                    "owner": f"{'pyvcore lab up' if self.detached else 'Lab()'} pid {os.getpid()} "
                    f"({process_cmdline(os.getpid())[:60]})",
                    "gdb": self.gdb_address,
                },
            )
        finally:
            os.close(lock_fd)  # QEMU keeps the lock through its inherited descriptor
        if not self.detached and not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        self._reader = ConsoleFile(self.console)
        if self.paused:
            self._log(
                f"scenario {self.scenario}: QEMU stopped before its first instruction, gdb {self.gdb_address}"
            )
            return
        self._wait_ready(started, stderr)
        self.boot_seconds = round(time.monotonic() - started, 1)
        retry_note = f" (attempt {self.attempts})" if self.attempts > 1 else ""
        parts = ["the QEMU plugin loaded"] if self.plugin else []
        parts += [f"gdb {self.gdb_address}"] if self.name_gdb else []
        self._log(
            f"scenario {self.scenario} ready in {self.boot_seconds:.1f} s{retry_note}: "
            + ", ".join([*parts, f"console {self.console}"])
        )

    def _wait_ready(self, started: float, stderr: Path) -> None:
        """Until READY or STALLED for our scenario (see :func:`pyvcore.lab.boot.wait_ready`)."""
        assert self._reader is not None and self.proc is not None
        self._stages = StageTracker(started=started, silence=self.stall_timeout)
        wait_ready(
            self._reader,
            self.proc,
            self._stages,
            scenario=self.scenario,
            boot_timeout=self.boot_timeout,
            stderr=stderr,
            gdb_address=self.gdb_address,
            log=self._log,
        )
