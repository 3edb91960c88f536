//! The reductions against the full search: the same reachable states (up to
//! a permutation of the secondary threads and the bound counters), the same
//! verdicts, and counterexamples as short.

use std::collections::HashSet;

use super::fingerprint::symmetric_key;
use super::{explore, explore_recording, ExploreOptions};
use crate::consts::Variant;
use crate::model::{Config, Fault, State};

/// Options with every reduction off (the full search; the runner and the
/// order of start_thread are free, as in the symmetric search).
fn full(variant: Variant, n: u8) -> ExploreOptions {
    let mut o = ExploreOptions::new(variant, n);
    o.merge_symmetric = false;
    o.subsumption = false;
    o.partial_order = false;
    o
}

/// The states expanded by a search, each as its class: the fingerprint of
/// its symmetry class without the bound counters.
fn classes(o: &ExploreOptions) -> HashSet<u128> {
    let mut states: Vec<State> = Vec::new();
    let r = explore_recording(o, &mut |_| true, Some(&mut states)).unwrap();
    assert!(r.complete() && r.violation.is_none(), "{:?}", r.violated());
    let cfg = Config::new(o.variant, o.threads, 0).unwrap();
    let chosen = (1u16 << o.threads) as u8 - 1;
    let chosen = if o.threads == 8 { 0xff } else { chosen };
    states
        .iter()
        .map(|s| symmetric_key(&cfg, s, chosen, false).fp)
        .collect()
}

/// Symmetry and subsumption reach every class of state the full search
/// reaches, and no other; the doorbell reduction expands a subset of them
/// (it checks the others on the way, see `partial_order`).
#[test]
fn reductions_reach_the_same_states() {
    for variant in [Variant::Seed, Variant::Modern] {
        for n in [1u8, 2, 4] {
            let mut o = full(variant, n);
            if n == 4 {
                // Keeps the full search small enough for a debug build
                // (doorbells and prods are compared at N = 2).
                o.max_doorbells = 0;
                o.max_cedes = Some(1);
                o.max_prods = 0;
            }
            let all = classes(&o);
            let mut reduced = o.clone();
            reduced.merge_symmetric = true;
            reduced.subsumption = true;
            let same = classes(&reduced);
            assert_eq!(all.len(), same.len(), "{variant} N={n}");
            assert!(all == same, "{variant} N={n}");
            let mut por = reduced.clone();
            por.partial_order = true;
            assert!(classes(&por).is_subset(&all), "{variant} N={n}");
        }
    }
}

/// Every fault is found by the reduced search with the same invariant and a
/// counterexample as short as the full search's.
#[test]
fn reductions_find_every_fault_as_short() {
    let mut compared = [0usize; 2];
    for variant in [Variant::Seed, Variant::Modern] {
        for &fault in Fault::ALL {
            if !fault.variants().contains(&variant) {
                continue;
            }
            for n in [2u8, 4] {
                let mut o = full(variant, n);
                o.fault = Some(fault);
                if n == 4 {
                    // Small enough for a debug build (the doorbell faults
                    // are compared at N = 2).
                    o.max_doorbells = 0;
                    o.max_cedes = Some(1);
                    o.max_prods = 0;
                }
                let a = explore(&o).unwrap();
                let mut reduced = o.clone();
                reduced.merge_symmetric = true;
                reduced.subsumption = true;
                let b = explore(&reduced).unwrap();
                let (Some(va), Some(vb)) = (&a.violation, &b.violation) else {
                    // Some faults need a doorbell or two cedes to show.
                    assert_eq!(a.violation.is_some(), b.violation.is_some(), "{fault:?}");
                    continue;
                };
                assert_eq!(va.invariant, vb.invariant, "{variant} {fault:?} N={n}");
                let (la, lb) = (a.counterexample.unwrap().len(), b.counterexample.unwrap().len());
                assert_eq!(la, lb, "{variant} {fault:?} N={n}");
                assert!(b.states <= a.states, "{variant} {fault:?} N={n}");
                compared[(n == 4) as usize] += 1;
            }
        }
    }
    // Every fault at N = 2; at N = 4 those that show without doorbells.
    assert!(compared[0] >= 14 && compared[1] >= 8, "{compared:?}");
}

/// The counters of a kept state subsume exactly those at least as large.
#[test]
fn subsumption_is_per_counter() {
    use super::fingerprint::subsumes;
    assert!(subsumes(0, 0));
    assert!(subsumes(0x0101, 0x0111));
    assert!(!subsumes(0x0111, 0x0101));
    // Incomparable: one more cede on one vcpu, one more prod on another.
    assert!(!subsumes(0x0100_0010, 0x0010_0100));
    assert!(!subsumes(0x0010_0100, 0x0100_0010));
    assert!(subsumes(0x7777, 0x7777));
    assert!(!subsumes(0x7000, 0x0777));
}

/// The visited set's shards (one per worker, rounded up to a power of two)
/// keep the same states and find the same counterexample whatever their
/// number: every state of a fingerprint goes to one shard, in order.
#[test]
fn workers_and_shards_do_not_change_the_result() {
    let run = |variant: Variant, fault: Option<Fault>, workers: usize| {
        let mut o = ExploreOptions::new(variant, 4);
        o.fault = fault;
        o.workers = workers;
        explore(&o).unwrap()
    };
    for variant in [Variant::Seed, Variant::Modern] {
        let one = run(variant, None, 1);
        assert!(one.complete() && one.violation.is_none());
        for workers in [2, 3, 4] {
            let many = run(variant, None, workers);
            assert_eq!(
                (one.states, one.transitions),
                (many.states, many.transitions),
                "{variant} {workers}"
            );
        }
    }
    let fault = Some(Fault::ALL[0]);
    let variant = Fault::ALL[0].variants()[0];
    let one = run(variant, fault, 1);
    let two = run(variant, fault, 2);
    assert!(one.violation.is_some(), "{fault:?}");
    assert_eq!(
        one.violation.map(|v| v.invariant),
        two.violation.map(|v| v.invariant)
    );
    assert_eq!(one.counterexample, two.counterexample);
}
