"""Run mutants in the lab and judge them: the kill table.

Each (mutant, scenario) boots the lab with the mutated copy
(``pyvcore.diff.run_diff(kernel=..., modules=...)``), takes ``stops`` sampled
snapshots at the hook points and judges them (sampled mode); when
``pyvcore.trace.run_trace`` exists the same boot is judged continuously too.  The
unmutated kernel runs first, as the control: it must be clean, else no kill
means anything and the run stops.
"""

from __future__ import annotations

import importlib
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyvcore.mutants.apply import MutantRefused, apply
from pyvcore.mutants.catalogue import Mutant

Say = Callable[[str], None]


@dataclass
class Outcome:
    """One (mutant, scenario) run.  ``sampled`` / ``continuous``: "killed", "survived"
    ("clean" for the unmutated control), "not run" or "error"; ``*_by``: what killed it ("invariant 8 at kvmppc_hv_entry"),
    or why it did not run."""

    mutant: str
    klass: str
    commit: str
    scenario: str
    sampled: str
    sampled_by: str
    continuous: str = "not run"
    continuous_by: str = "pyvcore.trace is not available"
    seconds: float = 0.0
    equivalent: bool = False
    invariants: list[int] = field(default_factory=list)  # every invariant the sampled run violated
    # Where each mode's record of the run was kept (the pv-watch JSONL trace, the
    # plugin's event log), for reading a verdict back; None when not kept.
    sampled_trace: str | None = None
    continuous_log: str | None = None
    continuous_invariants: list[int] = field(default_factory=list)
    # The sampled watch began at QEMU's first instruction (else at the guest's READY).
    from_boot: bool = False

    @property
    def killed(self) -> bool:
        return "killed" in (self.sampled, self.continuous)


def _first_violation(violations: list[dict[str, Any]]) -> str:
    v = violations[0]
    stop = v.get("stop") or "?"
    return f"invariant {v.get('invariant')} at {stop}"


def sampled(
    scenario: str,
    kernel: Path | None,
    modules: Path | None,
    stops: int,
    lock_wait: float,
    qemu: str = "patched",
    from_boot: bool = False,
    *,
    say: Say | None = None,
    tick: Say | None = None,
) -> tuple[str, str, list[int], str | None]:
    """Judge one boot by sampling (``pyvcore diff``): (status, detail, invariants
    violated, where the trace was kept).  ``from_boot``: watched from QEMU's first
    instruction, so a mutant that breaks the very first vcore run (before the guest
    could report READY) is seen doing it.  ``say`` hears each phase (the boot's stages,
    a host oops as the console shows it), ``tick`` the watch's stop count."""
    from pyvcore.diff import run_diff

    result = run_diff(
        scenario,
        qemu=qemu,
        kernel=kernel,
        modules=modules,
        stops=stops,
        lock_wait=lock_wait,
        keep=False,
        from_boot=from_boot,
        progress=say,
        tick=tick,
    )
    kept = str(result.trace) if result.trace else None
    if result.verdict == "violations":
        numbers = sorted({int(v.get("invariant", 0)) for v in result.violations})
        return "killed", _first_violation(result.violations), numbers, kept
    if result.verdict == "clean":
        return "survived", f"{sum(result.judged.values())} stops judged clean", [], kept
    return "error", f"{result.verdict}: {result.error or _never_judged(result)}", [], kept


def _never_judged(result: Any) -> str:
    summary = getattr(result, "summary", None)
    kinds = list(getattr(summary, "never_judged", []) or [])
    return f"never judged at {', '.join(kinds)}" if kinds else "a stop kind was never judged"


