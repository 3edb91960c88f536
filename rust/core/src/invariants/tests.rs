use super::ctx::Ctx;
use super::step::vcore_state_step_ok;
use super::*;
use crate::consts::*;
use crate::view::{Hstate, KvmArch, Snapshot, Thread, Vcore, Vcpu};

const VC: u64 = 0xc000_0000_1234_0000;
const KVMP: u64 = 0xc000_0000_5678_0000;

fn vcpu_addr(id: u32) -> u64 {
    0xc000_0000_9000_0000 + id as u64 * 0x2000
}

/// Modern, 4 threads, vcpus `ids` executing the guest on thread = id;
/// thread 0 naps with NAPPING_NOVCPU when it has no vcpu.
fn running(ids: &[u32]) -> Snapshot {
    let mut threads = Vec::new();
    for t in 0..4u32 {
        let has = ids.contains(&t);
        threads.push(Thread {
            cpu: t,
            hw_cpu_id: 8 + t,
            lpidr: Some(1),
            sdr1: Some(0x3f00),
            kvm_hstate: Hstate {
                kvm_vcpu: if has { vcpu_addr(t) } else { 0 },
                kvm_vcore: if has || t == 0 { VC } else { 0 },
                ptid: t as u8,
                hwthread_req: 1,
                hwthread_state: if t == 0 {
                    KVM_HWTHREAD_IN_KERNEL
                } else if has {
                    KVM_HWTHREAD_IN_KVM
                } else {
                    KVM_HWTHREAD_IN_IDLE
                },
                napping: if t == 0 && !has { NAPPING_NOVCPU } else { 0 },
                in_guest: if has {
                    KVM_GUEST_MODE_GUEST_HV
                } else if t == 0 {
                    KVM_GUEST_MODE_HOST_HV
                } else {
                    0
                },
            },
            ..Default::default()
        });
    }
    let entered: u32 = 1 | ids.iter().map(|i| 1u32 << i).fold(0, |a, b| a | b);
    Snapshot {
        version: None,
        tb: None,
        tb_freq: None,
        variant: Variant::Modern,
        threads_per_core: 4,
        stop: None,
        threads,
        vcores: vec![Vcore {
            addr: VC,
            first_vcpuid: 0,
            pcpu: 0,
            num_threads: 4,
            n_runnable: ids.len() as u32,
            vcore_state: MODERN_VCORE_STATES.running,
            in_guest: 1,
            entry_exit_map: Some(entered),
            entry_exit_count: None,
            napping_threads: if ids.contains(&0) { 0 } else { 1 },
            runner: Some(vcpu_addr(ids[0])),
            n_woken: None,
            nap_count: None,
            kvm: Some(KVMP),
            ..Default::default()
        }],
        vcpus: ids
            .iter()
            .map(|&i| Vcpu {
                addr: vcpu_addr(i),
                vcpu_id: i,
                vcore: VC,
                ptid: i as u8,
                cpu: 0,
                thread_cpu: Some(i as i32),
                state: Some(KVMPPC_VCPU_RUNNABLE),
                ceded: Some(0),
            })
            .collect(),
        kvm: Some(KvmArch {
            lpid: 1,
            sdr1: 0x3f00,
            host_lpid: Some(0),
            host_sdr1: Some(0x2000),
        }),
    }
}

fn numbers(s: &Snapshot) -> Vec<u32> {
    let mut n: Vec<u32> = check_snapshot(s).iter().map(|v| v.invariant).collect();
    n.sort();
    n.dedup();
    n
}

#[test]
fn correct_states_pass() {
    assert_eq!(numbers(&running(&[0, 1, 2, 3])), Vec::<u32>::new());
    assert_eq!(numbers(&running(&[1])), Vec::<u32>::new());
    // Exit in progress: the PACA still holds vcpu 1, whose cpu is -1.
    let mut s = running(&[0, 1, 2, 3]);
    s.vcores[0].entry_exit_map = Some(0x20f);
    s.threads[1].kvm_hstate.in_guest = KVM_GUEST_MODE_HOST_HV;
    s.vcpus[1].cpu = -1;
    s.vcpus[1].thread_cpu = Some(-1);
    assert_eq!(numbers(&s), Vec::<u32>::new());
}

