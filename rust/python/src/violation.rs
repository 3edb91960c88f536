//! The invariant table (`InvariantInfo`, `invariants()`) and `Violation`, one
//! broken invariant, as Python sees them.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use pythonize::pythonize;

use pyvcore_core::invariants::{self as core_inv, InvariantInfo, INVARIANTS};

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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyInvariantInfo>()?;
    m.add_class::<PyViolation>()?;
    m.add_function(wrap_pyfunction!(invariants, m)?)?;
    Ok(())
}
