//! Exhaustive exploration of one vcore run: every interleaving of the model's
//! events from "vcpus created, none runnable" until the run has finished, in
//! breadth-first order with deduplication of states (a 128-bit fingerprint
//! of the state or of its symmetry class), so the first violation found has
//! a shortest trace.
//!
//! Every new state is checked with the shared snapshot invariants, the step
//! invariants between it and its parent, the model's history invariants
//! (doorbell delivery 29 included), and for deadlock (30: no event possible
//! before the run finished).
//!
//! Bounds (they keep N = 8 finite; see [`ExploreOptions::bounds`]): one run
//! (run_core once, finish ends the exploration); each chosen vcpu becomes
//! runnable once, in any order, before or during the run (late join); each
//! vcpu cedes at most once and is prodded at most once; at most one msgsndp
//! per run by default, from any running vcpu to any thread, and its taking;
//! exits use the HDEC vector.
//!
//! Resources are bounded: a state budget and an (estimated) memory budget,
//! both with defaults; running out ends the search "incomplete", never as a
//! proof.  A progress callback is called between batches and can stop the
//! search (Ctrl-C).  Each breadth-first level is expanded and checked in
//! batches on `workers` threads (the checks dominate the cost); the visited
//! set is updated on one thread, in a fixed order, so results do not depend
//! on the number of workers.

mod candidates;
mod fingerprint;

use std::time::Instant;

use crate::consts::Variant;
use crate::invariants::{self, Violation};
use crate::model::{vc_first, Config, Effects, Event, Fault, Model, ModelError, State, INV_DEADLOCK};
use crate::view::Snapshot;
use candidates::{candidates, doorbell_candidates};
use fingerprint::{fingerprint, symmetric_fingerprint, FingerprintSet};

/// States explored at most unless told otherwise.
pub const DEFAULT_MAX_STATES: usize = 50_000_000;
/// Memory (estimated, bytes) the search may use unless told otherwise.
pub const DEFAULT_MAX_MEMORY: usize = 4 << 30;
/// Frontier states expanded per batch (between progress callbacks).
const BATCH: usize = 2048;

#[derive(Clone, Debug)]
pub struct ExploreOptions {
    pub variant: Variant,
    pub threads: u8,
    /// vcpu ids of the vcore (default: all of vcore 0, ids 0..threads-1).
    pub vcpus: Option<Vec<u32>>,
    /// Snapshot invariants not to report.  Default: for prepatch, the
    /// checker's static 29 (a misplaced vcpu in a PACA, which is how prepatch
    /// places vcpus), so that the explorer shows the consequence: a doorbell
    /// taken by the wrong vcpu.
    pub ignore: Option<Vec<u32>>,
    /// Stop after this many states (the report is then incomplete).
    pub max_states: usize,
    /// Stop when the search's estimated memory passes this many bytes.
    pub max_memory: usize,
    /// Cedes per vcpu per run (default 1).
    pub cedes_per_vcpu: u8,
    /// Cedes in total per run (default 2 for up to 4 threads, 1 above; None = no limit).
    pub max_cedes: Option<u8>,
    /// H_PRODs in total per run (default 1).
    pub max_prods: u8,
    /// msgsndp doorbells in total per run (default 1).
    pub max_doorbells: u8,
    /// Evaluate the shared invariants on every state (false: only the
    /// model's own history and deadlock checks; for benchmarks).
    pub check_invariants: bool,
    /// Merge states that differ only by a permutation of the secondary
    /// threads with their vcpus (seed/modern; default true).
    pub symmetry: bool,
    /// Modern: also explore VCORE_EXIT_REQ arriving (as from another subcore) at any time.
    pub exit_request: bool,
    /// Run a deliberately broken kernel rule (to see the explorer catch it).
    pub fault: Option<Fault>,
    /// Threads that expand and check states (default: the machine's cores, at most 8).
    pub workers: usize,
    /// Partial-order reduction of the doorbell events (default true; used
    /// when at most one doorbell is sent): a msgsndp is explored only
    /// immediately before the next event of the sending or the target
    /// thread, and the taking of a doorbell only immediately before the next
    /// event of its thread.  Every other event commutes with them (they
    /// touch only DPDES, the ghost of sent doorbells and an idempotent IPI
    /// flag), so every state an unreduced search reaches is reached up to
    /// such a reordering, and the intermediate states are still checked.
    pub partial_order: bool,
}