#[test]
fn stock_qemu_breaks_8() {
    let mut s = running(&[0, 1, 2, 3]);
    for t in &mut s.threads[1..] {
        t.lpidr = Some(0);
    }
    assert_eq!(numbers(&s), vec![8]);
}

#[test]
fn swapped_paca_ptids_break_3() {
    let mut s = running(&[0, 1, 2, 3]);
    s.threads[1].kvm_hstate.ptid = 2;
    s.threads[2].kvm_hstate.ptid = 1;
    assert_eq!(numbers(&s), vec![3]);
}

#[test]
fn prepatch_placement_is_a_misdelivery_only() {
    let mut s = running(&[0, 2]);
    s.variant = Variant::Prepatch;
    s.vcores[0].entry_exit_map = None;
    s.vcores[0].entry_exit_count = Some(2);
    s.vcores[0].vcore_state = SEED_VCORE_STATES.running;
    s.vcpus[1].ptid = 1; // vcpu 2 got ptid 1 first-come first-served
    s.vcpus[1].thread_cpu = None; // no thread_cpu before ~v4.1
    s.threads[1].kvm_hstate = s.threads[2].kvm_hstate.clone();
    s.threads[2].kvm_hstate = Hstate {
        hwthread_req: 1,
        hwthread_state: KVM_HWTHREAD_IN_IDLE,
        ptid: 2,
        ..Hstate::default()
    };
    assert_eq!(numbers(&s), vec![29]);
    s.variant = Variant::Seed;
    assert!(numbers(&s).contains(&1));
}

#[test]
fn novcpu_shape_26() {
    let mut s = running(&[1]);
    s.vcores[0].napping_threads = 0;
    assert_eq!(numbers(&s), vec![26]);
}

#[test]
fn step_flags_only_what_no_run_explains() {
    let a = running(&[0, 1, 2, 3]);
    let mut b = running(&[1]);
    b.vcores[0].entry_exit_map = Some(0x303);
    assert!(check_step(&a, &b).is_empty());
    let mut c = a.clone();
    c.vcores[0].num_threads = 3;
    assert_eq!(
        check_step(&a, &c).iter().map(|v| v.invariant).collect::<Vec<_>>(),
        vec![20]
    );
    let mut d = a.clone();
    d.vcpus[3].ptid = 2;
    assert_eq!(
        check_step(&a, &d).iter().map(|v| v.invariant).collect::<Vec<_>>(),
        vec![1]
    );
}

#[test]
fn predict_aligns_vcpu_ids() {
    let p = predict(&running(&[1]));
    assert_eq!(p[0].kvm_vcore, Some(VC));
    assert_eq!(p[0].kvm_vcpu, Some(0));
    assert_eq!(p[1].kvm_vcpu, Some(vcpu_addr(1)));
    assert_eq!(p[1].ptid, Some(1));
    assert_eq!(p[2].kvm_vcore, Some(0));
    assert_eq!(p[2].ptid, None);
}

