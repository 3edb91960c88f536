//! The vcore's entry/exit word (10, 12, 13, 14), the switch back (13) and
//! the grab of the secondaries around a run (17).

use serde_json::Value;

use super::ctx::{hs, p, Ctx, EntryExit, HsField};
use super::Violation;
use crate::consts::*;
use crate::view::{Thread, Vcore};

pub(crate) fn check(cx: &Ctx, k: usize, vc: &Vcore, out: &mut Vec<Violation>) {
    let ee = EntryExit::of(vc, cx.s.variant);
    match ee {
        EntryExit::Unknown => {}
        EntryExit::Map {
            raw,
            entry,
            exit,
            req,
        } => {
            map_shape(cx, k, vc, (raw, entry, exit), out);
            map_order(cx, k, vc, (raw, entry, exit, req), out);
        }
        EntryExit::Count { raw, entry, exit } => count(cx, k, vc, (raw, entry, exit), out),
    }
    guest_threads_entered(cx, k, vc, ee, out);
    thread0_back_too_early(cx, k, vc, ee, out);
    switched_back(cx, k, vc, ee, out);
    grabbed(cx, k, vc, ee, out);
}

/// 10, the word tied to the threads it counts: a thread executing the guest
/// (PACA in_guest GUEST_HV) has entered this run and has not begun its exit.
/// kvmppc_hv_entry (book3s_hv_rmhandlers.S) sets the thread's entry bit
/// (seed: increments the entry count) before fast_guest_return stores
/// KVM_GUEST_MODE_GUEST_HV, and an exit first stores HOST_HV
/// (kvmppc_interrupt_hv) and only then sets the thread's exit bit
/// (kvmhv_commence_exit, book3s_hv_builtin.c; seed: the exit count in the
/// 0xff00 bits); a thread that has begun its exit never returns to the
/// guest in that run.  The modern bit is the PACA's ptid (`lbz r6,
/// HSTATE_PTID(r13)` in kvmppc_hv_entry; kvmhv_commence_exit's `0x100 <<
/// ptid`), and the PACA's kvm_vcore is the vcore whose word it is (the seed
/// sets kvm_vcore at each start and never clears it, so a guest thread's
/// is current).  So, modern: the thread's entry bit is set and its exit bit
/// clear; seed/prepatch: the guest threads of the vcore are at most the
/// entries minus the exits.
fn guest_threads_entered(cx: &Ctx, k: usize, vc: &Vcore, ee: EntryExit, out: &mut Vec<Violation>) {
    let in_guest = || {
        cx.s.threads.iter().enumerate().filter(move |(_, t)| {
            t.kvm_hstate.in_guest == KVM_GUEST_MODE_GUEST_HV && t.kvm_hstate.kvm_vcore == vc.addr
        })
    };
    match ee {
        EntryExit::Unknown => {}
        EntryExit::Map { raw, entry, exit, .. } => {
            for (i, t) in in_guest() {
                let h = &t.kvm_hstate;
                if h.ptid >= 8 {
                    continue; // 3 reports the ptid
                }
                let bit = 1u32 << h.ptid;
                let what = if entry & bit == 0 {
                    "but its bit is not in the entry map: kvmppc_hv_entry sets it before the guest is entered"
                } else if exit & bit != 0 {
                    "but has begun its exit (its exit bit is set): kvmhv_commence_exit runs after the thread left the guest, and it does not go back in this run"
                } else {
                    continue;
                };
                out.push(
                    Violation::new(
                        10,
                        format!(
                            "thread {i} executes the guest (in_guest GUEST_HV, ptid {}) {what} (entry_exit_map {raw:#x})",
                            h.ptid
                        ),
                    )
                    .field(p("vcores", k, "entry_exit_map"), raw)
                    .hstate(i, h, &[HsField::InGuest, HsField::Ptid]),
                );
            }
        }
        EntryExit::Count { raw, entry, exit } => {
            let guest: Vec<usize> = in_guest().map(|(i, _)| i).collect();
            let inside = entry.saturating_sub(exit);
            if guest.len() as u32 > inside {
                let mut v = Violation::new(
                    10,
                    format!(
                        "{} threads execute the guest (in_guest GUEST_HV) but entry_exit_count {raw:#x} has {entry} entered and {exit} exiting: a thread is counted in the entries before it enters the guest and in the exits only after it left",
                        guest.len()
                    ),
                )
                .field(p("vcores", k, "entry_exit_count"), raw);
                for i in guest {
                    v = v.field(hs(i, "in_guest"), cx.s.threads[i].kvm_hstate.in_guest);
                }
                out.push(v);
            }
        }
    }
}

