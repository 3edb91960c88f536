//! State keys for the explorer's visited set: a 64-bit hash of the whole
//! state, or of its symmetry class (the secondary threads, each with its own
//! vcpu, as a sorted multiset), packed into u64 words before mixing; and
//! apart from it the explorer's bound counters, so that a state with less of
//! the budget used subsumes one with more (see [`Key`]).

use std::collections::HashSet;
use std::hash::Hasher;

use crate::consts::{BOOK3S_INTERRUPT_HV_DECREMENTER, BOOK3S_INTERRUPT_SYSCALL, MAX_SMT_THREADS};
use crate::model::state::{ThreadModel, VcoreModel, VcpuModel};
use crate::model::{vc_first, Config, Event, Mmu, Phase, State};

/// A small fast 64-bit hash of u64 words (two multiply/rotate lanes that
/// take the words in turn, so that the two chains of multiplications run
/// side by side, joined by the splitmix64 mixer): the state is packed into
/// words first (one per thread, a few per vcpu and for the vcore) and only
/// those are mixed.
pub(crate) struct Words {
    a: u64,
    b: u64,
}

impl Words {
    pub(crate) fn new() -> Self {
        Words {
            a: 0x243f_6a88_85a3_08d3,
            b: 0x1319_8a2e_0370_7344,
        }
    }

    /// Mix `x` into one lane; the next word goes to the other.
    pub(crate) fn put(&mut self, x: u64) {
        let a = (self.a ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31);
        self.a = self.b;
        self.b = a;
    }

    pub(crate) fn finish(&self) -> u64 {
        mix64(mix64(self.a) ^ self.b)
    }
}

/// The splitmix64 finaliser.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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
    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The exact keys of states kept besides the one of their fingerprint.
pub(crate) type FingerprintSet = HashSet<u64, std::hash::BuildHasherDefault<PassThrough>>;

fn opt_idx(x: Option<u8>) -> u64 {
    x.map_or(0xff, u64::from)
}

fn phase_code(p: Phase) -> u64 {
    p as u64
}

/// One thread in one word (`ipi` and `running`/`kvm_vcpu` as given, 8 bits each).
fn thread_word(th: &ThreadModel, ipi: bool, kvm_vcpu: u64, running: u64, ptid: u64) -> u64 {
    let h = &th.hstate;
    phase_code(th.phase)
        | kvm_vcpu << 8
        | running << 16
        | ptid << 24
        | (h.hwthread_req as u64) << 32
        | (h.hwthread_state as u64) << 40
        | (h.napping as u64) << 48
        | ((h.in_guest & 0x1f) as u64) << 56
        | (h.kvm_vcore as u64) << 61
        | (ipi as u64) << 62
        | (th.late as u64) << 63
}

/// One vcpu in three words (`thread_cpu` as given), without the
/// explorer's bound counters (see [`used`]); the third has its upper half
/// free.
fn vcpu_words(v: Option<VcpuModel>, thread_cpu: i32) -> [u64; 3] {
    match v {
        None => [0, 0, 0],
        Some(v) => [
            v.ptid as u64
                | (v.state as u64) << 8
                | (v.ceded as u64) << 16
                | (v.prodded as u64) << 24
                | (v.started as u64) << 32
                | 1 << 40,
            (v.cpu as u32 as u64) | (thread_cpu as u32 as u64) << 32,
            v.trap as u64,
        ],
    }
}

/// The vcore in four words (`mask` applied to the per-thread bitmaps,
/// `runq`/`runner` as given).
fn vcore_words(vc: &VcoreModel, mask: u8, runq: u64, runner: u64) -> [u64; 4] {
    let flags = vc.exit_req as u64
        | (vc.tb_offset_applied as u64) << 1
        | (vc.lock_held as u64) << 2
        | (vc.released as u64) << 3;
    [
        vc.first_vcpuid as u64 | (vc.pcpu as u64) << 32,
        vc.num_threads as u64
            | (vc.vcore_state as u64) << 32
            | (vc.in_guest as u64) << 40
            | runner << 48
            | ((vc.entered & mask) as u64) << 56,
        (vc.exited & mask) as u64
            | ((vc.napping_threads & mask) as u64) << 8
            | (vc.n_woken as u64) << 16
            | (vc.nap_count as u64) << 24
            | ((vc.dpdes & mask) as u64) << 32
            | (vc.runq_len as u64) << 40
            | flags << 48,
        runq,
    ]
}

