//! The model of the KVM Book3S HV (POWER7/8) vcore gang scheduler: one
//! physical core of 1-8 threads running one vcore, driven by explicit events
//! ([`Event`]), for the `seed`, `modern` and `prepatch` variants.
//!
//! After every step the model is viewed as a [`Snapshot`] (the same format a
//! live kernel stop produces) and checked by the shared invariant code
//! (`invariants::check_snapshot` / `check_step`), plus the invariants that
//! need history a snapshot does not carry (7, 25, 27) and the doorbell
//! delivery property (29: a doorbell sent to virtual thread N is taken by
//! vcpu first_vcpuid + N, exactly once, never by another vcpu, and is never
//! lost on the way: it stays pending in DPDES or in vc->dpdes until then).
//!
//! Not modelled (unsplit core only): split-core / dynamic micro-threading and
//! piggybacking (kvm_split_mode, VCORE_PIGGYBACK; the `exit_request` event
//! stands in for another subcore setting VCORE_EXIT_REQ), VCORE_PREEMPT and
//! VCORE_POLLING (`vcore_blocked` goes straight to VCORE_SLEEPING; seed's
//! wake of vc->wq by a new runnable vcpu is the `vcore_wake` event), the
//! VPA-update window where seed drops vc->lock,
//! signals during a run, hdec_soon taken at entry (HDEC < 512), the
//! grab-timeout and wait_for_nap-timeout error paths, and the seed runnable
//! list order (kept sorted; it only orders kvmppc_start_thread calls).

mod doorbell;
pub mod events;
mod host;
mod realmode;
pub mod state;
pub mod transitions;

use serde_json::{json, Value};

use crate::consts::*;
use crate::invariants::{self, Violation};
use crate::view::{Hstate, KvmArch, Snapshot, Thread, Vcore, Vcpu};

pub use events::{BadEvent, Event};
pub use state::{Mmu, Phase, State};
pub use transitions::{vc_first, Config, Effects, Fault, ModelError, MAX_VCPU_ID};

/// Synthetic addresses of the model's kernel objects (what the PACAs point at).
pub const KVM_ADDR: u64 = 0xc000_0000_0200_0000;
pub const VCORE_ADDR: u64 = 0xc000_0000_0300_0000;
pub const VCPU_ADDR_BASE: u64 = 0xc000_0000_0400_0000;
pub const VCPU_ADDR_STRIDE: u64 = 0x4000;
/// kvm->arch values.
pub const GUEST_LPID: u64 = 1;
pub const GUEST_SDR1: u64 = 0x0000_0000_1f00_0012;
pub const HOST_LPID: u64 = 0;
pub const HOST_SDR1: u64 = 0;

/// Invariant numbers of the model's own properties.
pub const INV_DOORBELL: u32 = 29;
pub const INV_DEADLOCK: u32 = 30;

pub fn vcpu_addr(vcpu_id: u32) -> u64 {
    VCPU_ADDR_BASE + vcpu_id as u64 * VCPU_ADDR_STRIDE
}

fn violation(invariant: u32, message: String, fields: &[(&str, Value)]) -> Violation {
    fields
        .iter()
        .fold(Violation::new(invariant, message), |v, (k, x)| {
            v.field(*k, x.clone())
        })
}

impl Config {
    /// Threads per core the kernel can run a vcore on: POWER7/POWER8 run 1,
    /// 2, 4 or 8 threads per (sub)core, and kvmhv_set_smt_mode accepts only
    /// a power of 2 up to threads_per_subcore (book3s_hv.c).
    pub const THREAD_COUNTS: [u8; 4] = [1, 2, 4, 8];

    pub fn new(variant: Variant, threads: u8, cpu_base: u32) -> Result<Config, ModelError> {
        if !Self::THREAD_COUNTS.contains(&threads) {
            return Err(ModelError::new(
                "new",
                format!("threads per core must be 1, 2, 4 or 8 (POWER7/POWER8 SMT modes), not {threads}"),
            ));
        }
        if !cpu_base.is_multiple_of(threads as u32) {
            return Err(ModelError::new(
                "new",
                format!("cpu {cpu_base} is not thread 0 of a {threads}-thread core"),
            ));
        }
        Ok(Config {
            variant,
            threads,
            cpu_base,
            fault: None,
        })
    }

    /// The state as a snapshot (the format of view.rs), with the kernel's field names and values.
    /// (Long, but one field copy per line: splitting it would only hide the mapping.)
    pub fn view(&self, s: &State, stop: Option<&str>) -> Snapshot {
        let mut out = Snapshot {
            version: None,
            variant: self.variant,
            threads_per_core: 0,
            stop: None,
            threads: Vec::new(),
            tb: None,
            tb_freq: None,
            vcores: Vec::new(),
            vcpus: Vec::new(),
            kvm: None,
        };
        self.view_into(s, stop, &mut out);
        out
    }