/// 10 (modern map): bits within the core, exits within entries, an entered
/// thread that is not exiting still points at the vcore.
fn map_shape(cx: &Ctx, k: usize, vc: &Vcore, (raw, entry, exit): (u32, u32, u32), out: &mut Vec<Violation>) {
    let key = || p("vcores", k, "entry_exit_map");
    let core_mask = (1u32 << cx.tpc) - 1;
    if raw & !(0xffff | VCORE_EXIT_REQ) != 0 || (entry | exit) & !core_mask != 0 {
        out.push(
            Violation::new(
                10,
                format!(
                    "entry_exit_map {raw:#x} has bits outside a {}-thread core",
                    cx.tpc
                ),
            )
            .field(key(), raw),
        );
    }
    if exit & !entry != 0 {
        out.push(
            Violation::new(
                10,
                format!("entry_exit_map {raw:#x}: a thread is exiting that never entered"),
            )
            .field(key(), raw),
        );
    }
    // A thread that entered and has not begun to exit is still in the
    // run, so its PACA still points at the vcore: secondaries clear
    // kvm_vcore only after kvmppc_hv_entry returns (after their exit
    // bit), thread 0's is cleared by kvmppc_release_hwthread.
    if cx.s.variant == Variant::Modern {
        let pending = entry & !exit;
        for bit in 0..cx.tpc {
            if pending & (1 << bit) == 0 {
                continue;
            }
            if let Some((i, t)) = cx.thread_at_cpu(vc.pcpu as u64 + bit as u64) {
                // ... and is still in KVM: kvmppc_hv_entry stores
                // in_guest HOST_HV before it sets the entry bit, and
                // kvmhv_switch_to_host stores KVM_GUEST_MODE_NONE only at
                // its end, after the thread's exit bit (thread 0 waits there
                // for every exit bit, its own included).
                if t.kvm_hstate.kvm_vcore == vc.addr && t.kvm_hstate.in_guest == KVM_GUEST_MODE_NONE {
                    out.push(
                        Violation::new(
                            10,
                            format!("thread {} entered the vcore and is not exiting (entry_exit_map {raw:#x}), but its PACA says it is out of KVM (in_guest NONE)", i),
                        )
                        .field(key(), raw)
                        .hstate(i, &t.kvm_hstate, &[HsField::InGuest]),
                    );
                }
                if t.kvm_hstate.kvm_vcore != vc.addr {
                    out.push(
                                Violation::new(
                                    10,
                                    format!("thread {} entered the vcore and is not exiting, but its PACA kvm_vcore is not the vcore", i),
                                )
                                .field(key(), raw)
                                .hex(hs(i, "kvm_vcore"), t.kvm_hstate.kvm_vcore)
                                .hex(p("vcores", k, "addr"), vc.addr),
                            );
                }
            }
        }
    }
}

