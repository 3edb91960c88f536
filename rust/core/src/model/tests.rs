use super::*;
use crate::explore::{explore, ExploreOptions};

fn ev(text: &str) -> Event {
    text.parse().unwrap()
}

fn model(variant: Variant, n: u8, vcpus: &[u32]) -> Model {
    let mut m = Model::new(variant, n).unwrap();
    for &v in vcpus {
        m.apply(Event::CreateVcpu { vcpu: v }).unwrap();
    }
    m
}

fn run(m: &mut Model, events: &[&str]) {
    for e in events {
        let step = m.apply(ev(e)).unwrap_or_else(|err| panic!("{err}"));
        assert!(step.violations.is_empty(), "{e}: {:?}", step.violations);
    }
}

fn hs(m: &Model, t: usize) -> crate::view::Hstate {
    m.snapshot().threads[t].kvm_hstate.clone()
}

fn vc(m: &Model) -> crate::view::Vcore {
    m.snapshot().vcores[0].clone()
}

/// A seed run step by step (e0b7ec058c0e): N = 4, vcpus 1 and 2, thread 0 without a vcpu.
/// (Long: one kernel step after another, each checked where it happens.)
#[test]
fn worked_example_seed_3_11() {
    let mut m = model(Variant::Seed, 4, &[1, 2]);
    let v1 = vcpu_addr(1);
    let v2 = vcpu_addr(2);
    assert_eq!(hs(&m, 0).hwthread_state, 0);
    for t in 1..4 {
        assert_eq!(hs(&m, t).hwthread_state, 1);
        assert_eq!(hs(&m, t).hwthread_req, 0);
    }
    run(&mut m, &["runnable(1)", "runnable(2)", "run_core(runner=1)"]);
    // run_core reset + grab
    let v = vc(&m);
    assert_eq!(
        (v.n_woken, v.nap_count, v.entry_exit_count),
        (Some(0), Some(0), Some(0))
    );
    assert_eq!((v.vcore_state, v.in_guest, v.napping_threads), (2, 0, 0));
    for t in 1..4 {
        assert_eq!((hs(&m, t).hwthread_req, hs(&m, t).kvm_vcpu), (1, 0));
    }
    // start_thread x2
    run(&mut m, &["start_thread(1)", "start_thread(2)"]);
    assert_eq!((vc(&m).pcpu, vc(&m).n_woken), (0, Some(2)));
    assert_eq!(
        (hs(&m, 1).kvm_vcpu, hs(&m, 1).kvm_vcore, hs(&m, 1).ptid),
        (v1, VCORE_ADDR, 1)
    );
    assert_eq!(
        (hs(&m, 2).kvm_vcpu, hs(&m, 2).kvm_vcore, hs(&m, 2).ptid),
        (v2, VCORE_ADDR, 2)
    );
    assert!(m.state.threads[1].ipi && m.state.threads[2].ipi && !m.state.threads[3].ipi);
    // thread-0 fixup, RUNNING
    run(&mut m, &["vcore_entry"]);
    assert_eq!(vc(&m).vcore_state, 3);
    assert_eq!(
        (hs(&m, 0).kvm_vcore, hs(&m, 0).ptid, hs(&m, 0).kvm_vcpu),
        (VCORE_ADDR, 0, 0)
    );
    // T0 kvmppc_hv_entry + switch
    run(&mut m, &["enter(0)", "switch_in"]);
    assert_eq!((vc(&m).entry_exit_count, vc(&m).in_guest), (Some(1), 1));
    assert_eq!(hs(&m, 0).in_guest, KVM_GUEST_MODE_HOST_HV);
    assert_eq!(m.snapshot().threads[0].lpidr, Some(GUEST_LPID));
    // T0 no_guest nap
    run(&mut m, &["guest_entry(0)"]);
    assert_eq!(vc(&m).napping_threads, 1);
    assert_eq!((hs(&m, 0).napping, hs(&m, 0).hwthread_req), (NAPPING_NOVCPU, 1));
    // T1/T2 wake
    run(&mut m, &["enter(1)"]);
    assert_eq!(vc(&m).entry_exit_count, Some(2));
    assert_eq!((hs(&m, 1).hwthread_state, hs(&m, 1).in_guest), (2, 4));
    run(&mut m, &["guest_entry(1)", "enter(2)", "guest_entry(2)"]);
    assert_eq!(vc(&m).entry_exit_count, Some(3));
    assert_eq!((hs(&m, 1).in_guest, hs(&m, 2).in_guest), (3, 3));
    assert_eq!(hs(&m, 3).hwthread_state, 1);
    // T1 exits (hcall to QEMU): first exiter, IPI to T0; T2 takes the HDEC
    run(&mut m, &["exit(thread=1, trap=0xc00)"]);
    assert_eq!(vc(&m).entry_exit_count, Some(0x103));
    assert!(m.state.threads[0].ipi);
    assert_eq!(hs(&m, 1).in_guest, 4);
    assert!(m.apply(ev("tail(1)")).is_err(), "T1 waits for in_guest == 0");
    run(&mut m, &["exit(2)"]);
    assert_eq!(vc(&m).entry_exit_count, Some(0x203));
    // T0 wakes, exits, napping bit 0 stays set
    run(&mut m, &["wake(0)"]);
    assert_eq!(vc(&m).entry_exit_count, Some(0x303));
    assert_eq!(vc(&m).napping_threads, 1);
    assert_eq!(
        (
            hs(&m, 0).napping,
            hs(&m, 0).hwthread_req,
            hs(&m, 0).hwthread_state
        ),
        (0, 0, 2)
    );
    run(&mut m, &["switch_out"]);
    assert_eq!((vc(&m).in_guest, hs(&m, 0).in_guest), (0, 0));
    assert_eq!(m.snapshot().threads[0].lpidr, Some(HOST_LPID));
    // tails
    run(&mut m, &["tail(1)"]);
    assert_eq!(
        (hs(&m, 1).in_guest, hs(&m, 1).kvm_vcpu, hs(&m, 1).hwthread_state),
        (0, 0, 1)
    );
    assert_eq!(vc(&m).nap_count, Some(1));
    run(&mut m, &["tail(2)"]);
    assert_eq!(vc(&m).nap_count, Some(2));
    // C side
    run(&mut m, &["release"]);
    assert_eq!(vc(&m).vcore_state, 4);
    for t in 0..4 {
        assert_eq!((hs(&m, t).hwthread_req, hs(&m, t).kvm_vcpu), (0, 0));
    }
    // kvm_vcore and ptid are not cleared by the seed release: stale.
    assert_eq!((hs(&m, 1).kvm_vcore, hs(&m, 1).ptid), (VCORE_ADDR, 1));
    run(&mut m, &["finish"]);
    assert_eq!(vc(&m).vcore_state, 0);
    assert_eq!(vc(&m).runner, Some(0));
    // vcpu 1 went to userspace with its hcall; vcpu 2 stays runnable.
    assert_eq!(vc(&m).n_runnable, 1);
    assert_eq!(m.snapshot().vcpus[0].state, Some(KVMPPC_VCPU_BUSY_IN_HOST));
}

