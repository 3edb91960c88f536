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


@dataclass
class Outcome:
    """One (mutant, scenario) run.  ``sampled`` / ``continuous``: "killed", "survived",
    "not run" or "error"; ``*_by``: what killed it ("invariant 8 at kvmppc_hv_entry"),
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
) -> tuple[str, str, list[int]]:
    """Judge one boot by sampling (``pyvcore diff``): (status, detail, invariants violated)."""
    from pyvcore.diff import run_diff

    result = run_diff(
        scenario, qemu=qemu, kernel=kernel, modules=modules, stops=stops, lock_wait=lock_wait, keep=False
    )
    if result.verdict == "violations":
        numbers = sorted({int(v.get("invariant", 0)) for v in result.violations})
        return "killed", _first_violation(result.violations), numbers
    if result.verdict == "clean":
        return "survived", f"{sum(result.judged.values())} stops judged clean", []
    return "error", f"{result.verdict}: {result.error or 'a stop kind was never judged'}", []


def continuous(
    scenario: str, kernel: Path | None, modules: Path | None, lock_wait: float, qemu: str = "patched"
) -> tuple[str, str]:
    """Judge one boot continuously (``pyvcore.trace.run_trace``), when that module exists:
    (status, detail); the detail of a kill is the first violation's invariant and event."""
    try:
        trace = importlib.import_module("pyvcore.trace")
    except ImportError:
        return "not run", "pyvcore.trace is not available"
    result = trace.run_trace(scenario, qemu=qemu, kernel=kernel, modules=modules, lock_wait=lock_wait)
    verdict = getattr(result, "verdict", "?")
    summary = getattr(result, "summary", None) or {}
    if verdict == "violations":
        found = summary.get("violations") or [{}]
        v = found[0]
        return (
            "killed",
            f"invariant {v.get('invariant', '?')} at event seq {v.get('seq', '?')} ({v.get('field', '?')})",
        )
    if verdict == "clean":
        return "survived", f"{summary.get('stats', {}).get('events', '?')} events clean"
    return "error", str(getattr(result, "error", None) or verdict)


@dataclass
class Plan:
    """What to run: mutants, scenario override, stops per boot, lock wait (s), QEMU."""

    mutants: Sequence[Mutant]
    stops: int
    lock_wait: float
    scenarios: tuple[str, ...] | None = None
    qemu: str = "patched"
    # Go on when a control run is not clean; a mutant then counts as killed only by an
    # invariant its scenario's control did not violate (and the whole run is not a verdict).
    keep_going: bool = False
    control_invariants: dict[str, set[int]] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)


def run_one(
    mutant: Mutant | None,
    scenario: str,
    plan: Plan,
    *,
    vmlinux: Path,
    modules: dict[str, Path],
    workdir: Path,
) -> Outcome:
    """Boot and judge one mutant (None: the unmutated control) in one scenario."""
    started = time.monotonic()
    kernel: Path | None = None
    mod_dir: Path | None = None
    if mutant is not None:
        mutated = apply(mutant, workdir / mutant.name, vmlinux=vmlinux, modules=modules)
        kernel, mod_dir = mutated.kernel, mutated.modules
    s_status, s_by, numbers = sampled(scenario, kernel, mod_dir, plan.stops, plan.lock_wait, plan.qemu)
    c_status, c_by = continuous(scenario, kernel, mod_dir, plan.lock_wait, plan.qemu)
    return Outcome(
        mutant=mutant.name if mutant else "(control)",
        klass=mutant.klass if mutant else "unmutated kernel",
        commit=mutant.commit if mutant else "-",
        scenario=scenario,
        sampled=s_status,
        sampled_by=s_by,
        continuous=c_status,
        continuous_by=c_by,
        seconds=round(time.monotonic() - started, 1),
        equivalent=bool(mutant and mutant.equivalent),
        invariants=numbers,
    )


def run_plan(
    plan: Plan, *, vmlinux: Path, modules: dict[str, Path], progress: Callable[[Outcome], None] | None = None
) -> list[Outcome]:
    """Control first (every scenario the plan uses), then each mutant in its scenarios."""
    scenarios_of = {m.name: plan.scenarios or m.scenarios for m in plan.mutants}
    used = sorted({s for ss in scenarios_of.values() for s in ss})
    with tempfile.TemporaryDirectory(prefix="pyvcore-mutants-") as tmp:
        work = Path(tmp)
        for scenario in used:
            o = run_one(None, scenario, plan, vmlinux=vmlinux, modules=modules, workdir=work)
            plan.outcomes.append(o)
            if progress:
                progress(o)
            plan.control_invariants[scenario] = set(o.invariants)
            if o.sampled != "survived" and not (plan.keep_going and o.sampled == "killed"):
                raise MutantRefused(
                    f"control run of scenario {scenario} is not clean ({o.sampled}: {o.sampled_by}): "
                    "no kill would mean anything"
                )
        for m in plan.mutants:
            for scenario in scenarios_of[m.name]:
                o = run_one(m, scenario, plan, vmlinux=vmlinux, modules=modules, workdir=work)
                seen = plan.control_invariants.get(scenario, set())
                if o.sampled == "killed" and set(o.invariants) <= seen:
                    o.sampled = "survived"
                    o.sampled_by = f"only invariants the control also violated ({sorted(seen)})"
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
