//! The liveness bounds (41-43) and the settling of deferred violations on
//! the host's timebase: a vcore with a large timebase offset (a migrated
//! guest's) puts the guest's timebase on the core's TB while thread 0 runs
//! it, and no interval may be measured across that switch with raw TBs.

use super::*;
use crate::shadow::state::TRACE_TB_OFFSET_NOT_READ;
use crate::view::TB_OFFSET_SWITCHING;

/// About 36 minutes of 512 MHz ticks, a multiple of 2^24 as
/// KVM_REG_PPC_TB_OFFSET makes it (kvmppc_set_one_reg_hv, book3s_hv.c).
const AHEAD: u64 = 1 << 40;
/// A guest whose timebase is behind the host's (modulo 2^64).
const BEHIND: u64 = AHEAD.wrapping_neg();

/// A VM whose vcore has timebase offset `off` (set by userspace before the
/// vcore is first pointed at: the shadow reads it when it finds the vcore).
fn rig(n: u64, off: u64) -> Rig {
    let mut r = Rig::new(n);
    r.mem.put(VC + 168, &off.to_le_bytes());
    r
}

/// An event by thread 0 that changes no state the checks judge (a guest
/// doorbell to a sibling): the clock the liveness bounds are read at.
fn tick(r: &mut Rig) {
    r.reg(0, Reg::Msgsndp, 1);
}

fn count(r: &Rig, invariant: u32) -> usize {
    r.invariants().iter().filter(|&&i| i == invariant).count()
}

/// Thread 1 is grabbed and still IN_KERNEL (not yet woken into KVM) when
/// thread 0 enters the guest and adds the offset: a correct kernel does
/// this (kvmppc_hv_entry does not wait for the secondaries), so the grab's
/// interval spans the switch.  Thread 1 wakes `held` seconds of host time
/// after the grab; thread 0 stores in between, in the guest.
fn grab_across_the_switch(off: u64, held: f64) -> Rig {
    let mut r = rig(2, off);
    r.vc32(0, 8, 0); // init_vcore_to_run
    r.vc32(0, 0, 2); // n_runnable
    r.st(0, VC + 152, &vcpu(0).to_le_bytes()); // runner
    r.hs(0, 1, H::Req, 1);
    r.hs(1, 1, H::State, KVM_HWTHREAD_IN_KERNEL.into());
    for t in 2..4 {
        r.grab(t);
    }
    for t in 0..2 {
        r.start(t);
        r.hs(0, t, H::Vcore, VC);
    }
    r.vc8(0, 24, MODERN_VCORE_STATES.running);
    r.switch_in();
    assert_eq!(r.in_force, off, "thread 0 added the offset");
    r.hs(0, 0, H::InGuest, KVM_GUEST_MODE_GUEST_HV.into());
    for _ in 0..4 {
        r.advance(held / 4.0);
        tick(&mut r);
    }
    r.hs(1, 1, H::State, KVM_HWTHREAD_IN_KVM.into());
    r
}

#[test]
fn a_grab_spanning_the_offset_switch_is_no_alarm() {
    // Raw TBs would measure the offset itself: 36 minutes (ahead), or the
    // grab's interval would go negative and hide (behind).
    for off in [AHEAD, BEHIND] {
        let r = grab_across_the_switch(off, 0.05);
        assert_eq!(count(&r, LIVE_GRAB), 0, "offset {off:#x}: {:?}", r.invariants());
        assert!(r.invariants().is_empty(), "{:?}", r.invariants());
        // The one event between thread 0's store to tb_offset_applied and
        // its store to in_guest is not placed on the host's timebase.
        let st = &r.s.stats;
        assert_eq!(st.host_tb_unknown.get(TB_OFFSET_SWITCHING), Some(&1), "{st:?}");
        assert_eq!(
            st.liveness_not_judged.get(TB_OFFSET_SWITCHING),
            Some(&1),
            "{st:?}"
        );
    }
}