/// 12, 13, 14 (modern map): the order of entries, exits and the switch.
fn map_order(
    cx: &Ctx,
    k: usize,
    vc: &Vcore,
    (raw, entry, exit, req): (u32, u32, u32, bool),
    out: &mut Vec<Violation>,
) {
    let key = || p("vcores", k, "entry_exit_map");
    let core_mask = (1u32 << cx.tpc) - 1;
    // 12: only thread 0's switch lets anyone run, so the first exiter
    // entered after thread 0 -- unless another subcore requested the
    // exit (VCORE_EXIT_REQ), when thread 0 may be too late to enter.
    // ... and vc->in_guest = 1 is stored by thread 0 after its own
    // entry bit (the run reset clears the map before in_guest, so a
    // map of 0 may show a stale in_guest 1).
    if vc.in_guest == 1 && raw != 0 && entry & 1 == 0 {
        out.push(
            Violation::new(
                12,
                format!("vcore in_guest is 1 but thread 0 never entered (entry_exit_map {raw:#x})"),
            )
            .field(key(), raw)
            .field(p("vcores", k, "in_guest"), vc.in_guest),
        );
    }
    if exit != 0 && !req && entry & 1 == 0 {
        out.push(
            Violation::new(
                12,
                format!("entry_exit_map {raw:#x}: threads exit but thread 0 never entered"),
            )
            .field(key(), raw),
        );
    }
    // 13: in_guest drops to 0 only at thread 0's switch back, which
    // waits for every entered thread to be exiting.  (The reset of a
    // new run clears the map before in_guest.)
    if vc.in_guest == 0 && exit != 0 && !req && exit != entry {
        out.push(
            Violation::new(
                13,
                format!("vcore in_guest is 0 but entry_exit_map {raw:#x} has entered threads not exiting"),
            )
            .field(key(), raw)
            .field(p("vcores", k, "in_guest"), vc.in_guest),
        );
    }
    // 14: napping bits are set by entered threads only; both words are
    // reset together (map first, so a map of 0 may show stale bits).
    if vc.napping_threads & !core_mask != 0 || (entry != 0 && vc.napping_threads & !entry != 0) {
        out.push(
            Violation::new(
                14,
                format!(
                    "napping_threads {:#x} is not within the entered threads {:#x}",
                    vc.napping_threads, entry
                ),
            )
            .field(p("vcores", k, "napping_threads"), vc.napping_threads)
            .field(key(), raw),
        );
    }
}

/// 10, 13, 14 (seed layout: entry_exit_count).
fn count(cx: &Ctx, k: usize, vc: &Vcore, (raw, entry, exit): (u32, u32, u32), out: &mut Vec<Violation>) {
    let key = || p("vcores", k, "entry_exit_count");
    let core_mask = (1u32 << cx.tpc) - 1;
    let st = cx.states;
    if raw & !0xffff != 0 || entry > cx.tpc || exit > entry {
        out.push(
            Violation::new(
                10,
                format!(
                    "entry_exit_count {raw:#x}: {entry} entered, {exit} exiting on a {}-thread core",
                    cx.tpc
                ),
            )
            .field(key(), raw),
        );
    }
    // Every thread that enters found its PACA's kvm_vcore set to this
    // vcore, and the seed never clears it; while STARTING/RUNNING no
    // other vcore can have taken the core's threads.
    let holds_core = vc.vcore_state == st.running || Some(vc.vcore_state) == st.starting;
    let on_core = |t: &&Thread| t.cpu >= vc.pcpu && t.cpu - vc.pcpu < cx.tpc;
    if holds_core && cx.s.threads.iter().filter(on_core).count() as u32 == cx.tpc {
        let pointing =
            cx.s.threads
                .iter()
                .filter(on_core)
                .filter(|t| t.kvm_hstate.kvm_vcore == vc.addr)
                .count() as u32;
        if entry > pointing {
            out.push(
                Violation::new(
                    10,
                    format!("{entry} threads entered but only {pointing} PACAs point at the vcore"),
                )
                .field(key(), raw),
            );
        }
    }
    if vc.in_guest == 0 && exit != 0 && exit != entry {
        out.push(
            Violation::new(
                13,
                format!("vcore in_guest is 0 but only {exit} of {entry} entered threads are exiting"),
            )
            .field(key(), raw)
            .field(p("vcores", k, "in_guest"), vc.in_guest),
        );
    }
    if vc.napping_threads & !core_mask != 0 || (entry != 0 && vc.napping_threads.count_ones() > entry) {
        out.push(
            Violation::new(
                14,
                format!(
                    "napping_threads {:#x} has more threads than the {} entered",
                    vc.napping_threads, entry
                ),
            )
            .field(p("vcores", k, "napping_threads"), vc.napping_threads)
            .field(key(), raw),
        );
    }
}

