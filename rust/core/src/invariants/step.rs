//! Between two snapshots: what never changes in one VM's life
//! ([`check_step`]), what is ordered within one vcore run
//! ([`check_same_run`], for stops provably in the same run), and the
//! one-event graphs of the model ([`check_event_step`]).

use super::ctx::{hs, p, EntryExit};
use super::Violation;
use crate::consts::*;
use crate::view::{Snapshot, Vcore};

/// What never changes during one VM's life, between two states of it (any
/// number of steps apart): a vcpu's vcpu_id and (seed/modern) ptid, a
/// vcore's first_vcpuid, num_threads never shrinking (vcpus are never
/// removed), the VM's LPID (SDR1 may change: HPT resizing).
///
/// Only for states known to belong to one VM: the model's steps, or a trace
/// the user says covers one VM (`pyvcore check --same-vm`).  Between
/// arbitrary breakpoint samples nothing is flagged by default, because no
/// pair of samples is unexplainable: a whole vcore run between them resets
/// the entry/exit word, napping_threads and in_guest and passes every
/// vcore_state and per-thread in_guest value (so 7, 11, 12, 13 and the 19/23
/// graphs cannot be told from a run boundary), and a VM destroyed and
/// created again reuses the freed addresses of its kvm, vcore and vcpus
/// (SLUB hands them out again), which explains any change of the fields
/// above.  Objects at a reused address are skipped where a changed vcore
/// or kvm pointer shows it.
pub fn check_step(prev: &Snapshot, next: &Snapshot) -> Vec<Violation> {
    let mut out = Vec::new();
    vcpus_step(prev, next, &mut out);
    vcores_step(prev, next, &mut out);
    out
}

/// A vcpu keeps its vcpu_id, and (seed/modern) its ptid.
fn vcpus_step(prev: &Snapshot, next: &Snapshot, out: &mut Vec<Violation>) {
    // A map only for large snapshots: the explorer calls this on every
    // transition of small ones.
    let by_addr: Option<std::collections::HashMap<u64, &crate::view::Vcpu>> =
        (prev.vcpus.len() > 32).then(|| prev.vcpus.iter().map(|v| (v.addr, v)).collect());
    let find = |addr: u64| match &by_addr {
        Some(m) => m.get(&addr).copied(),
        None => prev.vcpus.iter().find(|o| o.addr == addr),
    };
    let aligned = next.variant != Variant::Prepatch;
    for (j, v) in next.vcpus.iter().enumerate() {
        let Some(old) = find(v.addr) else {
            continue;
        };
        if old.vcore != v.vcore {
            // Another VM's vcpu at a reused address: a new object.
            continue;
        }
        if old.vcpu_id != v.vcpu_id {
            out.push(
                Violation::new(
                    2,
                    format!(
                        "vcpu at {:#x} changed vcpu_id from {} to {}",
                        v.addr, old.vcpu_id, v.vcpu_id
                    ),
                )
                .field(p("vcpus", j, "vcpu_id"), v.vcpu_id)
                .field("previous", old.vcpu_id),
            );
        } else if aligned && old.ptid != v.ptid {
            out.push(
                Violation::new(
                    1,
                    format!(
                        "vcpu {} changed ptid from {} to {}; it is fixed at creation",
                        v.vcpu_id, old.ptid, v.ptid
                    ),
                )
                .field(p("vcpus", j, "ptid"), v.ptid)
                .field("previous", old.ptid),
            );
        }
    }
}

