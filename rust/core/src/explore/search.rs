//! The breadth-first search itself: expanding a batch of frontier states
//! (with the doorbell chains of the partial-order reduction), updating the
//! visited set in a fixed order, and checking the new states, on `workers`
//! threads.

use std::time::Instant;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::candidates::{candidates, doorbell_candidates, may_prod};
use super::clean::{step_key, view_key, whole_key, CleanViews};
use super::fingerprint::{
    plain_key, secondary_keys, symmetric_key, touched, twins, Base, Carried, Dead, Key,
};
use super::visited::{chain_key, shard_of, New, Visited};
use super::{ExploreOptions, ExploreReport, Incomplete, Progress, BATCH};
use crate::invariants::{self, Violation};
use crate::model::{vc_first, Config, Effects, Event, Fault, Phase, State, INV_DEADLOCK};
use crate::view::Snapshot;

/// The view of a state and its [`view_key`], each computed when a check
/// first needs it (see [`check`]).
pub(super) struct LazyView {
    view: Snapshot,
    built: bool,
    key: Option<u64>,
}

impl LazyView {
    fn new(cfg: &Config) -> Self {
        LazyView {
            view: cfg.view(&State::initial(), None),
            built: false,
            key: None,
        }
    }

    /// Forget the view and the key: the next state is another.
    fn reset(&mut self) {
        self.built = false;
        self.key = None;
    }

    /// The [`view_key`] of `s` (the state this one was last reset for).
    fn key(&mut self, cfg: &Config, s: &State) -> u64 {
        *self.key.get_or_insert_with(|| view_key(cfg, s))
    }

    /// The view of `s` (which must be the state this one was last reset for).
    fn get(&mut self, cfg: &Config, s: &State) -> &Snapshot {
        if !self.built {
            cfg.view_into(s, None, &mut self.view);
            self.built = true;
        }
        &self.view
    }
}

/// The first violation of state `s` reached from `parent` by `event`; the
/// shared invariants are evaluated when `parent_view` (the view of
/// `parent`, built if needed) is given, on the view of `s`, built into
/// `view` if needed.  With `clean` (see [`CleanViews`]), a snapshot
/// already judged clean is not judged again, one equal to a clean one but
/// for the doorbell registers gets only the doorbell checks, and a step
/// between two snapshots equal to a clean step's but for those is not
/// judged again (the step checks read neither the doorbell registers nor
/// the stop's label); every clean one is recorded.  Without a check to
/// run, no view is built.
#[allow(clippy::too_many_arguments)]
fn check(
    cfg: &Config,
    parent: &State,
    parent_view: Option<&mut LazyView>,
    s: &State,
    event: &Event,
    fx: &Effects,
    ignored: &[u32],
    view: &mut LazyView,
    clean: Option<&mut CleanViews>,
) -> Option<Violation> {
    if let Some(parent_view) = parent_view {
        view.reset();
        let out = match clean {
            None => {
                let (before, after) = (parent_view.get(cfg, parent), view.get(cfg, s));
                let mut out = invariants::check_snapshot(after);
                out.extend(invariants::check_step(before, after));
                out
            }
            Some(c) => judge_remembering(cfg, parent, parent_view, s, view, c),
        };
        if let Some(found) = out.into_iter().find(|x| !ignored.contains(&x.invariant)) {
            return Some(found);
        }
    }
    cfg.history_check(parent, s, event, fx).into_iter().next()
}

