"""Where a lab boot is, and whether it stalled there.

A boot passes four stages, each ended by a console line:

``firmware``  skiboot, until ``INIT: Starting kernel at`` (skiboot core/init.c,
              ``load_and_boot_kernel``); about 5 s, 3 of them training the links of the
              machine's PHBs (``PCI: Probing slots...``).
``kernel``    Linux up to the initramfs's ``PYVCORE INIT``; about 8 s.
``modules``   kvm + kvm-hv insmod, until ``PYVCORE KVM``; about 1 s.
``vmm``       the guest VMM until ``PYVCORE READY`` or ``STALLED``; about 1 s (the VMM
              itself gives up on vcpus that never run after 15 s).

A stage is stalled when the console says nothing new for its ``silence`` seconds (a few
times what the stage normally takes between two lines, under TCG on a loaded machine), or
when skiboot prints a CPU backtrace from ``cpu_wait_job`` (skiboot core/cpu.c warns so when
a job it waits for does not finish, e.g. a PHB link that never trains) and nothing else for
``FIRMWARE_BACKTRACE_GRACE`` seconds.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pyvcore.lab.qemu import ConsoleFile, LabError

FIRMWARE_BACKTRACE = re.compile(r"CPU [0-9a-f]+ Backtrace:|^\s*S: [0-9a-f]+ R: [0-9a-f]+|cpu_wait_job")
FIRMWARE_BACKTRACE_GRACE = 8.0

# Steps known to be long and silent, with the silence each may take. kernel/trace/ftrace.c
# ftrace_init() prints "ftrace: allocating N entries in M pages" and then patches every
# mcount call site (33,690 in Debian's 6.1, each an instruction write and an icache flush):
# seen taking over 30 s of TCG on a loaded 2-core machine.
SLOW_STEPS = ((re.compile(r"ftrace: allocating \d+ entries"), 150.0),)
# The guest VMM's first line names how long it will wait, silent, for every vcpu's
# first run (guest/vmm.c): the vmm stage may be that quiet, and a little more.
VMM_START_TIMEOUT = re.compile(r"PYVCORE VMM .*\bstart_timeout=([0-9.]+)")


@dataclass(frozen=True)
class Stage:
    name: str
    ends_at: re.Pattern[str]
    normal: float  # seconds it usually takes (measured; see docs/lab.md, "Boots")
    silence: float  # seconds without console output that mean it stalled


STAGES = (
    Stage("firmware", re.compile(r"INIT: Starting kernel at"), 5.0, 25.0),
    Stage("kernel", re.compile(r"PYVCORE INIT\b"), 8.0, 30.0),
    Stage("modules", re.compile(r"PYVCORE KVM\b"), 1.0, 30.0),
    # The VMM says STALLED itself after 15 s (45 s at 8 threads; longer when its first line
    # says so: VMM_START_TIMEOUT) when a vcpu never runs.
    Stage("vmm", re.compile(r"PYVCORE (READY|STALLED)\b"), 1.0, 50.0),
)


class BootHung(Exception):
    """A boot stalled in ``stage``; ``tail`` is the console's end."""

    def __init__(self, stage: str, reason: str, tail: str) -> None:
        super().__init__(f"{stage} stage: {reason}")
        self.stage = stage
        self.reason = reason
        self.tail = tail


