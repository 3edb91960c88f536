//! The transition function: one [`Event`] applied to a [`State`], checked for
//! legality first (an illegal event leaves the state untouched and returns a
//! [`ModelError`] saying why).  Variant differences are handled where the
//! kernels differ, each with the function/label it comes from:
//!
//! * seed (e0b7ec058c0e): book3s_hv.c kvmppc_run_core/kvmppc_start_thread,
//!   book3s_hv_rmhandlers.S kvmppc_hv_entry, kvmppc_primary_no_guest,
//!   kvm_novcpu_wakeup, hdec_soon, secondary_too_late, kvmppc_h_cede.
//! * modern (6.x P8 path): entry_exit_map bitmaps, kvmhv_commence_exit IPIs
//!   every entered thread, vcpu->cpu/thread_cpu = -1 per thread at exit,
//!   kvm_vcore as the go signal and cleared by the secondary at the end,
//!   secondaries spin in kvm_no_guest, no STARTING state, no n_woken/nap_count.
//! * prepatch (before e0b7ec058c0e): ptids handed out per run in list order
//!   (non-ceded first), late joiners get ptid n_runnable - 1, thread 0 always
//!   runs the first non-ceded vcpu.

use std::fmt;

use crate::consts::*;
use crate::model::events::Event;
use crate::model::state::{Mmu, Phase, State, VcoreModel, VcpuModel};

/// vcpu ids the model accepts (far above any KVM_MAX_VCPU_IDS on POWER).
pub const MAX_VCPU_ID: u32 = 1 << 24;

/// Why an event cannot happen in the current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelError {
    pub event: String,
    pub reason: String,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "illegal event {}: {}", self.event, self.reason)
    }
}

impl std::error::Error for ModelError {}

/// The fixed parameters of a model: variant, threads per core, host cpu of thread 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub variant: Variant,
    pub threads: u8,
    pub cpu_base: u32,
    /// A deliberately broken kernel rule (None = the kernel as it is), to
    /// show that the invariants and the explorer catch such a bug.
    pub fault: Option<Fault>,
}

/// Deliberate bugs the model can be run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// kvmppc_h_cede naps even when every entered thread would then nap.
    NoCedeExit,
    /// Thread 0 switches the MMU back without waiting for exits == entries.
    EarlySwitchOut,
    /// The first exiter does not IPI the napping threads (seed) / the
    /// entered threads (modern).
    NoExitIpi,
}

impl Fault {
    pub const ALL: [Fault; 3] = [Fault::NoCedeExit, Fault::EarlySwitchOut, Fault::NoExitIpi];

    pub fn name(self) -> &'static str {
        match self {
            Fault::NoCedeExit => "no-cede-exit",
            Fault::EarlySwitchOut => "early-switch-out",
            Fault::NoExitIpi => "no-exit-ipi",
        }
    }

    pub fn parse(name: &str) -> Result<Fault, String> {
        Fault::ALL.into_iter().find(|f| f.name() == name).ok_or_else(|| {
            format!(
                "unknown fault {name:?} (expected one of: {})",
                Fault::ALL.map(Fault::name).join(", ")
            )
        })
    }
}

/// What an event did that is not in the state (for the Python API and for
/// the history invariants).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Doorbell: the vcpu index it reached (None = no vcpu on that thread).
    pub doorbell_delivered: Option<u8>,
    /// Cede: whether it napped (false = returned at once or exited).
    pub ceded_to_nap: bool,
}

impl Config {
    fn modern(&self) -> bool {
        self.variant == Variant::Modern
    }

    fn prepatch(&self) -> bool {
        self.variant == Variant::Prepatch
    }

