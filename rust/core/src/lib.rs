//! pyvcore core: a model of the KVM Book3S HV (POWER7/8) thread-aligned vcore
//! gang scheduler, a checker of observed kernel state against it, and the
//! readers of kernel images (ELF symbols, BTF layouts) the gdb side needs.  Everything here is plain Rust
//! with no PyO3, so `cargo test` needs no Python; the bindings are the
//! `pyvcore-python` crate (rust/python).

pub mod btf;
pub mod btf_craft;
pub mod consts;
pub mod elf;
pub mod explore;
pub mod hexint;
pub mod image;
pub mod invariants;
pub mod location;
pub mod model;
pub mod shadow;
pub mod snapshot;
pub mod trace;
pub mod view;
