//! The shadow driven by synthetic store sequences (no QEMU): decoding,
//! pointer following, a legal vcore run that stays clean, one store that
//! breaks each step invariant, one stuck state per liveness bound, the
//! stock-QEMU LPIDR case, and the event log round trip.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

mod exit_ipi;
mod host_tb;
mod replay_until;

use super::checks::{LIVE_EXITING, LIVE_EXIT_IPI, LIVE_GRAB, LPID_RSVD};
use super::layout::Slot;
use super::*;
use crate::consts::*;

const PACA_PTRS: u64 = 0xc000_0000_0123_4000;
const ARRAY: u64 = 0xc000_0000_0200_0000;
const VC: u64 = 0xc000_0000_2818_6a00;
const KVM: u64 = 0xc008_0000_0400_0000;
const HS_OFF: u64 = 664;

fn paca(i: usize) -> u64 {
    0xc000_0000_0300_0000 + 0x1000 * i as u64
}
fn vcpu(id: u64) -> u64 {
    0xc000_0000_042e_0000 + 0x2000 * id
}

fn slot<F>(field: F, offset: u64, size: u8, signed: bool) -> Slot<F> {
    Slot {
        field,
        offset,
        size,
        signed,
    }
}

/// Offsets as Debian's 6.12 BTF gives them (test data only: the plugin
/// resolves them from the image).
fn layout() -> WatchLayout {
    WatchLayout {
        variant: Variant::Modern,
        paca_ptrs: PACA_PTRS,
        hstate_offset: HS_OFF,
        hstate: vec![
            slot(HField::InGuest, 56, 1, false),
            slot(HField::Napping, 58, 1, false),
            slot(HField::HwthreadReq, 59, 1, false),
            slot(HField::HwthreadState, 60, 1, false),
            slot(HField::Ptid, 62, 1, false),
            slot(HField::KvmVcpu, 64, 8, false),
            slot(HField::KvmVcore, 72, 8, false),
        ],
        vcore: vec![
            slot(VField::NRunnable, 0, 4, true),
            slot(VField::NumThreads, 4, 4, true),
            slot(VField::EntryExitMap, 8, 4, true),
            slot(VField::NappingThreads, 12, 4, true),
            slot(VField::FirstVcpuid, 16, 4, true),
            slot(VField::Pcpu, 20, 2, false),
            slot(VField::VcoreState, 24, 1, false),
            slot(VField::InGuest, 25, 1, false),
            slot(VField::Runner, 152, 8, false),
            slot(VField::Kvm, 160, 8, false),
            slot(VField::TbOffset, 168, 8, false),
            slot(VField::TbOffsetApplied, 176, 8, false),
        ],
        vcpu: vec![
            slot(CField::Cpu, 32, 4, true),
            slot(CField::VcpuId, 36, 4, true),
            slot(CField::Vcore, 600, 8, false),
            slot(CField::Ptid, 5700, 4, true),
            slot(CField::ThreadCpu, 5704, 4, true),
            slot(CField::State, 5708, 1, false),
            slot(CField::Ceded, 5709, 1, false),
            slot(CField::Trap, 5712, 4, false),
        ],
    }
}

#[derive(Default)]
struct FakeMem(HashMap<u64, u8>);

impl FakeMem {
    fn put(&mut self, va: u64, bytes: &[u8]) {
        for (k, b) in bytes.iter().enumerate() {
            self.0.insert(phys(va) + k as u64, *b);
        }
    }
}

impl Memory for FakeMem {
    fn read(&mut self, vaddr: u64, buf: &mut [u8]) -> bool {
        for (k, b) in buf.iter_mut().enumerate() {
            *b = *self.0.get(&(phys(vaddr) + k as u64)).unwrap_or(&0);
        }
        true
    }
}

struct Rig {
    s: Shadow,
    mem: FakeMem,
    /// The host's timebase.
    tb: u64,
    /// What thread 0's TBU40 writes added to the core's TB (the TB every
    /// event reads is `tb + in_force`, modulo 2^64).
    in_force: u64,
    /// The LPIDR secondaries read once in the guest (1: shared, as on
    /// POWER8; 0: stock QEMU 10.0, which does not share it).
    sec_lpidr: u64,
}

