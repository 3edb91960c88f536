//! The vcores: state and runner (19), numbering (2), pcpu (4), bookkeeping
//! (20), one running vcore per core (21), the seed's nap count tied to the
//! PACAs it counts (16), no core where every thread ceded (25); the
//! entry/exit word is in [`super::entry_exit`].

use std::collections::HashMap;
use std::hash::Hash;

use super::ctx::{p, Ctx};
use super::Violation;
use crate::consts::*;
use crate::view::Vcore;

pub(crate) fn check(cx: &Ctx, out: &mut Vec<Violation>) {
    for (k, vc) in cx.s.vcores.iter().enumerate() {
        state_values(cx, k, vc, out);
        numbering(cx, k, vc, out);
        pcpu_and_runner(cx, k, vc, out);
        bookkeeping(cx, k, vc, out);
        nap_count(cx, k, vc, out);
        all_ceded(cx, k, vc, out);
        super::entry_exit::check(cx, k, vc, out);
    }
    pairs(cx, out);
}

/// 25 on one snapshot: every entered thread napping in H_CEDE with no exit
/// begun.  kvmppc_h_cede (book3s_hv_rmhandlers.S) ORs its bit into
/// napping_threads with lwarx/stwcx. and, when that would cover the whole
/// entry map, branches to kvm_cede_exit instead of storing it: the last
/// thread to cede never naps.  (Thread 0 without a vcpu sets bit 0 in
/// kvmppc_primary_no_guest without that test, but naps with NAPPING_NOVCPU,
/// so it is never part of an all-CEDE core.)
fn all_ceded(cx: &Ctx, k: usize, vc: &Vcore, out: &mut Vec<Violation>) {
    let Some(map) = vc.entry_exit_map else {
        return;
    };
    let (entered, exited) = (map & 0xff, map >> 8);
    if entered == 0 || exited != 0 || vc.napping_threads & entered != entered {
        return;
    }
    let mut ceding = 0u32;
    for t in &cx.s.threads {
        let n = t.cpu as i64 - vc.pcpu as i64;
        let h = &t.kvm_hstate;
        if (0..8).contains(&n) && h.kvm_vcore == vc.addr && h.napping == NAPPING_CEDE {
            ceding |= 1 << n;
        }
    }
    if ceding & entered == entered {
        out.push(
            Violation::new(
                25,
                format!(
                    "every entered thread ({:#x}) naps in H_CEDE and no exit began: the last cede should have exited",
                    entered
                ),
            )
            .field(p("vcores", k, "napping_threads"), vc.napping_threads)
            .field(p("vcores", k, "entry_exit_map"), map),
        );
    }
}

/// 19, 9: vcore_state and in_guest hold known values.
fn state_values(cx: &Ctx, k: usize, vc: &Vcore, out: &mut Vec<Violation>) {
    if cx.states.name(vc.vcore_state).is_none() {
        out.push(
            Violation::new(
                19,
                format!("vcore_state {} is not a {} state", vc.vcore_state, cx.s.variant),
            )
            .field(p("vcores", k, "vcore_state"), vc.vcore_state),
        );
    }
    if vc.in_guest > 1 {
        out.push(
            Violation::new(9, format!("vcore in_guest is {} (0 or 1)", vc.in_guest))
                .field(p("vcores", k, "in_guest"), vc.in_guest),
        );
    }
}

/// 2: first_vcpuid = core * threads per vcore.  Modern P8 uses smt_mode (a
/// power of two <= threads_per_subcore), which the snapshot does not carry:
/// require a multiple of the smallest power of two that covers the vcore's
/// ptids.
fn numbering(cx: &Ctx, k: usize, vc: &Vcore, out: &mut Vec<Violation>) {
    let step = match cx.s.variant {
        Variant::Modern => {
            let max_ptid = cx.members(vc.addr).max_ptid;
            (max_ptid + 1).next_power_of_two().min(cx.tpc.next_power_of_two())
        }
        _ => cx.tpc,
    };
    if !vc.first_vcpuid.is_multiple_of(step) {
        out.push(
            Violation::new(
                2,
                format!(
                    "vcore first_vcpuid {} is not a multiple of {}",
                    vc.first_vcpuid, step
                ),
            )
            .field(p("vcores", k, "first_vcpuid"), vc.first_vcpuid)
            .field("threads_per_core", cx.s.threads_per_core),
        );
    }
}