@dataclass
class StageTracker:
    """Follows the console of one boot: the current stage, when each stage ended, and
    whether the boot stalled. Feed it every complete console line with :meth:`line`."""

    started: float = field(default_factory=time.monotonic)
    index: int = 0
    ended: dict[str, float] = field(default_factory=dict)  # stage -> seconds since start
    last_output: float = 0.0
    backtrace_at: float | None = None
    silence: float | None = None  # one silence bound for every stage (tests), else the stage's
    step_silence: float | None = None  # the bound of a known slow step the last line began

    def __post_init__(self) -> None:
        self.last_output = self.started

    @property
    def stage(self) -> str:
        return STAGES[self.index].name if self.index < len(STAGES) else "up"

    def line(self, text: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.index < len(STAGES) and self.stage == "firmware" and FIRMWARE_BACKTRACE.search(text):
            if self.backtrace_at is None:
                self.backtrace_at = now
            return  # a backtrace is not progress
        self.last_output = now
        self.backtrace_at = None
        self.step_silence = next((bound for pattern, bound in SLOW_STEPS if pattern.search(text)), None)
        vmm = VMM_START_TIMEOUT.search(text)
        if vmm:
            self.step_silence = float(vmm.group(1)) + 20.0
        while self.index < len(STAGES) and STAGES[self.index].ends_at.search(text):
            self.ended[STAGES[self.index].name] = round(now - self.started, 2)
            self.index += 1

    def check(self, now: float | None = None) -> str | None:
        """Why the boot counts as stalled now, or None."""
        if self.index >= len(STAGES):
            return None
        now = time.monotonic() if now is None else now
        stage = STAGES[self.index]
        if self.backtrace_at is not None and now - self.backtrace_at > FIRMWARE_BACKTRACE_GRACE:
            return f"skiboot printed cpu_wait_job backtraces and nothing else for {now - self.backtrace_at:.0f} s"
        quiet = now - self.last_output
        bound = self.silence if self.silence is not None else stage.silence
        if self.step_silence is not None:
            bound = max(bound, self.step_silence)
        if quiet > bound:
            return f"no console output for {quiet:.0f} s (the stage usually takes about {stage.normal:.0f} s)"
        return None

    def durations(self) -> dict[str, float]:
        """Seconds each finished stage took."""
        out, previous = {}, 0.0
        for stage in STAGES:
            if stage.name in self.ended:
                out[stage.name] = round(self.ended[stage.name] - previous, 2)
                previous = self.ended[stage.name]
        return out


# A host kernel in trouble, in its own words: a powerpc die() ("Oops: ..., sig: N [#1]",
# arch/powerpc/kernel/traps.c oops_end/__die), a bad access ("BUG: Kernel NULL pointer
# dereference", "BUG: Unable to handle kernel data access", arch/powerpc/mm/fault.c), the
# soft-lockup watchdog ("watchdog: BUG: soft lockup - CPU#N stuck for Ns!", kernel/watchdog.c),
# RCU stalls (kernel/rcu/tree_stall.h), a hung task (kernel/hung_task.c), a panic
# (kernel/panic.c), and KVM's own complaint about a thread that never came back
# ("KVM: CPU N seems to be stuck", arch/powerpc/kvm/book3s_hv.c kvmppc_wait_for_nap).
HOST_TROUBLE = re.compile(
    r"\bOops: |\bBUG: |Kernel panic - not syncing|rcu: INFO: rcu_\w+ (self-)?detected stall"
    r"|INFO: task \S+ blocked for more than|KVM: CPU \d+ seems to be stuck"
)
# While a boot's console is quiet, a line at most this often says so (seconds).
QUIET_EVERY = 15.0


@dataclass
class BootNews:
    """What a boot says as it goes, for someone waiting on it: each stage's end, every line of
    a host kernel in trouble (:data:`HOST_TROUBLE`) as it is printed, and, while the console
    is quiet, a line every :data:`QUIET_EVERY` s with how long until the stage counts as
    stalled. ``log`` hears each line."""

    log: Callable[[str], None]
    ended: int = 0  # stages whose end was told
    told_quiet: float = 0.0  # the console's quiet time at the last quiet line (s)

    def line(self, text: str, tracker: StageTracker) -> None:
        """One console line, already fed to ``tracker``."""
        if HOST_TROUBLE.search(text):
            self.log(f"the host kernel says: {text.strip()}")
        while self.ended < tracker.index:
            stage = STAGES[self.ended].name
            self.log(f"boot: {stage} stage done at {tracker.ended[stage]:.1f} s")
            self.ended += 1

    def quiet(self, tracker: StageTracker, now: float) -> None:
        """Called while waiting: a line when the console has been quiet another QUIET_EVERY s."""
        quiet = now - tracker.last_output
        if quiet < self.told_quiet:  # output came since the last quiet line
            self.told_quiet = 0.0
        if tracker.index >= len(STAGES) or quiet < self.told_quiet + QUIET_EVERY:
            return
        self.told_quiet = quiet
        stage = STAGES[tracker.index]
        bound = tracker.silence if tracker.silence is not None else stage.silence
        bound = max(bound, tracker.step_silence or 0.0)
        self.log(
            f"boot: {stage.name} stage, console quiet for {quiet:.0f} s "
            f"(judged stalled after {bound:.0f} s of quiet)"
        )


class ConsoleNews:
    """:class:`BootNews` for a console someone else reads: each call (:meth:`poll`) looks at
    the lines ``text()`` has gained since the last and tells their news (a boot watched from
    QEMU's first instruction passes its stages here; after READY, a host oops or lockup).
    Created when watching begins: lines already there are not told again."""

    def __init__(self, text: Callable[[], str], log: Callable[[str], None]) -> None:
        self.text = text
        self.news = BootNews(log)
        self.tracker = StageTracker()
        self.seen = len(text().split("\n")) - 1

    def poll(self) -> None:
        lines = self.text().split("\n")[:-1]  # complete lines
        for line in lines[self.seen :]:
            self.tracker.line(line)
            self.news.line(line, self.tracker)
        self.seen = max(self.seen, len(lines))


def died_error(status: int, stderr: Path, reader: ConsoleFile, gdb_address: str) -> LabError:
    """The error for a QEMU that exited during boot: its last stderr line, or the gdb port
    it could not bind; the detail carries its stderr and the console tail."""
    try:
        err_text = stderr.read_text(errors="replace").strip()
    except OSError:
        err_text = ""
    how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
    if "Address already in use" in err_text:
        return LabError(f"gdb port {gdb_address} is already in use (QEMU could not bind it)", err_text)
    errors = [line for line in err_text.splitlines() if ": warning: " not in line]
    first_err = errors[-1] if errors else ""
    message = f"QEMU died during boot ({how})" + (f": {first_err}" if first_err else "")
    detail = f"QEMU stderr:\n{err_text}\nconsole tail:\n{reader.tail()}"
    return LabError(message, detail)


def wait_ready(
    reader: ConsoleFile,
    proc: subprocess.Popen[bytes],
    tracker: StageTracker,
    *,
    scenario: str,
    boot_timeout: float,
    stderr: Path,
    gdb_address: str,
    log: Callable[[str], None],
) -> None:
    """Until the guest is READY (or STALLED: some vcpus never ran, the stock-QEMU bug) for
    ``scenario``, feeding each console line to ``tracker``; ``log`` hears the boot's news
    (:class:`BootNews`: stages ended, a host kernel's oops or lockup, long quiet). Raises BootHung naming the stage
    that stalled or when ``boot_timeout`` s pass, LabError when QEMU dies or the guest
    fails or is ready for another scenario."""
    fed = 0
    news = BootNews(log)
    while True:
        if reader.poll():
            lines = reader.lines
            for line in lines[fed:]:
                tracker.line(line)
                news.line(line, tracker)
            fed = len(lines)
            if guest_ready(reader, scenario, log):
                return
        status = proc.poll()
        if status is not None:
            reader.poll()
            raise died_error(status, stderr, reader, gdb_address)
        now = time.monotonic()
        if now - tracker.started > boot_timeout:
            raise BootHung(tracker.stage, f"not ready after {boot_timeout:.0f} s", reader.tail())
        news.quiet(tracker, now)
        if (reason := tracker.check(now)) is not None:
            raise BootHung(
                tracker.stage, f"{reason}, {now - tracker.started:.0f} s into the boot", reader.tail()
            )
        time.sleep(0.1)


def guest_ready(reader: ConsoleFile, scenario: str, log: Callable[[str], None]) -> bool:
    """True once the guest printed READY for ``scenario`` or STALLED (logged: the lab is up
    with those vcpus hung); LabError when it is ready for another scenario or its scenario
    failed first (PYVCORE DONE before READY)."""
    console = reader.parsed
    if console.ready is not None or console.stalled is not None:
        if console.ready is not None and console.ready != scenario:
            raise LabError(f"the guest is READY for scenario {console.ready!r}, not {scenario!r}")
        if console.ready is None:
            never = ",".join(map(str, console.stalled or []))
            log(f"guest reports vcpus {never} never ran (STALLED): the lab is up with them hung")
        return True
    if console.done is not None:
        raise LabError(
            "the guest scenario failed before it was ready: PYVCORE DONE "
            + " ".join(f"{k}={v}" for k, v in console.done.items()),
            reader.tail(),
        )
    return False
