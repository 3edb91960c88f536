//! The explorer's visited set: the key of every state kept (with the
//! subsumption of states that used more of the bound counters) and the
//! tree of the search, from which counterexamples are read.

use super::fingerprint::{subsumes, FingerprintMap, FingerprintSet, Key};
use super::search::Succs;
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

/// One part of the visited set: the fingerprints whose shard bits select it.
#[derive(Default)]
struct Shard {
    seen: FingerprintMap,
    /// The exact keys (fingerprint and counters, mixed) of the states kept
    /// besides the one in `seen` whose counters neither subsumed the other.
    others: FingerprintSet,
    /// States kept (explored): a fingerprint is explored again when a state
    /// with it arrives that the one kept does not subsume.
    explored: usize,
}

/// The visited set and the tree of the search (for traces).  The set is
/// split into shards by bits of the fingerprint (the high word: the hash
/// tables use the low one), updated by one thread each; every state with a
/// given fingerprint goes to the same shard, in the order of the
/// successors, so what is kept does not depend on the number of shards.
pub(super) struct Visited {
    shards: Vec<Shard>,
    /// nodes[i] = (parent node, event that led here); node 0 is the root.
    nodes: Vec<(u32, Option<Event>)>,
}

impl Shard {
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

    /// For each successor, bit k set when its k-th state (key) is new;
    /// only the keys of shard `me` of `count` are looked at.
    fn visit(&mut self, succs: &Succs, me: usize, count: usize) -> Vec<u8> {
        let mut out = vec![0u8; succs.len()];
        for (flags, sc) in out.iter_mut().zip(succs.iter()) {
            let len = sc.len as usize;
            for (k, key) in sc.keys[..len].iter().enumerate() {
                let key = chain_key(key, k + 1 == len);
                if shard_of(&key, count) == me && self.insert(key) {
                    *flags |= 1 << k;
                }
            }
        }
        out
    }
}

/// The key under which the k-th state of a chain is kept: intermediate
/// states are checked, not expanded, so they are recorded apart from the
/// states to expand.
fn chain_key(key: &Key, last: bool) -> Key {
    if last {
        *key
    } else {
        Key {
            fp: key.fp ^ INTERMEDIATE,
            used: key.used,
        }
    }
}

/// The shard of `k` among `count` (a power of two).
fn shard_of(k: &Key, count: usize) -> usize {
    (k.fp >> 64) as usize & (count - 1)
}

impl Visited {
    /// The visited set holding `root`, in `shards` shards (rounded up to a
    /// power of two).
    pub(super) fn new(root: Key, shards: usize) -> Self {
        let count = shards.max(1).next_power_of_two();
        let mut shards: Vec<Shard> = (0..count).map(|_| Shard::default()).collect();
        shards[shard_of(&root, count)].insert(root);
        Visited {
            shards,
            nodes: vec![(u32::MAX, None)],
        }
    }

    /// States kept so far.
    pub(super) fn explored(&self) -> usize {
        self.shards.iter().map(|s| s.explored).sum()
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

    /// Keep the successors with a state not seen before, in order: the
    /// state they end in, or one on the way (a chain's intermediate states
    /// are checked like any other).  A chain's events become linked nodes.
    /// The shards are updated each on its own thread.
    pub(super) fn visit(&mut self, batch: &[(State, u32)], succs: &Succs) -> Vec<New> {
        let count = self.shards.len();
        let flags: Vec<Vec<u8>> = if count == 1 {
            vec![self.shards[0].visit(succs, 0, 1)]
        } else {
            std::thread::scope(|sc| {
                let handles: Vec<_> = self
                    .shards
                    .iter_mut()
                    .enumerate()
                    .map(|(me, shard)| sc.spawn(move || shard.visit(succs, me, count)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("visited-set worker"))
                    .collect()
            })
        };
        let mut news = Vec::new();
        for (i, sc) in succs.iter().enumerate() {
            let new = flags.iter().fold(0u8, |acc, f| acc | f[i]);
            if new == 0 {
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
                end_new: new >> (sc.len - 1) & 1 == 1,
            });
        }
        news
    }

    pub(super) fn memory(&self) -> usize {
        let sets: usize = self
            .shards
            .iter()
            .map(|s| s.seen.capacity() * 33 + s.others.capacity() * 17)
            .sum();
        sets + self.nodes.capacity() * std::mem::size_of::<(u32, Option<Event>)>()
    }
}