fn globals_word(s: &State, mask: u8) -> u64 {
    (s.mmu == Mmu::Guest) as u64
        | (s.switch_in as u64) << 8
        | (s.switch_out as u64) << 16
        | (s.runs_done as u64) << 24
        | ((s.dpdes & mask) as u64) << 32
        | ((s.db_sent & mask) as u64) << 40
}

/// The largest value a bound counter may have to be compared field-wise
/// (3-bit fields, see [`subsumes`]).
const USED_MAX: u8 = 3;

/// A vcpu's bound counters: (cedes, prods).
fn vcpu_used(v: Option<VcpuModel>) -> (u8, u8) {
    v.map_or((0, 0), |v| (v.cedes, v.prods))
}

/// The values of a state that no later step and no check can read (dead
/// values), as masks, so that states differing only there share a key: they
/// have the same views (none of these is in a snapshot) and the same futures.
/// The keys read through the masks, without copying the state.
///
/// * A secondary's pending-IPI flag unless it naps offline (`Host`) with a
///   vcpu to run: only kvmppc_hv_entry from that nap reads it (from
///   kvm_no_guest, `Spinning`, the thread goes in whenever it has a vcpu).
///   Every way on from the other phases clears it first
///   (kvmppc_hv_entry, kvmhv_commence_exit, kvm_end_cede, which wakes a cede
///   nap whatever the cause) or reaches a nap without a vcpu, and the only
///   way to get one, kvmppc_start_thread, sets the flag (an IPI to every
///   thread but 0).  Thread 0's flag is read only by its nap without a
///   vcpu (kvm_novcpu_wakeup): it is live only while thread 0 runs no vcpu
///   and is on its way to that nap or in it (kvmppc_hv_entry clears it).
/// * `arch.trap` other than BOOK3S_INTERRUPT_SYSCALL: the only reader is
///   the end of kvmppc_run_core, which asks whether it is the cede's
///   (0 and the HDEC vector act alike there).
/// * `arch.prodded` of a vcpu that cannot cede again within the bounds
///   (`may_cede` bit clear): only kvmppc_h_cede reads it within the run
///   (kvmppc_vcpu_woken reads it where a run starts, before any prod).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dead {
    /// Threads (bit per thread) whose `ipi` is dead.
    ipi: u8,
    /// vcpus (bit per index) whose `arch.prodded` is dead.
    prodded: u8,
    /// Whether a trap other than BOOK3S_INTERRUPT_SYSCALL reads as 0.
    trap: bool,
}

impl Dead {
    /// Nothing dead: the keys of the state as it is.
    pub(crate) const NONE: Dead = Dead {
        ipi: 0,
        prodded: 0,
        trap: false,
    };

    /// The dead values of `s` (`threads` threads; `may_cede`: bit per vcpu
    /// that may still cede within the bounds).
    pub(crate) fn of(s: &State, threads: usize, may_cede: u8) -> Dead {
        let th0 = &s.threads[0];
        let novcpu = matches!(th0.phase, Phase::Entered | Phase::SwitchedIn | Phase::NovcpuNap);
        let mut ipi = u8::from(!novcpu || th0.running.is_some());
        for (t, th) in s.threads[..threads].iter().enumerate().skip(1) {
            if th.phase != Phase::Host || th.hstate.kvm_vcpu.is_none() {
                ipi |= 1 << t;
            }
        }
        Dead {
            ipi,
            prodded: !may_cede,
            trap: true,
        }
    }

    /// The vcpus (bit per index) that may still cede: those whose
    /// `arch.prodded` is live.
    pub(crate) fn may_cede(self) -> u8 {
        !self.prodded
    }