/// A vcore keeps its first_vcpuid, num_threads never shrinks, the VM keeps
/// its LPID.
fn vcores_step(prev: &Snapshot, next: &Snapshot, out: &mut Vec<Violation>) {
    let mut same_vm = false;
    for (k, vc) in next.vcores.iter().enumerate() {
        let Some(old) = prev.vcores.iter().find(|o| o.addr == vc.addr) else {
            continue;
        };
        if old.kvm != vc.kvm {
            continue;
        }
        same_vm |= vc.kvm.is_some();
        if old.first_vcpuid != vc.first_vcpuid {
            out.push(
                Violation::new(
                    2,
                    format!(
                        "vcore changed first_vcpuid from {} to {}",
                        old.first_vcpuid, vc.first_vcpuid
                    ),
                )
                .field(p("vcores", k, "first_vcpuid"), vc.first_vcpuid)
                .field("previous", old.first_vcpuid),
            );
        }
        if vc.num_threads < old.num_threads {
            out.push(
                Violation::new(
                    20,
                    format!(
                        "vcore num_threads went from {} down to {}; vcpus are never removed",
                        old.num_threads, vc.num_threads
                    ),
                )
                .field(p("vcores", k, "num_threads"), vc.num_threads)
                .field("previous", old.num_threads),
            );
        }
    }
    // The LPID is allocated at VM creation and kept for the VM's life (SDR1
    // may change: HPT resizing).
    if let (true, Some(a), Some(b)) = (same_vm, &prev.kvm, &next.kvm) {
        if a.lpid != b.lpid {
            out.push(
                Violation::new(
                    8,
                    format!("the VM's LPID changed from {:#x} to {:#x}", a.lpid, b.lpid),
                )
                .hex("kvm.lpid", b.lpid)
                .hex("previous", a.lpid),
            );
        }
    }
}

/// Transition invariants for two states exactly one model event apart (the
/// explorer's parent and child), on top of [`check_step`].  An event may
/// bundle several stores of one thread or of the runner, so each graph allows
/// skipping forward; what it rejects is going backwards without passing
/// through the states that must lie between:
///
/// * 11: once a thread has begun to exit, the entry part of the entry/exit
///   word changes only by the next run's reset (to 0);
/// * 19: vcore_state moves forward along its graph (kvmppc_run_vcpu / kvmppc_run_core in book3s_hv.c), or to
///   INACTIVE;
/// * 23: a thread's in_guest moves along NONE -> HOST_HV <-> GUEST_HV (and
///   HOST_HV <-> SKIP), HOST_HV -> NONE.
///
/// Not for samples taken at breakpoints: a whole run can lie between two of
/// those (use [`check_step`]).
pub fn check_event_step(prev: &Snapshot, next: &Snapshot) -> Vec<Violation> {
    let mut out = check_step(prev, next);
    let st = next.variant.vcore_states();
    for (k, vc) in next.vcores.iter().enumerate() {
        let Some(old) = prev.vcores.iter().find(|o| o.addr == vc.addr) else {
            continue;
        };
        let (a, b) = (EntryExit::of(old, prev.variant), EntryExit::of(vc, next.variant));
        let entries = |e: &EntryExit| match *e {
            EntryExit::Map { entry, .. } | EntryExit::Count { entry, .. } => Some(entry),
            EntryExit::Unknown => None,
        };
        if a.exit_started() && b.raw() != 0 && entries(&a) != entries(&b) {
            out.push(
                Violation::new(
                    11,
                    format!(
                        "{} went from {:#x} to {:#x}: a thread entered after the exit began",
                        b.key(),
                        a.raw(),
                        b.raw()
                    ),
                )
                .field(p("vcores", k, b.key()), b.raw())
                .field("previous", a.raw()),
            );
        }
        out.extend(vcore_state_step(st, k, old.vcore_state, vc.vcore_state, ""));
    }
    for (i, t) in next.threads.iter().enumerate() {
        let Some(old) = prev.threads.iter().find(|o| o.cpu == t.cpu) else {
            continue;
        };
        let (a, b) = (old.kvm_hstate.in_guest, t.kvm_hstate.in_guest);
        let ok = a == b
            || matches!(
                (a, b),
                (KVM_GUEST_MODE_NONE, KVM_GUEST_MODE_HOST_HV)
                    | (KVM_GUEST_MODE_HOST_HV, KVM_GUEST_MODE_GUEST_HV)
                    | (KVM_GUEST_MODE_GUEST_HV, KVM_GUEST_MODE_HOST_HV)
                    | (KVM_GUEST_MODE_HOST_HV, KVM_GUEST_MODE_NONE)
                    | (KVM_GUEST_MODE_HOST_HV, KVM_GUEST_MODE_SKIP)
                    | (KVM_GUEST_MODE_SKIP, KVM_GUEST_MODE_HOST_HV)
            );
        if !ok {
            out.push(
                Violation::new(
                    23,
                    format!("thread {} went from in_guest {} to {} in one step", i, a, b),
                )
                .field(hs(i, "in_guest"), b)
                .field("previous", a),
            );
        }
    }
    out
}