/// 13, from thread 0's PACA: kvmhv_switch_to_host (book3s_hv_rmhandlers.S)
/// makes thread 0 wait until the exit part of the word equals the entry
/// part before it switches the partition back, and it stores
/// KVM_GUEST_MODE_NONE only at its end; no thread enters once an exit has
/// begun.  So thread 0 out of KVM (in_guest NONE, still pointing at the
/// vcore) after it entered this run has every entered thread exiting.  That
/// it entered: modern, its own exit bit is set (it sets it in
/// kvmhv_commence_exit before the wait; a thread 0 too late to enter sets
/// none); seed/prepatch, an exit is counted (no thread can exit before
/// thread 0 has entered and switched the partition: secondaries wait for
/// vc->in_guest, which thread 0 sets).  Before thread 0 enters, secondaries
/// may already be counted while it is still NONE in kvmppc_run_core: that
/// stop has no exit yet and is not judged.
fn thread0_back_too_early(cx: &Ctx, k: usize, vc: &Vcore, ee: EntryExit, out: &mut Vec<Violation>) {
    if !cx.in_run(vc.vcore_state) {
        return;
    }
    let (entered, exiting, back) = match ee {
        EntryExit::Map { entry, exit, .. } => (
            entry.count_ones(),
            exit.count_ones(),
            exit & 1 != 0 && exit != entry,
        ),
        EntryExit::Count { entry, exit, .. } => (entry, exit, exit != 0 && exit != entry),
        EntryExit::Unknown => return,
    };
    if !back {
        return;
    }
    let Some((i0, t0)) = cx.thread_at_cpu(vc.pcpu as u64) else {
        return;
    };
    let h = &t0.kvm_hstate;
    if h.in_guest != KVM_GUEST_MODE_NONE || h.kvm_vcore != vc.addr {
        return;
    }
    out.push(
        Violation::new(
            13,
            format!(
                "thread 0 is back in the host (in_guest NONE) but only {exiting} of the {entered} entered threads are exiting ({} {:#x}): kvmhv_switch_to_host waits for every exit before the switch back",
                ee.key(),
                ee.raw()
            ),
        )
        .field(p("vcores", k, ee.key()), ee.raw())
        .hstate(i0, h, &[HsField::InGuest, HsField::KvmVcore]),
    );
}

