//! Python face of the explorer (`pyvcore_core::explore`): `explore`,
//! `ExploreReport`, `ExploreProgress`, `FaultInfo` and `faults`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use pyvcore_core::explore::{explore_with, ExploreOptions, ExploreReport, Progress};
use std::collections::BTreeMap;

use pyvcore_core::consts::Variant;
use pyvcore_core::model::Fault;

use super::{model_error, parse_threads, parse_variant, violation_obj, PyEvent};

/// Where a running exploration is (what a progress callback receives).
#[pyclass(module = "pyvcore._core", name = "ExploreProgress", frozen)]
pub struct PyProgress {
    #[pyo3(get)]
    states: usize,
    #[pyo3(get)]
    transitions: usize,
    #[pyo3(get)]
    depth: usize,
    #[pyo3(get)]
    frontier: usize,
    #[pyo3(get)]
    seconds: f64,
    /// Estimated bytes in use.
    #[pyo3(get)]
    memory: usize,
}

impl From<&Progress> for PyProgress {
    fn from(p: &Progress) -> Self {
        PyProgress {
            states: p.states,
            transitions: p.transitions,
            depth: p.depth,
            frontier: p.frontier,
            seconds: p.seconds,
            memory: p.memory,
        }
    }
}

/// The outcome of an exploration.
#[pyclass(module = "pyvcore._core", name = "ExploreReport", frozen)]
pub struct PyExploreReport {
    #[pyo3(get)]
    variant: &'static str,
    #[pyo3(get)]
    threads: u8,
    #[pyo3(get)]
    vcpus: Vec<u32>,
    #[pyo3(get)]
    states: usize,
    #[pyo3(get)]
    transitions: usize,
    #[pyo3(get)]
    seconds: f64,
    /// The shortest event trace to the violation (from "vcpus created").
    #[pyo3(get)]
    counterexample: Option<Vec<PyEvent>>,
    /// The violation found (`Violation`).
    #[pyo3(get)]
    violation: Option<Py<PyAny>>,
    /// Why the search ended early ("the state budget ran out", "the memory
    /// budget ran out", "interrupted"); None when it saw every state.
    #[pyo3(get)]
    incomplete: Option<&'static str>,
    #[pyo3(get)]
    finished_runs: usize,
    #[pyo3(get)]
    depth: usize,
    #[pyo3(get)]
    ignored: Vec<u32>,
    #[pyo3(get)]
    bounds: String,
    /// The largest estimated memory of the search, in bytes.
    #[pyo3(get)]
    peak_memory: usize,
    #[pyo3(get)]
    fault: Option<&'static str>,
    /// With a fault and a counterexample: (invariant, event number from 1)
    /// that the same events break with the fault left out, if they do.
    #[pyo3(get)]
    without_fault: Option<(u32, usize)>,
}

impl PyExploreReport {
    fn from_core(py: Python<'_>, r: &ExploreReport) -> PyResult<Self> {
        Ok(PyExploreReport {
            variant: r.variant.name(),
            threads: r.threads,
            vcpus: r.vcpus.clone(),
            states: r.states,
            transitions: r.transitions,
            seconds: r.seconds,
            counterexample: r
                .counterexample
                .as_ref()
                .map(|t| t.iter().map(|&event| PyEvent { event }).collect()),
            violation: r
                .violation
                .as_ref()
                .map(|v| violation_obj(py, v, None))
                .transpose()?
                .map(Bound::unbind),
            incomplete: r.incomplete.map(|i| i.describe()),
            finished_runs: r.finished_runs,
            depth: r.depth,
            ignored: r.ignored.clone(),
            bounds: r.bounds.clone(),
            peak_memory: r.peak_memory,
            fault: r.fault.map(Fault::name),
            without_fault: r.without_fault,
        })
    }
}

/// The explorer's options from the Python arguments (None = default).
#[allow(clippy::too_many_arguments)]
fn explore_options(
    variant: &str,
    threads: i64,
    vcpus: Option<Vec<u32>>,
    ignore: Option<Vec<u32>>,
    max_states: Option<usize>,
    max_memory: Option<usize>,
    bounds: (Option<u8>, Option<u8>, Option<u8>, Option<u8>),
    fault: Option<&str>,
) -> PyResult<ExploreOptions> {
    let variant = parse_variant(variant)?;
    let threads = parse_threads(threads)?;
    let mut opts = ExploreOptions::new(variant, threads);
    opts.vcpus = vcpus;
    opts.ignore = ignore;
    if let Some(m) = max_states {
        opts.max_states = m;
    }
    if let Some(m) = max_memory {
        opts.max_memory = m;
    }
    let (cedes_per_vcpu, max_cedes, max_prods, max_doorbells) = bounds;
    if let Some(c) = cedes_per_vcpu {
        opts.cedes_per_vcpu = c;
    }
    if max_cedes.is_some() {
        opts.max_cedes = max_cedes;
    }
    if let Some(p) = max_prods {
        opts.max_prods = p;
    }
    if let Some(d) = max_doorbells {
        opts.max_doorbells = d;
    }
    opts.fault = fault
        .map(Fault::parse)
        .transpose()
        .map_err(PyValueError::new_err)?;
    Ok(opts)
}

