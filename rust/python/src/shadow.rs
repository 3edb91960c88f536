//! `replay_events`: a continuous-trace event log (format `pyvcore-events`,
//! see `pyvcore_core::shadow`) replayed through the shadow and its checks.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use pyvcore_core::shadow::log;

/// Replay the event log `text` (header line first) and return the
/// summary as JSON text: stats, violations with their events, edges.
/// ValueError("line N: why") on an unusable line (nothing after it judged).
#[pyfunction]
fn replay_events(py: Python<'_>, text: &str) -> PyResult<String> {
    let out = py.detach(|| log::replay(text.lines()).map(|s| s.summary().to_string()));
    out.map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Whether `first_line` is an event-log header.
#[pyfunction]
fn is_event_log(first_line: &str) -> bool {
    log::is_header(first_line)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(replay_events, m)?)?;
    m.add_function(wrap_pyfunction!(is_event_log, m)?)?;
    Ok(())
}
