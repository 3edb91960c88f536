//! The model's events: one per step of the kernel code that changes the
//! modelled state.  Each has a text form, e.g. `enter(thread=1)` or
//! `doorbell(vcpu=1, thread=2)`, used in explorer traces and accepted back by
//! [`Event::from_str`] so a trace can be replayed.
//!
//! Every per-event fact (text name, arguments, the kernel function or label
//! it ends at, its documentation) is declared once, in the [`events!`] table
//! below; the enum, [`Event::name`], [`Event::label`], [`Event::FORMS`],
//! `Display` and `FromStr` are generated from it.

use std::fmt;
use std::str::FromStr;

use crate::consts::BOOK3S_INTERRUPT_HV_DECREMENTER;

/// A text that is not an event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadEvent(pub String);

/// One argument type of an event: how it is parsed from a number.
trait Arg: Sized + Copy + fmt::Display {
    const WHAT: &'static str;
    fn from_u64(v: u64) -> Option<Self>;
    /// The value taken when the argument is left out (None: required).
    fn default_for(_key: &str) -> Option<Self> {
        None
    }
}

impl Arg for u8 {
    const WHAT: &'static str = "thread number";
    fn from_u64(v: u64) -> Option<Self> {
        u8::try_from(v).ok()
    }
}

impl Arg for u32 {
    const WHAT: &'static str = "number";
    fn from_u64(v: u64) -> Option<Self> {
        u32::try_from(v).ok()
    }
    fn default_for(key: &str) -> Option<Self> {
        // exit(thread=T) without a vector: the hypervisor decrementer.
        (key == "trap").then_some(BOOK3S_INTERRUPT_HV_DECREMENTER)
    }
}

fn parse_number(text: &str) -> Option<u64> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        t.parse().ok()
    }
}

/// The arguments of `name(V, key=V)`: (key or None for positional, value).
fn split_args(text: &str, bad: &dyn Fn(&str) -> BadEvent) -> Result<Vec<(Option<String>, u64)>, BadEvent> {
    let args = match text.find('(') {
        Some(open) => {
            let close = text
                .rfind(')')
                .filter(|&c| c == text.len() - 1)
                .ok_or_else(|| bad("missing ')'"))?;
            &text[open + 1..close]
        }
        None => "",
    };
    let mut out = Vec::new();
    for part in args.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (Some(k.trim().to_string()), v),
            None => (None, part),
        };
        let number = parse_number(value).ok_or_else(|| bad(&format!("{value:?} is not a number")))?;
        out.push((key, number));
    }
    Ok(out)
}

/// Match positional and named arguments to the event's `keys`.
fn match_args(
    keys: &[&str],
    args: &[(Option<String>, u64)],
    bad: &dyn Fn(&str) -> BadEvent,
) -> Result<Vec<Option<u64>>, BadEvent> {
    let mut values: Vec<Option<u64>> = vec![None; keys.len()];
    let mut next = 0usize;
    for (key, number) in args {
        let i = match key {
            Some(k) => keys
                .iter()
                .position(|key| key == k)
                .ok_or_else(|| bad(&format!("unknown argument {k:?}")))?,
            None => {
                if next >= keys.len() {
                    return Err(bad("too many arguments"));
                }
                next += 1;
                next - 1
            }
        };
        if values[i].is_some() {
            return Err(bad(&format!("argument {:?} given twice", keys[i])));
        }
        values[i] = Some(*number);
    }
    Ok(values)
}

fn take<T: Arg>(
    values: &[Option<u64>],
    i: usize,
    key: &str,
    bad: &dyn Fn(&str) -> BadEvent,
) -> Result<T, BadEvent> {
    match values[i] {
        Some(v) => T::from_u64(v).ok_or_else(|| bad(&format!("{} {v} is out of range", T::WHAT))),
        None => T::default_for(key).ok_or_else(|| bad(&format!("missing argument {key:?}"))),
    }
}

