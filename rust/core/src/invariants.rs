//! The VCORE_SPEC §4 invariants, evaluated on a [`Snapshot`] (one stop of a
//! real kernel, or one state of the model) and between two consecutive
//! snapshots.
//!
//! Every check is numbered as in VCORE_SPEC §4 (29 is the doorbell
//! misdelivery property of issue 2, which §4 does not number).  A check only
//! fires on a state that a correct kernel can never show at *any* instruction
//! boundary: gdb stops every hardware thread wherever it happens to be, so a
//! stop can land between two stores of one kernel function.  Where the spec's
//! wording is stricter than that, the check is narrowed and the comment says
//! which stores open the window (see also /work/brief/notes-checker.md).
//!
//! The clean path allocates nothing: a `Vec::new()` that stays empty.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::consts::*;
use crate::view::{Hstate, Snapshot, Thread, Vcore, Vcpu};

/// One broken invariant: its VCORE_SPEC §4 number, a one-line message and the
/// fields involved (JSON path in the snapshot -> observed value).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    pub invariant: u32,
    pub message: String,
    pub fields: BTreeMap<String, Value>,
}

impl Violation {
    fn new(invariant: u32, message: impl Into<String>) -> Self {
        Violation {
            invariant,
            message: message.into(),
            fields: BTreeMap::new(),
        }
    }

    fn field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant {}: {}", self.invariant, self.message)
    }
}

/// The invariants this checker evaluates, with a one-line statement each.
pub const INVARIANTS: &[(u32, &str)] = &[
    (1, "vcpu ptid == vcpu_id - first_vcpuid, 0 <= ptid < threads per vcore, fixed at creation"),
    (2, "vcore first_vcpuid is a multiple of threads per vcore; a vcpu's id lies in its vcore's range"),
    (3, "thread alignment: the PACA of thread pcpu+N holds the vcpu with ptid N, with hstate.ptid N and kvm_vcore = its vcore"),
    (4, "a running vcore's pcpu is thread 0 of a (sub)core"),
    (5, "a vcpu is in at most one PACA's kvm_vcpu"),
    (6, "a started vcpu has cpu == vcore pcpu and thread_cpu == pcpu + ptid (else -1)"),
    (8, "LPIDR/SDR1 are per core; a thread executing the guest has the guest's LPIDR/SDR1; thread 0 outside KVM has the host's"),
    (9, "no thread executes the guest (GUEST_HV) while vcore in_guest == 0"),
    (10, "entry/exit word: exits are a subset of entries, within the core's threads"),
    (12, "thread 0's entry is counted before any thread starts to exit"),
    (13, "thread 0 switches the MMU back only once every entered thread is exiting"),
    (14, "napping_threads is a subset of the entered threads; a napping thread is in KVM real mode"),
    (15, "a secondary napping inside KVM has hwthread_req == 1"),
    (16, "seed: nap_count <= n_woken during a run"),
    (17, "while a vcore runs and no exit has started, every secondary of the core has hwthread_req == 1"),
    (18, "a secondary in KVM real-mode code is grabbed (hwthread_req == 1) and IN_KVM"),
    (19, "vcore_state is a known state; runner is set in the active states and belongs to the vcore"),
    (20, "n_runnable and num_threads agree with the vcpus; num_threads never shrinks"),
    (21, "at most one vcore is RUNNING on a physical core"),
    (23, "hstate.in_guest is a P8-path mode; a thread in KVM points at a vcore"),
    (24, "a vcpu napping with NAPPING_CEDE has ceded == 1; a vcpu in the guest has ceded == 0"),
    (26, "thread 0 napping with NAPPING_NOVCPU: kvm_vcore set, ptid 0, counted as entered, napping bit 0 set, in_guest 1"),
    (29, "doorbell delivery: the vcpu on virtual thread N is vcpu first_vcpuid + N (msgsndp names a physical thread)"),
];

/// The one-line statement of invariant `n`, if this checker knows it.
pub fn describe(n: u32) -> Option<&'static str> {
    INVARIANTS.iter().find(|(i, _)| *i == n).map(|(_, d)| *d)
}

// ---------------------------------------------------------------------------
// Reading a snapshot

/// The vcore's entry/exit word, decoded for the variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryExit {
    /// Modern `entry_exit_map`: entered ptids, exiting ptids, VCORE_EXIT_REQ.
    Map {
        raw: u32,
        entry: u32,
        exit: u32,
        req: bool,
    },
    /// Seed/prepatch `entry_exit_count`: number entered, number exiting.
    Count {
        raw: u32,
        entry: u32,
        exit: u32,
    },
    Unknown,
}

impl EntryExit {
    fn of(vc: &Vcore, variant: Variant) -> Self {
        let map = |raw: u32| EntryExit::Map {
            raw,
            entry: raw & 0xff,
            exit: (raw >> 8) & 0xff,
            req: raw & VCORE_EXIT_REQ != 0,
        };
        let count = |raw: u32| EntryExit::Count {
            raw,
            entry: raw & 0xff,
            exit: (raw >> 8) & 0xff,
        };
        match (
            vc.entry_exit_map,
            vc.entry_exit_count,
            variant.has_entry_exit_map(),
        ) {
            (Some(m), _, true) => map(m),
            (_, Some(c), false) => count(c),
            (Some(m), None, false) => map(m),
            (None, Some(c), true) => count(c),
            (None, None, _) => EntryExit::Unknown,
        }
    }

    /// Number of threads counted as entered.
    fn entered(&self) -> u32 {
        match *self {
            EntryExit::Map { entry, .. } => entry.count_ones(),
            EntryExit::Count { entry, .. } => entry,
            EntryExit::Unknown => 0,
        }
    }

    /// The asm's "someone is exiting" test (`word >= 0x100`).
    fn exit_started(&self) -> bool {
        match *self {
            EntryExit::Map { raw, .. } | EntryExit::Count { raw, .. } => raw >= VCORE_EXIT_COUNT_ONE,
            EntryExit::Unknown => false,
        }
    }

    fn key(&self) -> &'static str {
        match self {
            EntryExit::Map { .. } => "entry_exit_map",
            _ => "entry_exit_count",
        }
    }

    fn raw(&self) -> u32 {
        match *self {
            EntryExit::Map { raw, .. } | EntryExit::Count { raw, .. } => raw,
            EntryExit::Unknown => 0,
        }
    }
}

struct Ctx<'a> {
    s: &'a Snapshot,
    tpc: u32,
    states: &'static VcoreStates,
    /// Whether this variant numbers threads by the seed rule (ptid fixed at
    /// creation, PACA ptid = physical thread); false for prepatch.
    aligned: bool,
}

impl<'a> Ctx<'a> {
    fn new(s: &'a Snapshot) -> Self {
        Ctx {
            s,
            tpc: s.threads_per_core.clamp(1, MAX_SMT_THREADS as u32),
            states: s.variant.vcore_states(),
            aligned: s.variant != Variant::Prepatch,
        }
    }

    fn vcore(&self, addr: u64) -> Option<(usize, &'a Vcore)> {
        if addr == 0 {
            return None;
        }
        self.s.vcores.iter().enumerate().find(|(_, v)| v.addr == addr)
    }

    fn vcpu(&self, addr: u64) -> Option<(usize, &'a Vcpu)> {
        if addr == 0 {
            return None;
        }
        self.s.vcpus.iter().enumerate().find(|(_, v)| v.addr == addr)
    }

    fn thread_at_cpu(&self, cpu: u64) -> Option<(usize, &'a Thread)> {
        self.s
            .threads
            .iter()
            .enumerate()
            .find(|(_, t)| t.cpu as u64 == cpu)
    }

    /// The vcore a thread takes part in: its kvm_vcore, else its vcpu's vcore.
    fn vcore_of_thread(&self, h: &Hstate) -> Option<(usize, &'a Vcore)> {
        self.vcore(h.kvm_vcore)
            .or_else(|| self.vcpu(h.kvm_vcpu).and_then(|(_, v)| self.vcore(v.vcore)))
    }

    /// STARTING (seed), RUNNING, EXITING, and PIGGYBACK (modern): from the
    /// start of kvmppc_run_core's thread setup to the end of the run.
    fn in_run(&self, state: u8) -> bool {
        let st = self.states;
        state == st.running
            || state == st.exiting
            || Some(state) == st.starting
            || Some(state) == st.piggyback
    }

    /// Offsets of pcpu within a core that a vcore may run at: thread 0, or on
    /// a modern 8-thread core dynamically split, subcore_thread_map {0,4,2,6}
    /// (a subcore at 4 holds at most 4 threads, at 2/6 at most 2).
    fn pcpu_offset_ok(&self, off: u32, num_threads: u32) -> bool {
        if off == 0 {
            return true;
        }
        self.s.variant == Variant::Modern
            && self.tpc == 8
            && ((off == 4 && num_threads <= 4) || ((off == 2 || off == 6) && num_threads <= 2))
    }

    /// PACA ptid values a thread at core index `i` may hold, stale or not:
    /// kvmppc_start_thread always writes `cpu - vc->pcpu` into the PACA of
    /// `cpu`, and a PACA never written holds 0.
    fn hstate_ptid_ok(&self, i: usize, ptid: u8) -> bool {
        let i = i as u32;
        let p = ptid as u32;
        if p == 0 || p == i {
            return true;
        }
        // Modern dynamic split of an 8-thread core: ptid is the index within
        // the subcore (4 or 2 threads).
        self.s.variant == Variant::Modern && self.tpc == 8 && (p == i % 4 || p == i % 2)
    }

