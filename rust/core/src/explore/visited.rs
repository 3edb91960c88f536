//! The explorer's visited set: the key of every state kept (with the
//! subsumption of states that used more of the bound counters) and the
//! tree of the search, from which counterexamples are read.

use super::fingerprint::{subsumes, FingerprintSet, Key};
use super::search::{Frontier, Succs};
use super::table::Table;
use crate::model::Event;

/// Tag of the keys of a chain's intermediate states in the visited set.
const INTERMEDIATE: u64 = 0x1d7e_43ed_1a7e << 16;

/// Keys whose buckets are read ahead together (see `Table::warm`).
const WARM: usize = 16;

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
    /// Fingerprint -> the bound counters of the state kept for it.
    seen: Table,
    /// The exact keys (fingerprint and counters, mixed) of the states kept
    /// besides the one in `seen` whose counters neither subsumed the other.
    others: FingerprintSet,
    /// States kept (explored): a fingerprint is explored again when a state
    /// with it arrives that the one kept does not subsume.
    explored: usize,
}

/// The visited set and the tree of the search (for traces).  The set is
/// split into shards by the low bits of the fingerprint (the hash tables
/// use the upper ones), updated by one thread each; every state with a
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
        if let Some(kept) = self.seen.get_or_insert(k.fp, k.used) {
            if subsumes(*kept, k.used) {
                return false;
            }
            if subsumes(k.used, *kept) {
                // Everything the kept one subsumes, this one does too.
                *kept = k.used;
            } else if !self
                .others
                .insert(k.fp ^ k.used.rotate_left(17).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            {
                // Neither subsumes the other: each is kept, the others by
                // their exact key.
                return false;
            }
        }
        self.explored += 1;
        true
    }

    /// The successors with a new state in shard `me`, in order: (index,
    /// bit k set when its k-th state (key) is new).  Sparse: most successors
    /// reach a state already seen.
    fn visit(&mut self, succs: &Succs, me: usize) -> Vec<(u32, u8)> {
        let mut out: Vec<(u32, u8)> = Vec::new();
        for (keyed, &start) in succs.keyed.iter().zip(&succs.starts) {
            // A run of keys' buckets is read at once (see `Table::warm`).
            for run in keyed[me].chunks(WARM) {
                self.seen.warm(run.iter().map(|&(_, _, key)| key.fp));
                for &(local, k, key) in run {
                    if self.insert(key) {
                        let i = (start + local as usize) as u32;
                        match out.last_mut() {
                            Some(last) if last.0 == i => last.1 |= 1 << k,
                            _ => out.push((i, 1 << k)),
                        }
                    }
                }
            }
        }
        out
    }
}

/// The shards' sparse lists (each in increasing index) merged into one in
/// increasing index, the flags of an index found in several shards joined.
fn merge_flags(lists: &[Vec<(u32, u8)>]) -> Vec<(u32, u8)> {
    let mut all: Vec<(u32, u8)> = lists.iter().flatten().copied().collect();
    all.sort_unstable_by_key(|&(i, _)| i);
    all.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            kept.1 |= later.1;
        }
        same
    });
    all
}

/// The key under which the k-th state of a chain is kept: intermediate
/// states are checked, not expanded, so they are recorded apart from the
/// states to expand.
pub(super) fn chain_key(key: &Key, last: bool) -> Key {
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
pub(super) fn shard_of(k: &Key, count: usize) -> usize {
    k.fp as usize & (count - 1)
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
    pub(super) fn visit(&mut self, batch: &[Frontier], succs: &Succs) -> Vec<New> {
        let count = self.shards.len();
        let flags: Vec<Vec<(u32, u8)>> = if count == 1 {
            vec![self.shards[0].visit(succs, 0)]
        } else {
            // The first shard on the calling thread, the others on their own.
            let (first, rest) = self.shards.split_at_mut(1);
            std::thread::scope(|sc| {
                let handles: Vec<_> = rest
                    .iter_mut()
                    .enumerate()
                    .map(|(me, shard)| sc.spawn(move || shard.visit(succs, me + 1)))
                    .collect();
                let mine = first[0].visit(succs, 0);
                std::iter::once(mine)
                    .chain(handles.into_iter().map(|h| h.join().expect("visited-set worker")))
                    .collect()
            })
        };
        let mut news = Vec::new();
        for (i, new) in merge_flags(&flags) {
            let i = i as usize;
            let sc = succs.get(i);
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
            .map(|s| s.seen.memory() + s.others.capacity() * 9)
            .sum();
        sets + self.nodes.capacity() * std::mem::size_of::<(u32, Option<Event>)>()
    }
}