/// Why a search ended before it had seen every state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incomplete {
    /// The state budget (`max_states`) ran out.
    MaxStates,
    /// The memory budget (`max_memory`) ran out.
    MaxMemory,
    /// The progress callback asked to stop (Ctrl-C).
    Interrupted,
}

impl Incomplete {
    pub fn describe(self) -> &'static str {
        match self {
            Incomplete::MaxStates => "the state budget ran out",
            Incomplete::MaxMemory => "the memory budget ran out",
            Incomplete::Interrupted => "interrupted",
        }
    }
}

/// Where a running search is (handed to the progress callback).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub states: usize,
    pub transitions: usize,
    pub depth: usize,
    pub frontier: usize,
    pub seconds: f64,
    /// Estimated bytes in use.
    pub memory: usize,
}

impl ExploreOptions {
    pub fn new(variant: Variant, threads: u8) -> Self {
        ExploreOptions {
            variant,
            threads,
            vcpus: None,
            ignore: None,
            max_states: DEFAULT_MAX_STATES,
            max_memory: DEFAULT_MAX_MEMORY,
            cedes_per_vcpu: 1,
            // Two cedes give the cede-to-exit race between two napping threads.
            max_cedes: Some(if threads > 4 { 1 } else { 2 }),
            max_prods: 1,
            max_doorbells: 1,
            check_invariants: true,
            symmetry: true,
            exit_request: false,
            fault: None,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            partial_order: true,
        }
    }

    pub(crate) fn symmetric(&self) -> bool {
        self.symmetry && self.variant != Variant::Prepatch
    }

    pub(crate) fn reduced(&self) -> bool {
        self.partial_order && self.max_doorbells <= 1
    }

    /// The bounds in words (printed with every report).
    pub fn bounds(&self) -> String {
        let cedes = match self.max_cedes {
            Some(m) => format!(
                "at most {} cede(s) per vcpu and {m} in total",
                self.cedes_per_vcpu
            ),
            None => format!("at most {} cede(s) per vcpu", self.cedes_per_vcpu),
        };
        let fault = self.fault.map_or(String::new(), |f| {
            format!(
                "; FAULT {} injected (the bug fixed by {})",
                f.name(),
                f.fixed_by()
            )
        });
        let exit_req = if self.exit_request && self.variant == Variant::Modern {
            "; VCORE_EXIT_REQ may arrive at any time"
        } else {
            ""
        };
        let por = if self.reduced() {
            " (a doorbell is sent, and taken, just before the next step of the threads it concerns)"
        } else {
            ""
        };
        let order = if self.symmetric() {
            "any runnable vcpu may be the runner; start_thread in any order; states equal up to a \
permutation of the secondary threads (with their vcpus) are merged"
        } else {
            "runner = lowest runnable vcpu; start_thread in runnable-list order"
        };
        format!(
            "one run of the vcore; each vcpu becomes runnable once, in any order, before the run or as a latecomer \
while no thread has begun exiting; {cedes}; at most {} H_PROD(s) and {} msgsndp doorbell(s) in total, from any \
running vcpu to any thread{por}; exits by HDEC (others reach the same states){exit_req}; {order}{fault}",
            self.max_prods, self.max_doorbells
        )
    }

    pub fn ignored(&self) -> Vec<u32> {
        self.ignore.clone().unwrap_or_else(|| match self.variant {
            Variant::Prepatch => vec![crate::model::INV_DOORBELL],
            _ => vec![],
        })
    }
}