    /// A thread's number within its core: Linux numbers the threads of a
    /// core consecutively from a multiple of threads_per_core
    /// (cpu_thread_in_core), so this holds even if a reader skipped a thread.
    fn core_thread(&self, t: &Thread) -> usize {
        (t.cpu % self.tpc) as usize
    }
}

fn p(path: &str, i: usize, field: &str) -> String {
    format!("{path}[{i}].{field}")
}

fn hs(i: usize, field: &str) -> String {
    format!("threads[{i}].kvm_hstate.{field}")
}

// ---------------------------------------------------------------------------
// Single snapshot

/// Invariants that can be judged on a single stop.
pub fn check_snapshot(s: &Snapshot) -> Vec<Violation> {
    let mut out = Vec::new();
    let cx = Ctx::new(s);
    check_vcpus(&cx, &mut out);
    check_vcores(&cx, &mut out);
    check_threads(&cx, &mut out);
    check_mmu(&cx, &mut out);
    out
}

fn check_vcpus(cx: &Ctx, out: &mut Vec<Violation>) {
    for (j, v) in cx.s.vcpus.iter().enumerate() {
        if v.ptid as u32 >= cx.tpc {
            out.push(
                Violation::new(
                    1,
                    format!(
                        "vcpu {} has ptid {} outside a {}-thread core",
                        v.vcpu_id, v.ptid, cx.tpc
                    ),
                )
                .field(p("vcpus", j, "ptid"), v.ptid)
                .field("threads_per_core", cx.s.threads_per_core),
            );
        }
        if let Some(st) = v.state {
            if st > KVMPPC_VCPU_BUSY_IN_HOST {
                out.push(
                    Violation::new(20, format!("vcpu {} has unknown arch.state {}", v.vcpu_id, st))
                        .field(p("vcpus", j, "state"), st),
                );
            }
        }
        if let Some(c) = v.ceded {
            if c > 1 {
                out.push(
                    Violation::new(24, format!("vcpu {} has arch.ceded {} (0 or 1)", v.vcpu_id, c))
                        .field(p("vcpus", j, "ceded"), c),
                );
            }
        }
        let Some((k, vc)) = cx.vcore(v.vcore) else {
            continue;
        };
        let first = vc.first_vcpuid;
        let in_range = v.vcpu_id >= first && v.vcpu_id - first < cx.tpc;
        if !in_range {
            out.push(
                Violation::new(
                    2,
                    format!(
                        "vcpu {} is outside its vcore's ids {}..{}",
                        v.vcpu_id,
                        first,
                        first + cx.tpc
                    ),
                )
                .field(p("vcpus", j, "vcpu_id"), v.vcpu_id)
                .field(p("vcores", k, "first_vcpuid"), first),
            );
        }
        // Before the seed commit ptid was handed out first-come first-served
        // on every run, so it need not equal vcpu_id - first_vcpuid.
        if cx.aligned && in_range && v.vcpu_id - first != v.ptid as u32 {
            out.push(
                Violation::new(
                    1,
                    format!(
                        "vcpu {} has ptid {}, not vcpu_id - first_vcpuid = {}",
                        v.vcpu_id,
                        v.ptid,
                        v.vcpu_id - first
                    ),
                )
                .field(p("vcpus", j, "ptid"), v.ptid)
                .field(p("vcpus", j, "vcpu_id"), v.vcpu_id)
                .field(p("vcores", k, "first_vcpuid"), first),
            );
        }
        // vcpu->cpu is vc->pcpu from kvmppc_start_thread until the exit sets
        // it to -1; outside a run it is -1.  Only judged while the vcore is in
        // a run: PREEMPT (modern) moves pcpu while the vcpus are out.
        // A vcpu held by a PACA is judged with its thread in check_threads.
        let held = cx.s.threads.iter().any(|t| t.kvm_hstate.kvm_vcpu == v.addr);
        if cx.in_run(vc.vcore_state) && !held {
            if v.cpu != -1 && v.cpu as i64 != vc.pcpu as i64 {
                out.push(
                    Violation::new(
                        6,
                        format!(
                            "vcpu {} has cpu {}, not its vcore's pcpu {} (or -1)",
                            v.vcpu_id, v.cpu, vc.pcpu
                        ),
                    )
                    .field(p("vcpus", j, "cpu"), v.cpu)
                    .field(p("vcores", k, "pcpu"), vc.pcpu),
                );
            }
            if let Some(tc) = v.thread_cpu {
                if tc != -1 && tc as i64 != vc.pcpu as i64 + v.ptid as i64 {
                    out.push(
                        Violation::new(
                            6,
                            format!(
                                "vcpu {} has thread_cpu {}, not pcpu + ptid = {} (or -1)",
                                v.vcpu_id,
                                tc,
                                vc.pcpu as i64 + v.ptid as i64
                            ),
                        )
                        .field(p("vcpus", j, "thread_cpu"), tc)
                        .field(p("vcpus", j, "ptid"), v.ptid)
                        .field(p("vcores", k, "pcpu"), vc.pcpu),
                    );
                }
            }
        }
    }
}

fn check_vcores(cx: &Ctx, out: &mut Vec<Violation>) {
    let st = cx.states;
    for (k, vc) in cx.s.vcores.iter().enumerate() {
        let state_name = st.name(vc.vcore_state);
        if state_name.is_none() {
            out.push(
                Violation::new(
                    19,
                    format!("vcore_state {} is not a {} state", vc.vcore_state, cx.s.variant),
                )
                .field(p("vcores", k, "vcore_state"), vc.vcore_state),
            );
        }
        if vc.in_guest > 1 {
            out.push(
                Violation::new(9, format!("vcore in_guest is {} (0 or 1)", vc.in_guest))
                    .field(p("vcores", k, "in_guest"), vc.in_guest),
            );
        }

        // 2: first_vcpuid = core * threads per vcore.  Modern P8 uses
        // smt_mode (a power of two <= threads_per_subcore), which the snapshot
        // does not carry: require a multiple of the smallest power of two that
        // covers the vcore's ptids.
        let step = match cx.s.variant {
            Variant::Modern => {
                let max_ptid =
                    cx.s.vcpus
                        .iter()
                        .filter(|v| v.vcore == vc.addr)
                        .map(|v| v.ptid as u32)
                        .max()
                        .unwrap_or(0);
                (max_ptid + 1).next_power_of_two().min(cx.tpc.next_power_of_two())
            }
            _ => cx.tpc,
        };
        if vc.first_vcpuid % step != 0 {
            out.push(
                Violation::new(
                    2,
                    format!(
                        "vcore first_vcpuid {} is not a multiple of {}",
                        vc.first_vcpuid, step
                    ),
                )
                .field(p("vcores", k, "first_vcpuid"), vc.first_vcpuid)
                .field("threads_per_core", cx.s.threads_per_core),
            );
        }
        for (k2, other) in cx.s.vcores.iter().enumerate().skip(k + 1) {
            if other.addr != vc.addr && other.first_vcpuid == vc.first_vcpuid && other.kvm == vc.kvm {
                out.push(
                    Violation::new(
                        2,
                        format!("two vcores of one VM have first_vcpuid {}", vc.first_vcpuid),
                    )
                    .field(p("vcores", k, "addr"), vc.addr)
                    .field(p("vcores", k2, "addr"), other.addr),
                );
            }
        }

        let running = cx.in_run(vc.vcore_state);
        // 4: pcpu is thread 0 of the (sub)core while the vcore runs (outside a
        // run pcpu is stale, or PREEMPT's current cpu).
        if running && !cx.pcpu_offset_ok(vc.pcpu % cx.tpc, vc.num_threads) {
            out.push(
                Violation::new(
                    4,
                    format!(
                        "running vcore has pcpu {}, not thread 0 of a {}-thread core",
                        vc.pcpu, cx.tpc
                    ),
                )
                .field(p("vcores", k, "pcpu"), vc.pcpu)
                .field(p("vcores", k, "vcore_state"), vc.vcore_state),
            );
        }

        // 19: runner.  kvmppc_run_vcpu sets vc->runner before run_core or
        // vcore_blocked and clears it only after they return (state INACTIVE).
        if let Some(runner) = vc.runner {
            let needs_runner = Some(vc.vcore_state) == st.starting
                || vc.vcore_state == st.running
                || vc.vcore_state == st.exiting
                || vc.vcore_state == st.sleeping
                || Some(vc.vcore_state) == st.polling;
            if runner == 0 && needs_runner {
                out.push(
                    Violation::new(
                        19,
                        format!("vcore is {} with no runner", state_name.unwrap_or("?")),
                    )
                    .field(p("vcores", k, "vcore_state"), vc.vcore_state)
                    .field(p("vcores", k, "runner"), runner),
                );
            }
            if let Some((j, rv)) = cx.vcpu(runner) {
                if rv.vcore != vc.addr {
                    out.push(
                        Violation::new(
                            19,
                            format!(
                                "vcore runner is vcpu {}, which belongs to another vcore",
                                rv.vcpu_id
                            ),
                        )
                        .field(p("vcores", k, "runner"), runner)
                        .field(p("vcpus", j, "vcore"), rv.vcore),
                    );
                }
            }
        }

        // 20: bookkeeping.  The runnable count moves one vcpu at a time under
        // vc->lock, and state and n_runnable are two stores: a stop between
        // them shows a difference of one.
        if vc.n_runnable > vc.num_threads || vc.num_threads > cx.tpc {
            out.push(
                Violation::new(
                    20,
                    format!(
                        "vcore has n_runnable {} and num_threads {} on a {}-thread core",
                        vc.n_runnable, vc.num_threads, cx.tpc
                    ),
                )
                .field(p("vcores", k, "n_runnable"), vc.n_runnable)
                .field(p("vcores", k, "num_threads"), vc.num_threads),
            );
        }
        let mut members = 0u32;
        let mut runnable = 0u32;
        let mut all_states = true;
        for v in cx.s.vcpus.iter().filter(|v| v.vcore == vc.addr) {
            members += 1;
            match v.state {
                Some(KVMPPC_VCPU_RUNNABLE) => runnable += 1,
                Some(_) => {}
                None => all_states = false,
            }
        }
        if members > vc.num_threads {
            out.push(
                Violation::new(
                    20,
                    format!(
                        "{} vcpus point at a vcore with num_threads {}",
                        members, vc.num_threads
                    ),
                )
                .field(p("vcores", k, "num_threads"), vc.num_threads),
            );
        } else if members == vc.num_threads && all_states && runnable.abs_diff(vc.n_runnable) > 1 {
            out.push(
                Violation::new(
                    20,
                    format!(
                        "vcore n_runnable {} but {} of its vcpus are RUNNABLE",
                        vc.n_runnable, runnable
                    ),
                )
                .field(p("vcores", k, "n_runnable"), vc.n_runnable),
            );
        }

        // 21: one RUNNING vcore per core (EXITING may overlap the next run:
        // its runner can be preempted in post_guest_process).
        if vc.vcore_state == st.running {
            for (k2, other) in cx.s.vcores.iter().enumerate().skip(k + 1) {
                if other.vcore_state == st.running && other.pcpu / cx.tpc == vc.pcpu / cx.tpc {
                    out.push(
                        Violation::new(
                            21,
                            format!("two vcores are RUNNING on the core of cpu {}", vc.pcpu),
                        )
                        .field(p("vcores", k, "addr"), vc.addr)
                        .field(p("vcores", k2, "addr"), other.addr),
                    );
                }
            }
        }

        // 16 (seed): nap_count <= n_woken.  Judged during a run only: the reset
        // stores n_woken = 0 before nap_count = 0, while still INACTIVE.
        if let (Some(nc), Some(nw)) = (vc.nap_count, vc.n_woken) {
            if running && nc > nw {
                out.push(
                    Violation::new(16, format!("nap_count {} exceeds n_woken {}", nc, nw))
                        .field(p("vcores", k, "nap_count"), nc)
                        .field(p("vcores", k, "n_woken"), nw),
                );
            }
        }

        check_entry_exit(cx, k, vc, out);
    }
}

