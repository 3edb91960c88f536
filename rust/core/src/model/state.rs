//! The modelled state of one physical core running one vcore: per hardware
//! thread the PACA `kvm_hstate` fields and where the thread is in the kernel
//! code (its [`Phase`]), the vcore, its vcpus, and the core's partition (MMU)
//! registers.
//!
//! Everything is fixed-size and `Copy` so that the explorer can hash and
//! store millions of states cheaply; pointers are kept as small indices and
//! turned into addresses only in the snapshot view.  Fields the kernel does
//! not clear keep their last written value (stale `kvm_vcore`/`ptid` after a
//! seed release, thread 0's `hwthread_state`, napping bits left on exit
//! paths), exactly as the kernel leaves them.

use crate::consts::{
    KVMPPC_VCPU_NOTREADY, KVM_GUEST_MODE_NONE, KVM_HWTHREAD_IN_IDLE, KVM_HWTHREAD_IN_KERNEL, MAX_SMT_THREADS,
};

/// Where a hardware thread is, keyed to the kernel labels of book3s_hv_rmhandlers.S and book3s_hv.c.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Thread 0: host kernel code (the runner's kvmppc_run_core, or no run).
    /// Secondary: napping offline (power7_offline / power7_nap), or, on the
    /// seed, napping in `kvm_no_guest` after a run.
    Host,
    /// In `kvmppc_hv_entry`, counted in the entry word.  Thread 0 has still to
    /// switch the MMU; a secondary spins until `vc->in_guest != 0`.
    Entered,
    /// Thread 0 after the partition switch (`vc->in_guest = 1`), before
    /// `kvmppc_got_guest` or `kvmppc_primary_no_guest`.
    SwitchedIn,
    /// Running the guest (`fast_guest_return` done, KVM_GUEST_MODE_GUEST_HV).
    InGuest,
    /// Napping in `kvmppc_h_cede` (NAPPING_CEDE).
    CedeNap,
    /// Thread 0 without a vcpu napping in `kvmppc_primary_no_guest` (NAPPING_NOVCPU).
    NovcpuNap,
    /// Counted in the exit word (`hdec_soon` / `kvmhv_commence_exit`); a
    /// secondary waits for `vc->in_guest == 0`, thread 0 for exits == entries.
    Exiting,
    /// `secondary_too_late`: never counted, waits for `vc->in_guest == 0`.
    TooLate,
    /// Thread 0 back in `kvmppc_run_core` after `__kvmppc_vcore_entry`.
    Returned,
    /// Modern secondary after a run: spinning in `kvm_no_guest` while
    /// `hwthread_req != 0` (the modern kernel does not nap there).
    Spinning,
    /// Only with the `nap-counted-before-clear` fault: a seed secondary in
    /// `kvm_no_guest` that has counted itself in `nap_count` but not yet
    /// cleared its PACA's `kvm_vcpu`.
    NapCounted,
}

impl Phase {
    /// The kernel label a thread in this phase is at (for tables and docs).
    pub fn label(self, thread: usize) -> &'static str {
        match (self, thread) {
            (Phase::Host, 0) => "host",
            (Phase::Host, _) => "offline_nap",
            (Phase::Entered, 0) => "kvmppc_hv_entry",
            (Phase::Entered, _) => "kvmppc_hv_entry_wait_in_guest",
            (Phase::SwitchedIn, _) => "kvmppc_hv_entry_switched",
            (Phase::InGuest, _) => "fast_guest_return",
            (Phase::CedeNap, _) => "kvmppc_h_cede_nap",
            (Phase::NovcpuNap, _) => "kvmppc_primary_no_guest",
            (Phase::Exiting, 0) => "secondary_too_late_primary_wait",
            (Phase::Exiting, _) => "secondary_too_late_wait",
            (Phase::TooLate, _) => "secondary_too_late",
            (Phase::Returned, _) => "kvmppc_run_core_after_entry",
            (Phase::Spinning, _) => "kvm_no_guest",
            (Phase::NapCounted, _) => "kvm_no_guest_nap_counted",
        }
    }
}