#[test]
fn event_step_graphs() {
    let a = running(&[0, 1, 2, 3]);
    let mut exiting = a.clone();
    exiting.vcores[0].entry_exit_map = Some(0x10f);
    assert!(check_event_step(&a, &exiting).is_empty());
    let mut late = exiting.clone();
    late.vcores[0].entry_exit_map = Some(0x107);
    assert_eq!(
        check_event_step(&exiting, &late)
            .iter()
            .map(|v| v.invariant)
            .collect::<Vec<_>>(),
        vec![11]
    );
    let mut reset = exiting.clone();
    reset.vcores[0].entry_exit_map = Some(0);
    assert!(check_event_step(&exiting, &reset).is_empty());
    let mut back = a.clone();
    back.vcores[0].vcore_state = MODERN_VCORE_STATES.exiting;
    let mut again = back.clone();
    again.vcores[0].vcore_state = MODERN_VCORE_STATES.running;
    assert!(check_event_step(&a, &back).is_empty());
    assert_eq!(
        check_event_step(&back, &again)
            .iter()
            .map(|v| v.invariant)
            .collect::<Vec<_>>(),
        vec![19]
    );
    let mut jump = a.clone();
    jump.threads[1].kvm_hstate.in_guest = KVM_GUEST_MODE_NONE; // GUEST_HV -> NONE skips the exit
    assert_eq!(
        check_event_step(&a, &jump)
            .iter()
            .map(|v| v.invariant)
            .collect::<Vec<_>>(),
        vec![23]
    );
    // The same pairs as breakpoint samples are explained by a run boundary.
    assert!(check_step(&exiting, &late).is_empty() && check_step(&back, &again).is_empty());
    let st = &SEED_VCORE_STATES;
    assert!(vcore_state_step_ok(st, 2, 3) && vcore_state_step_ok(st, 3, 4) && vcore_state_step_ok(st, 4, 0));
    assert!(
        !vcore_state_step_ok(st, 4, 3) && !vcore_state_step_ok(st, 1, 3) && !vcore_state_step_ok(st, 3, 2)
    );
    let m = &MODERN_VCORE_STATES;
    assert!(vcore_state_step_ok(m, 6, 3) && vcore_state_step_ok(m, 1, 2) && vcore_state_step_ok(m, 5, 1));
    assert!(!vcore_state_step_ok(m, 3, 4) && !vcore_state_step_ok(m, 6, 4));
}