fn check_entry_exit(cx: &Ctx, k: usize, vc: &Vcore, out: &mut Vec<Violation>) {
    let ee = EntryExit::of(vc, cx.s.variant);
    // Built only when a violation is reported (the clean path allocates nothing).
    let key = || p("vcores", k, ee.key());
    let core_mask = (1u32 << cx.tpc) - 1;
    let st = cx.states;
    match ee {
        EntryExit::Unknown => {}
        EntryExit::Map {
            raw,
            entry,
            exit,
            req,
        } => {
            if raw & !(0xffff | VCORE_EXIT_REQ) != 0 || (entry | exit) & !core_mask != 0 {
                out.push(
                    Violation::new(
                        10,
                        format!(
                            "entry_exit_map {raw:#x} has bits outside a {}-thread core",
                            cx.tpc
                        ),
                    )
                    .field(key(), raw),
                );
            }
            if exit & !entry != 0 {
                out.push(
                    Violation::new(
                        10,
                        format!("entry_exit_map {raw:#x}: a thread is exiting that never entered"),
                    )
                    .field(key(), raw),
                );
            }
            // A thread that entered and has not begun to exit is still in the
            // run, so its PACA still points at the vcore: secondaries clear
            // kvm_vcore only after kvmppc_hv_entry returns (after their exit
            // bit), thread 0's is cleared by kvmppc_release_hwthread.
            if cx.s.variant == Variant::Modern {
                let pending = entry & !exit;
                for bit in 0..cx.tpc {
                    if pending & (1 << bit) == 0 {
                        continue;
                    }
                    if let Some((i, t)) = cx.thread_at_cpu(vc.pcpu as u64 + bit as u64) {
                        if t.kvm_hstate.kvm_vcore != vc.addr {
                            out.push(
                                Violation::new(
                                    10,
                                    format!("thread {} entered the vcore and is not exiting, but its PACA kvm_vcore is not the vcore", i),
                                )
                                .field(key(), raw)
                                .field(hs(i, "kvm_vcore"), t.kvm_hstate.kvm_vcore)
                                .field(p("vcores", k, "addr"), vc.addr),
                            );
                        }
                    }
                }
            }
            // 12: only thread 0's switch lets anyone run, so the first exiter
            // entered after thread 0 -- unless another subcore requested the
            // exit (VCORE_EXIT_REQ), when thread 0 may be too late to enter.
            // ... and vc->in_guest = 1 is stored by thread 0 after its own
            // entry bit (the run reset clears the map before in_guest, so a
            // map of 0 may show a stale in_guest 1).
            if vc.in_guest == 1 && raw != 0 && entry & 1 == 0 {
                out.push(
                    Violation::new(
                        12,
                        format!("vcore in_guest is 1 but thread 0 never entered (entry_exit_map {raw:#x})"),
                    )
                    .field(key(), raw)
                    .field(p("vcores", k, "in_guest"), vc.in_guest),
                );
            }
            if exit != 0 && !req && entry & 1 == 0 {
                out.push(
                    Violation::new(
                        12,
                        format!("entry_exit_map {raw:#x}: threads exit but thread 0 never entered"),
                    )
                    .field(key(), raw),
                );
            }
            // 13: in_guest drops to 0 only at thread 0's switch back, which
            // waits for every entered thread to be exiting.  (The reset of a
            // new run clears the map before in_guest.)
            if vc.in_guest == 0 && exit != 0 && !req && exit != entry {
                out.push(
                    Violation::new(
                        13,
                        format!(
                            "vcore in_guest is 0 but entry_exit_map {raw:#x} has entered threads not exiting"
                        ),
                    )
                    .field(key(), raw)
                    .field(p("vcores", k, "in_guest"), vc.in_guest),
                );
            }
            // 14: napping bits are set by entered threads only; both words are
            // reset together (map first, so a map of 0 may show stale bits).
            if vc.napping_threads & !core_mask != 0 || (entry != 0 && vc.napping_threads & !entry != 0) {
                out.push(
                    Violation::new(
                        14,
                        format!(
                            "napping_threads {:#x} is not within the entered threads {:#x}",
                            vc.napping_threads, entry
                        ),
                    )
                    .field(p("vcores", k, "napping_threads"), vc.napping_threads)
                    .field(key(), raw),
                );
            }
        }
        EntryExit::Count { raw, entry, exit } => {
            if raw & !0xffff != 0 || entry > cx.tpc || exit > entry {
                out.push(
                    Violation::new(
                        10,
                        format!(
                            "entry_exit_count {raw:#x}: {entry} entered, {exit} exiting on a {}-thread core",
                            cx.tpc
                        ),
                    )
                    .field(key(), raw),
                );
            }
            // Every thread that enters found its PACA's kvm_vcore set to this
            // vcore, and the seed never clears it; while STARTING/RUNNING no
            // other vcore can have taken the core's threads.
            let holds_core = vc.vcore_state == st.running || Some(vc.vcore_state) == st.starting;
            let on_core = |t: &&Thread| t.cpu >= vc.pcpu && t.cpu - vc.pcpu < cx.tpc;
            if holds_core && cx.s.threads.iter().filter(on_core).count() as u32 == cx.tpc {
                let pointing =
                    cx.s.threads
                        .iter()
                        .filter(on_core)
                        .filter(|t| t.kvm_hstate.kvm_vcore == vc.addr)
                        .count() as u32;
                if entry > pointing {
                    out.push(
                        Violation::new(
                            10,
                            format!("{entry} threads entered but only {pointing} PACAs point at the vcore"),
                        )
                        .field(key(), raw),
                    );
                }
            }
            if vc.in_guest == 0 && exit != 0 && exit != entry {
                out.push(
                    Violation::new(
                        13,
                        format!("vcore in_guest is 0 but only {exit} of {entry} entered threads are exiting"),
                    )
                    .field(key(), raw)
                    .field(p("vcores", k, "in_guest"), vc.in_guest),
                );
            }
            if vc.napping_threads & !core_mask != 0 || (entry != 0 && vc.napping_threads.count_ones() > entry)
            {
                out.push(
                    Violation::new(
                        14,
                        format!(
                            "napping_threads {:#x} has more threads than the {} entered",
                            vc.napping_threads, entry
                        ),
                    )
                    .field(p("vcores", k, "napping_threads"), vc.napping_threads)
                    .field(key(), raw),
                );
            }
        }
    }

    // 17: between on_primary_thread() and kvmppc_release_hwthread every
    // secondary is grabbed.  Release comes after __kvmppc_vcore_entry
    // returns, i.e. after thread 0 itself began exiting, so RUNNING with no
    // exit started is inside that span.  (Seed keeps RUNNING during release.)
    if vc.vcore_state == st.running && !ee.exit_started() && ee != EntryExit::Unknown && vc.pcpu % cx.tpc == 0
    {
        for (i, t) in cx.s.threads.iter().enumerate() {
            if t.cpu > vc.pcpu && t.cpu - vc.pcpu < cx.tpc && t.kvm_hstate.hwthread_req != 1 {
                out.push(
                    Violation::new(
                        17,
                        format!(
                            "vcore runs with no exit started, but secondary thread {} is not grabbed",
                            t.cpu - vc.pcpu
                        ),
                    )
                    .field(hs(i, "hwthread_req"), t.kvm_hstate.hwthread_req)
                    .field(p("vcores", k, ee.key()), ee.raw()),
                );
            }
        }
    }
}

