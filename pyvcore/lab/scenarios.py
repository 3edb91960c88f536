"""The lab's guest scenarios: the one table every other part reads.

The guest VMM (``guest/vmm.c``) gets this table as a generated C header
(:func:`c_header`, written next to the build by :func:`pyvcore.lab.guest.build_guest_programs`);
``pyvcore diff``, the tests and the README import it from here.

Each scenario lists its vcpu ids for each thread count the lab boots (4 or 8 hardware
threads per POWER8 core). KVM-HV numbers vcores by ``vcpu_id / kvm->arch.smt_mode`` and
``smt_mode`` defaults to ``threads_per_subcore`` (arch/powerpc/kvm/book3s_hv.c,
``kvmppc_core_init_vm_hv`` and ``kvmppc_core_vcpu_create_hv``), so with 4 threads ids
0-3 are vcore 0 and 4-7 vcore 1, with 8 threads ids 0-7 are vcore 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyvcore.hookpoints import HOOK_POINTS

THREAD_CHOICES = (4, 8)

# Guest roles (the guest code's PV_ROLE_* in guest/layout.h), by the name a report gives.
ROLES = {
    "spin": "PV_ROLE_SPIN",
    "cede-waker": "PV_ROLE_CEDE_WAKER",
    "cede-sleeper": "PV_ROLE_CEDE_SLEEPER",
    "doorbell": "PV_ROLE_DOORBELL",
    "exits": "PV_ROLE_EXITS",
    "cede-timer": "PV_ROLE_CEDE_TIMER",
}

# The H_CEDE path (book3s_hv_rmhandlers.S: kvmppc_h_cede, kvm_end_cede).
CEDE_POINTS = ("kvmppc_h_cede", "kvm_end_cede")


@dataclass(frozen=True)
class Scenario:
    """One guest scenario.

    ``ids``: ``{threads: vcpu ids}``; ``roles``: one role per vcpu, or one role for all
    (key of :data:`ROLES`); ``spin``: spin-loop iterations (or exit hcalls) between two
    reports (``cede-timer``: decrementer ticks armed before each H_CEDE); ``does``: one line on what the guest does; ``hook_points``: the kernel
    symbols the scenario exercises (and that a kernel must have to run it watched).
    """

    name: str
    ids: dict[int, tuple[int, ...]]
    roles: tuple[str, ...]
    spin: int
    does: str
    hook_points: tuple[str, ...] = HOOK_POINTS

    def vcpu_ids(self, threads: int) -> tuple[int, ...]:
        """The vcpu ids at ``threads`` hardware threads per core (KeyError if none)."""
        return self.ids[threads]

    def role_of(self, index: int) -> str:
        """The role of the ``index``-th vcpu (0-based, in :meth:`vcpu_ids` order)."""
        return self.roles[index] if len(self.roles) > 1 else self.roles[0]


def _r(first: int, last: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1))


SCENARIO_TABLE: tuple[Scenario, ...] = (
    Scenario("all", {4: _r(0, 3), 8: _r(0, 7)}, ("spin",), 1 << 20, "one vcore, every thread spins"),
    Scenario(
        "novcpu0",
        {4: (1,), 8: (1, 3, 5, 7)},
        ("spin",),
        1 << 20,
        "thread 0 runs no vcpu: the vcore's runner is not its first thread",
    ),
    Scenario(
        "cede",
        {4: _r(0, 3), 8: _r(0, 7)},
        ("cede-waker", *["cede-sleeper"] * 7),
        1 << 16,
        "vcpu 0 H_PRODs the others, which H_CEDE in a loop",
        HOOK_POINTS + CEDE_POINTS,
    ),
    Scenario(
        "doorbell",
        {4: _r(0, 3), 8: _r(0, 7)},
        ("doorbell",),
        1 << 20,
        "each vcpu msgsndp's every sibling thread, then spins",
    ),
    Scenario("sparse", {4: (0, 2, 3), 8: (0, 2, 3, 6)}, ("spin",), 1 << 20, "a vcore with holes in its ids"),
    Scenario(
        "two-vcores",
        {4: _r(0, 7), 8: _r(0, 15)},
        ("spin",),
        1 << 20,
        "two full vcores time-share the core",
    ),
    Scenario("exits", {4: _r(0, 3), 8: _r(0, 7)}, ("exits",), 256, "every iteration exits to userspace"),
    Scenario(
        "cede-all",
        {4: _r(0, 3), 8: _r(0, 7)},
        ("cede-timer",),
        # 2 ms of the 512 MHz timebase: short enough that every vcpu is often ceded at
        # once, long enough that they do get there before the first decrementer fires.
        1 << 20,
        "every vcpu H_CEDEs with its decrementer 2 ms ahead: the last cede takes the vcore "
        "to the host (kvmppc_vcore_blocked), the decrementer brings it back",
        HOOK_POINTS + CEDE_POINTS,
    ),
)

SCENARIOS: tuple[str, ...] = tuple(s.name for s in SCENARIO_TABLE)
MAX_VCPUS = max(len(ids) for s in SCENARIO_TABLE for ids in s.ids.values())


def scenario_named(name: str) -> Scenario:
    """The scenario called ``name`` (KeyError naming the known ones)."""
    for entry in SCENARIO_TABLE:
        if entry.name == name:
            return entry
    raise KeyError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}")


def c_header() -> str:
    """``scenarios.h`` for the guest VMM: one row per (scenario, thread count)."""
    rows = []
    for entry in SCENARIO_TABLE:
        for threads, ids in sorted(entry.ids.items()):
            roles = ", ".join(ROLES[entry.role_of(i)] for i in range(len(ids)))
            id_list = ", ".join(map(str, ids))
            rows.append(
                f'\t{{ "{entry.name}", {threads}, {len(ids)}, {{{id_list}}}, {{{roles}}}, {entry.spin}L }},'
            )
    return "\n".join(
        [
            "/* Generated by pyvcore/lab/scenarios.py (c_header); do not edit. */",
            "#ifndef PYVCORE_SCENARIOS_H",
            "#define PYVCORE_SCENARIOS_H",
            f"#define MAX_VCPUS {MAX_VCPUS}",
            f'#define PV_SCENARIO_NAMES "{",".join(SCENARIOS)}"',
            "struct scenario {",
            "\tconst char *name;",
            "\tint threads;             /* KVM_CAP_PPC_SMT this row is for */",
            "\tint nvcpus;",
            "\tint ids[MAX_VCPUS];",
            "\tint roles[MAX_VCPUS];",
            "\tlong spin;               /* r17: spin iterations (or exits) between reports */",
            "};",
            "static const struct scenario scenarios[] = {",
            *rows,
            "};",
            "#endif",
            "",
        ]
    )