/// Explore every interleaving of one vcore run.  `progress(p)` is called
/// about every few thousand states with an `ExploreProgress`; Ctrl-C (and
/// any exception the callback raises) stops the search and is re-raised.
#[pyfunction]
#[pyo3(signature = (variant, threads, vcpus = None, *, ignore = None, max_states = None, max_memory = None,
    cedes_per_vcpu = None, max_cedes = None, max_prods = None, max_doorbells = None, check_invariants = true,
    symmetry = true, exit_request = false, fault = None, workers = None, partial_order = false, subsumption = true, forget_dead = true, reduction = true,
    progress = None))]
#[allow(clippy::too_many_arguments)]
fn explore(
    py: Python<'_>,
    variant: &str,
    threads: i64,
    vcpus: Option<Vec<u32>>,
    ignore: Option<Vec<u32>>,
    max_states: Option<usize>,
    max_memory: Option<usize>,
    cedes_per_vcpu: Option<u8>,
    max_cedes: Option<u8>,
    max_prods: Option<u8>,
    max_doorbells: Option<u8>,
    check_invariants: bool,
    symmetry: bool,
    exit_request: bool,
    fault: Option<&str>,
    workers: Option<usize>,
    partial_order: bool,
    subsumption: bool,
    forget_dead: bool,
    reduction: bool,
    progress: Option<Py<PyAny>>,
) -> PyResult<PyExploreReport> {
    let mut opts = explore_options(
        variant,
        threads,
        vcpus,
        ignore,
        max_states,
        max_memory,
        (cedes_per_vcpu, max_cedes, max_prods, max_doorbells),
        fault,
    )?;
    opts.check_invariants = check_invariants;
    opts.symmetry = symmetry;
    opts.exit_request = exit_request;
    opts.partial_order = partial_order;
    opts.subsumption = subsumption;
    opts.merge_dead = forget_dead;
    if !reduction {
        opts.unreduced();
    }
    if let Some(w) = workers {
        opts.workers = w.clamp(1, 64);
    }
    // An option that does not fit the variant, not an illegal event.
    if let Some(why) = opts.unfit() {
        return Err(PyValueError::new_err(why));
    }
    let mut raised: Option<PyErr> = None;
    let result = py.detach(|| {
        explore_with(&opts, &mut |p| {
            Python::attach(|py| {
                let outcome = py.check_signals().and_then(|()| match &progress {
                    Some(cb) => cb.call1(py, (PyProgress::from(p),)).map(|_| ()),
                    None => Ok(()),
                });
                match outcome {
                    Ok(()) => true,
                    Err(e) => {
                        raised = Some(e);
                        false
                    }
                }
            })
        })
    });
    if let Some(e) = raised {
        return Err(e);
    }
    let report = result.map_err(|e| model_error(py, &e))?;
    PyExploreReport::from_core(py, &report)
}

/// A deliberate fault `explore(fault=...)` accepts.
#[pyclass(module = "pyvcore._core", name = "FaultInfo", frozen)]
pub struct PyFaultInfo {
    /// The `--fault` name, e.g. "doorbell-lost-on-wake".
    #[pyo3(get)]
    name: &'static str,
    /// The public commit that fixed the real bug it reintroduces ("Linux
    /// 7b444c6710c6"), or None when none is known.
    #[pyo3(get)]
    fixed_by: Option<&'static str>,
    /// What it undoes: "the bug fixed by COMMIT: RULE", or "breaks the rule in
    /// PLACE: RULE" when no fixing commit is known.
    #[pyo3(get)]
    description: String,
    /// The variants that have the code it breaks.
    #[pyo3(get)]
    variants: Vec<&'static str>,
    /// For each variant it does not apply to, why (the sentence `explore`
    /// refuses it with).
    #[pyo3(get)]
    not_modelled: BTreeMap<&'static str, String>,
}

/// Every deliberate fault, with the fix it undoes and where it applies.
#[pyfunction]
fn faults() -> Vec<PyFaultInfo> {
    Fault::ALL
        .iter()
        .map(|f| PyFaultInfo {
            name: f.name(),
            fixed_by: f.fixed_by(),
            description: f.description(),
            variants: f.variants().iter().map(|v| v.name()).collect(),
            not_modelled: Variant::ALL
                .iter()
                .filter_map(|&v| f.not_modelled(v).map(|why| (v.name(), why)))
                .collect(),
        })
        .collect()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyExploreReport>()?;
    m.add_class::<PyProgress>()?;
    m.add_class::<PyFaultInfo>()?;
    m.add_function(wrap_pyfunction!(explore, m)?)?;
    m.add_function(wrap_pyfunction!(faults, m)?)?;
    Ok(())
}
