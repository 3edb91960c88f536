"""pv-watch: silent internal breakpoints that snapshot and check at every hit."""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

import gdb  # type: ignore[import-not-found]

from pyvcore.decode import ENTRY_ARGUMENTS
from pyvcore.hookpoints import HOOK_POINTS, MODULE_POINTS
from pyvcore.watchsummary import WatchTally

from . import check, session
from .args import ArgParser, complete_words
from .session import PvError
from .snapshot import write_json_line

# Where the vcore state is defined (one list: pyvcore.hookpoints).
DEFAULT_POINTS = HOOK_POINTS


class WatchPoint(gdb.Breakpoint):
    """Internal breakpoint: snapshot + check at each hit, then keep going."""

    def __init__(self, watcher: Watcher, label: str, addr: int, entry: str | None):
        super().__init__(f"*{addr:#x}", gdb.BP_BREAKPOINT, internal=True)
        self.silent = True
        self.watcher = watcher
        self.label = label
        self.addr = addr
        # The function whose entry this is, when its arguments name the vcore.
        self.entry = entry

    def stop(self) -> bool:
        try:
            return self.watcher.hit(self.label, self.entry)
        except Exception as e:
            return self.watcher.log_error(self.label, e)


class Watcher:
    def __init__(self, log: str | None, max_stops: int | None, stop_on_violation: bool):
        self.log = log
        self.max_stops = max_stops
        self.stop_on_violation = stop_on_violation
        self.points: list[WatchPoint] = []
        self.stops = 0
        self.snapshots = 0
        self.violations = 0
        self.errors = 0
        self.not_judged = 0  # snapshots in which no vcore could be found
        # vcore address -> kvmppc_run_core entries seen for it: written as the
        # vcore's "seq", so two stops with the same seq lie in one run of it.
        self.runs: dict[int, int] = {}
        # Vcores whose run count may have missed a start (a kvmppc_run_core
        # hit that could not be read, or whose vcore was not in r3): their
        # stops carry no seq until their next counted start.
        self.unsure: set[int] = set()
        self.times_ms: list[float] = []
        self.last: dict | None = None
        # The reading taken at `pv-watch on` (see attach) and whether to log it.
        self.attached: tuple[dict[str, Any], list[str]] | None = None
        self.mark_attach = False
        self.finished = False
        self.tally = WatchTally()

    def _cpu_of_selected(self) -> str:
        th = gdb.selected_thread()
        return f"t{th.num}" if th is not None else "t?"

    def hit(self, label: str, entry: str | None = None) -> bool:
        if self.finished:
            return False
        t0 = time.perf_counter()
        self.stops += 1
        self._flush_attach()
        stopper = gdb.selected_thread()
        reading, _ = session.read_state(stop=label, in_stop=True, entry=entry)
        snap = reading.snapshot
        self._count_runs(entry, reading.vcore_from, snap)
        cpu = next(
            (r.cpu for r in reading.rows if stopper is not None and r.regs.gdb_thread == stopper.num), None
        )
        snap["stop"] = f"{label}@cpu{cpu}" if cpu is not None else label
        record = self._judge(snap, reading.problems)
        violated = record.get("violations") or []
        self.snapshots += 1
        self.violations += len(violated)
        self.tally.record(
            snap["stop"], violated, judged=bool(snap.get("vcores")), error=record.get("check_error")
        )
        self.last = record
        if self.log:
            write_json_line(self.log, record)
        self.times_ms.append((time.perf_counter() - t0) * 1000.0)
        if violated and self.stop_on_violation:
            gdb.write(
                f"pv-watch: stopped at {snap['stop']}: "
                + "; ".join(f"invariant {v.get('invariant')}: {v.get('message')}" for v in violated)
                + "\n"
            )
            return True
        if self.max_stops is not None and self.stops >= self.max_stops:
            self.finish(f"--max-stops {self.max_stops}")
            return True
        return False

    def _judge(self, snap: dict[str, Any], problems: list[str]) -> dict[str, Any]:
        """The record of one snapshot: the snapshot, its violations (the checker keeps
        the previous snapshot, for what holds within one vcore run) and problems."""
        record: dict[str, Any] = dict(snap)
        try:
            outcome = check.outcome(snap)
            record["violations"] = [check.violation_dict(v) for v in outcome.violations]
            record.update(outcome.record())
        except gdb.GdbError as e:
            record["check_error"] = str(e)
        if problems:
            record["problems"] = problems
        if not snap["vcores"]:
            self.not_judged += 1
        return record

    def attach(self) -> None:
        """At ``pv-watch on`` (the target stopped by its user, not at a breakpoint):
        every vcore found now is in run 0 (its ``seq``) until its next
        kvmppc_run_core, so the first stops of a run that was already going when the
        watch began are known to share it.  The snapshot is kept and logged, as stop
        "(attach)", only if the watch ends by ``pv-watch now`` with nothing logged
        (a target that never reached a watched point)."""
        if "kvmppc_run_core" not in {b.label for b in self.points}:
            return  # runs are counted only when their starts are watched
        reading, _ = session.read_state(stop="(attach)", in_stop=True)
        snap = reading.snapshot
        for vc in snap["vcores"]:
            self.runs.setdefault(vc["addr"], 0)
            vc["seq"] = self.runs[vc["addr"]]
        self.attached = (snap, reading.problems)

    def _flush_attach(self) -> None:
        if self.attached is not None:
            snap, problems = self.attached
            self.attached = None
            if self.log and self.mark_attach:
                write_json_line(self.log, self._judge(snap, problems))

    def now(self, label: str) -> dict[str, Any]:
        """A snapshot of the target stopped by its user while the watch is on (``pv-watch
        now``, e.g. at a deadline), logged and checked as stop ``label``.  It carries
        each vcore's run count: every kvmppc_run_core since the last stop would have
        been a stop, so a vcore in the same run as at the last stop keeps its ``seq``
        and a run that never ended is judged by its bound (invariant 44)."""
        self.mark_attach = True
        self._flush_attach()
        reading, _ = session.read_state(stop=label, in_stop=True)
        snap = reading.snapshot
        for vc in snap["vcores"]:
            if vc["addr"] in self.runs and vc["addr"] not in self.unsure:
                vc["seq"] = self.runs[vc["addr"]]
        record = self._judge(snap, reading.problems)
        self.tally.record(label, record.get("violations") or [], judged=bool(snap.get("vcores")))
        self.violations += len(record.get("violations") or [])
        if self.log:
            write_json_line(self.log, record)
        return record

    def _count_runs(self, entry: str | None, vcore_from: dict[int, str], snap: dict[str, Any]) -> None:
        """Every run of a vcore starts with a call of kvmppc_run_core(vc)
        (arch/powerpc/kvm/book3s_hv.c, kvmppc_run_vcpu): count them per vcore
        and write the count as the vcore's ``seq`` at the stops inside that run.
        The stop at kvmppc_run_core's entry itself gets none: the vcore still
        holds what the previous run left (init_vcore_to_run clears
        entry_exit_map, napping_threads ... only after it), so it lies between
        two runs."""
        starting = set()
        if entry == "kvmppc_run_core":
            for addr, source in vcore_from.items():
                if source.startswith("r3 at "):
                    self.runs[addr] = self.runs.get(addr, 0) + 1
                    starting.add(addr)
                    self.unsure.discard(addr)
            if not starting:
                self.missed_start()
        for vc in snap["vcores"]:
            if vc["addr"] in self.runs and vc["addr"] not in starting | self.unsure:
                vc["seq"] = self.runs[vc["addr"]]

    def missed_start(self) -> None:
        """A run started that was not counted (its vcore unknown): every vcore
        counted so far may be in a new run, so none is written with a seq
        until its next counted start.  Its count moves on, so a seq is never
        written twice for two different runs."""
        for addr in self.runs:
            self.runs[addr] += 1
            self.unsure.add(addr)

    def log_error(self, label: str, e: Exception) -> bool:
        """Log a stop that could not be read; it counts towards --max-stops."""
        self.errors += 1
        self.tally.record(label, [], error=str(e))
        if label == "kvmppc_run_core":
            self.missed_start()
        if self.log:
            with contextlib.suppress(gdb.GdbError):
                write_json_line(self.log, {"stop": label, "error": str(e)})
        if self.max_stops is not None and self.stops >= self.max_stops:
            self.finish(f"{self.stops} stops (--max-stops), last error: {e}")
            return True
        return False

    def finish(self, why: str) -> None:
        """Stop watching.  gdb forbids deleting breakpoints inside stop(), so
        they go when the stop this returns True for is reported."""
        self.finished = True
        gdb.write(self.report(why) + "\n")
        gdb.events.stop.connect(self._delete_on_stop)

    def report(self, why: str) -> str:
        """The summary whatever ended the watch: totals, violations by invariant, per label and cpu."""
        text = self.tally.render(why, width=check.terminal_width())
        # median: the first hit also reads the boot-time values (PACA array, ...)
        per = statistics.median(self.times_ms) if self.times_ms else 0.0
        return text + f"\nmedian {per:.2f} ms per snapshot+check" + (f"; log {self.log}" if self.log else "")

    def _delete_on_stop(self, _event: Any) -> None:
        gdb.events.stop.disconnect(self._delete_on_stop)
        self.delete()

    def delete(self) -> None:
        for bp in self.points:
            if bp.is_valid():
                bp.delete()
        self.points = []

    def summary(self) -> str:
        """The totals in one line (while the watch is on)."""
        return self.tally.line()


