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
    >>> vc.snapshot()                 # a snapshot dict pyvcore.Checker accepts

The model runs in Rust (``pyvcore._core.CoreModel``); this module is the
readable face of it.  :func:`pyvcore.explorer.explore` enumerates every
interleaving of one run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from pyvcore import _core, checker
from pyvcore.checker import Violation

ModelError = _core.ModelError
"""Raised for an event that is not legal in the current state, or a bad
parameter (a ValueError); ``.event`` is the event text, ``.reason`` why."""

Event = _core.Event
"""One model event: ``Event("enter", thread=1)``, ``Event.parse("exit(1)")``;
``.name``, ``.label`` (the kernel function it ends at), ``.args``."""

EventLike = Union["_core.Event", str]

VARIANTS: tuple[str, ...] = checker.VARIANTS
"""The kernel variants the model knows: seed, modern, prepatch."""

THREAD_COUNTS: tuple[int, ...] = tuple(_core.thread_counts())
"""Threads per core a vcore can run on (POWER7/POWER8 SMT modes): 1, 2, 4, 8."""

VCORE_STATE_NAMES: dict[str, dict[int, str]] = {v: dict(_core.vcore_state_names(v)) for v in VARIANTS}
"""vcore_state value -> kernel name, per variant (the kernel's #defines)."""

EVENT_FORMS: list[str] = list(_core.event_forms())
"""The text form of every event, e.g. ``"enter(thread=T)"``."""

EVENT_LABELS: dict[str, str] = dict(_core.event_labels())
"""Event name -> the kernel function or label it models."""

FAULT_INFO: dict[str, _core.FaultInfo] = {f.name: f for f in _core.faults()}
"""Fault name -> ``FaultInfo`` (``fixed_by``: the public commit that fixed the real bug,
or None when none is known; ``description``: what it undoes, in words;
``variants``: where the broken code exists)."""

FAULTS: list[str] = list(FAULT_INFO)
"""Deliberate kernel bugs :func:`explore` can inject (``fault=``) to show
they are caught, one per class of real bug."""

MAX_VCPU_ID: int = _core.MAX_VCPU_ID
"""vcpu ids must be below this (KVM_MAX_VCPU_IDS of a POWER8 host)."""

BOOK3S_INTERRUPT_HV_DECREMENTER = 0x980
BOOK3S_INTERRUPT_SYSCALL = 0xC00


class InvariantError(AssertionError):
    """Raised by a ``strict`` :class:`Vcore` when a step breaks an invariant."""

    def __init__(self, event: str, violations: list[Violation]) -> None:
        self.event = event
        self.violations = violations
        super().__init__(f"{event}: " + "; ".join(str(v) for v in violations))


# Named as users import it (``pyvcore.InvariantError``), in tracebacks and reprs too; the
# exceptions of the Rust extension (ModelError, SnapshotError, ImageError) are named so there.
InvariantError.__module__ = "pyvcore"


@dataclass(frozen=True)
class Step:
    """What one event did."""

    event: str
    """The event in its text form, e.g. ``"enter(thread=1)"``."""
    stop: str
    """The kernel function or label the event ends at (the snapshot's "stop")."""
    violations: list[Violation] = field(default_factory=list)
    doorbell_taken: Optional[int] = None
    """For take_doorbell: the vcpu id that took the doorbell."""
    ceded_to_nap: bool = False
    """For a cede: whether the thread napped (False: returned at once, or exited)."""


