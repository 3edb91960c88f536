"""Why an edge is on one side only: the explanation ``pyvcore trace --edges`` prints.

Every gap between the kernel's state edges and the model's walk that the lab's
scenarios showed falls in one of these kinds, each explained with the kernel code
(Linux 6.12) that makes the edge:

* ``model simplification``: the kernel passes through a state the model folds into
  one event (the checker accepts the kernel's extra state; the rows say which
  invariant covers it), or does something the model leaves out (the modern
  runner's preemption, the end of a KVM_RUN, ``vc->dpdes``);
* ``walk bound``: the model has the edge, but its breadth-first walk (at most
  4000 states, one run) stops before it;
* ``scenario``: the model's walk creates vcpus or cedes where the scenario does
  not (or the other way round): the lab never took it;
* ``found value``: the kernel stored it before the shadow watched the object
  (its value is read when a PACA first points at it);
* ``plugin``: how the plugin sees racing stores (two threads' ``cmpxchg`` on one
  word can read back as one change); memory order is kept;
* ``unexplained``: an edge no rule covers, to be looked at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

KERNEL_ONLY = "kernel only"
MODEL_ONLY = "model only"

# entry_exit_map (book3s_hv.c, kvmhv_commence_exit): entry bits 0-7, exit bits 8-15,
# VCORE_EXIT_REQ (0x10000) from another subcore's first exiter.
VCORE_EXIT_REQ = 0x10000

WALK = "the model has it: its breadth-first walk (4000 states, one run) stops before reaching it"
EXTRA_VCPUS = (
    "the model's walk creates the vcpus the scenario leaves out (its create_vcpu, the "
    "kernel's book3s_hv.c kvmppc_core_vcpu_create_hv) and places them; the scenario never "
    "creates them"
)


@dataclass(frozen=True)
class Gap:
    kind: str
    why: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.why}"


def _n(label: str) -> int:
    return int(label, 0)


def entry_exit_change(old: str, new: str) -> str:
    """What one ``entry_exit_map`` change did, as the edge table of docs/trace.md groups them."""
    o, n = _n(old), _n(new)
    if n == 0:
        return "cleared"
    if n & VCORE_EXIT_REQ and not o & VCORE_EXIT_REQ:
        return "exit request"
    entries = bin((n & ~o) & 0xFF).count("1")
    exits = bin(((n & ~o) >> 8) & 0xFF).count("1")
    if entries + exits > 1:
        return "two threads"
    return "entry" if entries else "exit"


def _entry_exit(old: str, new: str, where: str) -> Gap:
    what = entry_exit_change(old, new)
    if what == "cleared":
        return Gap(
            "walk bound",
            "kvmppc_run_core (book3s_hv.c, init_vcore_to_run) clears the map for the next run; "
            "the model's walk is one run",
        )
    if what == "exit request":
        return Gap(
            "scenario",
            "VCORE_EXIT_REQ comes from another subcore's first exiter (book3s_hv_builtin.c, "
            "kvmhv_commence_exit's loop over sip->vc[]); the lab never splits the core "
            "(dynamic micro-threading is off under QEMU)",
        )
    if what == "two threads":
        return Gap(
            "plugin",
            "two threads' racing cmpxchg on the word (book3s_hv_rmhandlers.S kvmppc_hv_entry, "
            "book3s_hv_builtin.c kvmhv_commence_exit) read back from memory as one change; "
            "memory order is kept and invariants 11/12 judge the merged change",
        )
    return Gap(
        "walk bound",
        "one of the interleavings of the threads' entries and exits (book3s_hv_rmhandlers.S "
        "kvmppc_hv_entry, book3s_hv_builtin.c kvmhv_commence_exit): the model's walk does not reach every one, and a short run "
        "does not take every one",
    )


def _hwthread_state(old: str, new: str, where: str) -> Gap:
    return Gap(
        "model simplification",
        "a secondary passes through KVM_HWTHREAD_IN_KERNEL on every wake (powernv idle.c "
        "pnv_cpu_offline sets it before testing hwthread_req) and on its release "
        "(book3s_hv_rmhandlers.S kvm_no_guest); the model goes IN_IDLE <-> IN_KVM in one "
        "event. The checker accepts IN_KERNEL with hwthread_req 1 and bounds it (liveness 41)",
    )


def _vcore_state(old: str, new: str, where: str) -> Gap:
    o, n = _n(old), _n(new)
    if 1 in (o, n):
        return Gap(
            "model simplification",
            "VCORE_PREEMPT: the modern runner preempted while its vcore is inactive "
            "(book3s_hv.c kvmppc_vcore_preempt / kvmppc_vcore_end_preempt) is not modelled; "
            "no invariant depends on it",
        )
    if 3 in (o, n):
        return Gap(
            "walk bound",
            "VCORE_SLEEPING (every runnable vcpu ceded: book3s_hv.c kvmppc_vcore_blocked, "
            f"via kvmppc_run_vcpu): {WALK}",
        )
    return Gap("walk bound", f"RUNNING -> EXITING -> INACTIVE (book3s_hv.c kvmppc_run_core): {WALK}")


def _vcpu_state(old: str, new: str, where: str) -> Gap:
    if where == KERNEL_ONLY:
        return Gap(
            "model simplification",
            "a vcpu goes NOTREADY <-> BUSY_IN_HOST around each KVM_RUN (book3s_hv.c "
            "kvmppc_vcpu_run_hv); the model starts with its vcpus already in KVM_RUN",
        )
    return Gap(
        "found value",
        "made before the shadow watched the vcpu (book3s_hv.c kvmppc_run_vcpu marks it RUNNABLE before "
        "thread 0's PACA points at it): the shadow reads it as an initial value",
    )


def _cede(old: str, new: str, where: str) -> Gap:
    if where == KERNEL_ONLY:
        return Gap(
            "walk bound",
            "a cede nap and its wake (book3s_hv_rmhandlers.S kvmppc_h_cede / kvm_end_cede, "
            f"fast_guest_return) in the cede scenarios: {WALK}",
        )
    return Gap(
        "scenario",
        "the model's vcpus may H_CEDE (book3s_hv_rmhandlers.S kvmppc_h_cede) in every "
        "scenario; in the lab only the cede scenarios cede (there the kernel takes it too)",
    )


def _n_runnable(old: str, new: str, where: str) -> Gap:
    return Gap(
        "found value",
        "the kernel counts runnable vcpus (book3s_hv.c kvmppc_run_vcpu / "
        "kvmppc_remove_runnable) before the shadow watches the vcore, which it reads as an "
        f"initial value; where the scenario leaves vcpus out, {EXTRA_VCPUS}",
    )


Rule = Callable[[str, str, str], Gap]

RULES: dict[str, Rule] = {
    "kvm_hstate.hwthread_state": _hwthread_state,
    "kvm_hstate.napping": _cede,
    "vcpu.ceded": _cede,
    "vcore.napping_threads": _cede,
    "vcore.entry_exit_map": _entry_exit,
    "vcore.vcore_state": _vcore_state,
    "vcpu.state": _vcpu_state,
    "vcore.n_runnable": _n_runnable,
    "vcore.num_threads": lambda o, n, w: Gap("scenario", EXTRA_VCPUS),
    "kvm_hstate.ptid": lambda o, n, w: Gap("scenario", EXTRA_VCPUS),
    "vcpu.thread_cpu": lambda o, n, w: Gap("scenario", EXTRA_VCPUS),
    "vcore.runner": lambda o, n, w: Gap(
        "model simplification",
        "the runner leaves at the end of its KVM_RUN (book3s_hv.c kvmppc_run_vcpu: "
        "vc->runner = NULL); the model's run never ends a KVM_RUN",
    ),
    "vcore.dpdes": lambda o, n, w: Gap(
        "model simplification",
        "vc->dpdes, the doorbells pending at the exit (book3s_hv_rmhandlers.S "
        "kvmhv_switch_to_host saves DPDES there, kvmppc_hv_entry reloads it), is not in the "
        "model's vcore; the model keeps the pending doorbells per thread. Shown as a "
        "pointer (NULL/ptr)",
    ),
}


def explain(field: str, old: str, new: str, where: str) -> Gap | None:
    """The explanation of an edge seen on one side only (None for an edge on both)."""
    if where not in (KERNEL_ONLY, MODEL_ONLY):
        return None
    rule = RULES.get(field)
    if rule is None:
        return Gap("unexplained", "no rule covers this edge: look at the kernel functions that made it")
    return rule(old, new, where)
