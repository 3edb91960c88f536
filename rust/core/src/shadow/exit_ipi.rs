//! Invariant 45: the first thread to exit sends the exit IPI.
//!
//! Linux 6.12, arch/powerpc/kvm/book3s_hv_builtin.c, `kvmhv_commence_exit`:
//! a thread sets its bit (`0x100 << ptid`) in the exit byte of
//! `vc->entry_exit_map` with a cmpxchg; if the value it replaced had no exit
//! bit (`(ee >> 8) == 0`) it is the first, and unless its trap is the
//! hypervisor decrementer (0x980, the others are leaving on their own HDEC)
//! it calls `kvmhv_interrupt_vcore(vc, ee & ~(1 << ptid))`, which sends
//! `kvmhv_rm_send_ipi(vc->pcpu + i)` for each entry bit `i`: on POWER8, to a
//! thread of the same core, a `msgsnd` whose target is
//! `cpu_thread_in_core(cpu)`.
//!
//! Two kinds of thread call it (book3s_hv_rmhandlers.S):
//! * a thread leaving a vcpu's guest: `guest_exit_cont` stores the trap
//!   (`stw r12, VCPU_TRAP(r9)`; `hdec_soon` and `no_switch_exit` too) and
//!   `guest_bypass` calls `kvmhv_commence_exit(r12)`;
//! * thread 0 without a vcpu (`kvmppc_primary_no_guest`: the vcore has no
//!   vcpu on thread 0, so it naps with `NAPPING_NOVCPU`).  It leaves through
//!   `kvm_novcpu_exit`, which calls `kvmhv_commence_exit(r12)` with the trap
//!   in r12 only (and `STACK_SLOT_TRAP(r1)`, the stack): 0 when another
//!   thread's exit bit is already set (not the first, owes nothing); after
//!   `kvm_novcpu_wakeup`, the wake reason `kvmppc_check_wake_reason` set
//!   (0 for the decrementer that ends the timeslice, 0x500 external,
//!   0xe80 hypervisor doorbell, 0xe60 HMI): a first exit that owes the
//!   IPIs; or `BOOK3S_INTERRUPT_HV_DECREMENTER` when a guest doorbell woke
//!   it after its HDEC expired, which owes none.
//!
//! What the shadow sees, all on the exiting thread X (so in X's program
//! order, whatever the other vCPUs' callbacks do):
//! * X's trap: the plugin reads r3 at `kvmhv_commence_exit`'s local entry
//!   (an instruction callback, before the instruction) and reports it as
//!   `threads[X].kvmhv_commence_exit`: both kinds of exit.  A log without
//!   those events (an older plugin) has the vcpu's `vcpus[..].trap` store
//!   only, and its novcpu exits are not judged;
//! * X's store of the exit bit (the memory callback runs after the store:
//!   the value stored is `ee | me`, exactly what X's cmpxchg saw plus its
//!   own bit);
//! * X's `msgsnd`s (instruction callbacks, before each `msgsnd`);
//! * the deadline: X's next store to a watched field.  `kvmhv_commence_exit`
//!   and `kvmhv_interrupt_vcore` store nothing watched before the IPIs
//!   (the micro-threading loop over `sip->vc[]` runs after them); on return
//!   `guest_bypass` stores `vcpu->cpu = -1` (`stw r0, VCPU_CPU(r9)`), and
//!   `kvm_novcpu_exit` branches to `kvmhv_switch_to_host`, whose first
//!   watched store (thread 0 clearing `vc->in_guest`) comes after the
//!   other threads left the guest.
//!
//! The exiter is the thread whose exit bit the store set, not always the
//! thread the store event names: QEMU implements `stwcx.` as a cmpxchg on
//! the reserved value (target/ppc/translate.c, `gen_conditional_store`), and
//! its plugin API reports a store for a cmpxchg that failed as well, so when
//! two threads race on `entry_exit_map` the loser's callback can be the
//! first to read the winner's bit back from memory and the change is
//! reported under the loser's vCPU.  The winner's own callback then sees no
//! change, and its `msgsnd`s follow in its program order as usual.
//!
//! X's trap is taken only when it is fresh: reported by X's call in this
//! run, or stored by X in this run (after the vcore's `entry_exit_map` was
//! reset by kvmppc_run_core and after X's last entry into the guest).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::consts::{BOOK3S_INTERRUPT_HV_DECREMENTER, KVM_GUEST_MODE_GUEST_HV};
use crate::invariants::Violation;

use super::field::{CField, FieldRef, HField, Reg, VField};
use super::state::CoreState;

/// The invariant number.
pub const EXIT_IPI_SENT: u32 = 45;

/// IPIs the first exiter still owes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Due {
    vcore: u64,
    /// The exit store's `entry_exit_map` value.
    map: u32,
    trap: u32,
    /// Hardware threads (in the core) still to be sent a `msgsnd`.
    targets: Vec<u64>,
}

/// What the rule judged over a trace (the summary's `exit_ipi`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExitIpiStats {
    /// First exits (the exit store set the only exit bit) with a fresh trap.
    pub first_exits: u64,
    /// Of those, by a thread without a vcpu (`kvm_novcpu_exit`).
    pub novcpu: u64,
    /// Of those, with the hypervisor decrementer's trap: they owe nothing.
    pub hdec: u64,
    /// First exits that owed a `msgsnd` (another thread's entry bit was set):
    /// judged.
    pub owed: u64,
    /// Of the judged, by a thread without a vcpu.
    pub owed_novcpu: u64,
    /// First exits whose trap was not known (a log without
    /// `kvmhv_commence_exit` events, a novcpu exit): not judged.
    pub unknown_trap: u64,
}