#[derive(Clone, Copy)]
enum H {
    InGuest = 56,
    Napping = 58,
    Req = 59,
    State = 60,
    Ptid = 62,
    Vcpu = 64,
    Vcore = 72,
}

impl Rig {
    /// Booted: paca_ptrs stored, each PACA stored with its threads idle
    /// (thread 0 in the kernel, 1..3 offline in IN_IDLE), a VM with one
    /// vcore of `n` vcpus created (memory only: nothing points at it yet).
    fn new(n: u64) -> Rig {
        Self::logged(n, None)
    }

    fn logged(n: u64, log: Option<Box<dyn Write + Send>>) -> Rig {
        let mut s = Shadow::new(layout(), 4, TB_FREQ_POWER8);
        s.bounds.slack = 10.0; // the bounds below are written for x10
        if let Some(w) = log {
            let mut extra = serde_json::Map::new();
            extra.insert("scenario".into(), "test".into());
            s.set_log(w, &extra);
        }
        let mut r = Rig {
            s,
            mem: FakeMem::default(),
            tb: 1_000_000,
            in_force: 0,
            sec_lpidr: 1,
        };
        for i in 1..4 {
            r.mem.put(paca(i) + HS_OFF + 60, &[KVM_HWTHREAD_IN_IDLE]);
        }
        r.st(0, PACA_PTRS, &ARRAY.to_le_bytes());
        for i in 0..4 {
            r.st(0, ARRAY + 8 * i as u64, &paca(i).to_le_bytes());
        }
        r.mem.put(VC + 4, &(n as u32).to_le_bytes());
        r.mem.put(VC + 160, &KVM.to_le_bytes());
        for id in 0..n {
            let a = vcpu(id);
            r.mem.put(a + 32, &(-1i32).to_le_bytes());
            r.mem.put(a + 36, &(id as u32).to_le_bytes());
            r.mem.put(a + 600, &VC.to_le_bytes());
            r.mem.put(a + 5700, &(id as u32).to_le_bytes());
            r.mem.put(a + 5704, &(-1i32).to_le_bytes());
            r.mem.put(a + 5708, &[KVMPPC_VCPU_RUNNABLE]);
        }
        r
    }

    /// A store by `cpu`: memory changes, then the plugin's callback.
    fn st(&mut self, cpu: usize, va: u64, bytes: &[u8]) -> usize {
        self.tb += 1000;
        self.mem.put(va, bytes);
        self.callback(cpu, va, bytes)
    }
    /// The plugin's callback for a store of `bytes` at `va` (memory already
    /// holds them: a late callback is this alone); the fields it changed.
    fn callback(&mut self, cpu: usize, va: u64, bytes: &[u8]) -> usize {
        let pa = phys(va);
        if !self.s.may_watch(pa, bytes.len() as u64) {
            return 0;
        }
        let tb = self.tb.wrapping_add(self.in_force);
        self.s
            .store(cpu, 0xc000_0000_0011_4000, tb, pa, bytes, &mut self.mem)
    }
    fn hs(&mut self, cpu: usize, t: usize, f: H, v: u64) {
        let size = if matches!(f, H::Vcpu | H::Vcore) { 8 } else { 1 };
        self.st(cpu, paca(t) + HS_OFF + f as u64, &v.to_le_bytes()[..size]);
    }
    fn vc32(&mut self, cpu: usize, off: u64, v: u32) {
        self.st(cpu, VC + off, &v.to_le_bytes());
    }
    fn vc8(&mut self, cpu: usize, off: u64, v: u8) {
        self.st(cpu, VC + off, &[v]);
    }
    fn cpu32(&mut self, cpu: usize, id: u64, off: u64, v: i32) {
        self.st(cpu, vcpu(id) + off, &v.to_le_bytes());
    }
    fn reg(&mut self, cpu: usize, r: Reg, v: u64) {
        self.tb += 1000;
        let tb = self.tb.wrapping_add(self.in_force);
        self.s.register(cpu, 0xc000_0000_0011_5000, tb, r, v);
    }
    fn invariants(&self) -> Vec<u32> {
        self.s
            .violations()
            .iter()
            .map(|r| r.violation.invariant)
            .collect()
    }
    /// The first violation of `invariant` (the test fails if there is none).
    fn first(&self, invariant: u32) -> &Recorded {
        self.s
            .violations()
            .iter()
            .find(|v| v.violation.invariant == invariant)
            .unwrap_or_else(|| panic!("no invariant {invariant} in {:?}", self.invariants()))
    }
    fn advance(&mut self, secs: f64) {
        self.tb += (secs * TB_FREQ_POWER8 as f64) as u64;
    }