/// Invariant 19 for vcore `k`: its vcore_state going from `a` to `b` in
/// one step (`when` begins the message, e.g. "within one run, ").
fn vcore_state_step(st: &VcoreStates, k: usize, a: u8, b: u8, when: &str) -> Option<Violation> {
    if vcore_state_step_ok(st, a, b) {
        return None;
    }
    let message = format!(
        "{when}vcore_state went from {} to {}",
        st.name(a).unwrap_or("?"),
        st.name(b).unwrap_or("?")
    );
    Some(
        Violation::new(19, message)
            .field(p("vcores", k, "vcore_state"), b)
            .field("previous", a),
    )
}

/// One event's worth of vcore_state change (forward along the graph, with
/// skips; any state may drop to INACTIVE).
pub(crate) fn vcore_state_step_ok(st: &VcoreStates, a: u8, b: u8) -> bool {
    if a == b || b == st.inactive || a == st.inactive {
        return true;
    }
    // Position along the run: STARTING < RUNNING < EXITING; PREEMPT and
    // PIGGYBACK (modern) come before RUNNING; SLEEPING/POLLING are a side
    // branch left only through INACTIVE (POLLING may go on to SLEEPING).
    let run_pos = |s: u8| {
        if Some(s) == st.preempt {
            Some(0)
        } else if Some(s) == st.piggyback || Some(s) == st.starting {
            Some(1)
        } else if s == st.running {
            Some(2)
        } else if s == st.exiting {
            Some(3)
        } else {
            None
        }
    };
    match (run_pos(a), run_pos(b)) {
        // Modern: a non-master subcore vcore goes EXITING/PIGGYBACK -> PREEMPT.
        (Some(3), Some(0)) | (Some(1), Some(0)) => st.preempt.is_some(),
        (Some(x), Some(y)) => y >= x,
        (None, None) => Some(a) == st.polling && b == st.sleeping,
        _ => false,
    }
}

/// The vcores of `next` that provably lie in the same run as in `prev`:
/// same address and VM, and the same run sequence number `seq` (written
/// only by a reader that saw every kvmppc_run_core of the vcore).  Without
/// `seq` nothing is provable from samples: any number of runs may lie
/// between two stops, and a new run resets every field a run changes.
pub fn same_run(prev: &Snapshot, next: &Snapshot) -> Vec<(usize, usize)> {
    // The run begins at kvmppc_run_core's reset of the entry/exit word, not
    // at its entry (where a reader counts it): a stop at the entry still shows
    // the previous run's words.  Only stops where the vcore is in a run state
    // (set after the reset) are proved to share the run.
    let in_run = |s: &Snapshot, state: u8| {
        let st = s.variant.vcore_states();
        state == st.running
            || state == st.exiting
            || Some(state) == st.starting
            || Some(state) == st.piggyback
    };
    let mut out = Vec::new();
    for (k, vc) in next.vcores.iter().enumerate() {
        let Some(seq) = vc.seq else { continue };
        if !in_run(next, vc.vcore_state) {
            continue;
        }
        if let Some(k0) = prev.vcores.iter().position(|o| {
            o.addr == vc.addr && o.kvm == vc.kvm && o.seq == Some(seq) && in_run(prev, o.vcore_state)
        }) {
            out.push((k0, k));
        }
    }
    out
}

