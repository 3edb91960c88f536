//! Python face of the model (`pyvcore_core::model`): `Event`, `Step`,
//! `CoreModel`, the model's tables (variants, vcore_state names, event
//! forms, thread counts) and the `ModelError` exception; the explorer's
//! face is the `explore` submodule.  Typed values cross the boundary: events are
//! `Event` objects, results are `#[pyclass]` objects or dicts built directly
//! from the Rust values (pythonize), never JSON text.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use pythonize::pythonize;

use pyvcore_core::consts::Variant;
use pyvcore_core::invariants::Violation;

use crate::violation::PyViolation;
use pyvcore_core::model::{Config, Event, Model, ModelError, Phase, MAX_VCPU_ID};

mod explore;

/// The exception class is named `pyvcore.ModelError` (`__module__` "pyvcore"), the name
/// users import it by, so tracebacks and reprs read `pyvcore.ModelError`.
mod exception {
    use pyo3::exceptions::PyValueError;

    pyo3::create_exception!(
        pyvcore,
        ModelError,
        PyValueError,
        "An event that is not legal in the model's current state (or a bad model parameter): `.event`, `.reason`."
    );
}
use exception::ModelError as PyModelError;

pub(crate) fn model_error(py: Python<'_>, e: &ModelError) -> PyErr {
    let err = PyModelError::new_err(e.to_string());
    let value = err.value(py);
    // Exception instances carry a __dict__: setting attributes cannot fail
    // short of memory exhaustion, and then the plain error is still raised.
    let _ = value.setattr("event", e.event.as_str());
    let _ = value.setattr("reason", e.reason.as_str());
    err
}

pub(crate) fn parse_variant(variant: &str) -> PyResult<Variant> {
    variant
        .parse::<Variant>()
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Threads per core as Python gave them: 1, 2, 4 or 8 (the POWER SMT modes,
/// `Config::THREAD_COUNTS`), else ValueError.
pub(crate) fn parse_threads(threads: i64) -> PyResult<u8> {
    u8::try_from(threads)
        .ok()
        .filter(|t| Config::THREAD_COUNTS.contains(t))
        .ok_or_else(|| PyValueError::new_err(format!("threads per core must be 1, 2, 4 or 8, not {threads}")))
}

/// A violation as the checker's `Violation` object.
pub(crate) fn violation_obj<'py>(
    py: Python<'py>,
    v: &Violation,
    stop: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(Bound::new(py, PyViolation::from_core(py, v, None, stop)?)?.into_any())
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
        Phase::NapCounted => "nap_counted",
    }
}

/// One model event, e.g. `Event("enter", thread=1)` or
/// `Event.parse("doorbell(vcpu=1, thread=2)")`.
#[pyclass(module = "pyvcore._core", name = "Event", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyEvent {
    pub(crate) event: Event,
}

#[pymethods]
impl PyEvent {
    #[new]
    #[pyo3(signature = (name, *args, **kwargs))]
    fn new(
        py: Python<'_>,
        name: &str,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let bad = |why: String| model_error(py, &ModelError::new(name, format!("bad event {name:?}: {why}")));
        let number = |key: &str, v: &Bound<'_, PyAny>| -> PyResult<u64> {
            v.extract::<u64>()
                .map_err(|_| bad(format!("argument {key}={v} is not a whole number 0..2^64-1")))
        };
        let mut all: Vec<(Option<String>, u64)> = Vec::new();
        for (i, v) in args.iter().enumerate() {
            all.push((None, number(&format!("#{}", i + 1), &v)?));
        }
        if let Some(kw) = kwargs {
            for (k, v) in kw.iter() {
                let key: String = k.extract()?;
                let value = number(&key, &v)?;
                all.push((Some(key), value));
            }
        }
        let event =
            Event::from_args(name, &all, name).map_err(|e| model_error(py, &ModelError::new(name, e.0)))?;
        Ok(PyEvent { event })
    }

    /// Parse the text form, e.g. "enter(thread=1)" or "exit(1, trap=0xc00)".
    #[staticmethod]
    fn parse(py: Python<'_>, text: &str) -> PyResult<Self> {
        let event = text
            .parse::<Event>()
            .map_err(|e| model_error(py, &ModelError::new(text.trim(), e.0)))?;
        Ok(PyEvent { event })
    }

    /// The event's name, e.g. "enter".
    #[getter]
    fn name(&self) -> &'static str {
        self.event.name()
    }

    /// The kernel function or label the event ends at (a snapshot's "stop").
    #[getter]
    fn label(&self) -> &'static str {
        self.event.label()
    }

    /// The arguments by name, e.g. {"thread": 1}.
    #[getter]
    fn args<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.event.args() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    fn __str__(&self) -> String {
        self.event.to_string()
    }

    fn __repr__(&self) -> String {
        let args: Vec<String> = self
            .event
            .args()
            .iter()
            .map(|(k, v)| format!(", {k}={v}"))
            .collect();
        format!("Event({:?}{})", self.event.name(), args.concat())
    }
}

