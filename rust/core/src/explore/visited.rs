//! The explorer's visited set: the key of every state kept (with the
//! subsumption of states that used more of the bound counters) and the
//! tree of the search, from which counterexamples are read.

use super::fingerprint::{subsumes, FingerprintMap, FingerprintSet, Key};
use super::search::Succ;
use crate::model::{Event, State};

/// Tag of the keys of a chain's intermediate states in the visited set.
const INTERMEDIATE: u128 = 0x1d7e_43ed_1a7e << 64;

/// A successor to check: index into the batch's successors, node of its
/// last event, whether its end state is new (to be expanded next level).
#[derive(Clone, Copy)]
pub(super) struct New {
    pub(super) succ: usize,
    pub(super) node: u32,
    pub(super) end_new: bool,
}

/// The visited set and the tree of the search (for traces).
pub(super) struct Visited {
    seen: FingerprintMap,
    /// The exact keys (fingerprint and counters, mixed) of the states kept
    /// besides the one in `seen` whose counters neither subsumed the other.
    others: FingerprintSet,
    /// States kept (explored): a fingerprint is explored again when a state
    /// with it arrives that the one kept does not subsume.
    pub(super) explored: usize,
    /// nodes[i] = (parent node, event that led here); node 0 is the root.
    nodes: Vec<(u32, Option<Event>)>,
}

impl Visited {
    pub(super) fn new(root: Key) -> Self {
        let mut seen = FingerprintMap::default();
        seen.insert(root.fp, root.used);
        Visited {
            seen,
            others: FingerprintSet::default(),
            explored: 1,
            nodes: vec![(u32::MAX, None)],
        }
    }

    pub(super) fn trace_to(&self, mut i: u32) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(e) = self.nodes[i as usize].1 {
            events.push(e);
            i = self.nodes[i as usize].0;
        }
        events.reverse();
        events
    }

    /// Whether a state with key `k` is new: not subsumed by the one kept
    /// for its fingerprint (which it replaces when it subsumes that one).
    fn insert(&mut self, k: Key) -> bool {
        use std::collections::hash_map::Entry;
        match self.seen.entry(k.fp) {
            Entry::Vacant(v) => {
                v.insert(k.used);
            }
            Entry::Occupied(mut o) => {
                if subsumes(*o.get(), k.used) {
                    return false;
                }
                if subsumes(k.used, *o.get()) {
                    // Everything the kept one subsumes, this one does too.
                    o.insert(k.used);
                } else if !self.others.insert(
                    k.fp ^ k
                        .used
                        .rotate_left(17)
                        .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
                ) {
                    // Neither subsumes the other: each is kept, the others
                    // by their exact key.
                    return false;
                }
            }
        }
        self.explored += 1;
        true
    }

    /// Keep the successors with a state not seen before, in order: the
    /// state they end in, or one on the way (a chain's intermediate states
    /// are checked like any other).  A chain's events become linked nodes.
    pub(super) fn visit(&mut self, batch: &[(State, u32)], succs: &[Succ]) -> Vec<New> {
        let mut news = Vec::new();
        for (i, sc) in succs.iter().enumerate() {
            let len = sc.len as usize;
            let mut fresh = false;
            let mut end_new = false;
            for (k, key) in sc.keys[..len].iter().enumerate() {
                if k + 1 == len {
                    end_new = self.insert(*key);
                    fresh |= end_new;
                } else {
                    // Intermediate states are checked, not expanded: they
                    // are recorded apart from the states to expand.
                    fresh |= self.insert(Key {
                        fp: key.fp ^ INTERMEDIATE,
                        used: key.used,
                    });
                }
            }
            if !fresh {
                continue;
            }
            let mut parent = batch[sc.parent as usize].1;
            for &e in sc.events() {
                self.nodes.push((parent, Some(e)));
                parent = (self.nodes.len() - 1) as u32;
            }
            news.push(New {
                succ: i,
                node: parent,
                end_new,
            });
        }
        news
    }

    pub(super) fn memory(&self) -> usize {
        self.seen.capacity() * 33
            + self.others.capacity() * 17
            + self.nodes.capacity() * std::mem::size_of::<(u32, Option<Event>)>()
    }
}
