//! Each thread's PACA (`kvm_hstate`): value ranges, the PACA ptid (3), one
//! PACA per vcpu (5), modes (14, 15, 18, 23), the guest vs the vcore's
//! switch (9), thread 0 with no vcpu (26); the vcpu a PACA holds is judged
//! in `held`.

use super::ctx::{hs, p, Ctx, EntryExit, HsField};
use super::held;
use super::Violation;
use crate::consts::*;
use crate::view::{Hstate, Thread};

pub(crate) fn check(cx: &Ctx, out: &mut Vec<Violation>) {
    for (i, t) in cx.s.threads.iter().enumerate() {
        // Path index i, thread number in the core n.
        let n = cx.core_thread(t);
        values(cx, i, &t.kvm_hstate, out);
        paca(cx, i, n, &t.kvm_hstate, out);
        if n != 0 {
            secondary(cx, i, &t.kvm_hstate, out);
        }
        guest(cx, i, n, t, out);
        woke_and_exiting(cx, i, t, out);
        held::check(cx, i, t, out);
    }
}

/// 23, 14, 18: value ranges.
fn values(cx: &Ctx, i: usize, h: &Hstate, out: &mut Vec<Violation>) {
    // Value ranges.
    if !matches!(
        h.in_guest,
        KVM_GUEST_MODE_NONE | KVM_GUEST_MODE_SKIP | KVM_GUEST_MODE_GUEST_HV | KVM_GUEST_MODE_HOST_HV
    ) {
        out.push(
            Violation::new(
                23,
                format!(
                    "thread {} has in_guest {}, a mode the POWER8 HV path never uses",
                    i, h.in_guest
                ),
            )
            .hstate(i, h, &[HsField::InGuest]),
        );
    }
    let max_napping = if cx.s.variant == Variant::Modern {
        NAPPING_UNSPLIT
    } else {
        NAPPING_NOVCPU
    };
    if h.napping > max_napping {
        out.push(
            Violation::new(
                14,
                format!("thread {} has napping {}, not a NAPPING_* value", i, h.napping),
            )
            .hstate(i, h, &[HsField::Napping]),
        );
    }
    if h.hwthread_state > KVM_HWTHREAD_IN_KVM || h.hwthread_req > 1 {
        out.push(
            Violation::new(
                18,
                format!(
                    "thread {} has hwthread_state {} / hwthread_req {}",
                    i, h.hwthread_state, h.hwthread_req
                ),
            )
            .hstate(i, h, &[HsField::HwthreadState, HsField::HwthreadReq]),
        );
    }
}

