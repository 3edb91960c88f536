//! Checks that need two consecutive states exactly one store apart (7, 12,
//! 13: who stored what, and when) and the liveness bounds (a state held
//! longer than the kernel itself allows, in timebase ticks).
//!
//! Invariants 11, 19 and 23 (entry after exit, the vcore_state graph, the
//! per-thread in_guest graph) are [`crate::invariants::check_event_step`],
//! run by the shadow on the states before and after each change.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::consts::*;
use crate::invariants::Violation;
use crate::view::Hstate;

use super::exit_ipi::ExitIpi;
use super::field::{FieldRef, Reg, VField};
use super::state::CoreState;

/// `LPID_RSVD` (arch/powerpc/kvm/book3s_hv_rmhandlers.S: the reserved LPID
/// loaded while the partition is being switched).
pub const LPID_RSVD: u64 = 0xfff;

/// Liveness invariants: numbers, in the same numbering as the others.
pub const LIVE_GRAB: u32 = 41;
pub const LIVE_EXIT_IPI: u32 = 42;
pub const LIVE_EXITING: u32 = 43;

/// The kernel's own bounds, in seconds (converted with the timebase
/// frequency: 512,000,000 ticks per second on POWER8), and the slack applied
/// to them under emulation.  Sources are Linux 6.12.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    /// Invariant 41.  kvmppc_grab_hwthread (arch/powerpc/kvm/book3s_hv.c)
    /// polls `hwthread_state == KVM_HWTHREAD_IN_KERNEL` with `timeout =
    /// 10000` and `udelay(1)` per poll, then prints "KVM: couldn't grab cpu
    /// %d" and gives up: 10 ms = 5,120,000 ticks.
    pub grab_s: f64,
    /// Invariant 42.  Once one thread has set its exit bit, every entered
    /// thread must start its exit: kvmhv_commence_exit
    /// (arch/powerpc/kvm/book3s_hv_builtin.c) sends each an IPI through
    /// kvmhv_interrupt_vcore (msgsnd on POWER8), and a thread that missed it
    /// is forced out by the hypervisor decrementer, which
    /// __kvmppc_vcore_entry (arch/powerpc/kvm/book3s_hv_interrupts.S,
    /// `mtspr SPRN_HDEC`) loads from the host's DEC: at most one host tick,
    /// 1/CONFIG_HZ = 4 ms at Debian's CONFIG_HZ=250 = 2,048,000 ticks.
    pub exit_ipi_s: f64,
    /// Invariant 43.  VCORE_EXITING lasts from kvmppc_run_core's
    /// `vc->vcore_state = VCORE_EXITING` through kvmppc_wait_for_nap
    /// (book3s_hv.c: 1,000,000 polls of the siblings' `kvm_vcore`, then
    /// "KVM: CPU %d seems to be stuck") and post_guest_process.  The kernel
    /// counts polls, not time; at ~100 ns a poll (n-1 loads of other
    /// threads' PACAs at low SMT priority) that is 100 ms = 51,200,000 ticks.
    pub exiting_s: f64,
    /// Multiplier on every bound (default 100: judged at 1 s, 0.4 s and
    /// 10 s).  The kernel's bounds are for a real POWER8.  Under TCG the
    /// timebase follows the host clock while the guest's code runs one to
    /// two orders of magnitude slower (a `udelay(1)` poll or an IPI round
    /// trip takes many host microseconds), and on a loaded host a vCPU
    /// thread can be descheduled for whole host ticks: correct runs on a
    /// loaded 2-core host showed an entered thread taking 44-75 ms (11-19x
    /// the 4 ms bound) to start its exit.  100x keeps a correct kernel
    /// clean under that, while a real hang (the state never ends) is still
    /// reported.
    pub slack: f64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            grab_s: 0.010,
            exit_ipi_s: 0.004,
            exiting_s: 0.100,
            slack: 100.0,
        }
    }
}

/// What a liveness episode is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Live {
    Grab(usize),
    ExitIpi(u64, u32),
    Exiting(u64),
}

/// Step and liveness state carried from one change to the next.
#[derive(Clone, Debug, Default)]
pub struct StepChecker {
    /// Episode start on the host's timebase (None while not yet known: it
    /// began where an event's host timebase was not known, and is measured
    /// from the first event after it that was, which can only shorten it)
    /// and whether it was reported.
    live: BTreeMap<Live, (Option<u64>, bool)>,
    /// Non-reserved LPIDR writes by threads in KVM, per vcore, this run.
    lpid_writes: BTreeMap<u64, u32>,
    /// Invariant 45: the first exiter's IPIs.
    exit_ipi: ExitIpi,
}