/// Declares every event once: variant, text name, fields, kernel label, form.
macro_rules! events {
    ($(
        $(#[$doc:meta])*
        $variant:ident $({ $($field:ident : $ty:ty),* })? = $name:literal, $label:literal, $form:literal;
    )*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Event {
            $( $(#[$doc])* $variant $({ $($field: $ty),* })?, )*
        }

        impl Event {
            /// The event's name, as in its text form.
            pub fn name(&self) -> &'static str {
                match self { $( Event::$variant { .. } => $name, )* }
            }

            /// The kernel function or label this event ends at (the snapshot's "stop").
            pub fn label(&self) -> &'static str {
                match self { $( Event::$variant { .. } => $label, )* }
            }

            /// Every event name with its argument names (for error messages and docs).
            pub const FORMS: &'static [&'static str] = &[$($form),*];

            /// Every event name with the kernel function or label it models.
            pub const LABELS: &'static [(&'static str, &'static str)] = &[$(($name, $label)),*];

            /// The event's arguments, by name, in the order of its form.
            pub fn args(&self) -> Vec<(&'static str, u64)> {
                match *self {
                    $( Event::$variant $({ $($field),* })? => vec![$($( (stringify!($field), $field as u64) ),*)?], )*
                }
            }
        }

        impl fmt::Display for Event {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())?;
                let args = self.args();
                if !args.is_empty() {
                    let text: Vec<String> = args
                        .iter()
                        .map(|(k, v)| if *k == "trap" { format!("{k}={v:#x}") } else { format!("{k}={v}") })
                        .collect();
                    write!(f, "({})", text.join(", "))?;
                }
                Ok(())
            }
        }

        impl Event {
            /// The event `name` with its arguments (key or None for
            /// positional, value); `what` names the input in errors.
            pub fn from_args(name: &str, args: &[(Option<String>, u64)], what: &str) -> Result<Event, BadEvent> {
                let bad = |why: &str| {
                    BadEvent(format!(
                        "bad event {what:?}: {why} (expected one of: {})",
                        Event::FORMS.join(", ")
                    ))
                };
                $(
                    if name == $name {
                        #[allow(unused_variables, unused_mut)]
                        let keys: &[&str] = &[$($(stringify!($field)),*)?];
                        #[allow(unused_variables)]
                        let values = match_args(keys, args, &bad)?;
                        #[allow(unused_mut, unused_variables, unused_assignments)]
                        let mut i = 0usize;
                        #[allow(unused_assignments)]
                        return Ok(Event::$variant $({ $($field: {
                            let v = take::<$ty>(&values, i, stringify!($field), &bad)?;
                            i += 1;
                            v
                        }),* })?);
                    }
                )*
                Err(bad("unknown event name"))
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
                let name = text.split('(').next().unwrap_or("").trim();
                let args = split_args(text, &bad)?;
                Event::from_args(name, &args, text)
            }
        }
    };
}

