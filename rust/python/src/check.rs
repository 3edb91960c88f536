//! Python face of the checker: `InvariantInfo` / `invariants()` (the table),
//! `Violation`, `CheckOutcome`, `CoreChecker`, trace replay
//! (`check_trace_file`, `check_trace_stdin`, `check_trace_text` returning a
//! `CoreTraceReport`) and the `SnapshotError` exception.  Typed values cross
//! the boundary: a snapshot is a dict (read by pythonize, validated once
//! here) or JSON text; results are `#[pyclass]` objects.

use std::io::{self, BufReader};
use std::path::PathBuf;

use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use pythonize::{pythonize, Depythonizer};

use pyvcore_core::consts::Variant;
use pyvcore_core::invariants::{self as core_inv, predict, CheckOutcome, InvariantInfo, INVARIANTS};
use pyvcore_core::snapshot::{parse_snapshot, snapshot_from, SnapshotError};
use pyvcore_core::trace::{check_reader, Replayer, TraceOptions, TraceReport};
use pyvcore_core::view::Snapshot;

pyo3::create_exception!(
    _core,
    PySnapshotError,
    PyValueError,
    "A snapshot (or trace line) that cannot be used: `.key` is the path of the offending key, `.line` the trace line, `.column` the column, `.reason` the bare reason."
);

fn snapshot_error(py: Python<'_>, e: &SnapshotError) -> PyErr {
    let err = PySnapshotError::new_err(e.to_string());
    let value = err.value(py);
    // Exception instances carry a __dict__; setting attributes cannot fail
    // short of memory exhaustion, and then the plain error is still raised.
    let _ = value.setattr("key", e.key.as_str());
    let _ = value.setattr("line", e.line);
    let _ = value.setattr("column", e.column);
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

/// One row of the invariant table.
#[pyclass(module = "pyvcore._core", name = "InvariantInfo", frozen)]
pub struct PyInvariantInfo {
    info: &'static InvariantInfo,
}

#[pymethods]
impl PyInvariantInfo {
    #[getter]
    fn number(&self) -> u32 {
        self.info.number
    }
    #[getter]
    fn title(&self) -> &'static str {
        self.info.title
    }
    #[getter]
    fn statement(&self) -> &'static str {
        self.info.statement
    }
    #[getter]
    fn window(&self) -> &'static str {
        self.info.window
    }
    #[getter]
    fn source(&self) -> &'static str {
        self.info.source
    }
    #[getter]
    fn meaning(&self) -> &'static str {
        self.info.meaning
    }
    #[getter]
    fn needs(&self) -> Vec<&'static str> {
        self.info.needs.to_vec()
    }
    /// "snapshot", "step", "history" or "liveness".
    #[getter]
    fn kind(&self) -> &'static str {
        self.info.kind.name()
    }
    fn __repr__(&self) -> String {
        format!("InvariantInfo({}, {:?})", self.info.number, self.info.title)
    }
}

/// Every invariant any pyvcore code can report, by number.
#[pyfunction]
fn invariants() -> Vec<PyInvariantInfo> {
    INVARIANTS.iter().map(|info| PyInvariantInfo { info }).collect()
}

/// One broken invariant.  `invariant` is its number (see `invariants()`),
/// `message` one line, `fields` the JSON path of each field involved ->
/// observed value (64-bit kernel values as hex strings); `line` and `stop`
/// say which snapshot of a trace it came from.
#[pyclass(module = "pyvcore._core", name = "Violation", frozen, eq)]
pub struct PyViolation {
    #[pyo3(get)]
    invariant: u32,
    #[pyo3(get)]
    message: String,
    fields: Py<PyDict>,
    #[pyo3(get)]
    line: Option<usize>,
    #[pyo3(get)]
    stop: Option<String>,
}

impl PartialEq for PyViolation {
    fn eq(&self, other: &Self) -> bool {
        self.invariant == other.invariant
            && self.message == other.message
            && self.line == other.line
            && self.stop == other.stop
            && Python::attach(|py| self.fields.bind(py).eq(other.fields.bind(py)).unwrap_or(false))
    }
}

impl PyViolation {
    pub fn from_core(
        py: Python<'_>,
        v: &core_inv::Violation,
        line: Option<usize>,
        stop: Option<&str>,
    ) -> PyResult<Self> {
        let fields = pythonize(py, &v.fields)?.cast_into::<PyDict>()?.unbind();
        Ok(PyViolation {
            invariant: v.invariant,
            message: v.message.clone(),
            fields,
            line,
            stop: stop.map(str::to_string),
        })
    }
}

#[pymethods]
impl PyViolation {
    #[new]
    #[pyo3(signature = (invariant, message, fields=None, line=None, stop=None))]
    fn new(
        py: Python<'_>,
        invariant: u32,
        message: String,
        fields: Option<Bound<'_, PyDict>>,
        line: Option<usize>,
        stop: Option<String>,
    ) -> PyResult<Self> {
        let fields = match fields {
            Some(d) => d.copy()?.unbind(),
            None => PyDict::new(py).unbind(),
        };
        Ok(PyViolation {
            invariant,
            message,
            fields,
            line,
            stop,
        })
    }

