//! pyvcore core: a model of the KVM Book3S HV (POWER7/8) thread-aligned vcore
//! gang scheduler, a checker of observed kernel state against it, and the
//! readers (BTF) the gdb side needs.  Everything except `bindings` is plain Rust
//! with no PyO3, so `cargo test` needs no Python.

pub mod btf;
pub mod consts;
pub mod explore;
pub mod invariants;
pub mod snapshot;
pub mod trace;
pub mod model;
pub mod view;

#[cfg(feature = "python")]
mod bindings;