/// An event from an `Event` or its text form.
fn event_arg(obj: &Bound<'_, PyAny>) -> PyResult<Event> {
    if let Ok(e) = obj.cast::<PyEvent>() {
        return Ok(e.get().event);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(PyEvent::parse(obj.py(), &s.to_cow()?)?.event);
    }
    Err(PyTypeError::new_err(format!(
        "an event is an Event or its text form, not {}",
        obj.get_type().name()?
    )))
}

/// What one applied event did.
#[pyclass(module = "pyvcore._core", name = "Step", frozen)]
pub struct PyStep {
    #[pyo3(get)]
    event: PyEvent,
    /// The kernel function or label the event ends at.
    #[pyo3(get)]
    stop: &'static str,
    /// Each invariant the step broke (`Violation`, stop = the event's label).
    #[pyo3(get)]
    violations: Py<PyList>,
    /// take_doorbell: the vcpu id that took the doorbell.
    #[pyo3(get)]
    doorbell_taken: Option<u32>,
    /// cede: whether the thread napped (False: returned at once or exited).
    #[pyo3(get)]
    ceded_to_nap: bool,
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
        let threads = parse_threads(threads)?;
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

    /// Apply one event (an `Event` or its text form).
    fn apply(&mut self, py: Python<'_>, event: &Bound<'_, PyAny>) -> PyResult<PyStep> {
        let event = event_arg(event)?;
        let step = self.model.apply(event).map_err(|e| model_error(py, &e))?;
        let first = self.model.first_vcpuid();
        let violations = PyList::empty(py);
        for v in &step.violations {
            violations.append(violation_obj(py, v, Some(step.event.label()))?)?;
        }
        Ok(PyStep {
            event: PyEvent { event: step.event },
            stop: step.event.label(),
            violations: violations.unbind(),
            doorbell_taken: step.effects.doorbell_taken.map(|d| first + d as u32),
            ceded_to_nap: step.effects.ceded_to_nap,
        })
    }