fn check_threads(cx: &Ctx, out: &mut Vec<Violation>) {
    let threads = &cx.s.threads;
    for (i, t) in threads.iter().enumerate() {
        let h = &t.kvm_hstate;
        // Path index i, thread number in the core n.
        let n = cx.core_thread(t);

        // Value ranges.
        if !matches!(
            h.in_guest,
            KVM_GUEST_MODE_NONE | KVM_GUEST_MODE_SKIP | KVM_GUEST_MODE_GUEST_HV | KVM_GUEST_MODE_HOST_HV
        ) {
            out.push(
                Violation::new(
                    23,
                    format!(
                        "thread {} has in_guest {}, a mode the POWER8 HV path never uses",
                        i, h.in_guest
                    ),
                )
                .field(hs(i, "in_guest"), h.in_guest),
            );
        }
        let max_napping = if cx.s.variant == Variant::Modern {
            NAPPING_UNSPLIT
        } else {
            NAPPING_NOVCPU
        };
        if h.napping > max_napping {
            out.push(
                Violation::new(
                    14,
                    format!("thread {} has napping {}, not a NAPPING_* value", i, h.napping),
                )
                .field(hs(i, "napping"), h.napping),
            );
        }
        if h.hwthread_state > KVM_HWTHREAD_IN_KVM || h.hwthread_req > 1 {
            out.push(
                Violation::new(
                    18,
                    format!(
                        "thread {} has hwthread_state {} / hwthread_req {}",
                        i, h.hwthread_state, h.hwthread_req
                    ),
                )
                .field(hs(i, "hwthread_state"), h.hwthread_state)
                .field(hs(i, "hwthread_req"), h.hwthread_req),
            );
        }

        // 3: the PACA ptid is only ever written as `cpu - vc->pcpu`, so even a
        // stale one is this thread's index (or 0 if never written).
        if cx.aligned && !cx.hstate_ptid_ok(n, h.ptid) {
            out.push(
                Violation::new(
                    3,
                    format!("thread {} has PACA ptid {}, not its own thread number", n, h.ptid),
                )
                .field(hs(i, "ptid"), h.ptid),
            );
        }

        // 5: one vcpu per PACA.
        if h.kvm_vcpu != 0 {
            if let Some(i2) = threads[..i]
                .iter()
                .position(|o| o.kvm_hstate.kvm_vcpu == h.kvm_vcpu)
            {
                out.push(
                    Violation::new(5, format!("one vcpu is in the PACAs of threads {} and {}", i2, i))
                        .field(hs(i2, "kvm_vcpu"), threads[i2].kvm_hstate.kvm_vcpu)
                        .field(hs(i, "kvm_vcpu"), h.kvm_vcpu),
                );
            }
        }

        // 23: a thread in KVM's real-mode code got there through a PACA
        // pointing at a vcore (cleared only after in_guest is back to NONE).
        if h.in_guest != KVM_GUEST_MODE_NONE && h.kvm_vcore == 0 {
            out.push(
                Violation::new(
                    23,
                    format!(
                        "thread {} is in KVM (in_guest {}) with no kvm_vcore",
                        i, h.in_guest
                    ),
                )
                .field(hs(i, "in_guest"), h.in_guest)
                .field(hs(i, "kvm_vcore"), h.kvm_vcore),
            );
        }

        // 14: napping (CEDE or NOVCPU) happens inside kvmppc_hv_entry, with
        // in_guest HOST_HV until the wakeup clears napping.
        if (h.napping == NAPPING_CEDE || h.napping == NAPPING_NOVCPU) && h.in_guest != KVM_GUEST_MODE_HOST_HV
        {
            out.push(
                Violation::new(
                    14,
                    format!(
                        "thread {} naps in KVM (napping {}) but in_guest is {}",
                        i, h.napping, h.in_guest
                    ),
                )
                .field(hs(i, "napping"), h.napping)
                .field(hs(i, "in_guest"), h.in_guest),
            );
        }

        if n != 0 {
            // 15: a secondary is grabbed (hwthread_req 1) for the whole run and
            // clears napping before it can leave it.  Thread 0 is not judged:
            // it stores napping a few instructions before kvm_do_nap stores
            // hwthread_req = 1, and its hwthread_req was 0 before.
            if h.napping != 0 && h.hwthread_req != 1 {
                out.push(
                    Violation::new(
                        15,
                        format!(
                            "secondary thread {} naps in KVM (napping {}) with hwthread_req 0",
                            i, h.napping
                        ),
                    )
                    .field(hs(i, "napping"), h.napping)
                    .field(hs(i, "hwthread_req"), h.hwthread_req),
                );
            }
            // 18: a secondary in KVM real-mode code came through
            // kvm_start_guest (IN_KVM) and is released only after it is back
            // out.  A seed secondary waking from a cede nap passes the system
            // reset vector, which stores IN_KERNEL before kvm_start_guest
            // stores IN_KVM again; modern cede naps return in place.
            if h.in_guest != KVM_GUEST_MODE_NONE {
                let state_ok = match cx.s.variant {
                    Variant::Modern => h.hwthread_state == KVM_HWTHREAD_IN_KVM,
                    _ => h.hwthread_state != KVM_HWTHREAD_IN_IDLE,
                };
                if h.hwthread_req != 1 || !state_ok {
                    out.push(
                        Violation::new(
                            18,
                            format!(
                                "secondary thread {} is in KVM (in_guest {}) with hwthread_req {} and hwthread_state {}",
                                i, h.in_guest, h.hwthread_req, h.hwthread_state
                            ),
                        )
                        .field(hs(i, "in_guest"), h.in_guest)
                        .field(hs(i, "hwthread_req"), h.hwthread_req)
                        .field(hs(i, "hwthread_state"), h.hwthread_state),
                    );
                }
            }
        }

        let vcore = cx.vcore_of_thread(h);

        // 9: secondaries wait for vc->in_guest before entering, and thread 0
        // clears it only when every entered thread is exiting (HOST_HV).
        if h.in_guest == KVM_GUEST_MODE_GUEST_HV {
            if let Some((k, vc)) = vcore {
                if vc.in_guest == 0 {
                    out.push(
                        Violation::new(
                            9,
                            format!("thread {} executes the guest while vcore in_guest is 0", i),
                        )
                        .field(hs(i, "in_guest"), h.in_guest)
                        .field(p("vcores", k, "in_guest"), vc.in_guest),
                    );
                }
            }
        }

        // 26: thread 0 with no vcpu naps with NAPPING_NOVCPU.
        if h.napping == NAPPING_NOVCPU {
            check_novcpu(cx, i, n, t, out);
        }

        let Some((j, v)) = cx.vcpu(h.kvm_vcpu) else {
            continue;
        };
        let Some((k, vc)) = cx.vcore(v.vcore) else {
            continue;
        };

        // 24: ceded is set before the cede nap and cleared only by the next
        // fast_guest_return, which is also where in_guest becomes GUEST_HV.
        if let Some(ceded) = v.ceded {
            if h.napping == NAPPING_CEDE && ceded == 0 {
                out.push(
                    Violation::new(
                        24,
                        format!(
                            "thread {} naps with NAPPING_CEDE but vcpu {} has ceded 0",
                            i, v.vcpu_id
                        ),
                    )
                    .field(hs(i, "napping"), h.napping)
                    .field(p("vcpus", j, "ceded"), ceded),
                );
            }
            if h.in_guest == KVM_GUEST_MODE_GUEST_HV && ceded != 0 {
                out.push(
                    Violation::new(
                        24,
                        format!("vcpu {} executes the guest with ceded {}", v.vcpu_id, ceded),
                    )
                    .field(hs(i, "in_guest"), h.in_guest)
                    .field(p("vcpus", j, "ceded"), ceded),
                );
            }
        }

        // 6 (held vcpu): cpu is pcpu and thread_cpu this thread, or -1 once
        // the exit has begun (a PACA may still hold the vcpu then).
        if v.cpu != -1 && v.cpu as i64 != vc.pcpu as i64 {
            out.push(
                Violation::new(
                    6,
                    format!(
                        "vcpu {} on thread {} has cpu {}, not pcpu {} (or -1)",
                        v.vcpu_id, i, v.cpu, vc.pcpu
                    ),
                )
                .field(p("vcpus", j, "cpu"), v.cpu)
                .field(p("vcores", k, "pcpu"), vc.pcpu),
            );
        }
        if let Some(tc) = v.thread_cpu {
            if tc != -1 && tc as i64 != t.cpu as i64 {
                out.push(
                    Violation::new(
                        6,
                        format!(
                            "vcpu {} is in the PACA of cpu {} but has thread_cpu {}",
                            v.vcpu_id, t.cpu, tc
                        ),
                    )
                    .field(p("vcpus", j, "thread_cpu"), tc)
                    .field(p("threads", i, "cpu"), t.cpu),
                );
            }
        }

        let n = t.cpu as i64 - vc.pcpu as i64;

        // 3: alignment.  kvmppc_start_thread writes the vcpu into the PACA of
        // pcpu + ptid.  The PACA's ptid/kvm_vcore are only judged once the
        // start is complete: seed stores kvm_vcpu, kvm_vcore, ptid, then
        // vcpu->cpu; modern stores vcpu->cpu, kvm_vcpu, ptid, then (after a
        // wmb) kvm_vcore.
        if cx.aligned {
            if n != v.ptid as i64 {
                out.push(
                    Violation::new(
                        3,
                        format!(
                            "vcpu {} (ptid {}) is on thread {} of the vcore, not thread {}",
                            v.vcpu_id, v.ptid, n, v.ptid
                        ),
                    )
                    .field(hs(i, "kvm_vcpu"), h.kvm_vcpu)
                    .field(p("threads", i, "cpu"), t.cpu)
                    .field(p("vcpus", j, "ptid"), v.ptid)
                    .field(p("vcores", k, "pcpu"), vc.pcpu),
                );
            }
            let started = match cx.s.variant {
                Variant::Modern => h.kvm_vcore != 0,
                _ => v.cpu as i64 == vc.pcpu as i64,
            };
            if started && (h.ptid != v.ptid || h.kvm_vcore != v.vcore) {
                let what = if h.ptid != v.ptid {
                    format!("PACA ptid {}", h.ptid)
                } else {
                    format!(
                        "PACA kvm_vcore {:#x}, not the vcpu's vcore {:#x}",
                        h.kvm_vcore, v.vcore
                    )
                };
                out.push(
                    Violation::new(
                        3,
                        format!(
                            "thread {} runs vcpu {} (ptid {}) with {}",
                            i, v.vcpu_id, v.ptid, what
                        ),
                    )
                    .field(hs(i, "ptid"), h.ptid)
                    .field(hs(i, "kvm_vcore"), h.kvm_vcore)
                    .field(p("vcpus", j, "ptid"), v.ptid)
                    .field(p("vcpus", j, "vcore"), v.vcore),
                );
            }
        }

        // 29: a guest msgsndp to virtual thread N reaches whatever vcpu sits on
        // physical thread pcpu + N; it must be vcpu first_vcpuid + N.
        if (0..cx.tpc as i64).contains(&n) && v.vcpu_id as i64 != vc.first_vcpuid as i64 + n {
            out.push(
                Violation::new(
                    29,
                    format!(
                        "a doorbell to virtual thread {} would reach vcpu {}, not vcpu {}",
                        n,
                        v.vcpu_id,
                        vc.first_vcpuid as i64 + n
                    ),
                )
                .field(hs(i, "kvm_vcpu"), h.kvm_vcpu)
                .field(p("vcpus", j, "vcpu_id"), v.vcpu_id)
                .field(p("vcores", k, "first_vcpuid"), vc.first_vcpuid)
                .field(p("vcores", k, "pcpu"), vc.pcpu),
            );
        }
    }
}