    /// [`Config::view`] written into `out`, reusing its vectors (the
    /// explorer builds millions of views).
    pub fn view_into(&self, s: &State, stop: Option<&str>, out: &mut Snapshot) {
        let first = vc_first(s);
        let ptr = |idx: Option<u8>| idx.map_or(0, |i| vcpu_addr(first + i as u32));
        let (lpidr, sdr1) = match s.mmu {
            Mmu::Guest => (GUEST_LPID, GUEST_SDR1),
            Mmu::Host => (HOST_LPID, HOST_SDR1),
        };
        let mut threads = std::mem::take(&mut out.threads);
        threads.clear();
        threads.extend((0..self.threads as usize).map(|t| {
            let h = &s.threads[t].hstate;
            Thread {
                cpu: self.cpu_base + t as u32,
                hw_cpu_id: self.cpu_base + t as u32,
                lpidr: Some(lpidr),
                sdr1: Some(sdr1),
                kvm_hstate: Hstate {
                    kvm_vcpu: ptr(h.kvm_vcpu),
                    kvm_vcore: if h.kvm_vcore { VCORE_ADDR } else { 0 },
                    ptid: h.ptid,
                    hwthread_req: h.hwthread_req,
                    hwthread_state: h.hwthread_state,
                    napping: h.napping,
                    in_guest: h.in_guest,
                },
                // One register per core: every thread reads the same value.
                dpdes: Some(s.dpdes as u64),
                ..Default::default()
            }
        }));
        let modern = self.variant.has_entry_exit_map();
        let mut vcores = std::mem::take(&mut out.vcores);
        vcores.clear();
        vcores.extend(s.vcore.iter().map(|vc| {
            let word = vc.entry_exit_word(modern);
            Vcore {
                addr: VCORE_ADDR,
                first_vcpuid: vc.first_vcpuid,
                pcpu: vc.pcpu,
                num_threads: vc.num_threads,
                n_runnable: vc.runq_len as u32,
                vcore_state: vc.vcore_state,
                in_guest: vc.in_guest,
                entry_exit_map: modern.then_some(word),
                entry_exit_count: (!modern).then_some(word),
                napping_threads: vc.napping_threads as u32,
                runner: Some(ptr(vc.runner)),
                n_woken: (!modern).then_some(vc.n_woken as u32),
                nap_count: (!modern).then_some(vc.nap_count as u32),
                kvm: Some(KVM_ADDR),
                dpdes: Some(vc.dpdes as u64),
                ..Default::default()
            }
        }));
        let mut vcpus = std::mem::take(&mut out.vcpus);
        vcpus.clear();
        vcpus.extend(
            s.vcpus
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i, v)))
                .map(|(i, v)| Vcpu {
                    addr: vcpu_addr(first + i as u32),
                    vcpu_id: first + i as u32,
                    vcore: VCORE_ADDR,
                    ptid: v.ptid,
                    cpu: v.cpu,
                    thread_cpu: modern.then_some(v.thread_cpu),
                    state: Some(v.state),
                    ceded: Some(v.ceded),
                }),
        );
        let mut label = out.stop.take().unwrap_or_default();
        label.clear();
        let stop = stop.map(|x| {
            label.push_str(x);
            label
        });
        *out = Snapshot {
            version: Some(2),
            tb: None,
            tb_freq: None,
            variant: self.variant,
            threads_per_core: self.threads as u32,
            stop,
            threads,
            vcores,
            vcpus,
            kvm: Some(KvmArch {
                lpid: GUEST_LPID,
                sdr1: GUEST_SDR1,
                host_lpid: Some(HOST_LPID),
                host_sdr1: Some(HOST_SDR1),
            }),
        };
    }

    /// Invariants that need the step, not just the resulting state.
    pub fn history_check(&self, prev: &State, next: &State, event: &Event, fx: &Effects) -> Vec<Violation> {
        let mut out = Vec::new();
        if next.switch_in > 1 || next.switch_out > 1 {
            out.push(violation(
                7,
                format!(
                    "MMU switched more than once per run (in {}, out {})",
                    next.switch_in, next.switch_out
                ),
                &[
                    ("switch_in", json!(next.switch_in)),
                    ("switch_out", json!(next.switch_out)),
                ],
            ));
        }
        let in_guest = |s: &State| s.vcore.map(|v| v.in_guest).unwrap_or(0);
        let mmu_event = matches!(event, Event::SwitchIn | Event::SwitchOut | Event::RunCore { .. });
        if (in_guest(prev) != in_guest(next) || prev.mmu != next.mmu) && !mmu_event {
            out.push(violation(
                7,
                format!("{event} changed vc->in_guest or the partition: only thread 0's switch may"),
                &[("in_guest", json!(in_guest(next)))],
            ));
        }
        if let (Event::Cede { thread }, true) = (event, fx.ceded_to_nap) {
            let vc = next.vcore.unwrap();
            let all = if self.variant.has_entry_exit_map() {
                vc.napping_threads == vc.entered
            } else {
                vc.napping_threads.count_ones() >= vc.entry_count()
            };
            if all {
                out.push(violation(
                    25,
                    format!("thread {thread} napped in a cede although every entered thread now naps"),
                    &[
                        ("napping_threads", json!(vc.napping_threads)),
                        ("entered", json!(vc.entered)),
                    ],
                ));
            }
        }
        if let Some(vc) = next.vcore {
            if vc.tb_offset_applied != (vc.in_guest == 1) {
                out.push(violation(
                    27,
                    "TB offset applied outside thread 0's switch-in..switch-out".into(),
                    &[
                        ("tb_offset_applied", json!(vc.tb_offset_applied)),
                        ("in_guest", json!(vc.in_guest)),
                    ],
                ));
            }
        }
        out.extend(self.doorbell_check(next, event, fx));
        out
    }

    /// Property 29 at the taking of a doorbell on thread `t` by vcpu index `v`.
    fn doorbell_taken_check(&self, next: &State, t: u32, v: u8, was_sent: bool) -> Option<Violation> {
        let first = vc_first(next);
        if v as u32 != t {
            return Some(violation(
                INV_DOORBELL,
                format!(
                    "the doorbell for thread {t} was taken by vcpu {} instead of vcpu {}",
                    first + v as u32,
                    first + t
                ),
                &[
                    ("thread", json!(t)),
                    ("intended_vcpu", json!(first + t)),
                    ("delivered_vcpu", json!(first + v as u32)),
                ],
            ));
        }
        (!was_sent).then(|| {
            violation(
                INV_DOORBELL,
                format!(
                    "vcpu {} took a doorbell that no vcpu sent to thread {t}",
                    first + t
                ),
                &[("thread", json!(t)), ("delivered_vcpu", json!(first + t))],
            )
        })
    }

    /// Property 29 on one step: a doorbell taken on thread t is taken by
    /// vcpu first_vcpuid + t and had been sent to thread t; every doorbell
    /// sent and not yet taken is still pending (DPDES while the guest
    /// partition is in, vc->dpdes outside it).
    pub fn doorbell_check(&self, next: &State, event: &Event, fx: &Effects) -> Option<Violation> {
        if let (Event::TakeDoorbell { thread }, Some(v)) = (event, fx.doorbell_taken) {
            if let Some(found) = self.doorbell_taken_check(next, *thread as u32, v, fx.doorbell_was_sent) {
                return Some(found);
            }
        }
        let first = vc_first(next);
        // A doorbell can only ever be taken on its own thread: pending while
        // its vcpu executes on another thread, it never reaches it.
        for t in (0..self.threads as usize).filter(|&t| next.db_sent & (1 << t) != 0) {
            let runs_on = (0..self.threads as usize).find(|&u| {
                next.threads[u].phase == Phase::InGuest && next.threads[u].running == Some(t as u8)
            });
            if let Some(u) = runs_on.filter(|&u| u != t) {
                return Some(violation(
                    INV_DOORBELL,
                    format!(
                        "the doorbell sent to thread {t} cannot reach vcpu {}: that vcpu runs on thread {u}",
                        first + t as u32
                    ),
                    &[
                        ("thread", json!(t)),
                        ("intended_vcpu", json!(first + t as u32)),
                        ("runs_on_thread", json!(u)),
                    ],
                ));
            }
        }
        let pending = match (next.mmu, next.vcore) {
            (Mmu::Guest, _) => next.dpdes,
            (Mmu::Host, Some(vc)) => vc.dpdes,
            (Mmu::Host, None) => 0,
        };
        let lost = next.db_sent & !pending;
        if lost == 0 {
            return None;
        }
        let t = lost.trailing_zeros();
        let stray = pending & !next.db_sent;
        let instead = if stray != 0 {
            format!(
                "; a doorbell is pending on thread {} instead",
                stray.trailing_zeros()
            )
        } else {
            String::new()
        };
        Some(violation(
            INV_DOORBELL,
            format!(
                "the doorbell sent to thread {t} is lost before vcpu {} took it ({} {pending:#x}){instead}",
                first + t,
                if next.mmu == Mmu::Guest {
                    "DPDES"
                } else {
                    "vc->dpdes"
                }
            ),
            &[
                ("thread", json!(t)),
                ("intended_vcpu", json!(first + t)),
                ("dpdes", json!(pending)),
            ],
        ))
    }

    /// Every event that is legal in `s` (doorbells included).
    pub fn enabled(&self, s: &State) -> Vec<Event> {
        let mut out = Vec::new();
        for e in self.candidates(s, true) {
            let mut c = *s;
            if self.apply(&mut c, e).is_ok() {
                out.push(e);
            }
        }
        out
    }

    /// Candidate events (legality not yet checked).
    pub fn candidates(&self, s: &State, doorbells: bool) -> Vec<Event> {
        let n = self.threads;
        let first = vc_first(s);
        let mut out = Vec::with_capacity(16 + 8 * n as usize);
        for i in 0..n {
            let id = first + i as u32;
            out.push(Event::CreateVcpu { vcpu: id });
            out.push(Event::Runnable { vcpu: id });
            out.push(Event::Block { vcpu: id });
            out.push(Event::RunCore { runner: id });
            out.push(Event::VcoreBlocked { runner: id });
            out.push(Event::VcoreWake { vcpu: id });
            out.push(Event::StartThread { vcpu: id });
            out.push(Event::Prod { vcpu: id });
        }
        out.push(Event::VcoreEntry);
        out.push(Event::SwitchIn);
        out.push(Event::ExitRequest);
        out.push(Event::SwitchOut);
        out.push(Event::Release);
        out.push(Event::Finish);
        for t in 0..n {
            out.push(Event::Enter { thread: t });
            out.push(Event::GuestEntry { thread: t });
            out.push(Event::Cede { thread: t });
            out.push(Event::Wake { thread: t });
            out.push(Event::Exit {
                thread: t,
                trap: BOOK3S_INTERRUPT_HV_DECREMENTER,
            });
            out.push(Event::Tail { thread: t });
            out.push(Event::ReturnToIdle { thread: t });
        }
        if doorbells {
            for i in 0..n {
                for t in 0..n {
                    out.push(Event::Doorbell {
                        vcpu: first + i as u32,
                        thread: t,
                    });
                }
            }
            for t in 0..n {
                out.push(Event::TakeDoorbell { thread: t });
            }
        }
        out
    }
}

