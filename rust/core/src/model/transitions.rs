//! The transition function: one [`Event`] applied to a [`State`], checked for
//! legality first (an illegal event leaves the state untouched and returns a
//! [`ModelError`] saying why).  Each event is one function named after the
//! kernel function it models: the host side (book3s_hv.c) in
//! [`super::host`], the real-mode side (book3s_hv_rmhandlers.S) in
//! [`super::realmode`].  Variant differences are handled where the kernels
//! differ, each with the function/label it comes from:
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
//!
//! Doorbells (every variant with POWER8 support): DPDES is one register per
//! core, bit N for thread N ("DPDES and VTB are shared between threads",
//! book3s_hv_rmhandlers.S).  msgsndp sets the bit of the named thread, the
//! vcpu executing on that thread takes it, a ceded nap is woken by it
//! (LPCR[PECEDP]); thread 0 saves DPDES in vc->dpdes at the switch back to
//! the host and loads it again at the next switch-in.

use crate::consts::*;
use crate::model::events::Event;
use crate::model::state::State;

/// vcpu ids the kernel accepts on POWER8: KVM_MAX_VCPU_IDS =
/// MAX_SMT_THREADS * KVM_MAX_VCORES (arch/powerpc/include/asm/kvm_host.h),
/// with KVM_MAX_VCORES = NR_CPUS = 2048 in Debian's ppc64el config.
pub const MAX_VCPU_ID: u32 = (MAX_SMT_THREADS as u32) * 2048;

/// Why an event cannot happen in the current state (or a bad parameter).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("illegal event {event}: {reason}")]
pub struct ModelError {
    pub event: String,
    pub reason: String,
}

impl ModelError {
    pub fn new(event: impl Into<String>, reason: impl Into<String>) -> Self {
        ModelError {
            event: event.into(),
            reason: reason.into(),
        }
    }
}

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

macro_rules! faults {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, [$($v:ident),*], $source:literal, $rule:literal; )*) => {
        /// Deliberate bugs the model can be run with: each is a class of
        /// real bug, named after what breaks, with the fix that removed it
        /// (or, where no fixing commit is known, where the rule it breaks is).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Fault { $( $(#[$doc])* $variant, )* }

        impl Fault {
            pub const ALL: &'static [Fault] = &[$(Fault::$variant),*];

            /// The `--fault` name.
            pub fn name(self) -> &'static str {
                match self { $( Fault::$variant => $name, )* }
            }

            /// The public commit that fixed the real bug ("Linux 7b444c6710c6")
            /// or, when none is known, where the kernel's rule is ("Linux
            /// book3s_hv_rmhandlers.S kvmhv_commence_exit").
            pub fn source(self) -> &'static str {
                match self { $( Fault::$variant => $source, )* }
            }

            /// The rule the fault breaks, in a few words.
            pub fn rule(self) -> &'static str {
                match self { $( Fault::$variant => $rule, )* }
            }

            /// The kernel variants that have the code this fault breaks.
            pub fn variants(self) -> &'static [Variant] {
                match self { $( Fault::$variant => &[$(Variant::$v),*], )* }
            }
        }
    };
}

impl Fault {
    /// The commit that fixed the real bug ("QEMU 06229545f55a"), when
    /// [`Fault::source`] names one (its last word is a 12-digit commit id).
    pub fn fixed_by(self) -> Option<&'static str> {
        let id = self.source().rsplit(' ').next().unwrap_or("");
        (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| self.source())
    }

    /// Why the fault is not offered for variant `v`, or None when `v` has
    /// the code it breaks ([`Fault::variants`]).
    pub fn not_modelled(self, v: Variant) -> Option<String> {
        if self.variants().contains(&v) {
            return None;
        }
        let why = match (self, v) {
            (Fault::NoExitIpi, Variant::Modern) => {
                "the modern kernel sends these IPIs too (book3s_hv_builtin.c kvmhv_commence_exit), but its \
                 threads also leave their naps and the guest on the hypervisor decrementer, so in the model a \
                 missing IPI only delays the exit and no invariant of the model can see it; on a live kernel \
                 invariant 45 judges every first exit's msgsnd (pyvcore mutants --run no-exit-ipi)"
            }
            (Fault::NapCountedBeforeClear, Variant::Modern) => {
                "the modern kernel keeps no vc->nap_count: kvmppc_wait_for_nap (book3s_hv.c) waits until \
                 each secondary's PACA has cleared kvm_hstate.kvm_vcore"
            }
            _ => "the variant does not have the code it breaks",
        };
        let names: Vec<&str> = self.variants().iter().map(|v| v.name()).collect();
        Some(format!(
            "fault {} is not modelled for {v}: {why} (it applies to {})",
            self.name(),
            names.join(", ")
        ))
    }

    /// What the fault undoes, as it reads after "injected (": "the bug fixed
    /// by COMMIT: RULE" when the fix is known, else "breaks the rule in
    /// PLACE: RULE".
    pub fn description(self) -> String {
        match self.fixed_by() {
            Some(commit) => format!("the bug fixed by {commit}: {}", self.rule()),
            None => format!("breaks the rule in {}: {}", self.source(), self.rule()),
        }
    }
}