fn v(inv: u32, msg: String) -> Violation {
    Violation::new(inv, msg)
}

fn with(x: Violation, k: &str, val: impl Into<Value>) -> Violation {
    x.field(k, val)
}

fn entry_exit(s: &CoreState, vc: u64) -> Option<(u32, u32, bool)> {
    let c = s.vcores.get(&vc)?;
    if let Some(m) = c.entry_exit_map {
        Some((m & 0xff, (m >> 8) & 0xff, m & VCORE_EXIT_REQ != 0))
    } else {
        c.entry_exit_count.map(|m| (m & 0xff, (m >> 8) & 0xff, false))
    }
}

/// 7 and 13: vcore `a`'s in_guest stored by thread `cpu` (`me` its PACA):
/// only ptid 0 stores it, and it goes 1 -> 0 only once every thread that
/// entered has exited.
fn vcore_in_guest(before: &CoreState, cpu: usize, me: &Hstate, a: u64, new: u64, out: &mut Vec<Violation>) {
    let old = before.vcores.get(&a).map(|c| c.in_guest).unwrap_or(0);
    if old != new as u8 && me.ptid != 0 && me.kvm_vcore == a {
        out.push(with(
            v(
                7,
                format!(
                    "vcore in_guest {old} -> {new} stored by thread {cpu} with ptid {}; only ptid 0 does",
                    me.ptid
                ),
            ),
            &format!("vcores[{a:#x}].in_guest"),
            new,
        ));
    }
    if old != 1 || new != 0 {
        return;
    }
    if let Some((entry, exit, _)) = entry_exit(before, a) {
        let done = if before.variant.has_entry_exit_map() {
            exit == entry
        } else {
            exit >= entry
        };
        if !done {
            out.push(with(
                v(13, format!("thread {cpu} switched the MMU back (in_guest 1 -> 0) with entries {entry:#x} but exits {exit:#x}")),
                &format!("vcores[{a:#x}].in_guest"),
                new,
            ));
        }
    }
}

impl StepChecker {
    /// What invariant 45 judged so far.
    pub fn exit_ipi_stats(&self) -> &super::exit_ipi::ExitIpiStats {
        &self.exit_ipi.stats
    }

    /// Invariants 7, 12, 13 and 45 on the change of `field` to `new` made by
    /// hardware thread `cpu`; `before` is the state before it.
    pub fn step(&mut self, before: &CoreState, cpu: usize, field: FieldRef, new: u64) -> Vec<Violation> {
        let mut out: Vec<Violation> = self.exit_ipi.event(before, cpu, field, new).into_iter().collect();
        let me = before.hstate.get(cpu).cloned().unwrap_or_default();
        match field {
            FieldRef::Reg(t, reg @ (Reg::MtLpidr | Reg::MtSdr1)) if me.in_guest != KVM_GUEST_MODE_NONE => {
                self.partition_write(t, &me, reg == Reg::MtLpidr, new, &mut out);
            }
            FieldRef::Vcore(a, VField::InGuest) => vcore_in_guest(before, cpu, &me, a, new, &mut out),
            FieldRef::Vcore(a, VField::EntryExitMap | VField::EntryExitCount) => {
                self.entry_exit_store(before, a, new, &mut out);
            }
            _ => {}
        }
        out
    }

    /// 7: an LPIDR (`lpidr`) or SDR1 write by thread `t` inside KVM: only
    /// ptid 0 switches the partition, once in and once out per run.
    fn partition_write(&mut self, t: usize, me: &Hstate, lpidr: bool, new: u64, out: &mut Vec<Violation>) {
        let what = if lpidr { "LPIDR" } else { "SDR1" };
        if me.ptid != 0 {
            out.push(with(
                with(
                    v(7, format!("thread {t} (ptid {}) wrote {what} inside KVM; only ptid 0 switches the partition", me.ptid)),
                    &format!("threads[{t}].kvm_hstate.ptid"),
                    me.ptid,
                ),
                "value",
                format!("{new:#x}"),
            ));
        }
        if lpidr && new != LPID_RSVD && me.kvm_vcore != 0 {
            let n = self.lpid_writes.entry(me.kvm_vcore).or_insert(0);
            *n += 1;
            if *n > 2 {
                out.push(with(
                    v(
                        7,
                        format!(
                            "LPIDR switched {} times in one run of vcore {:#x}; once in, once out",
                            *n, me.kvm_vcore
                        ),
                    ),
                    "value",
                    format!("{new:#x}"),
                ));
            }
        }
    }