/// `cargo test --release --lib invariants::tests::speed -- --ignored --nocapture`
#[test]
#[ignore]
fn speed() {
    let states = [running(&[0, 1, 2, 3]), running(&[1]), running(&[0, 2])];
    let n = 1_000_000;
    let t = std::time::Instant::now();
    let mut found = 0;
    for i in 0..n {
        let s = &states[i % 3];
        found += check_snapshot(std::hint::black_box(s)).len();
        found += check_step(&states[(i + 1) % 3], s).len();
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("check_snapshot + check_step: {ns:.0} ns per state ({found} violations)");
    let t = std::time::Instant::now();
    for i in 0..n {
        found += check_snapshot(std::hint::black_box(&states[i % 3])).len();
    }
    println!(
        "check_snapshot alone: {:.0} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    type Part = fn(&Ctx, &mut Vec<Violation>);
    let parts: [(&str, Part); 5] = [
        ("vcpus", super::vcpus::check),
        ("vcores", super::vcores::check),
        ("threads", super::threads::check),
        ("regs", super::regs::check),
        ("mmu", super::mmu::check),
    ];
    for (name, f) in parts {
        let t = std::time::Instant::now();
        let mut out = Vec::new();
        for i in 0..n {
            let cx = Ctx::new(std::hint::black_box(&states[i % 3]));
            f(&cx, &mut out);
        }
        found += out.len();
        println!("  {name}: {:.0} ns", t.elapsed().as_nanos() as f64 / n as f64);
    }
    let text = serde_json::to_string(&states[0]).unwrap();
    let t = std::time::Instant::now();
    for _ in 0..n / 10 {
        let s = crate::snapshot::parse_snapshot(std::hint::black_box(&text), Some(1), None).unwrap();
        found += s.threads.len();
    }
    println!(
        "parse_snapshot ({} B): {:.0} ns",
        text.len(),
        t.elapsed().as_nanos() as f64 / (n / 10) as f64
    );
    let t = std::time::Instant::now();
    for _ in 0..n / 10 {
        let s: Snapshot = serde_json::from_str(std::hint::black_box(&text)).unwrap();
        found += s.threads.len();
    }
    println!(
        "serde_json::from_str::<Snapshot>: {:.0} ns",
        t.elapsed().as_nanos() as f64 / (n / 10) as f64
    );
    let t = std::time::Instant::now();
    for _ in 0..n / 10 {
        let v: serde_json::Value = serde_json::from_str(std::hint::black_box(&text)).unwrap();
        found += v.as_object().map_or(0, |o| o.len());
    }
    println!(
        "serde_json::from_str::<Value>: {:.0} ns",
        t.elapsed().as_nanos() as f64 / (n / 10) as f64
    );
    assert!(found > 0);
}

/// Random field values never panic (no unwrap on input, no overflow).
#[test]
fn random_values_never_panic() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = running(&[0, 1, 2, 3]);
    for round in 0..20_000 {
        let mut s = base.clone();
        s.variant = Variant::ALL[round % 3];
        s.threads_per_core = (rnd() % 8 + 1) as u32;
        s.threads.truncate(s.threads_per_core as usize);
        for t in &mut s.threads {
            let r = rnd();
            t.cpu = (r % 12) as u32;
            t.kvm_hstate.ptid = (r >> 8) as u8;
            t.kvm_hstate.napping = (r >> 16) as u8 % 5;
            t.kvm_hstate.in_guest = (r >> 24) as u8 % 7;
            t.kvm_hstate.hwthread_req = (r >> 32) as u8 % 3;
            t.kvm_hstate.kvm_vcpu = if r & 1 == 0 {
                vcpu_addr((r >> 40) as u32 % 5)
            } else {
                r
            };
            t.lpidr = Some(rnd() % 3);
        }
        for vc in &mut s.vcores {
            let r = rnd();
            vc.pcpu = (r % 16) as u32 * if r & 0x100 == 0 { 1 } else { u32::MAX / 16 };
            vc.first_vcpuid = (r >> 8) as u32;
            vc.entry_exit_map = Some((r >> 16) as u32);
            vc.entry_exit_count = Some((r >> 24) as u32);
            vc.vcore_state = (r >> 40) as u8 % 8;
            vc.napping_threads = (r >> 48) as u32;
            vc.num_threads = (r >> 56) as u32;
            vc.n_woken = Some(rnd() as u32);
            vc.nap_count = Some(rnd() as u32);
        }
        for v in &mut s.vcpus {
            let r = rnd();
            v.vcpu_id = r as u32;
            v.ptid = (r >> 32) as u8;
            v.cpu = (r >> 40) as i32;
            v.thread_cpu = Some((r >> 8) as i32);
        }
        let prev = base.clone();
        let _ = check_snapshot(&s);
        let _ = check_step(&prev, &s);
        let _ = predict(&s);
    }
}

/// Every invariant number any Rust code of the workspace emits has a row in
/// the table: the source is scanned for `Violation::new(N`, `violation(N`,
/// `invariant: N` and `INV_*` constants (resolved from their definitions).
#[test]
fn every_emitted_number_is_in_the_table() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.ends_with("target") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let mut consts = std::collections::HashMap::new();
    for text in &texts {
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line
                .strip_prefix("pub const INV_")
                .or_else(|| line.strip_prefix("const INV_"))
            {
                let (name, value) = rest.split_once(": u32 = ").unwrap_or(("", ""));
                if let Ok(n) = value.trim_end_matches(';').parse::<u32>() {
                    consts.insert(format!("INV_{name}"), n);
                }
            }
        }
    }
    let mut emitted = std::collections::BTreeSet::new();
    for text in &texts {
        let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for marker in ["Violation::new(", "violation(", "invariant: "] {
            for piece in flat.split(marker).skip(1) {
                let token: String = piece
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if let Ok(n) = token.parse::<u32>() {
                    emitted.insert(n);
                } else if let Some(n) = consts.get(&token) {
                    emitted.insert(*n);
                }
            }
        }
    }
    assert!(emitted.len() > 20, "scan found only {emitted:?}");
    let missing: Vec<u32> = emitted.iter().copied().filter(|n| info(*n).is_none()).collect();
    assert!(missing.is_empty(), "emitted but not in the table: {missing:?}");
    for row in INVARIANTS {
        assert!(!row.title.is_empty() && !row.statement.is_empty() && !row.source.is_empty());
        assert!(!row.window.is_empty() && !row.meaning.is_empty());
    }
    let mut numbers: Vec<u32> = INVARIANTS.iter().map(|r| r.number).collect();
    numbers.dedup();
    assert_eq!(numbers.len(), INVARIANTS.len(), "numbers are sorted and unique");
}

