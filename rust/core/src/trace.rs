//! Replaying a trace: one snapshot per line (JSONL), each checked on its own
//! and, where provable, against the line before it.  Lines are streamed
//! (stdin like a file), each at most `max_line_bytes` long; labels are kept
//! once per line; the report keeps the first violations in full and counts
//! the rest per invariant.

use std::collections::BTreeMap;
use std::io::{self, BufRead};
use std::path::Path;
use std::sync::Arc;

use crate::consts::Variant;
use crate::invariants::{
    check_outcome, check_same_run, check_step, run_timing_not_judged, same_run, Violation,
};
use crate::snapshot::{layout_fits, parse_snapshot, SnapshotError};
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

    /// Check one snapshot: its own invariants, the ordering within a vcore
    /// run when the previous stop is provably in the same run, then
    /// (same_vm) what never changes in one VM.
    pub fn push(&mut self, snap: Snapshot) -> Vec<Violation> {
        self.push_outcome(snap).violations
    }

    /// [`Replayer::push`] with what was judged.
    pub fn push_outcome(&mut self, snap: Snapshot) -> crate::invariants::CheckOutcome {
        let mut outcome = check_outcome(&snap);
        if let Some(prev) = &self.prev {
            outcome.same_run = same_run(prev, &snap).len();
            outcome.violations.extend(check_same_run(prev, &snap));
            if let Some(reason) = run_timing_not_judged(prev, &snap) {
                outcome.not_judged.push((44, reason));
            }
            if self.same_vm {
                outcome.violations.extend(check_step(prev, &snap));
            }
        }
        self.prev = Some(snap);
        outcome
    }

    /// Parse and check one line of text.
    pub fn push_text(&mut self, text: &str, line: Option<usize>) -> Result<Vec<Violation>, SnapshotError> {
        let snap = parse_trace_line(text, line, self.variant)?;
        Ok(self.push(snap))
    }

    /// Forget the previous snapshot (the next one starts a new sequence).
    pub fn reset(&mut self) {
        self.prev = None;
    }
}

/// A violation found at one line of a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceViolation {
    pub line: usize,
    /// The stop label, shared by every violation of the line.
    pub stop: Option<Arc<str>>,
    pub violation: Violation,
}

/// Every violation of one invariant in a trace: how many, and the first.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub invariant: u32,
    pub count: usize,
    pub first: TraceViolation,
}

/// How the trace is read.
#[derive(Clone, Debug)]
pub struct TraceOptions {
    pub variant: Option<Variant>,
    pub same_vm: bool,
    /// A longer line is an error (no allocation from an unbounded line).
    pub max_line_bytes: usize,
    /// Violations kept in full; the rest are only counted in the groups.
    pub keep: usize,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            variant: None,
            same_vm: false,
            max_line_bytes: 64 << 20,
            keep: 1000,
        }
    }
}

/// The result of replaying a trace.  `error` is set when a line could not be
/// used; the lines before it were checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceReport {
    pub snapshots: usize,
    /// The first `keep` violations, in trace order.
    pub violations: Vec<TraceViolation>,
    pub total_violations: usize,
    /// Per invariant, in number order.
    pub groups: Vec<Group>,
    /// Stops where no vcore was found: the vcore invariants were not judged.
    pub not_judged: usize,
    /// The first such line.
    pub first_not_judged: Option<usize>,
    /// Stops pv-watch could not read (see [`UnreadStop`]): nothing was judged there.
    pub unread: usize,
    /// The first such line, with its stop label and pv-watch's error.
    pub first_unread: Option<(usize, UnreadStop)>,
    pub error: Option<SnapshotError>,
}

impl TraceReport {
    /// 0 clean, 1 violations, 2 unusable input, empty trace or a stop not
    /// judged (the CLI's exit code).
    pub fn exit_code(&self) -> i32 {
        if self.error.is_some() {
            2
        } else if self.total_violations > 0 {
            1
        } else if self.snapshots == 0 || self.not_judged > 0 || self.unread > 0 {
            2
        } else {
            0
        }
    }

    /// "clean", "violations", "not judged", "empty" or "unusable input".
    pub fn verdict(&self) -> &'static str {
        if self.error.is_some() {
            "unusable input"
        } else if self.total_violations > 0 {
            "violations"
        } else if self.snapshots == 0 && self.unread == 0 {
            "empty"
        } else if self.not_judged > 0 || self.unread > 0 {
            "not judged"
        } else {
            "clean"
        }
    }
}

