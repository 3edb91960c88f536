//! Any bytes as a snapshot trace: each line parsed and checked, the whole
//! replayed with a small line cap; every path returns a report or a typed
//! error, never a panic, an overflow or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pyvcore_core::invariants::{check_outcome, predict};
use pyvcore_core::snapshot::parse_snapshot;
use pyvcore_core::trace::{check_reader, TraceOptions};

fuzz_target!(|data: &[u8]| {
    let opts = TraceOptions {
        max_line_bytes: 1 << 16,
        keep: 8,
        ..TraceOptions::default()
    };
    let (report, _) = check_reader(data, &opts, &mut || false);
    let _ = report.exit_code();
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines().take(4) {
            if let Ok(snap) = parse_snapshot(line, Some(1), None) {
                let _ = check_outcome(&snap);
                let _ = predict(&snap);
                let _ = snap.to_hex_json();
            }
        }
    }
});
