//! Invariant 45 (the first exiter's IPIs) on synthetic store sequences:
//! vcpus 0..3 on threads 0..3 of a vcore whose `pcpu` is 0.

use super::*;
use crate::shadow::exit_ipi::EXIT_IPI_SENT;

const TRAP: u64 = 5712;
const CPU: u64 = 32;
const EXTERNAL: i32 = 0x500;
const HDEC: i32 = 0x980;
/// A msgsnd's target as the plugin hands it over (`insn::doorbell_target`
/// of rB = PPC_DBELL_TYPE(PPC_DBELL_SERVER) | t).
fn doorbell(t: u64) -> u64 {
    crate::shadow::insn::doorbell_target(Reg::Msgsnd, 5 << 27 | t)
}

/// Thread `t` leaves the guest (kvmppc_interrupt_hv), stores its trap
/// (guest_exit_cont) and its exit bit over `entry` (kvmhv_commence_exit).
fn commence_exit(r: &mut Rig, t: usize, trap: i32, map: u32) {
    r.hs(t, t, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
    r.cpu32(t, t as u64, TRAP, trap);
    r.vc32(t, 8, map);
}

fn found(r: &Rig) -> Vec<String> {
    r.s.violations()
        .iter()
        .filter(|v| v.violation.invariant == EXIT_IPI_SENT)
        .map(|v| v.violation.message.clone())
        .collect()
}

#[test]
fn first_exit_with_its_ipis_is_clean() {
    let mut r = Rig::new(3);
    r.enter_all(3);
    commence_exit(&mut r, 1, EXTERNAL, 0x207);
    r.reg(1, Reg::Msgsnd, doorbell(0));
    r.reg(1, Reg::Msgsnd, doorbell(2));
    r.cpu32(1, 1, CPU, -1); // guest_bypass: vcpu->cpu = -1
    assert_eq!(found(&r), Vec::<String>::new());
}

#[test]
fn first_exit_without_ipis_is_reported_at_its_next_store() {
    let mut r = Rig::new(3);
    r.enter_all(3);
    commence_exit(&mut r, 1, EXTERNAL, 0x207);
    assert!(found(&r).is_empty(), "not before the deadline");
    r.cpu32(1, 1, CPU, -1);
    let f = found(&r);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].contains("thread 1") && f[0].contains("thread(s) 0, 2"),
        "{}",
        f[0]
    );
    let v = r.first(EXIT_IPI_SENT);
    assert_eq!(
        v.field,
        format!("vcpus[{:#x}].cpu", vcpu(1)),
        "judged at the deadline store"
    );
}

#[test]
fn an_ipi_to_one_thread_only_names_the_other() {
    let mut r = Rig::new(3);
    r.enter_all(3);
    commence_exit(&mut r, 2, 0xc00, 0x407);
    r.reg(2, Reg::Msgsnd, doorbell(0));
    r.reg(2, Reg::Msgsnd, doorbell(2)); // to itself: not one of the owed
    r.cpu32(2, 2, CPU, -1);
    let f = found(&r);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains("thread(s) 1 "), "{}", f[0]);
}

#[test]
fn an_hdec_exit_sends_none_and_is_clean() {
    let mut r = Rig::new(3);
    r.enter_all(3);
    commence_exit(&mut r, 0, HDEC, 0x107);
    r.cpu32(0, 0, CPU, -1);
    assert_eq!(found(&r), Vec::<String>::new());
}

#[test]
fn later_exits_owe_nothing() {
    let mut r = Rig::new(3);
    r.enter_all(3);
    commence_exit(&mut r, 0, HDEC, 0x107);
    r.cpu32(0, 0, CPU, -1);
    // Thread 1 is not the first (its cmpxchg saw 0x107): no IPI from it.
    commence_exit(&mut r, 1, EXTERNAL, 0x307);
    r.cpu32(1, 1, CPU, -1);
    assert_eq!(found(&r), Vec::<String>::new());
}

