//! Reading snapshots (the format is documented in [`crate::view`]): one JSON
//! object per stop, one per line in a trace.  A snapshot is validated once,
//! here; an unusable one is a [`SnapshotError`] naming the trace line, the
//! column (`FILE:LINE:COLUMN: ...` once the caller adds the file), the key (as a path, e.g. `threads[1].kvm_hstate.ptid`) and what
//! was expected.

use serde::Deserializer;

use crate::consts::{Variant, MAX_SMT_THREADS};
use crate::view::Snapshot;

/// Why a snapshot could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct SnapshotError {
    /// 1-based line of the trace, when the snapshot came from one.
    pub line: Option<usize>,
    /// 1-based column within the line, for JSON syntax errors.
    pub column: Option<usize>,
    /// Path of the offending key (`threads[1].kvm_hstate.ptid`), or "" for
    /// the snapshot as a whole.
    pub key: String,
    pub message: String,
}

impl SnapshotError {
    pub fn new(line: Option<usize>, key: impl Into<String>, message: impl Into<String>) -> Self {
        SnapshotError {
            line,
            column: None,
            key: key.into(),
            message: message.into(),
        }
    }

    /// The key and what is wrong with it, without the place:
    /// ``key `K`: MESSAGE`` (or the message alone for the snapshot as a whole).
    pub fn detail(&self) -> String {
        if self.key.is_empty() {
            self.message.clone()
        } else {
            format!("key `{}`: {}", self.key, self.message)
        }
    }

    /// The error as every reader names a place in a file:
    /// `FILE:LINE:COLUMN: key `K`: MESSAGE` ([`crate::location`]).
    pub fn located(&self, file: &str) -> String {
        crate::location::located(file, self.line, self.column, &self.detail())
    }

    /// `LINE:COLUMN: detail` (the file is the caller's: [`Self::located`]);
    /// a column without a line (a single snapshot's JSON text) is said as
    /// `column C: detail`.
    fn render(&self) -> String {
        match (self.line, self.column) {
            (None, Some(c)) => format!("column {c}: {}", self.detail()),
            _ => self.located(""),
        }
    }
}

/// What a JSON text that is not an object is.  Only a whole JSON value is one (`null`, `[1,2]`);
/// a text that merely starts like one (`not json`, `[1,`) is not JSON: the parser says where.
fn not_an_object(text: &str) -> Option<&'static str> {
    let kind = match text.trim_start().as_bytes().first() {
        Some(b'{') => None,
        Some(b'[') => Some("an array"),
        Some(b'"') => Some("a string"),
        Some(b't' | b'f') => Some("a boolean"),
        Some(b'n') => Some("null"),
        Some(b'-' | b'0'..=b'9') => Some("a number"),
        None => return Some("empty"),
        Some(_) => None, // not JSON at all: the parser says where
    };
    kind.filter(|_| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
}

/// Parse one snapshot.  `variant`, when given, overrides (or supplies) the
/// snapshot's own "variant" key.  A leading UTF-8 byte order mark is skipped.
pub fn parse_snapshot(
    text: &str,
    line: Option<usize>,
    variant: Option<Variant>,
) -> Result<Snapshot, SnapshotError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(kind) = not_an_object(text) {
        return Err(SnapshotError::new(
            line,
            "",
            format!("a snapshot is a JSON object, not {kind}"),
        ));
    }
    // Fast path: plain serde_json.  Only a failed parse is redone with path
    // tracking, to name the key.
    let mut snap = match serde_json::from_str::<Snapshot>(text) {
        Ok(s) => s,
        Err(_) => slow_parse(text, line, variant)?,
    };
    if let Some(v) = variant {
        snap.variant = v;
    }
    validate(&snap, line)?;
    Ok(snap)
}