#[test]
fn illegal_events_are_errors_and_change_nothing() {
    let mut m = model(Variant::Modern, 4, &[0, 1]);
    let before = m.state;
    for text in [
        "run_core(runner=0)", // not runnable
        "enter(1)",
        "switch_in",
        "guest_entry(0)",
        "cede(1)",
        "wake(0)",
        "exit(0)",
        "switch_out",
        "tail(1)",
        "release",
        "finish",
        "return_to_idle(1)",
        "start_thread(0)",
        "vcore_entry",
        "doorbell(vcpu=0, thread=1)",
        "runnable(9)",
        "enter(7)",
        "create_vcpu(0)",
        "create_vcpu(5)",
        "create_vcpu(4294967295)",
        "runnable(4294967295)",
    ] {
        let err = m.apply(ev(text)).unwrap_err();
        assert!(err.to_string().starts_with("illegal event"), "{text}: {err}");
        assert_eq!(m.state, before, "{text} changed the state");
    }
    assert!(m
        .apply_text("fly(1)")
        .unwrap_err()
        .reason
        .contains("unknown event name"));
    assert!(Model::new(Variant::Seed, 0).is_err());
    assert!(Model::new(Variant::Seed, 9).is_err());
}

#[test]
fn modern_run_with_cede_prod_and_latecomer() {
    let mut m = model(Variant::Modern, 4, &[0, 1, 2, 3]);
    run(
        &mut m,
        &[
            "runnable(1)",
            "runnable(2)",
            "run_core(runner=1)",
            "start_thread(1)",
            "start_thread(2)",
            "vcore_entry",
            "enter(0)",
            "switch_in",
            "guest_entry(0)",
            "enter(1)",
            "guest_entry(1)",
        ],
    );
    // Modern: thread_cpu is the thread running the vcpu, cpu is thread 0.
    let v1 = &m.snapshot().vcpus[1];
    assert_eq!((v1.cpu, v1.thread_cpu), (0, Some(1)));
    assert_eq!(vc(&m).entry_exit_map, Some(0b11));
    // vcpu 0 joins late: thread 0 gets an IPI and runs it from its nap.
    run(&mut m, &["runnable(0)"]);
    assert!(m.state.threads[0].ipi);
    run(&mut m, &["wake(0)"]);
    assert_eq!(m.state.threads[0].phase, Phase::InGuest);
    assert_eq!(hs(&m, 0).in_guest, KVM_GUEST_MODE_GUEST_HV);
    // Prod then cede: returns at once.
    run(&mut m, &["prod(0)", "cede(0)"]);
    assert_eq!(m.state.threads[0].phase, Phase::InGuest);
    // Cede on thread 1 naps; then thread 0's cede would make every entered thread nap -> exit.
    run(&mut m, &["cede(1)"]);
    assert_eq!((hs(&m, 1).napping, hs(&m, 1).hwthread_req), (NAPPING_CEDE, 1));
    run(&mut m, &["cede(0)"]);
    assert_eq!(m.state.threads[0].phase, Phase::Exiting);
    // First exiter (not HDEC) IPIs every entered thread but itself.
    assert!(m.state.threads[1].ipi);
    assert_eq!(m.snapshot().vcpus[0].cpu, -1);
    // Thread 2 was started but has not entered: it will be too late.
    run(&mut m, &["wake(1)", "enter(2)"]);
    assert_eq!(m.state.threads[2].phase, Phase::TooLate);
    assert!(m.apply(ev("release")).is_err());
    run(&mut m, &["switch_out", "tail(1)"]);
    // Modern: VCORE_EXITING is set before kvmppc_wait_for_nap, visible while thread 2 finishes.
    run(&mut m, &["release"]);
    assert_eq!(vc(&m).vcore_state, 5);
    assert_eq!(hs(&m, 2).kvm_vcore, VCORE_ADDR);
    assert!(m.apply(ev("release")).is_err());
    assert!(m.apply(ev("finish")).is_err());
    run(&mut m, &["tail(2)", "release", "finish"]);
    for t in 0..4 {
        assert_eq!((hs(&m, t).kvm_vcore, hs(&m, t).hwthread_req), (0, 0));
    }
    assert_eq!(m.state.threads[1].phase, Phase::Spinning);
    run(&mut m, &["return_to_idle(1)", "return_to_idle(2)"]);
    assert_eq!(hs(&m, 1).hwthread_state, KVM_HWTHREAD_IN_IDLE);
    // A second run works from the stale state.
    run(
        &mut m,
        &[
            "run_core(runner=0)",
            "start_thread(0)",
            "start_thread(1)",
            "start_thread(2)",
            "vcore_entry",
        ],
    );
    assert_eq!(vc(&m).vcore_state, 4);
}