/// 4: pcpu is thread 0 of the (sub)core while the vcore runs (outside a run
/// pcpu is stale, or PREEMPT's current cpu).  19: runner.  kvmppc_run_vcpu
/// sets vc->runner before run_core or vcore_blocked and clears it only after
/// they return (state INACTIVE).
fn pcpu_and_runner(cx: &Ctx, k: usize, vc: &Vcore, out: &mut Vec<Violation>) {
    let st = cx.states;
    if cx.in_run(vc.vcore_state) && !cx.pcpu_offset_ok(vc.pcpu % cx.tpc, vc.num_threads) {
        out.push(
            Violation::new(
                4,
                format!(
                    "running vcore has pcpu {}, not thread 0 of a {}-thread core",
                    vc.pcpu, cx.tpc
                ),
            )
            .field(p("vcores", k, "pcpu"), vc.pcpu)
            .field(p("vcores", k, "vcore_state"), vc.vcore_state),
        );
    }
    let Some(runner) = vc.runner else { return };
    let needs_runner = Some(vc.vcore_state) == st.starting
        || vc.vcore_state == st.running
        || vc.vcore_state == st.exiting
        || vc.vcore_state == st.sleeping
        || Some(vc.vcore_state) == st.polling;
    if runner == 0 && needs_runner {
        out.push(
            Violation::new(
                19,
                format!(
                    "vcore is {} with no runner",
                    st.name(vc.vcore_state).unwrap_or("?")
                ),
            )
            .field(p("vcores", k, "vcore_state"), vc.vcore_state)
            .hex(p("vcores", k, "runner"), runner),
        );
    }
    if let Some((j, rv)) = cx.vcpu(runner) {
        if rv.vcore != vc.addr {
            out.push(
                Violation::new(
                    19,
                    format!(
                        "vcore runner is vcpu {}, which belongs to another vcore",
                        rv.vcpu_id
                    ),
                )
                .hex(p("vcores", k, "runner"), runner)
                .hex(p("vcpus", j, "vcore"), rv.vcore),
            );
        }
    }
}

/// 20: bookkeeping.  The runnable count moves one vcpu at a time under
/// vc->lock, and state and n_runnable are two stores: a stop between them
/// shows a difference of one.
fn bookkeeping(cx: &Ctx, k: usize, vc: &Vcore, out: &mut Vec<Violation>) {
    if vc.n_runnable > vc.num_threads || vc.num_threads > cx.tpc {
        out.push(
            Violation::new(
                20,
                format!(
                    "vcore has n_runnable {} and num_threads {} on a {}-thread core",
                    vc.n_runnable, vc.num_threads, cx.tpc
                ),
            )
            .field(p("vcores", k, "n_runnable"), vc.n_runnable)
            .field(p("vcores", k, "num_threads"), vc.num_threads),
        );
    }
    let m = cx.members(vc.addr);
    let all_states = m.count == 0 || m.all_states;
    if m.count > vc.num_threads {
        out.push(
            Violation::new(
                20,
                format!(
                    "{} vcpus point at a vcore with num_threads {}",
                    m.count, vc.num_threads
                ),
            )
            .field(p("vcores", k, "num_threads"), vc.num_threads),
        );
    } else if m.count == vc.num_threads && all_states && m.runnable.abs_diff(vc.n_runnable) > 1 {
        out.push(
            Violation::new(
                20,
                format!(
                    "vcore n_runnable {} but {} of its vcpus are RUNNABLE",
                    vc.n_runnable, m.runnable
                ),
            )
            .field(p("vcores", k, "n_runnable"), vc.n_runnable),
        );
    }
}

