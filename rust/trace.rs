//! Replaying a trace: one snapshot per line (JSONL), each checked on its own
//! and against the line before it.

use std::io::{self, BufRead};
use std::path::Path;

use serde::Serialize;

use crate::consts::Variant;
use crate::invariants::{check_snapshot, check_step, Violation};
use crate::snapshot::{parse_snapshot, SnapshotError};
use crate::view::Snapshot;

/// Checks a stream of snapshots, keeping the previous one for the
/// transition invariants.
#[derive(Debug, Default)]
pub struct Replayer {
    /// Overrides each snapshot's own "variant".
    pub variant: Option<Variant>,
    prev: Option<Snapshot>,
}

impl Replayer {
    pub fn new(variant: Option<Variant>) -> Self {
        Replayer { variant, prev: None }
    }

    /// Check one snapshot: its own invariants, then the step from the
    /// previous one.
    pub fn push(&mut self, snap: Snapshot) -> Vec<Violation> {
        let mut out = check_snapshot(&snap);
        if let Some(prev) = &self.prev {
            out.extend(check_step(prev, &snap));
        }
        self.prev = Some(snap);
        out
    }

    /// Parse and check one line of text.
    pub fn push_text(&mut self, text: &str, line: Option<usize>) -> Result<Vec<Violation>, SnapshotError> {
        let snap = parse_snapshot(text, line, self.variant)?;
        Ok(self.push(snap))
    }

    /// Forget the previous snapshot (the next one starts a new sequence).
    pub fn reset(&mut self) {
        self.prev = None;
    }
}

/// A violation found at one line of a trace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceViolation {
    pub line: usize,
    pub stop: Option<String>,
    #[serde(flatten)]
    pub violation: Violation,
}

/// The result of replaying a trace.  `error` is set when a line could not be
/// used; the lines before it were checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceReport {
    pub snapshots: usize,
    pub violations: Vec<TraceViolation>,
    pub error: Option<SnapshotError>,
}

impl TraceReport {
    /// 0 clean, 1 violations, 2 unusable input (the CLI's exit code).
    pub fn exit_code(&self) -> i32 {
        if self.error.is_some() {
            2
        } else if self.violations.is_empty() {
            0
        } else {
            1
        }
    }
}

/// Replay a trace from any line source.  Blank lines are skipped.
pub fn check_lines<I, S>(lines: I, variant: Option<Variant>) -> TraceReport
where
    I: IntoIterator<Item = io::Result<S>>,
    S: AsRef<str>,
{
    let mut report = TraceReport::default();
    let mut replayer = Replayer::new(variant);
    for (idx, line) in lines.into_iter().enumerate() {
        let n = idx + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                report.error = Some(SnapshotError { line: Some(n), key: String::new(), message: format!("cannot read: {e}") });
                break;
            }
        };
        let text = line.as_ref().trim();
        if text.is_empty() {
            continue;
        }
        let snap = match parse_snapshot(text, Some(n), variant) {
            Ok(s) => s,
            Err(e) => {
                report.error = Some(e);
                break;
            }
        };
        let stop = snap.stop.clone();
        report.snapshots += 1;
        for violation in replayer.push(snap) {
            report.violations.push(TraceViolation { line: n, stop: stop.clone(), violation });
        }
    }
    report
}

/// Replay a trace held in a string.
pub fn check_text(text: &str, variant: Option<Variant>) -> TraceReport {
    check_lines(text.lines().map(Ok::<_, io::Error>), variant)
}

/// Replay a trace file.
pub fn check_file(path: &Path, variant: Option<Variant>) -> io::Result<TraceReport> {
    let file = std::fs::File::open(path)?;
    Ok(check_lines(io::BufReader::with_capacity(1 << 16, file).lines(), variant))
}
