//! The vcpu a thread's PACA holds (`kvm_hstate.kvm_vcpu`), against that
//! vcpu and its vcore: released at exit (5), ceded vs the PACA's mode (24),
//! cpu fields (6), alignment (3) and doorbell placement (29).

use super::ctx::{p, Ctx, HsField};
use super::Violation;
use crate::consts::*;
use crate::view::{Thread, Vcore, Vcpu};

/// Every check of the vcpu thread `t` (path index `i`) holds, when its PACA
/// holds one whose vcore is in the snapshot.
pub(crate) fn check(cx: &Ctx, i: usize, t: &Thread, out: &mut Vec<Violation>) {
    let Some((j, v)) = cx.vcpu(t.kvm_hstate.kvm_vcpu) else {
        return;
    };
    let Some((k, vc)) = cx.vcore(v.vcore) else {
        return;
    };
    let held = Held { i, t, j, v, k, vc };
    cleared_at_exit(&held, out);
    ceded(&held, out);
    cpu_fields(&held, out);
    alignment(cx, &held, out);
    doorbell(cx, &held, out);
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
                .hstate(i, h, &[HsField::Napping])
                .field(p("vcpus", j, "ceded"), ceded),
            );
        }
        if h.in_guest == KVM_GUEST_MODE_GUEST_HV && ceded != 0 {
            out.push(
                Violation::new(
                    24,
                    format!("vcpu {} executes the guest with ceded {}", v.vcpu_id, ceded),
                )
                .hstate(i, h, &[HsField::InGuest])
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
        .hstate(i, h, &[HsField::KvmVcpu, HsField::KvmVcore])
        .field(p("vcores", k, "entry_exit_map"), map)
        .field(p("vcpus", j, "vcpu_id"), v.vcpu_id),
    );
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
                .hstate(i, h, &[HsField::KvmVcpu])
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
                .hstate(i, h, &[HsField::Ptid, HsField::KvmVcore])
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
            .hstate(i, h, &[HsField::KvmVcpu])
            .field(p("vcpus", j, "vcpu_id"), v.vcpu_id)
            .field(p("vcores", k, "first_vcpuid"), vc.first_vcpuid)
            .field(p("vcores", k, "pcpu"), vc.pcpu),
        );
    }
}