/// 16 (seed layout): nap_count <= n_woken, and tied to the PACAs it counts.
/// kvmppc_start_thread stores a secondary's kvm_vcpu and then counts it in
/// n_woken; the secondary clears kvm_vcpu on its way out and only then
/// counts its nap.  So the woken secondaries still holding a vcpu plus
/// nap_count never exceed n_woken, plus one for a secondary between its
/// kvm_vcpu store and ++n_woken.  That one is a secondary not yet counted,
/// and each secondary is started at most once a run (its ptid is fixed), so
/// there is none once n_woken counts every secondary of the core.  Judged
/// during a run only: the reset stores n_woken = 0 before nap_count = 0,
/// while still INACTIVE.
fn nap_count(cx: &Ctx, k: usize, vc: &Vcore, out: &mut Vec<Violation>) {
    let (Some(nc), Some(nw)) = (vc.nap_count, vc.n_woken) else {
        return;
    };
    if !cx.in_run(vc.vcore_state) {
        return;
    }
    // nap_count > n_woken: a nap counted for a start this run did not make.
    // Only started secondaries count a nap (kvm_start_guest's path back from
    // kvmppc_hv_entry, or secondary_too_late), each after the start's
    // ++n_woken: thread 0 enters only after every kvmppc_start_thread.  The
    // one way a seed kernel gets there is a latecomer of the previous run
    // counting itself after kvmppc_wait_for_nap gave up (its 1,000,000 polls,
    // "kvmppc_wait_for_nap timeout" in the host log) and the next run reset
    // both counters: the kernel's own error path, flagged, with that named.
    if nc > nw {
        out.push(
            Violation::new(
                16,
                format!(
                    "nap_count {nc} exceeds n_woken {nw}: a nap counted that no start of this run made (a thread of an earlier run still counting after kvmppc_wait_for_nap timed out, or a nap counted without a start)"
                ),
            )
                .field(p("vcores", k, "nap_count"), nc)
                .field(p("vcores", k, "n_woken"), nw),
        );
        return;
    }
    let holding: Vec<usize> = (1..cx.tpc)
        .filter_map(|n| cx.thread_at_cpu(vc.pcpu as u64 + n as u64))
        .filter(|(_, t)| t.kvm_hstate.kvm_vcpu != 0 && t.kvm_hstate.kvm_vcore == vc.addr)
        .map(|(i, _)| i)
        .collect();
    let secondaries = cx.tpc.saturating_sub(1);
    if nw > secondaries {
        out.push(
            Violation::new(
                16,
                format!(
                    "n_woken {nw} exceeds the {secondaries} secondaries of a {}-thread core",
                    cx.tpc
                ),
            )
            .field(p("vcores", k, "n_woken"), nw),
        );
        return;
    }
    // n_woken counts the starts of vcpus whose ptid is not 0
    // (kvmppc_start_thread: `if (vcpu->arch.ptid) ++vc->n_woken`), and a vcpu
    // is started at most once a run: at the run's start or as a latecomer in
    // kvmppc_run_vcpu (RUNNING, no exit yet), after which its task waits for
    // the run to end before it can leave or come back.  So, when the snapshot
    // lists every vcpu of the vcore, n_woken is at most the number of them
    // with a ptid other than 0.
    let m = cx.members(vc.addr);
    if m.count >= vc.num_threads && m.count > 0 && nw > m.secondary {
        out.push(
            Violation::new(
                16,
                format!(
                    "n_woken {nw} exceeds the {} vcpus of the vcore that run on a secondary thread (ptid other than 0): each is started, and counted, at most once a run",
                    m.secondary
                ),
            )
            .field(p("vcores", k, "n_woken"), nw)
            .field(p("vcores", k, "num_threads"), vc.num_threads),
        );
        return;
    }
    // A start between the kvm_vcpu store and ++n_woken needs a secondary
    // n_woken does not count yet, with a RUNNABLE vcpu of ptid other than 0
    // to run there (kvmppc_run_vcpu makes a vcpu RUNNABLE before it can be
    // started, and a started vcpu stays RUNNABLE until the run is over).
    // Known when the snapshot lists every vcpu of the vcore.
    let startable = match (m.count >= vc.num_threads, m.all_states) {
        (true, true) => secondaries.min(m.secondary_runnable),
        (true, false) => secondaries.min(m.secondary),
        (false, _) => secondaries,
    };
    let in_flight = u64::from(nw < startable);
    if holding.len() as u64 + nc as u64 > nw as u64 + in_flight {
        let slack = if in_flight == 1 {
            ""
        } else {
            " (n_woken counts every secondary that can be started, so no start is in flight)"
        };
        let mut v = Violation::new(
            16,
            format!(
                "{} secondaries still hold a vcpu while nap_count is {nc} of n_woken {nw}{slack}: a nap was counted before its PACA's vcpu was cleared",
                holding.len()
            ),
        )
        .field(p("vcores", k, "nap_count"), nc)
        .field(p("vcores", k, "n_woken"), nw);
        for i in holding {
            v = v.hex(super::ctx::hs(i, "kvm_vcpu"), cx.s.threads[i].kvm_hstate.kvm_vcpu);
        }
        out.push(v);
    }
}

/// Pairs of vcores: 2 (one vcore per first_vcpuid in a VM), 21 (one RUNNING
/// vcore per core; EXITING may overlap the next run: its runner can be
/// preempted in post_guest_process).  Each later vcore is reported against
/// the first one with the same key, through a map (linear in the vcores).
fn pairs(cx: &Ctx, out: &mut Vec<Violation>) {
    let vcores = &cx.s.vcores;
    if vcores.len() < 2 {
        return;
    }
    for (k, k2) in same_key(vcores, |v| Some((v.kvm, v.first_vcpuid))) {
        let (vc, other) = (&vcores[k], &vcores[k2]);
        if vc.addr != other.addr {
            out.push(
                Violation::new(
                    2,
                    format!("two vcores of one VM have first_vcpuid {}", vc.first_vcpuid),
                )
                .hex(p("vcores", k, "addr"), vc.addr)
                .hex(p("vcores", k2, "addr"), other.addr),
            );
        }
    }
    let running = cx.states.running;
    let core = |v: &Vcore| (v.vcore_state == running).then_some(v.pcpu / cx.tpc);
    for (k, k2) in same_key(vcores, core) {
        out.push(
            Violation::new(
                21,
                format!("two vcores are RUNNING on the core of cpu {}", vcores[k].pcpu),
            )
            .hex(p("vcores", k, "addr"), vcores[k].addr)
            .hex(p("vcores", k2, "addr"), vcores[k2].addr),
        );
    }
}

/// (first index, later index) for every later vcore whose key equals an
/// earlier one's (None = not compared).
fn same_key<K: Hash + Eq>(vcores: &[Vcore], key: impl Fn(&Vcore) -> Option<K>) -> Vec<(usize, usize)> {
    let mut first: HashMap<K, usize> = HashMap::new();
    let mut out = Vec::new();
    for (k, v) in vcores.iter().enumerate() {
        if let Some(key) = key(v) {
            match first.get(&key) {
                Some(&k0) => out.push((k0, k)),
                None => {
                    first.insert(key, k);
                }
            }
        }
    }
    out
}
