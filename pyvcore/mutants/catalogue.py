"""The mutants: one minimal machine-code edit each, in Debian's 6.12.95 ppc64le kernel.

Every entry was found by disassembling the lab's objects
(``powerpc64le-linux-gnu-objdump -dr``) next to the 6.12 source
(arch/powerpc/kvm/book3s_hv_rmhandlers.S, book3s_hv_builtin.c, book3s_hv.c).  Bytes
are as they lie in the file (little-endian instruction words).  Each mutant cites the
upstream :class:`Commit` that fixed the bug class or introduced the rule it breaks; the
commits are written once, below, with what a public copy showed of each.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

NOP = "00000060"  # ori r0,r0,0


@dataclass(frozen=True)
class Commit:
    """An upstream Linux commit: ``id`` (12 hex digits), its subject ``title``, whether id and
    subject were ``verified`` against a public copy of the commit, and ``evidence``: what that
    copy showed (or, unverified, what was searched)."""

    id: str
    title: str
    verified: bool
    evidence: str = ""


IN_GUEST_CLEARED = Commit(
    "7fe4e1176dfe",
    "powerpc/kvm: Fix kvmppc_vcore->in_guest value in kvmhv_switch_to_host",
    True,
    "the patch-applied notice on the kvm-ppc list (X-powerpc-patch-commit: "
    "7fe4e1176dfe47a243d8edd98d26abd11f91b042, 2019-10-11): r0 stored to VCORE_IN_GUEST was "
    "no longer 0 after 13c7bb3c57dc, so secondaries spun ('KVM: CPU N seems to be stuck')",
)
ALIGNED_THREADS = Commit(
    "e0b7ec058c0e", "KVM: PPC: Book3S HV: Align physical and virtual CPU thread numbers", True
)
ACTIVE_THREAD_BITMAP = Commit(
    "7d6c40da198a",
    "KVM: PPC: Book3S HV: Use bitmap of active threads rather than count",
    False,
    "neither the id nor the title was found in a public copy (searched "
    "2026-11-30 by id, by title and by the change: entry_exit_count becoming the "
    "entry_exit_map bitmap, and the exit-map == entry-map wait in kvmhv_switch_to_host); "
    "id and title as remembered from the kernel's history, not confirmed",
)
LATE_JOINING = Commit("2f12f0343684", "KVM: PPC: Book3S HV: Fixes for late-joining threads", True)
MSGSND_SIGNALLING = Commit(
    "66feed61cdf6",
    "KVM: PPC: Book3S HV: Use msgsnd for signalling threads on POWER8",
    False,
    "title confirmed on a public gitiles mirror (msm-4.9, parent of merge "
    "123857a70560): 'the interrupts to bring the other threads out of the guest when "
    "exiting' now use msgsnd; the id itself was not found in a public copy (searched again "
    "2026-11-30 by id and by title): not confirmed",
)
SECONDARY_START_RACES = Commit(
    "7b444c6710c6", "KVM: PPC: Book3S HV: Fix some races in starting secondary threads", True
)
REAL_MODE_CEDE = Commit(
    "19ccb76a1938",
    "KVM: PPC: Implement H_CEDE hcall for book3s_hv in real-mode code",
    True,
    "the commit itself on a public mirror (git.proxmox.com mirror_ubuntu-kernels, object "
    "19ccb76a1938ab364a412253daec64613acbf3df): H_CEDE handled in real mode, the ceding vcpu "
    "marked napping and put in nap, and the vcore taken to the host only when all the other "
    "vcpus of the core are idle too; the blame of arch/powerpc/kvm/powerpc.c quoted in a 0-day "
    "kbuild report (2019-11-14) gives the same id, Paul Mackerras, 2011-07-23",
)
SMT_GUESTS = Commit(
    "371fefd6f2dc",
    "KVM: PPC: Allow book3s_hv guests to use SMT processor modes",
    True,
    "cited by id and title in the Fixes: tag of 1a978d9d3e72 (kvm-ppc list and "
    "stable backports); it introduced the vcore, whose primary thread alone switches the "
    "partition (LPIDR/SDR1) for the core",
)


@dataclass(frozen=True)
class Mutant:
    """One mutant: where (``obj`` "vmlinux" or "kvm-hv.ko", ``symbol`` + ``offset`` bytes),
    what (``expected`` and ``replacement`` hex bytes, file order), why (``klass``, the
    :class:`Commit` it ``cites``), which lab scenarios exercise it, and -- for an equivalent
    mutant -- the argument from the code that it behaves exactly like the kernel."""

    name: str
    klass: str
    cites: Commit
    obj: str
    symbol: str
    offset: int
    expected: str
    replacement: str
    scenarios: tuple[str, ...]
    source: str  # the source line(s) the instruction comes from
    effect: str
    equivalent: str | None = None
    # Watch from QEMU's first instruction (pyvcore diff --from-boot): for a mutant that
    # breaks the VM's very first vcore run, before the guest can report READY.
    from_boot: bool = False

    @property
    def length(self) -> int:
        return len(bytes.fromhex(self.expected))

    @property
    def commit(self) -> str:
        """The cited commit's 12-digit id."""
        return self.cites.id

    def to_json(self) -> dict[str, Any]:
        """The entry as ``mutants --list --json`` prints it: the cited commit flat, as
        ``commit``, ``commit_title``, ``commit_verified`` and ``commit_evidence``."""
        entry = asdict(self)
        cites = entry.pop("cites")
        return {
            "name": entry.pop("name"),
            "klass": entry.pop("klass"),
            "commit": cites["id"],
            "commit_title": cites["title"],
            "commit_verified": cites["verified"],
            "commit_evidence": cites["evidence"],
            **entry,
        }


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="in-guest-not-cleared",
        klass="vcore in_guest not cleared at the switch back",
        cites=IN_GUEST_CLEARED,
        obj="vmlinux",
        symbol="kvmhv_switch_to_host",
        offset=0xFC,
        expected="19000598",  # stb r0,VCORE_IN_GUEST(r5)
        replacement=NOP,
        scenarios=("all",),
        source="book3s_hv_rmhandlers.S kvmhv_switch_to_host, label 18: stb r0,VCORE_IN_GUEST(r5)",
        effect="thread 0 returns to the host with vcore->in_guest still 1; secondaries spin at label 13",
    ),
    Mutant(
        name="secondary-enters-early",
        klass="a secondary entering the guest before thread 0 has switched the partition",
        cites=ALIGNED_THREADS,
        obj="vmlinux",
        symbol="kvmppc_got_guest",
        offset=0x21C,
        expected="ecff8241",  # beq 20b (wait for VCORE_IN_GUEST)
        replacement=NOP,
        scenarios=("all",),
        source="book3s_hv_rmhandlers.S kvmppc_hv_entry tail: 20: ... lbz r0,VCORE_IN_GUEST(r5); beq 20b",
        effect="a secondary leaves its wait loop at once and enters the guest in the host partition",
    ),
    Mutant(
        name="primary-exits-early",
        klass="thread 0 switching back before every entered thread has exited",
        cites=ACTIVE_THREAD_BITMAP,
        obj="vmlinux",
        symbol="kvmhv_switch_to_host",
        offset=0x3C,
        expected="f0ff8240",  # bne 15b (entry map != exit map)
        replacement=NOP,
        scenarios=("exits",),
        source="book3s_hv_rmhandlers.S kvmhv_switch_to_host 15: ... cmpw r3,r0; bne 15b",
        effect="thread 0 restores the host LPIDR/SDR1 while secondaries may still run the guest",
    ),
    Mutant(
        name="too-late-check-skipped",
        klass="an entry after the exit began (the too-late check skipped)",
        cites=LATE_JOINING,
        obj="vmlinux",
        symbol="kvmppc_hv_entry",
        offset=0x38,
        expected="54048040",  # bge secondary_too_late
        replacement=NOP,
        scenarios=("exits",),
        source="book3s_hv_rmhandlers.S kvmppc_hv_entry 21: cmpwi r3,0x100; bge secondary_too_late",
        effect="a thread sets its entry bit although another thread already started the exit",
    ),
    Mutant(
        name="no-exit-ipi",
        klass="no exit IPI to the other threads",
        cites=MSGSND_SIGNALLING,
        obj="vmlinux",
        symbol="kvmhv_commence_exit",
        offset=0x84,
        expected="ec008240",  # bne (trap != HDEC) -> kvmhv_interrupt_vcore path
        replacement=NOP,
        scenarios=("exits",),
        source="book3s_hv_builtin.c kvmhv_commence_exit: if (trap != BOOK3S_INTERRUPT_HV_DECREMENTER) "
        "kvmhv_interrupt_vcore(vc, ee & ~(1 << ptid))",
        effect="the first thread to exit never pulls the others out; they leave on their own HDEC",
    ),
    Mutant(
        name="ptid-zero",
        klass="the wrong ptid stored for a started thread",
        cites=ALIGNED_THREADS,
        obj="kvm-hv.ko",
        symbol="kvmppc_start_thread",
        offset=0x78,
        expected="50f04a7d",  # subf r10,r10,r30  (cpu - vc->pcpu)
        replacement="00004039",  # li r10,0
        scenarios=("all",),
        source="book3s_hv.c kvmppc_start_thread: tpaca->kvm_hstate.ptid = cpu - vc->pcpu",
        effect="every started thread believes it is thread 0 (and does thread 0's partition switch); "
        "the host oopses in kvmppc_run_core on the VM's first run, before the guest reports READY",
        from_boot=True,
    ),
    Mutant(
        name="paca-vcpu-not-cleared",
        klass="the PACA's vcpu not cleared at exit",
        cites=SECONDARY_START_RACES,
        obj="vmlinux",
        symbol="kvm_secondary_got_guest",
        offset=0x5C,
        expected="d8020df8",  # std r0,HSTATE_KVM_VCPU(r13)
        replacement=NOP,
        scenarios=("exits",),
        source="book3s_hv_rmhandlers.S kvm_secondary_got_guest after bl kvmppc_hv_entry: "
        "li r0,0; std r0,HSTATE_KVM_VCPU(r13)",
        effect="a secondary back from the guest keeps kvm_hstate.kvm_vcpu pointing at its old vcpu",
    ),
    Mutant(
        name="napping-not-cleared",
        klass="napping_threads not cleared on wake",
        cites=REAL_MODE_CEDE,
        obj="vmlinux",
        symbol="kvm_end_cede",
        offset=0x80,
        expected="7800e77c",  # andc r7,r7,r0
        replacement=NOP,
        scenarios=("cede",),
        source="book3s_hv_rmhandlers.S kvm_end_cede 32: lwarx r7; andc r7,r7,r0; stwcx. r7",
        effect="a woken thread stays in vcore->napping_threads while it runs the guest",
    ),
    Mutant(
        name="threads-released-early",
        klass="threads released before they are back",
        cites=SECONDARY_START_RACES,
        obj="kvm-hv.ko",
        symbol="kvmppc_run_core",
        offset=0xD7C,
        expected="d8008140",  # ble (n_threads <= 1: no wait) in the inlined kvmppc_wait_for_nap
        replacement="d8000048",  # b (always skip the wait)
        scenarios=("exits",),
        source="book3s_hv.c kvmppc_run_core -> kvmppc_wait_for_nap(controlled_threads) "
        "(inlined): if (n_threads <= 1) return;",
        effect="thread 0 finishes the vcore run without waiting for the secondaries' kvm_vcore to clear",
    ),
    Mutant(
        name="cede-exit-rule",
        klass="the cede-to-exit rule broken in kvmppc_h_cede",
        cites=REAL_MODE_CEDE,
        obj="vmlinux",
        symbol="kvmppc_h_cede",
        offset=0x58,
        expected="e0018241",  # beq kvm_cede_exit (every other thread napping)
        replacement=NOP,
        scenarios=("cede-all",),
        source="book3s_hv_rmhandlers.S kvmppc_h_cede 31: or r4,r4,r0; cmpw r4,r8; beq kvm_cede_exit",
        effect="the last thread to cede naps instead of taking the vcore to the host: all threads nap",
    ),
    Mutant(
        name="rank-placement",
        klass="a vcpu placed on the thread of its runnable rank instead of its id (pre-2014 placement)",
        cites=ALIGNED_THREADS,
        obj="kvm-hv.ko",
        symbol="kvmppc_start_thread",
        offset=0x48,
        expected="1452de7f",  # add r30,r30,r10  (cpu = vc->pcpu + arch.ptid)
        replacement="ffffca3b",  # addi r30,r10,-1
        scenarios=("novcpu0",),
        source="book3s_hv.c kvmppc_start_thread: cpu += vcpu->arch.ptid",
        effect="with vcpus 1-3 and no vcpu 0 (novcpu0) and vc->pcpu 0 (the lab's only core), vcpu N "
        "runs on thread N-1: its rank among the runnable vcpus, as before e0b7ec058c0e",
    ),
    Mutant(
        name="lpidr-on-secondary",
        klass="the LPIDR written on a secondary",
        cites=SMT_GUESTS,
        obj="vmlinux",
        symbol="kvmppc_hv_entry",
        offset=0x4C,
        expected="c4008240",  # bne 10f (ptid != 0: skip the partition switch)
        replacement=NOP,
        scenarios=("all",),
        source="book3s_hv_rmhandlers.S kvmppc_hv_entry: cmpwi r6,0; bne 10f; ... mtspr SPRN_LPID,r7",
        effect="every thread, not only thread 0, writes LPIDR/SDR1 and sets in_guest",
    ),
    Mutant(
        name="ptid-absolute",
        klass="the wrong ptid stored for a started thread (equivalent in the lab)",
        cites=ALIGNED_THREADS,
        obj="kvm-hv.ko",
        symbol="kvmppc_start_thread",
        offset=0x78,
        expected="50f04a7d",  # subf r10,r10,r30  (cpu - vc->pcpu)
        replacement="78f3ca7f",  # mr r10,r30  (cpu)
        scenarios=("all",),
        source="book3s_hv.c kvmppc_start_thread: tpaca->kvm_hstate.ptid = cpu - vc->pcpu",
        effect="ptid = cpu instead of cpu - vc->pcpu",
        equivalent=(
            "Equivalent on the lab: vc->pcpu is the cpu of thread 0 of the core the vcore runs on "
            "(kvmppc_run_core sets pcpu = smp_processor_id() after checking it is on thread 0), "
            "and the powernv8 lab has one core whose threads are cpus 0-3, so pcpu == 0 and "
            "cpu - pcpu == cpu for every started thread.  Not equivalent on a host with more "
            "than one core: there ptid would exceed threads_per_core."
        ),
    ),
)


def by_name(name: str) -> Mutant:
    for m in MUTANTS:
        if m.name == name:
            return m
    raise KeyError(name)