fn check_novcpu(cx: &Ctx, i: usize, n: usize, t: &Thread, out: &mut Vec<Violation>) {
    let h = &t.kvm_hstate;
    let subcore_start = n == 0 || (cx.s.variant == Variant::Modern && cx.tpc == 8 && n % 2 == 0);
    if !subcore_start {
        out.push(
            Violation::new(
                26,
                format!("thread {} naps with NAPPING_NOVCPU; only thread 0 does", n),
            )
            .field(hs(i, "napping"), h.napping),
        );
        return;
    }
    if h.ptid != 0 || h.kvm_vcore == 0 {
        out.push(
            Violation::new(
                26,
                format!(
                    "thread {} naps with NAPPING_NOVCPU but has ptid {} and kvm_vcore {:#x}",
                    i, h.ptid, h.kvm_vcore
                ),
            )
            .field(hs(i, "ptid"), h.ptid)
            .field(hs(i, "kvm_vcore"), h.kvm_vcore),
        );
    }
    // kvm_vcpu is NULL, or a latecomer with ptid 0 was just handed to it
    // (kvmppc_start_thread stores kvm_vcpu, then IPIs the napping thread).
    if let Some((j, v)) = cx.vcpu(h.kvm_vcpu) {
        if v.ptid != 0 || (h.kvm_vcore != 0 && v.vcore != h.kvm_vcore) {
            out.push(
                Violation::new(
                    26,
                    format!(
                        "thread {} naps with NAPPING_NOVCPU holding vcpu {} (ptid {})",
                        i, v.vcpu_id, v.ptid
                    ),
                )
                .field(hs(i, "kvm_vcpu"), h.kvm_vcpu)
                .field(p("vcpus", j, "ptid"), v.ptid),
            );
        }
    }
    let Some((k, vc)) = cx.vcore(h.kvm_vcore) else {
        return;
    };
    // kvmppc_primary_no_guest runs after the entry count and the MMU switch,
    // sets napping bit 0 before storing NAPPING_NOVCPU, and the wakeup clears
    // napping before the bit.
    let ee = EntryExit::of(vc, cx.s.variant);
    let entered = match ee {
        EntryExit::Map { entry, .. } => entry & 1 != 0,
        EntryExit::Count { .. } => ee.entered() >= 1,
        EntryExit::Unknown => true,
    };
    if vc.napping_threads & 1 == 0 || !entered || vc.in_guest != 1 {
        out.push(
            Violation::new(
                26,
                format!(
                    "thread {} naps with NAPPING_NOVCPU but the vcore has napping_threads {:#x}, {} {:#x}, in_guest {}",
                    i,
                    vc.napping_threads,
                    ee.key(),
                    ee.raw(),
                    vc.in_guest
                ),
            )
            .field(p("vcores", k, "napping_threads"), vc.napping_threads)
            .field(p("vcores", k, ee.key()), ee.raw())
            .field(p("vcores", k, "in_guest"), vc.in_guest),
        );
    }
}

