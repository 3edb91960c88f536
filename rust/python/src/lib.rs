//! PyO3 bindings: the `pyvcore._core` extension module.  Thin: conversion and
//! error mapping only; the logic lives in the pure modules.

use pyo3::prelude::*;

mod btf;
mod check;
mod model;
mod shadow;
mod snapshot;
mod trace;
mod violation;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    btf::register(m)?;
    snapshot::register(m)?;
    violation::register(m)?;
    check::register(m)?;
    trace::register(m)?;
    model::register(m)?;
    shadow::register(m)?;
    Ok(())
}