class Vcore:
    """One vcore on one physical core, driven event by event.

    ``variant`` is one of :data:`VARIANTS`; ``threads`` the threads per core
    (1, 2, 4 or 8); ``vcpus`` the vcpu ids to create (all of one vcore: the
    kernel puts id ``i`` in the vcore with first_vcpuid ``i & ~(threads-1)``,
    kvmppc_core_vcpu_create_hv); ``cpu_base`` the host cpu of thread 0.  With
    ``strict=True`` a step that breaks an invariant raises
    :class:`InvariantError` (the step still happened); otherwise the
    violations are returned in the :class:`Step` and kept in
    :attr:`violations`.  Bad parameters raise :class:`ModelError`.
    """

    def __init__(
        self,
        variant: str = "modern",
        threads: int = 4,
        vcpus: Iterable[int] = (),
        *,
        cpu_base: int = 0,
        strict: bool = False,
    ) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads not in THREAD_COUNTS:
            raise ValueError(f"threads per core must be 1, 2, 4 or 8, not {threads!r}")
        if isinstance(cpu_base, bool) or not isinstance(cpu_base, int) or not 0 <= cpu_base < 2**32:
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
        return str(self._core.variant)

    @property
    def threads(self) -> int:
        return int(self._core.threads)

    def snapshot(self) -> dict[str, Any]:
        """The current state as a snapshot dict (kernel field names;
        pointers are the model's synthetic addresses)."""
        return dict(self._core.snapshot())

    def snapshot_json(self) -> str:
        """The snapshot as one line of JSON (a trace line for ``pyvcore check``)."""
        return str(self._core.snapshot_json())

    def paca_table(self) -> list[dict[str, Any]]:
        """One row per hardware thread: its PACA ``kvm_hstate`` fields (vcpu
        and vcore as ids/addresses), where the thread is (``phase`` and the
        kernel ``label``), whether an IPI or a doorbell is pending."""
        rows = []
        for t, d in zip(self.snapshot()["threads"], self._core.thread_detail()):
            rows.append(
                {
                    "thread": d["thread"],
                    "cpu": t["cpu"],
                    "phase": d["phase"],
                    "label": d["label"],
                    "vcpu_id": d["kvm_vcpu_id"],
                    "running": d["running"],
                    "ipi": d["ipi"],
                    "doorbell": d["doorbell"],
                    "lpidr": t.get("lpidr"),
                    **t["kvm_hstate"],
                }
            )
        return rows

    @property
    def vcore(self) -> Optional[dict[str, Any]]:
        """The vcore's snapshot fields plus ``vcore_state_name``, ``runnable``
        (vcpu ids) and ``dpdes_saved`` (vc->dpdes); None before the first vcpu
        is created."""
        vc = self._core.vcore()
        return None if vc is None else dict(vc)

    @property
    def vcpus(self) -> list[dict[str, Any]]:
        """Every vcpu's snapshot fields plus ``prodded``, ``trap``, ``started``."""
        extra = self._core.vcpu_detail()
        out = []
        for v in self.snapshot()["vcpus"]:
            d = extra.get(v["vcpu_id"], {})
            out.append({**v, "prodded": d.get("prodded"), "trap": d.get("trap"), "started": d.get("started")})
        return out

    @property
    def trace(self) -> list[str]:
        """The events applied so far, in text form (replayable with :meth:`replay`)."""
        return [str(e) for e in self._core.trace()]

    @property
    def events(self) -> list[Any]:
        """The events applied so far, as :data:`Event` objects."""
        return list(self._core.trace())

    def enabled(self) -> list[str]:
        """Every event that is legal now, in text form."""
        return [str(e) for e in self._core.enabled()]

    def copy(self) -> Vcore:
        """An independent copy (same state and trace)."""
        other = Vcore.__new__(Vcore)
        other._core = self._core.copy()
        other.strict = self.strict
        other.violations = list(self.violations)
        return other

    def format_table(self) -> str:
        """The PACA table as text, one line per thread; numbered fields with the kernel's
        names as pv-paca and `pyvcore show` print them (``hwthread_state 1 IN_IDLE``,
        ``in_guest 4 HOST_HV``, ``napping 1 CEDE``: kvm_book3s_asm.h, kvm_asm.h)."""
        from pyvcore.ppc64 import GUEST_MODES, HWTHREAD_STATES, NAPPING, name_of

        named = {"hwthread_state": HWTHREAD_STATES[self.variant], "napping": NAPPING, "in_guest": GUEST_MODES}

        def cell(c: str, value: Any) -> str:
            if value is None:
                return "-"
            if c == "kvm_vcore" and value:
                return f"{value:#x}"
            if c in named:
                return f"{value} {name_of(named[c], value)}"
            return str(value)

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
            "doorbell",
        )
        rows = [[cell(c, r[c]) for c in cols] for r in self.paca_table()]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
        return "\n".join(lines)

    # -- events ---------------------------------------------------------------

    def apply(self, event: EventLike) -> Step:
        """Apply one event: an :data:`Event` or its text form (see :data:`EVENT_FORMS`)."""
        raw = self._core.apply(event)
        violations: list[Violation] = list(raw.violations)
        self.violations = violations
        step = Step(str(raw.event), raw.stop, violations, raw.doorbell_taken, raw.ceded_to_nap)
        if violations and self.strict:
            raise InvariantError(step.event, violations)
        return step

    def _do(self, name: str, **args: int) -> Step:
        return self.apply(Event(name, **args))

    def replay(self, events: Iterable[EventLike]) -> list[Step]:
        """Apply events in order (e.g. an explorer counterexample)."""
        return [self.apply(e) for e in events]

    def create_vcpu(self, vcpu_id: int) -> Step:
        """kvmppc_core_vcpu_create_hv (the first one creates the vcore)."""
        return self._do("create_vcpu", vcpu=vcpu_id)

    def runnable(self, *vcpu_ids: int) -> None:
        """kvmppc_run_vcpu for each vcpu: RUNNABLE, on the runnable list (a
        latecomer joins a running vcore at once)."""
        for vcpu_id in vcpu_ids:
            self._do("runnable", vcpu=vcpu_id)

    def block(self, vcpu_id: int) -> Step:
        """kvmppc_remove_runnable while the vcore is inactive."""
        return self._do("block", vcpu=vcpu_id)

    def _first_runnable(self) -> int:
        vc = self.vcore
        if not vc or not vc["runnable"]:
            err = ModelError("illegal event run_core: no runnable vcpu to be the runner")
            err.event, err.reason = "run_core", "no runnable vcpu to be the runner"
            raise err
        return int(vc["runnable"][0])

    def run_core(self, runner: Optional[int] = None, *, start: bool = True) -> Step:
        """kvmppc_run_core by ``runner`` (default: the first runnable vcpu):
        reset and grab; with ``start`` (default) also kvmppc_start_thread for
        every runnable vcpu and thread 0's entry set-up (vcore_entry)."""
        step = self._do("run_core", runner=self._first_runnable() if runner is None else runner)
        if start:
            for vcpu_id in (self.vcore or {}).get("runnable", []):
                self.start_thread(vcpu_id)
            step = self.vcore_entry()
        return step

    def vcore_blocked(self, runner: Optional[int] = None) -> Step:
        """kvmppc_vcore_blocked: every runnable vcpu has ceded, the runner
        (default: the first runnable vcpu) sleeps; VCORE_SLEEPING."""
        return self._do("vcore_blocked", runner=self._first_runnable() if runner is None else runner)

    def vcore_wake(self, vcpu_id: int) -> Step:
        """The sleeping vcore wakes because ``vcpu_id`` has work; its cede ends."""
        return self._do("vcore_wake", vcpu=vcpu_id)

    def start_thread(self, vcpu_id: int) -> Step:
        """kvmppc_start_thread: the vcpu goes into the PACA of thread pcpu + ptid."""
        return self._do("start_thread", vcpu=vcpu_id)

    def vcore_entry(self) -> Step:
        """Thread 0 joins (even without a vcpu); VCORE_RUNNING."""
        return self._do("vcore_entry")

    def enter(self, thread: int) -> Step:
        """kvmppc_hv_entry on ``thread`` (counted in the entry word, or too late)."""
        return self._do("enter", thread=thread)

    def switch_in(self) -> Step:
        """Thread 0 switches LPIDR/SDR1 to the guest; vc->in_guest = 1; DPDES from vc->dpdes."""
        return self._do("switch_in")

    def guest_entry(self, thread: int) -> Step:
        """fast_guest_return, or kvmppc_primary_no_guest for thread 0 without a vcpu."""
        return self._do("guest_entry", thread=thread)

    def cede(self, thread: int) -> Step:
        """H_CEDE by the vcpu on ``thread`` (may nap, return at once if prodded,
        or exit by the cede-to-exit rule)."""
        return self._do("cede", thread=thread)

    def prod(self, vcpu_id: int) -> Step:
        """H_PROD reaches ``vcpu_id`` (prodded = 1; a napping ceder gets an IPI)."""
        return self._do("prod", vcpu=vcpu_id)

    def wake(self, thread: int) -> Step:
        """A thread napping inside KVM wakes up."""
        return self._do("wake", thread=thread)

    def doorbell(self, vcpu_id: int, thread: int) -> Step:
        """The guest on ``vcpu_id`` sends msgsndp to thread number ``thread``:
        the core's DPDES bit ``thread`` is set (and wakes a cede nap there)."""
        return self._do("doorbell", vcpu=vcpu_id, thread=thread)

    def take_doorbell(self, thread: int) -> Optional[int]:
        """The vcpu executing on ``thread`` takes the doorbell pending for the
        thread; returns that vcpu's id."""
        return self._do("take_doorbell", thread=thread).doorbell_taken

    def exit(self, thread: int, trap: int = BOOK3S_INTERRUPT_HV_DECREMENTER) -> Step:
        """The guest on ``thread`` exits with vector ``trap`` (0x980 HDEC,
        0xc00 an hcall for userspace, ...)."""
        return self._do("exit", thread=thread, trap=trap)

    def exit_request(self) -> Step:
        """Modern: VCORE_EXIT_REQ arrives, as another subcore's first exiter sets it."""
        return self._do("exit_request")

    def switch_out(self) -> Step:
        """Thread 0 switches back to the host once exits == entries; DPDES saved in vc->dpdes."""
        return self._do("switch_out")

    def tail(self, thread: int) -> Step:
        """A secondary finishes once vc->in_guest == 0."""
        return self._do("tail", thread=thread)

    def release(self) -> Step:
        """kvmppc_wait_for_nap + kvmppc_release_hwthread for every thread."""
        return self._do("release")

    def finish(self) -> Step:
        """post_guest_process / out: VCORE_INACTIVE, exits handled."""
        return self._do("finish")

    def return_to_idle(self, thread: int) -> Step:
        """Modern: a released secondary leaves kvm_no_guest for the idle loop."""
        return self._do("return_to_idle", thread=thread)

    def __repr__(self) -> str:
        vc = self.vcore
        state = vc["vcore_state_name"] if vc else "no vcore"
        return f"Vcore({self.variant!r}, threads={self.threads}, {state}, {len(self.trace)} events)"