/// 13 (after the switch back): thread 0 stores 0 to vc->in_guest ("signal
/// secondary CPUs to continue") before it stores KVM_GUEST_MODE_NONE to its
/// own PACA in kvmhv_switch_to_host, and the next run clears the entry/exit
/// word before in_guest.  So once every entered thread is exiting and
/// thread 0 is out of KVM (in_guest NONE, still pointing at the vcore),
/// vc->in_guest is 0.  Linux 7fe4e1176dfe fixed a kernel that stored a PCR
/// value there instead, leaving the secondaries spinning.
///
/// The same value once the run is over: kvmppc_run_core stores
/// VCORE_EXITING (seed: after the release) only after __kvmppc_vcore_entry
/// returned, i.e. after thread 0's switch back, and thread 0 enters (and
/// stores 1) only after VCORE_RUNNING (modern: threads are started while the
/// vcore is still INACTIVE, but only thread 0 stores in_guest).  So outside
/// STARTING, RUNNING and PIGGYBACK, vc->in_guest is 0, whatever the PACAs
/// say (thread 0's kvm_vcore is cleared by the modern release).
fn switched_back(cx: &Ctx, k: usize, vc: &Vcore, ee: EntryExit, out: &mut Vec<Violation>) {
    let st = cx.states;
    let may_be_in_guest = vc.vcore_state == st.running
        || Some(vc.vcore_state) == st.starting
        || Some(vc.vcore_state) == st.piggyback;
    // An unknown state is 19's; judge only the states the variant has, and
    // only when the vcore has the variant's own layout: a stop of another
    // kernel judged as this variant (`pyvcore diff --variant prepatch` on a
    // modern kernel) numbers its states the other kernel's way.
    let own_layout = match ee {
        EntryExit::Map { .. } => cx.s.variant.has_entry_exit_map(),
        EntryExit::Count { .. } => !cx.s.variant.has_entry_exit_map(),
        EntryExit::Unknown => true,
    };
    if vc.in_guest == 1 && !may_be_in_guest && own_layout && st.name(vc.vcore_state).is_some() {
        let word = match ee {
            EntryExit::Unknown => String::new(),
            _ => format!(" ({} {:#x})", ee.key(), ee.raw()),
        };
        let mut v = Violation::new(
            13,
            format!(
                "vcore in_guest is still 1 while the vcore is {}{word}: thread 0 clears it at its switch back, before kvmppc_run_core leaves VCORE_RUNNING",
                st.name(vc.vcore_state).unwrap_or("in an unknown state"),
            ),
        )
        .field(p("vcores", k, "in_guest"), vc.in_guest)
        .field(p("vcores", k, "vcore_state"), vc.vcore_state);
        if ee != EntryExit::Unknown {
            v = v.field(p("vcores", k, ee.key()), ee.raw());
        }
        out.push(v);
        return;
    }
    if vc.in_guest == 0 || !cx.in_run(vc.vcore_state) {
        return;
    }
    secondary_past_the_wait(cx, k, vc, ee, out);
    let all_exiting = match ee {
        EntryExit::Map { entry, exit, .. } => entry & 1 != 0 && exit != 0 && exit == entry,
        EntryExit::Count { entry, exit, .. } => exit != 0 && exit == entry,
        EntryExit::Unknown => false,
    };
    if !all_exiting {
        return;
    }
    let Some((i0, t0)) = cx.thread_at_cpu(vc.pcpu as u64) else {
        return;
    };
    let h = &t0.kvm_hstate;
    if h.in_guest == KVM_GUEST_MODE_NONE && h.kvm_vcore == vc.addr {
        out.push(
            Violation::new(
                13,
                format!(
                    "thread 0 is back in the host and every entered thread exits ({} {:#x}), but vcore in_guest is still {}",
                    ee.key(),
                    ee.raw(),
                    vc.in_guest
                ),
            )
            .field(p("vcores", k, "in_guest"), vc.in_guest)
            .field(p("vcores", k, ee.key()), ee.raw())
            .field(hs(i0, "in_guest"), h.in_guest),
        );
    }
}

