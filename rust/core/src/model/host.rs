//! The host side of a vcore run (arch/powerpc/kvm/book3s_hv.c): vcpu
//! creation, the runnable list, kvmppc_run_core with its grab / start /
//! wait / release steps, H_PROD, and the vcore sleeping while every vcpu
//! has ceded.  One function per event, named after the kernel function.

use crate::consts::*;
use crate::model::state::{Phase, State, VcoreModel, VcpuModel};
use crate::model::transitions::{vc_first, Config, Effects, Fault, Outcome, MAX_VCPU_ID};

impl Config {
    /// kvmppc_core_vcpu_create_hv: the vcore of id `vcpu` is
    /// `kvm->arch.vcores[id / smt_mode]`, created with first_vcpuid =
    /// `id & ~(smt_mode - 1)`; ptid = id - first_vcpuid.
    pub(crate) fn kvmppc_core_vcpu_create_hv(&self, s: &mut State, vcpu: u32) -> Outcome {
        let n = self.threads as u32;
        if vcpu >= MAX_VCPU_ID {
            return Err(format!(
                "vcpu id {vcpu} is out of range (KVM_MAX_VCPU_IDS is {MAX_VCPU_ID})"
            ));
        }
        let first = match s.vcore {
            Some(_) => vc_first(s),
            None => vcpu & !(n - 1),
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
        vc.first_vcpuid = first;
        vc.num_threads += 1;
        // Seed/modern: ptid = vcpu_id - first_vcpuid, fixed.  Before the
        // change ptid was only assigned when a run started.
        let ptid = if self.prepatch() { 0 } else { idx as u8 };
        s.vcpus[idx] = Some(VcpuModel::created(ptid));
        Ok(Effects::default())
    }

    /// kvmppc_run_vcpu: RUNNABLE and on the runnable list; a latecomer joins
    /// a running vcore at once (kvmppc_start_thread from its own task).
    pub(crate) fn kvmppc_run_vcpu(&self, s: &mut State, vcpu: u32) -> Outcome {
        let st = self.states();
        let idx = self.vcpu_index(s, vcpu)?;
        if s.vcpus[idx as usize].unwrap().state == KVMPPC_VCPU_RUNNABLE {
            return Err(format!("vcpu {vcpu} is already runnable"));
        }
        let vc = s.vcore.as_mut().unwrap();
        if vc.lock_held {
            return Err("the runner holds vc->lock inside kvmppc_run_core (until vcore_entry)".into());
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
            self.start_thread_on(s, idx, true);
        }
        Ok(Effects::default())
    }

    /// kvmppc_remove_runnable while the vcore is inactive: BUSY_IN_HOST.
    pub(crate) fn kvmppc_remove_runnable(&self, s: &mut State, vcpu: u32) -> Outcome {
        let st = self.states();
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
        Ok(Effects::default())
    }

    /// kvmppc_run_core up to the start of the threads: per-run reset
    /// (seed: in kvmppc_run_core; modern: init_vcore_to_run), vc->pcpu,
    /// and on_primary_thread's kvmppc_grab_hwthread of every secondary.
    /// (Long because it follows the kernel function's steps in order.)
    pub(crate) fn kvmppc_run_core(&self, s: &mut State, runner: u32) -> Outcome {
        let st = self.states();
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
        if self.modern() {
            // kvmppc_run_vcpu's n_ceded loop: a ceded vcpu that kvmppc_vcpu_woken
            // finds prodded (book3s_hv.c) has its cede ended before the decision.
            let runq = *vc;
            for &i in runq.runnable() {
                let v = s.vcpus[i as usize].as_mut().unwrap();
                if v.prodded != 0 {
                    v.ceded = 0;
                }
            }
        }
        let vc = s.vcore.as_ref().unwrap();
        if vc
            .runnable()
            .iter()
            .all(|&i| s.vcpus[i as usize].unwrap().ceded != 0)
        {
            return Err(
                "every runnable vcpu has ceded: the kernel calls kvmppc_vcore_blocked (vcore_blocked)".into(),
            );
        }
        if s.threads[0].phase != Phase::Host {
            return Err("thread 0 is not in the host".into());
        }
        for t in 1..self.threads as usize {
            // Modern: a secondary still spinning in kvm_no_guest is offline
            // and not IN_KERNEL: the grab succeeds at once.
            if !matches!(s.threads[t].phase, Phase::Host | Phase::Spinning) {
                return Err(format!(
                    "thread {t} is still in KVM ({:?}): it cannot be grabbed",
                    s.threads[t].phase
                ));
            }
        }
        let vc = s.vcore.as_mut().unwrap();
        vc.runner = Some(idx);
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
        s.doorbells = 0;
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
        for t in 1..self.threads as usize {
            let th = &mut s.threads[t];
            th.hstate.kvm_vcpu = None;
            th.late = false;
            if self.modern() {
                th.hstate.kvm_vcore = false;
                th.hstate.napping = 0;
            }
            // With the fault, each secondary is grabbed only by its own start.
            if !self.faulty(Fault::StartBeforeGrab) {
                th.hstate.hwthread_req = 1;
            }
        }
        if self.modern() {
            s.threads[0].hstate.napping = 0;
        }
        Ok(Effects::default())
    }

    /// kvmppc_vcore_blocked: every runnable vcpu has ceded and none has a
    /// doorbell pending (kvmppc_vcpu_woken / kvmppc_doorbell_pending) or
    /// (modern) was prodded, so the runner sleeps on vc->wq: VCORE_SLEEPING.
    pub(crate) fn kvmppc_vcore_blocked(&self, s: &mut State, runner: u32) -> Outcome {
        let st = self.states();
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
        let first = vc_first(s);
        for &i in vc.runnable() {
            let v = s.vcpus[i as usize].unwrap();
            if v.ceded == 0 {
                return Err(format!(
                    "vcpu {} has not ceded: the runner runs the core instead",
                    i as u32 + first
                ));
            }
            if vc.dpdes & (1 << v.ptid) != 0 {
                return Err(format!(
                    "vcpu {} has a doorbell pending in vc->dpdes: it is not blocked",
                    i as u32 + first
                ));
            }
            if self.modern() && v.prodded != 0 {
                // kvmppc_vcore_check_block -> kvmppc_vcpu_woken (book3s_hv.c).
                return Err(format!(
                    "vcpu {} was prodded (arch.prodded): kvmppc_vcpu_woken finds it woken, it is not blocked",
                    i as u32 + first
                ));
            }
        }
        let vc = s.vcore.as_mut().unwrap();
        vc.runner = Some(idx);
        // Modern may poll first (VCORE_POLLING, halt_poll_ns): not modelled.
        vc.vcore_state = st.sleeping;
        Ok(Effects::default())
    }

    /// The sleeping vcore is woken (kvmppc_vcore_blocked returns) because
    /// vcpu `vcpu` has work: its cede ends, VCORE_INACTIVE.
    pub(crate) fn kvmppc_vcore_wakeup(&self, s: &mut State, vcpu: u32) -> Outcome {
        let st = self.states();
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
        Ok(Effects::default())
    }

    /// kvmppc_start_thread for a runnable vcpu inside kvmppc_run_core.
    pub(crate) fn kvmppc_start_thread(&self, s: &mut State, vcpu: u32) -> Outcome {
        let idx = self.vcpu_index(s, vcpu)?;
        let vc = s.vcore.as_ref().unwrap();
        if !vc.lock_held {
            return Err(
                "not inside kvmppc_run_core's start-up (run_core first; late joiners start in runnable)"
                    .into(),
            );
        }
        if !vc.is_runnable(idx) {
            return Err(format!("vcpu {vcpu} is not runnable"));
        }
        if s.vcpus[idx as usize].unwrap().started {
            return Err(format!("vcpu {vcpu} was already started this run"));
        }
        self.start_thread_on(s, idx, false);
        Ok(Effects::default())
    }

    /// kvmppc_start_thread: publish the vcpu in the PACA of thread pcpu+ptid
    /// and wake that thread.  `late` = a latecomer started from its own task
    /// (on another core), so even thread 0 gets an IPI.
    pub(crate) fn start_thread_on(&self, s: &mut State, idx: u8, late: bool) {
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
        let th = &mut s.threads[t];
        // Only the fault needs to tell latecomers apart (it keeps the states fewer).
        th.late = late && t != 0 && self.faulty(Fault::LatecomerReleasedEarly);
        let h = &mut th.hstate;
        h.kvm_vcpu = Some(idx);
        h.kvm_vcore = true;
        h.ptid = ptid;
        if self.faulty(Fault::StartBeforeGrab) && t != 0 {
            h.hwthread_req = 1;
        }
        if self.prepatch() {
            h.napping = 0;
        }
        let ipi = match self.variant {
            Variant::Prepatch => ptid != 0,
            _ => ptid != 0 || late,
        };
        if ipi {
            th.ipi = true;
        }
        if !self.modern() && ptid != 0 {
            vc.n_woken += 1;
        }
    }

    /// The end of kvmppc_run_core's start-up before __kvmppc_vcore_entry:
    /// thread 0 joins even without a vcpu, VCORE_RUNNING.
    pub(crate) fn kvmppc_vcore_entry(&self, s: &mut State) -> Outcome {
        let st = self.states();
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
        Ok(Effects::default())
    }

    /// H_PROD (kvmppc_h_prod): arch.prodded = 1, and kvmppc_fast_vcpu_kick_hv
    /// IPIs the thread if the vcpu naps in a cede.
    pub(crate) fn kvmppc_h_prod(&self, s: &mut State, vcpu: u32) -> Outcome {
        let idx = self.vcpu_index(s, vcpu)?;
        let vm = s.vcpus[idx as usize].as_mut().unwrap();
        vm.prodded = 1;
        vm.prods = vm.prods.saturating_add(1);
        for th in s.threads.iter_mut().take(self.threads as usize) {
            if th.phase == Phase::CedeNap && th.running == Some(idx) {
                th.ipi = true;
            }
        }
        Ok(Effects::default())
    }

    /// What kvmppc_wait_for_nap still waits for, if anything: modern, a
    /// thread (beyond 0) whose kvm_hstate.kvm_vcore is still set; seed,
    /// vc->nap_count below vc->n_woken.  With the fault
    /// LatecomerReleasedEarly the wait forgets the latecomers.
    pub(crate) fn nap_wait(&self, s: &State, vc: &VcoreModel) -> Option<NapWait> {
        let counts = |t: usize| !(self.faulty(Fault::LatecomerReleasedEarly) && s.threads[t].late);
        if self.modern() {
            (1..self.threads as usize)
                .find(|&t| s.threads[t].hstate.kvm_vcore && counts(t))
                .map(NapWait::Thread)
        } else {
            let late = (1..self.threads as usize).filter(|&t| !counts(t)).count() as u8;
            let n_woken = vc.n_woken.saturating_sub(late);
            (vc.nap_count < n_woken).then_some(NapWait::Count {
                nap_count: vc.nap_count,
                n_woken,
            })
        }
    }

    /// kvmppc_run_core after __kvmppc_vcore_entry returned on thread 0:
    /// kvmppc_wait_for_nap (seed: nap_count == n_woken; modern: every
    /// secondary has cleared its kvm_vcore, with VCORE_EXITING visible
    /// meanwhile) and kvmppc_release_hwthread of every thread.
    pub(crate) fn kvmppc_wait_for_nap(&self, s: &mut State) -> Outcome {
        let st = self.states();
        let vc = *s.vcore.as_ref().ok_or("no vcore")?;
        let exiting_unreleased = self.modern() && vc.vcore_state == st.exiting && !vc.released;
        if s.threads[0].phase != Phase::Returned || !(vc.vcore_state == st.running || exiting_unreleased) {
            return Err(
                "__kvmppc_vcore_entry has not returned on thread 0 yet (or the threads were released)".into(),
            );
        }
        // The reason is worded only when refused (this runs on every
        // modern exit: formatting it there was 4% of the explorer's work).
        if let Some(why) = self.nap_wait(s, &vc) {
            if self.modern() && vc.vcore_state == st.running {
                // Modern sets VCORE_EXITING before kvmppc_wait_for_nap:
                // that state is visible while the secondaries finish.
                s.vcore.as_mut().unwrap().vcore_state = st.exiting;
                return Ok(Effects::default());
            }
            return Err(why.to_string());
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
        Ok(Effects::default())
    }

    /// The rest of kvmppc_run_core (post_guest_process, `out:`): exits
    /// handled, vcpus that need userspace leave the runnable list,
    /// VCORE_INACTIVE.
    pub(crate) fn post_guest_process(&self, s: &mut State) -> Outcome {
        let st = self.states();
        let vc = *s.vcore.as_ref().ok_or("no vcore")?;
        if vc.vcore_state != st.exiting || !vc.released || s.threads[0].phase != Phase::Returned {
            return Err("the threads have not been released yet".into());
        }
        if let Some(t) = (1..self.threads as usize).find(|&t| s.threads[t].phase == Phase::NapCounted) {
            return Err(format!("thread {t} has not finished kvm_no_guest yet"));
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
        Ok(Effects::default())
    }
}

/// What kvmppc_wait_for_nap waits for (see [`Config::nap_wait`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NapWait {
    /// Modern: this thread still has kvm_hstate.kvm_vcore set.
    Thread(usize),
    /// Seed: vc->nap_count is still below vc->n_woken (latecomers left out
    /// under the fault).
    Count { nap_count: u8, n_woken: u8 },
}

impl std::fmt::Display for NapWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            NapWait::Thread(t) => write!(f, "kvmppc_wait_for_nap: thread {t} still has kvm_vcore set"),
            NapWait::Count { nap_count, n_woken } => {
                write!(
                    f,
                    "kvmppc_wait_for_nap: nap_count {nap_count} < n_woken {n_woken}"
                )
            }
        }
    }
}
