//! Python face of the model (`pyvcore_core::model`) and the explorer
//! (`pyvcore_core::explore`): `CoreModel`, `explore`, `event_forms` and the
//! `ModelError` exception.  Structured results cross as JSON text that
//! `pyvcore.model` parses; events cross in their text form.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use serde_json::{json, Value};

use pyvcore_core::consts::Variant;
use pyvcore_core::explore::{explore as run_explore, ExploreOptions, ExploreReport};
use pyvcore_core::invariants::Violation;
use pyvcore_core::model::{Event, Fault, Model, ModelError, Phase};

pyo3::create_exception!(
    _core,
    PyModelError,
    PyValueError,
    "An event that is not legal in the model's current state (or a bad model parameter): `.event`, `.reason`."
);

fn model_error(py: Python<'_>, e: &ModelError) -> PyErr {
    let err = PyModelError::new_err(e.to_string());
    let value = err.value(py);
    let _ = value.setattr("event", e.event.as_str());
    let _ = value.setattr("reason", e.reason.as_str());
    err
}

fn parse_variant(variant: &str) -> PyResult<Variant> {
    variant
        .parse::<Variant>()
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

fn violation_json(v: &Violation) -> Value {
    json!({"invariant": v.invariant, "message": v.message, "fields": v.fields})
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Host => "host",
        Phase::Entered => "entered",
        Phase::SwitchedIn => "switched_in",
        Phase::InGuest => "in_guest",
        Phase::CedeNap => "cede_nap",
        Phase::NovcpuNap => "novcpu_nap",
        Phase::Exiting => "exiting",
        Phase::TooLate => "too_late",
        Phase::Returned => "returned",
        Phase::Spinning => "spinning",
    }
}

/// One vcore on one physical core, driven event by event.
#[pyclass(name = "CoreModel", module = "pyvcore._core")]
#[derive(Clone)]
struct PyCoreModel {
    model: Model,
}

#[pymethods]
impl PyCoreModel {
    #[new]
    #[pyo3(signature = (variant, threads, cpu_base = 0))]
    fn new(py: Python<'_>, variant: &str, threads: i64, cpu_base: i64) -> PyResult<Self> {
        let variant = parse_variant(variant)?;
        let threads = u8::try_from(threads)
            .map_err(|_| PyValueError::new_err(format!("threads per core must be 1..8, not {threads}")))?;
        let cpu_base = u32::try_from(cpu_base)
            .map_err(|_| PyValueError::new_err(format!("cpu_base must be a cpu number, not {cpu_base}")))?;
        let model = Model::with_cpu_base(variant, threads, cpu_base).map_err(|e| model_error(py, &e))?;
        Ok(PyCoreModel { model })
    }

    #[getter]
    fn variant(&self) -> &'static str {
        self.model.config.variant.name()
    }

    #[getter]
    fn threads(&self) -> u8 {
        self.model.config.threads
    }

    #[getter]
    fn cpu_base(&self) -> u32 {
        self.model.config.cpu_base
    }

    /// Apply one event (text form); returns the step as JSON.
    fn apply(&mut self, py: Python<'_>, event: &str) -> PyResult<String> {
        let step = self.model.apply_text(event).map_err(|e| model_error(py, &e))?;
        let first = self.model.first_vcpuid();
        Ok(json!({
            "event": step.event.to_string(),
            "stop": step.event.label(),
            "violations": step.violations.iter().map(violation_json).collect::<Vec<_>>(),
            "doorbell_delivered": step.effects.doorbell_delivered.map(|d| first + d as u32),
            "ceded_to_nap": step.effects.ceded_to_nap,
        })
        .to_string())
    }

    /// The contract-2 snapshot of the current state, as JSON.
    fn snapshot_json(&self) -> PyResult<String> {
        serde_json::to_string(self.model.snapshot()).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Model-only detail the snapshot does not carry (phases, IPIs, ...), as JSON.
    fn detail_json(&self) -> String {
        let s = &self.model.state;
        let first = self.model.first_vcpuid();
        let n = self.model.config.threads as usize;
        let threads: Vec<Value> = (0..n)
            .map(|t| {
                let th = &s.threads[t];
                json!({
                    "thread": t,
                    "phase": phase_name(th.phase),
                    "label": th.phase.label(t),
                    "ipi": th.ipi,
                    "running": th.running.map(|v| first + v as u32),
                    "kvm_vcpu_id": th.hstate.kvm_vcpu.map(|v| first + v as u32),
                })
            })
            .collect();
        let vcpus: Vec<Value> = s
            .vcpus
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i, v)))
            .map(|(i, v)| {
                json!({
                    "vcpu_id": first + i as u32,
                    "prodded": v.prodded,
                    "trap": v.trap,
                    "started": v.started,
                    "cedes": v.cedes,
                })
            })
            .collect();
        let vcore = s.vcore.map(|vc| {
            json!({
                "entered": vc.entered,
                "exited": vc.exited,
                "runnable": vc.runnable().iter().map(|&i| first + i as u32).collect::<Vec<_>>(),
                "tb_offset_applied": vc.tb_offset_applied,
                "lock_held": vc.lock_held,
            })
        });
        json!({
            "threads": threads,
            "vcpus": vcpus,
            "vcore": vcore,
            "mmu": match s.mmu { pyvcore_core::model::Mmu::Host => "host", pyvcore_core::model::Mmu::Guest => "guest" },
            "switch_in": s.switch_in,
            "switch_out": s.switch_out,
        })
        .to_string()
    }

    /// Every event legal now, in text form.
    fn enabled(&self) -> Vec<String> {
        self.model.enabled().iter().map(Event::to_string).collect()
    }

    /// The events applied so far, in text form.
    fn trace(&self) -> Vec<String> {
        self.model.trace.iter().map(Event::to_string).collect()
    }

    fn copy(&self) -> Self {
        self.clone()
    }
}

