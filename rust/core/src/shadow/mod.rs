//! The continuous trace: a shadow of the KVM Book3S HV scheduler state kept
//! from every store the guest's kernel makes, checked after every change.
//!
//! A QEMU TCG plugin (crate `pyvcore-plugin`) hands each store whose
//! physical address falls in a watched page to [`Shadow::store`], and each
//! `mtspr` to LPIDR/SDR1/DPDES and `msgsnd`/`msgsndp` to
//! [`Shadow::register`].  The shadow decodes the store into field changes
//! ([`decode`]), follows pointers as they are stored (`paca_ptrs` -> each
//! PACA's `kvm_hstate` -> the vcores and vcpus it points at), and after each
//! change runs, in process:
//!
//! * the snapshot invariants ([`crate::invariants::check_snapshot`]) on the
//!   new state, as a [`crate::view::Snapshot`];
//! * the step invariants between the state before and after:
//!   [`crate::invariants::check_event_step`] (11, 19, 23) and
//!   [`checks::StepChecker::step`] (7, 12, 13), now exactly one store apart;
//! * the liveness bounds ([`checks::Bounds`], in timebase ticks, on the
//!   host's timebase: [`CoreState::host_tb`]).
//!
//! A violation carries the last events before it (a ring of
//! [`RING`] events): the counterexample, from the real kernel.
//!
//! # The event log (format `pyvcore-events`, version 1)
//!
//! JSON Lines.  The first line is a header object:
//!
//! ```json
//! {"format": "pyvcore-events", "version": 1, "variant": "modern",
//!  "threads_per_core": 4, "tb_freq": 512000000, ...}
//! ```
//!
//! (any further keys describe the run: `scenario`, `qemu`, `kernel`).
//! Every other line is one change of one watched field:
//!
//! ```json
//! {"seq": 17, "tb": 9148512345, "cpu": 1, "pc": "0xc000000000114bc0",
//!  "field": "threads[1].kvm_hstate.in_guest", "old": 0, "new": 4}
//! ```
//!
//! * `seq`: the store (or register event) that made the change: 1, 2,
//!   3...; the changes of one store (an 8-byte store covers several u8
//!   fields; a pointer store also reports the fields of the object it
//!   points at) share it, and are checked together;
//! * `tb`: the timebase of the storing thread (ticks; `tb_freq` per second),
//!   the TB register as read: while thread 0 runs a vcore with a timebase
//!   offset it is the guest's, and the checks that time (liveness, the
//!   settling of a deferred violation) take the offset off with the
//!   vcore's `tb_offset` / `tb_offset_applied` events
//!   ([`CoreState::host_tb`]);
//! * `cpu`: the hardware thread (QEMU vCPU index = thread of the core);
//! * `pc`: the address of the storing instruction (hex string);
//! * `field`: `paca_ptrs`, `paca_ptrs[N]`, `threads[N].kvm_hstate.F`,
//!   `threads[N].R` (R: `lpidr`, `sdr1`, `dpdes` read from the thread;
//!   `mtspr_lpidr`, `mtspr_sdr1`, `mtspr_dpdes` written by it; `msgsnd`,
//!   `msgsndp` a doorbell it sent, the value being the target;
//!   `kvmhv_commence_exit` a call it made to that function, the value
//!   being the `trap` argument),
//!   `vcores[0xADDR].F`, `vcpus[0xADDR].F` with the kernel's member names
//!   (`vcpus[..].ptid` is `arch.ptid`);
//! * `old`, `new`: the value before and after; `old` is `null` when the
//!   field was just found (its value read when its object was first
//!   pointed at).  Pointers and registers are hex strings, the rest
//!   integers (signed fields such as `vcpu.cpu` may be -1); readers accept
//!   both.
//!
//! A line `{"seq": S, "behind": [FIELD, ...]}` after the events of store
//! `S` says that, when they were checked, guest memory already held other
//! values for those fields (stores whose callbacks were still coming): the
//! snapshot violations naming them were deferred ([`settle`]).
//!
//! The last line may be `{"end": true, "tb": T}`: the trace ended at `T`
//! (liveness is judged up to there).  `pyvcore check` replays a log through
//! [`Shadow::replay`] and reports the same violations as the live run.