    /// Thread 0 grabs thread `t`, which wakes into KVM.
    fn grab(&mut self, t: usize) {
        self.hs(0, t, H::Req, 1);
        self.hs(t, t, H::State, KVM_HWTHREAD_IN_KERNEL.into()); // woken
        self.hs(t, t, H::State, KVM_HWTHREAD_IN_KVM.into()); // idle_kvm_start_guest
    }

    /// kvmppc_start_thread for vcpu `t` on thread `t`, up to its ptid (its
    /// kvm_vcore, stored last, is left to the caller).
    fn start(&mut self, t: usize) {
        self.cpu32(0, t as u64, 32, 0); // vcpu->cpu = pcpu
        self.cpu32(0, t as u64, 5704, t as i32); // thread_cpu
        self.hs(0, t, H::Vcpu, vcpu(t as u64));
        self.hs(0, t, H::Ptid, t as u64);
    }

    /// kvmppc_run_core up to every thread in the guest (modern, vcpus
    /// 0..n on threads 0..n).
    fn enter_all(&mut self, n: usize) {
        self.vc32(0, 8, 0); // init_vcore_to_run
        self.vc32(0, 0, n as u32); // n_runnable
        self.st(0, VC + 152, &vcpu(0).to_le_bytes()); // runner
        for t in 1..4 {
            self.grab(t);
        }
        for t in 0..n {
            self.start(t);
            self.hs(0, t, H::Vcore, VC);
        }
        self.vc8(0, 24, MODERN_VCORE_STATES.running);
        self.switch_in();
        self.hs(0, 0, H::InGuest, KVM_GUEST_MODE_GUEST_HV.into());
        for t in 1..n {
            self.secondary_enters(t);
        }
    }