/// Ordering within one vcore run, between two stops of it (any number of
/// events apart, see [`same_run`]):
///
/// * 11: the entry and exit parts of the entry/exit word only grow, and the
///   entry part no longer changes once an exit began;
/// * 19: vcore_state moves forward along its graph;
/// * 7: vc->in_guest, once back to 0 after the exit began (the switch back),
///   does not become 1 again in the run;
/// * 19 and 16: the runner does not change, n_woken and nap_count do not go
///   down ([`run_counters`]);
/// * 44: the run ends within its bound of timebase ticks ([`run_bound_s`]).
pub fn check_same_run(prev: &Snapshot, next: &Snapshot) -> Vec<Violation> {
    let mut out = Vec::new();
    let st = next.variant.vcore_states();
    for (k0, k) in same_run(prev, next) {
        let (old, vc) = (&prev.vcores[k0], &next.vcores[k]);
        run_lasts(prev, next, k, &mut out);
        let (a, b) = (EntryExit::of(old, prev.variant), EntryExit::of(vc, next.variant));
        let grows = match (a, b) {
            (
                EntryExit::Map {
                    entry: e0, exit: x0, ..
                },
                EntryExit::Map {
                    entry: e1, exit: x1, ..
                },
            ) => e0 & !e1 == 0 && x0 & !x1 == 0 && (x0 == 0 || e0 == e1),
            (
                EntryExit::Count {
                    entry: e0, exit: x0, ..
                },
                EntryExit::Count {
                    entry: e1, exit: x1, ..
                },
            ) => e1 >= e0 && x1 >= x0 && (x0 == 0 || e0 == e1),
            _ => true,
        };
        if !grows {
            out.push(
                Violation::new(
                    11,
                    format!(
                        "within one run (seq {}), {} went from {:#x} to {:#x}",
                        vc.seq.unwrap_or(0),
                        b.key(),
                        a.raw(),
                        b.raw()
                    ),
                )
                .field(p("vcores", k, b.key()), b.raw())
                .field("previous", a.raw()),
            );
        }
        out.extend(vcore_state_step(
            st,
            k,
            old.vcore_state,
            vc.vcore_state,
            "within one run, ",
        ));
        run_counters(old, vc, k, &mut out);
        if old.in_guest == 0 && a.exit_started() && vc.in_guest == 1 {
            out.push(
                Violation::new(
                    7,
                    "within one run, vcore in_guest became 1 again after the switch back",
                )
                .field(p("vcores", k, "in_guest"), vc.in_guest)
                .field("previous", old.in_guest),
            );
        }
    }
    out
}

/// Within one run (see [`same_run`]): the runner and the seed's counters.
///
/// * 19: vc->runner is the same vcpu: kvmppc_run_vcpu (book3s_hv.c) sets it
///   just before it calls kvmppc_run_core and clears it only after that
///   returns, under vc->lock, and the other vcpus of the vcore wait while it
///   is RUNNING/EXITING.
/// * 16: n_woken and nap_count never go down: kvmppc_run_core resets both to
///   0 before it stores VCORE_STARTING (the first state [`same_run`] counts);
///   then kvmppc_start_thread only increments n_woken and a secondary's nap
///   only increments nap_count (seed and prepatch layouts).
fn run_counters(old: &Vcore, vc: &Vcore, k: usize, out: &mut Vec<Violation>) {
    let seq = vc.seq.unwrap_or(0);
    if let (Some(r0), Some(r1)) = (old.runner, vc.runner) {
        if r0 != r1 {
            out.push(
                Violation::new(
                    19,
                    format!(
                        "within one run (seq {seq}), vc->runner changed from {r0:#x} to {r1:#x}: the runner is set before kvmppc_run_core and cleared after it"
                    ),
                )
                .hex(p("vcores", k, "runner"), r1)
                .hex("previous", r0),
            );
        }
    }
    for (key, a, b) in [
        ("n_woken", old.n_woken, vc.n_woken),
        ("nap_count", old.nap_count, vc.nap_count),
    ] {
        if let (Some(a), Some(b)) = (a, b) {
            if b < a {
                out.push(
                    Violation::new(
                        16,
                        format!(
                            "within one run (seq {seq}), {key} went down from {a} to {b}: it is reset only when a run starts"
                        ),
                    )
                    .field(p("vcores", k, key), b)
                    .field("previous", a),
                );
            }
        }
    }
}

