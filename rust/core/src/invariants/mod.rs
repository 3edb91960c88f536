//! The invariants of the thread-aligned vcore scheduler, evaluated on a
//! [`Snapshot`] (one stop of a real kernel, or one state of the model) and
//! between two snapshots.
//!
//! Every invariant has a row in [`table`] (number, statement, window, kernel
//! source, meaning); every violation is built from its number with
//! [`Violation::new`].  A check only fires on a state that a correct kernel
//! can never show at *any* instruction boundary: gdb stops every hardware
//! thread wherever it happens to be, so a stop can land between two stores of
//! one kernel function.  Where the plain statement is stricter than that, the
//! check is narrowed and the comment next to it names the stores that open
//! the window.
//!
//! The checks are grouped by subject: [`vcpus`], [`vcores`], [`entry_exit`]
//! (the entry/exit word and the grab of the secondaries), [`threads`] (each
//! PACA), [`regs`] (registers: DPDES, MSR), [`mmu`] (LPIDR/SDR1), [`step`]
//! (between two snapshots), [`predict`] (what the model expects).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::view::Snapshot;

mod ctx;
pub mod entry_exit;
mod held;
pub mod mmu;
pub mod predict;
pub mod regs;
pub mod step;
pub mod table;
pub mod threads;
pub mod vcores;
pub mod vcpus;

#[cfg(test)]
mod tests;

pub use predict::{active_vcore, predict, Prediction};
pub use step::{check_event_step, check_same_run, check_step, run_timing_not_judged, same_run};
pub use table::{info, InvariantInfo, Kind, INVARIANTS};

use ctx::Ctx;

/// One broken invariant: its number (a row of [`INVARIANTS`]), a one-line
/// message and the fields involved (JSON path in the snapshot -> observed
/// value; 64-bit kernel values as hex strings).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    pub invariant: u32,
    pub message: String,
    pub fields: BTreeMap<String, Value>,
}

impl Violation {
    /// A violation of invariant `number`, which must be a row of the table
    /// (checked in debug builds and by a test over every emitting call).
    pub fn new(number: u32, message: impl Into<String>) -> Self {
        debug_assert!(
            info(number).is_some(),
            "invariant {number} has no row in the table"
        );
        Violation {
            invariant: number,
            message: message.into(),
            fields: BTreeMap::new(),
        }
    }

    /// Add a field (JSON path -> observed value).
    pub fn field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }

    /// Add a 64-bit kernel value (address, SPR) as a hex string, the way
    /// every pyvcore writer prints them.
    pub fn hex(self, key: impl Into<String>, value: u64) -> Self {
        self.field(key, format!("{value:#x}"))
    }

    /// The invariant's table row.
    pub fn info(&self) -> Option<&'static InvariantInfo> {
        info(self.invariant)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant {}: {}", self.invariant, self.message)
    }
}

/// What checking one snapshot judged.
///
/// `judged` lists the snapshot invariants whose data the stop carried;
/// `not_judged` the others, each with the reason.  A stop whose vcore could
/// not be read is "not judged" for the vcore invariants, never clean.
/// `same_run` counts the vcores judged against the previous stop as one run
/// ([`same_run`]: 7, 11 and 19 between the two stops); 0 for a stop checked
/// on its own.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CheckOutcome {
    pub violations: Vec<Violation>,
    pub judged: Vec<u32>,
    pub not_judged: Vec<(u32, &'static str)>,
    /// Invariants that do not apply to the snapshot's variant (16, nap_count,
    /// on modern): neither judged nor "not judged", whatever the stop holds.
    pub not_applicable: Vec<u32>,
    pub vcore_found: bool,
    /// Cpus of the listed cores that the snapshot lacks
    /// ([`crate::snapshot::absent_cpus`]): none is judged clean then.
    pub absent_cpus: Vec<u32>,
    /// Pointers to a vcpu or vcore the snapshot lacks
    /// ([`crate::snapshot::unheld`]): none is judged clean then.
    pub unheld: Vec<String>,
    pub same_run: usize,
    /// The stop's `tb` on the host's timebase ([`Snapshot::host_tb`]); None
    /// without `tb` or when it cannot be known (`host_tb_unknown` says why).
    pub host_tb: Option<u64>,
    pub host_tb_unknown: Option<&'static str>,
}

impl CheckOutcome {
    /// "violations", "not judged" (nothing wrong seen, but some invariant
    /// lacked its data, e.g. no vcore) or "clean".
    pub fn verdict(&self) -> &'static str {
        if !self.violations.is_empty() {
            "violations"
        } else if !self.vcore_found || !self.absent_cpus.is_empty() || !self.unheld.is_empty() {
            "not judged"
        } else {
            "clean"
        }
    }
}

