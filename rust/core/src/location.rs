//! Where in an input file a problem is, said one way by every reader, Rust
//! and Python alike: `FILE:LINE:COLUMN: message`, the form gcc, grep, rustc,
//! mypy and ruff print and editors jump to; the column (or the line) left
//! out when it is not known.  The readers in Rust do not know the file's
//! name: their errors carry the line and column as fields and render
//! `LINE:COLUMN: message`, so that a caller that knows the file writes
//! `FILE:` before it ([`at`]).  The Python side is `pyvcore.errors.at`.

/// `FILE:LINE:COLUMN`, `FILE:LINE` or `FILE`; without a file (`""`),
/// `LINE:COLUMN` or `LINE` (and `""` when nothing is known).
pub fn at(file: &str, line: Option<usize>, column: Option<usize>) -> String {
    let mut out = file.to_string();
    if let Some(l) = line {
        if !out.is_empty() {
            out.push(':');
        }
        out.push_str(&l.to_string());
        if let Some(c) = column {
            out.push_str(&format!(":{c}"));
        }
    }
    out
}

/// `at(file, line, column)` then `: message` (just `message` when no place
/// is known at all).
pub fn located(file: &str, line: Option<usize>, column: Option<usize>, message: &str) -> String {
    let place = at(file, line, column);
    if place.is_empty() {
        message.to_string()
    } else {
        format!("{place}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_place_is_file_line_column() {
        assert_eq!(located("t.jsonl", Some(3), Some(14), "why"), "t.jsonl:3:14: why");
        assert_eq!(located("t.jsonl", Some(3), None, "why"), "t.jsonl:3: why");
        assert_eq!(located("t.jsonl", None, None, "why"), "t.jsonl: why");
        assert_eq!(located("", Some(3), Some(14), "why"), "3:14: why");
        assert_eq!(located("", None, None, "why"), "why");
    }
}
