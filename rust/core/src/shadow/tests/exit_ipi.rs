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
    let v =
        r.s.violations()
            .iter()
            .find(|v| v.violation.invariant == EXIT_IPI_SENT)
            .unwrap();
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
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
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