/// [`check`]'s snapshot and step checks with the table `c` of those
/// already judged clean.  Debug builds judge in full what the table skips
/// and compare.
fn judge_remembering(
    cfg: &Config,
    parent: &State,
    parent_view: &mut LazyView,
    s: &State,
    view: &mut LazyView,
    c: &mut CleanViews,
) -> Vec<Violation> {
    let key = view.key(cfg, s);
    let whole = whole_key(key, s);
    let mut out = if c.contains(whole) {
        debug_assert_eq!(invariants::check_snapshot(view.get(cfg, s)), Vec::new());
        Vec::new()
    } else if c.contains(key) {
        let out = invariants::check_doorbells(view.get(cfg, s));
        debug_assert_eq!(
            out,
            invariants::check_snapshot(view.get(cfg, s)),
            "a snapshot equal to a clean one but for its doorbells broke more than the doorbell checks"
        );
        if out.is_empty() {
            c.insert(whole);
        }
        out
    } else {
        let out = invariants::check_snapshot(view.get(cfg, s));
        if out.is_empty() {
            c.insert(key);
            c.insert(whole);
        }
        out
    };
    let step = step_key(parent_view.key(cfg, parent), key);
    if c.contains(step) {
        debug_assert_eq!(
            invariants::check_step(parent_view.get(cfg, parent), view.get(cfg, s)),
            Vec::new(),
            "a step equal to a clean one but for its doorbells broke a step check"
        );
    } else {
        let found = invariants::check_step(parent_view.get(cfg, parent), view.get(cfg, s));
        if found.is_empty() {
            c.insert(step);
        }
        out.extend(found);
    }
    out
}

/// A state of the frontier: the state, its node in the visited set's tree
/// (see [`Visited::trace_to`]) and what its successors' keys are computed
/// next to.
pub(super) type Frontier = (State, u32, Carried);

/// The longest step the explorer takes: msgsndp, the doorbell's taking, one
/// more event.
const CHAIN: usize = 3;

/// One successor found while expanding a batch: the events from the parent
/// (a chain when partial-order reduction joins doorbell events to the step
/// they are moved up to).  The states are not kept: only new ones are
/// needed, and checking them replays the chain.  The keys of the states
/// along the chain (the last is the resulting state; the others are checked
/// too) are kept apart, by visited-set shard (see [`Succs`]).
pub(super) struct Succ {
    pub(super) parent: u32,
    chain: [Event; CHAIN],
    pub(super) len: u8,
}

/// One key of a successor's chain for one visited-set shard: (index of the
/// successor in its worker's part, position k in the chain, the key as the
/// visited set keeps it).
pub(super) type ShardKey = (u32, u8, Key);

impl Succ {
    pub(super) fn events(&self) -> &[Event] {
        &self.chain[..self.len as usize]
    }
}

/// The successors of a batch as the workers produced them, in order (not
/// copied into one vector), indexed as if they were one; with each part's
/// keys split by visited-set shard, so that a shard's thread reads only its
/// own keys.
pub(super) struct Succs {
    parts: Vec<Vec<Succ>>,
    /// keyed[part][shard]: that part's keys for that shard, in order.
    pub(super) keyed: Vec<Vec<Vec<ShardKey>>>,
    /// Index of the first successor of each part.
    pub(super) starts: Vec<usize>,
}

impl Succs {
    fn new(parts: Vec<Vec<Succ>>, keyed: Vec<Vec<Vec<ShardKey>>>) -> Self {
        let mut starts = Vec::with_capacity(parts.len());
        let mut at = 0;
        for p in &parts {
            starts.push(at);
            at += p.len();
        }
        Succs { parts, keyed, starts }
    }

    pub(super) fn get(&self, i: usize) -> &Succ {
        let p = self.starts.partition_point(|&s| s <= i) - 1;
        &self.parts[p][i - self.starts[p]]
    }

    fn capacity(&self) -> usize {
        self.parts.iter().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<Succ>()
            + self.keyed.iter().flatten().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<ShardKey>()
    }
}

/// Everything one batch of frontier states produced.
#[derive(Default)]
struct Expanded {
    succs: Vec<Succ>,
    /// The successors' keys by visited-set shard (see [`Succs`]).
    keyed: Vec<Vec<ShardKey>>,
    transitions: usize,
    finished: usize,
    /// The first parent (index in the batch) that can make no move.
    deadlock: Option<usize>,
}