/// 100k threads and vcpus in one snapshot go through the map lookups (a scan
/// per thread would take minutes here); the time is printed by
/// tests/benchmarks/bench_checker.py, not asserted.
#[test]
fn a_huge_snapshot_is_checked_without_quadratic_scans() {
    let mut s = running(&[0, 1, 2, 3]);
    let n = 100_000u32;
    for i in 4..n {
        let mut t = s.threads[1].clone();
        t.cpu = i;
        t.kvm_hstate.kvm_vcpu = vcpu_addr(i);
        s.threads.push(t);
        let mut v = s.vcpus[1].clone();
        v.addr = vcpu_addr(i);
        v.vcpu_id = i;
        s.vcpus.push(v);
    }
    let found = check_snapshot(&s);
    // Thread 4.. all claim to be thread 1 of their core with vcpu ptid 1.
    assert!(found.iter().any(|v| v.invariant == 3));
}

/// 44: two stops of one run (same seq, in a run state) further apart in
/// timebase than the summed kernel bounds: the run is hung.  Not judged
/// without the timebase, across runs, or once the vcore left its run states.
#[test]
fn a_run_longer_than_its_bound_breaks_44() {
    let freq = 512_000_000u64;
    let at = |secs: f64, seq: u64| {
        let mut s = running(&[0, 1, 2, 3]);
        s.tb = Some(1_000_000_000 + (secs * freq as f64) as u64);
        s.tb_freq = Some(freq);
        s.vcores[0].seq = Some(seq);
        s.vcores[0].tb_offset = Some(0);
        s.vcores[0].tb_offset_applied = Some(0);
        s
    };
    let bound = super::step::run_bound_s();
    assert!((bound - 11.8).abs() < 1e-9, "{bound}");
    let found = |a: &Snapshot, b: &Snapshot| -> Vec<u32> {
        check_same_run(a, b).iter().map(|v| v.invariant).collect()
    };
    assert_eq!(found(&at(0.0, 3), &at(0.5, 3)), Vec::<u32>::new());
    assert_eq!(found(&at(0.0, 3), &at(bound + 1.0, 3)), vec![44]);
    // another run, no timebase, or the run over: nothing to judge
    assert_eq!(found(&at(0.0, 3), &at(60.0, 4)), Vec::<u32>::new());
    let mut untimed = at(60.0, 3);
    untimed.tb = None;
    assert_eq!(found(&at(0.0, 3), &untimed), Vec::<u32>::new());
    let mut over = at(60.0, 3);
    over.vcores[0].vcore_state = MODERN_VCORE_STATES.inactive;
    assert_eq!(found(&at(0.0, 3), &over), Vec::<u32>::new());
    let v = &check_same_run(&at(0.0, 3), &at(30.0, 3))[0];
    assert!(
        v.message.contains("30.0 s") && v.message.contains("run 3"),
        "{}",
        v.message
    );
}