/// Invariants that can be judged on a single stop.
pub fn check_snapshot(s: &Snapshot) -> Vec<Violation> {
    let mut out = Vec::new();
    let cx = Ctx::new(s);
    vcpus::check(&cx, &mut out);
    vcores::check(&cx, &mut out);
    threads::check(&cx, &mut out);
    regs::check(&cx, &mut out);
    mmu::check(&cx, &mut out);
    out
}

/// The part of [`check_snapshot`] that reads the doorbell registers (a
/// thread's `dpdes`; invariant 31), in the order `check_snapshot` reports
/// it.  No other check of `check_snapshot` reads a thread's or a vcore's
/// `dpdes`, so two snapshots that differ only there get the same
/// violations from the rest: the explorer judges a state whose snapshot
/// equals, doorbells apart, one already judged clean with this alone (its
/// debug builds compare the two on every such state).
pub fn check_doorbells(s: &Snapshot) -> Vec<Violation> {
    let mut out = Vec::new();
    regs::doorbells(&Ctx::new(s), &mut out);
    out
}

/// Whether a needed field exists at all in `s`'s variant (nap_count is seed and
/// prepatch only): an invariant needing one that does not is not applicable.
fn applies(s: &Snapshot, need: &str) -> bool {
    match need {
        "vcores.nap_count" => s.variant.has_nap_count(),
        _ => true,
    }
}

/// Why a needed field is absent from `s`, or None when it is there.
fn missing(s: &Snapshot, need: &str) -> Option<&'static str> {
    let present = match need {
        "vcores" => !s.vcores.is_empty(),
        "vcpus" => !s.vcpus.is_empty(),
        "threads.lpidr" => s.threads.iter().any(|t| t.lpidr.is_some() || t.sdr1.is_some()),
        "threads.dpdes" => s.threads.iter().any(|t| t.dpdes.is_some()),
        "threads.msr" => s.threads.iter().any(|t| t.msr.is_some()),
        "vcores.nap_count" => s.vcores.iter().any(|v| v.nap_count.is_some()),
        _ => true,
    };
    if present {
        return None;
    }
    Some(match need {
        "vcores" => "no vcore found",
        "vcpus" => "no vcpu in the snapshot",
        "threads.lpidr" => "no LPIDR/SDR1 read",
        "threads.dpdes" => "no DPDES read",
        "threads.msr" => "no MSR read",
        "vcores.nap_count" => "no nap_count read",
        _ => "field missing",
    })
}

/// Why every invariant of a stop that lacks a thread of its core is not judged.
pub const THREAD_MISSING: &str = "a thread of the core is not in the snapshot";
/// Why every invariant of a stop that points at a vcpu or vcore it lacks is not judged.
pub const POINTEE_MISSING: &str = "a vcpu or vcore it points at is not in the snapshot";

/// [`check_snapshot`] plus what was judged: every snapshot invariant of the
/// table, judged when the fields it needs are present.
pub fn check_outcome(s: &Snapshot) -> CheckOutcome {
    let violations = check_snapshot(s);
    // Any invariant may be about a thread the stop lacks (its entry in
    // entry_exit_map, its nap, its vcpu's ptid, its LPIDR): none is judged.
    let absent = crate::snapshot::absent_cpus(s);
    // Likewise a vcpu or vcore a thread or vcore points at that it lacks
    // (with no vcore at all, "no vcore found" says it already).
    let unheld = if s.vcores.is_empty() {
        Vec::new()
    } else {
        crate::snapshot::unheld(s)
    };
    let mut judged = Vec::new();
    let mut not_judged = Vec::new();
    let mut not_applicable = Vec::new();
    for row in INVARIANTS.iter().filter(|r| r.kind == Kind::Snapshot) {
        if !row.needs.iter().all(|n| applies(s, n)) {
            not_applicable.push(row.number);
            continue;
        }
        match row.needs.iter().find_map(|n| missing(s, n)) {
            None if !absent.is_empty() => not_judged.push((row.number, THREAD_MISSING)),
            None if !unheld.is_empty() => not_judged.push((row.number, POINTEE_MISSING)),
            None => judged.push(row.number),
            Some(reason) => not_judged.push((row.number, reason)),
        }
    }
    CheckOutcome {
        violations,
        judged,
        not_judged,
        not_applicable,
        vcore_found: !s.vcores.is_empty(),
        absent_cpus: absent,
        unheld,
        same_run: 0,
        host_tb: s.host_tb().ok().flatten(),
        host_tb_unknown: s.host_tb().err(),
    }
}
