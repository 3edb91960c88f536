//! The reductions against the full search: the same reachable states (up to
//! a permutation of the secondary threads and the bound counters), the same
//! verdicts, and counterexamples as short.

use std::collections::HashSet;

use super::candidates::{candidates, doorbell_candidates, may_prod};
use super::fingerprint::{forget_dead, plain_key, symmetric_key, Dead};
use super::search::may_cede;
use super::{explore, explore_recording, ExploreOptions};
use crate::consts::Variant;
use crate::model::state::ThreadModel;
use crate::model::{Config, Event, Fault, State};

/// Options with every reduction off (the full search; the runner and the
/// order of start_thread are free, as in the symmetric search).
fn full(variant: Variant, n: u8) -> ExploreOptions {
    let mut o = ExploreOptions::new(variant, n);
    o.unreduced();
    o
}

/// The states expanded by a search, each as its class: the fingerprint of
/// its symmetry class without the bound counters, the dead values and
/// `arch.prodded` (which the reduced search sets only on the way to the
/// cede that reads it: see `prods_commute_and_show_in_no_snapshot`).
fn classes(o: &ExploreOptions) -> HashSet<u64> {
    let mut states: Vec<State> = Vec::new();
    let r = explore_recording(o, &mut |_| true, Some(&mut states)).unwrap();
    assert!(r.complete() && r.violation.is_none(), "{:?}", r.violated());
    let cfg = Config::new(o.variant, o.threads, 0).unwrap();
    let chosen = (1u16 << o.threads) as u8 - 1;
    let chosen = if o.threads == 8 { 0xff } else { chosen };
    states
        .iter()
        .map(|s| {
            let mut s = *s;
            let live = may_cede(o, &s);
            forget_dead(&mut s, o.threads as usize, live);
            for v in s.vcpus.iter_mut().flatten() {
                v.prodded = 0;
            }
            symmetric_key(&cfg, &s, chosen, Dead::NONE, None, false).fp
        })
        .collect()
}