/// 44 on the host's timebase: thread 0 adds the vcore's tb_offset to the
/// core's TB for the guest (kvmppc_hv_entry) and takes it off again
/// (kvmhv_switch_to_host), so a stop inside the guest reads the guest's
/// timebase.  A migrated guest's offset of hours, in force on one stop and
/// not the next, is no hang; a real overrun is still one, whichever stop
/// had the offset in force and whatever its sign.
#[test]
fn invariant_44_measures_the_host_timebase_across_the_guest_offset() {
    let freq = 512_000_000u64;
    let hours = ((3 * 3600 * freq) >> 24) << 24; // KVM rounds the offset to 2^24 ticks
                                                 // 9.5 hours in: a guest 3 hours behind reads a smaller tb.
    let host0 = 1u64 << 44;
    // A stop `secs` of host time in, with `offset` in force (in guest) or not.
    let at = |secs: f64, offset: u64, applied: bool| {
        let mut s = running(&[0, 1, 2, 3]);
        let host = host0 + (secs * freq as f64) as u64;
        s.tb = Some(if applied { host.wrapping_add(offset) } else { host });
        s.tb_freq = Some(freq);
        let vc = &mut s.vcores[0];
        vc.seq = Some(5);
        vc.tb_offset = Some(offset);
        vc.tb_offset_applied = Some(if applied { offset } else { 0 });
        vc.in_guest = u8::from(applied);
        s
    };
    let found = |a: &Snapshot, b: &Snapshot| -> Vec<u32> {
        check_same_run(a, b).iter().map(|v| v.invariant).collect()
    };
    let none = Vec::<u32>::new();
    for offset in [hours, hours.wrapping_neg()] {
        // half a second apart on the host: no hang, either way round
        assert_eq!(found(&at(0.0, offset, false), &at(0.5, offset, true)), none);
        assert_eq!(found(&at(0.0, offset, true), &at(0.5, offset, false)), none);
        assert_eq!(
            run_timing_not_judged(&at(0.0, offset, false), &at(0.5, offset, true)),
            None
        );
        // 30 s apart on the host: the run never ended, either way round
        assert_eq!(found(&at(0.0, offset, false), &at(30.0, offset, true)), vec![44]);
        assert_eq!(found(&at(0.0, offset, true), &at(30.0, offset, false)), vec![44]);
        let v = &check_same_run(&at(0.0, offset, true), &at(30.0, offset, false))[0];
        assert!(v.message.contains("30.0 s"), "{}", v.message);
    }
    // The host's timebase of a stop, as the outcome gives it.
    let inside = at(0.5, hours, true);
    assert_eq!(inside.host_tb(), Ok(Some(host0 + freq / 2)));
    assert_eq!(check_outcome(&inside).host_tb, Some(host0 + freq / 2));
}

/// Where a stop's host timebase cannot be known, 44 is not judged and says
/// why, never guessed: thread 0 between its store to tb_offset_applied and
/// in_guest (entering or leaving), a kernel without tb_offset_applied and an
/// offset, a trace recorded without the offset.
#[test]
fn invariant_44_is_not_judged_where_the_host_timebase_is_unknown() {
    use crate::view::{TB_OFFSET_NOT_READ, TB_OFFSET_NOT_RECORDED, TB_OFFSET_SWITCHING};
    let freq = 512_000_000u64;
    let offset = 7u64 << 24;
    let at = |secs: f64, applied: u64, in_guest: u8| {
        let mut s = running(&[0, 1, 2, 3]);
        s.tb = Some((1u64 << 40) + (secs * freq as f64) as u64);
        s.tb_freq = Some(freq);
        let vc = &mut s.vcores[0];
        vc.seq = Some(5);
        vc.tb_offset = Some(offset);
        vc.tb_offset_applied = Some(applied);
        vc.in_guest = in_guest;
        s
    };
    let before = at(0.0, 0, 0);
    for (stop, why) in [
        (at(60.0, offset, 0), TB_OFFSET_SWITCHING), // kvmppc_hv_entry: applied stored, in_guest not yet
        (at(60.0, 0, 1), TB_OFFSET_SWITCHING),      // kvmhv_switch_to_host: applied cleared, in_guest not yet
    ] {
        assert_eq!(stop.host_tb(), Err(why));
        assert!(check_same_run(&before, &stop).is_empty());
        assert_eq!(run_timing_not_judged(&before, &stop), Some(why));
        let mut r = crate::trace::Replayer::new(None);
        r.push_outcome(before.clone());
        let o = r.push_outcome(stop.clone());
        assert!(o.not_judged.contains(&(44, why)), "{:?}", o.not_judged);
        assert_eq!((o.host_tb, o.host_tb_unknown), (None, Some(why)));
        assert!(
            o.violations.iter().all(|v| v.invariant != 44),
            "{:?}",
            o.violations
        );
        assert!(!o.judged.is_empty(), "the stop's own invariants are still judged");
    }
    // A kernel without tb_offset_applied: an offset of 0 is known, another is not.
    let mut old = at(60.0, 0, 1);
    old.vcores[0].tb_offset_applied = None;
    assert_eq!(old.host_tb(), Err(TB_OFFSET_NOT_RECORDED));
    old.vcores[0].tb_offset = Some(0);
    assert_eq!(old.host_tb(), Ok(old.tb));
    let mut zero = before.clone();
    zero.vcores[0].tb_offset = Some(0);
    assert_eq!(
        check_same_run(&zero, &old)
            .iter()
            .map(|v| v.invariant)
            .collect::<Vec<_>>(),
        vec![44]
    );
    // A trace recorded before the offset was read: not judged, however far apart.
    let mut unread = at(60.0, 0, 1);
    unread.vcores[0].tb_offset = None;
    unread.vcores[0].tb_offset_applied = None;
    assert_eq!(unread.host_tb(), Err(TB_OFFSET_NOT_READ));
    assert!(check_same_run(&before, &unread).is_empty());
    // Another run, or no timebase: nothing to judge, nothing to say.
    let mut other = at(60.0, offset, 0);
    other.vcores[0].seq = Some(6);
    assert_eq!(run_timing_not_judged(&before, &other), None);
    // No vcore on thread 0: no offset can be in force.
    let mut idle = unread.clone();
    idle.threads[0].kvm_hstate.kvm_vcore = 0;
    assert_eq!(idle.host_tb(), Ok(idle.tb));
}

