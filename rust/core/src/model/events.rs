//! The model's events: one per step of the kernel code that changes the
//! modelled state.  Each has a text form, e.g. `enter(thread=1)` or
//! `doorbell(vcpu=1, thread=2)`, used in explorer traces and accepted back by
//! [`Event::from_str`] so a trace can be replayed.

use std::fmt;
use std::str::FromStr;

use crate::consts::BOOK3S_INTERRUPT_HV_DECREMENTER;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// kvmppc_core_vcpu_create_hv: create vcpu `vcpu` (its id).
    CreateVcpu { vcpu: u32 },
    /// kvmppc_run_vcpu: the vcpu's task enters KVM_RUN (state RUNNABLE, on
    /// the runnable list; started at once if it can join a running vcore).
    Runnable { vcpu: u32 },
    /// kvmppc_remove_runnable while the vcore is inactive (a signal, or the
    /// task returning to userspace): state BUSY_IN_HOST.
    Block { vcpu: u32 },
    /// kvmppc_run_core on the runner's CPU (thread 0): reset the per-run
    /// fields, grab the secondaries (hwthread_req = 1), vc->pcpu.
    RunCore { runner: u32 },
    /// kvmppc_vcore_blocked: every runnable vcpu has ceded, so the runner
    /// sleeps on vc->wq instead of running the core (VCORE_SLEEPING).
    VcoreBlocked { runner: u32 },
    /// The sleeping vcore is woken because vcpu `vcpu` has work (its DEC
    /// timer, an H_PROD, an interrupt): its cede ends, VCORE_INACTIVE.
    VcoreWake { vcpu: u32 },
    /// kvmppc_start_thread for a runnable vcpu (PACA of thread pcpu+ptid).
    StartThread { vcpu: u32 },
    /// The end of kvmppc_run_core's start-up: thread 0 joins even without a
    /// vcpu, vcore_state = RUNNING, __kvmppc_vcore_entry is called.
    VcoreEntry,
    /// A thread reaches kvmppc_hv_entry (thread 0 from __kvmppc_vcore_entry,
    /// a secondary woken by its IPI through kvm_start_guest) and counts
    /// itself in the entry word, or takes secondary_too_late.
    Enter { thread: u8 },
    /// Thread 0 switches LPIDR/SDR1 to the guest and sets vc->in_guest = 1.
    SwitchIn,
    /// fast_guest_return (thread with a vcpu; a secondary once vc->in_guest
    /// is set) or kvmppc_primary_no_guest (thread 0 without a vcpu).
    GuestEntry { thread: u8 },
    /// The vcpu on `thread` calls H_CEDE (kvmppc_h_cede).
    Cede { thread: u8 },
    /// H_PROD reaches vcpu `vcpu` (arch.prodded = 1, kick if it naps).
    Prod { vcpu: u32 },
    /// A thread napping inside KVM wakes (cede: DEC/external/IPI; no-vcpu
    /// thread 0: an IPI, or on modern also the end of the timeslice).
    Wake { thread: u8 },
    /// The guest on vcpu `vcpu` sends msgsndp to thread number `thread`.
    Doorbell { vcpu: u32, thread: u8 },
    /// The guest on `thread` takes an interrupt that exits to the host
    /// (`trap` is the vector; hdec_soon / kvmhv_commence_exit).
    Exit { thread: u8, trap: u32 },
    /// Modern, split core: another subcore's first exiter sets VCORE_EXIT_REQ
    /// in this vcore and IPIs its entered threads (kvmhv_commence_exit).
    ExitRequest,
    /// Thread 0, once exits == entries, switches the MMU back to the host.
    SwitchOut,
    /// A secondary sees vc->in_guest == 0 and finishes (clears kvm_vcpu;
    /// seed: nap_count++ and nap; modern: clears kvm_vcore and spins).
    Tail { thread: u8 },
    /// kvmppc_run_core after __kvmppc_vcore_entry returned: wait for the
    /// secondaries (kvmppc_wait_for_nap) and kvmppc_release_hwthread them all.
    Release,
    /// The rest of kvmppc_run_core / post_guest_process: exits handled,
    /// vcpus that need userspace leave the runnable list, VCORE_INACTIVE.
    Finish,
    /// Modern: a secondary spinning in kvm_no_guest sees hwthread_req == 0
    /// and returns to the idle loop (naps with KVM_HWTHREAD_IN_IDLE).
    ReturnToIdle { thread: u8 },
}

