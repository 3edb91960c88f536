"""What a kernel has, decided from its layouts and symbols (not its version).

The read plans of the structs a snapshot needs (``paca_struct``,
``kvmppc_vcore``, ``kvm_vcpu``, ``kvm``), and where the kernel passes a vcore
or vcpu in a register at the entry of the functions pv-watch stops at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pyvcore.layout import LayoutError, Layouts
from pyvcore.ppc64 import ThreadRegs
from pyvcore.readplan import MAX_PACKET_BYTES, ByteOrder, Plan
from pyvcore.snapshot import HSTATE_FIELDS, VCORE_FIELDS

# Fields some kernels have: shown in pv-paca, not part of the snapshot.
HSTATE_EXTRA = ("host_ipi", "fake_suspend", "kvm_split_mode", "saved_xirr", "dec_expires")
VCORE_READ_OPTIONAL = (
    "runner",
    "kvm",
    "n_woken",
    "nap_count",
    "last_cpu",
    "tb_offset",
    "tb_offset_applied",
    "dpdes",
    "conferring_threads",
    "online_count.counter",
    "runnable_threads",
)
VCPU_FIELDS = ("cpu", "vcpu_id", "arch.vcore", "arch.ptid")
VCPU_OPTIONAL = ("vcpu_idx", "arch.thread_cpu", "arch.state", "arch.ceded", "arch.prodded", "arch.trap")
KVM_ARCH_FIELDS = ("arch.lpid", "arch.sdr1")
KVM_ARCH_OPTIONAL = (
    "arch.host_lpid",
    "arch.host_sdr1",
    "arch.smt_mode",
    "arch.online_vcores",
    "vm_list.next",
    "online_vcpus.counter",
    "created_vcpus",
)


class KernelError(Exception):
    """The kernel image lacks something the reader cannot do without."""


@dataclass
class KernelLayout:
    """What this kernel has, decided from its layouts and symbols (not its version).

    * ``paca_ptrs`` (v4.17+, d2e60075a3d4 "powerpc/64: Use array of paca
      pointers") vs the contiguous ``paca`` array before it;
    * ``entry_exit_map`` (~v4.1 "Use bitmap of active threads rather than
      count") vs the seed's ``entry_exit_count``, which picks the model variant.
    """

    layouts: Layouts
    symbol: Callable[[str], int | None]
    little_endian: bool = True
    release: str | None = None

    def __post_init__(self) -> None:
        L = self.layouts
        self.order: ByteOrder = "little" if self.little_endian else "big"
        try:
            self.paca = L.struct("paca_struct")
            self.hstate = L.struct("kvmppc_host_state")
            self.vcore = L.struct("kvmppc_vcore")
            self.vcpu = L.struct("kvm_vcpu")
        except LayoutError as e:
            raise KernelError(f"{e} (is this a ppc64 KVM-HV (book3s_64) kernel?)") from e
        if self.symbol("paca_ptrs") is not None:
            self.paca_array = "paca_ptrs"
        elif self.symbol("paca") is not None:
            self.paca_array = "paca"
        else:
            raise KernelError("neither paca_ptrs nor paca in the symbol table: not a ppc64 kernel?")
        if self.vcore.has("entry_exit_map"):
            self.entry_exit = "entry_exit_map"
            self.variant = "modern"
        elif self.vcore.has("entry_exit_count"):
            self.entry_exit = "entry_exit_count"
            self.variant = "seed"
        else:
            raise KernelError("struct kvmppc_vcore has neither entry_exit_map nor entry_exit_count")
        # paca_index .. end of the kvm_hstate fields: one read per PACA.
        hs = [f"kvm_hstate.{n}" for n in HSTATE_FIELDS]
        hs_extra = [f"kvm_hstate.{n}" for n in HSTATE_EXTRA]
        self.paca_plan = Plan.build(
            self.paca, ["paca_index", "hw_cpu_id", *hs], hs_extra, merge_gap=MAX_PACKET_BYTES
        )
        # The per-stop read, once the threads are matched: only the
        # kvm_hstate fields of the snapshot (24 bytes on 6.12), so that the
        # PACAs the kernel allocated next to each other share one request.
        self.hstate_plan = Plan.build(self.paca, hs)
        self.vcore_plan = Plan.build(self.vcore, [*VCORE_FIELDS, self.entry_exit], VCORE_READ_OPTIONAL)
        self.vcpu_plan = Plan.build(self.vcpu, VCPU_FIELDS, VCPU_OPTIONAL)
        self.kvm_plan: Plan | None = None
        if L.has_struct("kvm"):
            try:
                self.kvm_plan = Plan.build(L.struct("kvm"), KVM_ARCH_FIELDS, KVM_ARCH_OPTIONAL)
            except LayoutError:
                self.kvm_plan = None


# Where the kernel passes the vcore (or a vcpu) in a register at a function's
# entry (ELFv2: arguments in r3, r4, ...).  arch/powerpc/kvm/book3s_hv.c
# (v6.12): `static noinline void kvmppc_run_core(struct kvmppc_vcore *vc)`,
# `static void kvmppc_start_thread(struct kvm_vcpu *vcpu, struct
# kvmppc_vcore *vc)` (vcpu is NULL for a thread started with no vcpu).
ENTRY_ARGUMENTS: dict[str, dict[str, str]] = {
    "kvmppc_run_core": {"r3": "vcore"},
    "kvmppc_start_thread": {"r3": "vcpu", "r4": "vcore"},
}


@dataclass
class Hints:
    """Objects the stop itself names (function arguments), with where they came from."""

    vcores: list[tuple[int, str]] = field(default_factory=list)
    vcpus: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def from_entry(cls, function: str, regs: ThreadRegs | None) -> Hints:
        """The arguments of ``function`` (a key of ENTRY_ARGUMENTS) in the stopping thread's registers."""
        hints = cls()
        if regs is None:
            return hints
        for reg, what in ENTRY_ARGUMENTS.get(function, {}).items():
            value = getattr(regs, reg)
            if value:  # NULL (kvmppc_start_thread without a vcpu) names nothing
                (hints.vcores if what == "vcore" else hints.vcpus).append(
                    (int(value), f"{reg} at {function}")
                )
        return hints
