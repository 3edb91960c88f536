//! Writing and reading the event log (format in the [`super`] module doc).

use std::fmt;

use serde_json::{json, Value};

use crate::consts::Variant;

use super::field::{FieldRef, HField, Reg, VField};
use super::{Behind, Event, Shadow};

fn hex(v: u64) -> Value {
    Value::String(format!("{v:#x}"))
}

fn value_json(field: FieldRef, v: u64) -> Value {
    // The timebase offset is a u64 tick count modulo 2^64 (a guest behind
    // the host has a "negative" one): hex, as the snapshots write it.
    if field.is_address()
        || matches!(
            field,
            FieldRef::Vcore(_, VField::TbOffset | VField::TbOffsetApplied)
        )
    {
        hex(v)
    } else {
        // Signed fields come sign-extended: show -1, not 0xffff...
        json!(v as i64)
    }
}

/// One event as a JSON object (one log line).
pub fn event_json(e: &Event) -> Value {
    json!({
        "seq": e.seq,
        "tb": e.tb,
        "cpu": e.cpu,
        "pc": hex(e.pc),
        "field": e.field.to_string(),
        "old": e.old.map(|o| value_json(e.field, o)),
        "new": value_json(e.field, e.new),
    })
}

/// A value as an edge label: pointers as NULL/ptr, LPIDR by role, the
/// rest as numbers (maps in hex).
pub fn edge_value(field: FieldRef, v: u64) -> String {
    match field {
        FieldRef::Reg(_, Reg::Lpidr | Reg::MtLpidr) => match v {
            0 => "0 (host)".into(),
            super::checks::LPID_RSVD => "LPID_RSVD".into(),
            _ => "guest".into(),
        },
        FieldRef::Reg(_, Reg::Sdr1 | Reg::MtSdr1) => "value".into(),
        FieldRef::Vcore(_, VField::EntryExitMap | VField::EntryExitCount | VField::NappingThreads) => {
            format!("{v:#x}")
        }
        FieldRef::Vcore(_, VField::TbOffset | VField::TbOffsetApplied) => {
            if v == 0 { "0" } else { "offset" }.into()
        }
        FieldRef::Hstate(_, HField::KvmVcpu | HField::KvmVcore)
        | FieldRef::Vcore(_, VField::Runner | VField::Kvm) => if v == 0 { "NULL" } else { "ptr" }.into(),
        f if f.is_address() => if v == 0 { "NULL" } else { "ptr" }.into(),
        _ => format!("{}", v as i64),
    }
}

/// An unusable log line: line number (1-based), the column where known
/// (a line that is not JSON), and why.  Displayed `LINE:COLUMN: why`; a
/// caller that knows the file writes `FILE:` before it
/// ([`LogError::located`], [`crate::location`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogError {
    pub line: usize,
    pub column: Option<usize>,
    pub message: String,
}

impl LogError {
    /// `FILE:LINE:COLUMN: why`, as every reader names a place in a file.
    pub fn located(&self, file: &str) -> String {
        crate::location::located(file, Some(self.line), self.column, &self.message)
    }
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.located(""))
    }
}

impl std::error::Error for LogError {}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_i64().map(|i| i as u64)),
        Value::String(s) => {
            let (neg, t) = match s.strip_prefix('-') {
                Some(t) => (true, t),
                None => (false, s.as_str()),
            };
            let x = match t.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok()?,
                None => t.parse().ok()?,
            };
            Some(if neg { x.wrapping_neg() } else { x })
        }
        _ => None,
    }
}

/// Whether `first_line` is an event-log header.
pub fn is_header(first_line: &str) -> bool {
    serde_json::from_str::<Value>(first_line)
        .ok()
        .is_some_and(|v| v.get("format").and_then(Value::as_str) == Some("pyvcore-events"))
}

