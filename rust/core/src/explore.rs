//! Exhaustive exploration of one vcore run: every interleaving of the model's
//! events from "vcpus created, none runnable" until the run has finished, in
//! breadth-first order with deduplication of states (a 128-bit fingerprint
//! of the whole state), so the first violation found has a shortest trace.
//!
//! Every new state is checked with the shared snapshot invariants, the step
//! invariants between it and its parent, the model's history invariants, the
//! doorbell property for every (running vcpu, target thread) pair, and for
//! deadlock (no event possible before the run finished).
//!
//! Bounds (they keep N = 8 finite and fast; see [`BOUNDS`]): one run
//! (run_core once, finish ends the exploration); each chosen vcpu becomes
//! runnable once, in any order, before or during the run (late join); each
//! vcpu cedes at most once and is prodded at most once; doorbells are not
//! explored as steps but checked in every state (a doorbell changes nothing
//! the model tracks except waking a ceded nap, which a DEC wake covers);
//! exits use the HDEC vector; the runner is the lowest runnable vcpu and
//! kvmppc_start_thread follows the runnable list order (as the kernel does).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::time::Instant;

use crate::consts::Variant;
use crate::invariants::{self, Violation};
use crate::model::{vc_first, Config, Event, Model, ModelError, Phase, State, INV_DEADLOCK};

#[derive(Clone, Debug)]
pub struct ExploreOptions {
    pub variant: Variant,
    pub threads: u8,
    /// vcpu ids of the vcore (default: all of vcore 0, ids 0..threads-1).
    pub vcpus: Option<Vec<u32>>,
    /// Snapshot invariants not to report.  Default: for prepatch, the
    /// checker's static 29 (a misplaced vcpu in a PACA, which is how prepatch
    /// places vcpus), so that the explorer shows the consequence: an actual
    /// msgsndp from a running vcpu reaching the wrong vcpu.
    pub ignore: Option<Vec<u32>>,
    /// Stop after this many states (None = no limit).
    pub max_states: Option<usize>,
    /// Cedes per vcpu per run (default 1).
    pub cedes_per_vcpu: u8,
    /// Cedes in total per run (default 2 for up to 4 threads, 1 above; None = no limit).
    pub max_cedes: Option<u8>,
    /// H_PRODs in total per run (default 1).
    pub max_prods: u8,
    /// Evaluate the shared invariants on every state (false: only the
    /// model's own history, doorbell and deadlock checks; for benchmarks).
    pub check_invariants: bool,
    /// Merge states that differ only by a permutation of the secondary
    /// threads with their vcpus (seed/modern; default true).
    pub symmetry: bool,
    /// Modern: also explore VCORE_EXIT_REQ arriving (as from another subcore) at any time.
    pub exit_request: bool,
    /// Run a deliberately broken kernel rule (to see the explorer catch it).
    pub fault: Option<crate::model::Fault>,
}

impl ExploreOptions {
    /// The bounds in words (printed with every report).
    pub fn bounds(&self) -> String {
        let cedes = match self.max_cedes {
            Some(m) => format!(
                "at most {} cede(s) per vcpu and {m} in total",
                self.cedes_per_vcpu
            ),
            None => format!("at most {} cede(s) per vcpu", self.cedes_per_vcpu),
        };
        let fault = self
            .fault
            .map_or(String::new(), |f| format!("; FAULT {} injected", f.name()));
        format!(
            "one run of the vcore; each vcpu becomes runnable once, in any order, before the run or as a latecomer \
while no thread has begun exiting; {cedes}; \
at most {} H_PROD(s) in total; a doorbell from every running vcpu to every thread checked in every state; \
exits by HDEC (others reach the same states){}; {}{fault}",
            self.max_prods,
            if self.exit_request && self.variant == Variant::Modern {
                "; VCORE_EXIT_REQ may arrive at any time"
            } else {
                ""
            },
            if self.symmetry && self.variant != Variant::Prepatch {
                "any runnable vcpu may be the runner; start_thread in any order; states equal up to a \
permutation of the secondary threads (with their vcpus) are merged"
            } else {
                "runner = lowest runnable vcpu; start_thread in runnable-list order"
            }
        )
    }

