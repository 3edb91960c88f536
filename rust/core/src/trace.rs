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
    /// The snapshots all belong to one VM's life: also judge what never
    /// changes within it ([`check_step`]).
    pub same_vm: bool,
    prev: Option<Snapshot>,
}

impl Replayer {
    pub fn new(variant: Option<Variant>) -> Self {
        Replayer {
            variant,
            same_vm: false,
            prev: None,
        }
    }

    pub fn with_same_vm(mut self, same_vm: bool) -> Self {
        self.same_vm = same_vm;
        self
    }

    /// Check one snapshot: its own invariants, then (same_vm) the step from
    /// the previous one.
    pub fn push(&mut self, snap: Snapshot) -> Vec<Violation> {
        let mut out = check_snapshot(&snap);
        if let (true, Some(prev)) = (self.same_vm, &self.prev) {
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

/// Lines parsed per batch; a batch is parsed on all available cores, then
/// checked in order (the transition checks need the previous snapshot).
const BATCH: usize = 4096;

/// Replay a trace from any line source.  Blank lines are skipped.
pub fn check_lines<I, S>(lines: I, variant: Option<Variant>, same_vm: bool) -> TraceReport
where
    I: IntoIterator<Item = io::Result<S>>,
    S: AsRef<str> + Send + Sync,
{
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    let mut report = TraceReport::default();
    let mut replayer = Replayer::new(variant).with_same_vm(same_vm);
    let mut lines = lines.into_iter().enumerate();
    let mut batch: Vec<(usize, S)> = Vec::with_capacity(BATCH);
    loop {
        batch.clear();
        let mut read_error = None;
        for (idx, line) in lines.by_ref() {
            match line {
                Ok(l) => batch.push((idx + 1, l)),
                Err(e) => {
                    read_error = Some(SnapshotError {
                        line: Some(idx + 1),
                        key: String::new(),
                        message: format!("cannot read: {e}"),
                    });
                    break;
                }
            }
            if batch.len() == BATCH {
                break;
            }
        }
        if batch.is_empty() && read_error.is_none() {
            break;
        }
        for (n, parsed) in parse_batch(&batch, variant, workers) {
            let snap = match parsed {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    report.error = Some(e);
                    return report;
                }
                None => continue, // blank line
            };
            let stop = snap.stop.clone();
            report.snapshots += 1;
            for violation in replayer.push(snap) {
                report.violations.push(TraceViolation {
                    line: n,
                    stop: stop.clone(),
                    violation,
                });
            }
        }
        if read_error.is_some() {
            report.error = read_error;
            return report;
        }
    }
    report
}

type Parsed = Option<Result<Snapshot, SnapshotError>>;

/// Parse a batch of (line number, text), in order, on up to `workers` threads.
fn parse_batch<S: AsRef<str> + Sync>(
    batch: &[(usize, S)],
    variant: Option<Variant>,
    workers: usize,
) -> Vec<(usize, Parsed)> {
    let parse = |chunk: &[(usize, S)]| -> Vec<(usize, Parsed)> {
        chunk
            .iter()
            .map(|(n, line)| {
                let text = line.as_ref().trim();
                (
                    *n,
                    if text.is_empty() {
                        None
                    } else {
                        Some(parse_snapshot(text, Some(*n), variant))
                    },
                )
            })
            .collect()
    };
    if workers <= 1 || batch.len() < 256 {
        return parse(batch);
    }
    let size = batch.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let mut chunks = batch.chunks(size);
        let first = chunks.next().unwrap_or(&[]);
        let handles: Vec<_> = chunks.map(|c| scope.spawn(move || parse(c))).collect();
        let mut out = parse(first);
        for h in handles {
            // A panic in a worker would be a bug in the parser; report it as
            // an unusable line rather than unwinding through the caller.
            match h.join() {
                Ok(part) => out.extend(part),
                Err(_) => {
                    let n = out.last().map_or(0, |(n, _)| n + 1);
                    out.push((
                        n,
                        Some(Err(SnapshotError {
                            line: Some(n),
                            key: String::new(),
                            message: "internal error while parsing".into(),
                        })),
                    ));
                    break;
                }
            }
        }
        out
    })
}

/// Replay a trace held in a string.
pub fn check_text(text: &str, variant: Option<Variant>, same_vm: bool) -> TraceReport {
    check_lines(text.lines().map(Ok::<_, io::Error>), variant, same_vm)
}

/// Replay a trace file.
pub fn check_file(path: &Path, variant: Option<Variant>, same_vm: bool) -> io::Result<TraceReport> {
    let file = std::fs::File::open(path)?;
    Ok(check_lines(
        io::BufReader::with_capacity(1 << 16, file).lines(),
        variant,
        same_vm,
    ))
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
        let r = check_text(&text, None, false);
        assert_eq!((r.snapshots, r.violations.len(), r.exit_code()), (2, 0, 0));
    }

    #[test]
    fn violations_carry_line_and_stop() {
        let bad = line(SNAP).replace(r#""ptid":1"#, r#""ptid":3"#);
        let r = check_text(&format!("{}\n{}\n", line(SNAP), bad), None, false);
        assert_eq!(r.exit_code(), 1);
        assert!(r
            .violations
            .iter()
            .all(|v| v.line == 2 && v.stop.as_deref() == Some("s")));
        assert_eq!(r.violations[0].violation.invariant, 3);
    }

    #[test]
    fn unusable_line_stops_with_its_number_and_keeps_what_came_before() {
        let bad = line(SNAP).replacen(r#""cpu":1,"#, "", 1);
        let r = check_text(&format!("{}\n{}\n{}\n", line(SNAP), bad, line(SNAP)), None, true);
        assert_eq!(r.exit_code(), 2);
        assert_eq!(r.snapshots, 1);
        let e = r.error.unwrap();
        assert_eq!((e.line, e.key.as_str()), (Some(2), "threads[1].cpu"));
    }

    #[test]
    fn large_traces_parse_in_parallel_and_keep_line_order() {
        let good = line(SNAP);
        let bad_ptid = good.replace(r#""ptid":1"#, r#""ptid":3"#);
        let broken = good.replacen(r#""cpu":1,"#, "", 1);
        let mut lines: Vec<String> = (1..=5000).map(|_| good.clone()).collect();
        lines[499] = bad_ptid; // line 500
        lines[1999] = String::new(); // blank line 2000
        lines[4199] = broken; // line 4200, in the second batch
        let r = check_text(&lines.join("\n"), None, true);
        assert_eq!(r.snapshots, 4198);
        assert_eq!(r.error.as_ref().and_then(|e| e.line), Some(4200));
        assert_eq!(r.violations.iter().map(|v| v.line).collect::<Vec<_>>(), vec![500]);
    }

    #[test]
    fn replayer_variant_override() {
        let mut rp = Replayer::new(Some(Variant::Seed));
        assert!(rp.push_text(&line(SNAP), Some(1)).unwrap().is_empty());
        assert!(rp.push_text("{}", Some(2)).is_err());
        rp.reset();
    }
}