fn parse_event(v: &Value) -> Result<Event, String> {
    let get = |k: &str| v.get(k).ok_or_else(|| format!("missing key `{k}`"));
    let num = |k: &str| get(k).and_then(|x| int(x).ok_or_else(|| format!("key `{k}`: not an integer: {x}")));
    let name = get("field")?.as_str().ok_or("key `field`: not a string")?;
    let field = FieldRef::parse(name).ok_or_else(|| format!("key `field`: unknown field {name:?}"))?;
    let old = match get("old")? {
        Value::Null => None,
        x => Some(int(x).ok_or_else(|| format!("key `old`: not an integer: {x}"))?),
    };
    Ok(Event {
        seq: num("seq")?,
        tb: num("tb")?,
        cpu: num("cpu")? as usize,
        pc: num("pc")?,
        field,
        old,
        new: num("new")?,
    })
}

/// A fresh shadow for the log whose header line is `v` (format, version,
/// variant, threads_per_core 1..8, tb_freq in Hz).
fn shadow_from_header(v: &Value) -> Result<Shadow, String> {
    if v.get("format").and_then(Value::as_str) != Some("pyvcore-events") {
        return Err("not a pyvcore-events header".into());
    }
    if v.get("version").and_then(Value::as_u64) != Some(1) {
        return Err(format!(
            "unsupported version {}",
            v.get("version").unwrap_or(&Value::Null)
        ));
    }
    let variant: Variant = v
        .get("variant")
        .and_then(Value::as_str)
        .unwrap_or("modern")
        .parse()
        .map_err(|e| format!("key `variant`: {e}"))?;
    let threads = v.get("threads_per_core").and_then(Value::as_u64).unwrap_or(4);
    if !(1..=8).contains(&threads) {
        return Err(format!("key `threads_per_core`: {threads} is not 1..8"));
    }
    let freq = v
        .get("tb_freq")
        .and_then(Value::as_u64)
        .unwrap_or(super::TB_FREQ_POWER8);
    Ok(Shadow::replay(variant, threads as usize, freq.max(1)))
}

/// The fields of a `{"behind": [FIELD, ...]}` line.
fn behind_fields(b: &Value) -> Result<Vec<FieldRef>, String> {
    let names = b.as_array().ok_or("key `behind`: not a list")?;
    names
        .iter()
        .map(|n| {
            n.as_str()
                .and_then(FieldRef::parse)
                .ok_or_else(|| format!("key `behind`: unknown field {n}"))
        })
        .collect()
}

/// Where [`replay_until`] stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// The whole log (its `end` line's liveness checks included).
    End,
    /// After every store up to and including this `seq`.
    Seq(u64),
    /// After the store (or the `end` line) that made the `n`th violation, from 1.
    Violation(u64),
}

/// A replay stopped by [`replay_until`]: the shadow as it stood then, the
/// last store applied (`seq`, `tb`; None before the first), and whether the
/// stop was `reached` (false: the log ended first).
pub struct Stopped {
    pub shadow: Shadow,
    pub seq: Option<u64>,
    pub tb: u64,
    pub reached: bool,
}

/// The replay's state between two lines: the current store's events and the
/// fields the live run found behind memory at it.
struct Replay {
    shadow: Shadow,
    batch: Vec<Event>,
    behind: Vec<FieldRef>,
    seq: Option<u64>,
    tb: u64,
}

impl Replay {
    /// Apply the pending store (if any).
    fn flush(&mut self) {
        if let Some(first) = self.batch.first() {
            self.seq = Some(first.seq);
            self.tb = first.tb;
            self.shadow.apply_with(&self.batch, Behind::Known(&self.behind));
        }
        self.batch.clear();
        self.behind.clear();
    }

    fn enough_violations(&self, until: Until) -> bool {
        matches!(until, Until::Violation(n) if self.shadow.stats.violations >= n)
    }

    fn stop(self, reached: bool) -> Stopped {
        Stopped {
            shadow: self.shadow,
            seq: self.seq,
            tb: self.tb,
            reached,
        }
    }
}