    pub fn new(variant: Variant, threads: u8) -> Self {
        ExploreOptions {
            variant,
            threads,
            vcpus: None,
            ignore: None,
            max_states: None,
            cedes_per_vcpu: 1,
            // Two cedes give the cede-to-exit race between two napping threads;
            // one keeps an 8-thread core well inside a minute.
            max_cedes: Some(if threads > 4 { 1 } else { 2 }),
            max_prods: 1,
            check_invariants: true,
            symmetry: true,
            exit_request: false,
            fault: None,
        }
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
    /// False when max_states cut the search short.
    pub complete: bool,
    /// States where the run had finished.
    pub finished_runs: usize,
    pub depth: usize,
    pub ignored: Vec<u32>,
    /// The bounds this exploration ran under, in words.
    pub bounds: String,
}

impl ExploreReport {
    /// "<invariant id>: <message>" of the violation, if any.
    pub fn violated(&self) -> Option<String> {
        self.violation
            .as_ref()
            .map(|v| format!("invariant {}: {}", v.invariant, v.message))
    }
}

/// A small fast 128-bit hasher for state fingerprints (two multiply/rotate
/// lanes, finished with the splitmix64 mixer).
struct Fingerprinter {
    a: u64,
    b: u64,
}

impl Fingerprinter {
    fn new() -> Self {
        Fingerprinter {
            a: 0x243f_6a88_85a3_08d3,
            b: 0x1319_8a2e_0370_7344,
        }
    }

    fn finish128(&self) -> u128 {
        (mix64(self.a) as u128) << 64 | mix64(self.b ^ self.a.rotate_left(32)) as u128
    }
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Hasher for Fingerprinter {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word) ^ (chunk.len() as u64) << 56);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.a = (self.a ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31);
        self.b = (self.b.rotate_left(23) ^ x).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    }
    fn write_u8(&mut self, x: u8) {
        self.write_u64(x as u64 | 0x100)
    }
    fn write_u16(&mut self, x: u16) {
        self.write_u64(x as u64 | 0x2_0000)
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(x as u64 | 0x4_0000_0000)
    }
    fn write_i32(&mut self, x: i32) {
        self.write_u32(x as u32)
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64)
    }
    fn write_isize(&mut self, x: isize) {
        self.write_u64(x as u64)
    }
    fn finish(&self) -> u64 {
        mix64(self.a)
    }
}

/// The fingerprints are already mixed: the set uses their low bits as is.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u128(&mut self, x: u128) {
        self.0 = x as u64;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FingerprintSet = HashSet<u128, std::hash::BuildHasherDefault<PassThrough>>;

fn fingerprint(s: &State) -> u128 {
    let mut h = Fingerprinter::new();
    s.hash(&mut h);
    h.finish128()
}

/// What a secondary thread t and its vcpu t look like, with every reference
/// to "t" made relative, so that threads can be compared across positions.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct SecondaryKey {
    phase: Phase,
    kvm_vcpu_self: bool,
    kvm_vcore: bool,
    ptid_self: bool,
    hwthread_req: u8,
    hwthread_state: u8,
    napping: u8,
    in_guest: u8,
    ipi: bool,
    running_self: bool,
    /// entered, exited, napping_threads, runnable, runner, chosen bits of t.
    bits: u8,
    vcpu: Option<(u8, u8, u8, i32, i32, u32, bool, u8, u8, bool)>,
}

fn secondary_key(s: &State, t: usize, chosen: u8) -> Option<SecondaryKey> {
    let th = &s.threads[t];
    let me = t as u8;
    let is_self = |v: Option<u8>| -> Option<bool> {
        match v {
            None => Some(false),
            Some(x) if x == me => Some(true),
            Some(_) => None,
        }
    };
    let h = &th.hstate;
    if h.ptid != 0 && h.ptid != me {
        return None;
    }
    let vc = s.vcore?;
    let bit = |m: u8| (m >> t) & 1;
    let bits = bit(vc.entered)
        | bit(vc.exited) << 1
        | bit(vc.napping_threads) << 2
        | (vc.is_runnable(me) as u8) << 3
        | ((vc.runner == Some(me)) as u8) << 4
        | bit(chosen) << 5;
    let vcpu = match s.vcpus[t] {
        None => None,
        Some(v) => {
            if v.ptid != me {
                return None;
            }
            let thread_cpu = if v.thread_cpu >= 0 {
                v.thread_cpu - t as i32
            } else {
                v.thread_cpu
            };
            Some((
                v.state, v.ceded, v.prodded, v.cpu, thread_cpu, v.trap, v.started, v.cedes, v.prods, true,
            ))
        }
    };
    Some(SecondaryKey {
        phase: th.phase,
        kvm_vcpu_self: is_self(h.kvm_vcpu)?,
        kvm_vcore: h.kvm_vcore,
        ptid_self: h.ptid == me && me != 0,
        hwthread_req: h.hwthread_req,
        hwthread_state: h.hwthread_state,
        napping: h.napping,
        in_guest: h.in_guest,
        ipi: th.ipi,
        running_self: is_self(th.running)?,
        bits,
        vcpu,
    })
}