/// Per-thread state of the rule.
#[derive(Clone, Debug, Default)]
pub struct ExitIpi {
    /// Trap of each thread since its last entry / the last reset: its call
    /// of `kvmhv_commence_exit`, or the vcpu's trap it stored.
    trap: BTreeMap<usize, u32>,
    due: BTreeMap<usize, Due>,
    pub stats: ExitIpiStats,
}

impl ExitIpi {
    /// One change made by thread `cpu` (`before` is the state before it).
    /// Returns the violation when `cpu` reached its deadline with IPIs
    /// still owed.
    pub fn event(&mut self, before: &CoreState, cpu: usize, field: FieldRef, new: u64) -> Option<Violation> {
        let mut out = None;
        match field {
            FieldRef::Reg(_, Reg::Msgsnd) => {
                if let Some(d) = self.due.get_mut(&cpu) {
                    d.targets.retain(|&t| t != new);
                }
                return None;
            }
            FieldRef::Reg(t, Reg::CommenceExit) if t == cpu => {
                // The argument of the call about to store the exit bit.
                self.trap.insert(cpu, new as u32);
                return None;
            }
            FieldRef::Reg(..) | FieldRef::PacaPtrs => return None,
            _ => {
                if let Some(d) = self.due.remove(&cpu) {
                    out = self.overdue(cpu, d);
                }
            }
        }
        match field {
            // The trap of the vcpu this thread runs.  A vcpu's fields are
            // also reported when a PACA first points at it, as changes by
            // the thread that stored the pointer (thread 0 in
            // kvmppc_start_thread): such a trap is not that thread's.
            FieldRef::Vcpu(a, CField::Trap) if before.hstate.get(cpu).is_some_and(|h| h.kvm_vcpu == a) => {
                self.trap.insert(cpu, new as u32);
            }
            FieldRef::Hstate(t, HField::InGuest) if t == cpu && new as u8 == KVM_GUEST_MODE_GUEST_HV => {
                self.trap.remove(&cpu);
            }
            FieldRef::Vcore(a, VField::EntryExitMap) => self.exit_store(before, a, new as u32),
            _ => {}
        }
        out
    }

    /// A change of vcore `a`'s `entry_exit_map` to `map`, by whichever thread
    /// reported it: the exiter is found from the new exit bit (see the
    /// module's notes on racing `stwcx.`).
    fn exit_store(&mut self, before: &CoreState, a: u64, map: u32) {
        if map & 0xffff == 0 {
            // kvmppc_run_core starting a run: traps stored before it are
            // from the last run (or virtual mode, kvmppc_handle_exit_hv).
            self.trap.clear();
            return;
        }
        let exits = map >> 8;
        // The first exit: the stored value has exactly one exit bit (X's),
        // and no VCORE_EXIT_REQ from another subcore.
        if exits.count_ones() != 1 || exits > 0xff {
            return;
        }
        if !before.variant.has_entry_exit_map() {
            return;
        }
        let n = before.threads_per_core as u64;
        let Some(pcpu) = before.vcores.get(&a).map(|v| u64::from(v.pcpu)) else {
            return;
        };
        if n == 0 || pcpu >= n {
            return;
        }
        // The exiter: kvm_hstate.ptid is its thread's offset from vc->pcpu.
        let ptid = exits.trailing_zeros();
        let cpu = ((pcpu + u64::from(ptid)) % n) as usize;
        let novcpu = before.hstate.get(cpu).is_some_and(|h| h.kvm_vcpu == 0);
        let Some(trap) = self.trap.remove(&cpu) else {
            self.stats.unknown_trap += 1;
            return;
        };
        self.stats.first_exits += 1;
        self.stats.novcpu += u64::from(novcpu);
        if trap == BOOK3S_INTERRUPT_HV_DECREMENTER {
            self.stats.hdec += 1;
            return;
        }
        let targets: Vec<u64> = (0..8u32)
            .filter(|&i| i != ptid && map & (1 << i) != 0)
            .map(|i| (pcpu + u64::from(i)) % n)
            .collect();
        if !targets.is_empty() {
            self.stats.owed += 1;
            self.stats.owed_novcpu += u64::from(novcpu);
            self.due.insert(
                cpu,
                Due {
                    vcore: a,
                    map,
                    trap,
                    targets,
                },
            );
        }
    }

    fn overdue(&self, cpu: usize, d: Due) -> Option<Violation> {
        if d.targets.is_empty() {
            return None;
        }
        let list: Vec<String> = d.targets.iter().map(ToString::to_string).collect();
        Some(
            Violation::new(
                EXIT_IPI_SENT,
                format!(
                    "thread {cpu} began the exit of vcore {:#x} first (entry_exit_map {:#x}, trap {:#x}) but sent no msgsnd to thread(s) {} before its next store",
                    d.vcore,
                    d.map,
                    d.trap,
                    list.join(", ")
                ),
            )
            .field(format!("vcores[{:#x}].entry_exit_map", d.vcore), format!("{:#x}", d.map)),
        )
    }
}