/// The failed parse again, with the key path, the column and a hint.
fn slow_parse(text: &str, line: Option<usize>, variant: Option<Variant>) -> Result<Snapshot, SnapshotError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let (path, inner) = match serde_path_to_error::deserialize::<_, Snapshot>(&mut de) {
        Ok(s) => match de.end() {
            Ok(()) => return Ok(s),
            Err(e) => (".".to_string(), e),
        },
        Err(e) => (e.path().to_string(), e.into_inner()),
    };
    let inner = &inner;
    let message = clean_message(&inner.to_string());
    let key = key_of(&path, &message);
    // A trace made without a "variant" key is still usable when the caller
    // says which variant it is.
    if let (Some(v), "variant", true) = (variant, key.as_str(), message.starts_with("missing field")) {
        return parse_with_variant(text, line, v);
    }
    let column = Some(inner.column()).filter(|c| *c > 0);
    // serde_json reports a non-string where an enum (the variant) is
    // expected as a syntax error; the JSON is fine, the type is not.
    let valid_json = inner.is_syntax()
        && !message.contains("number out of range")
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
    let error = if valid_json {
        SnapshotError {
            line,
            column,
            key: key.clone(),
            message: format!("wrong JSON type for this key{}", type_hint_for_key(&key)),
        }
    } else if inner.is_syntax() || inner.is_eof() {
        let near = text.get(inner.column().saturating_sub(1)..).unwrap_or("");
        SnapshotError {
            line,
            column,
            key: String::new(),
            message: format!(
                "not valid JSON: {message}{}",
                syntax_hint(near, &message, inner.is_eof())
            ),
        }
    } else {
        SnapshotError {
            line,
            column,
            key,
            message: format!("{message}{}", type_hint(&message)),
        }
    };
    Err(error)
}

/// A hint for the usual causes of invalid JSON in a trace.
fn syntax_hint(near: &str, message: &str, eof: bool) -> &'static str {
    let near = near.trim_start_matches(['-', '+']);
    if message.contains("number out of range") {
        " (an integer with too many digits for 64 bits)"
    } else if near.starts_with("NaN") || near.starts_with("Infinity") || near.starts_with("inf") {
        " (NaN and Infinity are not JSON numbers: the writer must give an integer or null)"
    } else if near.starts_with('\'') {
        " (JSON strings use double quotes)"
    } else if eof {
        " (the line ends inside the object: a truncated line?)"
    } else {
        ""
    }
}

/// A hint for a valid JSON value of the wrong type or range.
fn type_hint(message: &str) -> &'static str {
    if message.contains("floating point") && message.contains("expected u") {
        " (an integer this large does not fit the field: 2^64 or more, or written as a float)"
    } else if message.contains("number out of range") || message.contains("too large") {
        " (an integer out of range for this field)"
    } else if message.contains("invalid type: sequence") || message.contains("cannot be cast as 'Mapping'") {
        " (an array where an object is expected)"
    } else {
        ""
    }
}

/// What a key expects, for a wrong JSON type.
fn type_hint_for_key(key: &str) -> &'static str {
    if key == "variant" {
        ": expected \"seed\", \"modern\" or \"prepatch\""
    } else {
        ""
    }
}

fn parse_with_variant(text: &str, line: Option<usize>, variant: Variant) -> Result<Snapshot, SnapshotError> {
    let mut value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| SnapshotError::new(line, "", clean_message(&e.to_string())))?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("variant".into(), serde_json::Value::String(variant.name().into()));
    }
    let snap: Snapshot = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = clean_message(&e.inner().to_string());
        SnapshotError::new(line, key_of(&path, &message), message)
    })?;
    validate(&snap, line)?;
    Ok(snap)
}

/// A snapshot from any serde data source (e.g. a Python dict through
/// pythonize): the same checks and errors as [`parse_snapshot`].
pub fn snapshot_from<'de, D>(de: D, variant: Option<Variant>) -> Result<Snapshot, SnapshotError>
where
    D: Deserializer<'de>,
    D::Error: std::fmt::Display,
{
    let mut snap: Snapshot = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = clean_message(&e.inner().to_string());
        let key = key_of(&path, &message);
        let hint = if message.contains("for enum") {
            type_hint_for_key(&key)
        } else {
            type_hint(&message)
        };
        SnapshotError::new(None, key, format!("{message}{hint}"))
    })?;
    if let Some(v) = variant {
        snap.variant = v;
    }
    validate(&snap, None)?;
    Ok(snap)
}