    fn ipi(self, th: &ThreadModel, t: usize) -> bool {
        th.ipi && self.ipi & (1 << t) == 0
    }

    /// vcpu `i` as the keys see it.
    fn vcpu(self, v: Option<VcpuModel>, i: usize) -> Option<VcpuModel> {
        let mut v = v?;
        if self.trap && v.trap != BOOK3S_INTERRUPT_SYSCALL {
            v.trap = 0;
        }
        if self.prodded & (1 << i) != 0 {
            v.prodded = 0;
        }
        Some(v)
    }
}

/// `s` with its dead values (see [`Dead`]) cleared.
#[cfg(test)]
pub(crate) fn forget_dead(s: &mut State, threads: usize, may_cede: u8) {
    let dead = Dead::of(s, threads, may_cede);
    for (t, th) in s.threads.iter_mut().enumerate().take(threads) {
        th.ipi = dead.ipi(th, t);
    }
    for (i, v) in s.vcpus.iter_mut().enumerate().take(threads) {
        *v = dead.vcpu(*v, i);
    }
}

/// The key of a state in the visited set: the fingerprint of everything
/// but the explorer's bound counters, and those counters ("budget used":
/// the doorbells sent, then per vcpu its cedes and prods, 3 bits each).
/// The counters only limit what the explorer tries next (candidates.rs);
/// no transition, view or check reads them.  So a state whose counters are
/// all at most another's, equal otherwise, can do everything the other can
/// (the bounds are monotone), and reaches every violation the other
/// reaches at the same distance: the other is subsumed (see [`subsumes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) fp: u64,
    pub(crate) used: u64,
}

/// Whether a state with counters `a` subsumes one with counters `b` (equal
/// fingerprints): every 3-bit field of `a` at most that of `b`.  Fields are
/// at most [`USED_MAX`] (their top bit clear), so the per-field subtraction
/// of `a` from `b` with the top bit of every field set keeps that bit
/// exactly when `b >= a` there.
pub(crate) fn subsumes(a: u64, b: u64) -> bool {
    const HIGH: u64 = 0x4924_9249_2492_4924;
    ((b | HIGH) - a) & HIGH == HIGH
}

/// Finish a key: the doorbells and the counters of `per_thread` (in the
/// order given) go to `used`; or, when `exact` or one is too large to
/// compare, into the fingerprint (`used` 0: no subsumption).
fn finish_key(mut h: Words, per_thread: &[(u8, u8)], doorbells: u8, exact: bool) -> Key {
    let fits = doorbells <= USED_MAX && per_thread.iter().all(|&(c, p)| c <= USED_MAX && p <= USED_MAX);
    if exact || !fits {
        h.put(0xc0ff_ee00 | doorbells as u64);
        for &(c, p) in per_thread {
            h.put(c as u64 | (p as u64) << 8);
        }
        return Key {
            fp: h.finish(),
            used: 0,
        };
    }
    // 1 + 2 * 8 fields of 3 bits: 51 bits.
    let used = per_thread
        .iter()
        .enumerate()
        .fold(doorbells as u64, |u, (i, &(c, p))| {
            u | ((c | p << 3) as u64) << (6 * i + 3)
        });
    Key { fp: h.finish(), used }
}

/// The key of the whole state (threads and vcpus in place), read through
/// the masks `dead`.
pub(crate) fn plain_key(cfg: &Config, s: &State, dead: Dead, exact: bool) -> Key {
    let n = cfg.threads as usize;
    let mut h = Words::new();
    for (t, th) in s.threads[..n].iter().enumerate() {
        h.put(thread_word(
            th,
            dead.ipi(th, t),
            opt_idx(th.hstate.kvm_vcpu),
            opt_idx(th.running),
            th.hstate.ptid as u64,
        ));
    }
    let mut used = [(0, 0); MAX_SMT_THREADS];
    for (i, (v, u)) in s.vcpus[..n].iter().zip(used.iter_mut()).enumerate() {
        let v = dead.vcpu(*v, i);
        for w in vcpu_words(v, v.map_or(0, |v| v.thread_cpu)) {
            h.put(w);
        }
        *u = vcpu_used(v);
    }
    match &s.vcore {
        Some(vc) => {
            let runq = u64::from_le_bytes(vc.runq);
            for w in vcore_words(vc, 0xff, runq, opt_idx(vc.runner)) {
                h.put(w);
            }
        }
        None => h.put(u64::MAX),
    }
    h.put(globals_word(s, 0xff));
    finish_key(h, &used[..n], s.doorbells, exact)
}