/// N = 2, vcpus 0 and 1, vcpu 1 the runner: a run up to vcpu 1's cede on
/// thread 1 while thread 0, without a vcpu, naps (so the cede becomes an exit).
const RUN_TO_CEDE: &[&str] = &[
    "runnable(1)",
    "run_core(runner=1)",
    "start_thread(1)",
    "vcore_entry",
    "enter(0)",
    "switch_in",
    "guest_entry(0)",
    "enter(1)",
    "guest_entry(1)",
    "cede(1)",
];

/// A vcpu that ceded and stays runnable after the run: the next runner
/// sleeps (VCORE_SLEEPING) until the vcpu has work again.
#[test]
fn ceded_vcore_sleeps_and_wakes() {
    for variant in [Variant::Seed, Variant::Modern] {
        let mut m = model(variant, 2, &[0, 1]);
        run(&mut m, RUN_TO_CEDE);
        // Thread 0 naps without a vcpu, so thread 1's cede turns into an exit.
        assert_eq!(m.state.threads[1].phase, Phase::Exiting);
        run(&mut m, &["wake(0)", "switch_out", "tail(1)", "release", "finish"]);
        assert_eq!(m.snapshot().vcpus[1].ceded, Some(1));
        assert_eq!(vc(&m).n_runnable, 1);
        let err = m.apply(ev("run_core(runner=1)")).unwrap_err();
        assert!(err.reason.contains("vcore_blocked"), "{err}");
        run(&mut m, &["vcore_blocked(runner=1)"]);
        let sleeping = variant.vcore_states().sleeping;
        assert_eq!(
            (vc(&m).vcore_state, vc(&m).runner),
            (sleeping, Some(vcpu_addr(1)))
        );
        assert!(m.apply(ev("run_core(runner=1)")).is_err());
        run(&mut m, &["vcore_wake(vcpu=1)"]);
        assert_eq!((vc(&m).vcore_state, vc(&m).runner), (0, Some(0)));
        run(&mut m, &["run_core(runner=1)"]);
    }
}

