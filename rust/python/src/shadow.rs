//! `replay_events`: a continuous-trace event log (format `pyvcore-events`,
//! see `pyvcore_core::shadow`) replayed through the shadow and its checks.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pythonize::pythonize;

use pyvcore_core::shadow::log::{self, LogError, Until};

/// The exception class is named `pyvcore.EventLogError` (`__module__` "pyvcore"), a
/// ValueError, as `SnapshotError` is for a trace of snapshots.
mod exception {
    use pyo3::exceptions::PyValueError;

    pyo3::create_exception!(
        pyvcore,
        EventLogError,
        PyValueError,
        "An event-log line that cannot be used: `.line` the log's line (from 1), `.column` the column (None unless the line is not JSON), `.reason` why; str() is `LINE:COLUMN: reason` (`pyvcore.errors.at(FILE, .line, .column)` is the place in the file)."
    );
}
use exception::EventLogError as PyEventLogError;

fn log_error(py: Python<'_>, e: &LogError) -> PyErr {
    let err = PyEventLogError::new_err(e.to_string());
    let value = err.value(py);
    // As for SnapshotError: setting attributes on an exception instance cannot fail
    // short of memory exhaustion, and then the plain error is still raised.
    let _ = value.setattr("line", e.line);
    let _ = value.setattr("column", e.column);
    let _ = value.setattr("reason", e.message.as_str());
    err
}

/// Replay the event log `text` (header line first) and return the
/// summary as JSON text: stats, violations with their events, edges.
/// EventLogError (line, column, reason) on an unusable line (nothing after it judged).
#[pyfunction]
fn replay_events(py: Python<'_>, text: &str) -> PyResult<String> {
    let out = py.detach(|| log::replay(text.lines()).map(|s| s.summary().to_string()));
    out.map_err(|e| log_error(py, &e))
}

/// Whether `first_line` is an event-log header.
#[pyfunction]
fn is_event_log(first_line: &str) -> bool {
    log::is_header(first_line)
}

/// The shadow at one point of an event log (`replay_events_at`).
#[pyclass(module = "pyvcore._core", name = "EventLogPoint", frozen)]
pub struct PyEventLogPoint {
    /// The last store applied (None: the point is before the first store).
    #[pyo3(get)]
    seq: Option<u64>,
    /// The timebase of that store (0 before the first).
    #[pyo3(get)]
    tb: u64,
    /// False: the log ended before the point (the shadow is at its end).
    #[pyo3(get)]
    reached: bool,
    /// Events (field changes) applied up to the point.
    #[pyo3(get)]
    events: u64,
    /// Violations found up to the point (`violations` keeps the first 200).
    #[pyo3(get)]
    total_violations: u64,
    /// The shadow's state as a snapshot dict (the shape `pv-watch --log` writes).
    #[pyo3(get)]
    snapshot: Py<PyDict>,
    /// The violations found up to the point, each a dict: invariant, message,
    /// fields, seq, tb, cpu, pc, field, and the events that led to it.
    #[pyo3(get)]
    violations: Vec<Py<PyDict>>,
    /// Per thread, (LPIDR, SDR1) as it last read or wrote them (None: never
    /// seen).  The snapshot has them only while the core is in KVM and the
    /// value is fresh (see `CoreState::snapshot`); these are the values the
    /// log holds everywhere, for display.
    #[pyo3(get)]
    registers: Vec<(Option<u64>, Option<u64>)>,
}

/// Replay the event log `text` up to a point: after the store `seq` (every
/// store up to and including it), or after the store that made the
/// `violation`th violation (from 1); neither: the whole log.
/// EventLogError (line, column, reason) on an unusable line, ValueError when both or
/// `violation=0` are given.  A point past the log's end is `reached=False`.
#[pyfunction]
#[pyo3(signature = (text, *, seq=None, violation=None))]
fn replay_events_at(
    py: Python<'_>,
    text: &str,
    seq: Option<u64>,
    violation: Option<u64>,
) -> PyResult<PyEventLogPoint> {
    let until = match (seq, violation) {
        (Some(_), Some(_)) => return Err(PyValueError::new_err("give seq or violation, not both")),
        (_, Some(0)) => return Err(PyValueError::new_err("violations are counted from 1")),
        (Some(s), None) => Until::Seq(s),
        (None, Some(k)) => Until::Violation(k),
        (None, None) => Until::End,
    };
    let stopped = py
        .detach(|| log::replay_until(text.lines(), until))
        .map_err(|e| log_error(py, &e))?;
    let shadow = &stopped.shadow;
    let snapshot = pythonize(py, &shadow.state().snapshot())?
        .cast_into::<PyDict>()?
        .unbind();
    let violations = shadow
        .violations()
        .iter()
        .map(|v| Ok(pythonize(py, v)?.cast_into::<PyDict>()?.unbind()))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(PyEventLogPoint {
        seq: stopped.seq,
        tb: stopped.tb,
        reached: stopped.reached,
        events: shadow.stats.events,
        total_violations: shadow.stats.violations,
        snapshot,
        violations,
        registers: shadow.state().regs.iter().map(|r| (r.lpidr, r.sdr1)).collect(),
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("EventLogError", m.py().get_type::<PyEventLogError>())?;
    m.add_class::<PyEventLogPoint>()?;
    m.add_function(wrap_pyfunction!(replay_events_at, m)?)?;
    m.add_function(wrap_pyfunction!(replay_events, m)?)?;
    m.add_function(wrap_pyfunction!(is_event_log, m)?)?;
    Ok(())
}