/// `x` when it is at most `max` (a field of `bits` bits in a packed key).
fn small(x: u8, max: u8) -> Option<u64> {
    (x <= max).then_some(x as u64)
}

/// What a secondary thread t and its vcpu t look like, with every reference
/// to "t" made relative, so that threads can be compared across positions,
/// packed in the upper 48 bits of a word whose low 16 bits are the vcpu's
/// bound counters (cedes, prods): sorting such words orders the threads by
/// shape, then equal shapes by increasing counters.  None when the thread
/// does not have that shape (it refers to another thread's vcpu or ptid) or
/// a value is outside what the model produces (the caller then keys the
/// whole state as it is).
fn secondary_key(s: &State, t: usize, masks: &CoreMasks, dead: Dead) -> Option<u64> {
    let th = &s.threads[t];
    let me = t as u8;
    // 0 = none, 1 = itself; anything else breaks the symmetry.
    let rel = |v: Option<u8>| -> Option<u64> {
        match v {
            None => Some(0),
            Some(x) if x == me => Some(1),
            Some(_) => None,
        }
    };
    let h = &th.hstate;
    if h.ptid != 0 && h.ptid != me {
        return None;
    }
    let vc = s.vcore.as_ref()?;
    let bits = masks.bits(t);
    // 28 bits.
    let thread = (th.phase as u64)
        | rel(h.kvm_vcpu)? << 4
        | rel(th.running)? << 5
        | ((h.ptid == me) as u64) << 6
        | (h.kvm_vcore as u64) << 7
        | (dead.ipi(th, t) as u64) << 8
        | (th.late as u64) << 9
        | small(h.hwthread_req, 3)? << 10
        | small(h.hwthread_state, 3)? << 12
        | small(h.napping, 3)? << 14
        | small(h.in_guest, 7)? << 16
        | bits << 19;
    let Some(v) = dead.vcpu(s.vcpus[t], t) else {
        return Some(thread << 16);
    };
    if v.ptid != me {
        return None;
    }
    // vcpu->cpu is -1 or the core's cpu; thread_cpu -1 or the core's cpu + t.
    let pcpu = vc.pcpu as i32;
    let code = |x: i32| match x {
        -1 => Some(0u64),
        x if x == pcpu => Some(1),
        _ => None,
    };
    let thread_cpu = if v.thread_cpu >= 0 {
        v.thread_cpu - t as i32
    } else {
        -1
    };
    let trap = match v.trap {
        0 => 0,
        BOOK3S_INTERRUPT_HV_DECREMENTER => 1,
        BOOK3S_INTERRUPT_SYSCALL => 2,
        _ => return None,
    };
    // 11 bits.
    let vcpu = 1
        | small(v.state, 3)? << 1
        | small(v.ceded, 1)? << 3
        | small(v.prodded, 1)? << 4
        | (v.started as u64) << 5
        | code(v.cpu)? << 6
        | code(thread_cpu)? << 7
        | trap << 8;
    Some((thread | vcpu << 28) << 16 | (v.cedes as u64) << 8 | v.prods as u64)
}