/// 3 from the PACA alone: a started thread (modern: kvm_vcore set) with a
/// ptid other than its index in the core, even when neither its vcore nor
/// its vcpu can be read (a VM torn down after a crash).
#[test]
fn a_started_thread_with_ptid_zero_breaks_3_without_its_vcore() {
    let mut s = running(&[0, 1, 2, 3]);
    s.threads[2].kvm_hstate.ptid = 0;
    assert_eq!(numbers(&s), vec![3]);
    s.vcores.clear();
    s.vcpus.clear();
    let v: Vec<u32> = check_snapshot(&s).iter().map(|v| v.invariant).collect();
    assert!(v.contains(&3), "{v:?}");
    // never started (kvm_vcore 0): a stale or never-written 0 is fine
    let mut idle = running(&[0]);
    idle.threads[2].kvm_hstate.ptid = 0;
    assert_eq!(numbers(&idle), Vec::<u32>::new());
}

/// 5: a secondary that left the run (exit bit set, kvm_vcore cleared) still
/// holding its vcpu; the kernel clears kvm_vcpu first.
#[test]
fn a_finished_secondary_still_holding_its_vcpu_breaks_5() {
    let mut s = running(&[0, 1, 2, 3]);
    s.vcores[0].vcore_state = MODERN_VCORE_STATES.exiting;
    s.vcores[0].entry_exit_map = Some(0xf0f);
    for t in &mut s.threads[1..] {
        t.kvm_hstate.in_guest = KVM_GUEST_MODE_NONE;
    }
    for v in &mut s.vcpus {
        v.cpu = -1;
        v.thread_cpu = Some(-1);
    }
    s.threads[2].kvm_hstate.kvm_vcore = 0;
    s.threads[2].kvm_hstate.kvm_vcpu = 0;
    assert!(!numbers(&s).contains(&5), "{:?}", numbers(&s));
    s.threads[2].kvm_hstate.kvm_vcpu = vcpu_addr(2);
    assert!(numbers(&s).contains(&5), "{:?}", numbers(&s));
    // not exited yet (exit bit clear): a start in flight may show the same fields
    s.vcores[0].entry_exit_map = Some(0x0b0f);
    assert!(!numbers(&s).contains(&5), "{:?}", numbers(&s));
}

