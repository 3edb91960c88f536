//! Python face of the checker: `CoreChecker` (one snapshot at a time, with
//! the previous one kept for the step invariants) and the `CheckOutcome` it
//! returns.  Typed values cross the boundary: a snapshot is a dict or JSON
//! text (see `snapshot`), results are `#[pyclass]` objects.

use pyo3::prelude::*;
use pythonize::pythonize;

use pyvcore_core::invariants::{predict, CheckOutcome};
use pyvcore_core::trace::Replayer;

use crate::snapshot::{parse_variant, snapshot_arg};
use crate::violation::PyViolation;

/// What checking one snapshot judged (`Checker.check_outcome`).
#[pyclass(module = "pyvcore._core", name = "CheckOutcome", frozen)]
pub struct PyCheckOutcome {
    #[pyo3(get)]
    violations: Vec<Py<PyViolation>>,
    #[pyo3(get)]
    judged: Vec<u32>,
    #[pyo3(get)]
    not_judged: Vec<(u32, &'static str)>,
    /// Invariants that do not apply to the snapshot's variant (not "not judged").
    #[pyo3(get)]
    not_applicable: Vec<u32>,
    #[pyo3(get)]
    vcore_found: bool,
    #[pyo3(get)]
    verdict: &'static str,
    /// Vcores judged against the previous stop as one run (same seq).
    #[pyo3(get)]
    same_run: usize,
    /// The stop's tb on the host's timebase (None: no tb, or not known).
    #[pyo3(get)]
    host_tb: Option<u64>,
    /// Why the stop's tb cannot be put on the host's timebase.
    #[pyo3(get)]
    host_tb_unknown: Option<&'static str>,
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
            not_applicable: o.not_applicable,
            vcore_found: o.vcore_found,
            same_run: o.same_run,
            host_tb: o.host_tb,
            host_tb_unknown: o.host_tb_unknown,
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCheckOutcome>()?;
    m.add_class::<PyCoreChecker>()?;
    Ok(())
}