/// 13, seen from a secondary (modern): kvmhv_switch_to_host
/// (book3s_hv_rmhandlers.S) makes every secondary spin on VCORE_IN_GUEST
/// until thread 0 has stored 0 there, and only then store
/// KVM_GUEST_MODE_NONE; the secondary clears kvm_vcore after that
/// (kvm_secondary_got_guest).  So a secondary that has exited this run (its
/// exit bit, `0x100 << ptid`, set by itself in kvmhv_commence_exit) and is
/// out of KVM (in_guest NONE) while still pointing at the vcore has seen
/// vc->in_guest 0, and nothing sets it to 1 again in the run.  (A secondary
/// too late to enter sets no exit bit.)  The seed's count does not say which
/// thread exited, nor does a PACA (its kvm_vcore is never cleared, so a
/// secondary out of KVM may be one of an earlier run); the seed is judged
/// through nap_count instead ([`seed_secondary_counted`]).
fn secondary_past_the_wait(cx: &Ctx, k: usize, vc: &Vcore, ee: EntryExit, out: &mut Vec<Violation>) {
    let EntryExit::Map { raw, exit, .. } = ee else {
        if let EntryExit::Count { raw, .. } = ee {
            seed_secondary_counted(cx, k, vc, raw, out);
        }
        return;
    };
    for (i, t) in cx.s.threads.iter().enumerate() {
        let h = &t.kvm_hstate;
        if h.ptid == 0 || h.ptid >= 8 || h.kvm_vcore != vc.addr || h.in_guest != KVM_GUEST_MODE_NONE {
            continue;
        }
        if exit & (1 << h.ptid) == 0 {
            continue;
        }
        out.push(
            Violation::new(
                13,
                format!(
                    "secondary thread {i} (ptid {}) has exited (entry_exit_map {raw:#x}) and left KVM (in_guest NONE), but vcore in_guest is still {}: secondaries leave only after thread 0 cleared it at the switch back",
                    h.ptid, vc.in_guest
                ),
            )
            .field(p("vcores", k, "in_guest"), vc.in_guest)
            .field(p("vcores", k, "entry_exit_map"), raw)
            .hstate(i, h, &[HsField::InGuest, HsField::Ptid, HsField::KvmVcore]),
        );
    }
}

/// 13, the seed's secondary past its wait, through vc->nap_count (judged on a
/// vcore in a run with vc->in_guest 1; e0b7ec058c0e, v3.14).  A seed
/// secondary counts itself in nap_count (kvm_start_guest, book3s_hv_rmhandlers.S:
/// the lwarx/stwcx. on VCORE_NAP_COUNT) only after `bl kvmppc_hv_entry`
/// returned, and kvmppc_hv_entry returns for a secondary only through
/// secondary_too_late, whose secondary branch spins until VCORE_IN_GUEST is
/// 0 before the tail stores KVM_GUEST_MODE_NONE (both for a thread that ran
/// the guest and for one too late to enter).  Thread 0 stores 1 there once
/// per run, before any thread can begin an exit, and 0 at its switch back;
/// kvmppc_run_core (book3s_hv.c) zeroes nap_count before in_guest when the
/// run starts.  So within a run, nap_count above 0 means vc->in_guest was
/// already cleared at the switch back and stays 0.  (A secondary of the
/// previous run that counts itself only after kvmppc_wait_for_nap gave up
/// on it, "kvmppc_wait_for_nap timeout", was already stuck; it is reported
/// here too.)  prepatch is not judged: its secondary_too_late was not read.
fn seed_secondary_counted(cx: &Ctx, k: usize, vc: &Vcore, raw: u32, out: &mut Vec<Violation>) {
    if cx.s.variant != Variant::Seed || vc.in_guest == 0 {
        return;
    }
    let Some(naps) = vc.nap_count.filter(|&n| n > 0) else {
        return;
    };
    out.push(
        Violation::new(
            13,
            format!(
                "nap_count is {naps} (a secondary has finished its pass of this run) but vcore in_guest is still {} (entry_exit_count {raw:#x}): a seed secondary counts itself in nap_count only after its wait for thread 0's store of 0 at the switch back",
                vc.in_guest
            ),
        )
        .field(p("vcores", k, "in_guest"), vc.in_guest)
        .field(p("vcores", k, "nap_count"), naps)
        .field(p("vcores", k, "entry_exit_count"), raw),
    );
}