    /// 12: a store of vcore `a`'s entry/exit word whose first exit comes
    /// before thread 0 entered; a reset (low 16 bits 0) begins a new run.
    fn entry_exit_store(&mut self, before: &CoreState, a: u64, new: u64, out: &mut Vec<Violation>) {
        let (entry, exit, req) = {
            let m = new as u32;
            (m & 0xff, (m >> 8) & 0xff, m & VCORE_EXIT_REQ != 0)
        };
        let (_, old_exit, _) = entry_exit(before, a).unwrap_or((0, 0, false));
        if old_exit == 0 && exit != 0 && !req {
            let first_in = if before.variant.has_entry_exit_map() {
                entry & 1 != 0
            } else {
                entry >= 1
            };
            if !first_in {
                out.push(with(
                    v(
                        12,
                        format!("the first exit ({new:#x}) came before thread 0 entered"),
                    ),
                    &format!("vcores[{a:#x}].entry_exit_map"),
                    format!("{new:#x}"),
                ));
            }
        }
        if new as u32 & 0xffff == 0 {
            self.lpid_writes.remove(&a);
        }
    }

    /// Liveness on the state after a change, at `now`: the change's
    /// timebase on the host's timebase ([`CoreState::host_tb`]), or why it
    /// is not known.  Every interval is measured on the host's timebase: a
    /// TB read while thread 0 has the vcore's offset in force is the
    /// guest's (kvmppc_hv_entry adds `vc->tb_offset` with TBU40), and one
    /// raw TB against another across the switch would be off by the whole
    /// offset (hours for a migrated guest).  Where `now` is not known, no
    /// held state is judged at this change; the second value then says why
    /// when one was held (counted in [`super::Stats`]).
    pub fn liveness(
        &mut self,
        s: &CoreState,
        now: Result<u64, &'static str>,
        tb_freq: u64,
        b: &Bounds,
    ) -> (Vec<Violation>, Option<&'static str>) {
        let mut open: Vec<(Live, f64)> = Vec::new();
        for (t, h) in s.hstate.iter().enumerate().skip(1) {
            if h.hwthread_req == 1 && h.hwthread_state == KVM_HWTHREAD_IN_KERNEL {
                open.push((Live::Grab(t), b.grab_s));
            }
        }
        let exiting = s.variant.vcore_states().exiting;
        for (&a, vc) in &s.vcores {
            if vc.vcore_state == exiting {
                open.push((Live::Exiting(a), b.exiting_s));
            }
            if let Some((entry, exit, _)) = entry_exit(s, a) {
                if exit != 0 && s.variant.has_entry_exit_map() {
                    for p in 0..8 {
                        if entry & (1 << p) != 0 && exit & (1 << p) == 0 {
                            open.push((Live::ExitIpi(a, p), b.exit_ipi_s));
                        }
                    }
                }
            }
        }
        self.live.retain(|k, _| open.iter().any(|(n, _)| n == k));
        let (tb, why) = match now {
            Ok(tb) => (Some(tb), None),
            Err(why) => (None, Some(why)),
        };
        let not_judged = if open.is_empty() { None } else { why };
        let mut out = Vec::new();
        for (k, secs) in open {
            let e = self.live.entry(k).or_insert((tb, false));
            let Some(tb) = tb else { continue };
            let start = *e.0.get_or_insert(tb);
            let limit = (secs * b.slack * tb_freq as f64) as u64;
            let held = tb.saturating_sub(start);
            if !e.1 && held > limit {
                e.1 = true;
                let ms = held as f64 * 1000.0 / tb_freq as f64;
                let bound = secs * 1000.0;
                out.push(match k {
                    Live::Grab(t) => with(
                        v(LIVE_GRAB, format!("thread {t} still IN_KERNEL with hwthread_req 1 after {ms:.1} ms (kernel bound {bound} ms, x{})", b.slack)),
                        &format!("threads[{t}].kvm_hstate.hwthread_state"),
                        0,
                    ),
                    Live::ExitIpi(a, p) => with(
                        v(LIVE_EXIT_IPI, format!("ptid {p} entered vcore {a:#x} but has not started its exit {ms:.1} ms after the exit began (kernel bound {bound} ms, x{})", b.slack)),
                        &format!("vcores[{a:#x}].entry_exit_map"),
                        format!("{:#x}", s.vcores[&a].entry_exit_map.unwrap_or(0)),
                    ),
                    Live::Exiting(a) => with(
                        v(LIVE_EXITING, format!("vcore {a:#x} has been VCORE_EXITING for {ms:.1} ms (kernel bound {bound} ms, x{})", b.slack)),
                        &format!("vcores[{a:#x}].vcore_state"),
                        exiting,
                    ),
                });
            }
        }
        (out, not_judged)
    }
}