#[derive(Clone, Debug)]
pub struct ExploreReport {
    pub variant: Variant,
    pub threads: u8,
    pub vcpus: Vec<u32>,
    pub states: usize,
    pub transitions: usize,
    pub seconds: f64,
    /// Events from the start state (vcpus created) to the violation.
    pub counterexample: Option<Vec<Event>>,
    pub violation: Option<Violation>,
    /// None when every reachable state was seen (or a violation was found).
    pub incomplete: Option<Incomplete>,
    /// States where the run had finished.
    pub finished_runs: usize,
    pub depth: usize,
    pub ignored: Vec<u32>,
    /// The bounds this exploration ran under, in words.
    pub bounds: String,
    /// The largest estimated memory of the search, in bytes.
    pub peak_memory: usize,
    pub fault: Option<Fault>,
}

impl ExploreReport {
    /// "<invariant id>: <message>" of the violation, if any.
    pub fn violated(&self) -> Option<String> {
        self.violation
            .as_ref()
            .map(|v| format!("invariant {}: {}", v.invariant, v.message))
    }

    pub fn complete(&self) -> bool {
        self.incomplete.is_none()
    }
}

/// The first violation of state `s` reached from `parent` by `event`, and
/// the view of `s` (when the shared invariants are evaluated).
fn check(
    cfg: &Config,
    parent: &State,
    parent_view: Option<&Snapshot>,
    s: &State,
    event: &Event,
    fx: &Effects,
    ignored: &[u32],
) -> (Option<Violation>, Option<Snapshot>) {
    let mut view = None;
    if let Some(parent_view) = parent_view {
        let v = cfg.view(s, Some(event.label()));
        let mut out = invariants::check_snapshot(&v);
        out.extend(invariants::check_step(parent_view, &v));
        if let Some(found) = out.into_iter().find(|x| !ignored.contains(&x.invariant)) {
            return (Some(found), Some(v));
        }
        view = Some(v);
    }
    (cfg.history_check(parent, s, event, fx).into_iter().next(), view)
}

/// The longest step the explorer takes: msgsndp, the doorbell's taking, one
/// more event.
const CHAIN: usize = 3;

/// One successor found while expanding a batch: the events from the parent
/// (a chain when partial-order reduction joins doorbell events to the step
/// they are moved up to) and the resulting state.
struct Succ {
    parent: usize,
    chain: [Event; CHAIN],
    len: u8,
    state: State,
    fp: u128,
}

impl Succ {
    fn events(&self) -> &[Event] {
        &self.chain[..self.len as usize]
    }
}

/// Everything one batch of frontier states produced.
#[derive(Default)]
struct Expanded {
    succs: Vec<Succ>,
    transitions: usize,
    finished: usize,
    /// The first parent (index in the batch) that can make no move.
    deadlock: Option<usize>,
}

/// The search's fixed context.
struct Search<'a> {
    cfg: Config,
    opts: &'a ExploreOptions,
    chosen: u8,
    ignored: Vec<u32>,
}