faults! {
    /// kvmppc_h_cede naps even when every entered thread would then nap.
    NoCedeExit = "no-cede-exit", [Seed, Modern, Prepatch], "Linux book3s_hv_rmhandlers.S kvmppc_h_cede", "do not nap when every entered thread would then be napping (kvm_cede_exit; in e0b7ec058c0e and before)";
    /// Thread 0 switches the MMU back without waiting for exits == entries.
    EarlySwitchOut = "early-switch-out", [Seed, Modern, Prepatch], "Linux book3s_hv_rmhandlers.S", "the primary waits for entry == exit count before switching the partition back";
    /// The first exiter does not IPI the napping threads (seed; the modern
    /// kernel's naps also wake on HDEC, so the IPIs only speed it up).
    NoExitIpi = "no-exit-ipi", [Seed, Prepatch], "Linux book3s_hv_rmhandlers.S kvmhv_commence_exit", "the first exiter pokes the other threads";
    /// kvmppc_start_thread runs for a secondary before every sibling thread
    /// was grabbed (hwthread_req = 1): each thread is grabbed by its own start.
    StartBeforeGrab = "start-before-grab", [Seed, Modern, Prepatch], "Linux 7b444c6710c6", "grab every secondary before starting any";
    /// A secondary counts itself in vc->nap_count before it clears its
    /// PACA's kvm_vcpu (seed), so kvmppc_wait_for_nap may release the core
    /// while the thread still holds the vcpu.
    NapCountedBeforeClear = "nap-counted-before-clear", [Seed, Prepatch], "Linux 7b444c6710c6", "clear kvm_vcpu before nap_count++";
    /// kvmppc_wait_for_nap waits only for the threads started by
    /// kvmppc_run_core itself: latecomers are released while still in KVM.
    LatecomerReleasedEarly = "latecomer-released-early", [Seed, Modern, Prepatch], "Linux 2f12f0343684", "wait for the latecomers too";
    /// The switch back to the host leaves vc->in_guest at 1.
    InGuestNotCleared = "in-guest-not-cleared", [Seed, Modern, Prepatch], "Linux 7fe4e1176dfe", "clear vc->in_guest at the switch back";
    /// msgsndp to thread N sets the DPDES bit of the sending thread instead.
    DoorbellWrongSibling = "doorbell-wrong-sibling", [Seed, Modern, Prepatch], "QEMU 0324d236d291", "target/ppc: msgsndp/DPDES targeting SMT siblings";
    /// A doorbell that wakes a thread napping in a cede is consumed by the
    /// wake-up and never reaches the vcpu.
    DoorbellLostOnWake = "doorbell-lost-on-wake", [Seed, Modern, Prepatch], "QEMU 06229545f55a", "target/ppc: doorbell lost on wakeup from powersave";
}

impl Fault {
    pub fn parse(name: &str) -> Result<Fault, String> {
        Fault::ALL
            .iter()
            .copied()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!("unknown fault {name:?} (expected one of: {})", names.join(", "))
            })
    }
}

/// What an event did that is not in the state (for the Python API and for
/// the history invariants).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// TakeDoorbell: the vcpu index that took the doorbell.
    pub doorbell_taken: Option<u8>,
    /// TakeDoorbell: whether a doorbell had really been sent to that thread.
    pub doorbell_was_sent: bool,
    /// Cede: whether it napped (false = returned at once or exited).
    pub ceded_to_nap: bool,
}

pub(crate) type Outcome = Result<Effects, String>;

