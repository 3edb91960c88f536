"""The vcore scheduler model, driven from Python.

A :class:`Vcore` is one vcore on one physical core of 1-8 threads, for one
kernel variant (``"seed"``: the 2014 change e0b7ec058c0e, ``"modern"``:
today's POWER8 path, ``"prepatch"``: threads handed out first-come
first-served as before the change).  Each method is one kernel step; an
illegal step raises :class:`ModelError` and changes nothing.  After every
step the state is checked with the same invariant code that checks a live
kernel (``pyvcore.Checker``), plus the model's own history invariants::

    >>> import pyvcore
    >>> vc = pyvcore.Vcore("seed", threads=4, vcpus=[1, 2])
    >>> vc.runnable(1, 2)
    >>> vc.run_core()                 # reset, grab, start_thread x2, RUNNING
    >>> vc.enter(0); vc.switch_in(); vc.guest_entry(0)   # thread 0 naps: no vcpu
    >>> vc.vcore["napping_threads"], vc.paca_table()[0]["napping"]
    (1, 2)
    >>> vc.snapshot()                 # a contract-2 dict pyvcore.Checker accepts

The model runs in Rust (``pyvcore._core.CoreModel``); this module is the
readable face of it.  :func:`explore` enumerates every interleaving of one run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from pyvcore import _core
from pyvcore.checker import Violation

ModelError = _core.ModelError
"""Raised for an event that is not legal in the current state, or a bad
parameter (a ValueError); ``.event`` is the event text, ``.reason`` why."""

EVENT_FORMS: list[str] = list(_core.event_forms())
"""The text form of every event, e.g. ``"enter(thread=T)"``."""

FAULTS: list[str] = list(_core.fault_names())
"""Deliberate kernel bugs :func:`explore` can inject (``fault=``) to show
they are caught: no-cede-exit, early-switch-out, no-exit-ipi."""

BOOK3S_INTERRUPT_HV_DECREMENTER = 0x980
BOOK3S_INTERRUPT_SYSCALL = 0xC00

# vcore_state names per variant (the kernel's #defines; see rust/consts.rs).
_SEED_STATES = {
    0: "VCORE_INACTIVE",
    1: "VCORE_SLEEPING",
    2: "VCORE_STARTING",
    3: "VCORE_RUNNING",
    4: "VCORE_EXITING",
}
_MODERN_STATES = {
    0: "VCORE_INACTIVE",
    1: "VCORE_PREEMPT",
    2: "VCORE_PIGGYBACK",
    3: "VCORE_SLEEPING",
    4: "VCORE_RUNNING",
    5: "VCORE_EXITING",
    6: "VCORE_POLLING",
}


class InvariantError(AssertionError):
    """Raised by a ``strict`` :class:`Vcore` when a step breaks an invariant."""

    def __init__(self, event: str, violations: list[Violation]) -> None:
        self.event = event
        self.violations = violations
        super().__init__(f"{event}: " + "; ".join(str(v) for v in violations))


@dataclass(frozen=True)
class Step:
    """What one event did."""

    event: str
    """The event in its text form, e.g. ``"enter(thread=1)"``."""
    stop: str
    """The kernel function or label the event ends at (the snapshot's "stop")."""
    violations: list[Violation] = field(default_factory=list)
    doorbell_delivered: Optional[int] = None
    """For a doorbell: the vcpu id it reached (None = no vcpu on that thread)."""
    ceded_to_nap: bool = False
    """For a cede: whether the thread napped (False: returned at once, or exited)."""


def _violations(raw: Iterable[dict[str, Any]], stop: Optional[str] = None) -> list[Violation]:
    return [Violation(v["invariant"], v["message"], dict(v["fields"]), stop=stop) for v in raw]


class Vcore:
    """One vcore on one physical core, driven event by event.

    ``variant`` is ``"seed"``, ``"modern"`` or ``"prepatch"``; ``threads`` the
    threads per core (1-8); ``vcpus`` the vcpu ids to create (all of one
    vcore: ids ``k*threads .. k*threads+threads-1``); ``cpu_base`` the host
    cpu of thread 0.  With ``strict=True`` a step that breaks an invariant
    raises :class:`InvariantError` (the step still happened); otherwise the
    violations are returned in the :class:`Step` and kept in
    :attr:`violations`.
    """

    def __init__(
        self,
        variant: str = "modern",
        threads: int = 4,
        vcpus: Sequence[int] = (),
        *,
        cpu_base: int = 0,
        strict: bool = False,
    ) -> None:
        if not isinstance(threads, int) or not 1 <= threads <= 8:
            raise ValueError(f"threads per core must be 1..8, not {threads!r}")
        if not isinstance(cpu_base, int) or not 0 <= cpu_base < 2**32:
            raise ValueError(f"cpu_base must be a cpu number, not {cpu_base!r}")
        self._core = _core.CoreModel(variant, threads, cpu_base)
        self.strict = strict
        self.violations: list[Violation] = []
        """Violations found by the last step."""
        for vcpu_id in vcpus:
            self.create_vcpu(vcpu_id)

    # -- reading --------------------------------------------------------------

    @property
    def variant(self) -> str:
        return self._core.variant

    @property
    def threads(self) -> int:
        return self._core.threads

    def snapshot(self) -> dict[str, Any]:
        """The current state as a contract-2 snapshot dict (kernel field names;
        pointers are the model's synthetic addresses)."""
        return json.loads(self._core.snapshot_json())

    def snapshot_json(self) -> str:
        """The snapshot as one line of JSON (a trace line for ``pyvcore check``)."""
        return self._core.snapshot_json()

    def _detail(self) -> dict[str, Any]:
        return json.loads(self._core.detail_json())

    def paca_table(self) -> list[dict[str, Any]]:
        """One row per hardware thread: its PACA ``kvm_hstate`` fields (vcpu
        and vcore as ids/addresses), where the thread is (``phase`` and the
        kernel ``label``) and whether an IPI is pending."""
        snap = self.snapshot()
        detail = self._detail()
        rows = []
        for thread, (t, d) in enumerate(zip(snap["threads"], detail["threads"])):
            h = t["kvm_hstate"]
            rows.append(
                {
                    "thread": thread,
                    "cpu": t["cpu"],
                    "phase": d["phase"],
                    "label": d["label"],
                    "vcpu_id": d["kvm_vcpu_id"],
                    "running": d["running"],
                    "ipi": d["ipi"],
                    "lpidr": t.get("lpidr"),
                    **h,
                }
            )
        return rows

    @property
    def vcore(self) -> Optional[dict[str, Any]]:
        """The vcore's fields (contract-2 keys) plus ``vcore_state_name``; None
        before the first vcpu is created."""
        vcores = self.snapshot()["vcores"]
        if not vcores:
            return None
        vc = dict(vcores[0])
        names = _MODERN_STATES if self.variant == "modern" else _SEED_STATES
        vc["vcore_state_name"] = names.get(vc["vcore_state"], "?")
        detail = self._detail()["vcore"]
        vc["runnable"] = detail["runnable"]
        return vc

    @property
    def vcpus(self) -> list[dict[str, Any]]:
        """Every vcpu's fields (contract-2 keys) plus ``prodded``, ``trap``, ``started``."""
        extra = {d["vcpu_id"]: d for d in self._detail()["vcpus"]}
        out = []
        for v in self.snapshot()["vcpus"]:
            d = extra.get(v["vcpu_id"], {})
            out.append({**v, "prodded": d.get("prodded"), "trap": d.get("trap"), "started": d.get("started")})
        return out

    @property
    def trace(self) -> list[str]:
        """The events applied so far, in text form (replayable with :meth:`replay`)."""
        return list(self._core.trace())

    def enabled(self) -> list[str]:
        """Every event that is legal now, in text form."""
        return list(self._core.enabled())

    def copy(self) -> Vcore:
        """An independent copy (same state and trace)."""
        other = Vcore.__new__(Vcore)
        other._core = self._core.copy()
        other.strict = self.strict
        other.violations = list(self.violations)
        return other

    def format_table(self) -> str:
        """The PACA table as text, one line per thread."""
        cols = (
            "thread",
            "phase",
            "vcpu_id",
            "kvm_vcore",
            "ptid",
            "hwthread_req",
            "hwthread_state",
            "napping",
            "in_guest",
            "ipi",
        )
        rows = [
            [
                ("-" if r[c] is None else f"{r[c]:#x}" if c == "kvm_vcore" and r[c] else str(r[c]))
                for c in cols
            ]
            for r in self.paca_table()
        ]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        return "\n".join(lines)

    # -- events ---------------------------------------------------------------

    def apply(self, event: str) -> Step:
        """Apply one event given in its text form (see :data:`EVENT_FORMS`)."""
        raw = json.loads(self._core.apply(event))
        violations = _violations(raw["violations"], raw["stop"])
        self.violations = violations
        step = Step(raw["event"], raw["stop"], violations, raw["doorbell_delivered"], raw["ceded_to_nap"])
        if violations and self.strict:
            raise InvariantError(step.event, violations)
        return step

    def replay(self, events: Iterable[str]) -> list[Step]:
        """Apply events in order (e.g. an explorer counterexample)."""
        return [self.apply(e) for e in events]

    def create_vcpu(self, vcpu_id: int) -> Step:
        """kvmppc_core_vcpu_create_hv (the first one creates the vcore)."""
        return self.apply(f"create_vcpu(vcpu={int(vcpu_id)})")

    def runnable(self, *vcpu_ids: int) -> None:
        """kvmppc_run_vcpu for each vcpu: RUNNABLE, on the runnable list (a
        latecomer joins a running vcore at once)."""
        for vcpu_id in vcpu_ids:
            self.apply(f"runnable(vcpu={int(vcpu_id)})")

    def block(self, vcpu_id: int) -> Step:
        """kvmppc_remove_runnable while the vcore is inactive."""
        return self.apply(f"block(vcpu={int(vcpu_id)})")

    def run_core(self, runner: Optional[int] = None, *, start: bool = True) -> Step:
        """kvmppc_run_core by ``runner`` (default: the first runnable vcpu):
        reset and grab; with ``start`` (default) also kvmppc_start_thread for
        every runnable vcpu and thread 0's entry set-up (vcore_entry)."""
        if runner is None:
            vc = self.vcore
            if not vc or not vc["runnable"]:
                err = ModelError("illegal event run_core: no runnable vcpu to be the runner")
                err.event, err.reason = "run_core", "no runnable vcpu to be the runner"
                raise err
            runner = vc["runnable"][0]
        step = self.apply(f"run_core(runner={int(runner)})")
        if start:
            for vcpu_id in self._detail()["vcore"]["runnable"]:
                self.start_thread(vcpu_id)
            step = self.vcore_entry()
        return step

    def vcore_blocked(self, runner: Optional[int] = None) -> Step:
        """kvmppc_vcore_blocked: every runnable vcpu has ceded, the runner
        (default: the first runnable vcpu) sleeps; VCORE_SLEEPING."""
        if runner is None:
            vc = self.vcore
            runner = vc["runnable"][0] if vc and vc["runnable"] else -1
        return self.apply(f"vcore_blocked(runner={int(runner)})")

    def vcore_wake(self, vcpu_id: int) -> Step:
        """The sleeping vcore wakes because ``vcpu_id`` has work; its cede ends."""
        return self.apply(f"vcore_wake(vcpu={int(vcpu_id)})")

    def start_thread(self, vcpu_id: int) -> Step:
        return self.apply(f"start_thread(vcpu={int(vcpu_id)})")

    def vcore_entry(self) -> Step:
        """Thread 0 joins (even without a vcpu); VCORE_RUNNING."""
        return self.apply("vcore_entry")

    def enter(self, thread: int) -> Step:
        """kvmppc_hv_entry on ``thread`` (counted in the entry word, or too late)."""
        return self.apply(f"enter(thread={int(thread)})")

    def switch_in(self) -> Step:
        """Thread 0 switches LPIDR/SDR1 to the guest; vc->in_guest = 1."""
        return self.apply("switch_in")

    def guest_entry(self, thread: int) -> Step:
        """fast_guest_return, or kvmppc_primary_no_guest for thread 0 without a vcpu."""
        return self.apply(f"guest_entry(thread={int(thread)})")

    def cede(self, thread: int) -> Step:
        """H_CEDE by the vcpu on ``thread`` (may nap, return at once if prodded,
        or exit by the cede-to-exit rule)."""
        return self.apply(f"cede(thread={int(thread)})")

    def prod(self, vcpu_id: int) -> Step:
        """H_PROD reaches ``vcpu_id`` (prodded = 1; a napping ceder gets an IPI)."""
        return self.apply(f"prod(vcpu={int(vcpu_id)})")

    def wake(self, thread: int) -> Step:
        """A thread napping inside KVM wakes up."""
        return self.apply(f"wake(thread={int(thread)})")

    def doorbell(self, vcpu_id: int, thread: int) -> Optional[int]:
        """The guest on ``vcpu_id`` sends msgsndp to thread number ``thread``;
        returns the vcpu id it reached (None if no vcpu is on that thread)."""
        return self.apply(f"doorbell(vcpu={int(vcpu_id)}, thread={int(thread)})").doorbell_delivered

    def exit(self, thread: int, trap: int = BOOK3S_INTERRUPT_HV_DECREMENTER) -> Step:
        """The guest on ``thread`` exits with vector ``trap`` (0x980 HDEC,
        0xc00 an hcall for userspace, ...)."""
        return self.apply(f"exit(thread={int(thread)}, trap={int(trap):#x})")

    def exit_request(self) -> Step:
        """Modern: VCORE_EXIT_REQ arrives, as another subcore's first exiter sets it."""
        return self.apply("exit_request")

    def switch_out(self) -> Step:
        """Thread 0 switches back to the host once exits == entries."""
        return self.apply("switch_out")

    def tail(self, thread: int) -> Step:
        """A secondary finishes once vc->in_guest == 0."""
        return self.apply(f"tail(thread={int(thread)})")

    def release(self) -> Step:
        """kvmppc_wait_for_nap + kvmppc_release_hwthread for every thread."""
        return self.apply("release")

    def finish(self) -> Step:
        """post_guest_process / out: VCORE_INACTIVE, exits handled."""
        return self.apply("finish")

    def return_to_idle(self, thread: int) -> Step:
        """Modern: a released secondary leaves kvm_no_guest for the idle loop."""
        return self.apply(f"return_to_idle(thread={int(thread)})")

    def __repr__(self) -> str:
        vc = self.vcore
        state = vc["vcore_state_name"] if vc else "no vcore"
        return f"Vcore({self.variant!r}, threads={self.threads}, {state}, {len(self.trace)} events)"


@dataclass(frozen=True)
class ExploreResult:
    """The outcome of :func:`explore`."""

    variant: str
    threads: int
    vcpus: list[int]
    states: int
    transitions: int
    seconds: float
    counterexample: Optional[list[str]]
    """The shortest event trace to the violation (from "vcpus created"), or None."""
    violated: Optional[str]
    """``"invariant <n>: <message>"`` of the violation, or None."""
    violation: Optional[Violation]
    complete: bool
    """False when ``max_states`` cut the search short."""
    finished_runs: int
    depth: int
    bounds: str
    ignored: list[int]

    @property
    def ok(self) -> bool:
        return self.violation is None

    @property
    def states_per_second(self) -> float:
        return self.states / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """The ``pyvcore explore --json`` object."""
        return {
            "states": self.states,
            "transitions": self.transitions,
            "seconds": self.seconds,
            "counterexample": self.counterexample,
            "violated": self.violated,
            "violation": self.violation.to_dict() if self.violation else None,
            "variant": self.variant,
            "threads": self.threads,
            "vcpus": self.vcpus,
            "complete": self.complete,
            "finished_runs": self.finished_runs,
            "depth": self.depth,
            "bounds": self.bounds,
            "ignored": self.ignored,
        }

    def replay(self) -> Vcore:
        """A :class:`Vcore` taken through the counterexample (or fresh if none)."""
        vc = Vcore(self.variant, self.threads, self.vcpus)
        vc.replay(self.counterexample or [])
        return vc

    def trace_lines(self) -> list[str]:
        """The counterexample as a snapshot trace: one JSON line per state,
        from "vcpus created" to the violation, each with its "stop" label and
        the event that led to it -- what ``pyvcore check`` and gdb users read."""
        vc = Vcore(self.variant, self.threads, self.vcpus)
        lines = [vc.snapshot_json()]
        for event in self.counterexample or []:
            vc.apply(event)
            snap = vc.snapshot()
            snap["event"] = event
            lines.append(json.dumps(snap))
        return lines


def explore(
    variant: str,
    threads: int,
    vcpus: Optional[Sequence[int]] = None,
    *,
    max_states: Optional[int] = None,
    cedes_per_vcpu: Optional[int] = None,
    max_cedes: Optional[int] = None,
    max_prods: Optional[int] = None,
    ignore: Optional[Sequence[int]] = None,
    check_invariants: bool = True,
    symmetry: bool = True,
    exit_request: bool = False,
    fault: Optional[str] = None,
) -> ExploreResult:
    """Enumerate every interleaving of one vcore run (breadth first, states
    deduplicated) and return the shortest counterexample, if any.

    ``vcpus`` defaults to all of vcore 0 (ids 0..threads-1).  The bounds
    (``cedes_per_vcpu``, ``max_cedes``, ``max_prods``) default to 1, 2 (1 above
    four threads) and 1; ``ExploreResult.bounds`` says them in words.
    ``exit_request`` (modern) also lets VCORE_EXIT_REQ arrive at any time.
    ``fault`` (one of :data:`FAULTS`) breaks one kernel rule on purpose.
    """
    for name, value, limit in (
        ("max_states", max_states, 2**62),
        ("cedes_per_vcpu", cedes_per_vcpu, 255),
        ("max_cedes", max_cedes, 255),
        ("max_prods", max_prods, 255),
    ):
        if value is not None and not 0 <= value <= limit:
            raise ValueError(f"{name} must be 0..{limit}, not {value}")
    raw = json.loads(
        _core.explore(
            variant,
            threads,
            list(vcpus) if vcpus is not None else None,
            list(ignore) if ignore is not None else None,
            max_states,
            cedes_per_vcpu,
            max_cedes,
            max_prods,
            check_invariants,
            symmetry,
            exit_request,
            fault,
        )
    )
    v = raw["violation"]
    return ExploreResult(
        variant=raw["variant"],
        threads=raw["threads"],
        vcpus=list(raw["vcpus"]),
        states=raw["states"],
        transitions=raw["transitions"],
        seconds=raw["seconds"],
        counterexample=raw["counterexample"],
        violated=raw["violated"],
        violation=Violation(v["invariant"], v["message"], dict(v["fields"])) if v else None,
        complete=raw["complete"],
        finished_runs=raw["finished_runs"],
        depth=raw["depth"],
        bounds=raw["bounds"],
        ignored=list(raw["ignored"]),
    )
