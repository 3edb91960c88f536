//! Reading snapshots: one JSON object per stop (contract 2), one per line in
//! a trace.  A missing key or a wrong type is a [`SnapshotError`] naming the
//! key (as a path, e.g. `threads[1].kvm_hstate.ptid`) and the trace line.

use std::fmt;

use crate::consts::{Variant, MAX_SMT_THREADS};
use crate::view::Snapshot;

/// Why a snapshot could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotError {
    /// 1-based line of the trace, when the snapshot came from one.
    pub line: Option<usize>,
    /// Path of the offending key (`threads[1].kvm_hstate.ptid`), or "" for
    /// the snapshot as a whole.
    pub key: String,
    pub message: String,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "key `{}`: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for SnapshotError {}

impl SnapshotError {
    fn new(line: Option<usize>, key: impl Into<String>, message: impl Into<String>) -> Self {
        SnapshotError {
            line,
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Parse one snapshot.  `variant`, when given, overrides (or supplies) the
/// snapshot's own "variant" key.
pub fn parse_snapshot(
    text: &str,
    line: Option<usize>,
    variant: Option<Variant>,
) -> Result<Snapshot, SnapshotError> {
    // serde would also take a struct from a JSON array (by position): a
    // snapshot is an object, say so plainly.
    let kind = match text.trim_start().as_bytes().first() {
        Some(b'{') => None,
        Some(b'[') => Some("an array"),
        Some(b'"') => Some("a string"),
        Some(b't' | b'f') => Some("a boolean"),
        Some(b'n') => Some("null"),
        Some(b'-' | b'0'..=b'9') => Some("a number"),
        None => Some("empty"),
        Some(_) => None, // not JSON at all: serde says where
    };
    if let Some(kind) = kind {
        return Err(SnapshotError::new(
            line,
            "",
            format!("a snapshot is a JSON object, not {kind}"),
        ));
    }
    // Fast path: plain serde_json.  Only a failed parse is redone with path
    // tracking, to name the key.
    if let Ok(mut snap) = serde_json::from_str::<Snapshot>(text) {
        if let Some(v) = variant {
            snap.variant = v;
        }
        validate(&snap, line)?;
        return Ok(snap);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed: Result<Snapshot, _> = serde_path_to_error::deserialize(&mut de);
    let mut snap = match parsed {
        Ok(s) => {
            de.end()
                .map_err(|e| SnapshotError::new(line, "", clean_message(&e.to_string())))?;
            s
        }
        Err(e) => {
            let path = e.path().to_string();
            let message = clean_message(&e.inner().to_string());
            let key = key_of(&path, &message);
            // A trace made without a "variant" key is still usable when the
            // caller says which variant it is.
            if variant.is_some() && key == "variant" && message.starts_with("missing field") {
                return parse_with_variant(text, line, variant.unwrap_or(Variant::Modern));
            }
            if e.inner().is_syntax() || e.inner().is_eof() {
                return Err(SnapshotError::new(line, "", format!("not valid JSON: {message}")));
            }
            return Err(SnapshotError::new(line, key, message));
        }
    };
    if let Some(v) = variant {
        snap.variant = v;
    }
    validate(&snap, line)?;
    Ok(snap)
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

/// What serde cannot say: the shape the checker relies on.
fn validate(s: &Snapshot, line: Option<usize>) -> Result<(), SnapshotError> {
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
    // More threads than one core's (several cores, or a reader that lists
    // every cpu) are fine: the checks group threads by cpu / threads_per_core.
    Ok(())
}

/// serde_json appends " at line L column C" (of the JSON text, not the
/// trace): the path already says where.
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
mod tests {
    use super::*;

    const GOOD: &str = r#"{"variant":"modern","threads_per_core":2,"stop":"x",
        "threads":[{"cpu":0,"hw_cpu_id":8,"kvm_hstate":{"kvm_vcpu":0,"kvm_vcore":0,"ptid":0,
        "hwthread_req":0,"hwthread_state":0,"napping":0,"in_guest":0}}],"extra":1}"#;

    #[test]
    fn parses_and_ignores_unknown_keys() {
        let s = parse_snapshot(GOOD, Some(1), None).unwrap();
        assert_eq!(s.threads.len(), 1);
        assert_eq!(s.stop.as_deref(), Some("x"));
    }

    #[test]
    fn missing_key_names_the_path_and_line() {
        let text = GOOD.replace("\"ptid\":0,", "");
        let e = parse_snapshot(&text, Some(7), None).unwrap_err();
        assert_eq!(e.key, "threads[0].kvm_hstate.ptid");
        assert_eq!(e.line, Some(7));
        assert!(
            e.to_string()
                .starts_with("line 7: key `threads[0].kvm_hstate.ptid`: missing field"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let text = GOOD.replace("\"hwthread_req\":0", "\"hwthread_req\":\"one\"");
        let e = parse_snapshot(&text, Some(2), None).unwrap_err();
        assert_eq!(e.key, "threads[0].kvm_hstate.hwthread_req");
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let text = GOOD.replace("\"hwthread_req\":0", "\"hwthread_req\":300");
        assert_eq!(
            parse_snapshot(&text, None, None).unwrap_err().key,
            "threads[0].kvm_hstate.hwthread_req"
        );
    }

    #[test]
    fn bad_variant_and_shape() {
        let e = parse_snapshot(&GOOD.replace("\"modern\"", "\"p8\""), None, None).unwrap_err();
        assert_eq!(e.key, "variant");
        let e = parse_snapshot(
            &GOOD.replace("\"threads_per_core\":2", "\"threads_per_core\":0"),
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(e.key, "threads_per_core");
        let e = parse_snapshot("[1,2]", Some(3), None).unwrap_err();
        assert_eq!(e.key, "");
        assert_eq!(e.message, "a snapshot is a JSON object, not an array");
        let e = parse_snapshot("{\"variant\":", Some(3), None).unwrap_err();
        assert!(e.message.starts_with("not valid JSON"), "{}", e.message);
        assert!(parse_snapshot(&format!("{GOOD} x"), None, None).is_err());
    }

    #[test]
    fn variant_override_supplies_a_missing_variant() {
        let text = GOOD.replace("\"variant\":\"modern\",", "");
        assert_eq!(parse_snapshot(&text, None, None).unwrap_err().key, "variant");
        let s = parse_snapshot(&text, None, Some(Variant::Seed)).unwrap();
        assert_eq!(s.variant, Variant::Seed);
        let s = parse_snapshot(GOOD, None, Some(Variant::Prepatch)).unwrap();
        assert_eq!(s.variant, Variant::Prepatch);
    }
}