/// What serde cannot say: the shape the checker relies on.
pub fn validate(s: &Snapshot, line: Option<usize>) -> Result<(), SnapshotError> {
    let tpc = s.threads_per_core;
    if tpc == 0 || tpc as usize > MAX_SMT_THREADS {
        return Err(SnapshotError::new(
            line,
            "threads_per_core",
            format!("{tpc} is not 1..{MAX_SMT_THREADS}"),
        ));
    }
    if s.threads.is_empty() {
        return Err(SnapshotError::new(
            line,
            "threads",
            "must list the core's threads (thread 0 first)",
        ));
    }
    if let Some(v) = s.version {
        if !(1..=2).contains(&v) {
            return Err(SnapshotError::new(
                line,
                "version",
                format!("{v} is not a snapshot version this checker reads (1 or 2)"),
            ));
        }
    }
    if s.version.unwrap_or(1) == 1 {
        if let Some(key) = v2_field(s) {
            return Err(SnapshotError::new(
                line,
                key,
                "a version-2 field in a version-1 snapshot (\"version\" 1 or absent): a version-1 stop is judged without it, \
                 so the stop is not what it claims; write \"version\": 2 with it, or leave it out",
            ));
        }
    }
    // More threads than one core's (several cores, or a reader that lists
    // every cpu) are fine: the checks group threads by cpu / threads_per_core;
    // a core with a thread left out is not judged (`absent_cpus`).
    whole(s).map_err(|(key, message)| SnapshotError::new(line, key, message))
}

/// The first field of format version 2 that `s` carries (see
/// [`crate::view`]): the timebase, a thread's `pc`, `msr`, `dpdes`, `hdec`,
/// a vcore's `dpdes`, `seq`, `tb_offset`, `tb_offset_applied`.  No pyvcore
/// writer puts one in a version-1 snapshot: every v1 trace recorded (the
/// lab's `tests/checker_live/`) has none, and every writer of them writes 2.
fn v2_field(s: &Snapshot) -> Option<String> {
    if s.tb.is_some() {
        return Some("tb".into());
    }
    if s.tb_freq.is_some() {
        return Some("tb_freq".into());
    }
    for (i, t) in s.threads.iter().enumerate() {
        for (name, v) in [("pc", t.pc), ("msr", t.msr), ("dpdes", t.dpdes), ("hdec", t.hdec)] {
            if v.is_some() {
                return Some(format!("threads[{i}].{name}"));
            }
        }
    }
    for (i, vc) in s.vcores.iter().enumerate() {
        for (name, v) in [
            ("dpdes", vc.dpdes),
            ("seq", vc.seq),
            ("tb_offset", vc.tb_offset),
            ("tb_offset_applied", vc.tb_offset_applied),
        ] {
            if v.is_some() {
                return Some(format!("vcores[{i}].{name}"));
            }
        }
    }
    None
}

/// Each cpu once: a thread listed twice is a writer's mistake.
fn whole(s: &Snapshot) -> Result<(), (String, String)> {
    let mut cpus = std::collections::BTreeMap::new();
    for (i, t) in s.threads.iter().enumerate() {
        if let Some(first) = cpus.insert(t.cpu, i) {
            return Err((
                format!("threads[{i}].cpu"),
                format!(
                    "cpu {} is listed twice (threads[{first}] and threads[{i}])",
                    t.cpu
                ),
            ));
        }
    }
    Ok(())
}

/// The pointers of `s` to a vcpu or vcore it does not hold, as
/// `key -> what`: a PACA's `kvm_vcpu` / `kvm_vcore`, a vcore's `runner`.
/// What the stop says of that vcpu or vcore (its ptid, state, run) is then
/// unknown, so such a stop is not judged (see `check_outcome`), never clean.
/// (A vcpu of another vcore, `vcpus[].vcore`, is judged: invariant 19.)
pub fn unheld(s: &Snapshot) -> Vec<String> {
    let vcores: std::collections::BTreeSet<u64> = s.vcores.iter().map(|v| v.addr).collect();
    let vcpus: std::collections::BTreeSet<u64> = s.vcpus.iter().map(|v| v.addr).collect();
    let mut out = Vec::new();
    let mut check = |key: String, addr: u64, vcore: bool| {
        let held = if vcore { &vcores } else { &vcpus };
        if addr != 0 && !held.contains(&addr) {
            out.push(format!(
                "{key} -> {} {addr:#x}",
                if vcore { "vcore" } else { "vcpu" }
            ));
        }
    };
    for (i, t) in s.threads.iter().enumerate() {
        check(
            format!("threads[{i}].kvm_hstate.kvm_vcore"),
            t.kvm_hstate.kvm_vcore,
            true,
        );
        check(
            format!("threads[{i}].kvm_hstate.kvm_vcpu"),
            t.kvm_hstate.kvm_vcpu,
            false,
        );
    }
    for (k, v) in s.vcores.iter().enumerate() {
        check(format!("vcores[{k}].runner"), v.runner.unwrap_or(0), false);
    }
    out
}