    /// A copy of the fields (JSON path -> value).
    #[getter]
    fn fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.fields.bind(py).copy()
    }

    /// {"invariant", "message", "fields", "line", "stop"}.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("invariant", self.invariant)?;
        d.set_item("message", &self.message)?;
        d.set_item("fields", self.fields.bind(py).copy()?)?;
        d.set_item("line", self.line)?;
        d.set_item("stop", self.stop.as_deref())?;
        Ok(d)
    }

    fn __str__(&self, py: Python<'_>) -> PyResult<String> {
        let mut head = format!("invariant {}", self.invariant);
        let mut where_ = Vec::new();
        if let Some(l) = self.line {
            where_.push(format!("line {l}"));
        }
        if let Some(s) = &self.stop {
            where_.push(format!("stop {}", escape(s)));
        }
        if !where_.is_empty() {
            head.push_str(&format!(" ({})", where_.join(", ")));
        }
        let mut text = format!("{head}: {}", self.message);
        let fields = self.fields.bind(py);
        if !fields.is_empty() {
            let parts: PyResult<Vec<String>> = fields
                .iter()
                .map(|(k, v)| Ok(format!("{}={}", k.str()?, v.str()?)))
                .collect();
            text.push_str(&format!(" [{}]", parts?.join(", ")));
        }
        Ok(text)
    }

    fn __repr__(&self) -> String {
        format!("Violation({}, {:?})", self.invariant, self.message)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.invariant, &self.message, self.line, &self.stop).hash(&mut h);
        h.finish()
    }
}

/// Control characters from the input are shown escaped, never raw.
pub fn escape(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars().flat_map(char::escape_default).collect()
}

/// What checking one snapshot judged (`Checker.check_outcome`).
#[pyclass(module = "pyvcore._core", name = "CheckOutcome", frozen)]
pub struct PyCheckOutcome {
    #[pyo3(get)]
    violations: Vec<Py<PyViolation>>,
    #[pyo3(get)]
    judged: Vec<u32>,
    #[pyo3(get)]
    not_judged: Vec<(u32, &'static str)>,
    #[pyo3(get)]
    vcore_found: bool,
    #[pyo3(get)]
    verdict: &'static str,
    /// Vcores judged against the previous stop as one run (same seq).
    #[pyo3(get)]
    same_run: usize,
}

impl PyCheckOutcome {
    fn from_core(py: Python<'_>, o: CheckOutcome, line: Option<usize>, stop: Option<&str>) -> PyResult<Self> {
        let violations = o
            .violations
            .iter()
            .map(|v| Py::new(py, PyViolation::from_core(py, v, line, stop)?))
            .collect::<PyResult<_>>()?;
        Ok(PyCheckOutcome {
            violations,
            verdict: o.verdict(),
            judged: o.judged,
            not_judged: o.not_judged,
            vcore_found: o.vcore_found,
            same_run: o.same_run,
        })
    }
}

#[pymethods]
impl PyCheckOutcome {
    fn __repr__(&self) -> String {
        format!(
            "CheckOutcome({}, {} violations, judged {:?})",
            self.verdict,
            self.violations.len(),
            self.judged
        )
    }
}

/// The stateful checker: keeps the previous snapshot for the step
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

    /// Check one snapshot (dict or JSON text); returns a `CheckOutcome`.
    #[pyo3(signature = (snapshot, line=None))]
    fn check_outcome(
        &mut self,
        py: Python<'_>,
        snapshot: &Bound<'_, PyAny>,
        line: Option<usize>,
    ) -> PyResult<PyCheckOutcome> {
        let snap = snapshot_arg(py, snapshot, self.replayer.variant, line)?;
        let stop = snap.stop.clone();
        let outcome = self.replayer.push_outcome(snap);
        PyCheckOutcome::from_core(py, outcome, line, stop.as_deref())
    }