/// The fingerprint of the state's symmetry class: thread 0 and vcpu 0 as
/// they are, the secondaries (each with its own vcpu) as a sorted multiset.
/// Sound for seed/modern, where thread t only ever holds vcpu t and every
/// rule treats the secondaries alike; falls back to the plain fingerprint
/// when a state does not have that shape.
fn symmetric_fingerprint(cfg: &Config, s: &State, chosen: u8) -> u128 {
    let n = cfg.threads as usize;
    let mut keys = [None; crate::consts::MAX_SMT_THREADS];
    for t in 1..n {
        match secondary_key(s, t, chosen) {
            Some(k) => keys[t] = Some(k),
            None => return fingerprint(s),
        }
    }
    keys[1..n].sort_unstable();
    let mut h = Fingerprinter::new();
    s.threads[0].hash(&mut h);
    s.vcpus[0].hash(&mut h);
    if let Some(mut vc) = s.vcore {
        let runner0 = vc.runner.map(|r| r == 0);
        let runnable0 = vc.is_runnable(0);
        vc.entered &= 1;
        vc.exited &= 1;
        vc.napping_threads &= 1;
        vc.runq = [0; crate::consts::MAX_SMT_THREADS];
        vc.runner = None;
        vc.hash(&mut h);
        (runner0, runnable0).hash(&mut h);
    } else {
        0u8.hash(&mut h);
    }
    (s.mmu, s.switch_in, s.switch_out, s.runs_done).hash(&mut h);
    keys[1..n].hash(&mut h);
    h.finish128()
}

/// The events the explorer tries in `s` (bounded; legality checked by apply).
fn candidates(cfg: &Config, opts: &ExploreOptions, s: &State, chosen: u8, out: &mut Vec<Event>) {
    out.clear();
    if s.runs_done > 0 {
        return;
    }
    let first = vc_first(s);
    let vc = match s.vcore {
        Some(vc) => vc,
        None => return,
    };
    // With symmetry the choices must not depend on thread positions: any
    // runnable vcpu may be the runner and start_thread may go in any order.
    // Prepatch follows the kernel: lowest runnable vcpu, list order.
    let symmetric = opts.symmetry && cfg.variant != Variant::Prepatch;
    let cedes: u32 = s.vcpus.iter().flatten().map(|v| v.cedes as u32).sum();
    let prods: u32 = s.vcpus.iter().flatten().map(|v| v.prods as u32).sum();
    let may_cede = opts.max_cedes.map_or(true, |m| cedes < m as u32);
    for i in 0..cfg.threads {
        let v = match s.vcpus[i as usize] {
            Some(v) => v,
            None => continue,
        };
        let id = first + i as u32;
        // A vcpu becomes runnable before the run or as a latecomer that can
        // still join; arriving once the exit has begun only parks it on the
        // runnable list until the next run, which is not explored.
        let can_join = vc.vcore_state == cfg.variant.vcore_states().inactive
            || (vc.vcore_state == cfg.variant.vcore_states().running && !vc.exiting());
        if chosen & (1 << i) != 0
            && v.state == crate::consts::KVMPPC_VCPU_NOTREADY
            && can_join
            && !vc.lock_held
        {
            out.push(Event::Runnable { vcpu: id });
        }
        if v.started && prods < opts.max_prods as u32 && vc.vcore_state == cfg.variant.vcore_states().running
        {
            out.push(Event::Prod { vcpu: id });
        }
        if symmetric && vc.is_runnable(i) {
            out.push(Event::RunCore { runner: id });
            if vc.lock_held && !v.started {
                out.push(Event::StartThread { vcpu: id });
            }
        }
    }
    if !symmetric {
        if let Some(&lowest) = vc.runnable().iter().min() {
            out.push(Event::RunCore {
                runner: first + lowest as u32,
            });
        }
        if vc.lock_held {
            if let Some(&next) = vc
                .runnable()
                .iter()
                .find(|&&i| !s.vcpus[i as usize].unwrap().started)
            {
                out.push(Event::StartThread {
                    vcpu: first + next as u32,
                });
            }
        }
    }
    // Cheap pre-filters: most illegal candidates never reach apply (whose
    // error messages cost an allocation each).
    let st = cfg.variant.vcore_states();
    let t0 = &s.threads[0];
    if vc.lock_held {
        out.push(Event::VcoreEntry);
    }
    if opts.exit_request && cfg.variant == Variant::Modern && !vc.exiting() && vc.vcore_state == st.running {
        out.push(Event::ExitRequest);
    }
    match t0.phase {
        Phase::Entered => out.push(Event::SwitchIn),
        Phase::Exiting | Phase::TooLate => out.push(Event::SwitchOut),
        Phase::Returned if vc.released => out.push(Event::Finish),
        Phase::Returned => out.push(Event::Release),
        Phase::Host if vc.vcore_state == st.running && !vc.lock_held => out.push(Event::Enter { thread: 0 }),
        _ => {}
    }
    for t in 0..cfg.threads {
        let th = &s.threads[t as usize];
        match th.phase {
            Phase::Host | Phase::Spinning if t != 0 => {
                let woken = th.ipi || th.phase == Phase::Spinning;
                if woken && th.hstate.hwthread_req == 1 && th.hstate.kvm_vcpu.is_some() {
                    out.push(Event::Enter { thread: t });
                }
                if th.phase == Phase::Spinning && th.hstate.hwthread_req == 0 {
                    out.push(Event::ReturnToIdle { thread: t });
                }
            }
            Phase::Entered if t != 0 => {
                if vc.in_guest == 1 {
                    out.push(Event::GuestEntry { thread: t });
                } else if vc.exiting() {
                    out.push(Event::Exit {
                        thread: t,
                        trap: crate::consts::BOOK3S_INTERRUPT_HV_DECREMENTER,
                    });
                }
            }
            Phase::SwitchedIn => out.push(Event::GuestEntry { thread: t }),
            Phase::InGuest => {
                let v = th.running.and_then(|v| s.vcpus[v as usize]);
                if may_cede && v.is_some_and(|v| v.cedes < opts.cedes_per_vcpu) {
                    out.push(Event::Cede { thread: t });
                }
                out.push(Event::Exit {
                    thread: t,
                    trap: crate::consts::BOOK3S_INTERRUPT_HV_DECREMENTER,
                });
            }
            Phase::CedeNap => out.push(Event::Wake { thread: t }),
            Phase::NovcpuNap if th.ipi || cfg.variant == Variant::Modern => {
                out.push(Event::Wake { thread: t })
            }
            Phase::Exiting | Phase::TooLate if t != 0 && vc.in_guest == 0 => {
                out.push(Event::Tail { thread: t })
            }
            _ => {}
        }
    }
}

