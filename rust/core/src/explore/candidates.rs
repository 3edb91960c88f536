//! The events the explorer tries in a state: every event a thread or a
//! vcpu task could take next, within the exploration's bounds.  Legality is
//! still decided by the model (`Config::apply`); this only filters the
//! obviously impossible ones cheaply and applies the bounds.

use crate::consts::{Variant, BOOK3S_INTERRUPT_HV_DECREMENTER, KVMPPC_VCPU_NOTREADY};
use crate::explore::ExploreOptions;
use crate::model::{vc_first, Config, Event, Fault, Mmu, Phase, State};

/// Fill `out` with the candidate events of `s` (`chosen`: bitmask of the
/// vcpu indices that take part in the run), doorbells apart (see
/// [`doorbell_candidates`]).
pub(crate) fn candidates(cfg: &Config, opts: &ExploreOptions, s: &State, chosen: u8, out: &mut Vec<Event>) {
    out.clear();
    if s.runs_done > 0 {
        return;
    }
    let Some(vc) = s.vcore else { return };
    let first = vc_first(s);
    let st = cfg.variant.vcore_states();
    // With symmetry the choices must not depend on thread positions: any
    // runnable vcpu may be the runner and start_thread may go in any order.
    // Prepatch follows the kernel: lowest runnable vcpu, list order.
    let symmetric = opts.symmetric();
    let cedes: u32 = s.vcpus.iter().flatten().map(|v| v.cedes as u32).sum();
    let may_cede = opts.max_cedes.is_none_or(|m| cedes < m as u32);
    // kvmppc_run_core starts only from an inactive vcore with no runner
    // (the model refuses it otherwise; trying it in every state is costly).
    let may_run_core = vc.vcore_state == st.inactive && !vc.lock_held && vc.runner.is_none();
    for i in 0..cfg.threads {
        let Some(v) = s.vcpus[i as usize] else { continue };
        let id = first + i as u32;
        // A vcpu becomes runnable before the run or as a latecomer that can
        // still join; arriving once the exit has begun only parks it on the
        // runnable list until the next run, which is not explored.
        let can_join = vc.vcore_state == st.inactive || (vc.vcore_state == st.running && !vc.exiting());
        if chosen & (1 << i) != 0 && v.state == KVMPPC_VCPU_NOTREADY && can_join && !vc.lock_held {
            out.push(Event::Runnable { vcpu: id });
        }
        if !opts.defer_prods && may_prod(cfg, opts, s, i as usize) {
            out.push(Event::Prod { vcpu: id });
        }
        if symmetric && vc.is_runnable(i) {
            if may_run_core {
                out.push(Event::RunCore { runner: id });
            }
            if vc.lock_held && !v.started {
                out.push(Event::StartThread { vcpu: id });
            }
        }
    }
    if !symmetric {
        if let Some(&lowest) = vc.runnable().iter().min().filter(|_| may_run_core) {
            out.push(Event::RunCore {
                runner: first + lowest as u32,
            });
        }
        if vc.lock_held {
            if let Some(&next) = vc
                .runnable()
                .iter()
                .find(|&&i| !s.vcpus[i as usize].unwrap().started)
            {
                out.push(Event::StartThread {
                    vcpu: first + next as u32,
                });
            }
        }
    }
    if vc.lock_held {
        out.push(Event::VcoreEntry);
    }
    if opts.exit_request && cfg.variant == Variant::Modern && !vc.exiting() && vc.vcore_state == st.running {
        out.push(Event::ExitRequest);
    }
    // Thread 0 waiting (for the exits, for the secondaries' naps) is not a
    // step: the model refuses those events, so they are not offered.
    match s.threads[0].phase {
        Phase::Entered => out.push(Event::SwitchIn),
        Phase::Exiting | Phase::TooLate if cfg.all_out(&vc) => out.push(Event::SwitchOut),
        Phase::Returned if vc.released => out.push(Event::Finish),
        // Modern marks the vcore EXITING while it waits (a step); seed just waits.
        Phase::Returned
            if (cfg.modern() && vc.vcore_state == st.running) || cfg.nap_wait(s, &vc).is_none() =>
        {
            out.push(Event::Release)
        }
        Phase::Host if vc.vcore_state == st.running && !vc.lock_held => out.push(Event::Enter { thread: 0 }),
        _ => {}
    }
    for t in 0..cfg.threads {
        thread_candidates(cfg, opts, s, t, may_cede, out);
    }
}