/// What a state's successors' keys are computed next to, apart from the
/// state itself: its dead values, the per-thread bits of its vcore and core
/// ([`CoreMasks`]) and its secondary keys (None when the search is not
/// symmetric or the state has no symmetric shape).  Computed once, when the
/// state is found new, and kept with it in the frontier until it is
/// expanded: a state's secondary keys come from its parent's (an event
/// changes one or two threads; the others are compared, not recomputed).
#[derive(Clone, Copy)]
pub(crate) struct Carried {
    pub(crate) dead: Dead,
    masks: CoreMasks,
    pub(crate) keys: Option<[u64; MAX_SMT_THREADS]>,
}

impl Carried {
    /// Those of `s` (dead values `dead`), computed next to `base` (the
    /// parent, whose entries `touched` may differ from `s`'s: see
    /// [`touched`]) when given, else from scratch.
    pub(crate) fn of(
        cfg: &Config,
        s: &State,
        chosen: u8,
        dead: Dead,
        symmetric: bool,
        base: Option<&Base>,
        touched: Option<u8>,
    ) -> Carried {
        let masks = CoreMasks::of(s, chosen, dead);
        let keys = if symmetric {
            secondary_keys_with(cfg, s, &masks, dead, base, touched)
        } else {
            None
        };
        Carried { dead, masks, keys }
    }
}

/// The state a successor's key is computed next to (its parent), with the
/// parent's dead values and secondary keys (see [`Carried`]).
#[derive(Clone, Copy)]
pub(crate) struct Base<'a> {
    pub(crate) s: &'a State,
    pub(crate) dead: Dead,
    /// None when the parent has no symmetric shape.
    pub(crate) keys: Option<[u64; MAX_SMT_THREADS]>,
    masks: CoreMasks,
}

impl<'a> Base<'a> {
    /// `s` with what was computed for it when it was found ([`Carried`]).
    pub(crate) fn new(s: &'a State, c: &Carried) -> Self {
        Base {
            s,
            dead: c.dead,
            keys: c.keys,
            masks: c.masks,
        }
    }
}

/// The per-thread bits of a state that a secondary key reads from the
/// vcore and the core (a bitmap per field, bit t for thread t), and the
/// dead-value masks, computed once per state.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct CoreMasks([u8; 13]);

impl CoreMasks {
    fn of(s: &State, chosen: u8, dead: Dead) -> CoreMasks {
        let vc = s.vcore.as_ref();
        let runq = vc.map_or(0, |vc| {
            vc.runnable()
                .iter()
                .fold(0u8, |m, &i| m | 1u8.wrapping_shl(i as u32))
        });
        let runner = vc
            .and_then(|vc| vc.runner)
            .map_or(0, |r| 1u8.wrapping_shl(r as u32));
        CoreMasks([
            vc.map_or(0, |vc| vc.entered),
            vc.map_or(0, |vc| vc.exited),
            vc.map_or(0, |vc| vc.napping_threads),
            runq,
            runner,
            chosen,
            s.dpdes,
            vc.map_or(0, |vc| vc.dpdes),
            s.db_sent,
            dead.ipi,
            dead.prodded,
            // Core-wide: every thread's key reads it.
            if dead.trap { 0xff } else { 0 },
            // The IPI flags as they are: an event of one thread sets others'
            // (see `touched`).
            s.threads
                .iter()
                .enumerate()
                .fold(0u8, |m, (t, th)| m | (th.ipi as u8) << t),
        ])
    }

    /// Thread t's bits of the first nine bitmaps (entered, exited,
    /// napping_threads, runnable, runner, chosen, DPDES, vc->dpdes, sent).
    fn bits(&self, t: usize) -> u64 {
        self.0[..9]
            .iter()
            .enumerate()
            .fold(0, |acc, (k, &m)| acc | (((m >> t) & 1) as u64) << k)
    }

    /// The threads (bit per thread) whose bits differ between two states.
    fn changed(&self, other: &CoreMasks) -> u8 {
        self.0.iter().zip(&other.0).fold(0, |acc, (a, b)| acc | (a ^ b))
    }
}