impl Event {
    /// The event's name, as in its text form.
    pub fn name(&self) -> &'static str {
        match self {
            Event::CreateVcpu { .. } => "create_vcpu",
            Event::Runnable { .. } => "runnable",
            Event::Block { .. } => "block",
            Event::RunCore { .. } => "run_core",
            Event::VcoreBlocked { .. } => "vcore_blocked",
            Event::VcoreWake { .. } => "vcore_wake",
            Event::StartThread { .. } => "start_thread",
            Event::VcoreEntry => "vcore_entry",
            Event::Enter { .. } => "enter",
            Event::SwitchIn => "switch_in",
            Event::GuestEntry { .. } => "guest_entry",
            Event::Cede { .. } => "cede",
            Event::Prod { .. } => "prod",
            Event::Wake { .. } => "wake",
            Event::Doorbell { .. } => "doorbell",
            Event::Exit { .. } => "exit",
            Event::ExitRequest => "exit_request",
            Event::SwitchOut => "switch_out",
            Event::Tail { .. } => "tail",
            Event::Release => "release",
            Event::Finish => "finish",
            Event::ReturnToIdle { .. } => "return_to_idle",
        }
    }

    /// The kernel function or label this event ends at (the snapshot's "stop").
    pub fn label(&self) -> &'static str {
        match self {
            Event::CreateVcpu { .. } => "kvmppc_core_vcpu_create_hv",
            Event::Runnable { .. } => "kvmppc_run_vcpu",
            Event::Block { .. } => "kvmppc_remove_runnable",
            Event::RunCore { .. } => "kvmppc_run_core",
            Event::VcoreBlocked { .. } => "kvmppc_vcore_blocked",
            Event::VcoreWake { .. } => "kvmppc_vcore_blocked_wake",
            Event::StartThread { .. } => "kvmppc_start_thread",
            Event::VcoreEntry => "__kvmppc_vcore_entry",
            Event::Enter { .. } => "kvmppc_hv_entry",
            Event::SwitchIn => "kvmppc_hv_entry_switch_in",
            Event::GuestEntry { .. } => "fast_guest_return",
            Event::Cede { .. } => "kvmppc_h_cede",
            Event::Prod { .. } => "h_prod",
            Event::Wake { .. } => "kvm_start_guest",
            Event::Doorbell { .. } => "msgsndp",
            Event::Exit { .. } => "kvmhv_commence_exit",
            Event::ExitRequest => "kvmhv_interrupt_vcore",
            Event::SwitchOut => "kvmhv_switch_to_host",
            Event::Tail { .. } => "kvm_no_guest",
            Event::Release => "kvmppc_release_hwthread",
            Event::Finish => "post_guest_process",
            Event::ReturnToIdle { .. } => "idle_kvm_start_guest_return",
        }
    }

    /// Every event name with its argument names (for error messages and docs).
    pub const FORMS: &'static [&'static str] = &[
        "create_vcpu(vcpu=ID)",
        "runnable(vcpu=ID)",
        "block(vcpu=ID)",
        "run_core(runner=ID)",
        "vcore_blocked(runner=ID)",
        "vcore_wake(vcpu=ID)",
        "start_thread(vcpu=ID)",
        "vcore_entry",
        "enter(thread=T)",
        "switch_in",
        "guest_entry(thread=T)",
        "cede(thread=T)",
        "prod(vcpu=ID)",
        "wake(thread=T)",
        "doorbell(vcpu=ID, thread=T)",
        "exit(thread=T[, trap=0x980])",
        "exit_request",
        "switch_out",
        "tail(thread=T)",
        "release",
        "finish",
        "return_to_idle(thread=T)",
    ];
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.name();
        match *self {
            Event::CreateVcpu { vcpu }
            | Event::Runnable { vcpu }
            | Event::Block { vcpu }
            | Event::StartThread { vcpu }
            | Event::VcoreWake { vcpu }
            | Event::Prod { vcpu } => write!(f, "{n}(vcpu={vcpu})"),
            Event::RunCore { runner } | Event::VcoreBlocked { runner } => write!(f, "{n}(runner={runner})"),
            Event::Enter { thread }
            | Event::GuestEntry { thread }
            | Event::Cede { thread }
            | Event::Wake { thread }
            | Event::Tail { thread }
            | Event::ReturnToIdle { thread } => write!(f, "{n}(thread={thread})"),
            Event::Doorbell { vcpu, thread } => write!(f, "{n}(vcpu={vcpu}, thread={thread})"),
            Event::Exit { thread, trap } => write!(f, "{n}(thread={thread}, trap={trap:#x})"),
            Event::VcoreEntry
            | Event::SwitchIn
            | Event::ExitRequest
            | Event::SwitchOut
            | Event::Release
            | Event::Finish => f.write_str(n),
        }
    }
}

/// A text that is not an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadEvent(pub String);

impl fmt::Display for BadEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadEvent {}

fn parse_number(text: &str) -> Option<u64> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        t.parse().ok()
    }
}

impl FromStr for Event {
    type Err = BadEvent;