/// Builds a [`TraceReport`] from checked lines.
struct Collector {
    report: TraceReport,
    groups: BTreeMap<u32, Group>,
    keep: usize,
}

impl Collector {
    fn add(&mut self, line: usize, stop: Option<Arc<str>>, outcome: crate::invariants::CheckOutcome) {
        self.report.snapshots += 1;
        if !outcome.vcore_found || !outcome.absent_cpus.is_empty() || !outcome.unheld.is_empty() {
            self.report.not_judged += 1;
            self.report.first_not_judged.get_or_insert(line);
        }
        for violation in outcome.violations {
            self.report.total_violations += 1;
            let tv = TraceViolation {
                line,
                stop: stop.clone(),
                violation,
            };
            self.groups
                .entry(tv.violation.invariant)
                .and_modify(|g| g.count += 1)
                .or_insert_with(|| Group {
                    invariant: tv.violation.invariant,
                    count: 1,
                    first: tv.clone(),
                });
            if self.report.violations.len() < self.keep {
                self.report.violations.push(tv);
            }
        }
    }

    fn add_unread(&mut self, line: usize, unread: UnreadStop) {
        self.report.unread += 1;
        self.report.first_unread.get_or_insert((line, unread));
    }

    fn finish(mut self, error: Option<SnapshotError>) -> TraceReport {
        self.report.groups = self.groups.into_values().collect();
        self.report.error = error;
        self.report
    }
}

/// One line read with a cap.
enum Read {
    Line,
    Eof,
    TooLong,
    Stopped,
}

/// Read up to (not including) the next newline into `buf`, at most `cap`
/// bytes.  A read interrupted by a signal asks `interrupted` whether to stop
/// (Ctrl-C on an idle pipe).
fn read_line_capped<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
    interrupted: &mut dyn FnMut() -> bool,
) -> io::Result<Read> {
    buf.clear();
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                if interrupted() {
                    return Ok(Read::Stopped);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(if buf.is_empty() { Read::Eof } else { Read::Line });
        }
        let (take, done) = match memchr(avail) {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        if buf.len() + take > cap {
            return Ok(Read::TooLong);
        }
        buf.extend_from_slice(&avail[..take]);
        r.consume(if done { take + 1 } else { take });
        if done {
            return Ok(Read::Line);
        }
    }
}

fn memchr(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Lines parsed per batch (and at most this many bytes); a batch is parsed
/// on all available cores, then checked in order (the step checks need the
/// previous snapshot).
const BATCH: usize = 4096;
const BATCH_BYTES: usize = 32 << 20;

/// Replay a trace from any byte stream, streaming.  Blank lines are
/// skipped; a UTF-8 byte order mark at the start is skipped.  `interrupted`
/// is asked between batches (Ctrl-C): true stops with what was checked.
pub fn check_reader<R: BufRead>(
    mut reader: R,
    opts: &TraceOptions,
    interrupted: &mut dyn FnMut() -> bool,
) -> (TraceReport, bool) {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    let mut collector = Collector {
        report: TraceReport::default(),
        groups: BTreeMap::new(),
        keep: opts.keep,
    };
    let mut replayer = Replayer::new(opts.variant).with_same_vm(opts.same_vm);
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        let mut batch: Vec<(usize, String)> = Vec::new();
        let mut bytes = 0;
        let mut stop_error = None;
        while batch.len() < BATCH && bytes < BATCH_BYTES {
            line_no += 1;
            match read_line_capped(&mut reader, &mut buf, opts.max_line_bytes, interrupted) {
                Ok(Read::Eof) => break,
                Ok(Read::Stopped) => return (collector.finish(None), true),
                Ok(Read::TooLong) => {
                    stop_error = Some(SnapshotError::new(
                        Some(line_no),
                        "",
                        format!(
                            "line longer than {} bytes (the limit; see --max-line-bytes): not a snapshot trace?",
                            opts.max_line_bytes
                        ),
                    ));
                    break;
                }
                Ok(Read::Line) => match decode(&mut buf, line_no) {
                    Ok(text) => {
                        bytes += text.len();
                        batch.push((line_no, text));
                    }
                    Err(e) => {
                        stop_error = Some(e);
                        break;
                    }
                },
                Err(e) => {
                    stop_error = Some(SnapshotError::new(Some(line_no), "", format!("cannot read: {e}")));
                    break;
                }
            }
        }
        let done = batch.is_empty() || stop_error.is_some();
        for (n, parsed) in parse_batch(&batch, opts.variant, workers) {
            let snap = match parsed {
                Some(Ok(Line::Snapshot(s))) => s,
                Some(Ok(Line::Unread(u))) => {
                    // What happened between the stops on either side is not
                    // known: the next is not compared with the one before.
                    replayer.reset();
                    collector.add_unread(n, u);
                    continue;
                }
                Some(Err(e)) => return (collector.finish(Some(e)), false),
                None => continue, // blank line
            };
            let stop: Option<Arc<str>> = snap.stop.as_deref().map(Arc::from);
            collector.add(n, stop, replayer.push_outcome(snap));
        }
        if done {
            return (collector.finish(stop_error), false);
        }
        if interrupted() {
            return (collector.finish(None), true);
        }
    }
}

