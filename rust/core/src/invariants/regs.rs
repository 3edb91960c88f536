//! Registers a snapshot may carry per thread (`dpdes`, `msr`, `pc`): the
//! doorbell state (31) and the mode a thread in KVM runs in (32).  Each check
//! runs only when the snapshot has the field.

use super::ctx::{p, Ctx, HsField};
use super::mmu::per_core_agree_saying;
use super::Violation;
use crate::consts::*;

/// MSR bits (Power ISA, 64-bit numbering from the low end).
pub const MSR_HV: u64 = 1 << 60;
pub const MSR_IR: u64 = 1 << 5;
pub const MSR_DR: u64 = 1 << 4;
pub const MSR_EE: u64 = 1 << 15;
pub const MSR_PR: u64 = 1 << 14;

/// What disagreeing DPDES readings of one core (thread index, value) mean:
/// for each doorbell (bit N, for thread N) that some threads see and others
/// do not, which threads see it ("; the doorbell for thread 2 (DPDES bit 2)
/// is pending on thread 0 only").
fn doorbells_misplaced(readings: &[(usize, u64)]) -> String {
    let bits = readings.iter().fold(0u64, |m, &(_, v)| m | v);
    let mut out = String::new();
    for b in (0..64).filter(|b| bits & (1 << b) != 0) {
        let on: Vec<String> = readings
            .iter()
            .filter(|&&(_, v)| v & (1 << b) != 0)
            .map(|&(i, _)| i.to_string())
            .collect();
        if on.len() == readings.len() {
            continue;
        }
        let threads = if on.len() == 1 { "thread" } else { "threads" };
        out.push_str(&format!(
            "; the doorbell for thread {b} (DPDES bit {b}) is pending on {threads} {} only",
            on.join(", ")
        ));
    }
    out
}

pub(crate) fn check(cx: &Ctx, out: &mut Vec<Violation>) {
    doorbells(cx, out);
    if cx.s.threads.iter().any(|t| t.msr.is_some()) {
        real_mode_in_kvm(cx, out);
    }
}

/// The checks that read the doorbell registers (threads' `dpdes`; see
/// [`super::check_doorbells`]).
pub(crate) fn doorbells(cx: &Ctx, out: &mut Vec<Violation>) {
    if cx.s.threads.iter().any(|t| t.dpdes.is_some()) {
        // 31: POWER8 keeps the directed privileged doorbells of a core in one
        // DPDES register, bit N pending for thread N (the kernel saves and
        // restores it once per core, from thread 0: "DPDES and VTB are shared
        // between threads" in kvmppc_hv_entry / kvmhv_switch_to_host).  Every
        // thread reads the same value; a doorbell visible from one thread
        // only is held on the wrong thread (QEMU 0324d236d291: mtDPDES and
        // msgsndp raised the sibling's doorbell on the writing thread).
        per_core_agree_saying(cx, 31, "dpdes", |t| t.dpdes, doorbells_misplaced, out);
        no_doorbell_for_a_missing_thread(cx, out);
        no_doorbell_in_host(cx, out);
    }
}