/// (variant, threads, fault): every variant without a fault and with each
/// fault it can have at N = 2, and seed and modern without one at N = 4.
fn every_variant_and_fault_at_2_and_plain_4() -> Vec<(Variant, u8, Option<Fault>)> {
    let mut cases = Vec::new();
    for variant in [Variant::Seed, Variant::Modern, Variant::Prepatch] {
        cases.push((variant, 2, None));
        for &fault in Fault::ALL.iter().filter(|f| f.variants().contains(&variant)) {
            cases.push((variant, 2, Some(fault)));
        }
    }
    cases.push((Variant::Seed, 4, None));
    cases.push((Variant::Modern, 4, None));
    cases
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
            reduced.merge_dead = true;
            reduced.defer_prods = true;
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
                reduced.merge_dead = true;
                reduced.defer_prods = true;
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
    // One 3-bit field per counter, values 0..=3 (octal digits below).
    assert!(subsumes(0, 0));
    assert!(subsumes(0o0101, 0o0111));
    assert!(!subsumes(0o0111, 0o0101));
    // Incomparable: one more cede on one vcpu, one more prod on another.
    assert!(!subsumes(0o0100_0010, 0o0010_0100));
    assert!(!subsumes(0o0010_0100, 0o0100_0010));
    assert!(subsumes(0o3333, 0o3333));
    assert!(!subsumes(0o3000, 0o0333));
    // All 17 fields of an 8-thread core (doorbells, then cedes and prods per vcpu).
    let all = (0..17).fold(0u64, |u, i| u | 3 << (3 * i));
    assert!(subsumes(all >> 3, all));
    assert!(!subsumes(all, all >> 3));
    assert!(subsumes(1 << 48, all) && !subsumes(2 << 48, 1 << 48));
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

/// What lets an H_PROD wait for the cede that reads it
/// (`ExploreOptions::defer_prods`), on every state of the full search (each
/// variant, with and without each fault, at N = 2; seed and modern at N = 4
/// with one cede and no doorbell) and every prod legal there: the prod
/// changes no snapshot and no history verdict; every other legal event
/// commutes with it (same effects, same verdicts, same state whichever
/// comes first), the cede of the prodded vcpu apart; and that cede, right
/// after the prod, returns at once and leaves the state as it was but for
/// the bound counters.
#[test]
fn prods_commute_and_show_in_no_snapshot() {
    let mut cases = every_variant_and_fault_at_2_and_plain_4();
    cases.retain(|&(_, n, _)| n <= 4);
    let (mut commuted, mut cancelled) = (0usize, 0usize);
    for (variant, n, fault) in cases {
        let mut o = full(variant, n);
        o.fault = fault;
        if n == 4 {
            o.max_doorbells = 0;
            o.max_cedes = Some(1);
        }
        let mut states: Vec<State> = Vec::new();
        explore_recording(&o, &mut |_| true, Some(&mut states)).unwrap();
        let mut cfg = Config::new(variant, n, 0).unwrap();
        cfg.fault = fault;
        let chosen = if n == 8 { 0xff } else { (1u8 << n) - 1 };
        let at = |what: &str, e: &Event| format!("{variant} N={n} {fault:?}: {what} {e}");
        for s in &states {
            let mut events = Vec::new();
            let mut opts = o.clone();
            opts.max_prods = 0;
            candidates(&cfg, &opts, s, chosen, &mut events);
            let mut doorbells = Vec::new();
            doorbell_candidates(&cfg, &o, s, &mut doorbells);
            events.extend(doorbells);
            for i in (0..n).filter(|&i| may_prod(&cfg, &o, s, i as usize)) {
                let prod = Event::Prod { vcpu: i as u32 };
                let Some((m, fx)) = cfg.after(s, prod) else {
                    continue;
                };
                assert_eq!(
                    cfg.view(&m, None),
                    cfg.view(s, None),
                    "{}",
                    at("view after", &prod)
                );
                assert_eq!(
                    cfg.history_check(s, &m, &prod, &fx),
                    Vec::new(),
                    "{}",
                    at("verdict of", &prod)
                );
                for &e in &events {
                    let ceder =
                        matches!(e, Event::Cede { thread } if s.threads[thread as usize].running == Some(i));
                    match (cfg.after(s, e), cfg.after(&m, e)) {
                        (None, None) => {}
                        (Some((a, fa)), Some((b, fb))) if ceder => {
                            // kvm_cede_prodded: back in the guest at once.
                            let mut back = b;
                            let (v, w) = (
                                back.vcpus[i as usize].as_mut().unwrap(),
                                s.vcpus[i as usize].unwrap(),
                            );
                            assert_eq!(
                                (v.cedes, v.prods),
                                (w.cedes + 1, w.prods + 1),
                                "{}",
                                at("counters", &e)
                            );
                            (v.cedes, v.prods) = (w.cedes, w.prods);
                            assert_eq!(back, *s, "{}", at("the prodded", &e));
                            assert_eq!(
                                cfg.history_check(&m, &b, &e, &fb),
                                Vec::new(),
                                "{}",
                                at("verdict of", &e)
                            );
                            let _ = (a, fa);
                            cancelled += 1;
                        }
                        (Some((a, fa)), Some((b, fb))) => {
                            assert_eq!(fa, fb, "{}", at("effects of", &e));
                            assert_eq!(
                                cfg.history_check(s, &a, &e, &fa),
                                cfg.history_check(&m, &b, &e, &fb),
                                "{}",
                                at("verdicts of", &e)
                            );
                            let (after, _) = cfg
                                .after(&a, prod)
                                .unwrap_or_else(|| panic!("{}", at("prod after", &e)));
                            assert_eq!(after, b, "{}", at("order of prod and", &e));
                            assert_eq!(cfg.view(&a, None), cfg.view(&b, None), "{}", at("view after", &e));
                            commuted += 1;
                        }
                        _ => panic!("{}", at("legal with the prod or without it only:", &e)),
                    }
                }
            }
        }
    }
    // Not vacuous.
    assert!(commuted > 10_000 && cancelled > 100, "{commuted} {cancelled}");
}

/// The values the key forgets are dead: a state and the same state with
/// them forgotten have the same snapshot, offer the same events, and each
/// event has the same effects, the same history verdicts and successors
/// that are again equal once forgotten.  So the two have the same futures
/// (an induction on the path) and merging them loses no violation.  Checked
/// on every state the full search reaches (each variant, with and without
/// each fault, at N = 2; seed and modern at N = 4 with the smaller bounds).
#[test]
fn forgotten_values_are_never_read() {
    let mut checked = 0usize;
    let cases = every_variant_and_fault_at_2_and_plain_4();
    for (variant, n, fault) in cases {
        let mut o = full(variant, n);
        o.fault = fault;
        if n == 4 {
            o.max_doorbells = 0;
            o.max_prods = 0;
        }
        let mut states: Vec<State> = Vec::new();
        explore_recording(&o, &mut |_| true, Some(&mut states)).unwrap();
        let mut cfg = Config::new(variant, n, 0).unwrap();
        cfg.fault = fault;
        let chosen = if n == 8 { 0xff } else { (1u8 << n) - 1 };
        let forget = |s: &State| {
            let mut f = *s;
            forget_dead(&mut f, n as usize, may_cede(&o, s));
            f
        };
        let offered = |s: &State| {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            candidates(&cfg, &o, s, chosen, &mut a);
            doorbell_candidates(&cfg, &o, s, &mut b);
            a.extend(b);
            a
        };
        for s in &states {
            let f = forget(s);
            assert_eq!(cfg.view(s, None), cfg.view(&f, None), "{variant} {fault:?}");
            let events = offered(s);
            assert_eq!(events, offered(&f), "{variant} {fault:?} {s:?}");
            for e in events {
                match (cfg.after(s, e), cfg.after(&f, e)) {
                    (None, None) => {}
                    (Some((a, fa)), Some((b, fb))) => {
                        assert_eq!(fa, fb, "{variant} {fault:?} {e}");
                        assert_eq!(
                            cfg.history_check(s, &a, &e, &fa),
                            cfg.history_check(&f, &b, &e, &fb),
                            "{variant} {fault:?} {e}"
                        );
                        assert_eq!(forget(&a), forget(&b), "{variant} {fault:?} {e} {s:?}");
                    }
                    _ => panic!("{variant} {fault:?}: {e} legal in only one of {s:?} and {f:?}"),
                }
            }
            checked += (s != &f) as usize;
        }
    }
    // Not vacuous: many states had a dead value set.
    assert!(checked > 1000, "{checked}");
}

/// The keys read through the dead-value masks equal the keys of the state
/// with its dead values cleared, a successor's secondary keys computed next
/// to its parent (reusing the parent's for unchanged threads, with or
/// without the event's `touched` entries) equal those computed alone, and
/// an event changes no entry outside `touched`: on every transition of the
/// default search at N = 4, without a fault and with each, and with
/// VCORE_EXIT_REQ (modern).
#[test]
fn keys_next_to_a_parent_and_through_masks_are_exact() {
    use super::fingerprint::{secondary_keys, touched, Base, Carried};
    let mut compared = 0usize;
    let mut cases = Vec::new();
    for variant in [Variant::Seed, Variant::Modern] {
        cases.push((variant, None, false));
        for &f in Fault::ALL.iter().filter(|f| f.variants().contains(&variant)) {
            cases.push((variant, Some(f), false));
        }
    }
    cases.push((Variant::Modern, None, true));
    for (variant, fault, exit_request) in cases {
        let mut o = ExploreOptions::new(variant, 4);
        o.fault = fault;
        o.exit_request = exit_request;
        let mut states: Vec<State> = Vec::new();
        explore_recording(&o, &mut |_| true, Some(&mut states)).unwrap();
        let mut cfg = Config::new(variant, 4, 0).unwrap();
        cfg.fault = fault;
        let chosen = 0x0f;
        let dead = |s: &State| Dead::of(s, 4, may_cede(&o, s));
        let (mut events, mut doorbells) = (Vec::new(), Vec::new());
        for s in &states {
            let ds = dead(s);
            let carried = Carried::of(&cfg, s, chosen, ds, true, None, None);
            let base = Base::new(s, &carried);
            candidates(&cfg, &o, s, chosen, &mut events);
            doorbell_candidates(&cfg, &o, s, &mut doorbells);
            for &e in events.iter().chain(&doorbells) {
                let Some((c, _)) = cfg.after(s, e) else { continue };
                let dc = dead(&c);
                let changed = touched(&e, s, &c);
                if let Some(m) = changed {
                    for t in (0..4).filter(|t| m & (1 << t) == 0) {
                        // Only its IPI flag may have changed (the masks see it).
                        let (a, b) = (s.threads[t], c.threads[t]);
                        assert_eq!(
                            ThreadModel { ipi: b.ipi, ..a },
                            b,
                            "{variant} {fault:?} {e}: thread {t}"
                        );
                        assert_eq!(s.vcpus[t], c.vcpus[t], "{variant} {fault:?} {e}: vcpu {t}");
                    }
                }
                let alone = secondary_keys(&cfg, &c, chosen, dc, None, None);
                for t in [None, changed] {
                    assert_eq!(
                        secondary_keys(&cfg, &c, chosen, dc, Some(&base), t),
                        alone,
                        "{variant} {fault:?} {e}"
                    );
                }
                let mut f = c;
                forget_dead(&mut f, 4, may_cede(&o, &c));
                assert_eq!(
                    symmetric_key(&cfg, &c, chosen, dc, alone, false),
                    symmetric_key(&cfg, &f, chosen, Dead::NONE, None, false),
                    "{variant} {e}"
                );
                assert_eq!(
                    plain_key(&cfg, &c, dc, false),
                    plain_key(&cfg, &f, Dead::NONE, false)
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 100_000, "{compared}");
}

/// A fault's counterexample that the variant's own bug explains says so:
/// prepatch's doorbell misdelivery comes before what in-guest-not-cleared
/// breaks; a seed fault's counterexample needs the fault.
#[test]
fn a_counterexample_is_replayed_without_the_fault() {
    let own = explore(&ExploreOptions::new(Variant::Prepatch, 4)).unwrap();
    let mut o = ExploreOptions::new(Variant::Prepatch, 4);
    o.fault = Some(Fault::InGuestNotCleared);
    let r = explore(&o).unwrap();
    assert_eq!(r.counterexample, own.counterexample);
    let v = own.violation.unwrap();
    assert_eq!(
        r.without_fault,
        Some((v.invariant, own.counterexample.unwrap().len()))
    );
    let mut o = ExploreOptions::new(Variant::Seed, 2);
    o.fault = Some(Fault::StartBeforeGrab);
    let r = explore(&o).unwrap();
    assert!(r.violation.is_some() && r.without_fault.is_none());
    assert!(explore(&ExploreOptions::new(Variant::Seed, 2))
        .unwrap()
        .without_fault
        .is_none());
}

/// Two states with the same `view_key` have snapshots equal but for the
/// doorbell registers (so the explorer may judge the second with the
/// doorbell checks alone), and the key does see every other field; the same
/// for `whole_key` and the whole snapshot: on every
/// state the full search reaches at N = 2 (every variant, every fault) and
/// the default search at N = 4 (seed, modern), grouped by key, the
/// snapshots with DPDES and vc->dpdes cleared are equal within each group,
/// and states whose cleared snapshots differ have different keys.
#[test]
fn view_keys_cover_the_snapshot() {
    use super::clean::{view_key, whole_key};
    use crate::view::Snapshot;
    use std::collections::HashMap;
    let cases = every_variant_and_fault_at_2_and_plain_4();
    let mut shared = 0usize;
    for (variant, n, fault) in cases {
        let mut o = if n == 2 {
            full(variant, n)
        } else {
            ExploreOptions::new(variant, n)
        };
        o.fault = fault;
        let mut states: Vec<State> = Vec::new();
        explore_recording(&o, &mut |_| true, Some(&mut states)).unwrap();
        let mut cfg = Config::new(variant, n, 0).unwrap();
        cfg.fault = fault;
        let cleared = |s: &State| {
            let mut v = cfg.view(s, None);
            v.threads.iter_mut().for_each(|t| t.dpdes = None);
            v.vcores.iter_mut().for_each(|c| c.dpdes = None);
            v
        };
        let mut by_key: HashMap<u64, Snapshot> = HashMap::new();
        let mut by_view: HashMap<Snapshot, u64> = HashMap::new();
        let mut by_whole: HashMap<u64, Snapshot> = HashMap::new();
        let mut whole_by_view: HashMap<Snapshot, u64> = HashMap::new();
        for s in &states {
            let (w, v) = (whole_key(view_key(&cfg, s), s), cfg.view(s, None));
            assert_eq!(
                by_whole.entry(w).or_insert(v.clone()),
                &v,
                "{variant} {fault:?}: one whole key, two snapshots"
            );
            assert_eq!(
                *whole_by_view.entry(v).or_insert(w),
                w,
                "{variant} {fault:?}: one snapshot, two whole keys"
            );
            let (k, v) = (view_key(&cfg, s), cleared(s));
            match by_key.get(&k) {
                Some(seen) => {
                    assert_eq!(seen, &v, "{variant} {fault:?}: one key, two snapshots");
                    shared += 1;
                }
                None => {
                    by_key.insert(k, v.clone());
                }
            }
            let other = *by_view.entry(v).or_insert(k);
            assert_eq!(other, k, "{variant} {fault:?}: one snapshot, two keys");
        }
    }
    // Not vacuous: many states share a snapshot with another (a doorbell
    // pending or not, the model's own fields).
    assert!(shared > 1000, "{shared}");
}