/// The line as text: UTF-8, without a trailing CR or a leading BOM.
fn decode(buf: &mut Vec<u8>, line: usize) -> Result<String, SnapshotError> {
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    let bytes = std::mem::take(buf);
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        SnapshotError {
            line: Some(line),
            column: Some(at + 1),
            key: String::new(),
            message: format!(
                "not UTF-8 text (byte {:#04x}): a snapshot trace is JSON text",
                e.as_bytes()[at]
            ),
        }
    })?;
    if line == 1 && text.starts_with('\u{feff}') {
        text.drain(..3);
    }
    Ok(text)
}

/// A stop pv-watch could not read, as it logs one (gdb_plugins/watch.py,
/// `Watcher.log_error`): `{"stop": LABEL, "error": MESSAGE}` and nothing
/// else.  A trace with such a line is not clean: that stop was not judged.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnreadStop {
    /// The breakpoint's label (the kernel function or hook point).
    pub stop: String,
    /// Why the stop could not be read (gdb's or pyvcore's message).
    pub error: String,
}

/// One non-blank line of a trace.
#[derive(Debug)]
enum Line {
    Snapshot(Snapshot),
    Unread(UnreadStop),
}

type Parsed = Option<Result<Line, SnapshotError>>;

/// One line of a trace: parsed, and (with a variant given for the whole
/// trace) refused when its vcores have the other layout ([`layout_fits`]).
fn parse_trace_line(
    text: &str,
    line: Option<usize>,
    variant: Option<Variant>,
) -> Result<Snapshot, SnapshotError> {
    let snap = parse_snapshot(text, line, variant)?;
    if let Some(v) = variant {
        layout_fits(&snap, v, line)?;
    }
    Ok(snap)
}

/// One line of a trace file: a snapshot ([`parse_trace_line`]) or a stop
/// pv-watch could not read ([`UnreadStop`]; tried only when the line is no
/// snapshot, and the snapshot's error stands when it is neither).
fn parse_line(text: &str, line: Option<usize>, variant: Option<Variant>) -> Result<Line, SnapshotError> {
    match parse_trace_line(text, line, variant) {
        Ok(snap) => Ok(Line::Snapshot(snap)),
        Err(e) => serde_json::from_str::<UnreadStop>(text)
            .map(Line::Unread)
            .map_err(|_| e),
    }
}

/// Parse a batch of (line number, text), in order, on up to `workers` threads.
fn parse_batch(batch: &[(usize, String)], variant: Option<Variant>, workers: usize) -> Vec<(usize, Parsed)> {
    let parse = |chunk: &[(usize, String)]| -> Vec<(usize, Parsed)> {
        chunk
            .iter()
            .map(|(n, line)| {
                let text = line.trim();
                (
                    *n,
                    (!text.is_empty()).then(|| parse_line(text, Some(*n), variant)),
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
                        Some(Err(SnapshotError::new(
                            Some(n),
                            "",
                            "internal error while parsing",
                        ))),
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
    let opts = TraceOptions {
        variant,
        same_vm,
        ..TraceOptions::default()
    };
    check_reader(text.as_bytes(), &opts, &mut || false).0
}

/// Replay a trace file.
pub fn check_file(path: &Path, variant: Option<Variant>, same_vm: bool) -> io::Result<TraceReport> {
    let opts = TraceOptions {
        variant,
        same_vm,
        ..TraceOptions::default()
    };
    let file = std::fs::File::open(path)?;
    Ok(check_reader(io::BufReader::with_capacity(1 << 16, file), &opts, &mut || false).0)
}

#[cfg(test)]
mod tests;