    /// Per thread: what the model expects the PACA to hold.
    fn predict<'py>(&self, py: Python<'py>, snapshot: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let snap = snapshot_arg(py, snapshot, self.replayer.variant, None)?;
        Ok(pythonize(py, &predict(&snap))?)
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

/// (line, column, key, reason, text) of an unusable trace line.
type ErrorTuple = (Option<usize>, Option<usize>, String, String, String);

/// The result of replaying a trace (`pyvcore.checker.TraceReport` wraps it).
#[pyclass(module = "pyvcore._core", name = "CoreTraceReport", frozen)]
pub struct PyTraceReport {
    #[pyo3(get)]
    snapshots: usize,
    #[pyo3(get)]
    violations: Vec<Py<PyViolation>>,
    #[pyo3(get)]
    total_violations: usize,
    /// [(invariant, count, first Violation)], by invariant number.
    #[pyo3(get)]
    groups: Vec<(u32, usize, Py<PyViolation>)>,
    #[pyo3(get)]
    not_judged: usize,
    #[pyo3(get)]
    first_not_judged: Option<usize>,
    /// (line, column, key, reason, text) of the unusable line, or None.
    #[pyo3(get)]
    error: Option<ErrorTuple>,
    #[pyo3(get)]
    exit_code: i32,
    #[pyo3(get)]
    verdict: &'static str,
}

impl PyTraceReport {
    fn from_core(py: Python<'_>, r: &TraceReport) -> PyResult<Self> {
        let conv = |tv: &pyvcore_core::trace::TraceViolation| {
            Py::new(
                py,
                PyViolation::from_core(py, &tv.violation, Some(tv.line), tv.stop.as_deref())?,
            )
        };
        Ok(PyTraceReport {
            snapshots: r.snapshots,
            violations: r.violations.iter().map(conv).collect::<PyResult<_>>()?,
            total_violations: r.total_violations,
            groups: r
                .groups
                .iter()
                .map(|g| Ok((g.invariant, g.count, conv(&g.first)?)))
                .collect::<PyResult<_>>()?,
            not_judged: r.not_judged,
            first_not_judged: r.first_not_judged,
            error: r
                .error
                .as_ref()
                .map(|e| (e.line, e.column, e.key.clone(), e.message.clone(), e.to_string())),
            exit_code: r.exit_code(),
            verdict: r.verdict(),
        })
    }
}

fn options(
    variant: Option<&str>,
    same_vm: bool,
    max_line_bytes: usize,
    keep: usize,
) -> PyResult<TraceOptions> {
    Ok(TraceOptions {
        variant: parse_variant(variant)?,
        same_vm,
        max_line_bytes,
        keep,
    })
}

/// Replay from a byte stream without the GIL, checking for Ctrl-C between
/// batches.
fn replay<R: io::BufRead + Send>(py: Python<'_>, reader: R, opts: &TraceOptions) -> PyResult<PyTraceReport> {
    let (report, interrupted) = py.detach(|| {
        check_reader(reader, opts, &mut || {
            Python::attach(|py| py.check_signals().is_err())
        })
    });
    if interrupted {
        return Err(PyKeyboardInterrupt::new_err("interrupted"));
    }
    PyTraceReport::from_core(py, &report)
}

/// Replay a JSONL trace file (streamed).
#[pyfunction]
#[pyo3(signature = (path, variant=None, same_vm=false, max_line_bytes=64 << 20, keep=1000))]
fn check_trace_file(
    py: Python<'_>,
    path: PathBuf,
    variant: Option<&str>,
    same_vm: bool,
    max_line_bytes: usize,
    keep: usize,
) -> PyResult<PyTraceReport> {
    let opts = options(variant, same_vm, max_line_bytes, keep)?;
    let file = std::fs::File::open(&path)
        .map_err(|e| PyOSError::new_err((e.raw_os_error().unwrap_or(0), e.to_string())))?;
    replay(py, BufReader::with_capacity(1 << 16, file), &opts)
}

/// Replay a JSONL trace from standard input (file descriptor 0), streamed.
#[pyfunction]
#[pyo3(signature = (variant=None, same_vm=false, max_line_bytes=64 << 20, keep=1000))]
fn check_trace_stdin(
    py: Python<'_>,
    variant: Option<&str>,
    same_vm: bool,
    max_line_bytes: usize,
    keep: usize,
) -> PyResult<PyTraceReport> {
    let opts = options(variant, same_vm, max_line_bytes, keep)?;
    replay(py, BufReader::with_capacity(1 << 16, io::stdin()), &opts)
}

/// Replay a JSONL trace held in a string.
#[pyfunction]
#[pyo3(signature = (text, variant=None, same_vm=false, max_line_bytes=64 << 20, keep=1000))]
fn check_trace_text(
    py: Python<'_>,
    text: &str,
    variant: Option<&str>,
    same_vm: bool,
    max_line_bytes: usize,
    keep: usize,
) -> PyResult<PyTraceReport> {
    let opts = options(variant, same_vm, max_line_bytes, keep)?;
    replay(py, text.as_bytes(), &opts)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SnapshotError", m.py().get_type::<PySnapshotError>())?;
    m.add_class::<PyInvariantInfo>()?;
    m.add_class::<PyViolation>()?;
    m.add_class::<PyCheckOutcome>()?;
    m.add_class::<PyCoreChecker>()?;
    m.add_class::<PyTraceReport>()?;
    m.add_function(wrap_pyfunction!(invariants, m)?)?;
    m.add_function(wrap_pyfunction!(check_trace_file, m)?)?;
    m.add_function(wrap_pyfunction!(check_trace_stdin, m)?)?;
    m.add_function(wrap_pyfunction!(check_trace_text, m)?)?;
    Ok(())
}