/// 8: the partition registers.  POWER7/8 run a whole (sub)core in one
/// partition, so LPIDR and SDR1 are one register per core.  Not judged while
/// a modern vcore is PIGGYBACK (dynamic split: one partition per subcore).
fn check_mmu(cx: &Ctx, out: &mut Vec<Violation>) {
    let threads = &cx.s.threads;
    let split = cx.s.variant == Variant::Modern
        && cx
            .s
            .vcores
            .iter()
            .any(|v| Some(v.vcore_state) == cx.states.piggyback);
    if !split {
        for (name, get) in [
            ("lpidr", (|t: &Thread| t.lpidr) as fn(&Thread) -> Option<u64>),
            ("sdr1", |t: &Thread| t.sdr1),
        ] {
            // Fast path: one value on every thread that has one.
            let mut values = threads.iter().filter_map(get);
            if let Some(v0) = values.next() {
                if values.all(|v| v == v0) {
                    continue;
                }
            }
            // Per core (cpu / threads_per_core).
            for (i0, t0) in threads.iter().enumerate() {
                let Some(v0) = get(t0) else { continue };
                let core = t0.cpu / cx.tpc;
                if threads[..i0]
                    .iter()
                    .any(|t| t.cpu / cx.tpc == core && get(t).is_some())
                {
                    continue; // not the first thread of its core with a value
                }
                let differ: Vec<(usize, u64)> = threads
                    .iter()
                    .enumerate()
                    .skip(i0 + 1)
                    .filter(|(_, t)| t.cpu / cx.tpc == core)
                    .filter_map(|(i, t)| get(t).map(|v| (i, v)))
                    .filter(|(_, v)| *v != v0)
                    .collect();
                if differ.is_empty() {
                    continue;
                }
                let list = differ
                    .iter()
                    .map(|(i, v)| format!("thread {i} {v:#x}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut viol = Violation::new(
                8,
                format!("threads of one core disagree on {} (one register per core): thread {i0} {v0:#x}, {list}", name.to_uppercase()),
            )
            .field(p("threads", i0, name), v0);
                for (i, v) in differ {
                    viol = viol.field(p("threads", i, name), v);
                }
                out.push(viol);
            }
        }
    }
    let Some(kvm) = &cx.s.kvm else { return };
    // The snapshot's `kvm` is the VM of every vcore that names one.
    let one_vm = {
        let mut vms = cx.s.vcores.iter().filter_map(|v| v.kvm);
        match vms.next() {
            Some(first) => vms.all(|p| p == first),
            None => true,
        }
    };
    let vm_vcores = |vc: &Vcore| vc.kvm.is_none() || one_vm;
    for (i, t) in threads.iter().enumerate() {
        let h = &t.kvm_hstate;
        // A thread executing the guest: thread 0 switched LPIDR/SDR1 before
        // vc->in_guest = 1, and switches back only once every entered thread
        // has left the guest.
        if h.in_guest == KVM_GUEST_MODE_GUEST_HV {
            // Only when the snapshot's kvm is this thread's VM.
            if let Some((_, vc)) = cx.vcore_of_thread(h) {
                if !vm_vcores(vc) {
                    continue;
                }
            }
            let bad_lpidr = t.lpidr.filter(|l| *l != kvm.lpid);
            let bad_sdr1 = t.sdr1.filter(|sd| *sd != kvm.sdr1);
            if bad_lpidr.is_some() || bad_sdr1.is_some() {
                let mut what = Vec::new();
                let mut viol = Violation::new(8, String::new()).field(hs(i, "in_guest"), h.in_guest);
                if let Some(l) = bad_lpidr {
                    what.push(format!("LPIDR {l:#x} (guest LPID {:#x})", kvm.lpid));
                    viol = viol
                        .field(p("threads", i, "lpidr"), l)
                        .field("kvm.lpid", kvm.lpid);
                }
                if let Some(sd) = bad_sdr1 {
                    what.push(format!("SDR1 {sd:#x} (guest {:#x})", kvm.sdr1));
                    viol = viol
                        .field(p("threads", i, "sdr1"), sd)
                        .field("kvm.sdr1", kvm.sdr1);
                }
                viol.message = format!("thread {i} executes the guest with {}", what.join(" and "));
                out.push(viol);
            }
        }
    }
    // Thread 0 outside KVM (in_guest NONE): kvmppc_hv_entry stores HOST_HV
    // before the switch in and the exit tail stores NONE after the switch
    // back, so no partition switch is under way on the core.
    for (i0, t0) in threads.iter().enumerate() {
        if cx.core_thread(t0) == 0 && t0.kvm_hstate.in_guest == KVM_GUEST_MODE_NONE {
            if let (Some(l), Some(host)) = (t0.lpidr, kvm.host_lpid) {
                if l != host {
                    out.push(
                        Violation::new(
                            8,
                            format!(
                                "thread 0 is outside KVM but LPIDR is {:#x}, not the host's {:#x}",
                                l, host
                            ),
                        )
                        .field(p("threads", i0, "lpidr"), l)
                        .field("kvm.host_lpid", host),
                    );
                }
            }
            if let (Some(sd), Some(host)) = (t0.sdr1, kvm.host_sdr1) {
                if sd != host {
                    out.push(
                        Violation::new(
                            8,
                            format!(
                                "thread 0 is outside KVM but SDR1 is {:#x}, not the host's {:#x}",
                                sd, host
                            ),
                        )
                        .field(p("threads", i0, "sdr1"), sd)
                        .field("kvm.host_sdr1", host),
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Between two states

/// What never changes during one VM's life, between two states of it (any
/// number of steps apart): a vcpu's vcpu_id and (seed/modern) ptid, a
/// vcore's first_vcpuid, num_threads never shrinking (vcpus are never
/// removed), the VM's LPID (SDR1 may change: HPT resizing).
///
/// Only for states known to belong to one VM: the model's steps, or a trace
/// the user says covers one VM (`pyvcore check --same-vm`).  Between
/// arbitrary breakpoint samples nothing is flagged by default, because no
/// pair of samples is unexplainable: a whole vcore run between them resets
/// the entry/exit word, napping_threads and in_guest and passes every
/// vcore_state and per-thread in_guest value (so 7, 11, 12, 13 and the 19/23
/// graphs cannot be told from a run boundary), and a VM destroyed and
/// created again reuses the freed addresses of its kvm, vcore and vcpus
/// (SLUB hands them out again), which explains any change of the fields
/// above.  Objects at a reused address are skipped where a changed vcore
/// or kvm pointer shows it.
pub fn check_step(prev: &Snapshot, next: &Snapshot) -> Vec<Violation> {
    let mut out = Vec::new();
    let aligned = next.variant != Variant::Prepatch;
    for (j, v) in next.vcpus.iter().enumerate() {
        let Some(old) = prev.vcpus.iter().find(|o| o.addr == v.addr) else {
            continue;
        };
        if old.vcore != v.vcore {
            // Another VM's vcpu at a reused address: a new object.
            continue;
        }
        if old.vcpu_id != v.vcpu_id {
            out.push(
                Violation::new(
                    2,
                    format!(
                        "vcpu at {:#x} changed vcpu_id from {} to {}",
                        v.addr, old.vcpu_id, v.vcpu_id
                    ),
                )
                .field(p("vcpus", j, "vcpu_id"), v.vcpu_id)
                .field("previous", old.vcpu_id),
            );
        } else if aligned && old.ptid != v.ptid {
            out.push(
                Violation::new(
                    1,
                    format!(
                        "vcpu {} changed ptid from {} to {}; it is fixed at creation",
                        v.vcpu_id, old.ptid, v.ptid
                    ),
                )
                .field(p("vcpus", j, "ptid"), v.ptid)
                .field("previous", old.ptid),
            );
        }
    }
    let mut same_vm = false;
    for (k, vc) in next.vcores.iter().enumerate() {
        let Some(old) = prev.vcores.iter().find(|o| o.addr == vc.addr) else {
            continue;
        };
        if old.kvm != vc.kvm {
            continue;
        }
        same_vm |= vc.kvm.is_some();
        if old.first_vcpuid != vc.first_vcpuid {
            out.push(
                Violation::new(
                    2,
                    format!(
                        "vcore changed first_vcpuid from {} to {}",
                        old.first_vcpuid, vc.first_vcpuid
                    ),
                )
                .field(p("vcores", k, "first_vcpuid"), vc.first_vcpuid)
                .field("previous", old.first_vcpuid),
            );
        }
        if vc.num_threads < old.num_threads {
            out.push(
                Violation::new(
                    20,
                    format!(
                        "vcore num_threads went from {} down to {}; vcpus are never removed",
                        old.num_threads, vc.num_threads
                    ),
                )
                .field(p("vcores", k, "num_threads"), vc.num_threads)
                .field("previous", old.num_threads),
            );
        }
    }
    // The LPID is allocated at VM creation and kept for the VM's life (SDR1
    // may change: HPT resizing).
    if let (true, Some(a), Some(b)) = (same_vm, &prev.kvm, &next.kvm) {
        if a.lpid != b.lpid {
            out.push(
                Violation::new(
                    8,
                    format!("the VM's LPID changed from {:#x} to {:#x}", a.lpid, b.lpid),
                )
                .field("kvm.lpid", b.lpid)
                .field("previous", a.lpid),
            );
        }
    }
    out
}

/// Transition invariants for two states exactly one model event apart (the
/// explorer's parent and child), on top of [`check_step`].  An event may
/// bundle several stores of one thread or of the runner, so each graph allows
/// skipping forward; what it rejects is going backwards without passing
/// through the states that must lie between:
///
/// * 11: once a thread has begun to exit, the entry part of the entry/exit
///   word changes only by the next run's reset (to 0);
/// * 19: vcore_state moves forward along its graph (VCORE_SPEC §5.6), or to
///   INACTIVE;
/// * 23: a thread's in_guest moves along NONE -> HOST_HV <-> GUEST_HV (and
///   HOST_HV <-> SKIP), HOST_HV -> NONE.
///
/// Not for samples taken at breakpoints: a whole run can lie between two of
/// those (use [`check_step`]).
pub fn check_event_step(prev: &Snapshot, next: &Snapshot) -> Vec<Violation> {
    let mut out = check_step(prev, next);
    let st = next.variant.vcore_states();
    for (k, vc) in next.vcores.iter().enumerate() {
        let Some(old) = prev.vcores.iter().find(|o| o.addr == vc.addr) else {
            continue;
        };
        let (a, b) = (EntryExit::of(old, prev.variant), EntryExit::of(vc, next.variant));
        let entries = |e: &EntryExit| match *e {
            EntryExit::Map { entry, .. } | EntryExit::Count { entry, .. } => Some(entry),
            EntryExit::Unknown => None,
        };
        if a.exit_started() && b.raw() != 0 && entries(&a) != entries(&b) {
            out.push(
                Violation::new(
                    11,
                    format!(
                        "{} went from {:#x} to {:#x}: a thread entered after the exit began",
                        b.key(),
                        a.raw(),
                        b.raw()
                    ),
                )
                .field(p("vcores", k, b.key()), b.raw())
                .field("previous", a.raw()),
            );
        }
        if !vcore_state_step_ok(st, old.vcore_state, vc.vcore_state) {
            out.push(
                Violation::new(
                    19,
                    format!(
                        "vcore_state went from {} to {}",
                        st.name(old.vcore_state).unwrap_or("?"),
                        st.name(vc.vcore_state).unwrap_or("?")
                    ),
                )
                .field(p("vcores", k, "vcore_state"), vc.vcore_state)
                .field("previous", old.vcore_state),
            );
        }
    }
    for (i, t) in next.threads.iter().enumerate() {
        let Some(old) = prev.threads.iter().find(|o| o.cpu == t.cpu) else {
            continue;
        };
        let (a, b) = (old.kvm_hstate.in_guest, t.kvm_hstate.in_guest);
        let ok = a == b
            || matches!(
                (a, b),
                (KVM_GUEST_MODE_NONE, KVM_GUEST_MODE_HOST_HV)
                    | (KVM_GUEST_MODE_HOST_HV, KVM_GUEST_MODE_GUEST_HV)
                    | (KVM_GUEST_MODE_GUEST_HV, KVM_GUEST_MODE_HOST_HV)
                    | (KVM_GUEST_MODE_HOST_HV, KVM_GUEST_MODE_NONE)
                    | (KVM_GUEST_MODE_HOST_HV, KVM_GUEST_MODE_SKIP)
                    | (KVM_GUEST_MODE_SKIP, KVM_GUEST_MODE_HOST_HV)
            );
        if !ok {
            out.push(
                Violation::new(
                    23,
                    format!("thread {} went from in_guest {} to {} in one step", i, a, b),
                )
                .field(hs(i, "in_guest"), b)
                .field("previous", a),
            );
        }
    }
    out
}

/// One event's worth of vcore_state change (forward along the graph, with
/// skips; any state may drop to INACTIVE).
fn vcore_state_step_ok(st: &VcoreStates, a: u8, b: u8) -> bool {
    if a == b || b == st.inactive || a == st.inactive {
        return true;
    }
    // Position along the run: STARTING < RUNNING < EXITING; PREEMPT and
    // PIGGYBACK (modern) come before RUNNING; SLEEPING/POLLING are a side
    // branch left only through INACTIVE (POLLING may go on to SLEEPING).
    let run_pos = |s: u8| {
        if Some(s) == st.preempt {
            Some(0)
        } else if Some(s) == st.piggyback || Some(s) == st.starting {
            Some(1)
        } else if s == st.running {
            Some(2)
        } else if s == st.exiting {
            Some(3)
        } else {
            None
        }
    };
    match (run_pos(a), run_pos(b)) {
        // Modern: a non-master subcore vcore goes EXITING/PIGGYBACK -> PREEMPT.
        (Some(3), Some(0)) | (Some(1), Some(0)) => st.preempt.is_some(),
        (Some(x), Some(y)) => y >= x,
        (None, None) => Some(a) == st.polling && b == st.sleeping,
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// What the model expects

/// What the model says one thread's PACA should hold, for side-by-side tables.
/// `None` = the model allows any value here (stale fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Prediction {
    /// Index of the thread in the core.
    pub thread: usize,
    pub cpu: u32,
    pub ptid: Option<u8>,
    pub kvm_vcpu: Option<u64>,
    pub kvm_vcore: Option<u64>,
    /// vcpu_id of the vcpu expected on this thread, if any.
    pub vcpu_id: Option<u32>,
}

/// The vcore the model expects on the core whose thread 0 is cpu `base`: the
/// one in a run with that pcpu (RUNNING before STARTING/PIGGYBACK before
/// EXITING).
pub fn active_vcore(s: &Snapshot, base: u32) -> Option<&Vcore> {
    let st = s.variant.vcore_states();
    let rank = |state: u8| {
        if state == st.running {
            Some(0)
        } else if Some(state) == st.starting || Some(state) == st.piggyback {
            Some(1)
        } else if state == st.exiting {
            Some(2)
        } else {
            None
        }
    };
    s.vcores
        .iter()
        .filter(|v| v.pcpu == base)
        .filter_map(|v| rank(v.vcore_state).map(|r| (r, v)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, v)| v)
}

/// Per thread of the snapshot's core: the PACA ptid / kvm_vcpu / kvm_vcore
/// the model expects, given the vcores and vcpus of the snapshot.
///
/// Seed/modern place vcpu `first_vcpuid + N` on thread `pcpu + N`; prepatch
/// placed a vcpu on `pcpu + arch.ptid`, with ptid chosen per run, so its
/// prediction follows the observed arch.ptid.  A vcpu counts as started when
/// it is RUNNABLE (or its state is unknown).
pub fn predict(s: &Snapshot) -> Vec<Prediction> {
    let modern = s.variant == Variant::Modern;
    let tpc = s.threads_per_core.clamp(1, MAX_SMT_THREADS as u32);
    s.threads
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let Some(vc) = active_vcore(s, t.cpu - t.cpu % tpc) else {
                return Prediction {
                    thread: i,
                    cpu: t.cpu,
                    ptid: None,
                    kvm_vcpu: Some(0),
                    // Modern release clears kvm_vcore; the seed leaves it stale.
                    kvm_vcore: if modern { Some(0) } else { None },
                    vcpu_id: None,
                };
            };
            let n = t.cpu as i64 - vc.pcpu as i64;
            let vcpu = s.vcpus.iter().find(|v| {
                v.vcore == vc.addr
                    && v.state.is_none_or(|st| st == KVMPPC_VCPU_RUNNABLE)
                    && match s.variant {
                        Variant::Prepatch => v.ptid as i64 == n,
                        _ => v.vcpu_id as i64 - vc.first_vcpuid as i64 == n,
                    }
            });
            let participates = n == 0 || vcpu.is_some();
            Prediction {
                thread: i,
                cpu: t.cpu,
                ptid: u8::try_from(n).ok().filter(|_| participates),
                kvm_vcpu: Some(vcpu.map_or(0, |v| v.addr)),
                kvm_vcore: if participates {
                    Some(vc.addr)
                } else if modern {
                    Some(0)
                } else {
                    None
                },
                vcpu_id: vcpu.map(|v| v.vcpu_id),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{KvmArch, Thread};

    const VC: u64 = 0xc000_0000_1234_0000;
    const KVMP: u64 = 0xc000_0000_5678_0000;

    fn vcpu_addr(id: u32) -> u64 {
        0xc000_0000_9000_0000 + id as u64 * 0x2000
    }

    /// Modern, 4 threads, vcpus `ids` executing the guest on thread = id;
    /// thread 0 naps with NAPPING_NOVCPU when it has no vcpu.
    fn running(ids: &[u32]) -> Snapshot {
        let mut threads = Vec::new();
        for t in 0..4u32 {
            let has = ids.contains(&t);
            threads.push(Thread {
                cpu: t,
                hw_cpu_id: 8 + t,
                lpidr: Some(1),
                sdr1: Some(0x3f00),
                kvm_hstate: Hstate {
                    kvm_vcpu: if has { vcpu_addr(t) } else { 0 },
                    kvm_vcore: if has || t == 0 { VC } else { 0 },
                    ptid: t as u8,
                    hwthread_req: 1,
                    hwthread_state: if t == 0 {
                        KVM_HWTHREAD_IN_KERNEL
                    } else if has {
                        KVM_HWTHREAD_IN_KVM
                    } else {
                        KVM_HWTHREAD_IN_IDLE
                    },
                    napping: if t == 0 && !has { NAPPING_NOVCPU } else { 0 },
                    in_guest: if has {
                        KVM_GUEST_MODE_GUEST_HV
                    } else if t == 0 {
                        KVM_GUEST_MODE_HOST_HV
                    } else {
                        0
                    },
                },
            });
        }
        let entered: u32 = 1 | ids.iter().map(|i| 1u32 << i).fold(0, |a, b| a | b);
        Snapshot {
            variant: Variant::Modern,
            threads_per_core: 4,
            stop: None,
            threads,
            vcores: vec![Vcore {
                addr: VC,
                first_vcpuid: 0,
                pcpu: 0,
                num_threads: 4,
                n_runnable: ids.len() as u32,
                vcore_state: MODERN_VCORE_STATES.running,
                in_guest: 1,
                entry_exit_map: Some(entered),
                entry_exit_count: None,
                napping_threads: if ids.contains(&0) { 0 } else { 1 },
                runner: Some(vcpu_addr(ids[0])),
                n_woken: None,
                nap_count: None,
                kvm: Some(KVMP),
            }],
            vcpus: ids
                .iter()
                .map(|&i| Vcpu {
                    addr: vcpu_addr(i),
                    vcpu_id: i,
                    vcore: VC,
                    ptid: i as u8,
                    cpu: 0,
                    thread_cpu: Some(i as i32),
                    state: Some(KVMPPC_VCPU_RUNNABLE),
                    ceded: Some(0),
                })
                .collect(),
            kvm: Some(KvmArch {
                lpid: 1,
                sdr1: 0x3f00,
                host_lpid: Some(0),
                host_sdr1: Some(0x2000),
            }),
        }
    }

    fn numbers(s: &Snapshot) -> Vec<u32> {
        let mut n: Vec<u32> = check_snapshot(s).iter().map(|v| v.invariant).collect();
        n.sort();
        n.dedup();
        n
    }

    #[test]
    fn correct_states_pass() {
        assert_eq!(numbers(&running(&[0, 1, 2, 3])), Vec::<u32>::new());
        assert_eq!(numbers(&running(&[1])), Vec::<u32>::new());
        // Exit in progress: the PACA still holds vcpu 1, whose cpu is -1.
        let mut s = running(&[0, 1, 2, 3]);
        s.vcores[0].entry_exit_map = Some(0x20f);
        s.threads[1].kvm_hstate.in_guest = KVM_GUEST_MODE_HOST_HV;
        s.vcpus[1].cpu = -1;
        s.vcpus[1].thread_cpu = Some(-1);
        assert_eq!(numbers(&s), Vec::<u32>::new());
    }

    #[test]
    fn stock_qemu_breaks_8() {
        let mut s = running(&[0, 1, 2, 3]);
        for t in &mut s.threads[1..] {
            t.lpidr = Some(0);
        }
        assert_eq!(numbers(&s), vec![8]);
    }

    #[test]
    fn swapped_paca_ptids_break_3() {
        let mut s = running(&[0, 1, 2, 3]);
        s.threads[1].kvm_hstate.ptid = 2;
        s.threads[2].kvm_hstate.ptid = 1;
        assert_eq!(numbers(&s), vec![3]);
    }

    #[test]
    fn prepatch_placement_is_a_misdelivery_only() {
        let mut s = running(&[0, 2]);
        s.variant = Variant::Prepatch;
        s.vcores[0].entry_exit_map = None;
        s.vcores[0].entry_exit_count = Some(2);
        s.vcores[0].vcore_state = SEED_VCORE_STATES.running;
        s.vcpus[1].ptid = 1; // vcpu 2 got ptid 1 first-come first-served
        s.vcpus[1].thread_cpu = None; // no thread_cpu before ~v4.1
        s.threads[1].kvm_hstate = s.threads[2].kvm_hstate.clone();
        s.threads[2].kvm_hstate = Hstate {
            hwthread_req: 1,
            hwthread_state: KVM_HWTHREAD_IN_IDLE,
            ptid: 2,
            ..Hstate::default()
        };
        assert_eq!(numbers(&s), vec![29]);
        s.variant = Variant::Seed;
        assert!(numbers(&s).contains(&1));
    }

    #[test]
    fn novcpu_shape_26() {
        let mut s = running(&[1]);
        s.vcores[0].napping_threads = 0;
        assert_eq!(numbers(&s), vec![26]);
    }

    #[test]
    fn step_flags_only_what_no_run_explains() {
        let a = running(&[0, 1, 2, 3]);
        let mut b = running(&[1]);
        b.vcores[0].entry_exit_map = Some(0x303);
        assert!(check_step(&a, &b).is_empty());
        let mut c = a.clone();
        c.vcores[0].num_threads = 3;
        assert_eq!(
            check_step(&a, &c).iter().map(|v| v.invariant).collect::<Vec<_>>(),
            vec![20]
        );
        let mut d = a.clone();
        d.vcpus[3].ptid = 2;
        assert_eq!(
            check_step(&a, &d).iter().map(|v| v.invariant).collect::<Vec<_>>(),
            vec![1]
        );
    }

    #[test]
    fn predict_aligns_vcpu_ids() {
        let p = predict(&running(&[1]));
        assert_eq!(p[0].kvm_vcore, Some(VC));
        assert_eq!(p[0].kvm_vcpu, Some(0));
        assert_eq!(p[1].kvm_vcpu, Some(vcpu_addr(1)));
        assert_eq!(p[1].ptid, Some(1));
        assert_eq!(p[2].kvm_vcore, Some(0));
        assert_eq!(p[2].ptid, None);
    }

    #[test]
    fn event_step_graphs() {
        let a = running(&[0, 1, 2, 3]);
        let mut exiting = a.clone();
        exiting.vcores[0].entry_exit_map = Some(0x10f);
        assert!(check_event_step(&a, &exiting).is_empty());
        let mut late = exiting.clone();
        late.vcores[0].entry_exit_map = Some(0x107);
        assert_eq!(
            check_event_step(&exiting, &late)
                .iter()
                .map(|v| v.invariant)
                .collect::<Vec<_>>(),
            vec![11]
        );
        let mut reset = exiting.clone();
        reset.vcores[0].entry_exit_map = Some(0);
        assert!(check_event_step(&exiting, &reset).is_empty());
        let mut back = a.clone();
        back.vcores[0].vcore_state = MODERN_VCORE_STATES.exiting;
        let mut again = back.clone();
        again.vcores[0].vcore_state = MODERN_VCORE_STATES.running;
        assert!(check_event_step(&a, &back).is_empty());
        assert_eq!(
            check_event_step(&back, &again)
                .iter()
                .map(|v| v.invariant)
                .collect::<Vec<_>>(),
            vec![19]
        );
        let mut jump = a.clone();
        jump.threads[1].kvm_hstate.in_guest = KVM_GUEST_MODE_NONE; // GUEST_HV -> NONE skips the exit
        assert_eq!(
            check_event_step(&a, &jump)
                .iter()
                .map(|v| v.invariant)
                .collect::<Vec<_>>(),
            vec![23]
        );
        // The same pairs as breakpoint samples are explained by a run boundary.
        assert!(check_step(&exiting, &late).is_empty() && check_step(&back, &again).is_empty());
        let st = &SEED_VCORE_STATES;
        assert!(
            vcore_state_step_ok(st, 2, 3) && vcore_state_step_ok(st, 3, 4) && vcore_state_step_ok(st, 4, 0)
        );
        assert!(
            !vcore_state_step_ok(st, 4, 3)
                && !vcore_state_step_ok(st, 1, 3)
                && !vcore_state_step_ok(st, 3, 2)
        );
        let m = &MODERN_VCORE_STATES;
        assert!(vcore_state_step_ok(m, 6, 3) && vcore_state_step_ok(m, 1, 2) && vcore_state_step_ok(m, 5, 1));
        assert!(!vcore_state_step_ok(m, 3, 4) && !vcore_state_step_ok(m, 6, 4));
    }

    /// `cargo test --release --lib invariants::tests::speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn speed() {
        let states = [running(&[0, 1, 2, 3]), running(&[1]), running(&[0, 2])];
        let n = 1_000_000;
        let t = std::time::Instant::now();
        let mut found = 0;
        for i in 0..n {
            let s = &states[i % 3];
            found += check_snapshot(std::hint::black_box(s)).len();
            found += check_step(&states[(i + 1) % 3], s).len();
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        println!("check_snapshot + check_step: {ns:.0} ns per state ({found} violations)");
        let t = std::time::Instant::now();
        for i in 0..n {
            found += check_snapshot(std::hint::black_box(&states[i % 3])).len();
        }
        println!(
            "check_snapshot alone: {:.0} ns",
            t.elapsed().as_nanos() as f64 / n as f64
        );
        type Part = fn(&Ctx, &mut Vec<Violation>);
        let parts: [(&str, Part); 4] = [
            ("vcpus", check_vcpus),
            ("vcores", check_vcores),
            ("threads", check_threads),
            ("mmu", check_mmu),
        ];
        for (name, f) in parts {
            let t = std::time::Instant::now();
            let mut out = Vec::new();
            for i in 0..n {
                let cx = Ctx::new(std::hint::black_box(&states[i % 3]));
                f(&cx, &mut out);
            }
            found += out.len();
            println!("  {name}: {:.0} ns", t.elapsed().as_nanos() as f64 / n as f64);
        }
        let text = serde_json::to_string(&states[0]).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..n / 10 {
            let s = crate::snapshot::parse_snapshot(std::hint::black_box(&text), Some(1), None).unwrap();
            found += s.threads.len();
        }
        println!(
            "parse_snapshot ({} B): {:.0} ns",
            text.len(),
            t.elapsed().as_nanos() as f64 / (n / 10) as f64
        );
        let t = std::time::Instant::now();
        for _ in 0..n / 10 {
            let s: Snapshot = serde_json::from_str(std::hint::black_box(&text)).unwrap();
            found += s.threads.len();
        }
        println!(
            "serde_json::from_str::<Snapshot>: {:.0} ns",
            t.elapsed().as_nanos() as f64 / (n / 10) as f64
        );
        let t = std::time::Instant::now();
        for _ in 0..n / 10 {
            let v: serde_json::Value = serde_json::from_str(std::hint::black_box(&text)).unwrap();
            found += v.as_object().map_or(0, |o| o.len());
        }
        println!(
            "serde_json::from_str::<Value>: {:.0} ns",
            t.elapsed().as_nanos() as f64 / (n / 10) as f64
        );
        assert!(found > 0);
    }

    /// Random field values never panic (no unwrap on input, no overflow).
    #[test]
    fn random_values_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base = running(&[0, 1, 2, 3]);
        for round in 0..20_000 {
            let mut s = base.clone();
            s.variant = Variant::ALL[round % 3];
            s.threads_per_core = (rnd() % 8 + 1) as u32;
            s.threads.truncate(s.threads_per_core as usize);
            for t in &mut s.threads {
                let r = rnd();
                t.cpu = (r % 12) as u32;
                t.kvm_hstate.ptid = (r >> 8) as u8;
                t.kvm_hstate.napping = (r >> 16) as u8 % 5;
                t.kvm_hstate.in_guest = (r >> 24) as u8 % 7;
                t.kvm_hstate.hwthread_req = (r >> 32) as u8 % 3;
                t.kvm_hstate.kvm_vcpu = if r & 1 == 0 {
                    vcpu_addr((r >> 40) as u32 % 5)
                } else {
                    r
                };
                t.lpidr = Some(rnd() % 3);
            }
            for vc in &mut s.vcores {
                let r = rnd();
                vc.pcpu = (r % 16) as u32 * if r & 0x100 == 0 { 1 } else { u32::MAX / 16 };
                vc.first_vcpuid = (r >> 8) as u32;
                vc.entry_exit_map = Some((r >> 16) as u32);
                vc.entry_exit_count = Some((r >> 24) as u32);
                vc.vcore_state = (r >> 40) as u8 % 8;
                vc.napping_threads = (r >> 48) as u32;
                vc.num_threads = (r >> 56) as u32;
                vc.n_woken = Some(rnd() as u32);
                vc.nap_count = Some(rnd() as u32);
            }
            for v in &mut s.vcpus {
                let r = rnd();
                v.vcpu_id = r as u32;
                v.ptid = (r >> 32) as u8;
                v.cpu = (r >> 40) as i32;
                v.thread_cpu = Some((r >> 8) as i32);
            }
            let prev = base.clone();
            let _ = check_snapshot(&s);
            let _ = check_step(&prev, &s);
            let _ = predict(&s);
        }
    }
}
