//! The VCORE_SPEC §4 invariants, evaluated on a [`Snapshot`] (one stop) and
//! between two consecutive snapshots (samples taken at breakpoints).
//!
//! Work in progress: the API below is stable, the bodies are being filled in.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::view::Snapshot;

/// One broken invariant: its VCORE_SPEC §4 number, a one-line message and the
/// fields involved (kernel field names -> observed values).
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    pub invariant: u32,
    pub message: String,
    pub fields: BTreeMap<String, Value>,
}

/// Invariants that can be judged on a single stop.
pub fn check_snapshot(_s: &Snapshot) -> Vec<Violation> {
    Vec::new()
}

/// Transition invariants between two consecutive samples (any number of
/// legal steps may lie between them).
pub fn check_step(_prev: &Snapshot, _next: &Snapshot) -> Vec<Violation> {
    Vec::new()
}