/// A vcpu prodded after its cede ended in an exit: at the next run the
/// modern kernel finds it woken (book3s_hv.c kvmppc_vcpu_woken, read in
/// kvmppc_run_vcpu's n_ceded loop and kvmppc_vcore_check_block): its cede
/// ends and the core runs, the vcore never sleeps.
#[test]
fn a_prod_after_the_run_wakes_the_ceded_vcpu_at_the_next() {
    let mut m = model(Variant::Modern, 2, &[0, 1]);
    run(&mut m, RUN_TO_CEDE);
    run(
        &mut m,
        &[
            "prod(vcpu=1)",
            "wake(0)",
            "switch_out",
            "tail(1)",
            "release",
            "finish",
        ],
    );
    assert_eq!(m.snapshot().vcpus[1].ceded, Some(1));
    let err = m.apply(ev("vcore_blocked(runner=1)")).unwrap_err();
    assert!(err.reason.contains("kvmppc_vcpu_woken"), "{err}");
    run(&mut m, &["run_core(runner=1)"]);
    assert_eq!(m.snapshot().vcpus[1].ceded, Some(0));
}

/// Modern, VCORE_EXIT_REQ before thread 0 entered: thread 0 is too late and
/// never switches the MMU; the started secondary exits without entering the guest.
#[test]
fn modern_exit_request_makes_thread_0_too_late() {
    let mut m = model(Variant::Modern, 2, &[0, 1]);
    run(
        &mut m,
        &[
            "runnable(1)",
            "run_core(runner=1)",
            "start_thread(1)",
            "vcore_entry",
            "enter(1)",
            "exit_request",
        ],
    );
    assert_eq!(vc(&m).entry_exit_map, Some(0x10002));
    assert!(m.state.threads[1].ipi);
    run(&mut m, &["enter(0)"]);
    assert_eq!(m.state.threads[0].phase, Phase::TooLate);
    assert!(m.apply(ev("switch_in")).is_err());
    run(&mut m, &["exit(1)", "switch_out"]);
    assert_eq!(m.state.switch_in, 0);
    assert_eq!(m.state.mmu, Mmu::Host);
    run(&mut m, &["tail(1)", "release", "finish"]);
    assert!(Model::new(Variant::Seed, 2)
        .unwrap()
        .apply(ev("exit_request"))
        .is_err());
}