/// 31, the thread clause: DPDES has one bit per thread of the core, so a
/// bit at or above threads_per_core is a doorbell raised for a thread that
/// does not exist (msgsndp names a thread of the sender's core by its number,
/// 0..threads_per_core-1; QEMU 0324d236d291 fixed a msgsndp/mtDPDES that
/// raised a sibling's doorbell on the wrong thread).  Only the register is
/// judged: vc->dpdes may also be written by userspace (KVM_SET_ONE_REG
/// KVM_REG_PPC_DPDES, kvmppc_set_one_reg_hv in book3s_hv.c, any value).
fn no_doorbell_for_a_missing_thread(cx: &Ctx, out: &mut Vec<Violation>) {
    let mask = !((1u64 << cx.tpc) - 1);
    for (i, t) in cx.s.threads.iter().enumerate() {
        let Some(d) = t.dpdes.filter(|&d| d & mask != 0) else {
            continue;
        };
        let missing = (0..64)
            .filter(|&n| (d & mask) >> n & 1 != 0)
            .map(|n: u32| n.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        out.push(
            Violation::new(
                31,
                format!(
                    "DPDES {d:#x} on thread {i} has a doorbell pending for thread {missing}, but the core has {} threads (bits 0-{})",
                    cx.tpc,
                    cx.tpc - 1
                ),
            )
            .hex(p("threads", i, "dpdes"), d),
        );
    }
}

/// 31, the host clause: once thread 0 has switched the core back to the
/// host partition and cleared vc->in_guest, DPDES is 0.  kvmhv_switch_to_host
/// saves DPDES into vc->dpdes and clears it ("so we don't get guest doorbells
/// in the host") after the LPIDR switch and before the store of 0 to
/// VCORE_IN_GUEST; kvmppc_hv_entry loads it after the switch to the guest's
/// LPIDR.  So the host's LPIDR on thread 0 with every vcore's in_guest 0 means
/// no doorbell of a guest may be pending (the host's own IPIs are hypervisor
/// doorbells, msgsnd, not DPDES).  Judged per core, when the VM's host LPID
/// is known: a vcore still in the guest on one core says nothing of another.
fn no_doorbell_in_host(cx: &Ctx, out: &mut Vec<Violation>) {
    let Some(host) = cx.s.kvm.as_ref().and_then(|k| k.host_lpid) else {
        return;
    };
    let threads = &cx.s.threads;
    // The clause is per core: a vcore whose in_guest is 1 exempts the core it
    // runs on (its pcpu, or a thread of the core pointing at it), not the
    // other cores of the snapshot, whose own switch back cleared their DPDES.
    let guest_on_core = |core: u32| {
        cx.s.vcores.iter().any(|vc| {
            vc.in_guest != 0
                && (vc.pcpu / cx.tpc == core
                    || threads
                        .iter()
                        .any(|t| t.cpu / cx.tpc == core && t.kvm_hstate.kvm_vcore == vc.addr))
        })
    };
    for t0 in threads.iter().filter(|t| cx.core_thread(t) == 0) {
        let core = t0.cpu / cx.tpc;
        if t0.lpidr != Some(host) || guest_on_core(core) {
            continue;
        }
        for (i, t) in threads.iter().enumerate() {
            let Some(d) = t.dpdes.filter(|&d| d != 0) else {
                continue;
            };
            if t.cpu / cx.tpc != core {
                continue;
            }
            let pending = (0..8).filter(|n| d >> n & 1 != 0).map(|n| n.to_string());
            out.push(
                Violation::new(
                    31,
                    format!(
                        "a guest doorbell for thread {} is pending in the host partition: DPDES {d:#x} on thread {i} after the switch back (LPIDR {host:#x}, vc->in_guest 0)",
                        pending.collect::<Vec<_>>().join(", ")
                    ),
                )
                .hex(p("threads", i, "dpdes"), d)
                .hex("kvm.host_lpid", host),
            );
        }
    }
}

/// 32: a thread whose PACA says it is in KVM's real-mode code (in_guest
/// HOST_HV, or napping CEDE/NOVCPU) runs in hypervisor real mode (MSR[HV] 1,
/// MSR[IR] = MSR[DR] = 0): kvmppc_hv_entry is reached through an rfid that
/// turns translation off, in_guest is HOST_HV from there (or from
/// kvmppc_interrupt_hv, a hypervisor interrupt) until kvmhv_switch_to_host
/// stores NONE, and the nap and its wakeup run there too.  (The one access
/// made with MSR[DR] on, kvmppc_hdsi's fetch of the guest instruction, runs
/// with in_guest SKIP.)  A thread executing the guest (GUEST_HV) runs with
/// MSR[HV] 0, or in real mode on its way in or out.  KVM's real-mode code
/// also runs with MSR[PR] 0 and MSR[EE] 0: kvmppc_run_core hard-disables
/// interrupts (hard_irq_disable) before __kvmppc_vcore_entry, whose
/// kvmppc_hv_entry_trampoline only clears IR/DR of that MSR for the rfid
/// (book3s_hv_rmhandlers.S), and every way back in (a hypervisor interrupt
/// from the guest, the system reset that ends a nap) clears EE and PR.
/// Hypervisor code with translation on, in problem state or with EE on is
/// host code: the thread woke from a nap into the
/// host without going through kvm_start_guest (Linux 56376c5864f8); the
/// guest's MSR with a nap recorded means it went back to the guest without
/// kvm_end_cede / kvm_novcpu_wakeup.
fn real_mode_in_kvm(cx: &Ctx, out: &mut Vec<Violation>) {
    for (i, t) in cx.s.threads.iter().enumerate() {
        let Some(msr) = t.msr else { continue };
        let h = &t.kvm_hstate;
        let napping = h.napping == NAPPING_CEDE || h.napping == NAPPING_NOVCPU;
        let in_kvm_code = napping || h.in_guest == KVM_GUEST_MODE_HOST_HV;
        let hv = msr & MSR_HV != 0;
        let translated = msr & (MSR_IR | MSR_DR) != 0;
        let in_hv_kvm = (in_kvm_code || h.in_guest == KVM_GUEST_MODE_GUEST_HV) && hv;
        let what = if in_hv_kvm && translated {
            "runs host code with translation on"
        } else if in_hv_kvm && msr & MSR_PR != 0 {
            "runs in hypervisor problem state (MSR[HV] 1, MSR[PR] 1: host user mode)"
        } else if in_hv_kvm && msr & MSR_EE != 0 {
            "runs hypervisor code with external interrupts on (MSR[EE] 1)"
        } else if in_kvm_code && !hv {
            "runs with MSR[HV] 0 (guest code)"
        } else if h.in_guest == KVM_GUEST_MODE_NONE && !hv {
            // fast_guest_return stores in_guest GUEST_HV before its hrfid
            // ("so faults get handled by KVM"); with NONE, the guest's next
            // hypervisor interrupt would be taken as the host's.
            "runs guest code (MSR[HV] 0) with no guest mode in its PACA"
        } else {
            continue;
        };
        let pc = t.pc.map_or(String::new(), |pc| format!(" at pc {pc:#x}"));
        let mut v = Violation::new(
            32,
            format!(
                "thread {i} {what} (msr {msr:#x}){pc} while its PACA says napping {} / in_guest {}",
                h.napping, h.in_guest
            ),
        )
        .hex(p("threads", i, "msr"), msr)
        .hstate(i, h, &[HsField::Napping, HsField::InGuest]);
        if let Some(pc) = t.pc {
            v = v.hex(p("threads", i, "pc"), pc);
        }
        out.push(v);
    }
}
