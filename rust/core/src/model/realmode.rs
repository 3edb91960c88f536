//! The real-mode side of a vcore run (arch/powerpc/kvm/book3s_hv_rmhandlers.S):
//! thread entry and the partition switch, the guest's cede / nap / wake,
//! doorbells, the exit and the secondaries' tail.  One function per event,
//! named after the kernel label it models.

use crate::consts::*;
use crate::model::state::{Mmu, Phase, State, VcoreModel};
use crate::model::transitions::{vm_trap, Config, Effects, Fault, Outcome};

impl Config {
    /// kvmppc_hv_entry: thread 0 from __kvmppc_vcore_entry, a secondary woken
    /// by its IPI through kvm_start_guest; counted in the entry word, or
    /// secondary_too_late once an exit has begun.
    pub(crate) fn kvmppc_hv_entry(&self, s: &mut State, thread: u8) -> Outcome {
        let st = self.states();
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
        if exiting {
            thm.phase = Phase::TooLate;
        } else {
            s.vcore.as_mut().unwrap().entered |= 1 << t;
            thm.phase = Phase::Entered;
        }
        Ok(Effects::default())
    }

    /// Thread 0 in kvmppc_hv_entry switches LPIDR/SDR1 to the guest, applies
    /// the TB offset, sets vc->in_guest = 1 and loads DPDES from vc->dpdes.
    pub(crate) fn kvmppc_hv_entry_switch_in(&self, s: &mut State) -> Outcome {
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
        s.dpdes = vc.dpdes;
        s.switch_in = s.switch_in.saturating_add(1);
        s.threads[0].phase = Phase::SwitchedIn;
        self.doorbell_wakes_cede(s);
        Ok(Effects::default())
    }

    /// fast_guest_return (a thread with a vcpu; a secondary once
    /// vc->in_guest is set) or kvmppc_primary_no_guest (thread 0 without one).
    pub(crate) fn fast_guest_return(&self, s: &mut State, thread: u8) -> Outcome {
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
            Some(v) => self.resume_guest(s, t, v),
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
        Ok(Effects::default())
    }

    /// kvmppc_h_cede: ceded = 1; returns at once if prodded; the last thread
    /// to cede exits instead of napping (kvm_cede_exit); else naps in
    /// kvm_do_nap with doorbells and IPIs as wake-up events.
    pub(crate) fn kvmppc_h_cede(&self, s: &mut State, thread: u8) -> Outcome {
        let mut fx = Effects::default();
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
        let all_napping = !self.faulty(Fault::NoCedeExit)
            && if self.modern() {
                (vc.napping_threads | me) == vc.entered
            } else {
                (vc.napping_threads | me).count_ones() >= vc.entry_count()
            };
        if all_napping || vc.exiting() {
            // kvm_cede_exit: every entered thread would nap, or someone is
            // exiting already: go to the host instead of napping.
            if !all_napping {
                s.threads[t].hstate.napping = 0;
            }
            vm_trap(s, v, BOOK3S_INTERRUPT_SYSCALL);
            self.commence_exit(s, t, BOOK3S_INTERRUPT_SYSCALL);
            return Ok(fx);
        }
        vc.napping_threads |= me;
        let thm = &mut s.threads[t];
        thm.hstate.napping = NAPPING_CEDE;
        thm.hstate.hwthread_req = 1;
        thm.phase = Phase::CedeNap;
        fx.ceded_to_nap = true;
        // A doorbell already pending wakes the nap at once (LPCR[PECEDP]).
        self.doorbell_wakes_cede(s);
        Ok(fx)
    }

    /// A thread napping inside KVM wakes (kvm_start_guest): from a cede
    /// (kvm_end_cede) or thread 0 without a vcpu (kvm_novcpu_wakeup).
    pub(crate) fn kvm_start_guest(&self, s: &mut State, thread: u8) -> Outcome {
        let t = self.thread_index(thread)?;
        match s.threads[t].phase {
            Phase::CedeNap => self.kvm_end_cede(s, t),
            Phase::NovcpuNap => self.kvm_novcpu_wakeup(s, t),
            other => Err(format!("thread {t} is not napping inside KVM (it is {other:?})")),
        }
    }