/// Every violation of state `s` reached from `parent` by `event`.
fn check(
    cfg: &Config,
    parent: &State,
    parent_view: Option<&crate::view::Snapshot>,
    s: &State,
    event: &Event,
    fx: &crate::model::Effects,
    ignored: &[u32],
) -> Vec<Violation> {
    let mut out: Vec<Violation> = Vec::new();
    if let Some(parent_view) = parent_view {
        let view = cfg.view(s, Some(event.label()));
        out.extend(invariants::check_snapshot(&view));
        out.extend(invariants::check_step(parent_view, &view));
        out.retain(|v| !ignored.contains(&v.invariant));
    }
    // The step's own history invariants (no doorbell event here).
    out.extend(cfg.history_check(parent, s, event, fx));
    out
}

/// The first doorbell in `s` that misdelivers, as (event, violation).
fn doorbell_violation(cfg: &Config, s: &State) -> Option<(Event, Violation)> {
    let first = vc_first(s);
    for x in 0..cfg.threads as usize {
        let th = &s.threads[x];
        let from = match (th.phase, th.running) {
            (Phase::InGuest, Some(v)) => v,
            _ => continue,
        };
        // Doorbells to other vcpus first, then the vcpu's own thread number.
        let targets = (0..cfg.threads as usize)
            .filter(|&t| t != from as usize)
            .chain(std::iter::once(from as usize));
        for t in targets {
            if t >= cfg.threads as usize || s.vcpus[t].is_none() {
                continue; // the guest only signals vcpus that exist
            }
            if let Some(v) = cfg.doorbell_check(s, from, t) {
                return Some((
                    Event::Doorbell {
                        vcpu: first + from as u32,
                        thread: t as u8,
                    },
                    v,
                ));
            }
        }
    }
    None
}

