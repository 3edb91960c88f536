//! Times one exhaustive exploration from the command line (no Python):
//! `cargo run --release -p pyvcore-core --example explore_bench -- VARIANT N [WORKERS] [FAULT]`.
//! Prints the counterexample if any, the state count, the time and the
//! explorer's peak memory estimate (the Python benchmark is
//! tests/benchmarks/bench_model.py; this one needs no Python).

use pyvcore_core::consts::Variant;
use pyvcore_core::explore::{explore, ExploreOptions};
use pyvcore_core::model::Fault;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let variant: Variant = args
        .get(1)
        .map_or("modern", String::as_str)
        .parse()
        .expect("variant");
    let threads: u8 = args.get(2).map_or("4", String::as_str).parse().expect("threads");
    let mut opts = ExploreOptions::new(variant, threads);
    if let Some(w) = args.get(3) {
        opts.workers = w.parse().expect("workers");
    }
    if let Some(f) = args.get(4) {
        opts.fault = Some(Fault::parse(f).expect("fault"));
    }
    // DOORBELLS / PRODS / CEDES=N: other bounds (to see where the states come from).
    let bound = |name: &str| std::env::var(name).ok().map(|v| v.parse::<u8>().expect(name));
    if let Some(n) = bound("DOORBELLS") {
        opts.max_doorbells = n;
    }
    if let Some(n) = bound("PRODS") {
        opts.max_prods = n;
    }
    if let Some(n) = bound("CEDES") {
        opts.max_cedes = Some(n);
    }
    // NO_CHECK=1: only the model's own history and deadlock checks.
    opts.check_invariants = std::env::var_os("NO_CHECK").is_none();
    let r = explore(&opts).expect("explore");
    if let Some(t) = &r.counterexample {
        for e in t {
            println!("    {e}");
        }
    }
    println!(
        "{variant} N={threads}: {} states, {} transitions, {:.3} s, depth {}, peak ~{} MiB, {}",
        r.states,
        r.transitions,
        r.seconds,
        r.depth,
        r.peak_memory >> 20,
        r.violated().unwrap_or_else(|| if r.complete() {
            "all hold".into()
        } else {
            "incomplete".into()
        })
    );
}
