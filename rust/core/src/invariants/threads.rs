//! Each thread's PACA (`kvm_hstate`): value ranges, the PACA ptid (3), one
//! PACA per vcpu (5), modes (14, 15, 18, 23), the guest vs the vcore's
//! switch (9), thread 0 with no vcpu (26), and the vcpu a PACA holds:
//! ceded (24), cpu fields (6), alignment (3) and doorbell placement (29).

use super::ctx::{hs, p, Ctx, EntryExit};
use super::Violation;
use crate::consts::*;
use crate::view::{Hstate, Thread, Vcore, Vcpu};

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
        woke_and_exiting(cx, i, &t.kvm_hstate, out);
        let h = &t.kvm_hstate;
        let Some((j, v)) = cx.vcpu(h.kvm_vcpu) else {
            continue;
        };
        let Some((k, vc)) = cx.vcore(v.vcore) else {
            continue;
        };
        let held = Held { i, t, j, v, k, vc };
        cleared_at_exit(&held, out);
        ceded(&held, out);
        cpu_fields(&held, out);
        alignment(cx, &held, out);
        doorbell(cx, &held, out);
    }
}

/// A vcpu held by a PACA: thread (index i), vcpu (j), its vcore (k).
struct Held<'a> {
    i: usize,
    t: &'a Thread,
    j: usize,
    v: &'a Vcpu,
    k: usize,
    vc: &'a Vcore,
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
            .field(hs(i, "in_guest"), h.in_guest),
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
            .field(hs(i, "napping"), h.napping),
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
            .field(hs(i, "hwthread_state"), h.hwthread_state)
            .field(hs(i, "hwthread_req"), h.hwthread_req),
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
            .field(hs(i, "ptid"), h.ptid),
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
            .field(hs(i, "ptid"), h.ptid)
            .hex(hs(i, "kvm_vcore"), h.kvm_vcore),
        );
    }

    // 5: one vcpu per PACA.
    if h.kvm_vcpu != 0 {
        if let Some(i2) = cx.holder(h.kvm_vcpu).filter(|&i2| i2 < i) {
            out.push(
                Violation::new(5, format!("one vcpu is in the PACAs of threads {} and {}", i2, i))
                    .hex(hs(i2, "kvm_vcpu"), h.kvm_vcpu)
                    .hex(hs(i, "kvm_vcpu"), h.kvm_vcpu),
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
            .field(hs(i, "in_guest"), h.in_guest)
            .hex(hs(i, "kvm_vcore"), h.kvm_vcore),
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
            .field(hs(i, "napping"), h.napping)
            .field(hs(i, "in_guest"), h.in_guest),
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
            .field(hs(i, "napping"), h.napping)
            .field(hs(i, "hwthread_req"), h.hwthread_req),
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
                                "secondary thread {} is in KVM (in_guest {}) with hwthread_req {} and hwthread_state {}",
                                i, h.in_guest, h.hwthread_req, h.hwthread_state
                            ),
                        )
                        .field(hs(i, "in_guest"), h.in_guest)
                        .field(hs(i, "hwthread_req"), h.hwthread_req)
                        .field(hs(i, "hwthread_state"), h.hwthread_state),
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
                    .field(hs(i, "in_guest"), h.in_guest)
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

/// 24: ceded vs the PACA's mode.
fn ceded(held: &Held, out: &mut Vec<Violation>) {
    let Held { i, j, v, t, .. } = *held;
    let h = &t.kvm_hstate;
    // 24: ceded is set before the cede nap and cleared only by the next
    // fast_guest_return, which is also where in_guest becomes GUEST_HV.
    if let Some(ceded) = v.ceded {
        if h.napping == NAPPING_CEDE && ceded == 0 {
            out.push(
                Violation::new(
                    24,
                    format!(
                        "thread {} naps with NAPPING_CEDE but vcpu {} has ceded 0",
                        i, v.vcpu_id
                    ),
                )
                .field(hs(i, "napping"), h.napping)
                .field(p("vcpus", j, "ceded"), ceded),
            );
        }
        if h.in_guest == KVM_GUEST_MODE_GUEST_HV && ceded != 0 {
            out.push(
                Violation::new(
                    24,
                    format!("vcpu {} executes the guest with ceded {}", v.vcpu_id, ceded),
                )
                .field(hs(i, "in_guest"), h.in_guest)
                .field(p("vcpus", j, "ceded"), ceded),
            );
        }
    }
}

/// 6 (held vcpu).
fn cpu_fields(held: &Held, out: &mut Vec<Violation>) {
    let Held { i, t, j, v, k, vc } = *held;
    // 6 (held vcpu): cpu is pcpu and thread_cpu this thread, or -1 once
    // the exit has begun (a PACA may still hold the vcpu then).
    if v.cpu != -1 && v.cpu as i64 != vc.pcpu as i64 {
        out.push(
            Violation::new(
                6,
                format!(
                    "vcpu {} on thread {} has cpu {}, not pcpu {} (or -1)",
                    v.vcpu_id, i, v.cpu, vc.pcpu
                ),
            )
            .field(p("vcpus", j, "cpu"), v.cpu)
            .field(p("vcores", k, "pcpu"), vc.pcpu),
        );
    }
    if let Some(tc) = v.thread_cpu {
        if tc != -1 && tc as i64 != t.cpu as i64 {
            out.push(
                Violation::new(
                    6,
                    format!(
                        "vcpu {} is in the PACA of cpu {} but has thread_cpu {}",
                        v.vcpu_id, t.cpu, tc
                    ),
                )
                .field(p("vcpus", j, "thread_cpu"), tc)
                .field(p("threads", i, "cpu"), t.cpu),
            );
        }
    }
}

/// 5: a secondary that has finished its part of a run lets go of its vcpu.
/// kvm_secondary_got_guest (book3s_hv_rmhandlers.S), back from
/// kvmppc_hv_entry, stores 0 to HSTATE_KVM_VCPU, then (after an lwsync)
/// to HSTATE_KVM_VCORE: a thread whose exit bit is set in the run of its
/// vcpu's vcore and whose kvm_vcore is already cleared holds no vcpu.  No
/// start is in flight then: kvmppc_run_core resets the entry/exit word
/// before kvmppc_start_thread, and kvmppc_run_vcpu starts no thread once an
/// exit began (VCORE_IS_EXITING).
fn cleared_at_exit(held: &Held, out: &mut Vec<Violation>) {
    let Held { i, t, j, v, k, vc } = *held;
    let h = &t.kvm_hstate;
    let n = t.cpu as i64 - vc.pcpu as i64;
    let Some(map) = vc.entry_exit_map else {
        return;
    };
    if h.kvm_vcore != 0 || !(1..8).contains(&n) || map & (1 << (8 + n)) == 0 {
        return;
    }
    out.push(
        Violation::new(
            5,
            format!(
                "thread {} has left the run (exit bit set, kvm_vcore cleared) but its PACA still holds vcpu {}",
                n, v.vcpu_id
            ),
        )
        .hex(hs(i, "kvm_vcpu"), h.kvm_vcpu)
        .hex(hs(i, "kvm_vcore"), h.kvm_vcore)
        .field(p("vcores", k, "entry_exit_map"), map)
        .field(p("vcpus", j, "vcpu_id"), v.vcpu_id),
    );
}

/// 14: a secondary that no longer naps and has begun its exit is out of
/// napping_threads.  Only kvmppc_h_cede sets a secondary's bit (before it
/// stores NAPPING_CEDE), and kvm_end_cede clears it before it clears
/// napping (book3s_hv_rmhandlers.S; a cede that finds the exit begun takes
/// the same clearing path).  A thread begins its exit (kvmhv_commence_exit)
/// only after that, so with its exit bit set and napping 0 its bit is clear.
/// Thread 0 is not judged: kvm_novcpu_wakeup clears napping and, finding the
/// exit begun, leaves without clearing its bit.
fn woke_and_exiting(cx: &Ctx, i: usize, h: &Hstate, out: &mut Vec<Violation>) {
    let pt = h.ptid as u32;
    if pt == 0 || pt >= 8 || h.napping != 0 {
        return;
    }
    let Some((k, vc)) = cx.vcore(h.kvm_vcore) else {
        return;
    };
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
            .field(hs(i, "napping"), h.napping),
        );
    }
}