pub fn explore(opts: &ExploreOptions) -> Result<ExploreReport, ModelError> {
    let start = Instant::now();
    let mut model = Model::new(opts.variant, opts.threads)?;
    let n = opts.threads as u32;
    let vcpus = opts.vcpus.clone().unwrap_or_else(|| (0..n).collect());
    if vcpus.is_empty() {
        return Err(ModelError {
            event: "explore".into(),
            reason: "no vcpus given".into(),
        });
    }
    for &id in &vcpus {
        model.apply(Event::CreateVcpu { vcpu: id })?;
    }
    let mut cfg = model.config;
    cfg.fault = opts.fault;
    let root = model.state;
    let first = vc_first(&root);
    let chosen: u8 = vcpus.iter().fold(0, |m, &id| m | 1 << (id - first));
    let ignored = opts.ignored();

    let mut seen = FingerprintSet::default();
    // nodes[i] = (parent node, event that led here); node 0 is the root.
    let mut nodes: Vec<(u32, Option<Event>)> = vec![(u32::MAX, None)];
    let symmetric = opts.symmetry && cfg.variant != Variant::Prepatch;
    let fp = |s: &State| {
        if symmetric {
            symmetric_fingerprint(&cfg, s, chosen)
        } else {
            fingerprint(s)
        }
    };
    seen.insert(fp(&root));
    let mut frontier: Vec<(State, u32)> = vec![(root, 0)];
    let mut transitions = 0usize;
    let mut finished_runs = 0usize;
    let mut depth = 0usize;
    let mut cands = Vec::new();
    let mut complete = true;

    let trace_to = |nodes: &Vec<(u32, Option<Event>)>, mut i: u32| {
        let mut events = Vec::new();
        while let Some(e) = nodes[i as usize].1 {
            events.push(e);
            i = nodes[i as usize].0;
        }
        events.reverse();
        events
    };
    let report =
        |states, transitions, counterexample, violation, complete, finished_runs, depth| ExploreReport {
            variant: opts.variant,
            threads: opts.threads,
            vcpus: vcpus.clone(),
            states,
            transitions,
            seconds: start.elapsed().as_secs_f64(),
            counterexample,
            violation,
            complete,
            finished_runs,
            depth,
            ignored: ignored.clone(),
            bounds: opts.bounds(),
        };

    'bfs: while !frontier.is_empty() {
        let mut next_frontier = Vec::new();
        for (s, id) in frontier.drain(..) {
            if s.runs_done > 0 {
                finished_runs += 1;
                continue;
            }
            let parent_view = opts.check_invariants.then(|| cfg.view(&s, None));
            candidates(&cfg, opts, &s, chosen, &mut cands);
            let mut any_legal = false;
            for &e in cands.iter() {
                let mut c = s;
                let fx = match cfg.apply(&mut c, e) {
                    Ok(fx) => fx,
                    Err(_) => continue,
                };
                // An H_PROD alone does not move the run on (deadlock check).
                any_legal |= !matches!(e, Event::Prod { .. });
                transitions += 1;
                if !seen.insert(fp(&c)) {
                    continue;
                }
                nodes.push((id, Some(e)));
                let cid = (nodes.len() - 1) as u32;
                let violations = check(&cfg, &s, parent_view.as_ref(), &c, &e, &fx, &ignored);
                if let Some(v) = violations.into_iter().next() {
                    let trace = trace_to(&nodes, cid);
                    return Ok(report(
                        seen.len(),
                        transitions,
                        Some(trace),
                        Some(v),
                        true,
                        finished_runs,
                        depth + 1,
                    ));
                }
                if let Some((db, v)) = doorbell_violation(&cfg, &c) {
                    let mut trace = trace_to(&nodes, cid);
                    trace.push(db);
                    return Ok(report(
                        seen.len(),
                        transitions,
                        Some(trace),
                        Some(v),
                        true,
                        finished_runs,
                        depth + 2,
                    ));
                }
                next_frontier.push((c, cid));
                if opts.max_states.is_some_and(|m| seen.len() >= m) {
                    complete = false;
                    break 'bfs;
                }
            }
            // Before any vcpu is runnable nothing need happen; after that the
            // run must be able to go on until it finishes.
            let started = s.vcore.is_some_and(|vc| vc.runq_len > 0 || vc.runner.is_some());
            if !any_legal && started {
                let v = Violation {
                    invariant: INV_DEADLOCK,
                    message: "deadlock: no thread can move and the run has not finished".into(),
                    fields: Default::default(),
                };
                let trace = trace_to(&nodes, id);
                return Ok(report(
                    seen.len(),
                    transitions,
                    Some(trace),
                    Some(v),
                    true,
                    finished_runs,
                    depth,
                ));
            }
        }
        frontier = next_frontier;
        if !frontier.is_empty() {
            depth += 1;
        }
    }
    Ok(report(
        seen.len(),
        transitions,
        None,
        None,
        complete,
        finished_runs,
        depth,
    ))
}