    fn states(&self) -> &'static VcoreStates {
        self.variant.vcore_states()
    }

    /// Apply `event` to `s`.  On error `s` is unchanged.
    pub fn apply(&self, s: &mut State, event: Event) -> Result<Effects, ModelError> {
        let mut next = *s;
        let effects = self.transition(&mut next, event).map_err(|reason| ModelError {
            event: event.to_string(),
            reason,
        })?;
        *s = next;
        Ok(effects)
    }

    fn thread_index(&self, thread: u8) -> Result<usize, String> {
        if thread >= self.threads {
            return Err(format!(
                "thread {thread} does not exist (the core has threads 0..{})",
                self.threads - 1
            ));
        }
        Ok(thread as usize)
    }

    fn vcpu_index(&self, s: &State, vcpu: u32) -> Result<u8, String> {
        if s.vcore.is_none() {
            return Err(format!("vcpu {vcpu} does not exist (no vcpu created yet)"));
        }
        let first = vc_first(s);
        if vcpu < first || vcpu >= first + self.threads as u32 {
            return Err(format!(
                "vcpu {vcpu} is not in this vcore (ids {first}..{})",
                first + self.threads as u32 - 1
            ));
        }
        let idx = (vcpu - first) as u8;
        if s.vcpus[idx as usize].is_none() {
            return Err(format!("vcpu {vcpu} has not been created"));
        }
        Ok(idx)
    }

    fn transition(&self, s: &mut State, event: Event) -> Result<Effects, String> {
        let st = self.states();
        let mut fx = Effects::default();
        match event {
            Event::CreateVcpu { vcpu } => {
                let n = self.threads as u32;
                if vcpu >= MAX_VCPU_ID {
                    return Err(format!(
                        "vcpu id {vcpu} is out of range (the model takes ids below {MAX_VCPU_ID})"
                    ));
                }
                let first = match s.vcore {
                    Some(_) => vc_first(s),
                    None => (vcpu / n) * n,
                };
                if vcpu < first || vcpu >= first + n {
                    return Err(format!(
                        "vcpu {vcpu} belongs to vcore {} but the model holds one vcore (ids {first}..{})",
                        vcpu / n,
                        first + n - 1
                    ));
                }
                let idx = (vcpu - first) as usize;
                if s.vcpus[idx].is_some() {
                    return Err(format!("vcpu {vcpu} already exists"));
                }
                let vc = s.vcore.get_or_insert_with(VcoreModel::new);
                set_first(vc, first);
                vc.num_threads += 1;
                // Seed/modern: ptid = vcpu_id - first_vcpuid, fixed.  Before the
                // change ptid was only assigned when a run started.
                let ptid = if self.prepatch() { 0 } else { idx as u8 };
                s.vcpus[idx] = Some(VcpuModel::created(ptid));
            }

            Event::Runnable { vcpu } => {
                let idx = self.vcpu_index(s, vcpu)?;
                let v = s.vcpus[idx as usize].unwrap();
                if v.state == KVMPPC_VCPU_RUNNABLE {
                    return Err(format!("vcpu {vcpu} is already runnable"));
                }
                let vc = s.vcore.as_mut().unwrap();
                if vc.lock_held {
                    return Err(
                        "the runner holds vc->lock inside kvmppc_run_core (until vcore_entry)".into(),
                    );
                }
                let v = s.vcpus[idx as usize].as_mut().unwrap();
                v.ceded = 0;
                v.trap = 0;
                v.state = KVMPPC_VCPU_RUNNABLE;
                v.started = false;
                vc.push_runnable(idx);
                if !self.prepatch() {
                    // The list order only orders kvmppc_start_thread calls, which
                    // the model lets happen in any order: keep it canonical.
                    let len = vc.runq_len as usize;
                    vc.runq[..len].sort_unstable();
                }
                // Late join: the vcore is in the guest and nobody has started exiting.
                if vc.vcore_state == st.running && !vc.exiting() {
                    if self.prepatch() {
                        let ptid = vc.runq_len - 1;
                        s.vcpus[idx as usize].as_mut().unwrap().ptid = ptid;
                    }
                    self.start_thread(s, idx, true);
                }
            }

            Event::Block { vcpu } => {
                let idx = self.vcpu_index(s, vcpu)?;
                let vc = s.vcore.as_mut().unwrap();
                if s.vcpus[idx as usize].unwrap().state != KVMPPC_VCPU_RUNNABLE {
                    return Err(format!("vcpu {vcpu} is not runnable"));
                }
                if vc.vcore_state != st.inactive || vc.lock_held {
                    return Err(format!(
                        "the vcore is running ({}): a runnable vcpu leaves the list only when it is inactive",
                        st.name(vc.vcore_state).unwrap_or("?")
                    ));
                }
                vc.remove_runnable(idx);
                s.vcpus[idx as usize].as_mut().unwrap().state = KVMPPC_VCPU_BUSY_IN_HOST;
            }

            Event::RunCore { runner } => {
                let idx = self.vcpu_index(s, runner)?;
                let vc = s.vcore.as_ref().unwrap();
                if vc.vcore_state != st.inactive || vc.lock_held || vc.runner.is_some() {
                    return Err(format!(
                        "the vcore is not inactive ({}, runner {:?})",
                        st.name(vc.vcore_state).unwrap_or("?"),
                        vc.runner.map(|r| r as u32 + vc_first(s))
                    ));
                }
                if !vc.is_runnable(idx) {
                    return Err(format!(
                        "vcpu {runner} is not runnable, so its task cannot run the core"
                    ));
                }
                if vc
                    .runnable()
                    .iter()
                    .all(|&i| s.vcpus[i as usize].unwrap().ceded != 0)
                {
                    return Err("every runnable vcpu has ceded: the kernel calls kvmppc_vcore_blocked (vcore_blocked)".into());
                }
                if s.threads[0].phase != Phase::Host {
                    return Err("thread 0 is not in the host".into());
                }
                for t in 1..self.threads as usize {
                    let ok = match s.threads[t].phase {
                        Phase::Host => true,
                        // Modern: a secondary still spinning in kvm_no_guest is
                        // offline and not IN_KERNEL: grab succeeds at once.
                        Phase::Spinning => true,
                        _ => false,
                    };
                    if !ok {
                        return Err(format!(
                            "thread {t} is still in KVM ({:?}): it cannot be grabbed",
                            s.threads[t].phase
                        ));
                    }
                }
                let vc = s.vcore.as_mut().unwrap();
                vc.runner = Some(idx);
                // Per-run reset (seed kvmppc_run_core / modern init_vcore_to_run).
                vc.entered = 0;
                vc.exited = 0;
                vc.exit_req = false;
                vc.in_guest = 0;
                vc.napping_threads = 0;
                vc.tb_offset_applied = false;
                if !self.modern() {
                    vc.n_woken = 0;
                    vc.nap_count = 0;
                    vc.vcore_state = st.starting.expect("seed numbering has VCORE_STARTING");
                }
                vc.lock_held = true;
                vc.released = false;
                vc.pcpu = self.cpu_base;
                s.switch_in = 0;
                s.switch_out = 0;
                if self.prepatch() {
                    // Physical thread ids, first to non-ceded vcpus, then to ceded ones.
                    let runq: Vec<u8> = vc.runnable().to_vec();
                    let mut ptid = 0u8;
                    for pass_ceded in [false, true] {
                        for &i in &runq {
                            let v = s.vcpus[i as usize].as_mut().unwrap();
                            if (v.ceded != 0) == pass_ceded {
                                v.ptid = ptid;
                                ptid += 1;
                            }
                        }
                    }
                }
                for v in s.vcpus.iter_mut().flatten() {
                    v.started = false;
                }
                // on_primary_thread -> kvmppc_grab_hwthread for threads 1..N-1.
                for t in 1..self.threads as usize {
                    let h = &mut s.threads[t].hstate;
                    h.kvm_vcpu = None;
                    if self.modern() {
                        h.kvm_vcore = false;
                        h.napping = 0;
                    }
                    h.hwthread_req = 1;
                }
                if self.modern() {
                    s.threads[0].hstate.napping = 0;
                }
            }

            Event::VcoreBlocked { runner } => {
                let idx = self.vcpu_index(s, runner)?;
                let vc = s.vcore.as_ref().unwrap();
                if vc.vcore_state != st.inactive || vc.lock_held || vc.runner.is_some() {
                    return Err("the vcore is not inactive".into());
                }
                if !vc.is_runnable(idx) {
                    return Err(format!(
                        "vcpu {runner} is not runnable, so its task cannot be the runner"
                    ));
                }
                if let Some(&i) = vc
                    .runnable()
                    .iter()
                    .find(|&&i| s.vcpus[i as usize].unwrap().ceded == 0)
                {
                    return Err(format!(
                        "vcpu {} has not ceded: the runner runs the core instead",
                        i as u32 + vc_first(s)
                    ));
                }
                let vc = s.vcore.as_mut().unwrap();
                vc.runner = Some(idx);
                // Modern may poll first (VCORE_POLLING, halt_poll_ns): not modelled.
                vc.vcore_state = st.sleeping;
            }

            Event::VcoreWake { vcpu } => {
                let idx = self.vcpu_index(s, vcpu)?;
                let vc = s.vcore.as_ref().unwrap();
                if vc.vcore_state != st.sleeping {
                    return Err("the vcore is not sleeping".into());
                }
                if !vc.is_runnable(idx) {
                    return Err(format!("vcpu {vcpu} is not runnable"));
                }
                s.vcpus[idx as usize].as_mut().unwrap().ceded = 0;
                let vc = s.vcore.as_mut().unwrap();
                vc.vcore_state = st.inactive;
                vc.runner = None;
            }

            Event::StartThread { vcpu } => {
                let idx = self.vcpu_index(s, vcpu)?;
                let vc = s.vcore.as_ref().unwrap();
                if !vc.lock_held {
                    return Err("not inside kvmppc_run_core's start-up (run_core first; late joiners start in runnable)".into());
                }
                if !vc.is_runnable(idx) {
                    return Err(format!("vcpu {vcpu} is not runnable"));
                }
                if s.vcpus[idx as usize].unwrap().started {
                    return Err(format!("vcpu {vcpu} was already started this run"));
                }
                self.start_thread(s, idx, false);
            }

            Event::VcoreEntry => {
                let vc = s.vcore.as_ref().ok_or("no vcore")?;
                if !vc.lock_held {
                    return Err("not inside kvmppc_run_core's start-up (run_core first)".into());
                }
                if let Some(&i) = vc
                    .runnable()
                    .iter()
                    .find(|&&i| !s.vcpus[i as usize].unwrap().started)
                {
                    return Err(format!(
                        "runnable vcpu {} has not been started yet",
                        i as u32 + vc_first(s)
                    ));
                }
                let has_ptid0 = vc
                    .runnable()
                    .iter()
                    .any(|&i| s.vcpus[i as usize].unwrap().ptid == 0);
                match self.variant {
                    // "Set this explicitly in case thread 0 doesn't have a vcpu".
                    Variant::Seed => {
                        s.threads[0].hstate.kvm_vcore = true;
                        s.threads[0].hstate.ptid = 0;
                    }
                    // kvmppc_start_thread(NULL, vc) when no vcpu has ptid 0.
                    Variant::Modern => {
                        if !has_ptid0 {
                            let h = &mut s.threads[0].hstate;
                            h.kvm_vcpu = None;
                            h.ptid = 0;
                            h.kvm_vcore = true;
                        }
                    }
                    Variant::Prepatch => {
                        if !has_ptid0 {
                            return Err("no vcpu got ptid 0 (\"nothing to run; should never happen\")".into());
                        }
                    }
                }
                let vc = s.vcore.as_mut().unwrap();
                vc.vcore_state = st.running;
                vc.lock_held = false;
            }

            Event::Enter { thread } => {
                let t = self.thread_index(thread)?;
                let vc = *s.vcore.as_ref().ok_or("no vcore")?;
                let th = s.threads[t];
                if t == 0 {
                    if th.phase != Phase::Host || vc.vcore_state != st.running || vc.lock_held {
                        return Err(format!(
                            "thread 0 enters only from __kvmppc_vcore_entry after vcore_entry (phase {:?}, {})",
                            th.phase,
                            st.name(vc.vcore_state).unwrap_or("?")
                        ));
                    }
                } else {
                    let woken = match th.phase {
                        Phase::Host => th.hstate.hwthread_req == 1 && th.ipi,
                        Phase::Spinning => th.hstate.hwthread_req == 1,
                        _ => false,
                    };
                    if !woken {
                        return Err(format!(
                            "thread {t} is not a grabbed thread with a wakeup pending (phase {:?}, hwthread_req {}, ipi {})",
                            th.phase, th.hstate.hwthread_req, th.ipi
                        ));
                    }
                    let go = if self.modern() {
                        th.hstate.kvm_vcore
                    } else {
                        th.hstate.kvm_vcpu.is_some()
                    };
                    if !go || th.hstate.kvm_vcpu.is_none() {
                        return Err(format!(
                            "thread {t} has no vcpu to run (it would go back to kvm_no_guest)"
                        ));
                    }
                }
                let exiting = vc.exiting();
                let thm = &mut s.threads[t];
                thm.ipi = false;
                thm.running = thm.hstate.kvm_vcpu;
                thm.hstate.in_guest = KVM_GUEST_MODE_HOST_HV;
                if t != 0 {
                    thm.hstate.hwthread_state = KVM_HWTHREAD_IN_KVM;
                }
                let vc = s.vcore.as_mut().unwrap();
                if exiting {
                    thm.phase = Phase::TooLate;
                } else {
                    vc.entered |= 1 << t;
                    thm.phase = Phase::Entered;
                }
            }

            Event::SwitchIn => {
                if s.threads[0].phase != Phase::Entered {
                    return Err(format!(
                        "only thread 0, entered and counted, switches the MMU (thread 0 is {:?})",
                        s.threads[0].phase
                    ));
                }
                let vc = s.vcore.as_mut().unwrap();
                s.mmu = Mmu::Guest;
                vc.tb_offset_applied = true;
                vc.in_guest = 1;
                s.switch_in = s.switch_in.saturating_add(1);
                s.threads[0].phase = Phase::SwitchedIn;
            }

            Event::GuestEntry { thread } => {
                let t = self.thread_index(thread)?;
                let vc = *s.vcore.as_ref().ok_or("no vcore")?;
                let th = s.threads[t];
                if t == 0 {
                    if th.phase != Phase::SwitchedIn {
                        return Err(format!(
                            "thread 0 must have switched the MMU first (it is {:?})",
                            th.phase
                        ));
                    }
                } else if th.phase != Phase::Entered {
                    return Err(format!(
                        "thread {t} has not entered kvmppc_hv_entry (it is {:?})",
                        th.phase
                    ));
                } else if vc.in_guest == 0 {
                    return Err(format!(
                        "thread {t} waits for vc->in_guest (thread 0 has not switched the MMU)"
                    ));
                }
                match th.running {
                    Some(v) => self.to_guest(s, t, v),
                    None => {
                        // kvmppc_primary_no_guest: thread 0 without a vcpu.
                        let vc = s.vcore.as_mut().unwrap();
                        vc.napping_threads |= 1 << t;
                        if vc.exiting() {
                            self.commence_exit(s, t, 0);
                        } else {
                            let h = &mut s.threads[t].hstate;
                            h.napping = NAPPING_NOVCPU;
                            h.hwthread_req = 1;
                            s.threads[t].phase = Phase::NovcpuNap;
                        }
                    }
                }
            }

            Event::Cede { thread } => {
                let t = self.thread_index(thread)?;
                let th = s.threads[t];
                let v = match (th.phase, th.running) {
                    (Phase::InGuest, Some(v)) => v,
                    _ => {
                        return Err(format!(
                            "thread {t} is not running a guest vcpu (it is {:?})",
                            th.phase
                        ))
                    }
                };
                s.threads[t].hstate.in_guest = KVM_GUEST_MODE_HOST_HV;
                let vm = s.vcpus[v as usize].as_mut().unwrap();
                vm.ceded = 1;
                vm.cedes = vm.cedes.saturating_add(1);
                if vm.prodded != 0 {
                    // kvm_cede_prodded: return H_SUCCESS at once.
                    vm.prodded = 0;
                    vm.ceded = 0;
                    s.threads[t].hstate.in_guest = KVM_GUEST_MODE_GUEST_HV;
                    return Ok(fx);
                }
                let vc = s.vcore.as_mut().unwrap();
                let me = 1u8 << t;
                let all_napping = self.fault != Some(Fault::NoCedeExit)
                    && if self.modern() {
                        (vc.napping_threads | me) == vc.entered
                    } else {
                        (vc.napping_threads | me).count_ones() >= vc.entry_count()
                    };
                if all_napping {
                    // kvm_cede_exit: every entered thread would nap; go to the host.
                    vm_trap(s, v, BOOK3S_INTERRUPT_SYSCALL);
                    self.commence_exit(s, t, BOOK3S_INTERRUPT_SYSCALL);
                    return Ok(fx);
                }
                vc.napping_threads |= me;
                s.threads[t].hstate.napping = NAPPING_CEDE;
                if vc.exiting() {
                    // Someone is exiting already: skip the nap.
                    vc.napping_threads &= !me;
                    s.threads[t].hstate.napping = 0;
                    vm_trap(s, v, BOOK3S_INTERRUPT_SYSCALL);
                    self.commence_exit(s, t, BOOK3S_INTERRUPT_SYSCALL);
                    return Ok(fx);
                }
                s.threads[t].hstate.hwthread_req = 1;
                s.threads[t].phase = Phase::CedeNap;
                fx.ceded_to_nap = true;
            }

            Event::Prod { vcpu } => {
                let idx = self.vcpu_index(s, vcpu)?;
                let vm = s.vcpus[idx as usize].as_mut().unwrap();
                vm.prodded = 1;
                vm.prods = vm.prods.saturating_add(1);
                // kvmppc_fast_vcpu_kick_hv: IPI the thread if it is napping in a cede.
                for th in s.threads.iter_mut().take(self.threads as usize) {
                    if th.phase == Phase::CedeNap && th.running == Some(idx) {
                        th.ipi = true;
                    }
                }
            }

            Event::Wake { thread } => {
                let t = self.thread_index(thread)?;
                let th = s.threads[t];
                match th.phase {
                    Phase::CedeNap => {
                        let v = th.running.expect("a ceding thread runs a vcpu");
                        let thm = &mut s.threads[t];
                        thm.ipi = false;
                        thm.hstate.hwthread_state = KVM_HWTHREAD_IN_KVM;
                        thm.hstate.napping = 0;
                        // kvm_end_cede.
                        let vc = s.vcore.as_mut().unwrap();
                        vc.napping_threads &= !(1 << t);
                        if vc.exiting() {
                            vm_trap(s, v, BOOK3S_INTERRUPT_SYSCALL);
                            self.commence_exit(s, t, BOOK3S_INTERRUPT_SYSCALL);
                        } else {
                            self.to_guest(s, t, v);
                        }
                    }
                    Phase::NovcpuNap => {
                        let ipi = th.ipi;
                        if !ipi && !self.modern() {
                            return Err(format!(
                                "thread {t} naps with only external interrupts enabled (PECE0) and has no IPI pending"
                            ));
                        }
                        let thm = &mut s.threads[t];
                        thm.ipi = false;
                        thm.hstate.hwthread_state = KVM_HWTHREAD_IN_KVM;
                        thm.hstate.napping = 0;
                        if !self.modern() {
                            // kvm_novcpu_wakeup (seed) clears hwthread_req; the modern
                            // kernel clears it in kvmppc_call_hv_entry on the way out.
                            thm.hstate.hwthread_req = 0;
                        }
                        let vc = s.vcore.as_mut().unwrap();
                        if vc.exiting() {
                            // Exit at once; the napping bit stays set (stale).
                            self.commence_exit(s, t, 0);
                        } else {
                            vc.napping_threads &= !(1 << t);
                            match s.threads[t].hstate.kvm_vcpu {
                                // A latecomer: run it in the partition already switched in.
                                Some(v) if ipi => {
                                    s.threads[t].running = Some(v);
                                    self.to_guest(s, t, v);
                                }
                                _ if self.modern() && ipi => {
                                    // Back to kvmppc_primary_no_guest.
                                    let vc = s.vcore.as_mut().unwrap();
                                    vc.napping_threads |= 1 << t;
                                    let h = &mut s.threads[t].hstate;
                                    h.napping = NAPPING_NOVCPU;
                                    h.hwthread_req = 1;
                                }
                                _ => {
                                    // Seed: anything but a latecomer exits (kvm_novcpu_exit);
                                    // modern: the timeslice is over (HDEC < 0).
                                    let trap = if self.modern() {
                                        BOOK3S_INTERRUPT_HV_DECREMENTER
                                    } else {
                                        0
                                    };
                                    self.commence_exit(s, t, trap);
                                }
                            }
                        }
                    }
                    other => return Err(format!("thread {t} is not napping inside KVM (it is {other:?})")),
                }
            }

            Event::Doorbell { vcpu, thread } => {
                let from = self.vcpu_index(s, vcpu)?;
                let t = self.thread_index(thread)?;
                let sender = s
                    .threads
                    .iter()
                    .take(self.threads as usize)
                    .position(|th| th.phase == Phase::InGuest && th.running == Some(from));
                if sender.is_none() {
                    return Err(format!(
                        "vcpu {vcpu} is not executing in the guest, so it cannot msgsndp"
                    ));
                }
                fx.doorbell_delivered = delivered_to(s, t);
                // A doorbell wakes a thread napping in a cede (LPCR[PECEDP]).
                if let Some(d) = fx.doorbell_delivered {
                    let th = &mut s.threads[t];
                    if th.phase == Phase::CedeNap && th.running == Some(d) {
                        th.ipi = true;
                    }
                }
            }

            Event::Exit { thread, trap } => {
                let t = self.thread_index(thread)?;
                let th = s.threads[t];
                let vc = *s.vcore.as_ref().ok_or("no vcore")?;
                match th.phase {
                    Phase::InGuest => {
                        s.threads[t].hstate.in_guest = KVM_GUEST_MODE_HOST_HV;
                        let v = th.running.expect("a thread in the guest runs a vcpu");
                        vm_trap(s, v, trap);
                        self.commence_exit(s, t, trap);
                    }
                    // Modern: a secondary waiting for vc->in_guest watches the exit
                    // flag too (no_switch_exit, trap 0).
                    Phase::Entered if self.modern() && t != 0 && vc.exiting() && vc.in_guest == 0 => {
                        self.commence_exit(s, t, 0);
                    }
                    other => return Err(format!("thread {t} is not in the guest (it is {other:?})")),
                }
            }

            Event::ExitRequest => {
                let vc = *s.vcore.as_ref().ok_or("no vcore")?;
                if !self.modern() {
                    return Err(
                        "VCORE_EXIT_REQ exists only in the modern kernel (set by another subcore)".into(),
                    );
                }
                if vc.vcore_state != st.running || vc.exiting() {
                    return Err("the vcore is not running, or an exit has already begun".into());
                }
                let vc = s.vcore.as_mut().unwrap();
                vc.exit_req = true;
                for i in 0..self.threads as usize {
                    if vc.entered & (1 << i) != 0 {
                        s.threads[i].ipi = true;
                    }
                }
            }

            Event::SwitchOut => {
                let th = s.threads[0];
                let vc = *s.vcore.as_ref().ok_or("no vcore")?;
                // Thread 0 too late (modern, VCORE_EXIT_REQ before it entered)
                // goes to kvmhv_switch_to_host too and skips the MMU switch.
                if th.phase != Phase::Exiting && th.phase != Phase::TooLate {
                    return Err(format!("thread 0 has not started exiting (it is {:?})", th.phase));
                }
                let all_out = self.fault == Some(Fault::EarlySwitchOut)
                    || if self.modern() {
                        vc.exited == vc.entered
                    } else {
                        vc.exited.count_ones() == vc.entered.count_ones()
                    };
                if !all_out {
                    let word = vc.entry_exit_word(self.modern());
                    return Err(format!(
                        "thread 0 waits until exits == entries (entry/exit word {word:#x})"
                    ));
                }
                let vc = s.vcore.as_mut().unwrap();
                if vc.in_guest != 0 {
                    s.mmu = Mmu::Host;
                    vc.tb_offset_applied = false;
                    vc.in_guest = 0;
                    s.switch_out = s.switch_out.saturating_add(1);
                }
                let thm = &mut s.threads[0];
                thm.hstate.in_guest = KVM_GUEST_MODE_NONE;
                thm.running = None;
                if self.modern() {
                    thm.hstate.hwthread_req = 0;
                }
                thm.phase = Phase::Returned;
            }

            Event::Tail { thread } => {
                let t = self.thread_index(thread)?;
                if t == 0 {
                    return Err("thread 0 finishes with switch_out".into());
                }
                let th = s.threads[t];
                if !matches!(th.phase, Phase::Exiting | Phase::TooLate) {
                    return Err(format!("thread {t} is not exiting (it is {:?})", th.phase));
                }
                let vc = s.vcore.as_mut().unwrap();
                if vc.in_guest != 0 {
                    return Err(format!(
                        "thread {t} waits for vc->in_guest == 0 (thread 0 has not switched back)"
                    ));
                }
                if !self.modern() {
                    vc.nap_count = vc.nap_count.saturating_add(1);
                }
                let thm = &mut s.threads[t];
                thm.hstate.in_guest = KVM_GUEST_MODE_NONE;
                thm.hstate.kvm_vcpu = None;
                thm.running = None;
                if self.modern() {
                    thm.hstate.kvm_vcore = false;
                    thm.phase = Phase::Spinning;
                } else {
                    thm.hstate.hwthread_state = KVM_HWTHREAD_IN_IDLE;
                    thm.phase = Phase::Host;
                }
            }

            Event::Release => {
                let vc = *s.vcore.as_ref().ok_or("no vcore")?;
                let exiting_unreleased = self.modern() && vc.vcore_state == st.exiting && !vc.released;
                if s.threads[0].phase != Phase::Returned
                    || !(vc.vcore_state == st.running || exiting_unreleased)
                {
                    return Err("__kvmppc_vcore_entry has not returned on thread 0 yet (or the threads were released)".into());
                }
                let waiting = if self.modern() {
                    (1..self.threads as usize)
                        .find(|&t| s.threads[t].hstate.kvm_vcore)
                        .map(|t| format!("kvmppc_wait_for_nap: thread {t} still has kvm_vcore set"))
                } else if vc.nap_count < vc.n_woken {
                    Some(format!(
                        "kvmppc_wait_for_nap: nap_count {} < n_woken {}",
                        vc.nap_count, vc.n_woken
                    ))
                } else {
                    None
                };
                if let Some(why) = waiting {
                    if self.modern() && vc.vcore_state == st.running {
                        // Modern sets VCORE_EXITING before kvmppc_wait_for_nap:
                        // that state is visible while the secondaries finish.
                        s.vcore.as_mut().unwrap().vcore_state = st.exiting;
                        return Ok(fx);
                    }
                    return Err(why);
                }
                if !self.modern() {
                    // "disable sending of IPIs on virtual external irqs"
                    for &i in vc.runnable() {
                        s.vcpus[i as usize].as_mut().unwrap().cpu = -1;
                    }
                }
                for th in s.threads.iter_mut().take(self.threads as usize) {
                    th.hstate.hwthread_req = 0;
                    th.hstate.kvm_vcpu = None;
                    if self.modern() {
                        th.hstate.kvm_vcore = false;
                    }
                }
                let vc = s.vcore.as_mut().unwrap();
                vc.vcore_state = st.exiting;
                vc.released = true;
            }

            Event::Finish => {
                let vc = *s.vcore.as_ref().ok_or("no vcore")?;
                if vc.vcore_state != st.exiting || !vc.released || s.threads[0].phase != Phase::Returned {
                    return Err("the threads have not been released yet".into());
                }
                for &i in vc.runnable() {
                    let vm = s.vcpus[i as usize].as_mut().unwrap();
                    // An hcall the kernel does not handle goes to userspace
                    // (RESUME_HOST); H_CEDE and interrupts resume the guest.
                    let to_host = vm.trap == BOOK3S_INTERRUPT_SYSCALL && vm.ceded == 0;
                    vm.trap = 0;
                    vm.started = false;
                    if to_host {
                        vm.state = KVMPPC_VCPU_BUSY_IN_HOST;
                        s.vcore.as_mut().unwrap().remove_runnable(i);
                    }
                }
                let vc = s.vcore.as_mut().unwrap();
                vc.vcore_state = st.inactive;
                vc.runner = None;
                s.threads[0].phase = Phase::Host;
                s.runs_done = s.runs_done.saturating_add(1);
            }

            Event::ReturnToIdle { thread } => {
                let t = self.thread_index(thread)?;
                let th = &mut s.threads[t];
                if th.phase != Phase::Spinning {
                    return Err(format!(
                        "thread {t} is not spinning in kvm_no_guest (it is {:?})",
                        th.phase
                    ));
                }
                if th.hstate.hwthread_req != 0 {
                    return Err(format!("thread {t} keeps spinning while hwthread_req is 1"));
                }
                th.hstate.hwthread_state = KVM_HWTHREAD_IN_IDLE;
                th.phase = Phase::Host;
            }
        }
        Ok(fx)
    }

    /// kvmppc_start_thread: publish the vcpu in the PACA of thread pcpu+ptid
    /// and wake that thread.  `late` = a latecomer started from its own task
    /// (on another core), so even thread 0 gets an IPI.
    fn start_thread(&self, s: &mut State, idx: u8, late: bool) {
        let vc = s.vcore.as_mut().unwrap();
        let pcpu = vc.pcpu as i32;
        let vm = s.vcpus[idx as usize].as_mut().unwrap();
        let ptid = vm.ptid;
        let t = ptid as usize;
        vm.cpu = pcpu;
        vm.started = true;
        if self.modern() {
            vm.thread_cpu = pcpu + ptid as i32;
        }
        let h = &mut s.threads[t].hstate;
        h.kvm_vcpu = Some(idx);
        h.kvm_vcore = true;
        h.ptid = ptid;
        if self.prepatch() {
            h.napping = 0;
        }
        let ipi = match self.variant {
            Variant::Prepatch => ptid != 0,
            _ => ptid != 0 || late,
        };
        if ipi {
            s.threads[t].ipi = true;
        }
        if !self.modern() && ptid != 0 {
            vc.n_woken += 1;
        }
    }

    /// fast_guest_return for vcpu `v` on thread `t`.
    fn to_guest(&self, s: &mut State, t: usize, v: u8) {
        s.vcpus[v as usize].as_mut().unwrap().ceded = 0;
        let th = &mut s.threads[t];
        th.hstate.in_guest = KVM_GUEST_MODE_GUEST_HV;
        th.phase = Phase::InGuest;
    }

    /// hdec_soon (seed) / kvmhv_commence_exit (modern): count this thread as
    /// exiting; the first exiter pokes the others.
    fn commence_exit(&self, s: &mut State, t: usize, trap: u32) {
        let vc = s.vcore.as_mut().unwrap();
        let first = !vc.exiting() && self.fault != Some(Fault::NoExitIpi);
        vc.exited |= 1 << t;
        let entered = vc.entered;
        let napping = vc.napping_threads;
        if first {
            if self.modern() {
                if trap != BOOK3S_INTERRUPT_HV_DECREMENTER {
                    for i in 0..self.threads as usize {
                        if i != t && entered & (1 << i) != 0 {
                            s.threads[i].ipi = true;
                        }
                    }
                }
            } else {
                // A first exiter with trap != HDEC writes HDEC = 0 (shared by
                // the core), which kicks the threads in the guest: the model
                // lets them exit at any time anyway.  Nap is not woken by
                // HDEC, so the napping ones get an IPI.
                let _ = trap;
                for i in 0..self.threads as usize {
                    if i != t && napping & (1 << i) != 0 {
                        s.threads[i].ipi = true;
                    }
                }
            }
        }
        let th = &mut s.threads[t];
        if self.modern() {
            if let Some(v) = th.running {
                let vm = s.vcpus[v as usize].as_mut().unwrap();
                vm.cpu = -1;
                vm.thread_cpu = -1;
            }
        }
        th.hstate.in_guest = KVM_GUEST_MODE_HOST_HV;
        th.phase = Phase::Exiting;
        // The thread is on its way out of the guest: an IPI meant to kick it
        // has done its job (the exit path acks pending IPIs before the tail).
        th.ipi = false;
    }
}

fn vm_trap(s: &mut State, v: u8, trap: u32) {
    s.vcpus[v as usize].as_mut().unwrap().trap = trap;
}

/// The vcpu whose context a doorbell to physical thread `t` reaches: the one
/// the thread runs, or the one published in its PACA and about to run.
pub fn delivered_to(s: &State, t: usize) -> Option<u8> {
    let th = &s.threads[t];
    th.running.or(match th.phase {
        Phase::Host | Phase::Entered | Phase::SwitchedIn => th.hstate.kvm_vcpu,
        _ => None,
    })
}

/// first_vcpuid lives in the vcore: kept beside it in the state.
pub fn vc_first(s: &State) -> u32 {
    s.vcore.as_ref().map(|vc| vc.first_vcpuid).unwrap_or(0)
}

fn set_first(vc: &mut VcoreModel, first: u32) {
    vc.first_vcpuid = first;
}