/// 3 (PACA ptid), 5, 23, 14 (napping mode).
fn paca(cx: &Ctx, i: usize, n: usize, h: &Hstate, out: &mut Vec<Violation>) {
    // 3: the PACA ptid is only ever written as `cpu - vc->pcpu`, so even a
    // stale one is this thread's index (or 0 if never written).
    if cx.aligned && !cx.hstate_ptid_ok(n, h.ptid) {
        out.push(
            Violation::new(
                3,
                format!("thread {} has PACA ptid {}, not its own thread number", n, h.ptid),
            )
            .hstate(i, h, &[HsField::Ptid]),
        );
    }

    // 3, from the PACA alone: kvmppc_start_thread (book3s_hv.c) stores
    // `ptid = cpu - vc->pcpu`, then (modern, after an smp_wmb) kvm_vcore.
    // So a modern thread whose kvm_vcore is set holds the ptid of this start:
    // its index in the (sub)core, never a stale 0.  Judged without the vcore
    // or vcpu, which a crashed or torn-down VM no longer has.
    if cx.aligned && cx.s.variant == Variant::Modern && h.kvm_vcore != 0 && !cx.started_ptid_ok(n, h.ptid) {
        out.push(
            Violation::new(
                3,
                format!(
                    "thread {} was started (kvm_vcore {:#x}) with PACA ptid {}, not its thread number in the core",
                    n, h.kvm_vcore, h.ptid
                ),
            )
            .hstate(i, h, &[HsField::Ptid, HsField::KvmVcore]),
        );
    }

    // 5: one vcpu per PACA.
    if h.kvm_vcpu != 0 {
        if let Some(i2) = cx.holder(h.kvm_vcpu).filter(|&i2| i2 < i) {
            out.push(
                Violation::new(5, format!("one vcpu is in the PACAs of threads {} and {}", i2, i))
                    .hex(hs(i2, "kvm_vcpu"), h.kvm_vcpu)
                    .hstate(i, h, &[HsField::KvmVcpu]),
            );
        }
    }

    // 23: a thread in KVM's real-mode code got there through a PACA
    // pointing at a vcore (cleared only after in_guest is back to NONE).
    if h.in_guest != KVM_GUEST_MODE_NONE && h.kvm_vcore == 0 {
        out.push(
            Violation::new(
                23,
                format!(
                    "thread {} is in KVM (in_guest {}) with no kvm_vcore",
                    i, h.in_guest
                ),
            )
            .hstate(i, h, &[HsField::InGuest, HsField::KvmVcore]),
        );
    }

    // 23: a thread executing the guest holds the vcpu it runs: fast_guest_return
    // (book3s_hv_rmhandlers.S) enters with r4 = the PACA's kvm_vcpu, and
    // kvm_vcpu is cleared only after kvmppc_hv_entry has returned (in_guest
    // NONE by then: kvm_secondary_got_guest, kvmppc_release_hwthread).
    // Thread 0 with no vcpu naps (NAPPING_NOVCPU) and never enters the guest.
    if h.in_guest == KVM_GUEST_MODE_GUEST_HV && h.kvm_vcpu == 0 {
        out.push(
            Violation::new(
                23,
                format!(
                    "thread {} executes the guest (in_guest GUEST_HV) with no kvm_vcpu",
                    i
                ),
            )
            .hstate(i, h, &[HsField::InGuest, HsField::KvmVcpu]),
        );
    }

    // 14: napping (CEDE or NOVCPU) happens inside kvmppc_hv_entry, with
    // in_guest HOST_HV until the wakeup clears napping.
    if (h.napping == NAPPING_CEDE || h.napping == NAPPING_NOVCPU) && h.in_guest != KVM_GUEST_MODE_HOST_HV {
        out.push(
            Violation::new(
                14,
                format!(
                    "thread {} naps in KVM (napping {}) but in_guest is {}",
                    i, h.napping, h.in_guest
                ),
            )
            .hstate(i, h, &[HsField::Napping, HsField::InGuest]),
        );
    }
}

/// 15, 18: a secondary in KVM is grabbed.
fn secondary(cx: &Ctx, i: usize, h: &Hstate, out: &mut Vec<Violation>) {
    // 15: a secondary is grabbed (hwthread_req 1) for the whole run and
    // clears napping before it can leave it.  Thread 0 is not judged:
    // it stores napping a few instructions before kvm_do_nap stores
    // hwthread_req = 1, and its hwthread_req was 0 before.
    if h.napping != 0 && h.hwthread_req != 1 {
        out.push(
            Violation::new(
                15,
                format!(
                    "secondary thread {} naps in KVM (napping {}) with hwthread_req 0",
                    i, h.napping
                ),
            )
            .hstate(i, h, &[HsField::Napping, HsField::HwthreadReq]),
        );
    }
    // 18: a secondary in KVM real-mode code came through
    // kvm_start_guest (IN_KVM) and is released only after it is back
    // out.  A seed secondary waking from a cede nap passes the system
    // reset vector, which stores IN_KERNEL before kvm_start_guest
    // stores IN_KVM again; modern cede naps return in place.
    if h.in_guest != KVM_GUEST_MODE_NONE {
        let state_ok = match cx.s.variant {
            Variant::Modern => h.hwthread_state == KVM_HWTHREAD_IN_KVM,
            _ => h.hwthread_state != KVM_HWTHREAD_IN_IDLE,
        };
        if h.hwthread_req != 1 || !state_ok {
            out.push(
                Violation::new(
                    18,
                    format!(
                        "secondary thread {} is in KVM (in_guest {}) with hwthread_req {} \
                         and hwthread_state {}",
                        i, h.in_guest, h.hwthread_req, h.hwthread_state
                    ),
                )
                .hstate(
                    i,
                    h,
                    &[HsField::InGuest, HsField::HwthreadReq, HsField::HwthreadState],
                ),
            );
        }
    }
}