/// What one applied event produced.
#[derive(Clone, Debug)]
pub struct Step {
    pub event: Event,
    pub effects: Effects,
    pub violations: Vec<Violation>,
}

/// A model you drive event by event (what the Python `Vcore` wraps).
#[derive(Clone, Debug)]
pub struct Model {
    pub config: Config,
    pub state: State,
    pub trace: Vec<Event>,
    view: Snapshot,
}

impl Model {
    pub fn new(variant: Variant, threads: u8) -> Result<Model, ModelError> {
        Model::with_cpu_base(variant, threads, 0)
    }

    pub fn with_cpu_base(variant: Variant, threads: u8, cpu_base: u32) -> Result<Model, ModelError> {
        let config = Config::new(variant, threads, cpu_base)?;
        let state = State::initial();
        let view = config.view(&state, None);
        Ok(Model {
            config,
            state,
            trace: Vec::new(),
            view,
        })
    }

    /// Apply one event; on success the new state has been checked.
    pub fn apply(&mut self, event: Event) -> Result<Step, ModelError> {
        let prev = self.state;
        let effects = self.config.apply(&mut self.state, event)?;
        let next_view = self.config.view(&self.state, Some(event.label()));
        let mut violations = invariants::check_snapshot(&next_view);
        violations.extend(invariants::check_step(&self.view, &next_view));
        violations.extend(self.config.history_check(&prev, &self.state, &event, &effects));
        self.view = next_view;
        self.trace.push(event);
        Ok(Step {
            event,
            effects,
            violations,
        })
    }

    /// Parse and apply an event given in its text form.
    pub fn apply_text(&mut self, text: &str) -> Result<Step, ModelError> {
        let event: Event = text.parse().map_err(|e: BadEvent| ModelError {
            event: text.to_string(),
            reason: e.0,
        })?;
        self.apply(event)
    }

    pub fn enabled(&self) -> Vec<Event> {
        self.config.enabled(&self.state)
    }

    /// The current state as a snapshot (stop = the last event's kernel label).
    pub fn snapshot(&self) -> &Snapshot {
        &self.view
    }

    pub fn first_vcpuid(&self) -> u32 {
        vc_first(&self.state)
    }
}

#[cfg(test)]
mod tests;