/// 3: alignment of a held vcpu.
fn alignment(cx: &Ctx, held: &Held, out: &mut Vec<Violation>) {
    let Held { i, t, j, v, k, vc } = *held;
    let h = &t.kvm_hstate;
    let n = t.cpu as i64 - vc.pcpu as i64;

    // 3: alignment.  kvmppc_start_thread writes the vcpu into the PACA of
    // pcpu + ptid.  The PACA's ptid/kvm_vcore are only judged once the
    // start is complete: seed stores kvm_vcpu, kvm_vcore, ptid, then
    // vcpu->cpu; modern stores vcpu->cpu, kvm_vcpu, ptid, then (after a
    // wmb) kvm_vcore.
    if cx.aligned {
        if n != v.ptid as i64 {
            out.push(
                Violation::new(
                    3,
                    format!(
                        "vcpu {} (ptid {}) is on thread {} of the vcore, not thread {}",
                        v.vcpu_id, v.ptid, n, v.ptid
                    ),
                )
                .hex(hs(i, "kvm_vcpu"), h.kvm_vcpu)
                .field(p("threads", i, "cpu"), t.cpu)
                .field(p("vcpus", j, "ptid"), v.ptid)
                .field(p("vcores", k, "pcpu"), vc.pcpu),
            );
        }
        let started = match cx.s.variant {
            Variant::Modern => h.kvm_vcore != 0,
            _ => v.cpu as i64 == vc.pcpu as i64,
        };
        if started && (h.ptid != v.ptid || h.kvm_vcore != v.vcore) {
            let what = if h.ptid != v.ptid {
                format!("PACA ptid {}", h.ptid)
            } else {
                format!(
                    "PACA kvm_vcore {:#x}, not the vcpu's vcore {:#x}",
                    h.kvm_vcore, v.vcore
                )
            };
            out.push(
                Violation::new(
                    3,
                    format!(
                        "thread {} runs vcpu {} (ptid {}) with {}",
                        i, v.vcpu_id, v.ptid, what
                    ),
                )
                .field(hs(i, "ptid"), h.ptid)
                .hex(hs(i, "kvm_vcore"), h.kvm_vcore)
                .field(p("vcpus", j, "ptid"), v.ptid)
                .hex(p("vcpus", j, "vcore"), v.vcore),
            );
        }
    }
}