impl Search<'_> {
    fn fp(&self, s: &State) -> u128 {
        if self.opts.symmetric() {
            symmetric_fingerprint(&self.cfg, s, self.chosen)
        } else {
            fingerprint(s)
        }
    }

    fn push(&self, out: &mut Expanded, parent: usize, events: &[Event], state: State) {
        let mut chain = [events[0]; CHAIN];
        chain[..events.len()].copy_from_slice(events);
        out.transitions += 1;
        out.succs.push(Succ {
            parent,
            chain,
            len: events.len() as u8,
            fp: self.fp(&state),
            state,
        });
    }

    /// Successors of the states of `batch` (`offset`: index of its first).
    fn expand(&self, batch: &[(State, u32)], offset: usize) -> Expanded {
        let mut out = Expanded::default();
        let (mut cands, mut lazy, mut tails) = (Vec::new(), Vec::new(), Vec::new());
        for (k, (s, _)) in batch.iter().enumerate() {
            if s.runs_done > 0 {
                out.finished += 1;
                continue;
            }
            let parent = offset + k;
            candidates(&self.cfg, self.opts, s, self.chosen, &mut cands);
            let mut any_legal = false;
            for &e in cands.iter() {
                let mut c = *s;
                if self.cfg.apply(&mut c, e).is_ok() {
                    // A prod alone does not move the run on.
                    any_legal |= !matches!(e, Event::Prod { .. });
                    self.push(&mut out, parent, &[e], c);
                }
            }
            doorbell_candidates(&self.cfg, self.opts, s, &mut lazy);
            for &d in lazy.iter() {
                let mut mid = *s;
                if self.cfg.apply(&mut mid, d).is_err() {
                    continue;
                }
                if !self.opts.reduced() {
                    self.push(&mut out, parent, &[d], mid);
                    continue;
                }
                self.expand_chain(&mut out, parent, s, d, mid, &mut tails);
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

    /// The steps `d` (a msgsndp or a doorbell's taking) is moved up to: `d`
    /// then the next event of a thread it concerns (for a msgsndp to thread
    /// t also: `d`, t's taking of it, t's next event).
    fn expand_chain(
        &self,
        out: &mut Expanded,
        parent: usize,
        s: &State,
        d: Event,
        mid: State,
        tails: &mut Vec<Event>,
    ) {
        let concerned = |e: &Event| -> bool {
            let Some(x) = e.thread() else { return false };
            match d {
                Event::TakeDoorbell { thread } => x == thread,
                Event::Doorbell { vcpu, thread } => {
                    let from = (vcpu - vc_first(s)) as usize;
                    x == thread || s.threads[x as usize].running.map(usize::from) == Some(from)
                }
                _ => false,
            }
        };
        candidates(&self.cfg, self.opts, &mid, self.chosen, tails);
        for &e in tails.iter().filter(|e| concerned(e)) {
            let mut c = mid;
            if self.cfg.apply(&mut c, e).is_ok() {
                self.push(out, parent, &[d, e], c);
            }
        }
        if let Event::Doorbell { thread, .. } = d {
            let take = Event::TakeDoorbell { thread };
            let mut mid2 = mid;
            if self.cfg.apply(&mut mid2, take).is_err() {
                return;
            }
            candidates(&self.cfg, self.opts, &mid2, self.chosen, tails);
            for &e in tails.iter().filter(|e| e.thread() == Some(thread)) {
                let mut c = mid2;
                if self.cfg.apply(&mut c, e).is_ok() {
                    self.push(out, parent, &[d, take, e], c);
                }
            }
        }
    }

    /// Check the new states `news` (indices into `succs`), in order, step by
    /// step along each chain; the first violation as (position in `news`,
    /// events of the chain up to the violating one, violation).
    fn check_all(
        &self,
        batch: &[(State, u32)],
        succs: &[Succ],
        news: &[usize],
    ) -> Option<(usize, usize, Violation)> {
        let mut parent_view: Option<(usize, Snapshot)> = None;
        for (pos, &i) in news.iter().enumerate() {
            let sc = &succs[i];
            let mut cur = batch[sc.parent].0;
            if self.opts.check_invariants && parent_view.as_ref().is_none_or(|(p, _)| *p != sc.parent) {
                parent_view = Some((sc.parent, self.cfg.view(&cur, None)));
            }
            let mut mid_view: Option<Snapshot> = None;
            for (k, e) in sc.events().iter().enumerate() {
                let mut next = cur;
                let fx = self
                    .cfg
                    .apply(&mut next, *e)
                    .expect("a chain found legal replays");
                let before = if k == 0 {
                    parent_view
                        .as_ref()
                        .filter(|_| self.opts.check_invariants)
                        .map(|(_, v)| v)
                } else {
                    mid_view.as_ref()
                };
                let (found, view) = check(&self.cfg, &cur, before, &next, e, &fx, &self.ignored);
                if let Some(v) = found {
                    return Some((pos, k + 1, v));
                }
                cur = next;
                mid_view = view;
            }
        }
        None
    }
}

/// Split `items` into `parts` contiguous chunks with their offsets.
fn chunks<T>(items: &[T], parts: usize) -> Vec<(usize, &[T])> {
    let size = items.len().div_ceil(parts.max(1)).max(1);
    items
        .chunks(size)
        .enumerate()
        .map(|(i, c)| (i * size, c))
        .collect()
}

/// Run the search with no progress reporting.
pub fn explore(opts: &ExploreOptions) -> Result<ExploreReport, ModelError> {
    explore_with(opts, &mut |_| true)
}

/// Run the search; `progress` is called between batches and stops the
/// search (incomplete, "interrupted") when it returns false.
pub fn explore_with(
    opts: &ExploreOptions,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<ExploreReport, ModelError> {
    let start = Instant::now();
    let mut model = Model::new(opts.variant, opts.threads)?;
    let n = opts.threads as u32;
    let vcpus = opts.vcpus.clone().unwrap_or_else(|| (0..n).collect());
    if vcpus.is_empty() {
        return Err(ModelError::new("explore", "no vcpus given"));
    }
    for &id in &vcpus {
        model.apply(Event::CreateVcpu { vcpu: id })?;
    }
    if let Some(f) = opts.fault.filter(|f| !f.variants().contains(&opts.variant)) {
        let names: Vec<&str> = f.variants().iter().map(|v| v.name()).collect();
        return Err(ModelError::new(
            "explore",
            format!(
                "fault {} breaks code the {} kernel does not have (it applies to {})",
                f.name(),
                opts.variant,
                names.join(", ")
            ),
        ));
    }
    let mut cfg = model.config;
    cfg.fault = opts.fault;
    let root = model.state;
    let first = vc_first(&root);
    let chosen: u8 = vcpus.iter().fold(0, |m, &id| m | 1 << (id - first));
    let search = Search {
        cfg,
        opts,
        chosen,
        ignored: opts.ignored(),
    };
    let mut report = ExploreReport {
        variant: opts.variant,
        threads: opts.threads,
        vcpus: vcpus.clone(),
        states: 0,
        transitions: 0,
        seconds: 0.0,
        counterexample: None,
        violation: None,
        incomplete: None,
        finished_runs: 0,
        depth: 0,
        ignored: search.ignored.clone(),
        bounds: opts.bounds(),
        peak_memory: 0,
        fault: opts.fault,
    };
    bfs(&search, root, &mut report, progress, start);
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// The breadth-first search proper; fills `report`.
fn bfs(
    search: &Search,
    root: State,
    report: &mut ExploreReport,
    progress: &mut dyn FnMut(&Progress) -> bool,
    start: Instant,
) {
    let opts = search.opts;
    let workers = opts.workers.max(1);
    let mut seen = FingerprintSet::default();
    // nodes[i] = (parent node, event that led here); node 0 is the root.
    let mut nodes: Vec<(u32, Option<Event>)> = vec![(u32::MAX, None)];
    seen.insert(search.fp(&root));
    let mut frontier: Vec<(State, u32)> = vec![(root, 0)];
    let trace_to = |nodes: &Vec<(u32, Option<Event>)>, mut i: u32| {
        let mut events = Vec::new();
        while let Some(e) = nodes[i as usize].1 {
            events.push(e);
            i = nodes[i as usize].0;
        }
        events.reverse();
        events
    };
    let mut depth = 0usize;
    while !frontier.is_empty() {
        let mut next: Vec<(State, u32)> = Vec::new();
        for batch in frontier.chunks(BATCH * workers) {
            let parts = chunks(batch, workers);
            let expanded: Vec<Expanded> = if parts.len() > 1 {
                std::thread::scope(|sc| {
                    let handles: Vec<_> = parts
                        .iter()
                        .map(|&(off, part)| sc.spawn(move || search.expand(part, off)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("explorer worker"))
                        .collect()
                })
            } else {
                parts
                    .iter()
                    .map(|&(off, part)| search.expand(part, off))
                    .collect()
            };
            let mut succs = Vec::new();
            for ex in expanded {
                report.transitions += ex.transitions;
                report.finished_runs += ex.finished;
                if let Some(k) = ex.deadlock {
                    report.counterexample = Some(trace_to(&nodes, batch[k].1));
                    report.violation = Some(Violation::new(
                        INV_DEADLOCK,
                        "deadlock: no thread can move and the run has not finished",
                    ));
                    report.states = seen.len();
                    report.depth = depth;
                    return;
                }
                succs.extend(ex.succs);
            }
            // The visited set, in a fixed order; a chain's events become
            // linked nodes, the last one the new state's.
            let news: Vec<usize> = (0..succs.len()).filter(|&i| seen.insert(succs[i].fp)).collect();
            let mut ids = Vec::with_capacity(news.len());
            for &i in &news {
                let mut parent = batch[succs[i].parent].1;
                for &e in succs[i].events() {
                    nodes.push((parent, Some(e)));
                    parent = (nodes.len() - 1) as u32;
                }
                ids.push(parent);
            }
            let parts = chunks(&news, workers);
            type Found = Option<(usize, usize, Violation)>;
            let found: Vec<Found> = if parts.len() > 1 {
                std::thread::scope(|sc| {
                    let handles: Vec<_> = parts
                        .iter()
                        .map(|&(off, part)| {
                            let succs = &succs;
                            sc.spawn(move || {
                                search
                                    .check_all(batch, succs, part)
                                    .map(|(p, k, v)| (off + p, k, v))
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("explorer worker"))
                        .collect()
                })
            } else {
                parts
                    .iter()
                    .map(|&(off, part)| {
                        search
                            .check_all(batch, &succs, part)
                            .map(|(p, k, v)| (off + p, k, v))
                    })
                    .collect()
            };
            if let Some((pos, k, v)) = found.into_iter().flatten().min_by_key(|(p, k, _)| (*p, *k)) {
                let mut trace = trace_to(&nodes, ids[pos]);
                trace.truncate(trace.len() + k - succs[news[pos]].events().len());
                report.depth = depth + 1;
                report.counterexample = Some(trace);
                report.violation = Some(v);
                report.states = seen.len();
                return;
            }
            next.extend(news.iter().zip(&ids).map(|(&i, &id)| (succs[i].state, id)));
            let memory = seen.capacity() * 17
                + nodes.capacity() * std::mem::size_of::<(u32, Option<Event>)>()
                + (frontier.capacity() + next.capacity()) * std::mem::size_of::<(State, u32)>()
                + succs.capacity() * std::mem::size_of::<Succ>();
            report.peak_memory = report.peak_memory.max(memory);
            let p = Progress {
                states: seen.len(),
                transitions: report.transitions,
                depth,
                frontier: frontier.len(),
                seconds: start.elapsed().as_secs_f64(),
                memory,
            };
            let stop = if seen.len() >= opts.max_states {
                Some(Incomplete::MaxStates)
            } else if memory > opts.max_memory {
                Some(Incomplete::MaxMemory)
            } else if !progress(&p) {
                Some(Incomplete::Interrupted)
            } else {
                None
            };
            if let Some(why) = stop {
                report.incomplete = Some(why);
                report.states = seen.len();
                report.depth = depth;
                return;
            }
        }
        frontier = next;
        if !frontier.is_empty() {
            depth += 1;
        }
    }
    report.states = seen.len();
    report.depth = depth;
}