/// 17: the secondaries are grabbed (hwthread_req 1) from before the first
/// kvmppc_start_thread until kvmppc_release_hwthread (book3s_hv.c,
/// kvmppc_run_core: on_primary_thread grabs them all, then the start loop;
/// the release loop comes after the run).  Judged where that span is certain
/// from the snapshot ([`grab_window`]); the violation names the fields that
/// open the window too, so that a continuous trace defers it while one of
/// them is behind memory (shadow::settle).
fn grabbed(cx: &Ctx, k: usize, vc: &Vcore, ee: EntryExit, out: &mut Vec<Violation>) {
    if ee == EntryExit::Unknown || !vc.pcpu.is_multiple_of(cx.tpc) {
        return;
    }
    let Some(Window { why, opened_by }) = grab_window(cx, k, vc, ee) else {
        return;
    };
    for (i, t) in core_threads(cx, vc).filter(|(_, t)| t.cpu != vc.pcpu) {
        if t.kvm_hstate.hwthread_req != 1 {
            let v = Violation::new(
                17,
                format!(
                    "{why}, but secondary thread {} is not grabbed (hwthread_req {})",
                    t.cpu - vc.pcpu,
                    t.kvm_hstate.hwthread_req
                ),
            )
            .field(hs(i, "hwthread_req"), t.kvm_hstate.hwthread_req)
            .field(p("vcores", k, "vcore_state"), vc.vcore_state)
            .field(p("vcores", k, ee.key()), ee.raw());
            out.push(
                opened_by
                    .fields(cx, vc)
                    .into_iter()
                    .fold(v, |v, (key, val)| v.field(key, val)),
            );
        }
    }
}

/// The threads of the core at `vc.pcpu` (thread 0 included), with their
/// path index.
fn core_threads<'a>(cx: &'a Ctx, vc: &'a Vcore) -> impl Iterator<Item = (usize, &'a Thread)> + 'a {
    cx.s.threads
        .iter()
        .enumerate()
        .filter(move |(_, t)| t.cpu >= vc.pcpu && t.cpu - vc.pcpu < cx.tpc)
}

/// Why the secondaries must be grabbed at a stop, and the fields that show it.
struct Window {
    why: &'static str,
    opened_by: OpenedBy,
}

/// The fields that open a [`Window`]: given, or the PACAs of the core that
/// show the run, named only when there is a violation to report (the
/// explorer judges millions of clean states).
enum OpenedBy {
    Fields(Vec<(String, Value)>),
    /// The threads whose PACA field `field` ("kvm_vcpu" or "kvm_vcore")
    /// shows the run (see [`shows_run`]), thread 0 left out when
    /// `secondaries_only`.
    Pointing {
        field: &'static str,
        secondaries_only: bool,
    },
}

/// Whether thread `t`'s PACA shows the run of `vc` in `field`: kvm_vcore
/// is the vcore, or kvm_vcpu is a vcpu of it (set by kvmppc_start_thread).
fn shows_run(cx: &Ctx, vc: &Vcore, field: &str, t: &Thread) -> bool {
    let h = &t.kvm_hstate;
    if field == "kvm_vcpu" {
        h.kvm_vcpu != 0
            && (h.kvm_vcore == vc.addr || cx.vcpu(h.kvm_vcpu).is_some_and(|(_, v)| v.vcore == vc.addr))
    } else {
        h.kvm_vcore == vc.addr
    }
}