/// The vcpus of `s` that may still cede within the bounds of `o` (bit per vcpu index).
pub(super) fn may_cede(o: &ExploreOptions, s: &State) -> u8 {
    let (mut total, mut below) = (0u32, 0u8);
    for (i, v) in s.vcpus.iter().enumerate() {
        if let Some(v) = v {
            total += v.cedes as u32;
            below |= u8::from(v.cedes < o.cedes_per_vcpu) << i;
        }
    }
    if o.max_cedes.is_some_and(|m| total >= m as u32) {
        0
    } else {
        below
    }
}

/// The one thread or vcpu index (vcpu id minus `first`) event `e` names,
/// None when it names none or two.  A msgsndp names its target thread
/// only (`one_sender`: the sender does not change the state it leads to,
/// see `doorbell_candidates`), else none.
fn only_index(e: &Event, first: u32, one_sender: bool) -> Option<u8> {
    let vcpu = |id: u32| u8::try_from(id.wrapping_sub(first)).ok();
    match *e {
        Event::CreateVcpu { vcpu: id }
        | Event::Runnable { vcpu: id }
        | Event::Block { vcpu: id }
        | Event::RunCore { runner: id }
        | Event::VcoreBlocked { runner: id }
        | Event::VcoreWake { vcpu: id }
        | Event::StartThread { vcpu: id }
        | Event::Prod { vcpu: id } => vcpu(id),
        Event::Doorbell { thread, .. } if one_sender => Some(thread),
        Event::Doorbell { .. } => None,
        _ => e.thread(),
    }
}

/// Whether `x` is `s` but for what an H_PROD of vcpu index `i` (and the
/// cede it cancels) may change: that vcpu's cedes and prods used, its
/// `arch.prodded` when `prodded` (the state between the two; after the
/// cede it must be as before, or the pair's end would be a state of its
/// own), and the IPI flag of a thread napping in that vcpu's cede (dead
/// there, see `fingerprint::Dead`).
fn only_prod_differs(s: &State, x: &State, i: u8, prodded: bool) -> bool {
    let mut y = *x;
    let (Some(v), Some(w)) = (y.vcpus[i as usize].as_mut(), s.vcpus[i as usize]) else {
        return false;
    };
    (v.cedes, v.prods) = (w.cedes, w.prods);
    if prodded {
        v.prodded = w.prodded;
    }
    for (t, th) in s.threads.iter().enumerate() {
        if th.phase == Phase::CedeNap && th.running == Some(i) {
            y.threads[t].ipi = th.ipi;
        }
    }
    y == *s
}

/// The search's fixed context.
pub(super) struct Search<'a> {
    pub(super) cfg: Config,
    pub(super) opts: &'a ExploreOptions,
    pub(super) chosen: u8,
    pub(super) ignored: Vec<u32>,
}