    /// Parse `name`, `name(V)`, `name(key=V, key=V)`; numbers in decimal or 0x hex.
    fn from_str(text: &str) -> Result<Self, BadEvent> {
        let text = text.trim();
        let bad = |why: &str| {
            BadEvent(format!(
                "bad event {text:?}: {why} (expected one of: {})",
                Event::FORMS.join(", ")
            ))
        };
        let (name, args) = match text.find('(') {
            Some(open) => {
                let close = text
                    .rfind(')')
                    .filter(|&c| c == text.len() - 1)
                    .ok_or_else(|| bad("missing ')'"))?;
                (text[..open].trim(), &text[open + 1..close])
            }
            None => (text, ""),
        };
        // Positional or key=value arguments, in the order of the event's form.
        let mut positional: Vec<u64> = Vec::new();
        let mut named: Vec<(String, u64)> = Vec::new();
        for part in args.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = match part.split_once('=') {
                Some((k, v)) => (Some(k.trim().to_string()), v),
                None => (None, part),
            };
            let number = parse_number(value).ok_or_else(|| bad(&format!("{value:?} is not a number")))?;
            match key {
                Some(k) => named.push((k, number)),
                None => positional.push(number),
            }
        }
        let keys: &[&str] = match name {
            "create_vcpu" | "runnable" | "block" | "start_thread" | "prod" | "vcore_wake" => &["vcpu"],
            "run_core" | "vcore_blocked" => &["runner"],
            "enter" | "guest_entry" | "cede" | "wake" | "tail" | "return_to_idle" => &["thread"],
            "doorbell" => &["vcpu", "thread"],
            "exit" => &["thread", "trap"],
            "vcore_entry" | "switch_in" | "exit_request" | "switch_out" | "release" | "finish" => &[],
            _ => return Err(bad("unknown event name")),
        };
        if positional.len() > keys.len() {
            return Err(bad("too many arguments"));
        }
        let mut values: Vec<Option<u64>> = vec![None; keys.len()];
        for (i, v) in positional.into_iter().enumerate() {
            values[i] = Some(v);
        }
        for (k, v) in named {
            let i = keys
                .iter()
                .position(|key| *key == k)
                .ok_or_else(|| bad(&format!("unknown argument {k:?}")))?;
            if values[i].is_some() {
                return Err(bad(&format!("argument {k:?} given twice")));
            }
            values[i] = Some(v);
        }
        let arg = |i: usize| -> Result<u64, BadEvent> {
            values[i].ok_or_else(|| bad(&format!("missing argument {:?}", keys[i])))
        };
        let vcpu = |i: usize| -> Result<u32, BadEvent> {
            u32::try_from(arg(i)?).map_err(|_| bad("vcpu id out of range"))
        };
        let thread = |i: usize| -> Result<u8, BadEvent> {
            u8::try_from(arg(i)?).map_err(|_| bad("thread number out of range"))
        };
        Ok(match name {
            "create_vcpu" => Event::CreateVcpu { vcpu: vcpu(0)? },
            "runnable" => Event::Runnable { vcpu: vcpu(0)? },
            "block" => Event::Block { vcpu: vcpu(0)? },
            "start_thread" => Event::StartThread { vcpu: vcpu(0)? },
            "prod" => Event::Prod { vcpu: vcpu(0)? },
            "run_core" => Event::RunCore { runner: vcpu(0)? },
            "vcore_blocked" => Event::VcoreBlocked { runner: vcpu(0)? },
            "vcore_wake" => Event::VcoreWake { vcpu: vcpu(0)? },
            "enter" => Event::Enter { thread: thread(0)? },
            "guest_entry" => Event::GuestEntry { thread: thread(0)? },
            "cede" => Event::Cede { thread: thread(0)? },
            "wake" => Event::Wake { thread: thread(0)? },
            "tail" => Event::Tail { thread: thread(0)? },
            "return_to_idle" => Event::ReturnToIdle { thread: thread(0)? },
            "doorbell" => Event::Doorbell {
                vcpu: vcpu(0)?,
                thread: thread(1)?,
            },
            "exit" => Event::Exit {
                thread: thread(0)?,
                trap: match values[1] {
                    None => BOOK3S_INTERRUPT_HV_DECREMENTER,
                    Some(t) => u32::try_from(t).map_err(|_| bad("trap out of range"))?,
                },
            },
            "vcore_entry" => Event::VcoreEntry,
            "switch_in" => Event::SwitchIn,
            "exit_request" => Event::ExitRequest,
            "switch_out" => Event::SwitchOut,
            "release" => Event::Release,
            "finish" => Event::Finish,
            _ => unreachable!("names checked above"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let events = [
            Event::CreateVcpu { vcpu: 3 },
            Event::RunCore { runner: 1 },
            Event::VcoreEntry,
            Event::Doorbell { vcpu: 1, thread: 2 },
            Event::Exit {
                thread: 2,
                trap: 0xc00,
            },
            Event::ReturnToIdle { thread: 7 },
        ];
        for e in events {
            assert_eq!(e.to_string().parse::<Event>().unwrap(), e);
        }
        assert_eq!(
            "exit(1)".parse::<Event>().unwrap(),
            Event::Exit {
                thread: 1,
                trap: 0x980
            }
        );
        assert_eq!(
            "doorbell(1, 2)".parse::<Event>().unwrap(),
            Event::Doorbell { vcpu: 1, thread: 2 }
        );
    }

    #[test]
    fn bad_text_is_a_clear_error() {
        for text in [
            "",
            "fly(1)",
            "enter(",
            "enter(x)",
            "enter(thread=1, thread=2)",
            "enter(300)",
            "cede()",
        ] {
            let err = text.parse::<Event>().unwrap_err().to_string();
            assert!(err.contains("bad event"), "{text}: {err}");
        }
    }
}