impl Config {
    pub(crate) fn modern(&self) -> bool {
        self.variant == Variant::Modern
    }

    pub(crate) fn prepatch(&self) -> bool {
        self.variant == Variant::Prepatch
    }

    pub(crate) fn faulty(&self, f: Fault) -> bool {
        self.fault == Some(f)
    }

    pub(crate) fn states(&self) -> &'static VcoreStates {
        self.variant.vcore_states()
    }

    /// The state after `event` and its effects, or None when the event is
    /// illegal in `s` (the explorer's path: one copy of the state, and the
    /// reason is dropped).
    pub(crate) fn after(&self, s: &State, event: Event) -> Option<(State, Effects)> {
        let mut next = *s;
        let effects = self.transition(&mut next, event).ok()?;
        Some((next, effects))
    }

    /// `s` followed by `event`, written into `out` (a buffer the caller
    /// reuses: no copy is returned), with its effects; None when the event
    /// is illegal in `s` (`out` then holds no useful state).
    pub(crate) fn after_into(&self, s: &State, event: Event, out: &mut State) -> Option<Effects> {
        *out = *s;
        self.transition(out, event).ok()
    }

    /// Apply `event` to `s`.  On error `s` is unchanged.
    pub fn apply(&self, s: &mut State, event: Event) -> Result<Effects, ModelError> {
        let mut next = *s;
        let effects = self
            .transition(&mut next, event)
            .map_err(|reason| ModelError::new(event.to_string(), reason))?;
        *s = next;
        Ok(effects)
    }

    /// One event: the kernel function it models.
    fn transition(&self, s: &mut State, event: Event) -> Outcome {
        match event {
            Event::CreateVcpu { vcpu } => self.kvmppc_core_vcpu_create_hv(s, vcpu),
            Event::Runnable { vcpu } => self.kvmppc_run_vcpu(s, vcpu),
            Event::Block { vcpu } => self.kvmppc_remove_runnable(s, vcpu),
            Event::RunCore { runner } => self.kvmppc_run_core(s, runner),
            Event::VcoreBlocked { runner } => self.kvmppc_vcore_blocked(s, runner),
            Event::VcoreWake { vcpu } => self.kvmppc_vcore_wakeup(s, vcpu),
            Event::StartThread { vcpu } => self.kvmppc_start_thread(s, vcpu),
            Event::VcoreEntry => self.kvmppc_vcore_entry(s),
            Event::Enter { thread } => self.kvmppc_hv_entry(s, thread),
            Event::SwitchIn => self.kvmppc_hv_entry_switch_in(s),
            Event::GuestEntry { thread } => self.fast_guest_return(s, thread),
            Event::Cede { thread } => self.kvmppc_h_cede(s, thread),
            Event::Prod { vcpu } => self.kvmppc_h_prod(s, vcpu),
            Event::Wake { thread } => self.kvm_start_guest(s, thread),
            Event::Doorbell { vcpu, thread } => self.msgsndp(s, vcpu, thread),
            Event::TakeDoorbell { thread } => self.guest_doorbell_interrupt(s, thread),
            Event::Exit { thread, trap } => self.kvmhv_commence_exit(s, thread, trap),
            Event::ExitRequest => self.kvmhv_interrupt_vcore(s),
            Event::SwitchOut => self.kvmhv_switch_to_host(s),
            Event::Tail { thread } => self.kvm_no_guest(s, thread),
            Event::Release => self.kvmppc_wait_for_nap(s),
            Event::Finish => self.post_guest_process(s),
            Event::ReturnToIdle { thread } => self.kvm_no_guest_idle_return(s, thread),
        }
    }

    pub(crate) fn thread_index(&self, thread: u8) -> Result<usize, String> {
        if thread >= self.threads {
            return Err(format!(
                "thread {thread} does not exist (the core has threads 0..{})",
                self.threads - 1
            ));
        }
        Ok(thread as usize)
    }

    pub(crate) fn vcpu_index(&self, s: &State, vcpu: u32) -> Result<u8, String> {
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
}

pub(crate) fn vm_trap(s: &mut State, v: u8, trap: u32) {
    s.vcpus[v as usize].as_mut().unwrap().trap = trap;
}

/// first_vcpuid lives in the vcore: kept beside it in the state.
pub fn vc_first(s: &State) -> u32 {
    s.vcore.as_ref().map(|vc| vc.first_vcpuid).unwrap_or(0)
}