/// 9: the guest runs only after the switch; 26: thread 0 with no vcpu.
fn guest(cx: &Ctx, i: usize, n: usize, t: &Thread, out: &mut Vec<Violation>) {
    let h = &t.kvm_hstate;
    let vcore = cx.vcore_of_thread(h);

    // 9: secondaries wait for vc->in_guest before entering, and thread 0
    // clears it only when every entered thread is exiting (HOST_HV).
    if h.in_guest == KVM_GUEST_MODE_GUEST_HV {
        if let Some((k, vc)) = vcore {
            if vc.in_guest == 0 {
                out.push(
                    Violation::new(
                        9,
                        format!("thread {} executes the guest while vcore in_guest is 0", i),
                    )
                    .hstate(i, h, &[HsField::InGuest])
                    .field(p("vcores", k, "in_guest"), vc.in_guest),
                );
            }
        }
    }

    // 26: thread 0 with no vcpu naps with NAPPING_NOVCPU.
    if h.napping == NAPPING_NOVCPU {
        novcpu(cx, i, n, t, out);
    }
}

/// 14: a secondary that no longer naps and has begun its exit is out of
/// napping_threads.  Only kvmppc_h_cede sets a secondary's bit (before it
/// stores NAPPING_CEDE), and kvm_end_cede clears it before it clears
/// napping (book3s_hv_rmhandlers.S; a cede that finds the exit begun takes
/// the same clearing path).  A thread begins its exit (kvmhv_commence_exit)
/// only after that, so with its exit bit set and napping 0 its bit is clear.
/// Thread 0 is not judged: kvm_novcpu_wakeup clears napping and, finding the
/// exit begun, leaves without clearing its bit.
fn woke_and_exiting(cx: &Ctx, i: usize, t: &Thread, out: &mut Vec<Violation>) {
    let h = &t.kvm_hstate;
    let pt = h.ptid as u32;
    if pt == 0 || pt >= 8 || h.napping != 0 {
        return;
    }
    let Some((k, vc)) = cx.vcore(h.kvm_vcore) else {
        return;
    };
    // A secondary's bit is set by kvmppc_h_cede (lwarx/stwcx. by
    // HSTATE_PTID) in real mode with in_guest HOST_HV, and cleared at
    // kvm_end_cede's label 34 (also the path of a cede that finds the exit
    // begun) before the thread can return to the guest or leave KVM; the
    // last thread to cede branches to kvm_cede_exit without setting it, and
    // init_vcore_to_run resets the word before the threads are started.  So
    // a secondary whose bit is set is in KVM's real-mode code.
    //
    // The seed (e0b7ec058c0e, v3.14) orders the same stores: kvmppc_h_cede
    // sets the bit by HSTATE_PTID after kvmppc_interrupt_hv stored HOST_HV
    // (the stwcx. is skipped when every entered thread would nap:
    // kvm_cede_exit), kvm_end_cede's label 34 clears it before
    // kvmppc_cede_reentry or guest_exit_cont, the first exiter's IPI in
    // hdec_soon wakes every napping thread before thread 0 can switch back,
    // and kvmppc_run_core (book3s_hv.c) zeroes the word at the start of each
    // run.  Its PACAs keep kvm_vcore after the run, so only the PACA that
    // runs ptid `pt` of this vcore is judged: cpu vc->pcpu + ptid
    // (kvmppc_start_thread), not a PACA left from a run on another core.
    // And only in RUNNING or EXITING, where the word is this run's:
    // kvmppc_run_core stores VCORE_STARTING before it zeroes
    // napping_threads, so a STARTING stop may show the last run's word.
    let st = cx.states;
    let own = match (vc.entry_exit_map, cx.s.variant) {
        (Some(_), _) => true,
        (None, Variant::Seed) => {
            vc.entry_exit_count.is_some()
                && (vc.vcore_state == st.running || vc.vcore_state == st.exiting)
                && u64::from(t.cpu) == u64::from(vc.pcpu) + u64::from(pt)
        }
        (None, _) => false,
    };
    if own
        && vc.napping_threads & (1 << pt) != 0
        && matches!(h.in_guest, KVM_GUEST_MODE_GUEST_HV | KVM_GUEST_MODE_NONE)
    {
        let mode = if h.in_guest == KVM_GUEST_MODE_GUEST_HV {
            "executes the guest (in_guest GUEST_HV)"
        } else {
            "is out of KVM (in_guest NONE)"
        };
        out.push(
            Violation::new(
                14,
                format!(
                    "secondary thread {i} (ptid {pt}) {mode}, but its bit is set in napping_threads {:#x}: only its own H_CEDE sets it, and kvm_end_cede clears it before the thread leaves the cede",
                    vc.napping_threads
                ),
            )
            .field(p("vcores", k, "napping_threads"), vc.napping_threads)
            .hstate(i, h, &[HsField::InGuest, HsField::Ptid]),
        );
    }
    let Some(map) = vc.entry_exit_map else {
        return;
    };
    if map & (1 << (8 + pt)) != 0 && vc.napping_threads & (1 << pt) != 0 {
        out.push(
            Violation::new(
                14,
                format!(
                    "thread {} has begun its exit and no longer naps, but is still in napping_threads {:#x}",
                    pt, vc.napping_threads
                ),
            )
            .field(p("vcores", k, "napping_threads"), vc.napping_threads)
            .field(p("vcores", k, "entry_exit_map"), map)
            .hstate(i, h, &[HsField::Napping]),
        );
    }
}