#[test]
fn other_threads_events_do_not_end_the_wait() {
    // Under MTTCG the callbacks of other vCPUs interleave freely with the
    // exiting thread's: only its own next store is its deadline.
    let mut r = Rig::new(3);
    r.enter_all(3);
    commence_exit(&mut r, 1, EXTERNAL, 0x207);
    r.hs(0, 0, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
    r.hs(2, 2, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
    r.reg(1, Reg::Msgsnd, doorbell(0));
    r.reg(1, Reg::Msgsnd, doorbell(2));
    r.cpu32(1, 1, CPU, -1);
    assert_eq!(found(&r), Vec::<String>::new());
}

#[test]
fn an_exit_whose_trap_was_not_stored_in_this_run_is_not_judged() {
    let mut r = Rig::new(3);
    r.enter_all(3);
    // A trap stored in an earlier run (then the run's reset of
    // entry_exit_map), then an exit through kvm_novcpu_exit: trap in r12 only.
    r.cpu32(1, 1, TRAP, EXTERNAL);
    r.vc32(0, 8, 0);
    r.vc32(0, 8, 0x7);
    r.vc32(1, 8, 0x207);
    r.cpu32(1, 1, CPU, -1);
    // And one stored before the thread's last entry into the guest.
    r.vc32(0, 8, 0);
    r.vc32(0, 8, 0x7);
    r.hs(2, 2, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
    r.cpu32(2, 2, TRAP, EXTERNAL);
    r.hs(2, 2, H::InGuest, KVM_GUEST_MODE_GUEST_HV.into());
    r.vc32(2, 8, 0x407);
    r.cpu32(2, 2, CPU, -1);
    assert_eq!(found(&r), Vec::<String>::new());
}

#[test]
fn the_trap_is_logged_and_replays_to_the_same_verdict() {
    let buf = Buf::default();
    let mut r = Rig::logged(3, Some(Box::new(buf.clone())));
    r.enter_all(3);
    commence_exit(&mut r, 1, EXTERNAL, 0x207);
    r.reg(1, Reg::Msgsnd, doorbell(0));
    r.cpu32(1, 1, CPU, -1);
    r.s.finish(r.tb);
    let text = buf.text();
    assert!(
        text.contains(&format!("\"field\":\"vcpus[{:#x}].trap\"", vcpu(1))),
        "trap events are logged"
    );
    let replayed = log::replay(text.lines()).expect("replays");
    let live: Vec<u32> = r.invariants();
    let again: Vec<u32> = replayed
        .violations()
        .iter()
        .map(|v| v.violation.invariant)
        .collect();
    assert!(live.contains(&EXIT_IPI_SENT), "{live:?}");
    assert_eq!(live, again);
}

/// Thread 0 without a vcpu (the `novcpu0` scenario): vcpus 1..n on threads
/// 1..n.  kvmppc_run_core starts the run; thread 0 switches the partition
/// in kvmppc_hv_entry and, having no vcpu, goes to kvmppc_primary_no_guest:
/// its bit in napping_threads, then napping = NAPPING_NOVCPU.
fn enter_novcpu(r: &mut Rig, n: usize) {
    r.vc32(0, 8, 0); // init_vcore_to_run
    r.vc32(0, 0, n as u32); // n_runnable
    r.st(0, VC + 152, &vcpu(1).to_le_bytes()); // runner
    for t in 1..4 {
        r.grab(t);
    }
    for t in 1..=n {
        r.start(t);
        r.hs(0, t, H::Vcore, VC);
    }
    r.hs(0, 0, H::Ptid, 0);
    r.hs(0, 0, H::Vcore, VC);
    r.vc8(0, 24, MODERN_VCORE_STATES.running);
    r.switch_in();
    r.vc32(0, 12, 1); // napping_threads |= 1 << ptid
    r.hs(0, 0, H::Napping, NAPPING_NOVCPU.into());
    for t in 1..=n {
        r.secondary_enters(t);
    }
}

/// kvm_novcpu_wakeup up to kvm_novcpu_exit's call: napping cleared, the
/// bit in napping_threads cleared, kvmhv_commence_exit(trap) storing the
/// first exit bit over `entry`.
fn novcpu_commence_exit(r: &mut Rig, trap: u64, entry: u32) {
    r.hs(0, 0, H::Napping, 0);
    r.vc32(0, 12, 0);
    r.reg(0, Reg::CommenceExit, trap);
    r.vc32(0, 8, entry | 0x100);
}

/// The secondaries 1..n leave the guest (their exits are not first), then
/// thread 0, past the wait in kvmhv_switch_to_host, switches back and
/// clears vc->in_guest: its first watched store after the call.
fn novcpu_rest_of_exit(r: &mut Rig, n: usize) {
    let entry = (1u32 << (n + 1)) - 1;
    let mut exit = 1u32;
    for t in 1..=n {
        r.hs(t, t, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
        r.cpu32(t, t as u64, TRAP, 0xe80);
        r.reg(t, Reg::CommenceExit, 0xe80);
        exit |= 1 << t;
        r.vc32(t, 8, entry | exit << 8);
        r.cpu32(t, t as u64, CPU, -1);
    }
    r.reg(0, Reg::MtLpidr, LPID_RSVD);
    r.reg(0, Reg::MtSdr1, 0x7c00_0007);
    r.reg(0, Reg::MtLpidr, 0);
    r.vc8(0, 25, 0);
}

#[test]
fn novcpu_first_exit_with_its_ipis_is_clean() {
    // The decrementer ends thread 0's nap: kvmppc_check_wake_reason gives
    // r3 = 0, r12 = 0, and kvm_novcpu_exit calls kvmhv_commence_exit(0).
    let mut r = Rig::new(3);
    enter_novcpu(&mut r, 2);
    novcpu_commence_exit(&mut r, 0, 0x7);
    r.reg(0, Reg::Msgsnd, doorbell(1));
    r.reg(0, Reg::Msgsnd, doorbell(2));
    novcpu_rest_of_exit(&mut r, 2);
    assert_eq!(r.invariants(), Vec::<u32>::new(), "{:?}", r.s.violations());
    let st = r.s.exit_ipi_stats();
    assert_eq!((st.first_exits, st.novcpu, st.owed, st.owed_novcpu), (1, 1, 1, 1));
}

#[test]
fn novcpu_first_exit_without_ipis_is_reported_at_its_next_store() {
    let mut r = Rig::new(3);
    enter_novcpu(&mut r, 2);
    novcpu_commence_exit(&mut r, 0x500, 0x7);
    r.reg(0, Reg::Msgsnd, doorbell(2));
    novcpu_rest_of_exit(&mut r, 2);
    let f = found(&r);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].contains("thread 0") && f[0].contains("trap 0x500") && f[0].contains("thread(s) 1 "),
        "{}",
        f[0]
    );
    let v = r.first(EXIT_IPI_SENT);
    assert_eq!(
        v.field,
        format!("vcores[{VC:#x}].in_guest"),
        "judged at thread 0's next store"
    );
    assert_eq!(r.invariants(), vec![EXIT_IPI_SENT], "nothing else is wrong");
}

#[test]
fn novcpu_hdec_exit_owes_nothing() {
    // A guest doorbell woke thread 0 after its HDEC expired: kvm_novcpu_exit
    // with r12 = BOOK3S_INTERRUPT_HV_DECREMENTER; the others leave on their own.
    let mut r = Rig::new(3);
    enter_novcpu(&mut r, 2);
    novcpu_commence_exit(&mut r, HDEC as u64, 0x7);
    novcpu_rest_of_exit(&mut r, 2);
    assert_eq!(r.invariants(), Vec::<u32>::new(), "{:?}", r.s.violations());
    let st = r.s.exit_ipi_stats();
    assert_eq!((st.first_exits, st.novcpu, st.hdec, st.owed), (1, 1, 1, 0));
}

#[test]
fn novcpu_exit_after_another_threads_owes_nothing() {
    // kvmppc_primary_no_guest / kvm_novcpu_wakeup saw entry_exit_map >= 0x100:
    // kvm_novcpu_exit with r12 = 0, and thread 0 is not the first.
    let mut r = Rig::new(3);
    enter_novcpu(&mut r, 2);
    commence_exit(&mut r, 1, HDEC, 0x207);
    r.cpu32(1, 1, CPU, -1);
    r.hs(0, 0, H::Napping, 0);
    r.reg(0, Reg::CommenceExit, 0);
    r.vc32(0, 8, 0x307);
    commence_exit(&mut r, 2, HDEC, 0x707);
    r.cpu32(2, 2, CPU, -1);
    r.vc32(0, 12, 0); // kvmhv_switch_to_host: no longer napping
    r.reg(0, Reg::MtLpidr, LPID_RSVD);
    r.reg(0, Reg::MtSdr1, 0x7c00_0007);
    r.reg(0, Reg::MtLpidr, 0);
    r.vc8(0, 25, 0);
    assert_eq!(found(&r), Vec::<String>::new());
    assert_eq!(r.s.exit_ipi_stats().first_exits, 1, "thread 1's, an HDEC exit");
}

#[test]
fn a_log_without_the_call_leaves_novcpu_exits_unjudged() {
    // An older plugin reported no kvmhv_commence_exit events: thread 0's trap
    // is unknown (r12 only), so its exit is counted and not judged.  (The
    // traps of vcpus 1 and 2, reported when thread 0 stored their PACA
    // pointers, are not thread 0's.)
    let mut r = Rig::new(3);
    enter_novcpu(&mut r, 2);
    r.hs(0, 0, H::Napping, 0);
    r.vc32(0, 12, 0);
    r.vc32(0, 8, 0x107);
    novcpu_rest_of_exit(&mut r, 2);
    assert_eq!(found(&r), Vec::<String>::new());
    let st = r.s.exit_ipi_stats();
    assert_eq!((st.first_exits, st.unknown_trap), (0, 1));
}

#[test]
fn the_call_is_logged_and_a_novcpu_verdict_replays() {
    let buf = Buf::default();
    let mut r = Rig::logged(3, Some(Box::new(buf.clone())));
    enter_novcpu(&mut r, 2);
    novcpu_commence_exit(&mut r, 0, 0x7);
    novcpu_rest_of_exit(&mut r, 2);
    r.s.finish(r.tb);
    let text = buf.text();
    assert!(
        text.contains("\"field\":\"threads[0].kvmhv_commence_exit\""),
        "the call is logged"
    );
    let replayed = log::replay(text.lines()).expect("replays");
    assert_eq!(r.invariants(), vec![EXIT_IPI_SENT]);
    let again: Vec<u32> = replayed
        .violations()
        .iter()
        .map(|v| v.violation.invariant)
        .collect();
    assert_eq!(again, vec![EXIT_IPI_SENT]);
    assert_eq!(replayed.exit_ipi_stats(), r.s.exit_ipi_stats());
}

/// novcpu0 under MTTCG: thread 0 (no vcpu) and thread 1 call
/// kvmhv_commence_exit together; thread 1's stwcx. wins (0x3 -> 0x203),
/// thread 0's fails, and QEMU reports thread 0's failed cmpxchg as a store
/// whose read-back is thread 1's bit.
fn race_to_the_first_exit() -> Rig {
    let mut r = Rig::new(3);
    enter_novcpu(&mut r, 1);
    r.hs(1, 1, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
    r.cpu32(1, 1, TRAP, EXTERNAL);
    r.reg(1, Reg::CommenceExit, EXTERNAL as u64);
    r.hs(0, 0, H::Napping, 0);
    r.vc32(0, 12, 0);
    r.reg(0, Reg::CommenceExit, 0);
    r.vc32(0, 8, 0x203); // reported by thread 0, made by thread 1
    r
}

#[test]
fn a_first_exit_read_back_by_the_racing_loser_is_the_winners() {
    // Thread 1 is the first exiter and owes thread 0 its msgsnd; thread 0
    // (whose retry is not first) owes nothing.
    let mut r = race_to_the_first_exit();
    r.vc32(0, 8, 0x303);
    r.reg(1, Reg::Msgsnd, doorbell(0));
    r.cpu32(1, 1, CPU, -1);
    r.reg(0, Reg::MtLpidr, LPID_RSVD);
    r.reg(0, Reg::MtSdr1, 0x7c00_0007);
    r.reg(0, Reg::MtLpidr, 0);
    r.vc8(0, 25, 0);
    assert_eq!(found(&r), Vec::<String>::new());
    let st = r.s.exit_ipi_stats();
    assert_eq!(
        (st.first_exits, st.novcpu, st.owed),
        (1, 0, 1),
        "thread 1's exit, judged"
    );
}

#[test]
fn a_racing_winner_that_sends_nothing_is_named() {
    // Thread 1 never sends its msgsnd: the violation names thread 1 (the
    // bit's owner) and thread 0 as the one owed.
    let mut r = race_to_the_first_exit();
    r.cpu32(1, 1, CPU, -1);
    let f = found(&r);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].starts_with("thread 1 ") && f[0].contains("thread(s) 0 "),
        "{}",
        f[0]
    );
}
