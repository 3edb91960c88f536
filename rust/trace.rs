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

#[cfg(test)]
mod tests {
    use super::*;

    const SNAP: &str = r#"{"variant":"modern","threads_per_core":2,"stop":"s",
        "threads":[{"cpu":0,"hw_cpu_id":8,"lpidr":0,"kvm_hstate":{"kvm_vcpu":0,"kvm_vcore":0,"ptid":0,
        "hwthread_req":0,"hwthread_state":0,"napping":0,"in_guest":0}},
        {"cpu":1,"hw_cpu_id":9,"lpidr":0,"kvm_hstate":{"kvm_vcpu":0,"kvm_vcore":0,"ptid":1,
        "hwthread_req":0,"hwthread_state":1,"napping":0,"in_guest":0}}]}"#;

    fn line(s: &str) -> String {
        s.replace('\n', " ")
    }

    #[test]
    fn clean_trace_with_blank_lines() {
        let text = format!("{}\n\n{}\n", line(SNAP), line(SNAP));
        let r = check_text(&text, None);
        assert_eq!((r.snapshots, r.violations.len(), r.exit_code()), (2, 0, 0));
    }

    #[test]
    fn violations_carry_line_and_stop() {
        let bad = line(SNAP).replace(r#""ptid":1"#, r#""ptid":3"#);
        let r = check_text(&format!("{}\n{}\n", line(SNAP), bad), None);
        assert_eq!(r.exit_code(), 1);
        assert!(r.violations.iter().all(|v| v.line == 2 && v.stop.as_deref() == Some("s")));
        assert_eq!(r.violations[0].violation.invariant, 3);
    }

    #[test]
    fn unusable_line_stops_with_its_number_and_keeps_what_came_before() {
        let bad = line(SNAP).replacen(r#""cpu":1,"#, "", 1);
        let r = check_text(&format!("{}\n{}\n{}\n", line(SNAP), bad, line(SNAP)), None);
        assert_eq!(r.exit_code(), 2);
        assert_eq!(r.snapshots, 1);
        let e = r.error.unwrap();
        assert_eq!((e.line, e.key.as_str()), (Some(2), "threads[1].cpu"));
    }

    #[test]
    fn replayer_variant_override() {
        let mut rp = Replayer::new(Some(Variant::Seed));
        assert!(rp.push_text(&line(SNAP), Some(1)).unwrap().is_empty());
        assert!(rp.push_text("{}", Some(2)).is_err());
        rp.reset();
    }
}
