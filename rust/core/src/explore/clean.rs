//! The snapshots and steps already judged clean, doorbells apart: a state
//! whose snapshot equals one of them but for the doorbell registers needs
//! only the doorbell checks (see [`crate::invariants::check_doorbells`]),
//! and a step between two such snapshots none (the step checks do not
//! read the doorbells).  A
//! pending doorbell multiplies the states about sixfold at N = 8 (one per
//! thread it can wait on, or vc->dpdes) while leaving the rest of the
//! snapshot as it was, so most states repeat a snapshot judged before.
//!
//! Each worker keeps its own direct-mapped table of [`view_key`]s (a slot
//! per low bits of the key, the newest key wins a slot): bounded memory, no
//! locking, and a hit only when the whole 64-bit key is equal.  What is
//! judged does not depend on the table (a miss judges the whole snapshot),
//! so neither do the results.

use crate::model::{vc_first, Config, Mmu, State};

/// Slots per worker: at first (32 KiB of keys), and at most (8 MiB).
const MIN_SLOTS: usize = 1 << 12;
const MAX_SLOTS: usize = 1 << 20;

/// A 64-bit fingerprint of every field of `s` that [`Config::view_into`]
/// writes into the snapshot except the doorbell registers (DPDES, the
/// same in every thread's `dpdes`, and `vc->dpdes`) and the stop's label
/// (which no snapshot check reads): two states with the same key have
/// snapshots equal but for those.  `cargo test`
/// (`view_keys_cover_the_snapshot`) checks it on every state of the full
/// search at N = 2 and 4.
pub(crate) fn view_key(cfg: &Config, s: &State) -> u64 {
    let mut h = super::fingerprint::Words::new();
    h.put(vc_first(s) as u64 | ((s.mmu == Mmu::Guest) as u64) << 32);
    for th in &s.threads[..cfg.threads as usize] {
        let x = &th.hstate;
        h.put(
            x.kvm_vcpu.map_or(0xff, u64::from)
                | (x.kvm_vcore as u64) << 8
                | (x.ptid as u64) << 16
                | (x.hwthread_req as u64) << 24
                | (x.hwthread_state as u64) << 32
                | (x.napping as u64) << 40
                | (x.in_guest as u64) << 48,
        );
    }
    // As view_into writes them: the entry/exit word (the seed's counts or
    // modern's bitmaps), the seed's nap counts, modern's thread_cpu.
    let modern = cfg.variant.has_entry_exit_map();
    match &s.vcore {
        Some(vc) => {
            h.put(vc.first_vcpuid as u64 | (vc.pcpu as u64) << 32);
            h.put(
                vc.num_threads as u64
                    | (vc.runq_len as u64) << 32
                    | (vc.vcore_state as u64) << 40
                    | (vc.in_guest as u64) << 48,
            );
            let naps = if modern {
                0
            } else {
                vc.n_woken as u64 | (vc.nap_count as u64) << 8
            };
            h.put(
                vc.entry_exit_word(modern) as u64
                    | (vc.napping_threads as u64) << 32
                    | vc.runner.map_or(0xff, u64::from) << 40
                    | naps << 48,
            );
        }
        None => h.put(u64::MAX),
    }
    for v in &s.vcpus {
        match v {
            Some(v) => {
                h.put(v.ptid as u64 | (v.state as u64) << 8 | (v.ceded as u64) << 16 | 1 << 24);
                let thread_cpu = if modern { v.thread_cpu as u32 as u64 } else { 0 };
                h.put(v.cpu as u32 as u64 | thread_cpu << 32);
            }
            None => h.put(0),
        }
    }
    h.finish()
}

/// The key of the whole snapshot of `s` (whose [`view_key`] is
/// `view_key`): that key and the doorbell registers the snapshot shows
/// (DPDES in every thread's `dpdes`, `vc->dpdes`), apart from the keys
/// without them by construction.
pub(crate) fn whole_key(view_key: u64, s: &State) -> u64 {
    let mut h = super::fingerprint::Words::new();
    h.put(0x3b01);
    h.put(view_key);
    h.put(s.dpdes as u64 | s.vcore.map_or(0x1ff, |vc| vc.dpdes as u64) << 8);
    h.finish()
}

/// The key of a step from a state whose [`view_key`] is `from` to one whose
/// key is `to` (apart from the snapshots' keys by construction).
pub(crate) fn step_key(from: u64, to: u64) -> u64 {
    let mut h = super::fingerprint::Words::new();
    h.put(0x57e9);
    h.put(from);
    h.put(to);
    h.finish()
}

/// One worker's table of the [`view_key`]s of snapshots judged clean.  It
/// grows with the search (see [`CleanViews::fit`]): a small search keeps a
/// small table.
pub(crate) struct CleanViews(Vec<u64>);

impl CleanViews {
    pub(crate) fn new() -> Self {
        CleanViews(vec![0; MIN_SLOTS])
    }

    /// The slot of `key` and the value it holds when `key` is in it (0 is
    /// no key: a key of 0 is kept as 1).
    fn slot(&self, key: u64) -> (usize, u64) {
        ((key >> 11) as usize & (self.0.len() - 1), key.max(1))
    }

    pub(crate) fn contains(&self, key: u64) -> bool {
        let (i, k) = self.slot(key);
        self.0[i] == k
    }

    pub(crate) fn insert(&mut self, key: u64) {
        let (i, k) = self.slot(key);
        self.0[i] = k;
    }

    /// Make room for a search that has kept `states` states so far: the
    /// table is doubled (and starts empty again) while it has fewer slots
    /// than states, up to its maximum.
    pub(crate) fn fit(&mut self, states: usize) {
        let want = states.next_power_of_two().clamp(MIN_SLOTS, MAX_SLOTS);
        if want > self.0.len() {
            self.0 = vec![0; want];
        }
    }

    /// The bytes the table takes.
    pub(crate) fn memory(&self) -> usize {
        self.0.len() * 8
    }
}