#[test]
fn a_real_grab_overrun_inside_the_guest_window_is_flagged() {
    // 0.3 s of host time against the bound of 10 ms x slack 10.
    for off in [AHEAD, BEHIND] {
        let r = grab_across_the_switch(off, 0.3);
        assert_eq!(count(&r, LIVE_GRAB), 1, "offset {off:#x}: {:?}", r.invariants());
        let m = &r.first(LIVE_GRAB).violation.message;
        let ms: f64 = m
            .split(" after ")
            .nth(1)
            .and_then(|t| t.split(" ms").next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no duration in {m}"));
        assert!(
            (100.0..400.0).contains(&ms),
            "measured on the host's timebase: {m}"
        );
    }
}

#[test]
fn a_whole_run_with_an_offset_is_clean_and_its_exit_bounds_still_judged() {
    for off in [AHEAD, BEHIND] {
        let mut r = rig(3, off);
        r.enter_all(3);
        r.exit_all(3);
        assert!(r.invariants().is_empty(), "offset {off:#x}: {:?}", r.invariants());
        assert_eq!(r.in_force, 0, "thread 0 took the offset off");

        // Thread 2 exits first inside the guest; thread 1 does not start its
        // exit for 0.2 s of host time (bound 4 ms x 10): invariant 42.
        let mut r = rig(3, off);
        r.enter_all(3);
        r.hs(2, 2, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
        r.vc32(2, 8, 0x407);
        for _ in 0..4 {
            r.advance(0.05);
            tick(&mut r);
        }
        // Threads 0 and 1 both owe their exit.
        assert_eq!(
            count(&r, LIVE_EXIT_IPI),
            2,
            "offset {off:#x}: {:?}",
            r.invariants()
        );
    }
}

#[test]
fn the_end_of_a_trace_inside_the_guest_window_is_on_the_host_timebase() {
    // The trace ends with thread 0 in the guest: the end's TB is the
    // guest's, converted with the state at the end.
    let mut r = rig(3, AHEAD);
    r.enter_all(3);
    r.hs(2, 2, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
    r.vc32(2, 8, 0x407);
    r.advance(0.02);
    let end = r.tb.wrapping_add(r.in_force);
    r.s.finish(end);
    assert_eq!(
        count(&r, LIVE_EXIT_IPI),
        0,
        "20 ms is inside 40 ms: {:?}",
        r.invariants()
    );
    // The plugin ends at the last event's TB; a raw maximum would be the
    // guest's, 36 minutes ahead, after the offset is off again.
    let mut r = rig(3, AHEAD);
    r.enter_all(3);
    r.exit_all(3);
    r.vc8(0, 24, MODERN_VCORE_STATES.exiting);
    let last = r.s.last_event_tb();
    assert!(
        last < AHEAD && r.s.stats.last_tb > AHEAD,
        "the highest raw TB is the guest's"
    );
    r.s.finish(last);
    assert!(r.invariants().is_empty(), "{:?}", r.invariants());
}

#[test]
fn a_deferral_does_not_time_out_on_the_offset() {
    // Thread 1's in_guest callback arrives before thread 0's kvm_vcore
    // store reached the shadow (memory already holds it): 23/10 deferred.
    // The next event is read after thread 0 added the offset: raw TBs
    // would call that 36 minutes and report it unsettled.
    let mut r = rig(2, AHEAD);
    r.vc32(0, 8, 0);
    r.vc32(0, 0, 2);
    r.st(0, VC + 152, &vcpu(0).to_le_bytes());
    for t in 1..4 {
        r.grab(t);
    }
    r.start(0);
    r.hs(0, 0, H::Vcore, VC);
    r.start(1);
    r.mem.put(paca(1) + HS_OFF + 72, &VC.to_le_bytes()); // stored, callback late
    r.hs(1, 1, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
    assert!(r.invariants().is_empty(), "deferred: {:?}", r.invariants());
    assert!(r.s.stats.unsettled > 0);
    r.vc8(0, 24, MODERN_VCORE_STATES.running);
    r.switch_in();
    r.hs(0, 0, H::InGuest, KVM_GUEST_MODE_GUEST_HV.into());
    assert!(r.invariants().is_empty(), "still deferred: {:?}", r.invariants());
    r.callback(0, paca(1) + HS_OFF + 72, &VC.to_le_bytes()); // the late callback
    assert!(r.invariants().is_empty(), "settled clean: {:?}", r.invariants());
}

#[test]
fn an_old_log_without_the_offset_replays_and_says_what_is_not_judged() {
    // A run with thread 1 never starting its exit, logged.
    let buf = Buf::default();
    let mut r = Rig::logged(3, Some(Box::new(buf.clone())));
    r.enter_all(3);
    r.hs(2, 2, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
    r.vc32(2, 8, 0x407);
    r.advance(1.0); // past 4 ms x 100, the replay's slack (the rig's is 10)
    tick(&mut r);
    r.s.finish(r.tb);
    assert_eq!(
        count(&r, LIVE_EXIT_IPI),
        2,
        "threads 0 and 1: {:?}",
        r.invariants()
    );
    let text = buf.text();
    assert!(text.contains(".tb_offset_applied\""), "the offset is logged");
    let again = log::replay(text.lines()).expect("replays");
    assert_eq!(
        again.violations().len(),
        r.s.violations().len(),
        "{:?}\n{text}",
        again.stats
    );

    // The same log as a plugin that did not watch the offset wrote it.
    let old: Vec<&str> = text.lines().filter(|l| !l.contains(".tb_offset")).collect();
    let old = log::replay(old).expect("an old log still replays");
    let inv: Vec<u32> = old.violations().iter().map(|v| v.violation.invariant).collect();
    assert!(!inv.contains(&LIVE_EXIT_IPI), "not judged, not guessed: {inv:?}");
    let st = &old.stats;
    assert!(
        st.liveness_not_judged
            .get(TRACE_TB_OFFSET_NOT_READ)
            .is_some_and(|&n| n > 0),
        "{st:?}"
    );
    assert!(old.summary()["stats"]["liveness_not_judged"][TRACE_TB_OFFSET_NOT_READ].as_u64() > Some(0));
}
