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
use candidates::candidates;
use fingerprint::{fingerprint, symmetric_fingerprint, FingerprintSet};

/// States explored at most unless told otherwise.
pub const DEFAULT_MAX_STATES: usize = 50_000_000;
/// Memory (estimated, bytes) the search may use unless told otherwise.
pub const DEFAULT_MAX_MEMORY: usize = 4 << 30;
/// Frontier states expanded per batch (between progress callbacks).
const BATCH: usize = 4096;

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
        }
    }

    pub(crate) fn symmetric(&self) -> bool {
        self.symmetry && self.variant != Variant::Prepatch
    }

    /// The bounds in words (printed with every report).
    pub fn bounds(&self) -> String {
        let cedes = match self.max_cedes {
            Some(m) => format!("at most {} cede(s) per vcpu and {m} in total", self.cedes_per_vcpu),
            None => format!("at most {} cede(s) per vcpu", self.cedes_per_vcpu),
        };
        let fault = self.fault.map_or(String::new(), |f| {
            format!("; FAULT {} injected (the bug fixed by {})", f.name(), f.fixed_by())
        });
        let exit_req = if self.exit_request && self.variant == Variant::Modern {
            "; VCORE_EXIT_REQ may arrive at any time"
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
running vcpu to any thread; exits by HDEC (others reach the same states){exit_req}; {order}{fault}",
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

/// Every violation of state `s` reached from `parent` by `event`.
fn check(cfg: &Config, parent: &State, parent_view: Option<&Snapshot>, s: &State, event: &Event, fx: &Effects, ignored: &[u32]) -> Option<Violation> {
    if let Some(parent_view) = parent_view {
        let view = cfg.view(s, Some(event.label()));
        let mut out = invariants::check_snapshot(&view);
        out.extend(invariants::check_step(parent_view, &view));
        if let Some(v) = out.into_iter().find(|v| !ignored.contains(&v.invariant)) {
            return Some(v);
        }
    }
    cfg.history_check(parent, s, event, fx).into_iter().next()
}

/// One successor found while expanding a batch.
struct Succ {
    parent: usize,
    event: Event,
    state: State,
    effects: Effects,
    fp: u128,
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

    /// Successors of `batch[range]` (indices relative to the batch).
    fn expand(&self, batch: &[(State, u32)], offset: usize) -> Expanded {
        let mut out = Expanded::default();
        let mut cands = Vec::new();
        for (k, (s, _)) in batch.iter().enumerate() {
            if s.runs_done > 0 {
                out.finished += 1;
                continue;
            }
            candidates(&self.cfg, self.opts, s, self.chosen, &mut cands);
            let mut any_legal = false;
            for &e in cands.iter() {
                let mut c = *s;
                let Ok(fx) = self.cfg.apply(&mut c, e) else { continue };
                // A prod or a doorbell alone does not move the run on.
                any_legal |= !matches!(e, Event::Prod { .. } | Event::Doorbell { .. } | Event::TakeDoorbell { .. });
                out.transitions += 1;
                let fp = self.fp(&c);
                out.succs.push(Succ {
                    parent: offset + k,
                    event: e,
                    state: c,
                    effects: fx,
                    fp,
                });
            }
            // Before any vcpu is runnable nothing need happen; after that the
            // run must be able to go on until it finishes.
            let started = s.vcore.is_some_and(|vc| vc.runq_len > 0 || vc.runner.is_some());
            if !any_legal && started && out.deadlock.is_none() {
                out.deadlock = Some(offset + k);
            }
        }
        out
    }

    /// Check the new states `news` (indices into `succs`), in order; the
    /// first violation as (position in `news`, violation).
    fn check_all(&self, batch: &[(State, u32)], succs: &[Succ], news: &[usize]) -> Option<(usize, Violation)> {
        let mut parent_view: Option<(usize, Snapshot)> = None;
        for (pos, &i) in news.iter().enumerate() {
            let sc = &succs[i];
            let parent = &batch[sc.parent].0;
            let view = if self.opts.check_invariants {
                if parent_view.as_ref().is_none_or(|(p, _)| *p != sc.parent) {
                    parent_view = Some((sc.parent, self.cfg.view(parent, None)));
                }
                parent_view.as_ref().map(|(_, v)| v)
            } else {
                None
            };
            if let Some(v) = check(&self.cfg, parent, view, &sc.state, &sc.event, &sc.effects, &self.ignored) {
                return Some((pos, v));
            }
        }
        None
    }
}

/// Split `items` into `parts` contiguous chunks with their offsets.
fn chunks<T>(items: &[T], parts: usize) -> Vec<(usize, &[T])> {
    let size = items.len().div_ceil(parts.max(1)).max(1);
    items.chunks(size).enumerate().map(|(i, c)| (i * size, c)).collect()
}

/// Run the search with no progress reporting.
pub fn explore(opts: &ExploreOptions) -> Result<ExploreReport, ModelError> {
    explore_with(opts, &mut |_| true)
}

/// Run the search; `progress` is called between batches and stops the
/// search (incomplete, "interrupted") when it returns false.
pub fn explore_with(opts: &ExploreOptions, progress: &mut dyn FnMut(&Progress) -> bool) -> Result<ExploreReport, ModelError> {
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
fn bfs(search: &Search, root: State, report: &mut ExploreReport, progress: &mut dyn FnMut(&Progress) -> bool, start: Instant) {
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
                    handles.into_iter().map(|h| h.join().expect("explorer worker")).collect()
                })
            } else {
                parts.iter().map(|&(off, part)| search.expand(part, off)).collect()
            };
            let mut succs = Vec::new();
            for ex in expanded {
                report.transitions += ex.transitions;
                report.finished_runs += ex.finished;
                if let Some(k) = ex.deadlock {
                    report.counterexample = Some(trace_to(&nodes, batch[k].1));
                    report.violation = Some(Violation {
                        invariant: INV_DEADLOCK,
                        message: "deadlock: no thread can move and the run has not finished".into(),
                        fields: Default::default(),
                    });
                    report.states = seen.len();
                    report.depth = depth;
                    return;
                }
                succs.extend(ex.succs);
            }
            // The visited set, in a fixed order.
            let news: Vec<usize> = (0..succs.len()).filter(|&i| seen.insert(succs[i].fp)).collect();
            let base = nodes.len();
            nodes.extend(news.iter().map(|&i| (batch[succs[i].parent].1, Some(succs[i].event))));
            let parts = chunks(&news, workers);
            let found: Vec<Option<(usize, Violation)>> = if parts.len() > 1 {
                std::thread::scope(|sc| {
                    let handles: Vec<_> = parts
                        .iter()
                        .map(|&(off, part)| {
                            let succs = &succs;
                            sc.spawn(move || search.check_all(batch, succs, part).map(|(p, v)| (off + p, v)))
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().expect("explorer worker")).collect()
                })
            } else {
                parts
                    .iter()
                    .map(|&(off, part)| search.check_all(batch, &succs, part).map(|(p, v)| (off + p, v)))
                    .collect()
            };
            if let Some((pos, v)) = found.into_iter().flatten().min_by_key(|(p, _)| *p) {
                report.counterexample = Some(trace_to(&nodes, (base + pos) as u32));
                report.violation = Some(v);
                report.states = seen.len();
                report.depth = depth + 1;
                return;
            }
            next.extend(news.iter().enumerate().map(|(k, &i)| (succs[i].state, (base + k) as u32)));
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