fn report_json(r: &ExploreReport) -> Value {
    json!({
        "variant": r.variant.name(),
        "threads": r.threads,
        "vcpus": r.vcpus,
        "states": r.states,
        "transitions": r.transitions,
        "seconds": r.seconds,
        "counterexample": r.counterexample.as_ref().map(|t| t.iter().map(Event::to_string).collect::<Vec<_>>()),
        "violated": r.violated(),
        "violation": r.violation.as_ref().map(violation_json),
        "complete": r.complete,
        "finished_runs": r.finished_runs,
        "depth": r.depth,
        "ignored": r.ignored,
        "bounds": r.bounds,
    })
}

/// Explore every interleaving of one vcore run; returns the report as JSON.
#[pyfunction]
#[pyo3(signature = (variant, threads, vcpus = None, ignore = None, max_states = None,
    cedes_per_vcpu = None, max_cedes = None, max_prods = None, check_invariants = true, symmetry = true,
    exit_request = false, fault = None))]
#[allow(clippy::too_many_arguments)]
fn explore(
    py: Python<'_>,
    variant: &str,
    threads: i64,
    vcpus: Option<Vec<i64>>,
    ignore: Option<Vec<u32>>,
    max_states: Option<usize>,
    cedes_per_vcpu: Option<u8>,
    max_cedes: Option<u8>,
    max_prods: Option<u8>,
    check_invariants: bool,
    symmetry: bool,
    exit_request: bool,
    fault: Option<&str>,
) -> PyResult<String> {
    let variant = parse_variant(variant)?;
    let threads = u8::try_from(threads)
        .ok()
        .filter(|t| (1..=8).contains(t))
        .ok_or_else(|| PyValueError::new_err(format!("threads per core must be 1..8, not {threads}")))?;
    let vcpus = vcpus
        .map(|ids| {
            ids.into_iter()
                .map(|id| u32::try_from(id).map_err(|_| PyValueError::new_err(format!("bad vcpu id {id}"))))
                .collect::<PyResult<Vec<u32>>>()
        })
        .transpose()?;
    let mut opts = ExploreOptions::new(variant, threads);
    opts.vcpus = vcpus;
    opts.ignore = ignore;
    opts.max_states = max_states;
    if let Some(c) = cedes_per_vcpu {
        opts.cedes_per_vcpu = c;
    }
    if max_cedes.is_some() {
        opts.max_cedes = max_cedes;
    }
    if let Some(p) = max_prods {
        opts.max_prods = p;
    }
    opts.check_invariants = check_invariants;
    opts.symmetry = symmetry;
    opts.exit_request = exit_request;
    opts.fault = fault
        .map(Fault::parse)
        .transpose()
        .map_err(PyValueError::new_err)?;
    let result = py.detach(|| run_explore(&opts));
    let report = result.map_err(|e| model_error(py, &e))?;
    Ok(report_json(&report).to_string())
}

/// The names of the deliberate faults `explore(fault=...)` accepts.
#[pyfunction]
fn fault_names() -> Vec<&'static str> {
    Fault::ALL.iter().map(|f| f.name()).collect()
}

/// The text form of every event, e.g. "enter(thread=T)".
#[pyfunction]
fn event_forms() -> Vec<&'static str> {
    Event::FORMS.to_vec()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCoreModel>()?;
    m.add("ModelError", m.py().get_type::<PyModelError>())?;
    m.add_function(wrap_pyfunction!(explore, m)?)?;
    m.add_function(wrap_pyfunction!(event_forms, m)?)?;
    m.add_function(wrap_pyfunction!(fault_names, m)?)?;
    Ok(())
}