/// 14: a secondary that woke from its cede and has begun its exit is no
/// longer in napping_threads (kvm_end_cede clears the bit first); thread 0
/// (kvm_novcpu_wakeup may leave bit 0 behind) is not judged.
#[test]
fn a_woken_exiting_secondary_left_in_napping_threads_breaks_14() {
    let mut s = running(&[0, 1, 2, 3]);
    s.vcores[0].vcore_state = MODERN_VCORE_STATES.exiting;
    s.vcores[0].entry_exit_map = Some(0x40f);
    s.threads[2].kvm_hstate.in_guest = KVM_GUEST_MODE_HOST_HV;
    assert!(!numbers(&s).contains(&14), "{:?}", numbers(&s));
    s.vcores[0].napping_threads = 0b100;
    assert!(numbers(&s).contains(&14), "{:?}", numbers(&s));
    // still napping (the exit IPI not yet taken): its bit stays
    s.threads[2].kvm_hstate.napping = NAPPING_CEDE;
    assert!(!numbers(&s).contains(&14), "{:?}", numbers(&s));
    // thread 0 after kvm_novcpu_wakeup found the exit begun
    let mut t0 = running(&[1, 2, 3]);
    t0.vcores[0].entry_exit_map = Some(0x10f);
    t0.vcores[0].napping_threads = 1;
    t0.threads[0].kvm_hstate.napping = 0;
    assert!(!numbers(&t0).contains(&14), "{:?}", numbers(&t0));
}

/// 25 on a snapshot: every entered thread napping in H_CEDE with no exit
/// begun (the last cede must exit instead); thread 0 napping without a vcpu
/// (NAPPING_NOVCPU) is not a cede.
#[test]
fn every_entered_thread_ceded_breaks_25() {
    let mut s = running(&[0, 1, 2, 3]);
    for t in &mut s.threads {
        t.kvm_hstate.in_guest = KVM_GUEST_MODE_HOST_HV;
        t.kvm_hstate.napping = NAPPING_CEDE;
    }
    for v in &mut s.vcpus {
        v.ceded = Some(1);
    }
    s.vcores[0].napping_threads = 0b0111;
    assert!(!numbers(&s).contains(&25), "{:?}", numbers(&s));
    s.vcores[0].napping_threads = 0b1111;
    assert!(numbers(&s).contains(&25), "{:?}", numbers(&s));
    s.vcores[0].entry_exit_map = Some(0x10f); // an exit began: they are on their way out
    assert!(!numbers(&s).contains(&25), "{:?}", numbers(&s));
    // thread 0 with no vcpu naps NOVCPU with bit 0 set: not a cede
    let mut n = running(&[1]);
    n.vcores[0].napping_threads = 0b11;
    n.threads[1].kvm_hstate.in_guest = KVM_GUEST_MODE_HOST_HV;
    n.threads[1].kvm_hstate.napping = NAPPING_CEDE;
    n.vcpus[0].ceded = Some(1);
    assert!(!numbers(&n).contains(&25), "{:?}", numbers(&n));
}

/// Invariant 16 (nap_count) does not apply to modern, which has no nap_count:
/// it is left out of both lists there, and "not judged" (for want of data)
/// only on a seed stop that did not read the field.
#[test]
fn an_invariant_the_variant_lacks_is_not_applicable_not_unjudged() {
    let modern = check_outcome(&running(&[0, 1, 2, 3]));
    assert_eq!(modern.not_applicable, vec![16]);
    assert!(
        modern.not_judged.iter().all(|(n, _)| *n != 16),
        "{:?}",
        modern.not_judged
    );
    assert!(!modern.judged.contains(&16));

    let mut seed = running(&[0, 1, 2, 3]);
    seed.variant = Variant::Seed;
    let unread = check_outcome(&seed);
    assert!(unread.not_applicable.is_empty());
    assert!(
        unread.not_judged.contains(&(16, "no nap_count read")),
        "{:?}",
        unread.not_judged
    );
    seed.vcores[0].nap_count = Some(0);
    seed.vcores[0].n_woken = Some(0);
    let read = check_outcome(&seed);
    assert!(read.judged.contains(&16) && read.not_judged.iter().all(|(n, _)| *n != 16));
}
