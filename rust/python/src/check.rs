//! Python face of the checker (`pyvcore_core::invariants`, `pyvcore_core::snapshot`,
//! `pyvcore_core::trace`): `CoreChecker`, `check_trace_file`, `check_trace_text`,
//! `invariant_descriptions`, and the `SnapshotError` exception.  Snapshots
//! cross as JSON text (parsed by serde in Rust); results cross as plain
//! Python objects that `pyvcore.checker` wraps.

use std::path::PathBuf;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::Value;

use pyvcore_core::consts::Variant;
use pyvcore_core::invariants::{predict, Violation, INVARIANTS};
use pyvcore_core::snapshot::{parse_snapshot, SnapshotError};
use pyvcore_core::trace::{check_file, check_text, Replayer, TraceReport};

pyo3::create_exception!(
    _core,
    PySnapshotError,
    PyValueError,
    "A snapshot (or trace line) that cannot be used: `.key` is the path of the offending key, `.line` the trace line."
);

fn snapshot_error(py: Python<'_>, e: &SnapshotError) -> PyErr {
    let err = PySnapshotError::new_err(e.to_string());
    let value = err.value(py);
    // Exception instances carry a __dict__; setting attributes cannot fail
    // short of memory exhaustion, and then the plain error is still raised.
    let _ = value.setattr("key", e.key.as_str());
    let _ = value.setattr("line", e.line);
    let _ = value.setattr("reason", e.message.as_str());
    err
}

fn parse_variant(variant: Option<&str>) -> PyResult<Option<Variant>> {
    variant
        .map(|v| {
            v.parse::<Variant>()
                .map_err(|e| PyValueError::new_err(e.to_string()))
        })
        .transpose()
}

fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(a) => {
            let list = PyList::empty(py);
            for item in a {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(o) => {
            let d = PyDict::new(py);
            for (k, item) in o {
                d.set_item(k, json_to_py(py, item)?)?;
            }
            d.into_any()
        }
    })
}

/// (invariant, message, fields) — `pyvcore.checker.Violation` is built from it.
fn violation_tuple<'py>(py: Python<'py>, v: &Violation) -> PyResult<Bound<'py, PyAny>> {
    let fields = PyDict::new(py);
    for (k, val) in &v.fields {
        fields.set_item(k, json_to_py(py, val)?)?;
    }
    Ok((v.invariant, v.message.as_str(), fields)
        .into_pyobject(py)?
        .into_any())
}

fn report_dict<'py>(py: Python<'py>, r: &TraceReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("snapshots", r.snapshots)?;
    let list = PyList::empty(py);
    for tv in &r.violations {
        let item = PyDict::new(py);
        item.set_item("line", tv.line)?;
        item.set_item("stop", tv.stop.as_deref())?;
        item.set_item("violation", violation_tuple(py, &tv.violation)?)?;
        list.append(item)?;
    }
    d.set_item("violations", list)?;
    match &r.error {
        Some(e) => {
            let err = PyDict::new(py);
            err.set_item("line", e.line)?;
            err.set_item("key", e.key.as_str())?;
            err.set_item("message", e.message.as_str())?;
            err.set_item("text", e.to_string())?;
            d.set_item("error", err)?;
        }
        None => d.set_item("error", py.None())?,
    }
    Ok(d)
}

/// The stateful checker: keeps the previous snapshot for the transition
/// invariants.  `pyvcore.checker.Checker` wraps it.
#[pyclass(module = "pyvcore._core", name = "CoreChecker")]
pub struct PyCoreChecker {
    replayer: Replayer,
}

#[pymethods]
impl PyCoreChecker {
    #[new]
    #[pyo3(signature = (variant=None, same_vm=false))]
    fn new(variant: Option<&str>, same_vm: bool) -> PyResult<Self> {
        Ok(PyCoreChecker {
            replayer: Replayer::new(parse_variant(variant)?).with_same_vm(same_vm),
        })
    }

    /// Check one snapshot (JSON text); returns [(invariant, message, fields)].
    #[pyo3(signature = (text, line=None))]
    fn check_json<'py>(
        &mut self,
        py: Python<'py>,
        text: &str,
        line: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let found = self
            .replayer
            .push_text(text, line)
            .map_err(|e| snapshot_error(py, &e))?;
        let list = PyList::empty(py);
        for v in &found {
            list.append(violation_tuple(py, v)?)?;
        }
        Ok(list)
    }

    /// Per thread: what the model expects the PACA to hold.
    fn predict_json<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyList>> {
        let snap = parse_snapshot(text, None, self.replayer.variant).map_err(|e| snapshot_error(py, &e))?;
        let list = PyList::empty(py);
        for p in predict(&snap) {
            let d = PyDict::new(py);
            d.set_item("thread", p.thread)?;
            d.set_item("cpu", p.cpu)?;
            d.set_item("ptid", p.ptid)?;
            d.set_item("kvm_vcpu", p.kvm_vcpu)?;
            d.set_item("kvm_vcore", p.kvm_vcore)?;
            d.set_item("vcpu_id", p.vcpu_id)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Forget the previous snapshot.
    fn reset(&mut self) {
        self.replayer.reset();
    }

    #[getter]
    fn variant(&self) -> Option<&'static str> {
        self.replayer.variant.map(|v| v.name())
    }

    #[getter]
    fn same_vm(&self) -> bool {
        self.replayer.same_vm
    }
}

/// Replay a JSONL trace file; returns {"snapshots", "violations", "error"}.
#[pyfunction]
#[pyo3(signature = (path, variant=None, same_vm=false))]
fn check_trace_file<'py>(
    py: Python<'py>,
    path: PathBuf,
    variant: Option<&str>,
    same_vm: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let variant = parse_variant(variant)?;
    let report = py
        .detach(|| check_file(&path, variant, same_vm))
        .map_err(|e| PyOSError::new_err(format!("{}: {e}", path.display())))?;
    report_dict(py, &report)
}

/// Replay a JSONL trace held in a string.
#[pyfunction]
#[pyo3(signature = (text, variant=None, same_vm=false))]
fn check_trace_text<'py>(
    py: Python<'py>,
    text: &str,
    variant: Option<&str>,
    same_vm: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let variant = parse_variant(variant)?;
    let report = check_text(text, variant, same_vm);
    report_dict(py, &report)
}

/// {number: one-line statement} of every invariant the checker evaluates.
#[pyfunction]
fn invariant_descriptions(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    for (n, text) in INVARIANTS {
        d.set_item(n, text)?;
    }
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SnapshotError", m.py().get_type::<PySnapshotError>())?;
    m.add_class::<PyCoreChecker>()?;
    m.add_function(wrap_pyfunction!(check_trace_file, m)?)?;
    m.add_function(wrap_pyfunction!(check_trace_text, m)?)?;
    m.add_function(wrap_pyfunction!(invariant_descriptions, m)?)?;
    Ok(())
}
