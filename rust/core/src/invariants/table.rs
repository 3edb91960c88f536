//! The invariant table: one row per invariant that any pyvcore code can
//! report (snapshot checker, step checker, model, explorer, trace plugin).
//!
//! Every violation is built from a row (`Violation::new(number, ..)`), the
//! `pyvcore invariants` command and the README's invariant list are printed
//! from it, and a test asserts that every number the code emits is here.
//! Adding an invariant: add its row here, then emit it from one function of
//! the subject module (`threads.rs`, `vcores.rs`, ...).
//!
//! Numbers 1-28 follow the numbering of the kernel design this model was
//! derived from; 29-30 are the model's doorbell and deadlock properties;
//! 31-39 are snapshot checks on registers (`pc`, `msr`, `dpdes`); model-only
//! and liveness rows added later take 40 and up.

/// When an invariant can be judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// On one stop (a live snapshot, or one state of the model).
    Snapshot,
    /// Between two stops of one VM's life (`--same-vm`), or two stops
    /// provably inside one vcore run (the same `vcores[].seq`).
    Step,
    /// Needs the exact history of events: judged in the model / explorer
    /// only (and by the continuous trace plugin, which sees every store).
    History,
    /// Something must eventually happen within a bound (trace plugin).
    Liveness,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot",
            Kind::Step => "step",
            Kind::History => "history",
            Kind::Liveness => "liveness",
        }
    }
}

/// One invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvariantInfo {
    pub number: u32,
    /// A few words, for report headers.
    pub title: &'static str,
    /// What holds, in one or two sentences.
    pub statement: &'static str,
    /// When it is judged (the states or stops in which it must hold).
    pub window: &'static str,
    /// Kernel (or QEMU) file, function and commit it comes from.
    pub source: &'static str,
    /// What a violation usually means, and where to look.
    pub meaning: &'static str,
    /// Snapshot fields it needs (`vcores`, `vcpus`, `threads.lpidr`, ...);
    /// empty = always judged.
    pub needs: &'static [&'static str],
    pub kind: Kind,
}

