"""The live half of `pyvcore diff`: a target (the lab, a running lab, any gdbstub), gdb, pv-watch.

:func:`run_live` boots the lab (``pyvcore.lab.Lab``) or attaches to one that is
already running or to any gdbstub, drives gdb-multiarch through the MI driver
(``pyvcore.mi``), lets ``pv-watch`` snapshot the core at its breakpoints for a
bounded number of stops, detaches, waits for the guest's own reports and tears
down what it started.  :mod:`pyvcore.diff` judges the result; the live test
suite (``tests/test_live_*.py``) calls the same functions.

Where files go: the trace is written under the run's own directory (the lab's
run directory, which the lab rotates), or where the caller says; against a bare
gdbstub into a private temporary directory that :class:`LiveRun` names and
:func:`pyvcore.diff.run_diff` removes unless asked to keep it.  On Ctrl-C,
:class:`DiffInterrupted` carries the path of the partial trace.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyvcore.diff_watch import Say, attach, count_lines, watch
from pyvcore.gdbcli import module_commands
from pyvcore.mi import GdbMI, MIError, iter_jsonl
from pyvcore.snapshot import from_wire

DEFAULT_STOPS = 120
# Guest seconds the scenario keeps running before it reports and powers off.  The
# watch must finish inside it; the guest clock stands still while gdb holds the
# machine, so this is mostly the time the target runs between breakpoints.
DEFAULT_HOLD = 20

# Extra watch phases per scenario: (pv-watch arguments, snapshots).  The default
# points are dominated by entry/exit stops; a ceding thread passes kvm_do_nap
# rarely enough to be missed in a bounded run, so `cede` and `cede-all` also watch
# the cede path on their own.
SCENARIO_PHASES: dict[str, tuple[tuple[str, int], ...]] = {
    "cede": (("--at kvmppc_h_cede,kvm_do_nap,kvm_end_cede", 20),),
    "cede-all": (("--at kvmppc_h_cede,kvm_do_nap,kvm_end_cede", 20),),
}

# Watch deadline (s) on a lab whose boot hung after kvm-hv was loaded: three times
# a vcore run's bound (invariant 44, 11.8 s of timebase), so a run stuck since
# before the attach is past its bound at the deadline snapshot.
HUNG_WATCH_S = 36.0
# Extra watch deadline (s) when the watch starts at QEMU's first instruction: the
# boot itself (about 15-45 s under TCG on a loaded machine) comes first.
FROM_BOOT_S = 90.0


class DiffError(RuntimeError):
    """The comparison could not be run (lab, gdb or plugin problem)."""


class DiffInterrupted(KeyboardInterrupt):
    """Ctrl-C during a live run; ``trace`` is the partial trace kept (or None), ``stops`` its lines."""

    def __init__(self, trace: Path | None, stops: int) -> None:
        super().__init__(f"interrupted; {stops} stops in {trace}")
        self.trace = trace
        self.stops = stops


@dataclass
class GdbStub:
    """Any gdbstub given by address (``diff --attach HOST:PORT``), with the kernel it runs.

    It has no console: no guest reports, no module load addresses (pv-watch then
    plants only what vmlinux itself resolves).
    """

    address: str
    vmlinux: Path
    release: str | None = None  # the vmlinux's linux_banner release

    @property
    def gdb_address(self) -> str:
        return self.address

    run_dir = None
    console = None

    def status(self) -> dict[str, Any]:
        return {
            "gdb": self.address,
            "vmlinux": str(self.vmlinux),
            "kernel": str(self.vmlinux),
            "kernel_info": {"release": self.release},
            "modules": {},
            "hold": 0,
        }


def resolve_attach(address: str, kernel: str | Path | None, symbols: str | Path | None = None) -> Any:
    """The target of ``--attach``: "lab" (or the running lab's own address) -> that Lab; else a GdbStub.

    Raises DiffError when "lab" is asked for and none runs, or when a bare gdbstub
    is given without the vmlinux it runs, or with one (or ``symbols``, its debug image) that
    has neither BTF nor DWARF.
    """
    from pyvcore.lab import Lab

    lab = Lab.running()
    if address == "lab":
        if lab is None:
            raise DiffError("--attach lab: no lab is running (start one with `pyvcore lab up`)")
        return lab
    if lab is not None and lab.gdb_port is not None and _same_address(address, lab.gdb_address):
        return lab
    if not re.fullmatch(r"[\w.\-\[\]:]+:\d+", address):
        raise DiffError(f"--attach {address}: expected HOST:PORT or 'lab'")
    if kernel is None:
        raise DiffError(
            f"--attach {address}: not the running lab's gdbstub, so --kernel NAME|VMLINUX must name the kernel it runs"
        )
    from pyvcore.gdbcli import reachable
    from pyvcore.kernel import KernelRefused, check_image, debug_image
    from pyvcore.lab.cache import cache_dir
    from pyvcore.lab.inputs import is_path_like, kernel_manifest
    from pyvcore.lab.qemu import LabError

    if not is_path_like(kernel):
        # A kernel the lab set up by name: its vmlinux, and its debug image when it has one.
        try:
            manifest = kernel_manifest(kernel, cache_dir())
        except LabError as err:  # not set up, or no such name
            raise DiffError(str(err)) from None
        kernel = manifest.vmlinux
        symbols = symbols or manifest.extra.get("symbols")
    try:
        image = check_image(Path(kernel), "--kernel")
        found = debug_image(Path(kernel), image, symbols, "--kernel")[1]
    except KernelRefused as err:
        raise DiffError(err.message) from None
    # The one probe `pyvcore gdb --remote` makes too: an answer in milliseconds, where gdb
    # would retry for seconds and then name its MI command.
    why = reachable(address, option="--attach", hint="is a gdbstub listening there (QEMU's -gdb tcp::PORT)?")
    if why:
        raise DiffError(why)
    return GdbStub(address, found or Path(kernel), image.release)


def _same_address(a: str, b: str) -> bool:
    def norm(s: str) -> str:
        host, _, port = s.rpartition(":")
        return f"{'127.0.0.1' if host in ('', 'localhost') else host}:{port}"

    return norm(a) == norm(b)


# --------------------------------------------------------------------- one run
@dataclass
class LiveRun:
    """Everything one boot (or attach) + watch produced (the suite asserts on this).

    ``temp_dir`` is set when the trace lives in a private temporary directory
    (a bare gdbstub and no ``trace`` given): the caller removes it.
    """

    scenario: str
    qemu: str
    trace: Path
    records: list[dict[str, Any]]
    reports: list[dict[str, Any]]
    timings: dict[str, float]
    watch: dict[str, Any]
    status: dict[str, Any]
    console: str
    plugin_banner: str = ""
    temp_dir: Path | None = None

    @property
    def snapshots(self) -> list[dict[str, Any]]:
        return [r for r in self.records if _is_snapshot(r)]


def _is_snapshot(record: dict[str, Any]) -> bool:
    return isinstance(record.get("threads"), list) and bool(record["threads"])


def _new_lab(
    scenario: str,
    qemu: str,
    threads: int,
    hold: int,
    lock_wait: float,
    kernel: Any,
    modules: Any,
    paused: bool = False,
    log: Say | None = None,
    symbols: Any = None,
) -> Any:
    from pyvcore.lab import Lab

    extra: dict[str, Any] = {"lock_wait": lock_wait} if lock_wait else {}
    accepted = inspect.signature(Lab).parameters
    if log is not None and "log" in accepted:
        extra["log"] = log  # the boot's news (stages, a host oops) with the caller's progress
    if paused:
        if "paused" not in accepted:
            raise DiffError("this version of the lab cannot start QEMU stopped (--from-boot)")
        extra["paused"] = True
    if "judge_hang" in accepted:
        # a kernel that hangs once its vcpus run is judged (invariant 44), not retried
        extra["judge_hang"] = True
    for name, value in (("kernel", kernel), ("modules", modules), ("symbols", symbols)):
        if value is None:
            continue
        if name not in accepted:
            raise DiffError(f"this version of the lab cannot boot another {name} ({name}={value})")
        extra[name] = str(value)
    return Lab(scenario=scenario, threads=threads, qemu=qemu, hold=hold, **extra)


def _with_console(lab: Any, say: Say, tick: Say) -> Say:
    """``tick``, and on each tick the console's news to ``say`` (a host oops or soft lockup as
    it is printed; from boot, each stage's end): a watch that sees no stop is not silent."""
    if not callable(getattr(lab, "console_text", None)):
        return tick  # a bare gdbstub has no console
    from pyvcore.lab.boot import ConsoleNews

    news = ConsoleNews(lab.console_text, say)

    def both(message: str) -> None:
        news.poll()
        tick(message)

    return both


def _trace_path(target: Any, scenario: str, qemu: str) -> tuple[Path, Path | None]:
    """(trace path, temporary directory to remove or None) for a target without a given trace."""
    run_dir = getattr(target, "run_dir", None)
    if run_dir is not None:
        stamp = time.strftime("%H%M%S")
        return Path(run_dir) / f"diff-{scenario}-{qemu}-{stamp}.jsonl", None
    tmp = Path(tempfile.mkdtemp(prefix="pyvcore-diff-"))
    return tmp / f"{scenario}-{qemu}.jsonl", tmp


# The host gave up on the guest: KVM's complaint about a secondary thread that never came
# back (arch/powerpc/kvm/book3s_hv.c, kvmppc_wait_for_nap: "KVM: CPU %d seems to be stuck")
# or a panic (kernel/panic.c).  The guest's remaining reports will not come.
HOST_GAVE_UP = r"KVM: CPU \d+ seems to be stuck|Kernel panic - not syncing"


def wait_reports(lab: Any, timeout: float, say: Say, tick: Say) -> None:
    """Wait up to ``timeout`` s for the guest's ``PYVCORE DONE`` line, counting down on
    ``tick``; stop at once when the host kernel has reported a stuck CPU or panicked
    (:data:`HOST_GAVE_UP`, on the console since boot)."""
    say(f"waiting for the guest's reports (up to {timeout:g} s) ...")
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            say(f"no PYVCORE DONE line within {timeout:g} s: the guest's reports are incomplete")
            return
        tick(f"waiting for the guest's reports: {left:.0f} s left")
        try:
            found = lab.wait_for(f"PYVCORE DONE|{HOST_GAVE_UP}", timeout=min(1.0, left))
            if found is not None and not found.group(0).startswith("PYVCORE DONE"):
                say(
                    f"the host kernel says {found.group(0)!r}: not waiting for the rest of the guest's "
                    "reports (they will not come)"
                )
            return
        except Exception as exc:  # a timeout of this slice, or QEMU gone: a finding, not a crash
            if not lab.alive():
                say(f"the guest ended without PYVCORE DONE ({str(exc).splitlines()[0]})")
                return


def _watch_phases(
    mi: GdbMI,
    trace: Path,
    scenario: str,
    stops: int,
    deadline_s: float,
    phases: Any,
    tick: Say,
    modules_later: Callable[[], list[str]] | None = None,
) -> dict[str, Any]:
    watched = watch(mi, trace, stops=stops, deadline_s=deadline_s, tick=tick, modules_later=modules_later)
    # Further phases watch chosen points only (pv-watch --at), appending to the
    # same trace, e.g. the cede path that the default points pass through too
    # rarely to be caught in a bounded run.
    for extra, more in SCENARIO_PHASES.get(scenario, ()) if phases is None else phases:
        if mi.target_exited:
            break
        phase = watch(
            mi, trace, stops=more, deadline_s=min(deadline_s, 30.0), extra=extra, append=True, tick=tick
        )
        watched.setdefault("phases", []).append(phase)
        watched["watch_s"] = round(watched["watch_s"] + phase["watch_s"], 3)
    return watched


def run_live(
    scenario: str,
    *,
    qemu: str = "patched",
    stops: int = DEFAULT_STOPS,
    trace: Path | None = None,
    threads: int = 4,
    hold: int = DEFAULT_HOLD,
    watch_deadline_s: float = 90.0,
    phases: Sequence[tuple[str, int]] | None = None,
    wait_reports_s: float = 60.0,
    gdb: str = "gdb-multiarch",
    lab: Any = None,
    lock_wait: float = 0.0,
    progress: Say | None = None,
    tick: Say | None = None,
    kernel: str | Path | None = None,
    modules: str | Path | None = None,
    symbols: str | Path | None = None,
    from_boot: bool = False,
) -> LiveRun:
    """Boot (unless ``lab`` is given: a started Lab, a GdbStub), watch, detach, collect reports.

    (Long: its options and their description take half of it; the body is one phase
    after another, boot, attach, watch, detach, reports, sharing the cleanup.)

    ``from_boot``: QEMU starts stopped and gdb watches from the first instruction
    (vmlinux's hook points at once, kvm-hv's as soon as the module is loaded), so a
    kernel that breaks on its very first vcore run is watched while it does; the watch
    deadline then also covers the boot (``FROM_BOOT_S`` more).

    ``progress`` hears one line per phase, ``tick`` a transient line about once a
    second (stop count while watching, a countdown while waiting for the guest).
    The lab is stopped on every path when this function started it.  Raises
    DiffError / LabError / MIError when it cannot run, DiffInterrupted on Ctrl-C.
    """
    say = progress or (lambda msg: None)
    tick = tick or (lambda msg: None)
    timings: dict[str, float] = {}
    own_lab = lab is None
    temp_dir: Path | None = None
    t0 = time.monotonic()
    status: dict[str, Any] = {}
    try:
        if own_lab:
            what = f"scenario {scenario}, {qemu} QEMU, {threads} threads" + (
                f", kernel {kernel}" if kernel else ""
            )
            lab = _new_lab(
                scenario,
                qemu,
                threads,
                hold,
                lock_wait,
                kernel,
                modules,
                paused=from_boot,
                log=progress,
                symbols=symbols,
            )
            # Every input (QEMU, kernel, modules) is checked before the boot is announced.
            getattr(lab, "prepare", lambda: None)()
            say(f"booting the lab: {what} ...")
            lab.start()
        else:
            # Attached to a running lab: it says what it runs (the --scenario default,
            # "all", is not it). A bare gdbstub has no scenario: keep what was given.
            scenario = getattr(lab, "scenario", None) or scenario
            if getattr(lab, "qemu", None) in ("patched", "stock"):
                qemu = lab.qemu
        if trace is None:
            trace, temp_dir = _trace_path(lab, scenario, qemu)
        timings["boot_s"] = round(getattr(lab, "boot_seconds", None) or (time.monotonic() - t0), 2)
        status = dict(lab.status())
        t1 = time.monotonic()
        say(f"attaching gdb to {lab.gdb_address} ...")
        hung = status.get("hung")
        if hung:
            # The core is stuck: watch long enough for a run's bound to pass, no phases.
            say(f"the boot hung in the {hung.get('stage')} stage: attaching to judge the hung kernel")
            watch_deadline_s, phases = min(watch_deadline_s, HUNG_WATCH_S), ()
        with attach(lab, gdb=gdb) as mi:
            timings["attach_s"] = round(time.monotonic() - t1, 2)
            say(f"watching up to {stops} stops (trace {trace}) ...")
            later = None
            if from_boot and own_lab:
                watch_deadline_s += FROM_BOOT_S

                def later() -> list[str]:
                    found = dict(lab.status())
                    return module_commands(found) if found.get("modules") else []

            watched = _watch_phases(
                mi, trace, scenario, stops, watch_deadline_s, phases, _with_console(lab, say, tick), later
            )
            banner = getattr(mi, "plugin_banner", "")
            # Let the guest finish on its own: detach, so QEMU runs free.
            if not mi.target_exited:
                with contextlib.suppress(MIError):
                    mi.execute("-target-detach", timeout=30)
        timings["watch_s"] = watched["watch_s"]
        reports: list[dict[str, Any]] = []
        if wait_reports_s > 0 and getattr(lab, "console", None) and status.get("hold") and not hung:
            t2 = time.monotonic()
            wait_reports(lab, wait_reports_s, say, tick)
            reports = list(lab.reports())
            timings["reports_s"] = round(time.monotonic() - t2, 2)
        console = Path(lab.console).read_text(errors="replace") if getattr(lab, "console", None) else ""
    except KeyboardInterrupt:
        kept = trace if trace is not None and trace.exists() else None
        raise DiffInterrupted(kept, count_lines(kept) if kept else 0) from None
    except BaseException:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    finally:
        if own_lab and lab is not None:
            lab.stop()
    # Records as numbers (the trace on disk keeps its hex strings).
    records = [from_wire(r) for r in iter_jsonl(trace)] if trace.exists() else []
    return LiveRun(
        scenario=scenario,
        qemu=qemu,
        trace=trace,
        records=records,
        reports=reports,
        timings=timings,
        watch=watched,
        status=status,
        console=console,
        plugin_banner=banner,
        temp_dir=temp_dir,
    )