/// 26: thread 0 napping with no vcpu.
fn novcpu(cx: &Ctx, i: usize, n: usize, t: &Thread, out: &mut Vec<Violation>) {
    let h = &t.kvm_hstate;
    let subcore_start = n == 0 || (cx.s.variant == Variant::Modern && cx.tpc == 8 && n.is_multiple_of(2));
    if !subcore_start {
        out.push(
            Violation::new(
                26,
                format!("thread {} naps with NAPPING_NOVCPU; only thread 0 does", n),
            )
            .hstate(i, h, &[HsField::Napping]),
        );
        return;
    }
    if h.ptid != 0 || h.kvm_vcore == 0 {
        out.push(
            Violation::new(
                26,
                format!(
                    "thread {} naps with NAPPING_NOVCPU but has ptid {} and kvm_vcore {:#x}",
                    i, h.ptid, h.kvm_vcore
                ),
            )
            .hstate(i, h, &[HsField::Ptid, HsField::KvmVcore]),
        );
    }
    // kvm_vcpu is NULL, or a latecomer with ptid 0 was just handed to it
    // (kvmppc_start_thread stores kvm_vcpu, then IPIs the napping thread).
    if let Some((j, v)) = cx.vcpu(h.kvm_vcpu) {
        if v.ptid != 0 || (h.kvm_vcore != 0 && v.vcore != h.kvm_vcore) {
            out.push(
                Violation::new(
                    26,
                    format!(
                        "thread {} naps with NAPPING_NOVCPU holding vcpu {} (ptid {})",
                        i, v.vcpu_id, v.ptid
                    ),
                )
                .hstate(i, h, &[HsField::KvmVcpu])
                .field(p("vcpus", j, "ptid"), v.ptid),
            );
        }
    }
    let Some((k, vc)) = cx.vcore(h.kvm_vcore) else {
        return;
    };
    // kvmppc_primary_no_guest runs after the entry count and the MMU switch,
    // sets napping bit 0 before storing NAPPING_NOVCPU, and the wakeup clears
    // napping before the bit.
    let ee = EntryExit::of(vc, cx.s.variant);
    let entered = match ee {
        EntryExit::Map { entry, .. } => entry & 1 != 0,
        EntryExit::Count { .. } => ee.entered() >= 1,
        EntryExit::Unknown => true,
    };
    if vc.napping_threads & 1 == 0 || !entered || vc.in_guest != 1 {
        out.push(
            Violation::new(
                26,
                format!(
                    "thread {} naps with NAPPING_NOVCPU but the vcore has napping_threads {:#x}, {} {:#x}, in_guest {}",
                    i,
                    vc.napping_threads,
                    ee.key(),
                    ee.raw(),
                    vc.in_guest
                ),
            )
            .field(p("vcores", k, "napping_threads"), vc.napping_threads)
            .field(p("vcores", k, ee.key()), ee.raw())
            .field(p("vcores", k, "in_guest"), vc.in_guest),
        );
    }
}