def continuous(
    scenario: str,
    kernel: Path | None,
    modules: Path | None,
    lock_wait: float,
    qemu: str = "patched",
    *,
    say: Say | None = None,
) -> tuple[str, str, list[int], str | None]:
    """Judge one boot continuously (``pyvcore.trace.run_trace``, one traced boot, no
    untraced timing boot), when that module exists: (status, detail, invariants
    violated, the event log); the detail of a kill is the first violation's invariant
    and event.  ``say`` hears each phase (the plugin's build, the boot's stages, a host
    oops)."""
    try:
        trace = importlib.import_module("pyvcore.trace")
    except ImportError:
        return "not run", "pyvcore.trace is not available", [], None
    result = trace.run_trace(
        scenario,
        qemu=qemu,
        kernel=kernel,
        modules=modules,
        lock_wait=lock_wait,
        baseline=False,
        progress=say,
    )
    verdict = getattr(result, "verdict", "?")
    summary = getattr(result, "summary", None) or {}
    log = getattr(result, "log", None)
    if verdict == "violations":
        found = summary.get("violations") or [{}]
        numbers = sorted({int(v["invariant"]) for v in found if str(v.get("invariant", "")).isdigit()})
        v = found[0]
        detail = (
            f"invariant {v.get('invariant', '?')} at event seq {v.get('seq', '?')} ({v.get('field', '?')})"
        )
        if summary.get("hung"):
            detail += f"; the boot hung in the {summary['hung'].get('stage')} stage"
        return "killed", detail, numbers, log
    if verdict == "clean":
        return "survived", f"{summary.get('stats', {}).get('events', '?')} events clean", [], log
    return "error", str(getattr(result, "error", None) or verdict), [], log


MODES = ("sampled", "continuous")


@dataclass
class Plan:
    """What to run: mutants, scenario override, stops per boot, lock wait (s), QEMU,
    and the modes ("sampled": ``pyvcore diff``; "continuous": ``pyvcore trace``)."""

    mutants: Sequence[Mutant]
    stops: int
    lock_wait: float
    scenarios: tuple[str, ...] | None = None
    qemu: str = "patched"
    # Go on when a control run is not clean; a mutant then counts as killed only by an
    # invariant its scenario's control did not violate (and the whole run is not a verdict).
    keep_going: bool = False
    modes: tuple[str, ...] = MODES
    # The controls' invariants per (scenario, watched from boot): a kill needs another one.
    control_invariants: dict[tuple[str, bool], set[int]] = field(default_factory=dict)
    control_continuous: dict[tuple[str, bool], set[int]] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    # Progress: ``say`` hears one line per phase, ``tick`` a transient line (the caller
    # throttles it); both None: silent.
    say: Callable[[str], None] | None = None
    tick: Callable[[str], None] | None = None


def run_one(
    mutant: Mutant | None,
    scenario: str,
    plan: Plan,
    *,
    vmlinux: Path,
    modules: dict[str, Path],
    workdir: Path,
    from_boot: bool = False,
) -> Outcome:
    """Boot and judge one mutant (None: the unmutated control) in one scenario, once per
    mode; ``from_boot``: the sampled watch starts at QEMU's first instruction."""
    started = time.monotonic()
    kernel: Path | None = None
    mod_dir: Path | None = None
    name = mutant.name if mutant else "(control)"
    where = f"{name} [{scenario}{', from boot' if from_boot else ''}]"

    def say(mode: str) -> Say:
        return lambda message: (plan.say or _silent)(f"{where} {mode}: {message}")

    if mutant is not None:
        say("apply")(f"patching a copy of {mutant.obj} at {mutant.symbol}+{mutant.offset:#x} ...")
        mutated = apply(mutant, workdir / mutant.name, vmlinux=vmlinux, modules=modules)
        kernel, mod_dir = mutated.kernel, mutated.modules
    o = Outcome(
        mutant=name,
        klass=mutant.klass if mutant else "unmutated kernel",
        commit=mutant.commit if mutant else "-",
        scenario=scenario,
        sampled="not run",
        sampled_by="not asked for (--mode)",
        continuous="not run",
        continuous_by="not asked for (--mode)",
        equivalent=bool(mutant and mutant.equivalent),
        from_boot=from_boot,
    )
    if "sampled" in plan.modes:
        ticks = plan.tick or _silent
        o.sampled, o.sampled_by, o.invariants, o.sampled_trace = sampled(
            scenario,
            kernel,
            mod_dir,
            plan.stops,
            plan.lock_wait,
            plan.qemu,
            from_boot,
            say=say("sampled"),
            tick=lambda message: ticks(f"{where} sampled: {message}"),
        )
        o.sampled = _clean_control(mutant, o.sampled)
        say("sampled")(f"{o.sampled}: {o.sampled_by}")
    if "continuous" in plan.modes:
        o.continuous, o.continuous_by, o.continuous_invariants, o.continuous_log = continuous(
            scenario, kernel, mod_dir, plan.lock_wait, plan.qemu, say=say("continuous")
        )
        o.continuous = _clean_control(mutant, o.continuous)
        say("continuous")(f"{o.continuous}: {o.continuous_by}")
    o.seconds = round(time.monotonic() - started, 1)
    return o


