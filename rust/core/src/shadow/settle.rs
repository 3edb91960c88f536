//! A snapshot violation is judged on a settled state only.
//!
//! Under multi-threaded TCG a plugin's memory callback runs after its store,
//! on the storing vCPU's own host thread.  Between the two, another vCPU can
//! load the stored value and act on it, and its own callback can reach the
//! shadow first.  Example from a real run: thread 0 stores
//! `paca->kvm_hstate.kvm_vcore` in `kvmppc_start_thread`
//! (arch/powerpc/kvm/book3s_hv.c); thread 3, polling it in `kvm_no_guest`
//! (arch/powerpc/kvm/book3s_hv_rmhandlers.S: `ld r5, HSTATE_KVM_VCORE(r13)`,
//! on to `kvm_secondary_got_guest` only when it is non-zero), enters
//! `kvmppc_hv_entry` and stores its `in_guest`, and that callback arrives
//! before thread 0's: the shadow shows a thread in the guest with no vcore
//! (invariants 23 and 10), a state memory never held.
//!
//! So when a change makes a snapshot violation appear, the fields it names
//! are compared with guest memory ([`super::Decoder::behind`]).  If memory
//! already holds another value for one of them, a store to it executed whose
//! callback is still coming: the violation is deferred (not reported, and
//! judged again at the next change).  It is reported once the fields it
//! names have settled and it still holds, or when it has been deferred for
//! [`SETTLE_S`] of timebase (a store's callback follows its store at once
//! on that vCPU's thread; only the host descheduling the thread delays it),
//! or at the end of the trace.  That time is the host's
//! ([`super::CoreState::host_tb`]: inside a run with a timebase offset the
//! TB holds the guest's); where an event's host timebase is not known the
//! deferral does not time out at it.  The fields found behind are written to the
//! event log (`{"seq": S, "behind": [FIELD, ...]}`), so a replay defers the
//! same violations.
//!
//! An event that changes no memory field (a register value a thread read)
//! cannot settle the fields a deferral waits for, so a violation deferred
//! before it stays deferred through it (a real run: thread 2's exit bit was
//! deferred on the vcore's `in_guest`, then thread 1's LPIDR read came
//! before thread 0's late `in_guest` callback).
//!
//! What it can miss: a violation that really held and was repaired by the
//! very store whose callback was late (a window of one store on one thread).

use std::collections::{BTreeMap, HashSet};

use crate::invariants::Violation;
use crate::view::Snapshot;

use super::decode::{Decoder, Memory};
use super::field::FieldRef;

/// Longest deferral, in seconds of timebase.
pub const SETTLE_S: f64 = 0.5;

/// Where "is this field behind memory" is answered.
pub enum Behind<'a> {
    /// Not asked (register events: no memory field changed).
    Unknown,
    /// From the event log (replay).
    Known(&'a [FieldRef]),
    /// From guest memory (the live plugin).
    Memory(&'a mut dyn Memory),
}

/// Snapshot violations deferred so far: key -> host timebase first
/// deferred (None while not known: taken from the first event after it
/// whose host timebase is, which can only shorten the wait measured).
#[derive(Clone, Debug, Default)]
pub struct Settle {
    deferred: BTreeMap<(u32, String), Option<u64>>,
}

/// The fields a violation names, as watched fields: `threads[N].kvm_hstate.F`
/// as is, `vcores[K].F` / `vcpus[K].F` (index into the snapshot) by address.
pub fn named_fields(v: &Violation, snap: &Snapshot) -> Vec<FieldRef> {
    v.fields
        .keys()
        .filter_map(|k| {
            let by_index = !k.contains("[0x");
            match FieldRef::parse(k)? {
                FieldRef::Vcore(n, f) if by_index => snap
                    .vcores
                    .get(usize::try_from(n).ok()?)
                    .map(|c| FieldRef::Vcore(c.addr, f)),
                FieldRef::Vcpu(n, f) if by_index => snap
                    .vcpus
                    .get(usize::try_from(n).ok()?)
                    .map(|c| FieldRef::Vcpu(c.addr, f)),
                f => Some(f),
            }
        })
        .collect()
}

/// What [`Settle::judge`] decided.
pub struct Judged {
    /// Report these now.
    pub report: Vec<Violation>,
    /// Keep these out of the active set (judged again at the next change).
    pub deferred: Vec<(u32, String)>,
    /// Fields memory was ahead on (to log).
    pub behind: Vec<FieldRef>,
}

impl Settle {
    /// Split the violations that just appeared (`new`, on snapshot `snap`
    /// at host timebase `tb`, None where not known) into reported and
    /// deferred.  `memory_unchanged`:
    /// the events judged changed registers only, so what was deferred
    /// before stays deferred (within [`SETTLE_S`]).
    #[allow(clippy::too_many_arguments)]
    pub fn judge(
        &mut self,
        new: Vec<Violation>,
        snap: &Snapshot,
        tb: Option<u64>,
        tb_freq: u64,
        decoder: Option<&Decoder>,
        behind: Behind<'_>,
        memory_unchanged: bool,
    ) -> Judged {
        let mut out = Judged {
            report: Vec::new(),
            deferred: Vec::new(),
            behind: Vec::new(),
        };
        if new.is_empty() {
            return out;
        }
        let named: Vec<Vec<FieldRef>> = new.iter().map(|v| named_fields(v, snap)).collect();
        out.behind = match behind {
            Behind::Unknown => Vec::new(),
            Behind::Known(b) => b.to_vec(),
            Behind::Memory(m) => {
                let all: Vec<FieldRef> = named.iter().flatten().copied().collect();
                decoder.map(|d| d.behind(&all, m)).unwrap_or_default()
            }
        };
        let limit = (SETTLE_S * tb_freq as f64) as u64;
        for (v, names) in new.into_iter().zip(named) {
            let key = (v.invariant, v.message.clone());
            let was_deferred = self.deferred.get(&key).copied();
            let first = was_deferred.flatten().or(tb);
            let waits =
                names.iter().any(|f| out.behind.contains(f)) || (memory_unchanged && was_deferred.is_some());
            let timed_out = matches!((tb, first), (Some(t), Some(f)) if t.saturating_sub(f) > limit);
            if waits && !timed_out {
                self.deferred.insert(key.clone(), first);
                out.deferred.push(key);
            } else {
                self.deferred.remove(&key);
                out.report.push(v);
            }
        }
        out
    }

    /// Forget deferred violations that no longer hold.
    pub fn retain(&mut self, holding: &HashSet<(u32, String)>) {
        self.deferred.retain(|k, _| holding.contains(k));
    }
}