events! {
    /// kvmppc_core_vcpu_create_hv: create vcpu `vcpu` (its id).
    CreateVcpu { vcpu: u32 } = "create_vcpu", "kvmppc_core_vcpu_create_hv", "create_vcpu(vcpu=ID)";
    /// kvmppc_run_vcpu: the vcpu's task enters KVM_RUN (state RUNNABLE, on
    /// the runnable list; started at once if it can join a running vcore).
    Runnable { vcpu: u32 } = "runnable", "kvmppc_run_vcpu", "runnable(vcpu=ID)";
    /// kvmppc_remove_runnable while the vcore is inactive (a signal, or the
    /// task returning to userspace): state BUSY_IN_HOST.
    Block { vcpu: u32 } = "block", "kvmppc_remove_runnable", "block(vcpu=ID)";
    /// kvmppc_run_core on the runner's CPU (thread 0): reset the per-run
    /// fields, grab the secondaries (hwthread_req = 1), vc->pcpu.
    RunCore { runner: u32 } = "run_core", "kvmppc_run_core", "run_core(runner=ID)";
    /// kvmppc_vcore_blocked: every runnable vcpu has ceded, so the runner
    /// sleeps on vc->wq instead of running the core (VCORE_SLEEPING).
    VcoreBlocked { runner: u32 } = "vcore_blocked", "kvmppc_vcore_blocked", "vcore_blocked(runner=ID)";
    /// The sleeping vcore is woken because vcpu `vcpu` has work (its DEC
    /// timer, an H_PROD, an interrupt, a pending doorbell): its cede ends,
    /// VCORE_INACTIVE.
    VcoreWake { vcpu: u32 } = "vcore_wake", "kvmppc_vcore_blocked_wake", "vcore_wake(vcpu=ID)";
    /// kvmppc_start_thread for a runnable vcpu (PACA of thread pcpu+ptid).
    StartThread { vcpu: u32 } = "start_thread", "kvmppc_start_thread", "start_thread(vcpu=ID)";
    /// The end of kvmppc_run_core's start-up: thread 0 joins even without a
    /// vcpu, vcore_state = RUNNING, __kvmppc_vcore_entry is called.
    VcoreEntry = "vcore_entry", "__kvmppc_vcore_entry", "vcore_entry";
    /// A thread reaches kvmppc_hv_entry (thread 0 from __kvmppc_vcore_entry,
    /// a secondary woken by its IPI through kvm_start_guest) and counts
    /// itself in the entry word, or takes secondary_too_late.
    Enter { thread: u8 } = "enter", "kvmppc_hv_entry", "enter(thread=T)";
    /// Thread 0 switches LPIDR/SDR1 to the guest, sets vc->in_guest = 1 and
    /// loads DPDES from vc->dpdes.
    SwitchIn = "switch_in", "kvmppc_hv_entry_switch_in", "switch_in";
    /// fast_guest_return (thread with a vcpu; a secondary once vc->in_guest
    /// is set) or kvmppc_primary_no_guest (thread 0 without a vcpu).
    GuestEntry { thread: u8 } = "guest_entry", "fast_guest_return", "guest_entry(thread=T)";
    /// The vcpu on `thread` calls H_CEDE (kvmppc_h_cede; naps in kvm_do_nap).
    Cede { thread: u8 } = "cede", "kvmppc_h_cede", "cede(thread=T)";
    /// H_PROD reaches vcpu `vcpu` (arch.prodded = 1, kick if it naps).
    Prod { vcpu: u32 } = "prod", "kvmppc_h_prod", "prod(vcpu=ID)";
    /// A thread napping inside KVM wakes (cede: DEC/external/IPI/doorbell;
    /// no-vcpu thread 0: an IPI, or on modern also the end of the timeslice).
    Wake { thread: u8 } = "wake", "kvm_start_guest", "wake(thread=T)";
    /// The guest on vcpu `vcpu` sends msgsndp to thread number `thread`:
    /// the core's DPDES bit `thread` is set.
    Doorbell { vcpu: u32, thread: u8 } = "doorbell", "msgsndp", "doorbell(vcpu=ID, thread=T)";
    /// The vcpu executing on `thread` takes the doorbell pending for its
    /// thread (DPDES bit; the guest's 0xa00 interrupt, msgclrp).
    TakeDoorbell { thread: u8 } = "take_doorbell", "guest_doorbell_interrupt", "take_doorbell(thread=T)";
    /// The guest on `thread` takes an interrupt that exits to the host
    /// (`trap` is the vector; hdec_soon / kvmhv_commence_exit).
    Exit { thread: u8, trap: u32 } = "exit", "kvmhv_commence_exit", "exit(thread=T[, trap=0x980])";
    /// Modern, split core: another subcore's first exiter sets VCORE_EXIT_REQ
    /// in this vcore and IPIs its entered threads (kvmhv_commence_exit).
    ExitRequest = "exit_request", "kvmhv_interrupt_vcore", "exit_request";
    /// Thread 0, once exits == entries, switches the MMU back to the host and
    /// saves DPDES in vc->dpdes.
    SwitchOut = "switch_out", "kvmhv_switch_to_host", "switch_out";
    /// A secondary sees vc->in_guest == 0 and finishes (clears kvm_vcpu;
    /// seed: nap_count++ and nap; modern: clears kvm_vcore and spins).
    Tail { thread: u8 } = "tail", "kvm_no_guest", "tail(thread=T)";
    /// kvmppc_run_core after __kvmppc_vcore_entry returned: wait for the
    /// secondaries (kvmppc_wait_for_nap) and kvmppc_release_hwthread them all.
    Release = "release", "kvmppc_release_hwthread", "release";
    /// The rest of kvmppc_run_core / post_guest_process: exits handled,
    /// vcpus that need userspace leave the runnable list, VCORE_INACTIVE.
    Finish = "finish", "post_guest_process", "finish";
    /// Modern: a secondary spinning in kvm_no_guest sees hwthread_req == 0
    /// and returns to the idle loop (naps with KVM_HWTHREAD_IN_IDLE).
    ReturnToIdle { thread: u8 } = "return_to_idle", "idle_kvm_start_guest_return", "return_to_idle(thread=T)";
}

impl Event {
    /// The hardware thread whose own code the event runs, for the events
    /// that belong to one thread (thread 0 runs kvmppc_run_core's steps and
    /// the partition switch); None for the vcpu tasks' and the guest's
    /// events that are not tied to a thread.
    pub fn thread(&self) -> Option<u8> {
        match *self {
            Event::Enter { thread }
            | Event::GuestEntry { thread }
            | Event::Cede { thread }
            | Event::Wake { thread }
            | Event::TakeDoorbell { thread }
            | Event::Exit { thread, .. }
            | Event::Tail { thread }
            | Event::ReturnToIdle { thread } => Some(thread),
            Event::VcoreEntry | Event::SwitchIn | Event::SwitchOut | Event::Release | Event::Finish => {
                Some(0)
            }
            _ => None,
        }
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
            Event::TakeDoorbell { thread: 2 },
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
        assert_eq!(
            Event::Exit {
                thread: 1,
                trap: 0xc00
            }
            .to_string(),
            "exit(thread=1, trap=0xc00)"
        );
        assert_eq!(Event::FORMS.len(), Event::LABELS.len());
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
            "switch_in(1)",
            "enter(thread=1",
        ] {
            let err = text.parse::<Event>().unwrap_err().to_string();
            assert!(err.contains("bad event"), "{text}: {err}");
        }
    }
}