impl Search<'_> {
    fn dead(&self, s: &State) -> Dead {
        if self.opts.merge_dead {
            Dead::of(s, self.cfg.threads as usize, may_cede(self.opts, s))
        } else {
            Dead::NONE
        }
    }

    fn symmetric(&self) -> bool {
        self.opts.symmetric() && self.opts.merge_symmetric
    }

    /// What the keys of the successors of `s` are computed next to (see
    /// [`Carried`]), `s` reached from `base.s` by events that changed the
    /// entries `touched` (see [`touched`]), or from nothing.
    pub(super) fn carried(
        &self,
        s: &State,
        base: Option<&Base>,
        touched: Option<u8>,
        events: &[Event],
    ) -> Carried {
        let dead = self.dead_after(s, base, events);
        Carried::of(&self.cfg, s, self.chosen, dead, self.symmetric(), base, touched)
    }

    /// The dead values of `s`, reached from `base.s` by `events` (or from
    /// nothing): which vcpus may still cede changes only with a cede
    /// (kvmppc_h_cede is the only step that counts one), so it is the
    /// parent's otherwise.
    fn dead_after(&self, s: &State, base: Option<&Base>, events: &[Event]) -> Dead {
        let Some(b) = base.filter(|_| self.opts.merge_dead) else {
            return self.dead(s);
        };
        if events.iter().any(|e| matches!(e, Event::Cede { .. })) {
            return self.dead(s);
        }
        let dead = Dead::of(s, self.cfg.threads as usize, b.dead.may_cede());
        debug_assert!(
            dead == self.dead(s),
            "the vcpus that may cede changed without a cede"
        );
        dead
    }

    /// The key of `s`, a successor of `base.s` (or of nothing) by an event
    /// that changed the entries `touched` (see [`touched`]).
    fn key(&self, s: &State, base: Option<&Base>, touched: Option<u8>, events: &[Event]) -> Key {
        let dead = self.dead_after(s, base, events);
        let exact = !self.opts.subsumption;
        if self.symmetric() {
            let keys = secondary_keys(&self.cfg, s, self.chosen, dead, base, touched);
            symmetric_key(&self.cfg, s, self.chosen, dead, keys, exact)
        } else {
            plain_key(&self.cfg, s, dead, exact)
        }
    }

    /// The visited set's shards (one per worker, a power of two).
    fn shards(&self) -> usize {
        self.opts.workers.max(1).next_power_of_two()
    }

    /// Record the chain `events` from `parent` through `states` (one per event).
    fn push(&self, out: &mut Expanded, base: &Base, parent: usize, events: &[Event], states: &[&State]) {
        let mut chain = [events[0]; CHAIN];
        chain[..events.len()].copy_from_slice(events);
        let index = out.succs.len() as u32;
        let count = out.keyed.len();
        // What the chain has touched so far (see [`touched`]): the keys of
        // its states are computed next to the parent's.
        let mut changed = Some(0u8);
        for (k, st) in states.iter().enumerate() {
            let before = if k == 0 { base.s } else { states[k - 1] };
            changed = changed.and_then(|m| Some(m | touched(&events[k], before, st)?));
            let key = chain_key(
                &self.key(st, Some(base), changed, &events[..=k]),
                k + 1 == states.len(),
            );
            out.keyed[shard_of(&key, count)].push((index, k as u8, key));
        }
        out.transitions += 1;
        out.succs.push(Succ {
            parent: parent as u32,
            chain,
            len: events.len() as u8,
        });
    }

    /// Successors of the states of `batch` (`offset`: index of its first).
    fn expand(&self, batch: &[Frontier], offset: usize) -> Expanded {
        // About five successors per state at N = 8: no regrowth (a copy of
        // every successor so far) in the usual case.
        let mut out = Expanded {
            succs: Vec::with_capacity(batch.len() * 8),
            keyed: (0..self.shards())
                .map(|_| Vec::with_capacity(batch.len() * 8))
                .collect(),
            ..Expanded::default()
        };
        let (mut cands, mut lazy, mut tails) = (Vec::new(), Vec::new(), Vec::new());
        // Each successor is made in this buffer (one copy of the parent).
        let mut c = State::initial();
        for (k, (s, _, carried)) in batch.iter().enumerate() {
            if s.runs_done > 0 {
                out.finished += 1;
                continue;
            }
            let parent = offset + k;
            let base = Base::new(s, carried);
            debug_assert!(
                carried.keys == self.carried(s, None, None, &[]).keys,
                "a state's secondary keys computed next to its parent's differ from its own"
            );
            candidates(&self.cfg, self.opts, s, self.chosen, &mut cands);
            // Of twin secondaries only the first moves (see `twins`).
            let twins = base.keys.map_or(0, |k| twins(&k, self.cfg.threads as usize));
            let first = vc_first(s);
            let one_sender = self.cfg.fault != Some(Fault::DoorbellWrongSibling);
            let moves =
                |e: &Event| only_index(e, first, one_sender).is_none_or(|i| i >= 8 || twins & (1 << i) == 0);
            let mut any_legal = false;
            for &e in cands.iter().filter(|e| moves(e)) {
                if self.cfg.after_into(s, e, &mut c).is_some() {
                    // A prod alone does not move the run on.
                    any_legal |= !matches!(e, Event::Prod { .. });
                    self.push(&mut out, &base, parent, &[e], &[&c]);
                    if let Event::Cede { thread } = e {
                        self.prod_before_cede(&mut out, &base, parent, thread);
                    }
                }
            }
            doorbell_candidates(&self.cfg, self.opts, s, &mut lazy);
            for &d in lazy.iter().filter(|e| moves(e)) {
                if self.cfg.after_into(s, d, &mut c).is_none() {
                    continue;
                }
                if !self.opts.reduced() {
                    self.push(&mut out, &base, parent, &[d], &[&c]);
                    continue;
                }
                self.expand_chain(&mut out, &base, parent, d, &c, &mut tails);
            }
            // Before any vcpu is runnable nothing need happen; after that the
            // run must be able to go on until it finishes.
            let started = s.vcore.is_some_and(|vc| vc.runq_len > 0 || vc.runner.is_some());
            if !any_legal && started && out.deadlock.is_none() {
                out.deadlock = Some(parent);
            }
        }
        out
    }

    /// The H_PROD of the vcpu on `thread` just before its cede (see
    /// [`ExploreOptions::defer_prods`]), where the bounds allow one.  The
    /// cede then returns at once (kvm_cede_prodded): the pair ends where it
    /// began but for one more cede and prod used, so with subsumption the
    /// state it starts from, already kept, subsumes its end, and the state
    /// between shows the same snapshot (`arch.prodded` is in none): nothing
    /// new, nothing to judge, not tried.  That is checked on every such
    /// pair, in release builds too (a fault or a change of the model that
    /// made the pair do more would otherwise be left out unseen): where
    /// either state differs from the start in anything else, or without
    /// subsumption, the pair is one step like any other (debug builds also
    /// compare the keys and the snapshots).
    fn prod_before_cede(&self, out: &mut Expanded, base: &Base, parent: usize, thread: u8) {
        let s = base.s;
        let Some(i) = s.threads[thread as usize].running else {
            return;
        };
        if !self.opts.defer_prods || !may_prod(&self.cfg, self.opts, s, i as usize) {
            return;
        }
        let prod = Event::Prod {
            vcpu: vc_first(s) + i as u32,
        };
        let cede = Event::Cede { thread };
        let Some((mid, _)) = self.cfg.after(s, prod) else {
            return;
        };
        let Some((end, _)) = self.cfg.after(&mid, cede) else {
            return;
        };
        if self.opts.subsumption
            && only_prod_differs(s, &mid, i, true)
            && only_prod_differs(s, &end, i, false)
        {
            debug_assert!({
                let (ks, ke) = (
                    self.key(s, None, None, &[]),
                    self.key(&end, None, None, &[prod, cede]),
                );
                let view = |x: &State| self.cfg.view(x, None);
                ks.fp == ke.fp
                    && super::fingerprint::subsumes(ks.used, ke.used)
                    && view(&mid) == view(s)
                    && view(&end) == view(s)
            });
            return;
        }
        self.push(out, base, parent, &[prod, cede], &[&mid, &end]);
    }

    /// The steps `d` (a msgsndp or a doorbell's taking) is moved up to: `d`
    /// then the next event of a thread it concerns (for a msgsndp to thread
    /// t also: `d`, t's taking of it, t's next event).
    fn expand_chain(
        &self,
        out: &mut Expanded,
        base: &Base,
        parent: usize,
        d: Event,
        mid: &State,
        tails: &mut Vec<Event>,
    ) {
        let s = base.s;
        let one_sender = self.cfg.fault != Some(Fault::DoorbellWrongSibling);
        let concerned = |e: &Event| -> bool {
            let Some(x) = e.thread() else { return false };
            match d {
                Event::TakeDoorbell { thread } => x == thread,
                // The target's next event, or the next event of a thread in
                // the guest (the sender, or any of them when one stands for all).
                Event::Doorbell { vcpu, thread } => {
                    let from = (vcpu - vc_first(s)) as usize;
                    let th = &s.threads[x as usize];
                    x == thread
                        || if one_sender {
                            th.phase == Phase::InGuest
                        } else {
                            th.running.map(usize::from) == Some(from)
                        }
                }
                _ => false,
            }
        };
        candidates(&self.cfg, self.opts, mid, self.chosen, tails);
        for &e in tails.iter().filter(|e| concerned(e)) {
            if let Some((c, _)) = self.cfg.after(mid, e) {
                self.push(out, base, parent, &[d, e], &[mid, &c]);
            }
        }
        if let Event::Doorbell { thread, .. } = d {
            let take = Event::TakeDoorbell { thread };
            let Some((mid2, _)) = self.cfg.after(mid, take) else {
                return;
            };
            candidates(&self.cfg, self.opts, &mid2, self.chosen, tails);
            for &e in tails.iter().filter(|e| e.thread() == Some(thread)) {
                if let Some((c, _)) = self.cfg.after(&mid2, e) {
                    self.push(out, base, parent, &[d, take, e], &[mid, &mid2, &c]);
                }
            }
        }
    }

    /// The first invariant `events` break from `root` under this search's
    /// rules, with the event (1-based) after which it breaks; None when one
    /// of the events is not legal or none breaks one.
    pub(super) fn first_violation(&self, root: &State, events: &[Event]) -> Option<(u32, usize)> {
        let (mut s, mut next) = (*root, State::initial());
        let (mut before, mut after) = (LazyView::new(&self.cfg), LazyView::new(&self.cfg));
        for (k, e) in events.iter().enumerate() {
            let fx = self.cfg.after_into(&s, *e, &mut next)?;
            let prev = self.opts.check_invariants.then_some(&mut before);
            if let Some(v) = check(
                &self.cfg,
                &s,
                prev,
                &next,
                e,
                &fx,
                &self.ignored,
                &mut after,
                None,
            ) {
                return Some((v.invariant, k + 1));
            }
            std::mem::swap(&mut before, &mut after);
            s = next;
        }
        None
    }

    /// Replay and check the chains `news` (see [`Visited::visit`]), in
    /// order, step by step along each chain.  Returns the new end states
    /// with their nodes (for the next level) or the first violation as
    /// (position in `news`, events of the chain up to the violating one,
    /// violation).
    fn check_all(
        &self,
        batch: &[Frontier],
        succs: &Succs,
        news: &[New],
        clean: &Mutex<CleanViews>,
    ) -> Result<Vec<Frontier>, (usize, usize, Violation)> {
        // One worker per table: never contended.
        let mut clean = clean.lock().expect("a worker panicked");
        let mut states = Vec::with_capacity(news.len());
        let checking = self.opts.check_invariants;
        // The views of the parent (built when first needed) and of the two
        // last states of a chain, their vectors reused from one successor
        // to the next.
        let mut parent_view = LazyView::new(&self.cfg);
        let mut parent_of: Option<u32> = None;
        let (mut before, mut after) = (LazyView::new(&self.cfg), LazyView::new(&self.cfg));
        // The state a chain's event leads to, and the one before it (past
        // the first event), reused from one successor to the next.
        let (mut next, mut mid) = (State::initial(), State::initial());
        for (
            pos,
            &New {
                succ: i,
                node,
                end_new,
            },
        ) in news.iter().enumerate()
        {
            let sc = succs.get(i);
            let (parent, _, parent_carried) = &batch[sc.parent as usize];
            // What the chain changed (see [`touched`]), for the keys of its end.
            let mut changed = Some(0u8);
            if parent_of != Some(sc.parent) {
                parent_view.reset();
                parent_of = Some(sc.parent);
            }
            let events = sc.events();
            for (k, e) in events.iter().enumerate() {
                let from = if k == 0 { parent } else { &mid };
                let fx = self
                    .cfg
                    .after_into(from, *e, &mut next)
                    .expect("a chain found legal replays");
                changed = changed.and_then(|m| Some(m | touched(e, from, &next)?));
                let prev = match (checking, k) {
                    (false, _) => None,
                    (true, 0) => Some(&mut parent_view),
                    (true, _) => Some(&mut before),
                };
                if let Some(v) = check(
                    &self.cfg,
                    from,
                    prev,
                    &next,
                    e,
                    &fx,
                    &self.ignored,
                    &mut after,
                    Some(&mut clean),
                ) {
                    return Err((pos, k + 1, v));
                }
                if k + 1 < events.len() {
                    mid = next;
                }
                std::mem::swap(&mut before, &mut after);
            }
            if end_new {
                let carried = self.carried(&next, Some(&Base::new(parent, parent_carried)), changed, events);
                states.push((next, node, carried));
            }
        }
        Ok(states)
    }
}