/// The cpus of the cores `s` lists that it does not hold (each core is
/// `threads_per_core` cpus from `core * threads_per_core`).  A reader leaves
/// out a thread it could not read; what the core's vcore says of that thread
/// (`entry_exit_map`, `napping_threads`, a vcpu's `ptid`) is then unknown,
/// so such a stop is not judged (see `check_outcome`), never clean.
pub fn absent_cpus(s: &Snapshot) -> Vec<u32> {
    let tpc = s.threads_per_core.max(1);
    let cpus: std::collections::BTreeSet<u32> = s.threads.iter().map(|t| t.cpu).collect();
    let cores: std::collections::BTreeSet<u32> = cpus.iter().map(|c| c / tpc).collect();
    cores
        .into_iter()
        .flat_map(|core| core * tpc..(core + 1) * tpc)
        .filter(|c| !cpus.contains(c))
        .collect()
}

/// A variant given for a whole trace must fit the layout of each stop's
/// vcores: the modern kernel's struct kvmppc_vcore has `entry_exit_map` and
/// numbers vcore_state INACTIVE, SLEEPING, PREEMPT, PIGGYBACK, RUNNING,
/// EXITING...; the seed and prepatch ones have `entry_exit_count`
/// (`n_woken`, `nap_count`) and number it INACTIVE, SLEEPING, STARTING,
/// RUNNING, EXITING (arch/powerpc/include/asm/kvm_host.h of each).  A stop
/// of the other layout would have its states read as another variant's
/// (the modern RUNNING as the seed's EXITING), so it is refused.
pub fn layout_fits(s: &Snapshot, v: Variant, line: Option<usize>) -> Result<(), SnapshotError> {
    let map = v.has_entry_exit_map();
    for (k, vc) in s.vcores.iter().enumerate() {
        let (key, other) = match (vc.entry_exit_map.is_some(), vc.entry_exit_count.is_some()) {
            (true, false) if !map => ("entry_exit_map", Variant::Modern),
            (false, true) if map => ("entry_exit_count", Variant::Seed),
            _ => continue,
        };
        let (st, ost) = (v.vcore_states(), other.vcore_states());
        let name = |v: Variant| if v == Variant::Modern { "modern" } else { "seed" };
        return Err(SnapshotError::new(
            line,
            format!("vcores[{k}].{key}"),
            format!(
                "this vcore has the {} layout ({key}, VCORE_RUNNING = {}), but the variant given, {}, reads the {} layout (VCORE_RUNNING = {}): its vcore_state would be misread; check it without a variant (each stop's own) or as {}",
                name(other),
                ost.running,
                v.name(),
                name(v),
                st.running,
                other.name()
            ),
        ));
    }
    Ok(())
}

/// serde_json appends " at line L column C" (of the JSON text, not the
/// trace): the column is reported on its own, the path says where.
fn clean_message(m: &str) -> String {
    match m.rfind(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m.to_string(),
    }
}

/// The key a serde error is about: for "missing field `x`" the path of the
/// containing object plus x; "." (the root) becomes "".
fn key_of(path: &str, message: &str) -> String {
    let base = if path == "." { "" } else { path };
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some(field) = rest.split('`').next() {
            return if base.is_empty() {
                field.to_string()
            } else {
                format!("{base}.{field}")
            };
        }
    }
    base.to_string()
}

#[cfg(test)]
mod tests;