_watcher: Watcher | None = None


class PvWatch(gdb.Command):
    """Snapshot and check the vcore state automatically at every point where it is defined.

    Usage: pv-watch on [--log FILE] [--max-stops N] [--stop-on-violation] [--at LABEL,...]
           pv-watch now [--stop LABEL]
           pv-watch off
           pv-watch           (status)

    `on` plants silent internal breakpoints (not listed by `info breakpoints`) at
    kvmppc_run_core and kvmppc_start_thread (kvm-hv.ko: its symbols must be loaded
    at their load address with add-symbol-file, as `pyvcore gdb` does; the
    breakpoint goes on the ELFv2 local entry read from the symbol's st_other)
    and at the real-mode labels kvmppc_hv_entry,
    kvmppc_primary_no_guest, kvm_do_nap, kvmhv_commence_exit and
    kvmhv_switch_to_host (vmlinux).  At each hit it takes a snapshot (stop label
    "LABEL@cpuN"), checks it against the model and lets the target continue.
    At kvmppc_run_core the vcore is its argument (r3), at kvmppc_start_thread
    the vcpu and vcore (r3, r4); a stop where no vcore can be read is logged as
    not judged.

    `now` (the watch on, the target stopped by you, e.g. interrupted at a
    deadline) logs and checks one snapshot as stop LABEL (default "(now)") with
    each vcore's run count, so a run still going since the last stop is judged
    by its time bound (invariant 44: a hung core is a violation, not a silence).

      --log FILE            append each snapshot (with its "violations") to FILE as JSONL
      --max-stops N         after N stops (a stop that could not be read counts)
                            stop the target and turn the watch off
      --stop-on-violation   stop the target when an invariant is violated
      --at LABELS           comma-separated symbols instead of the default set"""

    def __init__(self) -> None:
        super().__init__("pv-watch", gdb.COMMAND_BREAKPOINTS)

    def complete(self, text: str, word: str) -> list[str]:
        words = ("on", "now", "off", "--log", "--max-stops", "--stop-on-violation", "--at", "--stop")
        return complete_words(text, word, words)

    def invoke(self, arg: str, from_tty: bool) -> None:
        p = ArgParser("pv-watch")
        p.add_argument("action", nargs="?", choices=("on", "now", "off"))
        p.add_argument("--stop", default="(now)")
        p.add_argument("--log")
        p.add_argument("--max-stops", type=int)
        p.add_argument("--stop-on-violation", action="store_true")
        p.add_argument("--at")
        a = p.parse(arg)
        if a.action is None:
            _show_watch()
        elif a.action == "now":
            _watch_now(a.stop)
        elif a.action == "off":
            _watch_off()
        else:
            _watch_on(a.log, a.max_stops, a.stop_on_violation, a.at)