/// Whether an H_PROD of vcpu index `i` is within the bounds in `s`: the
/// vcpu was started, the vcore runs, and the prods used so far are fewer
/// than `opts.max_prods` (with `opts.defer_prods` it is tried only just
/// before that vcpu's cede: see `Search::prod_before_cede`).
pub(crate) fn may_prod(cfg: &Config, opts: &ExploreOptions, s: &State, i: usize) -> bool {
    let Some(vc) = s.vcore else { return false };
    let prods: u32 = s.vcpus.iter().flatten().map(|v| v.prods as u32).sum();
    s.vcpus[i].is_some_and(|v| v.started)
        && prods < opts.max_prods as u32
        && vc.vcore_state == cfg.variant.vcore_states().running
}

/// What thread `t` itself may do next.
fn thread_candidates(
    cfg: &Config,
    opts: &ExploreOptions,
    s: &State,
    t: u8,
    may_cede: bool,
    out: &mut Vec<Event>,
) {
    let vc = s.vcore.expect("candidates run with a vcore");
    let th = &s.threads[t as usize];
    let exit = Event::Exit {
        thread: t,
        trap: BOOK3S_INTERRUPT_HV_DECREMENTER,
    };
    match th.phase {
        Phase::Host | Phase::Spinning if t != 0 => {
            let woken = th.ipi || th.phase == Phase::Spinning;
            if woken && th.hstate.hwthread_req == 1 && th.hstate.kvm_vcpu.is_some() {
                out.push(Event::Enter { thread: t });
            }
            if th.phase == Phase::Spinning && th.hstate.hwthread_req == 0 {
                out.push(Event::ReturnToIdle { thread: t });
            }
        }
        Phase::Entered if t != 0 => {
            if vc.in_guest == 1 {
                out.push(Event::GuestEntry { thread: t });
            } else if vc.exiting() {
                out.push(exit);
            }
        }
        Phase::SwitchedIn => out.push(Event::GuestEntry { thread: t }),
        Phase::InGuest => {
            let v = th.running.and_then(|v| s.vcpus[v as usize]);
            if may_cede && v.is_some_and(|v| v.cedes < opts.cedes_per_vcpu) {
                out.push(Event::Cede { thread: t });
            }
            out.push(exit);
        }
        Phase::CedeNap => out.push(Event::Wake { thread: t }),
        Phase::NovcpuNap if th.ipi || cfg.variant == Variant::Modern => out.push(Event::Wake { thread: t }),
        Phase::Exiting | Phase::TooLate | Phase::NapCounted if t != 0 && vc.in_guest == 0 => {
            out.push(Event::Tail { thread: t })
        }
        _ => {}
    }
}

/// msgsndp from every vcpu executing in the guest to every thread that has
/// a vcpu (the guest signals only vcpus that exist), within the bound; and
/// the vcpu on a thread taking the doorbell pending for it.
pub(crate) fn doorbell_candidates(cfg: &Config, opts: &ExploreOptions, s: &State, out: &mut Vec<Event>) {
    out.clear();
    if s.mmu != Mmu::Guest {
        return;
    }
    let first = vc_first(s);
    let may_send = s.doorbells < opts.max_doorbells;
    // Who sends a msgsndp changes nothing but who may send it: the state it
    // leads to is the same whichever vcpu in the guest sends it (msgsndp sets
    // the target's DPDES bit and records the target; no check reads the
    // sender), so one sender stands for all (under the partial-order
    // reduction its chains take the next event of any thread in the guest,
    // see search.rs), unless the fault makes the sending thread matter.
    let one_sender = cfg.fault != Some(Fault::DoorbellWrongSibling);
    let mut sent = false;
    for x in 0..cfg.threads {
        let th = &s.threads[x as usize];
        let (Phase::InGuest, Some(from)) = (th.phase, th.running) else {
            continue;
        };
        if s.dpdes & (1 << x) != 0 {
            out.push(Event::TakeDoorbell { thread: x });
        }
        if !may_send || (one_sender && sent) {
            continue;
        }
        sent = true;
        for t in 0..cfg.threads {
            if s.vcpus[t as usize].is_some() {
                out.push(Event::Doorbell {
                    vcpu: first + from as u32,
                    thread: t,
                });
            }
        }
    }
}
