//! Snapshots across the boundary: a dict (read by pythonize) or JSON text,
//! validated once here, and the `SnapshotError` exception for one that cannot
//! be used.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use pythonize::Depythonizer;

use pyvcore_core::consts::Variant;
use pyvcore_core::snapshot::{parse_snapshot, snapshot_from, SnapshotError};
use pyvcore_core::view::Snapshot;

/// The exception class is named `pyvcore.SnapshotError` (`__module__` "pyvcore"), the name
/// users import it by, so tracebacks and reprs read `pyvcore.SnapshotError`.
mod exception {
    use pyo3::exceptions::PyValueError;

    pyo3::create_exception!(
        pyvcore,
        SnapshotError,
        PyValueError,
        "A snapshot (or trace line) that cannot be used: `.key` is the path of the offending key, `.line` the trace line, `.column` the column, `.reason` the bare reason, `.detail` the key and reason without the place (`pyvcore.errors.at(FILE, .line, .column)` is the place)."
    );
}
use exception::SnapshotError as PySnapshotError;

fn snapshot_error(py: Python<'_>, e: &SnapshotError) -> PyErr {
    let err = PySnapshotError::new_err(e.to_string());
    let value = err.value(py);
    // Exception instances carry a __dict__; setting attributes cannot fail
    // short of memory exhaustion, and then the plain error is still raised.
    let _ = value.setattr("key", e.key.as_str());
    let _ = value.setattr("line", e.line);
    let _ = value.setattr("column", e.column);
    let _ = value.setattr("reason", e.message.as_str());
    let _ = value.setattr("detail", e.detail());
    err
}

pub fn parse_variant(variant: Option<&str>) -> PyResult<Option<Variant>> {
    variant
        .map(|v| {
            v.parse::<Variant>()
                .map_err(|e| PyValueError::new_err(e.to_string()))
        })
        .transpose()
}

/// A snapshot from a dict (or any mapping pythonize reads) or JSON text.
pub fn snapshot_arg(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    variant: Option<Variant>,
    line: Option<usize>,
) -> PyResult<Snapshot> {
    let parsed = if let Ok(s) = obj.cast::<PyString>() {
        parse_snapshot(&s.to_cow()?, line, variant)
    } else if let Ok(b) = obj.cast::<PyBytes>() {
        let text = std::str::from_utf8(b.as_bytes())
            .map_err(|e| snapshot_error(py, &SnapshotError::new(None, "", format!("not UTF-8 text: {e}"))))?;
        parse_snapshot(text, line, variant)
    } else if obj.cast::<PyDict>().is_ok() || obj.hasattr("keys")? {
        // A dict without "variant" takes the caller's.
        let owned;
        let obj = match (variant, obj.cast::<PyDict>()) {
            (Some(v), Ok(d)) if !d.contains("variant")? => {
                let copy = d.copy()?;
                copy.set_item("variant", v.name())?;
                owned = copy.into_any();
                &owned
            }
            _ => obj,
        };
        // Fast path without key tracking; a failure is redone with it, to
        // name the key.
        use serde::Deserialize;
        match Snapshot::deserialize(&mut Depythonizer::from_object(obj)) {
            Ok(mut snap) => {
                if let Some(v) = variant {
                    snap.variant = v;
                }
                pyvcore_core::snapshot::validate(&snap, line).map(|()| snap)
            }
            Err(_) => snapshot_from(&mut Depythonizer::from_object(obj), variant).map_err(|mut e| {
                e.line = line;
                e
            }),
        }
    } else {
        return Err(PyTypeError::new_err(format!(
            "a snapshot is a dict or JSON text, not {}",
            obj.get_type().name()?
        )));
    };
    parsed.map_err(|e| snapshot_error(py, &e))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SnapshotError", m.py().get_type::<PySnapshotError>())
}
