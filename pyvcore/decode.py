"""Read the vcore state of a ppc64 KVM-HV host out of raw memory: the reader.

Everything here works on a :class:`~pyvcore.readplan.Memory` (``read(addr,
size) -> bytes``) and per-thread register values
(:class:`~pyvcore.ppc64.ThreadRegs`), so it runs the same on fake memory in a
unit test and on QEMU's gdbstub inside gdb (``gdb_plugins`` supplies the
gdb-backed memory).  Offsets come from :mod:`pyvcore.layout` (BTF or DWARF),
never from constants.  The ppc64 facts live in :mod:`pyvcore.ppc64`, the read
plans in :mod:`pyvcore.readplan`, the list walkers in :mod:`pyvcore.walk`, the
snapshot format in :mod:`pyvcore.snapshot`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyvcore.bootconsts import BootConstants
from pyvcore.kvmlayout import (
    ENTRY_ARGUMENTS,
    HSTATE_EXTRA,
    KVM_ARCH_FIELDS,
    VCPU_FIELDS,
    Hints,
    KernelError,
    KernelLayout,
)
from pyvcore.layout import LayoutError
from pyvcore.ppc64 import (
    GUEST_MODES,
    HWTHREAD_STATES,
    KERNEL_BASE,
    MSR_DR,
    MSR_HV,
    MSR_IR,
    MSR_LE,
    MSR_SF,
    NAPPING,
    REAL_ADDRESS_MASK,
    VCORE_STATES,
    VCPU_STATES,
    VMALLOC_START,
    ThreadRegs,
    bswap64,
    is_kernel_pointer,
    is_linear,
    linear_to_phys,
    name_of,
    normalise_msr,
    thread_list,
)
from pyvcore.readplan import ByteOrder, Memory, Plan, ReadError, decode_value, read_many
from pyvcore.snapshot import build_snapshot
from pyvcore.vcorefind import VcoreSearch
from pyvcore.walk import WalkError, xarray_entries

# Re-exported from the modules decode.py was split into, for the code that
# imports them from here (the pv-* tables, older callers).
__all__ = [
    "ENTRY_ARGUMENTS",
    "GUEST_MODES",
    "HSTATE_EXTRA",
    "HWTHREAD_STATES",
    "KERNEL_BASE",
    "KVM_ARCH_FIELDS",
    "MSR_DR",
    "MSR_HV",
    "MSR_IR",
    "MSR_LE",
    "MSR_SF",
    "NAPPING",
    "REAL_ADDRESS_MASK",
    "VCORE_STATES",
    "VCPU_FIELDS",
    "VCPU_STATES",
    "VMALLOC_START",
    "Hints",
    "KernelError",
    "KernelLayout",
    "Memory",
    "ReadError",
    "Reading",
    "SnapshotReader",
    "ThreadRegs",
    "ThreadRow",
    "WalkError",
    "bswap64",
    "decode_value",
    "is_kernel_pointer",
    "is_linear",
    "linear_to_phys",
    "name_of",
    "normalise_msr",
    "thread_list",
    "xarray_entries",
]


@dataclass
class ThreadRow:
    """One hardware thread as pv-paca shows it (more than the snapshot carries)."""

    regs: ThreadRegs
    cpu: int | None = None
    paca: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def hstate(self, name: str) -> Any:
        return self.fields.get(f"kvm_hstate.{name}")


@dataclass
class Reading:
    """The result of one pass over the target: snapshot + what pv-* commands show.

    ``vcore_from`` says, per vcore address, where it was found (a PACA's
    ``kvm_hstate.kvm_vcore``, a function argument such as ``r3 at
    kvmppc_run_core``, a vcpu's ``arch.vcore``, or ``vm_list``)."""

    snapshot: dict[str, Any]
    rows: list[ThreadRow]
    vcores: dict[int, dict[str, Any]]
    vcpus: dict[int, dict[str, Any]]
    kvm: dict[int, dict[str, Any]]
    problems: list[str]
    vcore_from: dict[int, str] = field(default_factory=dict)


class SnapshotReader(BootConstants):
    """Builds snapshots from memory + registers; caches what never changes after boot
    (the boot-time values of :class:`~pyvcore.bootconsts.BootConstants`, each thread's cpu,
    each VM's fixed fields)."""

    def reset(self) -> None:
        """Forget cached boot-time values (new connection or new kernel)."""
        super().reset()
        self._hw_to_cpu: dict[int, int] = {}  # PIR -> cpu (static after boot)
        self._ids: dict[int, dict[str, Any]] = {}  # cpu -> paca_index, hw_cpu_id (static after boot)
        self._kvm_cache: dict[int, dict[str, Any]] = {}

    # -- per-struct reads
    def read_paca(self, mem: Memory, addr: int) -> dict[str, Any]:
        return self.k.paca_plan.read(mem, addr, self.k.order)

    def read_vcore(self, mem: Memory, addr: int) -> dict[str, Any]:
        return self.k.vcore_plan.read(mem, addr, self.k.order)

    def read_vcpu(self, mem: Memory, addr: int) -> dict[str, Any]:
        return self.k.vcpu_plan.read(mem, addr, self.k.order)

    def read_kvm(self, mem: Memory, addr: int) -> dict[str, Any]:
        if self.k.kvm_plan is None:
            raise LayoutError("struct kvm layout not available")
        return self.k.kvm_plan.read(mem, addr, self.k.order)

    def read_kvm_cached(self, mem: Memory, addr: int) -> dict[str, Any]:
        """kvm->arch fields the snapshot needs; they are fixed once a VM runs
        (lpid and host_* at creation, sdr1 when its HPT is allocated, before
        the first KVM_RUN), so each VM is read once per connection."""
        cached = self._kvm_cache.get(addr)
        if cached is None:
            cached = self._kvm_cache[addr] = self.read_kvm(mem, addr)
        return cached

    # -- the whole core
    def read(
        self,
        mem: Memory,
        regs: list[ThreadRegs],
        stop: str | None = None,
        with_kvm: bool = True,
        hints: Hints | None = None,
        stopper: int | None = None,
        full_paca: bool = False,
    ) -> Reading:
        """One pass: every thread's PACA, the vcores (from the PACAs, ``hints``
        and, when neither has one, ``vm_list``), their vcpus and VM.
        ``stopper`` is the gdb thread number that hit the stop (its timebase is
        the stop's ``tb``).  ``full_paca`` reads every PACA field pv-paca
        shows (``HSTATE_EXTRA`` too); otherwise, once the threads are matched,
        only the snapshot's ``kvm_hstate`` fields, every PACA in as few
        requests as fit.  Unreadable parts become ``problems``, never an
        exception, except a kernel whose PACAs cannot be found (KernelError)."""
        problems: list[str] = []
        rows = self._match_threads(mem, regs, problems, full_paca)
        found = VcoreSearch(self, mem, problems)
        for row in rows:
            if row.fields:
                found.vcore(
                    row.hstate("kvm_vcore"), "kvm_hstate.kvm_vcore", f"cpu {row.cpu}: kvm_hstate.kvm_vcore"
                )
                found.vcpu(row.hstate("kvm_vcpu"), f"cpu {row.cpu}: kvm_hstate.kvm_vcpu")
        for addr, source in (hints or Hints()).vcores:
            found.vcore(addr, source, source)
        for addr, source in (hints or Hints()).vcpus:
            found.vcpu(addr, source)
        vcores, vcpus = found.read()
        if not vcores:
            found.from_vm_list(vcores)
        kvms = self._read_kvms(mem, vcores, problems) if with_kvm else {}
        if not vcores:
            self._explain_no_vm(mem, problems)
        tpc = 0
        try:
            tpc = self.threads_per_core(mem)
        except ReadError as e:
            problems.append(f"threads_per_core unreadable: {e}")
        tb_freq = None
        try:
            tb_freq = self.tb_freq(mem)
        except ReadError as e:
            problems.append(f"ppc_tb_freq unreadable: {e}")
        snap = build_snapshot(
            self.k,
            rows,
            vcores,
            vcpus,
            kvms,
            threads_per_core=tpc or len(rows),
            stop=stop,
            tb_freq=tb_freq,
            stopper=stopper,
            vcore_from=found.vcore_from,
        )
        return Reading(snap, rows, vcores, vcpus, kvms, problems, dict(found.vcore_from))

    def _match_threads(
        self, mem: Memory, regs: list[ThreadRegs], problems: list[str], full_paca: bool = False
    ) -> list[ThreadRow]:
        """One row per gdb thread, matched to its Linux cpu by ``$pir == paca->hw_cpu_id``."""
        pacas = self.paca_addresses(mem)
        rows: list[ThreadRow] = []
        for r in regs:
            row = ThreadRow(regs=r, error=r.error)
            rows.append(row)
            cpu = self._hw_to_cpu.get(r.pir) if r.pir is not None else None
            if cpu is not None:
                row.cpu, row.paca = cpu, pacas.get(cpu)
        # PIRs not seen before: read PACAs until every thread is matched.
        # Afterwards the map is cached.
        unmatched = [row for row in rows if row.cpu is None and row.regs.pir is not None]
        for cpu, addr in sorted(pacas.items()) if unmatched else ():
            if cpu in self._hw_to_cpu.values():
                continue
            try:
                f = self.read_paca(mem, addr)
            except ReadError as e:
                problems.append(f"cpu {cpu}: PACA at {addr:#x} unreadable: {e}")
                continue
            hw = f.get("hw_cpu_id")
            if hw is None:
                continue
            self._hw_to_cpu[int(hw)] = cpu
            self._ids[cpu] = {"paca_index": f.get("paca_index"), "hw_cpu_id": hw}
            for row in unmatched:
                if row.regs.pir == hw:
                    row.cpu, row.paca, row.fields = cpu, addr, f
            if all(row.cpu is not None for row in unmatched):
                break
        batch = [r for r in rows if r.cpu in self._ids and r.paca is not None and not r.fields]
        if batch and not full_paca:
            read_hstates(mem, self.k.hstate_plan, batch, self._ids, self.k.order)
        for row in rows:
            self._read_row(mem, row, problems)
        rows.sort(key=lambda row: (row.cpu is None, row.cpu or 0, row.regs.gdb_thread))
        return rows

    def _read_row(self, mem: Memory, row: ThreadRow, problems: list[str]) -> None:
        if row.cpu is None:
            if row.regs.pir is None:
                row.error = row.error or "no $pir register (not a POWER gdbstub?)"
            else:
                row.error = row.error or f"no PACA has hw_cpu_id == $pir {row.regs.pir:#x}"
            problems.append(f"gdb thread {row.regs.gdb_thread}: {row.error}")
            return
        if not row.fields and row.paca is not None:
            try:
                row.fields = self.read_paca(mem, row.paca)
            except ReadError as e:
                row.error = f"PACA at {row.paca:#x} unreadable: {e}"
                problems.append(f"cpu {row.cpu}: {row.error}")
        if row.regs.in_opal:
            problems.append(
                f"cpu {row.cpu}: inside OPAL firmware (big-endian, pc {row.regs.pc or 0:#x}); "
                f"registers byte-swapped back, PACA read from memory"
            )

    def _read_kvms(
        self, mem: Memory, vcores: dict[int, dict[str, Any]], problems: list[str]
    ) -> dict[int, dict[str, Any]]:
        kvms: dict[int, dict[str, Any]] = {}
        if self.k.kvm_plan is None:
            return kvms
        for vc in vcores.values():
            kaddr = vc.get("kvm")
            if not kaddr or kaddr in kvms:
                continue
            if not is_kernel_pointer(kaddr):
                problems.append(f"vcore kvm = {kaddr:#x} is not a kernel address")
                continue
            try:
                kvms[kaddr] = self.read_kvm_cached(mem, kaddr)
            except ReadError as e:
                where = "" if is_linear(kaddr, self._linear_end or VMALLOC_START) else " (vmalloc space)"
                problems.append(f"struct kvm at {kaddr:#x} unreadable: {e.why}{where}")
        return kvms

    def _explain_no_vm(self, mem: Memory, problems: list[str]) -> None:
        """No vcore found: say whether any HV guest exists at all.

        ``hv_vm_count`` (book3s_hv_builtin.c, in vmlinux) counts VMs of kvm-hv;
        it is 0 when kvm-hv is not loaded or no guest was created yet."""
        try:
            count = self._int_symbol(mem, "hv_vm_count", 4, signed=True)
        except ReadError:
            return
        if count == 0:
            problems.append(
                "kvm-hv: no HV guest exists (hv_vm_count = 0): kvm-hv not loaded or no VM created yet"
            )


def read_hstates(
    mem: Memory, plan: Plan, rows: list[ThreadRow], ids: dict[int, dict[str, Any]], order: ByteOrder
) -> None:
    """Fill ``row.fields`` of each row (cpu and PACA known) from ``plan``
    (the ``kvm_hstate`` fields a snapshot needs) plus ``ids[row.cpu]``, the
    PACA fields fixed at boot (``paca_index``, arch/powerpc/kernel/paca.c
    ``initialise_paca``; ``hw_cpu_id``, ``set_hard_smp_processor_id``) read
    once when the thread was matched.  Every PACA in as few requests as fit
    (:func:`pyvcore.readplan.read_many`).  A row whose bytes cannot be read
    is left without fields (the caller reads it alone and reports why)."""
    n = len(plan.ranges)
    requests = [(int(row.paca or 0) + lo, hi - lo) for row in rows for lo, hi in plan.ranges]
    got = read_many(mem, requests)
    for k, row in enumerate(rows):
        chunks = [c for c in got[k * n : (k + 1) * n] if isinstance(c, bytes)]
        if len(chunks) == n:
            row.fields = {**ids[int(row.cpu or 0)], **plan.decode(chunks, order)}