/// The threads and vcpus (bit per index) whose own entries (`threads[i]`,
/// `vcpus[i]`) event `e` may have changed from `parent` to `child`, the
/// IPI flags and the per-thread bits of the vcore and the core apart (the
/// keys compare those as [`CoreMasks`]); None when the event may change any
/// (the keys then compare every entry).  A thread's own step changes that
/// thread and the vcpu it runs or holds (book3s_hv_rmhandlers.S: it writes
/// its own PACA and vcpu, and other threads only through IPIs, the entry
/// and exit words, napping_threads and DPDES); thread 0's partition
/// switches change thread 0; starting a vcpu (kvmppc_start_thread, or
/// kvmppc_run_vcpu for a latecomer) changes that vcpu and the thread of its
/// ptid; H_PROD changes its vcpu and IPI flags; a
/// msgsndp, a doorbell's taking and VCORE_EXIT_REQ change only DPDES, the
/// record of sent doorbells, the vcore and IPI flags.
/// Debug builds check this on every transition (see [`secondary_keys`]).
pub(crate) fn touched(e: &Event, parent: &State, child: &State) -> Option<u8> {
    match *e {
        Event::Enter { thread }
        | Event::GuestEntry { thread }
        | Event::Cede { thread }
        | Event::Wake { thread }
        | Event::Exit { thread, .. }
        | Event::Tail { thread }
        | Event::ReturnToIdle { thread } => {
            let t = thread as usize;
            let vcpus = [parent, child].into_iter().flat_map(|s| {
                let th = &s.threads[t];
                [th.running, th.hstate.kvm_vcpu].into_iter().flatten()
            });
            Some(vcpus.fold(1u8 << t, |m, v| m | 1u8.wrapping_shl(v as u32)))
        }
        Event::SwitchIn | Event::SwitchOut => Some(1),
        // kvmppc_start_thread, and kvmppc_run_vcpu (a latecomer is started
        // at once): the vcpu and the thread of its ptid.
        Event::StartThread { vcpu } | Event::Runnable { vcpu } => {
            let i = vcpu.checked_sub(vc_first(parent))?;
            let ptid = child.vcpus.get(i as usize).copied().flatten()?.ptid;
            Some(1u8.checked_shl(i)? | 1u8.checked_shl(ptid as u32)?)
        }
        // (An id outside the vcore makes the event illegal: None is safe.)
        Event::Prod { vcpu } => vcpu
            .checked_sub(vc_first(parent))
            .and_then(|i| 1u8.checked_shl(i)),
        Event::Doorbell { .. } | Event::TakeDoorbell { .. } | Event::ExitRequest => Some(0),
        _ => None,
    }
}

/// The secondaries' keys of `s` (threads 1..n; see [`secondary_key`]),
/// reusing those of `base` for the threads whose inputs did not change:
/// their bits in the [`CoreMasks`] are the same and, unless `touched`
/// (from [`touched`]) rules them out, their entries compare equal.  None
/// when `s` has no symmetric shape.
pub(crate) fn secondary_keys(
    cfg: &Config,
    s: &State,
    chosen: u8,
    dead: Dead,
    base: Option<&Base>,
    touched: Option<u8>,
) -> Option<[u64; MAX_SMT_THREADS]> {
    secondary_keys_with(cfg, s, &CoreMasks::of(s, chosen, dead), dead, base, touched)
}