/// Items a worker takes at a time (see [`on_workers`]).
const CHUNK: usize = 256;

/// `f(worker, offset, chunk)` on the chunks of `CHUNK` items of `items`,
/// on `workers` threads (the calling thread is worker 0), the results in
/// the chunks' order (one worker: on all of `items` at once).  A worker takes the next chunk when it is done with
/// one, so a core that runs slower (the machine is shared) takes fewer:
/// split in equal halves, the faster core waited for the slower at every
/// phase (measured: up to a second in six at modern N = 8).
fn on_workers<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(usize, usize, &[T]) -> R + Sync,
) -> Vec<R> {
    if workers < 2 {
        return vec![f(0, 0, items)];
    }
    let parts: Vec<(usize, &[T])> = items
        .chunks(CHUNK)
        .enumerate()
        .map(|(i, c)| (i * CHUNK, c))
        .collect();
    if parts.len() < 2 {
        return parts.iter().map(|&(off, part)| f(0, off, part)).collect();
    }
    let next = AtomicUsize::new(0);
    let done: Vec<Mutex<Option<R>>> = parts.iter().map(|_| Mutex::new(None)).collect();
    let run = |w: usize| loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(&(off, part)) = parts.get(i) else { break };
        let r = f(w, off, part);
        *done[i].lock().expect("an explorer worker panicked") = Some(r);
    };
    let run = &run;
    std::thread::scope(|sc| {
        for w in 1..workers.min(parts.len()) {
            sc.spawn(move || run(w));
        }
        run(0);
    });
    done.into_iter()
        .map(|m| {
            m.into_inner()
                .expect("an explorer worker panicked")
                .expect("every chunk is taken")
        })
        .collect()
}