/// 29: doorbell placement.
fn doorbell(cx: &Ctx, held: &Held, out: &mut Vec<Violation>) {
    let Held { i, t, j, v, k, vc } = *held;
    let h = &t.kvm_hstate;
    let n = t.cpu as i64 - vc.pcpu as i64;
    // 29: a guest msgsndp to virtual thread N reaches whatever vcpu sits on
    // physical thread pcpu + N; it must be vcpu first_vcpuid + N.
    if (0..cx.tpc as i64).contains(&n) && v.vcpu_id as i64 != vc.first_vcpuid as i64 + n {
        out.push(
            Violation::new(
                29,
                format!(
                    "a doorbell to virtual thread {} would reach vcpu {}, not vcpu {}",
                    n,
                    v.vcpu_id,
                    vc.first_vcpuid as i64 + n
                ),
            )
            .hex(hs(i, "kvm_vcpu"), h.kvm_vcpu)
            .field(p("vcpus", j, "vcpu_id"), v.vcpu_id)
            .field(p("vcores", k, "first_vcpuid"), vc.first_vcpuid)
            .field(p("vcores", k, "pcpu"), vc.pcpu),
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
            .field(hs(i, "napping"), h.napping),
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
            .field(hs(i, "ptid"), h.ptid)
            .hex(hs(i, "kvm_vcore"), h.kvm_vcore),
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
                .hex(hs(i, "kvm_vcpu"), h.kvm_vcpu)
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