/// Every invariant, by number.
pub static INVARIANTS: &[InvariantInfo] = &[
    InvariantInfo {
        number: 1,
        title: "vcpu ptid",
        statement: "A vcpu's arch.ptid is vcpu_id - first_vcpuid of its vcore, below the threads per vcore, and fixed from creation.",
        window: "every stop (the fixed-at-creation part between stops of one VM, --same-vm)",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_core_vcpu_create_hv; e0b7ec058c0e (v3.14) \"Align physical and virtual CPU thread numbers\"",
        meaning: "The vcpu will run on the wrong hardware thread and doorbells (msgsndp names a physical thread) reach the wrong vcpu. Look at where arch.ptid is assigned in kvmppc_core_vcpu_create_hv.",
        needs: &["vcpus"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 2,
        title: "vcore numbering",
        statement: "A vcore's first_vcpuid is a multiple of the threads per vcore; each vcpu id lies in its vcore's range; one VM has one vcore per first_vcpuid.",
        window: "every stop (first_vcpuid and vcpu_id unchanged between stops of one VM, --same-vm)",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_core_vcpu_create_hv (core = id / threads_per_vcore); e0b7ec058c0e",
        meaning: "vcpus are grouped into the wrong vcore. Look at the vcore index computation in kvmppc_core_vcpu_create_hv and kvm->arch.smt_mode.",
        needs: &["vcores"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 3,
        title: "thread alignment",
        statement: "The PACA of thread pcpu+N holds the vcpu with ptid N, with kvm_hstate.ptid N and kvm_vcore its vcore; a PACA ptid is only ever its own thread number (or 0), and exactly its own (sub)core index once the thread was started (modern: kvm_vcore set, stored after ptid).",
        window: "every stop; a started vcpu's PACA fields once kvmppc_start_thread has stored them all; the started thread's PACA ptid from the PACA alone (no vcore or vcpu needed)",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_start_thread; e0b7ec058c0e",
        meaning: "kvmppc_start_thread put a vcpu on another thread than its ptid, so the guest's view of its thread (TIR) and the hardware disagree. Look at the cpu computed in kvmppc_start_thread.",
        needs: &[],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 4,
        title: "pcpu is thread 0",
        statement: "A vcore in a run has pcpu = thread 0 of a core (or of a subcore when a modern POWER8 core is dynamically split).",
        window: "vcore_state STARTING, RUNNING, EXITING or PIGGYBACK",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_run_core (on_primary_thread; subcore_thread_map)",
        meaning: "The runner started a run off a primary thread. Look at on_primary_thread and the pcpu assignment in kvmppc_run_core.",
        needs: &["vcores"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 5,
        title: "one PACA per vcpu",
        statement: "A vcpu is in at most one PACA's kvm_hstate.kvm_vcpu; a secondary that has finished its part of a run (its exit bit set, kvm_vcore cleared) no longer holds one.",
        window: "every stop (the finished secondary: a held vcpu whose vcore has an entry/exit map)",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_start_thread / kvmppc_release_hwthread; book3s_hv_rmhandlers.S kvm_secondary_got_guest (kvm_vcpu cleared, lwsync, kvm_vcore cleared); 7b444c6710c6",
        meaning: "A vcpu was started twice, or a PACA was not cleared at the end of a run. Look at kvmppc_release_hwthread and the secondaries' exit path.",
        needs: &[],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 6,
        title: "vcpu cpu fields",
        statement: "A started vcpu has cpu = its vcore's pcpu and (modern) thread_cpu = pcpu + ptid; otherwise -1.",
        window: "vcore in a run; a vcpu held by a PACA on any stop",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_start_thread and post_guest_process (vcpu->cpu = -1)",
        meaning: "IPIs for the vcpu go to the wrong cpu. Look at where vcpu->cpu and arch.thread_cpu are set and cleared.",
        needs: &["vcores", "vcpus"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 7,
        title: "one MMU switch per run",
        statement: "Only thread 0 switches LPIDR/SDR1 and vc->in_guest, at most once into the guest and once back per run; vc->in_guest does not go back to 1 in a run once it has dropped to 0.",
        window: "model steps; between two stops of one vcore run (same vcores[].seq)",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvmppc_hv_entry (switch in, ptid 0 only) and kvmhv_switch_to_host (switch back)",
        meaning: "The partition was switched by a secondary or twice: the guest ran with the host's MMU or the reverse. Look at the ptid tests around the LPIDR writes in kvmppc_hv_entry / kvmhv_switch_to_host.",
        needs: &[],
        kind: Kind::History,
    },
    InvariantInfo {
        number: 8,
        title: "partition registers",
        statement: "LPIDR and SDR1 are one register per POWER7/8 core: every thread of a core shows the same value; a thread executing the guest has the guest's LPID/SDR1; thread 0 outside KVM has the host's.",
        window: "every stop that carries LPIDR/SDR1 (not while a modern vcore is PIGGYBACK); the LPID unchanged between stops of one VM (--same-vm)",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvmppc_hv_entry (thread 0 writes LPIDR/SDR1 once for the core) and kvmhv_switch_to_host",
        meaning: "A thread runs in another partition than its siblings: on an emulator, the per-core SPRs are not shared between threads (QEMU target/ppc helper_store_lpidr / helper_store_sdr1); on a kernel, a missing or extra switch.",
        needs: &["threads.lpidr"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 9,
        title: "no guest before the switch",
        statement: "No thread executes the guest (in_guest GUEST_HV) while its vcore's in_guest is 0; vc->in_guest is 0 or 1.",
        window: "every stop with the thread's vcore",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvmppc_hv_entry (secondaries wait for VCORE_IN_GUEST)",
        meaning: "A secondary entered the guest before thread 0 switched the partition, or in_guest was cleared early. Look at the wait loop on VCORE_IN_GUEST in kvmppc_hv_entry.",
        needs: &["vcores"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 10,
        title: "entry/exit word",
        statement: "Exits are a subset of entries, within the core's threads; every entered thread's PACA points at the vcore and is in KVM (in_guest not NONE) while it has not begun to exit; a thread executing the guest (in_guest GUEST_HV) has entered and not begun to exit (modern: its ptid's entry bit set, exit bit clear; seed: guest threads at most entries minus exits).",
        window: "every stop with a vcore (entry_exit_map or entry_exit_count present)",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvmppc_hv_entry (entry bit by HSTATE_PTID, before fast_guest_return stores GUEST_HV), kvmppc_interrupt_hv (HOST_HV before the exit), kvmhv_switch_to_host (NONE last); book3s_hv_builtin.c kvmhv_commence_exit (exit bit 0x100 << ptid)",
        meaning: "A thread counted itself twice, exited without entering, or runs the guest without being counted (or after counting its exit). Look at the atomic updates of vc->entry_exit_map / entry_exit_count and the HSTATE_IN_GUEST stores around them.",
        needs: &["vcores"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 11,
        title: "no entry after an exit began",
        statement: "Once a thread has begun to exit, the entry part of the entry/exit word does not change again in the run; within one run both parts only grow.",
        window: "model steps; between two stops of one vcore run (same vcores[].seq)",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvmppc_hv_entry (entry only if no exit: the lwarx/stwcx loop)",
        meaning: "A late thread entered the guest after the others started leaving it and will run without thread 0's partition. Look at the entry loop's exit test.",
        needs: &["vcores"],
        kind: Kind::Step,
    },
    InvariantInfo {
        number: 12,
        title: "thread 0 enters first",
        statement: "Thread 0's entry is counted before any thread exits (unless another subcore requested the exit), and vc->in_guest = 1 only after thread 0 entered.",
        window: "every stop with a vcore",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvmppc_hv_entry; book3s_hv_builtin.c kvmhv_commence_exit",
        meaning: "A secondary ran and exited without thread 0's partition switch. Look at the secondaries' wait for vc->in_guest.",
        needs: &["vcores"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 13,
        title: "switch back after all exit",
        statement: "vc->in_guest drops to 0 only when every entered thread is exiting, and thread 0 is back out of KVM (in_guest NONE) after it entered the run only when every entered thread is exiting; after the switch back (thread 0 out of KVM, every entered thread exiting) vc->in_guest is 0, and it stays 0 outside STARTING, RUNNING and PIGGYBACK (kvmppc_run_core stores EXITING only after __kvmppc_vcore_entry returned); a modern secondary that has exited (its exit bit) and left KVM (in_guest NONE) while still pointing at the vcore saw vc->in_guest 0 (secondaries wait for it in kvmhv_switch_to_host); in a seed run, nap_count above 0 (a secondary has finished its pass, after its wait in secondary_too_late) means vc->in_guest is 0.",
        window: "every stop with a vcore; a secondary past its wait for vc->in_guest 0: modern by its exit bit and PACA, seed by nap_count above 0 in a run (the seed's count does not say which thread exited, and its PACAs keep kvm_vcore after a run, so a secondary out of KVM is not judged by its PACA); prepatch not judged (its secondary_too_late was not read)",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvmhv_switch_to_host (wait for exits == entries; store 0 to VCORE_IN_GUEST; secondaries spin on it before storing KVM_GUEST_MODE_NONE); fix 7fe4e1176dfe (v5.4); seed e0b7ec058c0e (v3.14) secondary_too_late (secondaries spin until VCORE_IN_GUEST is 0) and kvm_start_guest (nap_count counted after kvmppc_hv_entry returns), book3s_hv.c kvmppc_run_core (nap_count = 0 before in_guest = 0)",
        meaning: "Thread 0 switched back while a sibling was still in the guest, or left vc->in_guest set after the switch back so the secondaries spin forever (\"CPU N seems to be stuck\"). Look at kvmhv_switch_to_host.",
        needs: &["vcores"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 14,
        title: "napping threads",
        statement: "napping_threads is a subset of the entered threads; a thread napping in KVM (CEDE or NOVCPU) has in_guest HOST_HV; napping holds a NAPPING_* value; a secondary that has begun its exit and no longer naps is out of napping_threads (kvm_end_cede clears its bit before napping); a secondary whose bit is set is in KVM's real-mode code (not GUEST_HV, not NONE: its own H_CEDE set the bit and kvm_end_cede clears it before it leaves).",
        window: "every stop (the bits may stay stale after an exit until the next run's reset); a secondary's bit while it executes the guest or is out of KVM: modern, and seed in RUNNING and EXITING on the PACA at vc->pcpu + ptid (its PACAs keep kvm_vcore after a run; kvmppc_run_core stores STARTING before it zeroes napping_threads); a secondary that has begun its exit: modern only (the seed's count does not say which thread exited); prepatch not judged (its kvmppc_h_cede took the ptid from the vcpu, not the PACA)",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvmppc_h_cede / kvm_end_cede / kvm_do_nap / kvmppc_primary_no_guest; seed e0b7ec058c0e (v3.14) kvmppc_h_cede / kvm_end_cede label 34 / hdec_soon, book3s_hv.c kvmppc_run_core (napping_threads = 0)",
        meaning: "A thread set its napping bit without having entered, or went back to the guest without clearing it (the exit logic then counts it as napping). Look at the napping_threads updates in kvmppc_h_cede, kvm_end_cede and kvmppc_primary_no_guest.",
        needs: &[],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 15,
        title: "napping secondary is grabbed",
        statement: "A secondary napping inside KVM has hwthread_req 1.",
        window: "every stop (thread 0 not judged: it stores napping just before hwthread_req)",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvm_do_nap; arch/powerpc/platforms/powernv/idle.c (wakeup tests hwthread_req)",
        meaning: "A secondary naps in KVM but would wake into the host. Look at kvmppc_release_hwthread and the nap paths.",
        needs: &[],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 16,
        title: "nap count (seed)",
        statement: "Seed: nap_count <= n_woken <= the core's secondaries during a run, n_woken <= the vcore's vcpus with a ptid other than 0 when the snapshot lists them all (each is started, and counted, at most once a run), and the woken secondaries still holding a vcpu plus nap_count never exceed n_woken, + 1 for a start between its kvm_vcpu store and ++n_woken while n_woken does not yet count every secondary (a secondary clears its PACA's vcpu before it counts its nap).",
        window: "seed and prepatch vcore in a run (STARTING, RUNNING, EXITING); n_woken and nap_count never going down between two stops of one vcore run (same vcores[].seq)",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_start_thread (++n_woken for a vcpu with ptid != 0), kvmppc_run_vcpu (a latecomer started once, RUNNING with no exit) and kvmppc_run_core (wait for nap_count == n_woken); book3s_hv_rmhandlers.S secondary nap; 7b444c6710c6",
        meaning: "The runner can release the threads while a secondary still writes its vcpu state: a nap was counted before the PACA's vcpu was cleared. Look at the order of the kvm_vcpu clear and the nap_count increment.",
        needs: &["vcores.nap_count"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 17,
        title: "secondaries grabbed during a run",
        statement: "From the first started vcpu (or the start of RUNNING) until the threads are released, every secondary of the core has hwthread_req 1.",
        window: "seed/prepatch STARTING once a vcpu was started on any thread or an entry counted; RUNNING (modern: the whole state; seed/prepatch: until thread 0 left KVM after the exit and nap_count reached n_woken); modern INACTIVE once a thread of the core points at the vcore (threads are started before VCORE_RUNNING); modern EXITING while a secondary still points at the vcore (before kvmppc_wait_for_nap returns)",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_run_core: on_primary_thread / kvmppc_grab_hwthread before kvmppc_start_thread, kvmppc_wait_for_nap before kvmppc_release_hwthread; 7b444c6710c6, 2f12f0343684",
        meaning: "A thread was started before all siblings were grabbed, or released while the run goes on: the sibling can enter the host kernel with the guest's partition. Look at on_primary_thread and kvmppc_release_hwthread.",
        needs: &["vcores"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 18,
        title: "secondary in KVM is grabbed",
        statement: "A secondary in KVM's real-mode code (in_guest not NONE) has hwthread_req 1 and hwthread_state IN_KVM (seed: not IN_IDLE).",
        window: "every stop",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvm_start_guest; arch/powerpc/platforms/powernv/idle.c pnv_powersave_wakeup",
        meaning: "A thread runs KVM code without having been grabbed: it may go back to the host with the guest's partition. Look at the grab/release and the wakeup path.",
        needs: &[],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 19,
        title: "vcore_state and runner",
        statement: "vcore_state is a known state and moves along its graph; the runner is set in the active states and belongs to the vcore.",
        window: "every stop (the graph: model steps and stops of one vcore run; the runner unchanged between two stops of one vcore run, same vcores[].seq)",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_run_vcpu / kvmppc_run_core / kvmppc_vcore_blocked",
        meaning: "The runner logic lost track of the vcore. Look at the vcore_state stores in kvmppc_run_vcpu.",
        needs: &["vcores"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 20,
        title: "vcore bookkeeping",
        statement: "n_runnable <= num_threads <= threads per core, num_threads counts the vcore's vcpus, n_runnable matches the RUNNABLE vcpus (within one), num_threads never shrinks.",
        window: "every stop with a vcore (never shrinking: --same-vm)",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_run_vcpu / kvmppc_remove_runnable / kvmppc_core_vcpu_create_hv",
        meaning: "The runnable list and its count disagree. Look at kvmppc_remove_runnable and the runnable list updates.",
        needs: &["vcores", "vcpus"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 21,
        title: "one running vcore per core",
        statement: "At most one vcore is RUNNING on a physical core.",
        window: "every stop with two vcores or more",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_run_core",
        meaning: "Two runners took the same core. Look at on_primary_thread and the core's ownership.",
        needs: &["vcores"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 23,
        title: "hstate in_guest",
        statement: "hstate.in_guest is a POWER8-path mode (NONE, SKIP, GUEST_HV, HOST_HV) and moves NONE -> HOST_HV <-> GUEST_HV -> ... -> NONE; a thread in KVM points at a vcore; a thread executing the guest (GUEST_HV) holds a vcpu (kvm_vcpu set).",
        window: "every stop (the graph: model steps)",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvmppc_hv_entry / fast_guest_return / kvmppc_interrupt_hv",
        meaning: "A PACA is corrupt or a path skipped the HOST_HV state. Look at the HSTATE_IN_GUEST stores.",
        needs: &[],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 24,
        title: "ceded flag",
        statement: "A vcpu whose thread naps with NAPPING_CEDE has arch.ceded 1; a vcpu executing the guest has ceded 0.",
        window: "every stop with the vcpu",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvmppc_h_cede and fast_guest_return (ceded cleared)",
        meaning: "An H_CEDE was lost or a wakeup did not clear ceded. Look at kvmppc_h_cede / kvm_end_cede.",
        needs: &["vcpus"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 25,
        title: "cede to exit",
        statement: "A cede that would make every entered thread nap is turned into an exit instead of a nap.",
        window: "model steps (cede events); on a snapshot (modern): every entered thread napping with NAPPING_CEDE, in napping_threads, and no exit begun",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvmppc_h_cede (napping_threads vs entry map, beq kvm_cede_exit before the stwcx.)",
        meaning: "All threads could nap with nobody to wake them: the core hangs until an external interrupt. Look at the all-napping test in kvmppc_h_cede.",
        needs: &[],
        kind: Kind::History,
    },
    InvariantInfo {
        number: 26,
        title: "thread 0 without a vcpu",
        statement: "Thread 0 napping with NAPPING_NOVCPU has kvm_vcore set, ptid 0, no vcpu of another thread, and the vcore shows it entered, napping bit 0 set and in_guest 1.",
        window: "every stop where a thread naps with NAPPING_NOVCPU",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvmppc_primary_no_guest / kvm_novcpu_wakeup; e0b7ec058c0e",
        meaning: "Thread 0 naps outside the run it serves: it will not switch the partition back. Look at kvmppc_primary_no_guest.",
        needs: &[],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 27,
        title: "timebase offset",
        statement: "The guest's TB offset is applied only between thread 0's switch in and its switch back.",
        window: "model steps",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvmppc_hv_entry / kvmhv_switch_to_host (VCORE_TB_OFFSET, tb_offset_applied)",
        meaning: "The host ran with the guest's timebase (or the reverse). Look at the tb_offset_applied handling.",
        needs: &[],
        kind: Kind::History,
    },
    InvariantInfo {
        number: 29,
        title: "doorbell delivery",
        statement: "A doorbell (msgsndp) sent to virtual thread N is delivered to vcpu first_vcpuid + N, eventually, exactly once, and never to another vcpu: the vcpu on physical thread pcpu + N is vcpu first_vcpuid + N, and the pending bit stays in DPDES (one register per core, bit N for thread N) or, across an exit, in vc->dpdes until that vcpu takes it.",
        window: "every stop (placement); the model's doorbell steps (sent, pending, taken) through cedes, exits and wakes",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_start_thread and kvmppc_doorbell_pending; book3s_hv_rmhandlers.S, kvmppc_hv_entry (loads VCORE_DPDES) and kvmhv_switch_to_host (saves it); e0b7ec058c0e (msgsndp names a physical thread)",
        meaning: "The guest's IPIs reach the wrong vcpu, or are lost. Look at the vcpu placement in kvmppc_start_thread and at the DPDES save/restore; on an emulator, at msgsndp and the wake-up from powersave (QEMU target/ppc).",
        needs: &["vcpus"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 30,
        title: "no deadlock",
        statement: "Once a vcpu is runnable, the run can always go on until it finishes.",
        window: "explorer (every reachable state)",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_run_vcpu / kvmppc_run_core",
        meaning: "Some thread waits for a condition no other thread can make true. The explorer's counterexample shows the path.",
        needs: &[],
        kind: Kind::History,
    },
    InvariantInfo {
        number: 31,
        title: "doorbell state per core",
        statement: "DPDES is one register per POWER8 core, bit N pending for thread N: every thread of a core reads the same value, so a doorbell is never pending on one thread only; no bit at or above threads_per_core is set (there is no such thread); and once thread 0 has switched the core back to the host (host LPIDR, vc->in_guest 0) no guest doorbell is pending: the switch back saved DPDES in vc->dpdes and cleared it.",
        window: "every stop that carries threads[].dpdes (the host clause: per core, with kvm.host_lpid and thread 0's LPIDR, on a core no vcore with in_guest 1 runs on; live, DPDES is read once per stop, on the stopping thread)",
        source: "arch/powerpc/kvm/book3s_hv_rmhandlers.S, kvmppc_hv_entry (thread 0 loads VCORE_DPDES: \"DPDES and VTB are shared between threads\") and kvmhv_switch_to_host (saves it, then clears it: \"so we don't get guest doorbells in the host\"), both after the LPIDR switch and before the store to vc->in_guest; the seed has the same save and restore (b005255e12a3, v3.14: DPDES kept in the vcore, saved and restored by the primary thread); QEMU target/ppc 0324d236d291 \"Fix mtDPDES targeting SMT siblings\"",
        meaning: "A doorbell for one thread is pending on another: the intended vcpu never sees it and the wrong one takes it; or a guest's doorbell survived the switch back into the host. On an emulator, mtDPDES/msgsndp does not target the sibling (QEMU target/ppc/misc_helper.c); on a kernel, the DPDES save/restore/clear in kvmhv_switch_to_host.",
        needs: &["threads.dpdes"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 32,
        title: "KVM state runs in real mode",
        statement: "A thread whose PACA says it is in KVM's real-mode code (in_guest HOST_HV, or napping CEDE/NOVCPU) runs in hypervisor real mode with interrupts off (MSR[HV] 1, MSR[IR] = MSR[DR] = 0, MSR[PR] = MSR[EE] = 0); a thread executing the guest (in_guest GUEST_HV) never runs hypervisor code with translation on, in problem state or with EE on; and a thread runs guest code (MSR[HV] 0) only with a guest mode in its PACA (never in_guest NONE: fast_guest_return stores GUEST_HV before its hrfid, so that the guest's interrupts go to KVM).",
        window: "every stop that carries threads[].msr",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_run_core (hard_irq_disable before __kvmppc_vcore_entry); book3s_hv_rmhandlers.S, kvmppc_hv_entry_trampoline (rfid with IR/DR cleared) / kvmppc_hv_entry (in_guest HOST_HV after the rfid to real mode) / kvm_do_nap / kvm_start_guest / kvmhv_switch_to_host; arch/powerpc/platforms/powernv/idle.c pnv_powersave_wakeup; fix 56376c5864f8 (v4.17)",
        meaning: "A thread woke from a nap in KVM into host code (it skipped the hwthread_req test and returned \"somewhere garbage\"). Look at the wakeup path in pnv_powersave_wakeup and the thread's pc.",
        needs: &["threads.msr"],
        kind: Kind::Snapshot,
    },
    InvariantInfo {
        number: 41,
        title: "grab completes",
        statement: "A secondary thread asked to join (hwthread_req 1) leaves KVM_HWTHREAD_IN_KERNEL within the grab timeout: 10 ms (10000 polls of udelay(1)).",
        window: "continuous trace (pyvcore trace), timebase ticks on the host's timebase: each event's tb (the TB register, the guest's while thread 0 has the vcore's offset in force) has the offset of thread 0's vcore taken off (vcores[].tb_offset, tb_offset_applied, watched by the plugin); not judged at an event, with the reason, where that cannot be known (thread 0 between its store to tb_offset_applied and to in_guest, a kernel without tb_offset_applied and an offset, a log without tb_offset); judged at the bound times the trace's slack",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_grab_hwthread (\"KVM: couldn't grab cpu %d\"); book3s_hv_rmhandlers.S, kvmppc_hv_entry / kvmhv_switch_to_host (vc->tb_offset added to and taken off the TB with TBU40)",
        meaning: "The thread never woke from the host's offline loop to kvm_start_guest: a lost IPI, or the idle code not checking hwthread_req (arch/powerpc/platforms/powernv/idle.c).",
        needs: &[],
        kind: Kind::Liveness,
    },
    InvariantInfo {
        number: 42,
        title: "exit IPI answered",
        statement: "Once one thread of a vcore has begun to exit, every thread that entered begins its own exit within one host timer tick (4 ms at CONFIG_HZ=250): the exit IPI, or at worst the hypervisor decrementer loaded from the host DEC, forces it out.",
        window: "continuous trace (pyvcore trace), timebase ticks on the host's timebase: each event's tb (the TB register, the guest's while thread 0 has the vcore's offset in force) has the offset of thread 0's vcore taken off (vcores[].tb_offset, tb_offset_applied, watched by the plugin); not judged at an event, with the reason, where that cannot be known (thread 0 between its store to tb_offset_applied and to in_guest, a kernel without tb_offset_applied and an offset, a log without tb_offset); judged at the bound times the trace's slack",
        source: "arch/powerpc/kvm/book3s_hv_builtin.c, kvmhv_commence_exit / kvmhv_interrupt_vcore; arch/powerpc/kvm/book3s_hv_interrupts.S, __kvmppc_vcore_entry (HDEC from DEC); book3s_hv_rmhandlers.S, kvmppc_hv_entry / kvmhv_switch_to_host (vc->tb_offset added to and taken off the TB with TBU40)",
        meaning: "An entered thread never saw the exit: a lost msgsnd, or HDEC not firing on it. Thread 0 then waits forever in kvmhv_switch_to_host.",
        needs: &[],
        kind: Kind::Liveness,
    },
    InvariantInfo {
        number: 43,
        title: "exit completes",
        statement: "A vcore leaves VCORE_EXITING within kvmppc_wait_for_nap's bound (1,000,000 polls, taken as 100 ms) plus post_guest_process.",
        window: "continuous trace (pyvcore trace), timebase ticks on the host's timebase: each event's tb (the TB register, the guest's while thread 0 has the vcore's offset in force) has the offset of thread 0's vcore taken off (vcores[].tb_offset, tb_offset_applied, watched by the plugin); not judged at an event, with the reason, where that cannot be known (thread 0 between its store to tb_offset_applied and to in_guest, a kernel without tb_offset_applied and an offset, a log without tb_offset); judged at the bound times the trace's slack",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_run_core / kvmppc_wait_for_nap (\"KVM: CPU %d seems to be stuck\"); book3s_hv_rmhandlers.S, kvmppc_hv_entry / kvmhv_switch_to_host (vc->tb_offset added to and taken off the TB with TBU40)",
        meaning: "A secondary never cleared its kvm_vcore after the guest exit (stuck in the real-mode exit path), so the runner cannot release the core.",
        needs: &[],
        kind: Kind::Liveness,
    },
    InvariantInfo {
        number: 44,
        title: "vcore run ends",
        statement: "One run of a vcore (kvmppc_run_core's pass, from its reset of the entry/exit word until the vcore leaves its run states) lasts at most the kernel's own bounds summed: the grab (10 ms), one host tick for thread 0 to leave the guest and one for the others (4 ms each at CONFIG_HZ=250), and kvmppc_wait_for_nap (100 ms), times the emulation slack (100): 11.8 s of the host's timebase.",
        window: "between two stops of one vcore run (same vcores[].seq) that carry the timebase (tb, tb_freq) and the vcore's timebase offset (vcores[].tb_offset, tb_offset_applied): each stop's tb is put on the host's timebase (a stop inside the guest reads the guest's); not judged, with the reason, where that cannot be known (thread 0 between its store to tb_offset_applied and to in_guest, a kernel without tb_offset_applied and an offset, a trace without tb_offset); `pyvcore diff` adds a stop when its watch deadline interrupts the target",
        source: "arch/powerpc/kvm/book3s_hv.c, kvmppc_run_core / kvmppc_grab_hwthread / kvmppc_wait_for_nap / init_vcore_to_run (tb_offset_applied = 0); book3s_hv_interrupts.S __kvmppc_vcore_entry (HDEC from the host DEC); book3s_hv_builtin.c kvmhv_commence_exit; book3s_hv_rmhandlers.S kvmppc_hv_entry / kvmhv_switch_to_host (vc->tb_offset added to and taken off the TB with TBU40; 93b0f4dc29c5)",
        meaning: "The core is hung inside a run: a thread that never leaves the guest or real mode, thread 0 waiting for an exit that never comes, or a secondary that never clears its kvm_vcore. The stop's pc and the threads' in_guest / napping say where.",
        needs: &["vcores", "tb"],
        kind: Kind::Liveness,
    },
    InvariantInfo {
        number: 45,
        title: "first exiter sends the exit IPI",
        statement: "The first thread to set its bit in the exit byte of vc->entry_exit_map (the value its cmpxchg replaced had no exit bit), with a trap other than the hypervisor decrementer (0x980), sends a msgsnd to every other thread whose entry bit it saw (thread (vc->pcpu + i) of the core for entry bit i) before its next store to a watched field (on return, guest_bypass stores vcpu->cpu = -1).",
        window: "continuous trace (pyvcore trace): judged at the exiting thread's next watched store, from its own events only (kvmhv_commence_exit's trap argument, exit-bit store, msgsnds: one thread's callbacks, in its program order); both a thread leaving a vcpu (guest_bypass) and thread 0 without a vcpu (kvm_novcpu_exit, trap in r12 only) are judged; a log without the trap argument falls back to the vcpu's stored trap and leaves novcpu exits unjudged",
        source: "arch/powerpc/kvm/book3s_hv_builtin.c, kvmhv_commence_exit / kvmhv_interrupt_vcore / kvmhv_rm_send_ipi (msgsnd to cpu_thread_in_core on POWER8); arch/powerpc/kvm/book3s_hv_rmhandlers.S, guest_exit_cont (stw r12, VCPU_TRAP), guest_bypass, kvm_novcpu_wakeup / kvm_novcpu_exit (r12 from kvmppc_check_wake_reason, or the HDEC trap)",
        meaning: "The exit IPI was not sent: the other threads stay in the guest until their own HDEC (up to a host tick) while thread 0 waits in kvmhv_switch_to_host. Look at the trap test in kvmhv_commence_exit and at kvmhv_interrupt_vcore's mask (ee & ~(1 << ptid)).",
        needs: &[],
        kind: Kind::History,
    },
];

/// The row of invariant `n`.
pub fn info(n: u32) -> Option<&'static InvariantInfo> {
    INVARIANTS.iter().find(|i| i.number == n)
}
