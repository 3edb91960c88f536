//! Exhaustive exploration of one vcore run: every interleaving of the model's
//! events from "vcpus created, none runnable" until the run has finished, in
//! breadth-first order with deduplication of states (a 64-bit fingerprint
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
//! batches on `workers` threads; the visited set is split into shards by
//! fingerprint, each updated by one thread in the successors' order, so
//! results do not depend on the number of workers.

mod candidates;
mod clean;
mod fingerprint;
mod search;
mod table;
#[cfg(test)]
mod tests;
mod visited;

use std::time::Instant;

use crate::consts::Variant;
use crate::invariants::Violation;
use crate::model::{vc_first, Event, Fault, Model, ModelError, State};
use search::{bfs, Search};

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
    /// Partial-order reduction of the doorbell events (default false: with
    /// `subsumption` the states after a doorbell was taken merge with those
    /// where none was sent, and the chains below cost more than they save,
    /// N = 8: 6.7 M states against 4.7 M; used when at most one doorbell is
    /// sent): a msgsndp is explored only
    /// immediately before the next event of the sending or the target
    /// thread, and the taking of a doorbell only immediately before the next
    /// event of its thread.  Every other event commutes with them (they
    /// touch only DPDES, the ghost of sent doorbells and an idempotent IPI
    /// flag), so every state an unreduced search reaches is reached up to
    /// such a reordering, and the intermediate states are still checked
    /// (every chain with a new state on the way is replayed and checked).
    pub partial_order: bool,
    /// Merge a state into one equal but for the explorer's bound counters
    /// (cedes, prods, doorbells used so far) with none of them larger: it
    /// can do all the other can (default true).
    pub subsumption: bool,
    /// Merge states that differ only in values nothing reads again (a
    /// secondary's IPI flag where it is always cleared before being read,
    /// a trap other than the cede's, `prodded` of a vcpu that cannot cede
    /// again; default true; see `fingerprint::forget_dead`).
    pub merge_dead: bool,
    /// With `symmetry`: merge the states of a class (false: only make the
    /// same choices as the symmetric search; for the tests that compare the
    /// reduced search with the full one).
    pub(crate) merge_symmetric: bool,
    /// Explore an H_PROD only just before the cede it can change (default
    /// true; off in [`ExploreOptions::unreduced`]).  kvmppc_h_prod sets
    /// `arch.prodded`, which no snapshot shows and which, within the one
    /// run explored, only that vcpu's next kvmppc_h_cede reads (the
    /// kernel's other reader, kvmppc_vcpu_woken in book3s_hv.c, runs in
    /// kvmppc_run_vcpu before a run starts and in kvmppc_vcore_blocked;
    /// the search offers a prod only while the vcore runs and ends with
    /// the run), and kicks the vcpu's thread out of a cede nap,
    /// whose wakeup the explorer offers anyway (so the kick's IPI flag is
    /// dead, see `fingerprint::Dead`).  Every other event commutes with it,
    /// so any run with a prod reaches the same snapshots as the run with
    /// the prod moved to just before that cede, or dropped when no cede
    /// follows.  There the cede returns at once (kvm_cede_prodded), which
    /// leaves every field as it was but the bound counters: with
    /// `subsumption` the pair leads nowhere new and is not tried at all
    /// (checked on every pair: where it does more, it is tried); without,
    /// it is tried as one step (see `Search::prod_before_cede`).
    pub(crate) defer_prods: bool,
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
            partial_order: false,
            subsumption: true,
            merge_dead: true,
            merge_symmetric: true,
            defer_prods: true,
        }
    }

    /// Every merging of states off (symmetry, subsumption, dead values, the
    /// doorbell and prod reductions): the full search, which keeps the free choices
    /// of the symmetric one (any runner, start_thread in any order) so that
    /// both explore the same runs.
    pub fn unreduced(&mut self) {
        self.merge_symmetric = false;
        self.subsumption = false;
        self.merge_dead = false;
        self.partial_order = false;
        self.defer_prods = false;
    }

    pub(crate) fn symmetric(&self) -> bool {
        self.symmetry && self.variant != Variant::Prepatch
    }

    pub(crate) fn reduced(&self) -> bool {
        self.partial_order && self.max_doorbells <= 1
    }

    /// Why these options do not fit their variant (a fault the variant's
    /// kernel cannot have, or VCORE_EXIT_REQ where its kernel has no such
    /// bit), or None: such options are refused, not run to a search that
    /// would change nothing.
    pub fn unfit(&self) -> Option<String> {
        if let Some(why) = self.fault.and_then(|f| f.not_modelled(self.variant)) {
            return Some(why);
        }
        (self.exit_request && self.variant != Variant::Modern).then(|| {
            format!(
                "exit requests (--exit-request) are modern only: the {} kernel counts entries and exits in \
                 vc->entry_exit_count, which has no VCORE_EXIT_REQ bit (bit 16 of modern's \
                 entry_exit_map, set from another subcore)",
                self.variant
            )
        })
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
            format!("; FAULT {} injected ({})", f.name(), f.description())
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
        let prods = if self.defer_prods {
            "; an H_PROD is tried only just before the cede it can change (nothing else in the run reads arch.prodded)"
        } else {
            ""
        };
        let order = if self.symmetric() && self.merge_symmetric {
            "any runnable vcpu may be the runner; start_thread in any order; states equal up to a \
permutation of the secondary threads (with their vcpus) are merged"
        } else if self.symmetric() {
            "any runnable vcpu may be the runner; start_thread in any order"
        } else {
            "runner = lowest runnable vcpu; start_thread in runnable-list order"
        };
        let merged = match (self.subsumption, self.merge_dead) {
            (true, true) => "; a state equal to one kept but for more cedes, prods or doorbells used, or for values nothing reads again, is not explored again",
            (true, false) => "; a state equal to one kept but for more cedes, prods or doorbells used is not explored again",
            (false, true) => "; a state equal to one kept but for values nothing reads again is not explored again",
            (false, false) => "",
        };
        format!(
            "one run of the vcore; each vcpu becomes runnable once, in any order, before the run or as a latecomer \
while no thread has begun exiting; {cedes}; at most {} H_PROD(s) and {} msgsndp doorbell(s) in total, from any \
running vcpu to any thread{por}{prods}; exits by HDEC (others reach the same states){exit_req}; {order}{merged}{fault}",
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
    /// With a fault and a counterexample: the invariant and the event
    /// (1-based) at which the same events break it with the fault left out,
    /// when they do (the variant's own bug, e.g. prepatch's doorbell
    /// misdelivery, is shorter than what the fault breaks).  None otherwise.
    pub without_fault: Option<(u32, usize)>,
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
    explore_recording(opts, progress, None)
}

/// The search; every state expanded (root included) is appended to `record` if given.
fn explore_recording(
    opts: &ExploreOptions,
    progress: &mut dyn FnMut(&Progress) -> bool,
    mut record: Option<&mut Vec<State>>,
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
    if let Some(why) = opts.unfit() {
        return Err(ModelError::new("explore", why));
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
        without_fault: None,
    };
    if let Some(r) = record.as_deref_mut() {
        r.push(root);
    }
    bfs(&search, root, &mut report, progress, start, record);
    if let (Some(_), Some(events)) = (opts.fault, &report.counterexample) {
        let plain = Search {
            cfg: model.config,
            ..search
        };
        report.without_fault = plain.first_violation(&root, events);
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