/// [`secondary_keys`] with the state's [`CoreMasks`] already computed.
fn secondary_keys_with(
    cfg: &Config,
    s: &State,
    masks: &CoreMasks,
    dead: Dead,
    base: Option<&Base>,
    touched: Option<u8>,
) -> Option<[u64; MAX_SMT_THREADS]> {
    let n = cfg.threads as usize;
    let mut keys = [0u64; MAX_SMT_THREADS];
    // Threads whose key must be computed (all, without a usable base).
    let mut todo: u8 = 0xff;
    if let Some((b, bkeys)) = base.and_then(|b| Some((b, b.keys?))) {
        debug_assert!(b.masks == CoreMasks::of(b.s, masks.0[5], b.dead));
        let same_core = s.vcore.map(|vc| vc.pcpu) == b.s.vcore.map(|vc| vc.pcpu);
        if same_core && s.vcore.is_some() {
            todo = masks.changed(&b.masks);
            let same = |t: usize| s.threads[t] == b.s.threads[t] && s.vcpus[t] == b.s.vcpus[t];
            for t in 1..n {
                let unchanged = match touched {
                    Some(m) => m & (1 << t) == 0,
                    None => same(t),
                };
                if todo & (1 << t) == 0 && unchanged {
                    keys[t] = bkeys[t];
                } else {
                    todo |= 1 << t;
                }
            }
            debug_assert!(
                (1..n).all(|t| todo & (1 << t) != 0 || same(t)),
                "an event changed a thread that `touched` rules out"
            );
        }
    }
    for (t, slot) in keys[..n].iter_mut().enumerate().skip(1) {
        if todo & (1 << t) != 0 {
            *slot = secondary_key(s, t, masks, dead)?;
        }
    }
    Some(keys)
}

/// The secondaries (bit per thread) that have a twin before them: an
/// earlier secondary with the same key, counters included (`keys` from
/// [`secondary_keys`], `n` threads).  Swapping a thread with its twin (and
/// their vcpus) maps the state to one of the same class, so an event of
/// the one leads to the class the same event of the other leads to: only
/// the first of twins need move (see `Search::expand`).
pub(crate) fn twins(keys: &[u64; MAX_SMT_THREADS], n: usize) -> u8 {
    let mut out = 0u8;
    for t in 2..n {
        if keys[1..t].contains(&keys[t]) {
            out |= 1 << t;
        }
    }
    out
}

/// The key of the state's symmetry class, read through the masks `dead`:
/// thread 0 and vcpu 0 as they are, the secondaries (each with its own
/// vcpu) as a sorted multiset, their counters in that order (equal
/// secondaries by increasing counters, which pairs them up soundly for
/// [`subsumes`]).  Sound for seed/modern, where thread t only ever holds
/// vcpu t and every rule treats the secondaries alike; falls back to the
/// plain key when a state does not have that shape.  `keys`: the state's
/// [`secondary_keys`], if already known.
pub(crate) fn symmetric_key(
    cfg: &Config,
    s: &State,
    chosen: u8,
    dead: Dead,
    keys: Option<[u64; MAX_SMT_THREADS]>,
    exact: bool,
) -> Key {
    let n = cfg.threads as usize;
    let Some(mut keys) = keys.or_else(|| secondary_keys(cfg, s, chosen, dead, None, None)) else {
        return plain_key(cfg, s, dead, exact);
    };
    keys[1..n].sort_unstable();
    let mut h = Words::new();
    // Tag: a symmetric fingerprint never equals a plain one by construction.
    h.put(0x5eed);
    let th0 = &s.threads[0];
    h.put(thread_word(
        th0,
        dead.ipi(th0, 0),
        opt_idx(th0.hstate.kvm_vcpu),
        opt_idx(th0.running),
        th0.hstate.ptid as u64,
    ));
    let v0 = dead.vcpu(s.vcpus[0], 0);
    for w in vcpu_words(v0, v0.map_or(0, |v| v.thread_cpu)) {
        h.put(w);
    }
    match &s.vcore {
        Some(vc) => {
            // Only thread 0's bits; the secondaries' are in their keys.
            let runner0 = match vc.runner {
                None => 0,
                Some(0) => 1,
                Some(_) => 2,
            };
            let runq0 = vc.is_runnable(0) as u64;
            for w in vcore_words(vc, 1, runq0, runner0) {
                h.put(w);
            }
        }
        None => h.put(u64::MAX),
    }
    h.put(globals_word(s, 1) | ((chosen & 1) as u64) << 56);
    let mut used = [(0, 0); MAX_SMT_THREADS];
    used[0] = vcpu_used(v0);
    for (k, u) in keys[1..n].iter().zip(used[1..n].iter_mut()) {
        h.put(k >> 16);
        *u = ((k >> 8) as u8, *k as u8);
    }
    finish_key(h, &used[..n], s.doorbells, exact)
}