pub mod checks;
pub mod decode;
pub mod exit_ipi;
pub mod field;
pub mod insn;
pub mod layout;
pub mod log;
pub mod record;
pub mod settle;
pub mod state;
#[cfg(test)]
mod tests;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::io::Write;

use crate::consts::Variant;
use crate::invariants::{check_event_step, check_snapshot, Violation};
use crate::view::Snapshot;

pub use checks::{Bounds, StepChecker};
pub use decode::{phys, Change, Decoder, Memory, NoMemory};
pub use field::{CField, FieldRef, HField, Reg, VField};
pub use layout::{Symbolizer, WatchLayout};
pub use record::{Edge, Event, Recorded, Stats, MAX_EDGES, MAX_LISTED, MAX_RECORDED, MAX_STATES, RING};
pub use settle::{Behind, Settle};
pub use state::{CoreState, Inflight};

/// The shadow, its checks and its records.
pub struct Shadow {
    decoder: Option<Decoder>,
    state: CoreState,
    prev: Snapshot,
    active: HashSet<(u32, String)>,
    checker: StepChecker,
    pub bounds: Bounds,
    pub tb_freq: u64,
    ring: VecDeque<Event>,
    seq: u64,
    pub stats: Stats,
    states: HashSet<u64>,
    edges: BTreeMap<Edge, u64>,
    recorded: Vec<Recorded>,
    log: Option<Box<dyn Write + Send>>,
    settle: Settle,
    /// The `tb` of the last event applied (raw).
    last_event_tb: u64,
}

/// POWER8's timebase frequency (Hz).
pub const TB_FREQ_POWER8: u64 = 512_000_000;

impl Shadow {
    /// A live shadow: stores are decoded with `layout`.
    pub fn new(layout: WatchLayout, threads_per_core: usize, tb_freq: u64) -> Self {
        let variant = layout.variant;
        let mut s = Self::replay(variant, threads_per_core, tb_freq);
        s.decoder = Some(Decoder::new(layout, threads_per_core));
        s
    }

    /// A shadow fed with events only (replaying a log, tests).
    pub fn replay(variant: Variant, threads_per_core: usize, tb_freq: u64) -> Self {
        let state = CoreState::new(variant, threads_per_core);
        let prev = state.snapshot();
        Shadow {
            decoder: None,
            state,
            prev,
            active: HashSet::new(),
            checker: StepChecker::default(),
            bounds: Bounds::default(),
            tb_freq,
            ring: VecDeque::with_capacity(RING),
            seq: 0,
            stats: Stats::default(),
            states: HashSet::new(),
            edges: BTreeMap::new(),
            recorded: Vec::new(),
            log: None,
            settle: Settle::default(),
            last_event_tb: 0,
        }
    }

    pub fn state(&self) -> &CoreState {
        &self.state
    }

    pub fn decoder(&self) -> Option<&Decoder> {
        self.decoder.as_ref()
    }

    pub fn violations(&self) -> &[Recorded] {
        &self.recorded
    }

    pub fn edges(&self) -> &BTreeMap<Edge, u64> {
        &self.edges
    }

    /// What invariant 45 (the first exiter's IPIs) judged so far.
    pub fn exit_ipi_stats(&self) -> &exit_ipi::ExitIpiStats {
        self.checker.exit_ipi_stats()
    }