#[test]
fn prepatch_misdelivers_a_doorbell() {
    let mut m = model(Variant::Prepatch, 4, &[0, 1, 2, 3]);
    for e in [
        "runnable(2)",
        "run_core(runner=2)",
        "start_thread(2)",
        "vcore_entry",
        "enter(0)",
        "switch_in",
        "guest_entry(0)",
    ] {
        let step = m.apply(ev(e)).unwrap();
        // The checker sees the misplaced vcpu in the PACA already (static 29).
        assert!(
            step.violations.iter().all(|v| v.invariant == INV_DOORBELL),
            "{e}: {:?}",
            step.violations
        );
    }
    assert_eq!(m.snapshot().vcpus[2].ptid, 0);
    // vcpu 2 runs on thread 0; its guest signals thread 0 meaning vcpu 0,
    // and takes the doorbell itself.
    m.apply(ev("doorbell(vcpu=2, thread=0)")).unwrap();
    let step = m.apply(ev("take_doorbell(thread=0)")).unwrap();
    assert_eq!(step.effects.doorbell_taken, Some(2));
    assert!(
        step.violations.iter().any(|v| v.invariant == INV_DOORBELL),
        "{:?}",
        step.violations
    );
    // The same doorbell on the seed waits for vcpu 0 (thread 0 has none).
    let mut s = model(Variant::Seed, 4, &[0, 1, 2, 3]);
    run(
        &mut s,
        &[
            "runnable(2)",
            "run_core(runner=2)",
            "start_thread(2)",
            "vcore_entry",
            "enter(0)",
            "switch_in",
        ],
    );
    run(
        &mut s,
        &[
            "guest_entry(0)",
            "enter(2)",
            "guest_entry(2)",
            "doorbell(vcpu=2, thread=0)",
        ],
    );
    assert!(s.apply(ev("take_doorbell(thread=0)")).is_err());
    assert_eq!(s.state.dpdes, 1);
}

#[test]
fn explorer_small_cores() {
    // N = 4 and 8 run in the Python tests and the benchmark (release build).
    for n in [1u8, 2] {
        for variant in [Variant::Seed, Variant::Modern] {
            let r = explore(&ExploreOptions::new(variant, n)).unwrap();
            assert!(
                r.violation.is_none(),
                "{variant} N={n}: {:?} {:?}",
                r.violated(),
                r.counterexample
                    .map(|t| t.iter().map(|e| e.to_string()).collect::<Vec<_>>())
            );
            assert!(r.states > 10 && r.finished_runs > 0 && r.complete());
        }
    }
    let r = explore(&ExploreOptions::new(Variant::Prepatch, 4)).unwrap();
    assert_eq!(r.violation.as_ref().unwrap().invariant, INV_DOORBELL);
    let trace = r.counterexample.unwrap();
    // The shortest: a msgsndp to a thread whose vcpu prepatch placed on
    // another thread (8 events), or one taken by the wrong vcpu.
    assert!(trace.len() <= 9, "{trace:?}");
    assert!(matches!(
        trace.last(),
        Some(Event::Doorbell { .. } | Event::TakeDoorbell { .. })
    ));
}

/// The model and its checker agree on every configuration the model
/// accepts: every thread count the kernel allows (1, 2, 4, 8), vcores at the
/// bottom, in the middle and at the top of the vcpu id space (first_vcpuid
/// = id & ~(N - 1), kvmppc_core_vcpu_create_hv), and every subset of the
/// vcore's vcpus (all subsets up to N = 4, every 32nd one at N = 8):
/// exhaustively for N <= 2, by random legal walks above.  No state of seed
/// or modern violates anything without a fault.
#[test]
fn model_and_checker_agree_on_every_accepted_configuration() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for variant in [Variant::Seed, Variant::Modern] {
        for n in Config::THREAD_COUNTS {
            let vcores = [0, 1, (MAX_VCPU_ID / n as u32) / 2, MAX_VCPU_ID / n as u32 - 1];
            for subset in (1u32..1 << n).filter(|m| n < 8 || m % 32 == 1) {
                for &k in &vcores {
                    let ids: Vec<u32> = (0..n as u32)
                        .filter(|i| subset & 1 << i != 0)
                        .map(|i| k * n as u32 + i)
                        .collect();
                    if n <= 2 {
                        let mut o = ExploreOptions::new(variant, n);
                        o.vcpus = Some(ids.clone());
                        let r = explore(&o).unwrap();
                        assert!(
                            r.violation.is_none() && r.complete(),
                            "{variant} N={n} {ids:?}: {:?}",
                            r.violated()
                        );
                        continue;
                    }
                    let mut m = model(variant, n, &ids);
                    for _ in 0..120 {
                        let enabled = m.enabled();
                        if enabled.is_empty() {
                            break;
                        }
                        let e = enabled[(rnd() % enabled.len() as u64) as usize];
                        let step = m.apply(e).unwrap();
                        assert!(
                            step.violations.is_empty(),
                            "{variant} N={n} {ids:?} {e}: {:?}\n{:?}",
                            step.violations,
                            m.trace
                        );
                    }
                }
            }
        }
    }
}

