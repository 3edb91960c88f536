//! State fingerprints for the explorer's visited set: a 128-bit hash of the
//! whole state, or of its symmetry class (the secondary threads, each with
//! its own vcpu, as a sorted multiset).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use crate::consts::MAX_SMT_THREADS;
use crate::model::{Config, Phase, State};

/// A small fast 128-bit hasher (two multiply/rotate lanes, finished with
/// the splitmix64 mixer).
pub(crate) struct Fingerprinter {
    a: u64,
    b: u64,
}

impl Fingerprinter {
    fn new() -> Self {
        Fingerprinter {
            a: 0x243f_6a88_85a3_08d3,
            b: 0x1319_8a2e_0370_7344,
        }
    }

    fn finish128(&self) -> u128 {
        (mix64(self.a) as u128) << 64 | mix64(self.b ^ self.a.rotate_left(32)) as u128
    }
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Hasher for Fingerprinter {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word) ^ (chunk.len() as u64) << 56);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.a = (self.a ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31);
        self.b = (self.b.rotate_left(23) ^ x).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    }
    fn write_u8(&mut self, x: u8) {
        self.write_u64(x as u64 | 0x100)
    }
    fn write_u16(&mut self, x: u16) {
        self.write_u64(x as u64 | 0x2_0000)
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(x as u64 | 0x4_0000_0000)
    }
    fn write_i32(&mut self, x: i32) {
        self.write_u32(x as u32)
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64)
    }
    fn write_isize(&mut self, x: isize) {
        self.write_u64(x as u64)
    }
    fn finish(&self) -> u64 {
        mix64(self.a)
    }
}

/// The fingerprints are already mixed: the set uses their low bits as is.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u128(&mut self, x: u128) {
        self.0 = x as u64;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FingerprintSet = HashSet<u128, std::hash::BuildHasherDefault<PassThrough>>;

pub(crate) fn fingerprint(s: &State) -> u128 {
    let mut h = Fingerprinter::new();
    s.hash(&mut h);
    h.finish128()
}

type VcpuKey = (u8, u8, u8, i32, i32, u32, bool, u8, u8);

/// What a secondary thread t and its vcpu t look like, with every reference
/// to "t" made relative, so that threads can be compared across positions.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct SecondaryKey {
    phase: Phase,
    kvm_vcpu_self: bool,
    kvm_vcore: bool,
    ptid_self: bool,
    hwthread_req: u8,
    hwthread_state: u8,
    napping: u8,
    in_guest: u8,
    ipi: bool,
    late: bool,
    running_self: bool,
    /// Bit t of: entered, exited, napping_threads, runnable, runner, chosen,
    /// DPDES, vc->dpdes, doorbells sent and not taken.
    bits: u16,
    vcpu: Option<VcpuKey>,
}

fn secondary_key(s: &State, t: usize, chosen: u8) -> Option<SecondaryKey> {
    let th = &s.threads[t];
    let me = t as u8;
    let is_self = |v: Option<u8>| -> Option<bool> {
        match v {
            None => Some(false),
            Some(x) if x == me => Some(true),
            Some(_) => None,
        }
    };
    let h = &th.hstate;
    if h.ptid != 0 && h.ptid != me {
        return None;
    }
    let vc = s.vcore?;
    let bit = |m: u8| ((m >> t) & 1) as u16;
    let bits = bit(vc.entered)
        | bit(vc.exited) << 1
        | bit(vc.napping_threads) << 2
        | (vc.is_runnable(me) as u16) << 3
        | ((vc.runner == Some(me)) as u16) << 4
        | bit(chosen) << 5
        | bit(s.dpdes) << 6
        | bit(vc.dpdes) << 7
        | bit(s.db_sent) << 8;
    let vcpu = match s.vcpus[t] {
        None => None,
        Some(v) => {
            if v.ptid != me {
                return None;
            }
            let thread_cpu = if v.thread_cpu >= 0 {
                v.thread_cpu - t as i32
            } else {
                v.thread_cpu
            };
            Some((
                v.state, v.ceded, v.prodded, v.cpu, thread_cpu, v.trap, v.started, v.cedes, v.prods,
            ))
        }
    };
    Some(SecondaryKey {
        phase: th.phase,
        kvm_vcpu_self: is_self(h.kvm_vcpu)?,
        kvm_vcore: h.kvm_vcore,
        ptid_self: h.ptid == me && me != 0,
        hwthread_req: h.hwthread_req,
        hwthread_state: h.hwthread_state,
        napping: h.napping,
        in_guest: h.in_guest,
        ipi: th.ipi,
        late: th.late,
        running_self: is_self(th.running)?,
        bits,
        vcpu,
    })
}

/// The fingerprint of the state's symmetry class: thread 0 and vcpu 0 as
/// they are, the secondaries (each with its own vcpu) as a sorted multiset.
/// Sound for seed/modern, where thread t only ever holds vcpu t and every
/// rule treats the secondaries alike; falls back to the plain fingerprint
/// when a state does not have that shape.
pub(crate) fn symmetric_fingerprint(cfg: &Config, s: &State, chosen: u8) -> u128 {
    let n = cfg.threads as usize;
    let mut keys = [None; MAX_SMT_THREADS];
    for (t, slot) in keys.iter_mut().enumerate().take(n).skip(1) {
        match secondary_key(s, t, chosen) {
            Some(k) => *slot = Some(k),
            None => return fingerprint(s),
        }
    }
    keys[1..n].sort_unstable();
    let mut h = Fingerprinter::new();
    s.threads[0].hash(&mut h);
    s.vcpus[0].hash(&mut h);
    if let Some(mut vc) = s.vcore {
        let runner0 = vc.runner.map(|r| r == 0);
        let runnable0 = vc.is_runnable(0);
        vc.entered &= 1;
        vc.exited &= 1;
        vc.napping_threads &= 1;
        vc.dpdes &= 1;
        vc.runq = [0; MAX_SMT_THREADS];
        vc.runner = None;
        vc.hash(&mut h);
        (runner0, runnable0).hash(&mut h);
    } else {
        0u8.hash(&mut h);
    }
    (s.mmu, s.switch_in, s.switch_out, s.runs_done).hash(&mut h);
    (s.dpdes & 1, s.db_sent & 1, s.doorbells).hash(&mut h);
    keys[1..n].hash(&mut h);
    h.finish128()
}