    /// Thread 0 in kvmppc_hv_entry: its entry bit, the partition switch
    /// (LPIDR through LPID_RSVD, SDR1), the vcore's timebase offset when it
    /// has one (`tb_offset_applied`, then the TBU40 write), then vcore
    /// in_guest = 1.
    fn switch_in(&mut self) {
        self.hs(0, 0, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
        self.vc32(0, 8, 1);
        self.reg(0, Reg::MtLpidr, LPID_RSVD);
        self.reg(0, Reg::MtSdr1, 0x7500_0006);
        self.reg(0, Reg::MtLpidr, 1);
        let mut off = [0u8; 8];
        self.mem.read(VC + 168, &mut off);
        let off = u64::from_le_bytes(off);
        if off != 0 {
            self.st(0, VC + 176, &off.to_le_bytes());
            self.in_force = off; // mtspr TBU40
        }
        self.vc8(0, 25, 1);
    }

    /// Thread 0 in kvmhv_switch_to_host takes the offset off: clears
    /// `tb_offset_applied`, then writes TBU40.
    fn offset_off(&mut self) {
        if self.in_force != 0 {
            self.st(0, VC + 176, &0u64.to_le_bytes());
            self.in_force = 0;
        }
    }

    /// Secondary `t` enters once thread 0 switched: its entry bit (threads
    /// 0..t entered), it reads the partition's LPIDR and SDR1, then runs
    /// the guest.
    fn secondary_enters(&mut self, t: usize) {
        self.hs(t, t, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
        self.vc32(t, 8, (1 << (t + 1)) - 1);
        self.reg(t, Reg::Lpidr, self.sec_lpidr);
        self.reg(t, Reg::Sdr1, 0x7500_0006);
        self.hs(t, t, H::InGuest, KVM_GUEST_MODE_GUEST_HV.into());
    }

    /// Every thread exits, thread 0 switches back, the runner releases.
    fn exit_all(&mut self, n: usize) {
        let entry = (1u32 << n) - 1;
        let mut exit = 0u32;
        for t in (0..n).rev() {
            self.hs(t, t, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
            exit |= 1 << t;
            self.vc32(t, 8, entry | exit << 8);
            self.cpu32(t, t as u64, 32, -1);
            self.cpu32(t, t as u64, 5704, -1);
        }
        self.reg(0, Reg::MtLpidr, LPID_RSVD);
        self.reg(0, Reg::MtSdr1, 0x7c00_0007);
        self.reg(0, Reg::MtLpidr, 0);
        self.offset_off();
        self.vc8(0, 25, 0);
        self.hs(0, 0, H::InGuest, KVM_GUEST_MODE_NONE.into());
        for t in 1..n {
            self.hs(t, t, H::InGuest, KVM_GUEST_MODE_NONE.into());
            self.hs(t, t, H::Vcpu, 0);
            self.hs(t, t, H::Vcore, 0);
        }
        self.vc8(0, 24, MODERN_VCORE_STATES.exiting);
        // kvmppc_release_hwthread(pcpu + i) for i = 0.. (book3s_hv.c): thread
        // 0's PACA first (its hwthread_req is already 0).
        self.hs(0, 0, H::Vcpu, 0);
        self.hs(0, 0, H::Vcore, 0);
        for t in 1..4 {
            self.hs(0, t, H::Vcpu, 0);
            self.hs(0, t, H::Vcore, 0);
            self.hs(0, t, H::Req, 0);
            self.hs(t, t, H::State, KVM_HWTHREAD_IN_KERNEL.into());
            self.hs(t, t, H::State, KVM_HWTHREAD_IN_IDLE.into());
        }
        self.vc8(0, 24, MODERN_VCORE_STATES.inactive);
    }
}

#[test]
fn pointers_are_followed_as_they_are_stored() {
    let mut r = Rig::new(2);
    assert_eq!(r.s.state().pacas, (0..4).map(paca).collect::<Vec<_>>());
    assert_eq!(
        r.s.state().hstate[2].hwthread_state,
        KVM_HWTHREAD_IN_IDLE,
        "read when found"
    );
    assert!(r.s.state().vcores.is_empty());
    r.hs(0, 1, H::Vcore, VC);
    let vc = &r.s.state().vcores[&VC];
    assert_eq!(
        (vc.num_threads, vc.kvm),
        (2, Some(KVM)),
        "the vcore's fields are read when first pointed at"
    );
    r.hs(0, 1, H::Vcpu, vcpu(1));
    let c = &r.s.state().vcpus[&vcpu(1)];
    assert_eq!((c.vcpu_id, c.ptid, c.cpu, c.vcore), (1, 1, -1, VC));
    // A PACA pointer replaced: the old PACA is no longer watched.
    let before = r.s.stats.events;
    r.st(0, ARRAY + 8, &paca(7).to_le_bytes());
    let n = r.st(1, paca(1) + HS_OFF + 56, &[4]);
    assert_eq!(n, 0, "a store to the old PACA is not a change");
    assert!(r.s.stats.events > before);
}

#[test]
fn a_store_is_spliced_into_every_field_it_covers() {
    let mut r = Rig::new(2);
    // One 8-byte store over in_guest..fake_suspend (offsets 56..64).
    let word = [4u8, 0, 2, 1, 2, 0, 1, 0];
    let n = r.st(1, paca(1) + HS_OFF + 56, &word);
    let h = &r.s.state().hstate[1];
    assert_eq!(
        (h.in_guest, h.napping, h.hwthread_req, h.hwthread_state, h.ptid),
        (4, 2, 1, 2, 1)
    );
    assert_eq!(
        n, 5,
        "in_guest, napping, hwthread_req, hwthread_state (1 -> 2), ptid"
    );
    // Half of a pointer (an unaligned 4-byte store into kvm_vcore).
    r.st(0, paca(1) + HS_OFF + 72, &0x2818_6a00u32.to_le_bytes());
    assert_eq!(r.s.state().hstate[1].kvm_vcore, 0x2818_6a00);
    // Unwatched neighbours (host_ipi, fake_suspend, scratch) make no event.
    let e = r.s.stats.events;
    r.st(1, paca(1) + HS_OFF + 57, &[9]);
    r.st(1, paca(1) + HS_OFF + 8, &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(r.s.stats.events, e);
    assert!(!r.s.may_watch(phys(0xc000_0000_0999_0000), 8));
}

#[test]
fn a_legal_run_is_clean() {
    let mut r = Rig::new(2);
    r.enter_all(2);
    r.exit_all(2);
    r.enter_all(2);
    r.exit_all(2);
    let v: Vec<String> =
        r.s.violations()
            .iter()
            .map(|x| format!("{} @{}", x.violation, x.field))
            .collect();
    assert!(v.is_empty(), "{v:#?}");
    assert!(r.s.stats.distinct_states > 20);
    assert!(r.s.stats.events_per_field["kvm_hstate.in_guest"] >= 8);
}

#[test]
fn invariant_7_a_secondary_switching_the_partition() {
    let mut r = Rig::new(2);
    r.enter_all(2);
    r.reg(1, Reg::MtLpidr, 0);
    assert!(r.invariants().contains(&7), "{:?}", r.invariants());
    let mut r = Rig::new(2);
    r.enter_all(2);
    r.vc8(1, 25, 0); // vc->in_guest cleared by ptid 1
    assert!(r.invariants().contains(&7), "{:?}", r.invariants());
}

#[test]
fn invariant_11_an_entry_after_the_exit_began() {
    let mut r = Rig::new(3);
    r.enter_all(2);
    r.hs(0, 0, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
    r.vc32(0, 8, 0x103);
    r.vc32(2, 8, 0x107); // thread 2 sets its entry bit after thread 0's exit bit
    assert!(r.invariants().contains(&11), "{:?}", r.invariants());
}

#[test]
fn invariant_12_an_exit_before_thread_0_entered() {
    let mut r = Rig::new(2);
    r.hs(0, 1, H::Vcore, VC);
    r.vc8(0, 24, MODERN_VCORE_STATES.running);
    r.vc32(1, 8, 0x2);
    r.vc32(1, 8, 0x202);
    assert!(r.invariants().contains(&12), "{:?}", r.invariants());
}

#[test]
fn invariant_13_switching_back_before_every_thread_exits() {
    let mut r = Rig::new(2);
    r.enter_all(2);
    r.hs(0, 0, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
    r.vc32(0, 8, 0x103);
    r.vc8(0, 25, 0); // thread 1 is still in the guest
    assert!(r.invariants().contains(&13), "{:?}", r.invariants());
}

#[test]
fn invariant_19_vcore_state_going_backwards() {
    let mut r = Rig::new(2);
    r.enter_all(2);
    r.vc8(0, 24, MODERN_VCORE_STATES.exiting);
    r.vc8(0, 24, MODERN_VCORE_STATES.running);
    assert!(r.invariants().contains(&19), "{:?}", r.invariants());
}

#[test]
fn invariant_23_in_guest_skipping_host_hv() {
    let mut r = Rig::new(2);
    r.hs(2, 2, H::InGuest, KVM_GUEST_MODE_GUEST_HV.into());
    assert!(r.invariants().contains(&23), "{:?}", r.invariants());
}

#[test]
fn liveness_a_grab_that_never_completes() {
    let mut r = Rig::new(2);
    r.hs(0, 1, H::Req, 1);
    r.hs(1, 1, H::State, KVM_HWTHREAD_IN_KERNEL.into());
    r.advance(0.05); // within 10 ms x slack 10
    r.hs(0, 2, H::Napping, 0);
    assert!(!r.invariants().contains(&LIVE_GRAB));
    r.advance(0.2);
    r.hs(0, 2, H::Napping, 1);
    assert_eq!(
        r.invariants().iter().filter(|&&i| i == LIVE_GRAB).count(),
        1,
        "{:?}",
        r.invariants()
    );
    r.advance(1.0);
    r.hs(0, 2, H::Napping, 0);
    assert_eq!(
        r.invariants().iter().filter(|&&i| i == LIVE_GRAB).count(),
        1,
        "once per episode"
    );
}

#[test]
fn liveness_an_exit_ipi_never_answered() {
    let mut r = Rig::new(2);
    r.enter_all(2);
    r.hs(0, 0, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
    r.vc32(0, 8, 0x103);
    r.advance(0.02);
    r.s.finish(r.tb);
    assert!(!r.invariants().contains(&LIVE_EXIT_IPI));
    r.advance(0.1);
    r.s.finish(r.tb);
    assert!(r.invariants().contains(&LIVE_EXIT_IPI), "{:?}", r.invariants());
    let v = r.first(LIVE_EXIT_IPI);
    assert!(v.violation.message.contains("ptid 1"), "{}", v.violation.message);
}

#[test]
fn liveness_a_vcore_stuck_in_exiting() {
    let mut r = Rig::new(2);
    r.enter_all(2);
    r.exit_all(2);
    r.vc8(0, 24, MODERN_VCORE_STATES.exiting);
    r.advance(2.0);
    r.hs(0, 3, H::Napping, 0);
    r.s.finish(r.tb);
    assert!(r.invariants().contains(&LIVE_EXITING), "{:?}", r.invariants());
}

#[test]
fn stock_qemu_lpidr_not_shared_is_invariant_8_at_the_first_read() {
    let mut r = Rig::new(2);
    // Thread 1 enters and reads the host's LPIDR: stock QEMU did not share it.
    r.sec_lpidr = 0;
    r.enter_all(2);
    let v = r.s.violations().first().expect("invariant 8");
    assert_eq!(v.violation.invariant, 8);
    assert_eq!(v.field, "threads[1].lpidr");
    assert!(v.events.len() > 3 && v.events.len() <= RING);
    assert_eq!(v.events.last().unwrap()["field"], "threads[1].lpidr");
}

#[test]
fn every_violation_is_counted_and_listed_past_those_kept_with_events() {
    let mut r = Rig::new(4);
    r.sec_lpidr = 0; // stock QEMU: each secondary's entry is one invariant 8
    let mut rounds = 0;
    while r.s.stats.violations <= MAX_RECORDED as u64 + 10 {
        r.enter_all(4);
        r.exit_all(4);
        rounds += 1;
        assert!(rounds < 1000, "{:?}", r.s.stats.violations_per_invariant);
    }
    let listed = r.s.violations();
    assert_eq!(listed.len() as u64, r.s.stats.violations);
    let per: u64 = r.s.stats.violations_per_invariant.values().sum();
    assert_eq!(per, r.s.stats.violations);
    assert!(r.s.stats.violations_per_invariant[&8] > MAX_RECORDED as u64);
    assert!(listed[..MAX_RECORDED].iter().all(|v| !v.events.is_empty()));
    assert!(listed[MAX_RECORDED..].iter().all(|v| v.events.is_empty()));
    assert!(listed.windows(2).all(|w| w[0].seq <= w[1].seq));
    let summary = r.s.summary();
    let n = summary["violations"].as_array().unwrap().len() as u64;
    assert_eq!(n, summary["stats"]["violations"].as_u64().unwrap());
    assert!(
        summary["stats"]["violations_per_invariant"]["8"]
            .as_u64()
            .unwrap()
            > 200
    );
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Buf {
    /// What the shadow logged so far.
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A logged run with invariant 19 (vcore_state going backwards) in it: its
/// log lines and the live shadow.
fn logged_run() -> (Vec<String>, Rig) {
    let buf = Buf::default();
    let mut r = Rig::logged(2, Some(Box::new(buf.clone())));
    r.enter_all(2);
    r.exit_all(2);
    r.enter_all(2);
    r.vc8(0, 24, MODERN_VCORE_STATES.exiting);
    r.vc8(0, 24, MODERN_VCORE_STATES.running);
    r.s.finish(r.tb);
    (buf.text().lines().map(String::from).collect(), r)
}

#[test]
fn the_event_log_replays_to_the_same_verdict() {
    let (owned, r) = logged_run();
    let lines: Vec<&str> = owned.iter().map(String::as_str).collect();
    assert!(log::is_header(lines[0]));
    assert!(lines[1].contains("\"seq\":"), "{}", lines[1]);
    let again = log::replay(lines.iter().copied()).expect("replays");
    let a: Vec<(u32, u64)> =
        r.s.violations()
            .iter()
            .map(|v| (v.violation.invariant, v.seq))
            .collect();
    let b: Vec<(u32, u64)> = again
        .violations()
        .iter()
        .map(|v| (v.violation.invariant, v.seq))
        .collect();
    assert_eq!(a, b);
    assert!(a.iter().any(|(i, _)| *i == 19));
    assert_eq!(again.stats.events, r.s.stats.events);
}

#[test]
fn a_line_that_is_not_json_is_said_alike() {
    let head = r#"{"format":"pyvcore-events","version":1,"variant":"modern","threads_per_core":4}"#;
    let cut = r#"{"seq":1,"tb":5,"cpu":0,"pc":"0x0","fie"#;
    let e = log::replay([head, cut]).err().unwrap();
    assert_eq!(
        e.to_string(),
        "2:39: not JSON: cut short (the line ends inside a value)"
    );
    let e = log::replay([head, r#"{"seq":1 "tb":5}"#]).err().unwrap();
    assert_eq!(e.to_string(), "2:10: not JSON: expected `,` or `}`");
    assert_eq!(e.located("t.log"), "t.log:2:10: not JSON: expected `,` or `}`");
    // the column counts the line's leading blanks, as an editor does
    let e = log::replay([head, r#"  {"seq":1 "tb":5}"#]).err().unwrap();
    assert_eq!((e.line, e.column), (2, Some(12)));
}

#[test]
fn a_bad_log_line_is_named() {
    let head = r#"{"format":"pyvcore-events","version":1,"variant":"modern","threads_per_core":4}"#;
    let bad = r#"{"seq":1,"tb":5,"cpu":0,"pc":"0x0","field":"threads[0].kvm_hstate.nope","old":0,"new":1}"#;
    let e = log::replay([head, bad]).err().unwrap();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("nope"), "{e}");
    let e = log::replay([r#"{"version":2}"#]).err().unwrap();
    assert!(e.message.contains("header"));
    let far = r#"{"seq":1,"tb":5,"cpu":9,"pc":"0x0","field":"threads[9].lpidr","old":null,"new":"0x1"}"#;
    assert!(log::replay([head, far]).is_err());
    assert!(log::replay(std::iter::empty()).is_err());
}

#[test]
fn field_names_round_trip() {
    for f in [
        FieldRef::PacaPtrs,
        FieldRef::Paca(3),
        FieldRef::Hstate(2, HField::KvmVcore),
        FieldRef::Reg(1, Reg::MtLpidr),
        FieldRef::Reg(0, Reg::Msgsndp),
        FieldRef::Reg(3, Reg::CommenceExit),
        FieldRef::Vcore(VC, VField::EntryExitMap),
        FieldRef::Vcpu(vcpu(3), CField::ThreadCpu),
    ] {
        assert_eq!(FieldRef::parse(&f.to_string()), Some(f), "{f}");
    }
    assert_eq!(FieldRef::parse("threads[x].lpidr"), None);
}

#[test]
fn liveness_rows_are_in_the_invariant_table() {
    use crate::invariants::table::{info, Kind};
    for n in [LIVE_GRAB, LIVE_EXIT_IPI, LIVE_EXITING] {
        let row = info(n).unwrap_or_else(|| panic!("invariant {n} has no row"));
        assert_eq!(row.kind, Kind::Liveness);
        assert!(row.source.contains("arch/powerpc/kvm/"), "{}", row.source);
    }
}

#[test]
fn lpid_rsvd_during_the_switch_is_not_compared() {
    let mut r = Rig::new(2);
    r.enter_all(2);
    r.hs(0, 0, H::InGuest, KVM_GUEST_MODE_HOST_HV.into());
    r.reg(0, Reg::MtLpidr, LPID_RSVD);
    // Thread 1 still reads the guest's LPID: the sibling update is asynchronous.
    r.reg(1, Reg::Lpidr, 1);
    assert!(!r.invariants().contains(&8), "{:?}", r.invariants());
}

#[path = "tests_settle.rs"]
mod settle_tests;