/// Thread counts the kernel cannot run are refused (kvmhv_set_smt_mode).
#[test]
fn only_real_thread_counts() {
    for n in [0u8, 3, 5, 6, 7, 9, 16] {
        let err = Model::new(Variant::Modern, n).unwrap_err();
        assert!(err.reason.contains("1, 2, 4 or 8"), "{err}");
    }
}

/// A deterministic random walk over legal events never panics, and every
/// state of seed/modern satisfies every invariant.
#[test]
fn random_walks_hold() {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for variant in Variant::ALL {
        for n in [1u8, 2, 4, 8] {
            for _ in 0..20 {
                let mut m = Model::new(variant, n).unwrap();
                for _ in 0..300 {
                    let enabled = m.enabled();
                    // Random (often illegal) event texts must fail cleanly.
                    let _ = m.clone().apply_text(&format!("enter({})", rnd() % 10));
                    if enabled.is_empty() {
                        break;
                    }
                    let e = enabled[(rnd() % enabled.len() as u64) as usize];
                    let step = m.apply(e).unwrap();
                    if variant != Variant::Prepatch {
                        assert!(
                            step.violations.is_empty(),
                            "{variant} N={n} {e}: {:?}\n{:?}",
                            step.violations,
                            m.trace
                        );
                    }
                }
            }
        }
    }
}

/// Prints explorer sizes and times (cargo test --release -- --ignored --nocapture).
#[test]
#[ignore]
fn explorer_sizes() {
    for n in [2u8, 4, 8] {
        for variant in Variant::ALL {
            let mut o = ExploreOptions::new(variant, n);
            if let Ok(v) = std::env::var("PV_CHECK") {
                o.check_invariants = v == "1";
            }
            if let Ok(v) = std::env::var("PV_MAXCEDES") {
                o.max_cedes = v.parse().ok();
            }
            if n == 8 {
                if let Ok(v) = std::env::var("PV_MAXSTATES") {
                    o.max_states = v.parse().unwrap_or(o.max_states);
                }
            }
            let r = explore(&o).unwrap();
            println!(
                "{variant} N={n}: {} states {} transitions {:.3}s depth {} complete {} violated {:?}",
                r.states,
                r.transitions,
                r.seconds,
                r.depth,
                r.complete(),
                r.violated()
            );
        }
    }
}

#[test]
#[ignore]
fn cost_of_checks() {
    let mut m = model(Variant::Modern, 8, &[0, 1, 2, 3, 4, 5, 6, 7]);
    for e in [
        "runnable(1)",
        "runnable(2)",
        "run_core(runner=1)",
        "start_thread(1)",
        "start_thread(2)",
        "vcore_entry",
        "enter(0)",
        "switch_in",
        "guest_entry(0)",
        "enter(1)",
    ] {
        m.apply(ev(e)).unwrap();
    }
    let prev = m.snapshot().clone();
    m.apply(ev("guest_entry(1)")).unwrap();
    let s = m.state;
    let cfg = m.config;
    let n = 100_000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(cfg.view(&s, Some("x")));
    }
    println!("view {:.2} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
    let v = cfg.view(&s, Some("x"));
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(crate::invariants::check_snapshot(&v));
    }
    println!(
        "check_snapshot {:.2} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(crate::invariants::check_step(&prev, &v));
    }
    println!("check_step {:.2} us", t.elapsed().as_secs_f64() * 1e6 / n as f64);
}

/// Each deliberate bug is caught by the explorer (so "all invariants hold"
/// for the real rules is not vacuous).
#[test]
fn explorer_catches_injected_faults() {
    for variant in [Variant::Seed, Variant::Modern] {
        for &fault in crate::model::Fault::ALL {
            if !fault.variants().contains(&variant) {
                continue;
            }
            let mut o = ExploreOptions::new(variant, 2);
            o.fault = Some(fault);
            let r = explore(&o).unwrap();
            let v = r
                .violation
                .unwrap_or_else(|| panic!("{variant} {fault:?} not caught"));
            println!(
                "{variant} {}: {} in {} events",
                fault.name(),
                v.message,
                r.counterexample.unwrap().len()
            );
        }
    }
}
