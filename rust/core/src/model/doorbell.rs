//! Directed privileged doorbells (msgsndp) on POWER8: DPDES is one register
//! per core, bit N for thread N ("DPDES and VTB are shared between
//! threads", book3s_hv_rmhandlers.S).  A doorbell is pending in DPDES while
//! the guest partition is in, and in vc->dpdes across an exit (saved by
//! kvmhv_switch_to_host, loaded again at the next switch-in, see
//! [`super::realmode`]).

use crate::model::state::{Mmu, Phase, State};
use crate::model::transitions::{Config, Effects, Fault, Outcome};

impl Config {
    /// msgsndp by the guest on vcpu `vcpu` to thread number `thread`: the
    /// core's DPDES bit `thread` is set; it wakes a cede nap on that thread.
    pub(crate) fn msgsndp(&self, s: &mut State, vcpu: u32, thread: u8) -> Outcome {
        let from = self.vcpu_index(s, vcpu)?;
        let t = self.thread_index(thread)?;
        let sender = (0..self.threads as usize)
            .find(|&x| s.threads[x].phase == Phase::InGuest && s.threads[x].running == Some(from));
        let Some(sender) = sender else {
            return Err(format!(
                "vcpu {vcpu} is not executing in the guest, so it cannot msgsndp"
            ));
        };
        // With the fault the doorbell is raised on the sending thread.
        let target = if self.faulty(Fault::DoorbellWrongSibling) {
            sender
        } else {
            t
        };
        s.dpdes |= 1 << target;
        s.db_sent |= 1 << t;
        s.doorbells = s.doorbells.saturating_add(1);
        self.doorbell_wakes_cede(s);
        Ok(Effects::default())
    }

    /// The vcpu executing on `thread` takes the doorbell pending for the
    /// thread (the guest's doorbell interrupt clears the DPDES bit).
    pub(crate) fn guest_doorbell_interrupt(&self, s: &mut State, thread: u8) -> Outcome {
        let t = self.thread_index(thread)?;
        let th = s.threads[t];
        let v = match (th.phase, th.running) {
            (Phase::InGuest, Some(v)) => v,
            _ => {
                return Err(format!(
                    "thread {t} is not executing a vcpu in the guest (it is {:?})",
                    th.phase
                ))
            }
        };
        if s.mmu != Mmu::Guest || s.dpdes & (1 << t) == 0 {
            return Err(format!(
                "no doorbell is pending for thread {t} (DPDES {:#x})",
                s.dpdes
            ));
        }
        s.dpdes &= !(1 << t);
        let fx = Effects {
            doorbell_taken: Some(v),
            doorbell_was_sent: s.db_sent & (1 << t) != 0,
            ..Effects::default()
        };
        s.db_sent &= !(1 << t);
        Ok(fx)
    }

    /// Every thread napping in a cede with its DPDES bit set is woken.
    pub(crate) fn doorbell_wakes_cede(&self, s: &mut State) {
        if s.mmu != Mmu::Guest {
            return;
        }
        for t in 0..self.threads as usize {
            if s.dpdes & (1 << t) != 0 && s.threads[t].phase == Phase::CedeNap {
                s.threads[t].ipi = true;
            }
        }
    }
}