    /// The snapshot of the current state, as a dict.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(pythonize(py, self.model.snapshot())?)
    }

    /// The snapshot as one line of JSON (a trace line for `pyvcore check`).
    fn snapshot_json(&self) -> PyResult<String> {
        serde_json::to_string(self.model.snapshot()).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// The vcore's snapshot fields plus `vcore_state_name`, `runnable`
    /// (vcpu ids on the runnable list) and `dpdes_saved`; None before the
    /// first vcpu is created.
    fn vcore<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let (Some(view), Some(vc)) = (self.model.snapshot().vcores.first(), self.model.state.vcore) else {
            return Ok(None);
        };
        let d = pythonize(py, view)?.cast_into::<PyDict>()?;
        let states = self.model.config.variant.vcore_states();
        d.set_item("vcore_state_name", states.name(vc.vcore_state).unwrap_or("?"))?;
        let first = self.model.first_vcpuid();
        let runnable: Vec<u32> = vc.runnable().iter().map(|&i| first + i as u32).collect();
        d.set_item("runnable", runnable)?;
        d.set_item("dpdes_saved", vc.dpdes)?;
        Ok(Some(d.into_any()))
    }

    /// Model-only detail per hardware thread: phase, kernel label, IPI
    /// pending, the vcpu id it runs / its PACA holds, DPDES bit.
    fn thread_detail<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let s = &self.model.state;
        let first = self.model.first_vcpuid();
        let out = PyList::empty(py);
        for t in 0..self.model.config.threads as usize {
            let th = &s.threads[t];
            let d = PyDict::new(py);
            d.set_item("thread", t)?;
            d.set_item("phase", phase_name(th.phase))?;
            d.set_item("label", th.phase.label(t))?;
            d.set_item("ipi", th.ipi)?;
            d.set_item("running", th.running.map(|v| first + v as u32))?;
            d.set_item("kvm_vcpu_id", th.hstate.kvm_vcpu.map(|v| first + v as u32))?;
            d.set_item("doorbell", s.dpdes & (1 << t) != 0)?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// Model-only detail per vcpu: prodded, trap, started, cedes.
    fn vcpu_detail<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let first = self.model.first_vcpuid();
        let out = PyDict::new(py);
        for (i, v) in self.model.state.vcpus.iter().enumerate() {
            let Some(v) = v else { continue };
            let d = PyDict::new(py);
            d.set_item("prodded", v.prodded)?;
            d.set_item("trap", v.trap)?;
            d.set_item("started", v.started)?;
            d.set_item("cedes", v.cedes)?;
            out.set_item(first + i as u32, d)?;
        }
        Ok(out)
    }

    /// Every event legal now.
    fn enabled(&self) -> Vec<PyEvent> {
        self.model
            .enabled()
            .into_iter()
            .map(|event| PyEvent { event })
            .collect()
    }

    /// The events applied so far.
    fn trace(&self) -> Vec<PyEvent> {
        self.model.trace.iter().map(|&event| PyEvent { event }).collect()
    }

    fn copy(&self) -> Self {
        self.clone()
    }
}

/// The text form of every event, e.g. "enter(thread=T)".
#[pyfunction]
fn event_forms() -> Vec<&'static str> {
    Event::FORMS.to_vec()
}

/// Every event name with the kernel function or label it models.
#[pyfunction]
fn event_labels() -> Vec<(&'static str, &'static str)> {
    Event::LABELS.to_vec()
}

/// The model variants, e.g. ["seed", "modern", "prepatch"].
#[pyfunction]
fn variants() -> Vec<&'static str> {
    Variant::ALL.iter().map(|v| v.name()).collect()
}

/// The kernel's vcore_state names of a variant, by value.
#[pyfunction]
fn vcore_state_names(variant: &str) -> PyResult<Vec<(u8, &'static str)>> {
    let states = parse_variant(variant)?.vcore_states();
    Ok((0..=u8::MAX)
        .filter_map(|v| states.name(v).map(|n| (v, n)))
        .collect())
}

/// The kernel's names of a numbered field's values in a variant: (value,
/// name) for `in_guest`, `hwthread_state`, `napping` or `vcpu_state`.
#[pyfunction]
fn kernel_names(field: &str, variant: &str) -> PyResult<Vec<(u8, &'static str)>> {
    let names = pyvcore_core::consts::kernel_names(field, parse_variant(variant)?).ok_or_else(|| {
        PyValueError::new_err(format!(
            "no kernel names for {field:?} (in_guest, hwthread_state, napping, vcpu_state)"
        ))
    })?;
    Ok(names.to_vec())
}

/// Threads per core the model (and POWER7/POWER8) accepts: 1, 2, 4, 8.
#[pyfunction]
fn thread_counts() -> Vec<u8> {
    Config::THREAD_COUNTS.to_vec()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCoreModel>()?;
    m.add_class::<PyEvent>()?;
    m.add_class::<PyStep>()?;
    explore::register(m)?;
    m.add("ModelError", m.py().get_type::<PyModelError>())?;
    m.add("MAX_VCPU_ID", MAX_VCPU_ID)?;
    m.add_function(wrap_pyfunction!(event_forms, m)?)?;
    m.add_function(wrap_pyfunction!(event_labels, m)?)?;
    m.add_function(wrap_pyfunction!(variants, m)?)?;
    m.add_function(wrap_pyfunction!(vcore_state_names, m)?)?;
    m.add_function(wrap_pyfunction!(kernel_names, m)?)?;
    m.add_function(wrap_pyfunction!(thread_counts, m)?)?;
    Ok(())
}