    /// Write every event to `w` from now on, after a header line with
    /// `extra` keys (scenario, qemu, kernel...).
    pub fn set_log(
        &mut self,
        mut w: Box<dyn Write + Send>,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) {
        let mut h = serde_json::Map::new();
        h.insert("format".into(), "pyvcore-events".into());
        h.insert("version".into(), 1.into());
        h.insert("variant".into(), self.state.variant.name().into());
        h.insert("threads_per_core".into(), self.state.threads_per_core.into());
        h.insert("tb_freq".into(), self.tb_freq.into());
        for (k, v) in extra {
            h.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let _ = writeln!(w, "{}", serde_json::Value::Object(h));
        self.log = Some(w);
    }

    /// The cheap filter, for every store of the machine.
    #[inline]
    pub fn may_watch(&self, pa: u64, len: u64) -> bool {
        self.decoder.as_ref().is_some_and(|d| d.may_watch(pa, len))
    }

    /// Whether a store to `[pa, pa+len)` touches a watched field.
    pub fn overlaps(&self, pa: u64, len: u64) -> bool {
        self.decoder.as_ref().is_some_and(|d| d.overlaps(pa, len))
    }

    /// A store of `bytes` (memory order) at physical `pa` by thread `cpu`.
    /// All the changes it makes (and the fields of objects it made the
    /// shadow find) share one `seq` and are checked together: a store is
    /// atomic.  Returns the number of field changes.
    pub fn store(
        &mut self,
        cpu: usize,
        pc: u64,
        tb: u64,
        pa: u64,
        bytes: &[u8],
        mem: &mut dyn Memory,
    ) -> usize {
        let Some(d) = self.decoder.as_mut() else {
            return 0;
        };
        self.stats.stores_checked += 1;
        let changes = d.store(pa, bytes, &mut *mem);
        if changes.is_empty() {
            return 0;
        }
        self.seq += 1;
        let seq = self.seq;
        let batch: Vec<Event> = changes
            .iter()
            .map(|c| Event {
                seq,
                tb,
                cpu,
                pc,
                field: c.field,
                old: c.old,
                new: c.new,
            })
            .collect();
        self.apply_with(&batch, Behind::Memory(mem));
        batch.len()
    }

    /// Start from what memory holds: read `paca_ptrs` and, when the shadow
    /// has not seen it stored, take its current value as a store (which
    /// follows the pointers, reading each PACA's `kvm_hstate` and what it
    /// points at from memory).  For a plugin that does not see every store
    /// (`mode=kvm`: `paca_ptrs` is stored at boot by allocate_paca_ptrs,
    /// arch/powerpc/kernel/paca.c, outside KVM).  Returns whether the
    /// shadow now watches more than `paca_ptrs`.
    pub fn seed(&mut self, cpu: usize, pc: u64, tb: u64, mem: &mut dyn Memory) -> bool {
        let Some(d) = self.decoder.as_ref() else {
            return false;
        };
        let va = d.layout().paca_ptrs;
        let mut buf = [0u8; 8];
        if mem.read(va, &mut buf) && u64::from_le_bytes(buf) != 0 {
            self.store(cpu, pc, tb, phys(va), &buf, mem);
        }
        self.decoder.as_ref().is_some_and(|d| d.watched() > 1)
    }

    /// A register value or message from thread `cpu` (see [`Reg`]).  A
    /// value read from the thread that equals what the shadow holds makes
    /// no event.
    pub fn register(&mut self, cpu: usize, pc: u64, tb: u64, reg: Reg, value: u64) {
        let field = FieldRef::Reg(cpu, reg);
        let old = self.state.value(field);
        if let (Reg::Lpidr | Reg::Sdr1 | Reg::Dpdes, Some(o)) = (reg, old) {
            let r = self.state.regs.get(cpu);
            let fresh = r.is_some_and(|r| match reg {
                Reg::Lpidr => r.lpidr_fresh,
                Reg::Sdr1 => r.sdr1_fresh,
                _ => true,
            });
            if o == value && fresh {
                return;
            }
        }
        self.seq += 1;
        self.apply_batch(&[Event {
            seq: self.seq,
            tb,
            cpu,
            pc,
            field,
            old,
            new: value,
        }]);
    }

    /// Apply the events of one store (one `seq`) and check the state after
    /// them: snapshot invariants, step invariants, liveness.
    pub fn apply_batch(&mut self, batch: &[Event]) {
        self.apply_with(batch, Behind::Unknown);
    }

    /// [`Shadow::apply_batch`], with what is known of fields behind memory
    /// (see [`settle`]).
    pub fn apply_with(&mut self, batch: &[Event], behind: Behind<'_>) {
        let Some(last) = batch.last() else {
            return;
        };
        self.seq = self.seq.max(last.seq);
        let mut found = Vec::new();
        let mut snapshot_changed = false;
        for ev in batch {
            self.note(ev);
            self.state.progressed(ev.cpu);
            found.extend(self.checker.step(&self.state, ev.cpu, ev.field, ev.new));
            if self.state.apply(ev.field, ev.new) {
                snapshot_changed |= !matches!(
                    ev.field,
                    FieldRef::Reg(
                        _,
                        Reg::Dpdes | Reg::MtDpdes | Reg::Msgsnd | Reg::Msgsndp | Reg::CommenceExit
                    ) | FieldRef::PacaPtrs
                        | FieldRef::Vcpu(_, CField::Trap)
                );
            }
        }
        self.last_event_tb = last.tb;
        let host_tb = self.state.host_tb(last.tb);
        match host_tb {
            Ok(h) => self.stats.last_host_tb = Some(self.stats.last_host_tb.map_or(h, |l| l.max(h))),
            Err(why) => *self.stats.host_tb_unknown.entry(why.to_string()).or_insert(0) += 1,
        }
        if snapshot_changed {
            let next = self.state.snapshot();
            let now = check_snapshot(&next);
            let mut keys: HashSet<(u32, String)> =
                now.iter().map(|v| (v.invariant, v.message.clone())).collect();
            self.settle.retain(&keys);
            let new: Vec<Violation> = now
                .into_iter()
                .filter(|v| !self.active.contains(&(v.invariant, v.message.clone())))
                .collect();
            let memory_unchanged = batch.iter().all(|e| matches!(e.field, FieldRef::Reg(..)));
            let j = self.settle.judge(
                new,
                &next,
                host_tb.ok(),
                self.tb_freq,
                self.decoder.as_ref(),
                behind,
                memory_unchanged,
            );
            for k in &j.deferred {
                keys.remove(k);
            }
            self.stats.unsettled += j.deferred.len() as u64;
            if let (Some(w), false) = (self.log.as_mut(), j.behind.is_empty()) {
                let names: Vec<String> = j.behind.iter().map(ToString::to_string).collect();
                let _ = writeln!(w, "{}", serde_json::json!({"seq": last.seq, "behind": names}));
            }
            found.extend(j.report);
            self.active = keys;
            found.extend(check_event_step(&self.prev, &next));
            if self.states.len() < MAX_STATES {
                let mut h = DefaultHasher::new();
                next.hash(&mut h);
                self.states.insert(h.finish());
                self.stats.distinct_states = self.states.len() as u64;
            }
            self.prev = next;
        }
        let (late, not_judged) = self
            .checker
            .liveness(&self.state, host_tb, self.tb_freq, &self.bounds);
        found.extend(late);
        if let Some(why) = not_judged {
            *self.stats.liveness_not_judged.entry(why.to_string()).or_insert(0) += 1;
        }
        let last = last.clone();
        for v in found {
            self.record(v, &last);
        }
    }

    /// Count, log and remember one event.
    fn note(&mut self, ev: &Event) {
        self.stats.events += 1;
        self.stats.first_tb.get_or_insert(ev.tb);
        self.stats.last_tb = self.stats.last_tb.max(ev.tb);
        *self.stats.events_per_field.entry(ev.field.kind()).or_insert(0) += 1;
        if let Some(w) = self.log.as_mut() {
            let _ = writeln!(w, "{}", log::event_json(ev));
        }
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.ring.push_back(ev.clone());
        if let (Some(old), true) = (ev.old, self.edges.len() < MAX_EDGES) {
            let e = Edge {
                field: ev.field.kind(),
                old: log::edge_value(ev.field, old),
                new: log::edge_value(ev.field, ev.new),
                pc: ev.pc,
            };
            *self.edges.entry(e).or_insert(0) += 1;
        }
    }

    /// The `tb` of the last event applied, as read (what the plugin ends a
    /// trace at: at exit no vCPU is current to read the TB from).
    pub fn last_event_tb(&self) -> u64 {
        self.last_event_tb
    }

    /// The trace ended at timebase `tb` (the TB register as read, like an
    /// event's; not before the last event): judge liveness up to there, on
    /// the host's timebase as the state at the end gives it; where that is
    /// not known, up to the last event whose host timebase was.
    pub fn finish(&mut self, tb: u64) {
        let tb = tb.max(self.last_event_tb);
        if let Some(w) = self.log.as_mut() {
            let _ = writeln!(w, "{}", serde_json::json!({"end": true, "tb": tb}));
            let _ = w.flush();
        }
        let end = match (self.state.host_tb(tb), self.stats.last_host_tb) {
            (Ok(h), Some(l)) => Ok(h.max(l)),
            (Ok(h), None) => Ok(h),
            (Err(_), Some(l)) => Ok(l),
            (Err(why), None) => Err(why),
        };
        let (mut found, not_judged) = self
            .checker
            .liveness(&self.state, end, self.tb_freq, &self.bounds);
        if let Some(why) = not_judged {
            *self.stats.liveness_not_judged.entry(why.to_string()).or_insert(0) += 1;
        }
        // Violations still deferred at the end are judged as they stand.
        found.extend(
            check_snapshot(&self.state.snapshot())
                .into_iter()
                .filter(|v| !self.active.contains(&(v.invariant, v.message.clone()))),
        );
        if let Some(last) = self.ring.back().cloned() {
            for v in found {
                self.record(v, &Event { tb, ..last.clone() });
            }
        }
    }

    /// Count `v`; list it while fewer than [`MAX_LISTED`] are, with the
    /// events before it while fewer than [`MAX_RECORDED`] are.
    fn record(&mut self, v: Violation, ev: &Event) {
        self.stats.violations += 1;
        *self
            .stats
            .violations_per_invariant
            .entry(v.invariant)
            .or_insert(0) += 1;
        if self.recorded.len() >= MAX_LISTED {
            return;
        }
        let events = if self.recorded.len() < MAX_RECORDED {
            self.ring.iter().map(log::event_json).collect()
        } else {
            Vec::new()
        };
        self.recorded.push(Recorded {
            violation: v,
            seq: ev.seq,
            tb: ev.tb,
            cpu: ev.cpu,
            pc: format!("{:#x}", ev.pc),
            field: ev.field.to_string(),
            events,
        });
    }

    /// Everything a report needs, as JSON: stats (every violation counted,
    /// per invariant too), the first [`MAX_LISTED`] violations (the first
    /// [`MAX_RECORDED`] with their events), edges (with raw PCs: symbolise them with the kernel's
    /// symbols), bounds.
    pub fn summary(&self) -> serde_json::Value {
        self.summary_with(|_| None)
    }

    /// [`Shadow::summary`] with each edge's PC named by `name_of` (`"fn"`).
    pub fn summary_with(&self, name_of: impl Fn(u64) -> Option<String>) -> serde_json::Value {
        let edges: Vec<serde_json::Value> = self
            .edges
            .iter()
            .map(|(e, n)| {
                serde_json::json!({"field": e.field, "old": e.old, "new": e.new,
                                   "pc": format!("{:#x}", e.pc), "fn": name_of(e.pc), "count": n})
            })
            .collect();
        serde_json::json!({
            "variant": self.state.variant.name(),
            "threads_per_core": self.state.threads_per_core,
            "tb_freq": self.tb_freq,
            "stats": self.stats,
            "watched_fields": self.decoder.as_ref().map(|d| d.watched()),
            "exit_ipi": self.checker.exit_ipi_stats(),
            "violations": self.recorded,
            "edges": edges,
            "bounds": {
                "grab_s": self.bounds.grab_s, "exit_ipi_s": self.bounds.exit_ipi_s,
                "exiting_s": self.bounds.exiting_s, "slack": self.bounds.slack,
            },
        })
    }
}