def _show_watch() -> None:
    """`pv-watch` alone: off, on (where, and what it saw so far), or the last run's report."""
    if _watcher is None:
        gdb.write("pv-watch: off\n")
    elif _watcher.finished:
        gdb.write(_watcher.report("last run") + "\n")
    else:
        gdb.write(f"pv-watch: on at {', '.join(b.label for b in _watcher.points)}; {_watcher.summary()}\n")


def _watch_now(stop: str) -> None:
    """`pv-watch now`: judge the target as it is now, as one more stop of the watch."""
    if _watcher is None or _watcher.finished:
        raise PvError("pv-watch now: the watch is off")
    record = _watcher.now(stop)
    found = record.get("violations") or []
    gdb.write(
        f"pv-watch now: {stop}: "
        + ("; ".join(f"invariant {v.get('invariant')}: {v.get('message')}" for v in found) or "no violation")
        + "\n"
    )


def _watch_off() -> None:
    """`pv-watch off`: delete the breakpoints and print the report."""
    if _watcher is None or (_watcher.finished and not _watcher.points):
        gdb.write("pv-watch: already off\n")
        return
    _watcher.finished = True
    _watcher.delete()
    gdb.write(_watcher.report("pv-watch off") + "\n")


def _watch_on(log: str | None, max_stops: int | None, stop_on_violation: bool, at: str | None) -> None:
    """`pv-watch on`: a new watch (replacing a running one) at ``at`` (comma-separated
    symbols) or DEFAULT_POINTS; PvError when no point is found or the log is not writable."""
    global _watcher
    if max_stops is not None and max_stops < 1:
        raise PvError("pv-watch: --max-stops must be at least 1")
    k = session.kernel()  # fails early with one line if there is no usable kernel
    if _watcher is not None and not _watcher.finished:
        _watcher.finished = True
        _watcher.delete()
    check.reset_checker()
    watcher = Watcher(log, max_stops, stop_on_violation)
    labels = tuple(x.strip() for x in at.split(",") if x.strip()) if at else DEFAULT_POINTS
    missing = []
    for label in labels:
        try:
            where = k.entry_point(label)
        except PvError:
            watcher.delete()
            raise
        if where is None:
            missing.append(label)
            continue
        entry = label if label in ENTRY_ARGUMENTS else None
        watcher.points.append(WatchPoint(watcher, label, where[0], entry))
    if not watcher.points:
        raise PvError(f"pv-watch: none of {', '.join(labels)} found in the symbols")
    if log:
        try:
            open(log, "a", encoding="utf-8").close()
        except OSError as e:
            watcher.delete()
            raise PvError(f"pv-watch: cannot write {log}: {e.strerror}") from None
    _watcher = watcher
    try:
        watcher.attach()
    except PvError as e:  # the runs are then counted from the first kvmppc_run_core
        gdb.write(f"pv-watch: no reading at attach ({e})\n")
    gdb.write(
        f"pv-watch: on at {', '.join(b.label for b in watcher.points)}"
        + (f"; log {log}" if log else "")
        + "\n"
    )
    if missing:
        unloaded = any(m in MODULE_POINTS for m in missing)
        gdb.write(
            f"pv-watch: not watched (symbol unknown): {', '.join(missing)}"
            + ("; kvm-hv.ko symbols are not loaded (add-symbol-file, or `pyvcore gdb`)" if unloaded else "")
            + "\n"
        )


def _before_exit(_event: Any = None) -> None:
    """Delete our breakpoints before gdb tears Python down (gdb 13 crashed at
    exit when Python breakpoints were still planted)."""
    if _watcher is not None:
        _watcher.finished = True
        _watcher.delete()


def _target_exited(_event: Any = None) -> None:
    """The target went away while watching: say what was seen."""
    if _watcher is not None and not _watcher.finished:
        _watcher.finished = True
        gdb.write(_watcher.report("the target exited") + "\n")


def register() -> None:
    PvWatch()
    gdb.events.exited.connect(_target_exited)
    if hasattr(gdb.events, "gdb_exiting"):
        gdb.events.gdb_exiting.connect(_before_exit)
