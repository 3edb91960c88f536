//! What the shadow records of a trace: each change of a watched field
//! ([`Event`], one line of the event log), each violation with the events
//! that led to it ([`Recorded`]), the state-change edges ([`Edge`]) and the
//! counters ([`Stats`]), with the bounds on how much of each is kept.

use std::collections::BTreeMap;

use serde::Serialize;

use super::field::FieldRef;
use crate::invariants::Violation;

/// Events kept before each violation.
pub const RING: usize = 32;
/// Violations kept in full, with the events before each.
pub const MAX_RECORDED: usize = 200;
/// Violations listed (place, message and fields, no events: a few hundred
/// bytes each); past this many they are only counted ([`Stats::violations`],
/// [`Stats::violations_per_invariant`]).
pub const MAX_LISTED: usize = 1 << 16;
/// Distinct states remembered (the count saturates there).
pub const MAX_STATES: usize = 1 << 20;
/// Distinct edges remembered.
pub const MAX_EDGES: usize = 1 << 14;

/// One change of one watched field (one line of the event log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub tb: u64,
    pub cpu: usize,
    pub pc: u64,
    pub field: FieldRef,
    pub old: Option<u64>,
    pub new: u64,
}

/// A violation with where it happened and the events that led to it.
#[derive(Clone, Debug, Serialize)]
pub struct Recorded {
    #[serde(flatten)]
    pub violation: Violation,
    pub seq: u64,
    pub tb: u64,
    pub cpu: usize,
    pub pc: String,
    pub field: String,
    /// The last events up to and including the one that broke it (empty
    /// past the first [`MAX_RECORDED`] violations).
    pub events: Vec<serde_json::Value>,
}

/// One state change as an edge: field kind, old -> new (pointers shown as
/// NULL/ptr), and the PC that made it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Edge {
    pub field: String,
    pub old: String,
    pub new: String,
    pub pc: u64,
}

/// Counters of a trace.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Stores that fell in a watched page and were decoded.
    pub stores_checked: u64,
    pub events: u64,
    pub events_per_field: BTreeMap<String, u64>,
    pub distinct_states: u64,
    /// Every violation found, listed or not.
    pub violations: u64,
    /// The same, per invariant number.
    pub violations_per_invariant: BTreeMap<u32, u64>,
    /// The first and the highest event `tb` (raw: the TB register as read).
    pub first_tb: Option<u64>,
    pub last_tb: u64,
    /// The highest event `tb` on the host's timebase
    /// ([`super::CoreState::host_tb`]), None before one was known.
    pub last_host_tb: Option<u64>,
    /// Events whose `tb` could not be put on the host's timebase, per
    /// reason (the reasons of [`crate::view::Snapshot::host_tb`]).
    pub host_tb_unknown: BTreeMap<String, u64>,
    /// Of those, the events where a state the liveness bounds (41-43) time
    /// was held and so was not judged, per reason.
    pub liveness_not_judged: BTreeMap<String, u64>,
    /// Times a snapshot violation was deferred because a field it names was
    /// behind memory (see [`settle`]).
    pub unsettled: u64,
}