/// The threads of the core that show the run (see [`OpenedBy::Pointing`]).
fn pointing<'a>(
    cx: &'a Ctx,
    vc: &'a Vcore,
    field: &'static str,
    secondaries_only: bool,
) -> impl Iterator<Item = (usize, &'a Thread)> + 'a {
    core_threads(cx, vc)
        .filter(move |(_, t)| !(secondaries_only && t.cpu == vc.pcpu) && shows_run(cx, vc, field, t))
}

impl OpenedBy {
    fn fields(&self, cx: &Ctx, vc: &Vcore) -> Vec<(String, Value)> {
        match *self {
            OpenedBy::Fields(ref f) => f.clone(),
            OpenedBy::Pointing {
                field,
                secondaries_only,
            } => pointing(cx, vc, field, secondaries_only)
                .map(|(i, t)| {
                    let h = &t.kvm_hstate;
                    let val = if field == "kvm_vcpu" {
                        h.kvm_vcpu
                    } else {
                        h.kvm_vcore
                    };
                    (hs(i, field), Value::from(format!("{val:#x}")))
                })
                .collect(),
        }
    }
}

/// Why a seed/prepatch STARTING vcore must have its secondaries grabbed.
const STARTED: &str = "vcore is STARTING and a vcpu was already started";

/// Why the secondaries must be grabbed at this stop, or None where the
/// snapshot cannot tell:
/// * RUNNING with no exit started (all variants);
/// * modern RUNNING with an exit under way: the release comes after
///   vcore_state = VCORE_EXITING in kvmppc_run_core;
/// * modern INACTIVE with a thread of the core started (kvm_vcore set to the
///   vcore): kvmppc_run_core grabs, stores vc->pcpu, starts the threads and
///   only then stores VCORE_RUNNING, and after a run every kvm_vcore of the
///   core was cleared (by the secondary itself or the release);
/// * modern EXITING while a secondary still points at the vcore:
///   kvmppc_wait_for_nap waits for every kvm_vcore to be cleared before the
///   release loop (unless it gave up: "KVM: CPU %d seems to be stuck");
/// * seed/prepatch RUNNING while thread 0 is still in KVM or nap_count <
///   n_woken: the runner releases the threads in C, after
///   __kvmppc_vcore_entry returned and kvmppc_wait_for_nap saw every woken
///   secondary count its nap (2f12f0343684);
/// * seed/prepatch STARTING once a vcpu has been started on any thread of
///   the core (kvm_vcpu set: the previous run's release cleared them all)
///   or an entry counted: every sibling is grabbed before the first start
///   (7b444c6710c6).
fn grab_window(cx: &Ctx, k: usize, vc: &Vcore, ee: EntryExit) -> Option<Window> {
    let st = cx.states;
    let modern = cx.s.variant == Variant::Modern;
    let window = |why: &'static str, opened_by: Vec<(String, Value)>| {
        Some(Window {
            why,
            opened_by: OpenedBy::Fields(opened_by),
        })
    };
    // Open while a thread of the core shows the run in `field`.
    let shown = |why: &'static str, field: &'static str, secondaries_only: bool| {
        pointing(cx, vc, field, secondaries_only).next().map(|_| Window {
            why,
            opened_by: OpenedBy::Pointing {
                field,
                secondaries_only,
            },
        })
    };
    let state = vc.vcore_state;
    if state == st.running {
        if !ee.exit_started() || modern {
            return window("vcore runs", vec![]);
        }
        if let Some((i0, t0)) = cx
            .thread_at_cpu(vc.pcpu as u64)
            .filter(|(_, t)| t.kvm_hstate.in_guest != KVM_GUEST_MODE_NONE)
        {
            let f = (hs(i0, "in_guest"), Value::from(t0.kvm_hstate.in_guest));
            return window("the run is exiting and thread 0 is still in KVM", vec![f]);
        }
        return match (vc.nap_count, vc.n_woken) {
            (Some(nc), Some(nw)) if nc < nw => window(
                "thread 0 is back from the run but nap_count < n_woken (kvmppc_run_core releases only after kvmppc_wait_for_nap)",
                vec![
                    (p("vcores", k, "nap_count"), Value::from(nc)),
                    (p("vcores", k, "n_woken"), Value::from(nw)),
                ],
            ),
            _ => None,
        };
    }
    if Some(state) == st.starting {
        if ee.entered() > 0 {
            return Some(Window {
                why: STARTED,
                opened_by: OpenedBy::Pointing {
                    field: "kvm_vcpu",
                    secondaries_only: false,
                },
            });
        }
        return shown(STARTED, "kvm_vcpu", false);
    }
    if modern && state == st.inactive {
        return shown(
            "kvmppc_run_core has started a thread of the vcore (kvm_vcore set) before VCORE_RUNNING",
            "kvm_vcore",
            false,
        );
    }
    if modern && state == st.exiting {
        return shown(
            "vcore is EXITING and a secondary has not finished (kvm_vcore still set: kvmppc_wait_for_nap has not returned, nothing is released yet)",
            "kvm_vcore",
            true,
        );
    }
    None
}