/// `paca->kvm_hstate`, pointers as indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HstateModel {
    /// Index (vcpu_id - first_vcpuid) of the vcpu in `kvm_vcpu`, None = NULL.
    pub kvm_vcpu: Option<u8>,
    /// `kvm_vcore` points at the (only) vcore.
    pub kvm_vcore: bool,
    pub ptid: u8,
    pub hwthread_req: u8,
    pub hwthread_state: u8,
    pub napping: u8,
    pub in_guest: u8,
}

/// One hardware thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ThreadModel {
    pub phase: Phase,
    pub hstate: HstateModel,
    /// An IPI (XICS MFRR / msgsnd) is pending for this thread.
    pub ipi: bool,
    /// The vcpu this thread runs (r4 in `kvmppc_hv_entry`), loaded when it
    /// entered; may differ from `hstate.kvm_vcpu` for thread 0, which loads
    /// r4 once and learns of a latecomer only when woken from its nap.
    pub running: Option<u8>,
    /// The vcpu on this thread was started as a latecomer this run.
    pub late: bool,
}

impl ThreadModel {
    pub fn initial(thread: usize) -> Self {
        ThreadModel {
            phase: Phase::Host,
            hstate: HstateModel {
                kvm_vcpu: None,
                kvm_vcore: false,
                ptid: 0,
                hwthread_req: 0,
                // Thread 0 is an online CPU; the secondaries are offline, napping.
                hwthread_state: if thread == 0 {
                    KVM_HWTHREAD_IN_KERNEL
                } else {
                    KVM_HWTHREAD_IN_IDLE
                },
                napping: 0,
                in_guest: KVM_GUEST_MODE_NONE,
            },
            ipi: false,
            running: None,
            late: false,
        }
    }
}

/// struct kvm_vcpu (the kvm_vcpu_arch fields the vcore logic uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VcpuModel {
    /// arch.ptid: fixed at creation (seed, modern), assigned per run (prepatch).
    pub ptid: u8,
    /// arch.state: KVMPPC_VCPU_*.
    pub state: u8,
    pub ceded: u8,
    pub prodded: u8,
    /// vcpu->cpu: vc->pcpu while started, -1 otherwise.
    pub cpu: i32,
    /// arch.thread_cpu (modern): the thread running it, -1 otherwise.
    pub thread_cpu: i32,
    /// arch.trap: the exit vector of this run, 0 = nothing to handle.
    pub trap: u32,
    /// kvmppc_start_thread ran for it in the current run.
    pub started: bool,
    /// How many times it ceded (the explorer bounds this).
    pub cedes: u8,
    /// How many times it was prodded (the explorer bounds this).
    pub prods: u8,
}

impl VcpuModel {
    pub fn created(ptid: u8) -> Self {
        VcpuModel {
            ptid,
            state: KVMPPC_VCPU_NOTREADY,
            ceded: 0,
            prodded: 0,
            cpu: -1,
            thread_cpu: -1,
            trap: 0,
            started: false,
            cedes: 0,
            prods: 0,
        }
    }
}

/// struct kvmppc_vcore.  The entry/exit word is kept as the two sets of
/// threads; the kernel's encoding (seed counts, modern bitmaps) is produced
/// by [`VcoreModel::entry_exit_word`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VcoreModel {
    pub first_vcpuid: u32,
    pub pcpu: u32,
    pub num_threads: u32,
    pub vcore_state: u8,
    pub in_guest: u8,
    /// Index of the runner vcpu, None = NULL.
    pub runner: Option<u8>,
    /// Threads (by ptid) counted as entered / as exiting this run.
    pub entered: u8,
    pub exited: u8,
    /// VCORE_EXIT_REQ (modern; only another subcore sets it: never, unsplit).
    pub exit_req: bool,
    pub napping_threads: u8,
    /// Seed/prepatch only.
    pub n_woken: u8,
    pub nap_count: u8,
    /// Modern: tb_offset_applied; seed: whether the TB offset is on.
    pub tb_offset_applied: bool,
    /// The runnable list (seed/prepatch: list order; modern: by ptid).
    pub runq: [u8; MAX_SMT_THREADS],
    pub runq_len: u8,
    /// The runner holds vc->lock inside kvmppc_run_core (between the reset
    /// and vcore_state = RUNNING): no other vcpu task can get in.
    pub lock_held: bool,
    /// kvmppc_release_hwthread has run for this run's threads.
    pub released: bool,
    /// vc->dpdes: the core's DPDES saved by thread 0 at the last switch back
    /// to the host, loaded again at the next switch-in.
    pub dpdes: u8,
}