/// What a line that is not JSON is, in the words every pyvcore reader uses
/// (`pyvcore.jsonl.not_json`): (column, `not JSON: cut short (the line ends
/// inside a value)`) when the line ends early (a truncated write), the
/// column being the line's end, else (column, `not JSON: REASON`).
pub fn not_json(line: &str, e: &serde_json::Error) -> (usize, String) {
    if e.is_eof() {
        let end = line.chars().count();
        return (end, "not JSON: cut short (the line ends inside a value)".into());
    }
    let said = e.to_string();
    let reason = said
        .rsplit_once(" at line ")
        .map_or(said.as_str(), |(head, _)| head);
    (e.column(), format!("not JSON: {reason}"))
}

/// Replay a whole log through a fresh shadow.  The header must come first;
/// an unusable line stops the replay with its line number (nothing after
/// it is judged).
pub fn replay<'a, I: IntoIterator<Item = &'a str>>(lines: I) -> Result<Shadow, LogError> {
    replay_until(lines, Until::End).map(|s| s.shadow)
}

/// Replay a log until `until`: the shadow's state at a store (`Until::Seq`)
/// or at a violation (`Until::Violation`), as the live run had it then.
/// Errors as [`replay`]; a stop the log never reaches is `reached: false`
/// with the shadow at the log's end.
pub fn replay_until<'a, I: IntoIterator<Item = &'a str>>(
    lines: I,
    until: Until,
) -> Result<Stopped, LogError> {
    let mut r: Option<Replay> = None;
    let mut n = 0;
    for (i, line) in lines.into_iter().enumerate() {
        n = i + 1;
        // Columns count from the line as the file has it (leading blanks too).
        let lead = line.len() - line.trim_start().len();
        let lead = line[..lead].chars().count();
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |message: String| LogError {
            line: i + 1,
            column: None,
            message,
        };
        let v: Value = serde_json::from_str(line).map_err(|e| {
            let (column, message) = not_json(line, &e);
            LogError {
                line: i + 1,
                column: Some(lead + column),
                message,
            }
        })?;
        let Some(rp) = r.as_mut() else {
            let shadow = shadow_from_header(&v).map_err(err)?;
            r = Some(Replay {
                shadow,
                batch: Vec::new(),
                behind: Vec::new(),
                seq: None,
                tb: 0,
            });
            continue;
        };
        if v.get("end").is_some() {
            rp.flush();
            if matches!(until, Until::Seq(s) if rp.seq.is_some_and(|at| at >= s)) {
                break; // the liveness checks at the end come after that store
            }
            rp.shadow.finish(v.get("tb").and_then(int).unwrap_or(0));
            if rp.enough_violations(until) {
                break;
            }
            continue;
        }
        if let Some(b) = v.get("behind") {
            rp.behind.extend(behind_fields(b).map_err(err)?);
            continue;
        }
        let ev = parse_event(&v).map_err(err)?;
        if let FieldRef::Reg(t, _) | FieldRef::Hstate(t, _) | FieldRef::Paca(t) = ev.field {
            if t >= rp.shadow.state().threads_per_core {
                return Err(err(format!("thread {t} outside the core")));
            }
        }
        if rp.batch.first().is_some_and(|b| b.seq != ev.seq) {
            rp.flush();
            if rp.enough_violations(until) {
                break;
            }
        }
        if matches!(until, Until::Seq(s) if ev.seq > s) {
            return Ok(r.take().expect("the header came").stop(true));
        }
        rp.batch.push(ev);
    }
    let Some(mut rp) = r else {
        return Err(LogError {
            line: n.max(1),
            column: None,
            message: "empty log: no header".into(),
        });
    };
    rp.flush();
    let reached = match until {
        Until::End => true,
        Until::Seq(s) => rp.seq == Some(s),
        Until::Violation(_) => rp.enough_violations(until),
    };
    Ok(rp.stop(reached))
}
