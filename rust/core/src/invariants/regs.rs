//! Registers a snapshot may carry per thread (`dpdes`, `msr`, `pc`): the
//! doorbell state (31) and the mode a thread in KVM runs in (32).  Each check
//! runs only when the snapshot has the field.

use super::ctx::{hs, p, Ctx};
use super::mmu::per_core_agree;
use super::Violation;
use crate::consts::*;

/// MSR bits (Power ISA, 64-bit numbering from the low end).
pub const MSR_HV: u64 = 1 << 60;
pub const MSR_IR: u64 = 1 << 5;
pub const MSR_DR: u64 = 1 << 4;

pub(crate) fn check(cx: &Ctx, out: &mut Vec<Violation>) {
    if cx.s.threads.iter().any(|t| t.dpdes.is_some()) {
        // 31: POWER8 keeps the directed privileged doorbells of a core in one
        // DPDES register, bit N pending for thread N (the kernel saves and
        // restores it once per core, from thread 0: "DPDES and VTB are shared
        // between threads" in kvmppc_hv_entry / kvmhv_switch_to_host).  Every
        // thread reads the same value; a doorbell visible from one thread
        // only is held on the wrong thread (QEMU 0324d236d291: mtDPDES and
        // msgsndp raised the sibling's doorbell on the writing thread).
        per_core_agree(cx, 31, "dpdes", |t| t.dpdes, out);
    }
    if cx.s.threads.iter().any(|t| t.msr.is_some()) {
        real_mode_in_kvm(cx, out);
    }
}

/// 32: a thread whose PACA says it executes the guest (GUEST_HV) or naps in
/// KVM (napping CEDE/NOVCPU) is in the guest (MSR[HV] 0) or in KVM's
/// real-mode code (MSR[IR] = MSR[DR] = 0): the entry, exit, nap and wakeup
/// paths all run with translation off.  Hypervisor code with translation on
/// is host kernel code: the thread woke from a nap into the host without
/// going through kvm_start_guest (Linux 56376c5864f8).
fn real_mode_in_kvm(cx: &Ctx, out: &mut Vec<Violation>) {
    for (i, t) in cx.s.threads.iter().enumerate() {
        let Some(msr) = t.msr else { continue };
        let h = &t.kvm_hstate;
        let in_kvm =
            h.in_guest == KVM_GUEST_MODE_GUEST_HV || h.napping == NAPPING_CEDE || h.napping == NAPPING_NOVCPU;
        if in_kvm && msr & MSR_HV != 0 && msr & (MSR_IR | MSR_DR) != 0 {
            let pc = t.pc.map_or(String::new(), |pc| format!(" at pc {pc:#x}"));
            let mut v = Violation::new(
                32,
                format!(
                    "thread {i} runs host code with translation on (msr {msr:#x}){pc} while its PACA says napping {} / in_guest {}",
                    h.napping, h.in_guest
                ),
            )
            .hex(p("threads", i, "msr"), msr)
            .field(hs(i, "napping"), h.napping)
            .field(hs(i, "in_guest"), h.in_guest);
            if let Some(pc) = t.pc {
                v = v.hex(p("threads", i, "pc"), pc);
            }
            out.push(v);
        }
    }
}