def _silent(message: str) -> None:
    pass


def _clean_control(mutant: Mutant | None, status: str) -> str:
    """A control has nothing to survive: its run with no violation is "clean"."""
    return "clean" if mutant is None and status == "survived" else status


def _control(plan: Plan, key: tuple[str, bool], o: Outcome) -> None:
    """Record a control run; refuse to go on when its sampled verdict is not clean."""
    plan.control_invariants[key] = set(o.invariants)
    plan.control_continuous[key] = set(o.continuous_invariants)
    if "sampled" not in plan.modes:
        return
    if o.sampled != "clean" and not (plan.keep_going and o.sampled == "killed"):
        watched = " watched from boot" if key[1] else ""
        raise MutantRefused(
            f"control run of scenario {key[0]}{watched} is not clean ({o.sampled}: {o.sampled_by}): "
            "no kill would mean anything"
        )


def _discount(plan: Plan, o: Outcome) -> None:
    """A kill by invariants the same control (scenario, watch) also showed is no kill."""
    key = (o.scenario, o.from_boot)
    seen = plan.control_invariants.get(key, set())
    if o.sampled == "killed" and set(o.invariants) <= seen:
        o.sampled = "survived"
        o.sampled_by = f"only invariants the control also violated ({sorted(seen)})"
    seen = plan.control_continuous.get(key, set())
    if o.continuous == "killed" and set(o.continuous_invariants) <= seen:
        o.continuous = "survived"
        o.continuous_by = f"only invariants the control's trace also showed ({sorted(seen)})"


def run_plan(
    plan: Plan, *, vmlinux: Path, modules: dict[str, Path], progress: Callable[[Outcome], None] | None = None
) -> list[Outcome]:
    """Control first (every scenario and watch start the plan uses), then each mutant
    in its scenarios."""
    runs_of = {m.name: [(s, m.from_boot) for s in (plan.scenarios or m.scenarios)] for m in plan.mutants}
    used = sorted({key for keys in runs_of.values() for key in keys})
    with tempfile.TemporaryDirectory(prefix="pyvcore-mutants-") as tmp:
        work = Path(tmp)
        for key in used:
            o = run_one(None, key[0], plan, vmlinux=vmlinux, modules=modules, workdir=work, from_boot=key[1])
            plan.outcomes.append(o)
            if progress:
                progress(o)
            _control(plan, key, o)
        for m in plan.mutants:
            for scenario, from_boot in runs_of[m.name]:
                o = run_one(
                    m, scenario, plan, vmlinux=vmlinux, modules=modules, workdir=work, from_boot=from_boot
                )
                _discount(plan, o)
                plan.outcomes.append(o)
                if progress:
                    progress(o)
                # one 300 MB copy at a time
                for f in (work / m.name).glob("**/*"):
                    if f.is_file():
                        f.unlink()
    return plan.outcomes


def kill_rate(outcomes: Sequence[Outcome]) -> tuple[int, int]:
    """(killed, non-equivalent mutants run), counting a mutant killed in any scenario."""
    names = {o.mutant for o in outcomes if o.mutant != "(control)" and not o.equivalent}
    killed = {o.mutant for o in outcomes if o.mutant in names and o.killed}
    return len(killed), len(names)


def to_json(outcomes: Sequence[Outcome]) -> str:
    killed, total = kill_rate(outcomes)
    doc = {"outcomes": [asdict(o) for o in outcomes], "killed": killed, "non_equivalent": total}
    return json.dumps(doc, indent=2)