/// How long one vcore run may last, in seconds of timebase, before it is a
/// hang (invariant 44): the kernel's own bounds summed, times the same slack
/// the continuous trace applies under emulation
/// ([`crate::shadow::checks::Bounds`]).  A run is kvmppc_run_core's one pass
/// (arch/powerpc/kvm/book3s_hv.c): the secondaries are grabbed
/// (kvmppc_grab_hwthread, 10 ms), thread 0 enters with the hypervisor
/// decrementer loaded from the host's DEC (__kvmppc_vcore_entry,
/// book3s_hv_interrupts.S), so it leaves the guest within one host tick
/// (4 ms at CONFIG_HZ=250), every other entered thread follows within one
/// more (the exit IPI of kvmhv_commence_exit, or its own HDEC), and
/// VCORE_EXITING ends within kvmppc_wait_for_nap's 1,000,000 polls
/// (100 ms).  Default: (0.010 + 0.004 + 0.004 + 0.100) x 100 = 11.8 s.
pub fn run_bound_s() -> f64 {
    let b = crate::shadow::checks::Bounds::default();
    (b.grab_s + 2.0 * b.exit_ipi_s + b.exiting_s) * b.slack
}

/// Why invariant 44 is not judged between `prev` and `next` although they
/// share a vcore run: a stop's timebase cannot be put on the host's
/// ([`Snapshot::host_tb`]).  None when judged, or when there is nothing to
/// judge (no shared run, no timebase).
pub fn run_timing_not_judged(prev: &Snapshot, next: &Snapshot) -> Option<&'static str> {
    if prev.tb.is_none() || next.tb.is_none() || same_run(prev, next).is_empty() {
        return None;
    }
    prev.host_tb().err().or_else(|| next.host_tb().err())
}

/// 44: two stops of one run (same seq, both in a run state) further apart
/// in host timebase than [`run_bound_s`]: the run never ended.  Judged only
/// when both stops carry the timebase and its frequency and both can be put
/// on the host's timebase ([`Snapshot::host_tb`], else
/// [`run_timing_not_judged`] says why).
fn run_lasts(prev: &Snapshot, next: &Snapshot, k: usize, out: &mut Vec<Violation>) {
    // Both on the host's timebase: a stop taken while the guest's offset is
    // in force reads the guest's (Snapshot::host_tb).
    let (Ok(Some(t0)), Ok(Some(t1)), Some(freq)) =
        (prev.host_tb(), next.host_tb(), next.tb_freq.or(prev.tb_freq))
    else {
        return;
    };
    if freq == 0 {
        return;
    }
    let Some(ticks) = t1.checked_sub(t0) else {
        return;
    };
    let secs = ticks as f64 / freq as f64;
    let bound = run_bound_s();
    if secs > bound {
        let vc = &next.vcores[k];
        out.push(
            Violation::new(
                44,
                format!(
                    "vcore {:#x} is still in run {} ({}) {:.1} s of timebase after an earlier stop in it \
                     (bound {:.1} s): the run never ended",
                    vc.addr,
                    vc.seq.unwrap_or(0),
                    next.variant.vcore_states().name(vc.vcore_state).unwrap_or("?"),
                    secs,
                    bound
                ),
            )
            .field(p("vcores", k, "vcore_state"), vc.vcore_state)
            .field("host tb", t1)
            .field("previous host tb", t0),
        );
    }
}