    /// kvm_end_cede: back to the guest, or on to the exit if one has begun.
    fn kvm_end_cede(&self, s: &mut State, t: usize) -> Outcome {
        let v = s.threads[t].running.expect("a ceding thread runs a vcpu");
        if self.faulty(Fault::DoorbellLostOnWake) && s.dpdes & (1 << t) != 0 {
            // The wake-up consumes the doorbell that caused it.
            s.dpdes &= !(1 << t);
        }
        let thm = &mut s.threads[t];
        thm.ipi = false;
        thm.hstate.hwthread_state = KVM_HWTHREAD_IN_KVM;
        thm.hstate.napping = 0;
        let vc = s.vcore.as_mut().unwrap();
        vc.napping_threads &= !(1 << t);
        if vc.exiting() {
            vm_trap(s, v, BOOK3S_INTERRUPT_SYSCALL);
            self.commence_exit(s, t, BOOK3S_INTERRUPT_SYSCALL);
        } else {
            self.resume_guest(s, t, v);
        }
        Ok(Effects::default())
    }

    /// kvm_novcpu_wakeup (thread 0 napping without a vcpu): a latecomer to
    /// run, an exit to join, or (modern) the end of the timeslice.
    fn kvm_novcpu_wakeup(&self, s: &mut State, t: usize) -> Outcome {
        let ipi = s.threads[t].ipi;
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
            return Ok(Effects::default());
        }
        vc.napping_threads &= !(1 << t);
        match s.threads[t].hstate.kvm_vcpu {
            // A latecomer: run it in the partition already switched in.
            Some(v) if ipi => {
                s.threads[t].running = Some(v);
                self.resume_guest(s, t, v);
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
        Ok(Effects::default())
    }

    /// The guest on `thread` takes an interrupt that exits to the host
    /// (kvmhv_commence_exit; seed: hdec_soon's exit count).
    pub(crate) fn kvmhv_commence_exit(&self, s: &mut State, thread: u8, trap: u32) -> Outcome {
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
        Ok(Effects::default())
    }

    /// Modern, split core: another subcore's first exiter sets
    /// VCORE_EXIT_REQ in this vcore and IPIs its entered threads.
    pub(crate) fn kvmhv_interrupt_vcore(&self, s: &mut State) -> Outcome {
        let st = self.states();
        let vc = *s.vcore.as_ref().ok_or("no vcore")?;
        if !self.modern() {
            return Err("VCORE_EXIT_REQ exists only in the modern kernel (set by another subcore)".into());
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
        Ok(Effects::default())
    }

    /// Whether every thread that entered has exited, as thread 0 waits for
    /// it in kvmhv_switch_to_host (modern: the exit byte of
    /// vc->entry_exit_map equals the entry byte; seed: the counts in
    /// vc->entry_exit_count agree); always with the fault that skips the wait.
    pub(crate) fn all_out(&self, vc: &VcoreModel) -> bool {
        self.faulty(Fault::EarlySwitchOut)
            || if self.modern() {
                vc.exited == vc.entered
            } else {
                vc.exited.count_ones() == vc.entered.count_ones()
            }
    }

    /// Thread 0, once exits == entries, switches the partition back to the
    /// host, saves DPDES in vc->dpdes and clears it, clears vc->in_guest.
    pub(crate) fn kvmhv_switch_to_host(&self, s: &mut State) -> Outcome {
        let th = s.threads[0];
        let vc = *s.vcore.as_ref().ok_or("no vcore")?;
        // Thread 0 too late (modern, VCORE_EXIT_REQ before it entered) goes
        // to kvmhv_switch_to_host too and skips the MMU switch.
        if th.phase != Phase::Exiting && th.phase != Phase::TooLate {
            return Err(format!("thread 0 has not started exiting (it is {:?})", th.phase));
        }
        if !self.all_out(&vc) {
            let word = vc.entry_exit_word(self.modern());
            return Err(format!(
                "thread 0 waits until exits == entries (entry/exit word {word:#x})"
            ));
        }
        if s.mmu == Mmu::Guest {
            let vc = s.vcore.as_mut().unwrap();
            vc.dpdes = s.dpdes;
            s.dpdes = 0;
            s.mmu = Mmu::Host;
            vc.tb_offset_applied = false;
            if !self.faulty(Fault::InGuestNotCleared) {
                vc.in_guest = 0;
            }
            s.switch_out = s.switch_out.saturating_add(1);
        }
        let thm = &mut s.threads[0];
        thm.hstate.in_guest = KVM_GUEST_MODE_NONE;
        thm.running = None;
        if self.modern() {
            thm.hstate.hwthread_req = 0;
        }
        thm.phase = Phase::Returned;
        Ok(Effects::default())
    }

    /// A secondary sees vc->in_guest == 0 and finishes in kvm_no_guest
    /// (seed: clears kvm_vcpu, nap_count++ and naps; modern: clears
    /// kvm_vcpu and kvm_vcore and spins while hwthread_req is set).
    pub(crate) fn kvm_no_guest(&self, s: &mut State, thread: u8) -> Outcome {
        let t = self.thread_index(thread)?;
        if t == 0 {
            return Err("thread 0 finishes with switch_out".into());
        }
        let phase = s.threads[t].phase;
        if !matches!(phase, Phase::Exiting | Phase::TooLate | Phase::NapCounted) {
            return Err(format!("thread {t} is not exiting (it is {phase:?})"));
        }
        let vc = s.vcore.as_mut().unwrap();
        if vc.in_guest != 0 {
            return Err(format!(
                "thread {t} waits for vc->in_guest == 0 (thread 0 has not switched back)"
            ));
        }
        if !self.modern() && phase != Phase::NapCounted {
            vc.nap_count = vc.nap_count.saturating_add(1);
            if self.faulty(Fault::NapCountedBeforeClear) {
                // Counted, but kvm_vcpu is still set: a second step clears it.
                s.threads[t].phase = Phase::NapCounted;
                return Ok(Effects::default());
            }
        }
        let thm = &mut s.threads[t];
        thm.hstate.in_guest = KVM_GUEST_MODE_NONE;
        thm.hstate.kvm_vcpu = None;
        thm.running = None;
        thm.late = false;
        if self.modern() {
            thm.hstate.kvm_vcore = false;
            thm.phase = Phase::Spinning;
        } else {
            thm.hstate.hwthread_state = KVM_HWTHREAD_IN_IDLE;
            thm.phase = Phase::Host;
        }
        Ok(Effects::default())
    }

    /// Modern: a secondary spinning in kvm_no_guest sees hwthread_req == 0
    /// and returns to the idle loop (KVM_HWTHREAD_IN_IDLE).
    pub(crate) fn kvm_no_guest_idle_return(&self, s: &mut State, thread: u8) -> Outcome {
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
        Ok(Effects::default())
    }

    /// fast_guest_return for vcpu `v` on thread `t`.
    pub(crate) fn resume_guest(&self, s: &mut State, t: usize, v: u8) {
        s.vcpus[v as usize].as_mut().unwrap().ceded = 0;
        let th = &mut s.threads[t];
        th.hstate.in_guest = KVM_GUEST_MODE_GUEST_HV;
        th.phase = Phase::InGuest;
    }

    /// hdec_soon (seed) / kvmhv_commence_exit (modern): count this thread as
    /// exiting; the first exiter pokes the others.
    pub(crate) fn commence_exit(&self, s: &mut State, t: usize, trap: u32) {
        let vc = s.vcore.as_mut().unwrap();
        let first = !vc.exiting() && !self.faulty(Fault::NoExitIpi);
        vc.exited |= 1 << t;
        let entered = vc.entered;
        let napping = vc.napping_threads;
        if first {
            // Modern: IPI every entered thread unless HDEC (shared by the
            // core) already kicks them.  Seed: a first exiter with trap !=
            // HDEC writes HDEC = 0, which kicks the threads in the guest (the
            // model lets them exit at any time anyway); nap is not woken by
            // HDEC, so the napping ones get an IPI.
            let targets = if self.modern() {
                if trap != BOOK3S_INTERRUPT_HV_DECREMENTER {
                    entered
                } else {
                    0
                }
            } else {
                napping
            };
            for i in 0..self.threads as usize {
                if i != t && targets & (1 << i) != 0 {
                    s.threads[i].ipi = true;
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