/// The breadth-first search proper; fills `report`.
pub(super) fn bfs(
    search: &Search,
    root: State,
    report: &mut ExploreReport,
    progress: &mut dyn FnMut(&Progress) -> bool,
    start: Instant,
    mut record: Option<&mut Vec<State>>,
) {
    let opts = search.opts;
    let workers = opts.workers.max(1);
    let mut visited = Visited::new(search.key(&root, None, None, &[]), workers);
    // A level is kept as the workers' outputs in order (segments), not
    // copied into one vector; small ones are joined (see `append`).
    let mut frontier: Vec<Vec<Frontier>> = vec![vec![(root, 0, search.carried(&root, None, None, &[]))]];
    let clean: Vec<Mutex<CleanViews>> = (0..workers).map(|_| Mutex::new(CleanViews::new())).collect();
    let mut depth = 0usize;
    let size = |level: &[Vec<Frontier>]| level.iter().map(Vec::len).sum::<usize>();
    let capacity = |level: &[Vec<Frontier>]| level.iter().map(Vec::capacity).sum::<usize>();
    while size(&frontier) > 0 {
        let mut next: Vec<Vec<Frontier>> = Vec::new();
        for batch in frontier.iter().flat_map(|seg| seg.chunks(BATCH * workers)) {
            let expanded = on_workers(batch, workers, |_, off, part| search.expand(part, off));
            let mut parts = Vec::with_capacity(expanded.len());
            let mut keyed = Vec::with_capacity(expanded.len());
            for ex in expanded {
                report.transitions += ex.transitions;
                report.finished_runs += ex.finished;
                if let Some(k) = ex.deadlock {
                    let v = Violation::new(
                        INV_DEADLOCK,
                        "deadlock: no thread can move and the run has not finished",
                    );
                    report.counterexample = Some(visited.trace_to(batch[k].1));
                    report.violation = Some(v);
                    report.states = visited.explored();
                    report.depth = depth;
                    return;
                }
                parts.push(ex.succs);
                keyed.push(ex.keyed);
            }
            let succs = Succs::new(parts, keyed);
            let news = visited.visit(batch, &succs);
            let checked = on_workers(&news, workers, |w, off, part| {
                search
                    .check_all(batch, &succs, part, &clean[w])
                    .map_err(|(p, k, v)| (off + p, k, v))
            });
            // The parts are in order: the first violation is the earliest.
            let mut found = None;
            for part in checked {
                match part {
                    Ok(states) => append(&mut next, states, BATCH * workers),
                    Err(e) => {
                        found = Some(e);
                        break;
                    }
                }
            }
            if let Some((pos, k, v)) = found {
                let mut trace = visited.trace_to(news[pos].node);
                trace.truncate(trace.len() + k - succs.get(news[pos].succ).events().len());
                report.depth = depth + 1;
                report.counterexample = Some(trace);
                report.violation = Some(v);
                report.states = visited.explored();
                return;
            }
            // The tables grow with the states kept (they are caches: what
            // is judged does not depend on them).
            for c in &clean {
                c.lock()
                    .expect("a worker panicked")
                    .fit(visited.explored() / workers);
            }
            let memory = visited.memory()
                + clean
                    .iter()
                    .map(|c| c.lock().expect("a worker panicked").memory())
                    .sum::<usize>()
                + (capacity(&frontier) + capacity(&next)) * std::mem::size_of::<Frontier>()
                + succs.capacity();
            report.peak_memory = report.peak_memory.max(memory);
            let p = Progress {
                states: visited.explored(),
                transitions: report.transitions,
                depth,
                frontier: size(&frontier),
                seconds: start.elapsed().as_secs_f64(),
                memory,
            };
            if let Some(why) = budget_or_stop(opts, &p, progress) {
                report.incomplete = Some(why);
                report.states = visited.explored();
                report.depth = depth;
                return;
            }
        }
        if let Some(r) = record.as_deref_mut() {
            r.extend(next.iter().flatten().map(|(s, _, _)| *s));
        }
        frontier = next;
        if size(&frontier) > 0 {
            depth += 1;
        }
    }
    report.states = visited.explored();
    report.depth = depth;
}

/// Add `states` to the segments of a level: joined to the last segment
/// when both fit in a batch (`batch` states), else as a segment of its own
/// (moved, not copied).  Not given room for a whole batch up front: that
/// saved the regrowing of joined chunks (3% of the instructions at N = 4)
/// but cost 60-80 MB more at modern N = 8, for no time measured.
fn append(level: &mut Vec<Vec<Frontier>>, states: Vec<Frontier>, batch: usize) {
    match level.last_mut() {
        Some(last) if last.len() + states.len() <= batch => last.extend(states),
        _ if !states.is_empty() => level.push(states),
        _ => {}
    }
}

/// Whether the search must stop here: a budget ran out, or the progress
/// callback asked to stop.
fn budget_or_stop(
    opts: &ExploreOptions,
    p: &Progress,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Option<Incomplete> {
    if p.states >= opts.max_states {
        Some(Incomplete::MaxStates)
    } else if p.memory > opts.max_memory {
        Some(Incomplete::MaxMemory)
    } else if !progress(p) {
        Some(Incomplete::Interrupted)
    } else {
        None
    }
}