impl VcoreModel {
    pub fn new() -> Self {
        VcoreModel {
            first_vcpuid: 0,
            pcpu: 0,
            num_threads: 0,
            vcore_state: 0,
            in_guest: 0,
            runner: None,
            entered: 0,
            exited: 0,
            exit_req: false,
            napping_threads: 0,
            n_woken: 0,
            nap_count: 0,
            tb_offset_applied: false,
            runq: [0; MAX_SMT_THREADS],
            runq_len: 0,
            lock_held: false,
            released: false,
            dpdes: 0,
        }
    }

    pub fn runnable(&self) -> &[u8] {
        &self.runq[..self.runq_len as usize]
    }

    pub fn is_runnable(&self, idx: u8) -> bool {
        self.runnable().contains(&idx)
    }

    pub fn push_runnable(&mut self, idx: u8) {
        self.runq[self.runq_len as usize] = idx;
        self.runq_len += 1;
    }

    pub fn remove_runnable(&mut self, idx: u8) {
        let len = self.runq_len as usize;
        if let Some(pos) = self.runq[..len].iter().position(|&v| v == idx) {
            self.runq.copy_within(pos + 1..len, pos);
            self.runq[len - 1] = 0;
            self.runq_len -= 1;
        }
    }

    /// Seed/prepatch VCORE_ENTRY_COUNT / modern VCORE_ENTRY_MAP.
    pub fn entry_count(&self) -> u32 {
        self.entered.count_ones()
    }

    /// True once any thread started exiting ("entry_exit >= 0x100").
    pub fn exiting(&self) -> bool {
        self.exited != 0 || self.exit_req
    }

    /// The kernel word: seed `entry_exit_count` (counts) or modern
    /// `entry_exit_map` (bitmaps + VCORE_EXIT_REQ).
    pub fn entry_exit_word(&self, bitmaps: bool) -> u32 {
        if bitmaps {
            self.entered as u32
                | (self.exited as u32) << 8
                | if self.exit_req {
                    crate::consts::VCORE_EXIT_REQ
                } else {
                    0
                }
        } else {
            self.entered.count_ones() | self.exited.count_ones() << 8
        }
    }
}

impl Default for VcoreModel {
    fn default() -> Self {
        Self::new()
    }
}

/// Whose partition the core's LPIDR/SDR1 hold (per core on POWER8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mmu {
    Host,
    Guest,
}

/// The whole modelled state (what the explorer hashes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub threads: [ThreadModel; MAX_SMT_THREADS],
    /// Indexed by vcpu_id - first_vcpuid; None = not created.
    pub vcpus: [Option<VcpuModel>; MAX_SMT_THREADS],
    /// None until the first vcpu is created.
    pub vcore: Option<VcoreModel>,
    pub mmu: Mmu,
    /// History for the single-MMU-switch invariant (7): switches this run.
    pub switch_in: u8,
    pub switch_out: u8,
    /// The run has finished (kvmppc_run_core's `out:`) at least once.
    pub runs_done: u8,
    /// The core's DPDES register: bit N = a doorbell pending for thread N
    /// (one register per POWER8 core; 0 in the host).
    pub dpdes: u8,
    /// History for the doorbell invariant (29): bit N = a doorbell was sent
    /// to virtual thread N and has not been taken yet.
    pub db_sent: u8,
    /// Doorbells sent this run (the explorer bounds this).
    pub doorbells: u8,
}

impl State {
    pub fn initial() -> Self {
        let mut threads = [ThreadModel::initial(1); MAX_SMT_THREADS];
        threads[0] = ThreadModel::initial(0);
        State {
            threads,
            vcpus: [None; MAX_SMT_THREADS],
            vcore: None,
            mmu: Mmu::Host,
            switch_in: 0,
            switch_out: 0,
            runs_done: 0,
            dpdes: 0,
            db_sent: 0,
            doorbells: 0,
        }
    }
}
