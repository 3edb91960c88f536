//! 8: the partition registers.  POWER7/8 run a whole (sub)core in one
//! partition, so LPIDR and SDR1 are one register per core; a thread
//! executing the guest has the guest's, thread 0 outside KVM the host's.

use std::collections::BTreeMap;

use super::ctx::{hs, p, Ctx};
use super::Violation;
use crate::consts::*;
use crate::view::{Thread, Vcore};

pub(crate) fn check(cx: &Ctx, out: &mut Vec<Violation>) {
    // Not judged while a modern vcore is PIGGYBACK (dynamic split: one
    // partition per subcore).
    let split = cx.s.variant == Variant::Modern
        && cx
            .s
            .vcores
            .iter()
            .any(|v| Some(v.vcore_state) == cx.states.piggyback);
    if !split {
        per_core_agree(cx, 8, "lpidr", |t| t.lpidr, out);
        per_core_agree(cx, 8, "sdr1", |t| t.sdr1, out);
    }
    guest_threads(cx, out);
    host_thread0(cx, out);
}

/// A register that is one per core (LPIDR, SDR1, DPDES on POWER8): every
/// thread of a core that has a value shows the same one.  Reported per core,
/// against the first thread of the core with a value.
pub(crate) fn per_core_agree(
    cx: &Ctx,
    number: u32,
    name: &str,
    get: fn(&Thread) -> Option<u64>,
    out: &mut Vec<Violation>,
) {
    per_core_agree_saying(cx, number, name, get, |_| String::new(), out);
}

/// [`per_core_agree`], with `say` adding what a core's readings (thread
/// index, value; every thread of the core with a value) mean, after the
/// values.
pub(crate) fn per_core_agree_saying(
    cx: &Ctx,
    number: u32,
    name: &str,
    get: fn(&Thread) -> Option<u64>,
    say: fn(&[(usize, u64)]) -> String,
    out: &mut Vec<Violation>,
) {
    let threads = &cx.s.threads;
    // Fast path: one value on every thread that has one.
    let mut values = threads.iter().filter_map(get);
    match values.next() {
        Some(v0) if values.all(|v| v == v0) => return,
        None => return,
        _ => {}
    }
    // core -> (first thread with a value, its value, the threads that
    // differ, every reading)
    type Core = (usize, u64, Vec<(usize, u64)>, Vec<(usize, u64)>);
    let mut cores: BTreeMap<u32, Core> = BTreeMap::new();
    for (i, t) in threads.iter().enumerate() {
        let Some(v) = get(t) else { continue };
        let core = cores
            .entry(t.cpu / cx.tpc)
            .or_insert((i, v, Vec::new(), Vec::new()));
        if core.1 != v {
            core.2.push((i, v));
        }
        core.3.push((i, v));
    }
    for (i0, v0, differ, all) in cores.into_values() {
        if differ.is_empty() {
            continue;
        }
        // A long list is cut: the first few name the problem.
        let list = differ
            .iter()
            .take(8)
            .map(|(i, v)| format!("thread {i} {v:#x}"))
            .collect::<Vec<_>>()
            .join(", ");
        let more = if differ.len() > 8 {
            format!(" and {} more", differ.len() - 8)
        } else {
            String::new()
        };
        let mut viol = Violation::new(
            number,
            format!(
                "threads of one core disagree on {} (one register per core): thread {i0} {v0:#x}, {list}{more}{}",
                name.to_uppercase(),
                say(&all)
            ),
        )
        .hex(p("threads", i0, name), v0);
        for (i, v) in differ.into_iter().take(8) {
            viol = viol.hex(p("threads", i, name), v);
        }
        out.push(viol);
    }
}

/// A thread executing the guest: thread 0 switched LPIDR/SDR1 before
/// vc->in_guest = 1, and switches back only once every entered thread has
/// left the guest.
fn guest_threads(cx: &Ctx, out: &mut Vec<Violation>) {
    let threads = &cx.s.threads;
    let Some(kvm) = &cx.s.kvm else { return };
    // The snapshot's `kvm` is the VM of every vcore that names one.
    let one_vm = {
        let mut vms = cx.s.vcores.iter().filter_map(|v| v.kvm);
        match vms.next() {
            Some(first) => vms.all(|p| p == first),
            None => true,
        }
    };
    let vm_vcores = |vc: &Vcore| vc.kvm.is_none() || one_vm;
    for (i, t) in threads.iter().enumerate() {
        let h = &t.kvm_hstate;
        if h.in_guest == KVM_GUEST_MODE_GUEST_HV {
            // Only when the snapshot's kvm is this thread's VM.
            if let Some((_, vc)) = cx.vcore_of_thread(h) {
                if !vm_vcores(vc) {
                    continue;
                }
            }
            let bad_lpidr = t.lpidr.filter(|l| *l != kvm.lpid);
            let bad_sdr1 = t.sdr1.filter(|sd| *sd != kvm.sdr1);
            if bad_lpidr.is_some() || bad_sdr1.is_some() {
                let mut what = Vec::new();
                let mut viol = Violation::new(8, String::new()).field(hs(i, "in_guest"), h.in_guest);
                if let Some(l) = bad_lpidr {
                    what.push(format!("LPIDR {l:#x} (guest LPID {:#x})", kvm.lpid));
                    viol = viol.hex(p("threads", i, "lpidr"), l).hex("kvm.lpid", kvm.lpid);
                }
                if let Some(sd) = bad_sdr1 {
                    what.push(format!("SDR1 {sd:#x} (guest {:#x})", kvm.sdr1));
                    viol = viol.hex(p("threads", i, "sdr1"), sd).hex("kvm.sdr1", kvm.sdr1);
                }
                viol.message = format!("thread {i} executes the guest with {}", what.join(" and "));
                out.push(viol);
            }
        }
    }
}

/// Thread 0 outside KVM (in_guest NONE): kvmppc_hv_entry stores HOST_HV
/// before the switch in and the exit tail stores NONE after the switch
/// back, so no partition switch is under way on the core.
fn host_thread0(cx: &Ctx, out: &mut Vec<Violation>) {
    let threads = &cx.s.threads;
    let Some(kvm) = &cx.s.kvm else { return };
    for (i0, t0) in threads.iter().enumerate() {
        if cx.core_thread(t0) == 0 && t0.kvm_hstate.in_guest == KVM_GUEST_MODE_NONE {
            if let (Some(l), Some(host)) = (t0.lpidr, kvm.host_lpid) {
                if l != host {
                    out.push(
                        Violation::new(
                            8,
                            format!(
                                "thread 0 is outside KVM but LPIDR is {:#x}, not the host's {:#x}",
                                l, host
                            ),
                        )
                        .hex(p("threads", i0, "lpidr"), l)
                        .hex("kvm.host_lpid", host),
                    );
                }
            }
            if let (Some(sd), Some(host)) = (t0.sdr1, kvm.host_sdr1) {
                if sd != host {
                    out.push(
                        Violation::new(
                            8,
                            format!(
                                "thread 0 is outside KVM but SDR1 is {:#x}, not the host's {:#x}",
                                sd, host
                            ),
                        )
                        .hex(p("threads", i0, "sdr1"), sd)
                        .hex("kvm.host_sdr1", host),
                    );
                }
            }
        }
    }
}
