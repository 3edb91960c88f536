//! Reading a snapshot: the entry/exit word decoded per variant, and the
//! lookups every check uses (by address, by cpu), as maps when the snapshot
//! is large so that 100k threads or vcpus stay linear.

use std::collections::HashMap;

use crate::consts::*;
use crate::view::{Hstate, Snapshot, Thread, Vcore, Vcpu};

/// The vcore's entry/exit word, decoded for the variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryExit {
    /// Modern `entry_exit_map`: entered ptids, exiting ptids, VCORE_EXIT_REQ.
    Map {
        raw: u32,
        entry: u32,
        exit: u32,
        req: bool,
    },
    /// Seed/prepatch `entry_exit_count`: number entered, number exiting.
    Count {
        raw: u32,
        entry: u32,
        exit: u32,
    },
    Unknown,
}

impl EntryExit {
    pub(crate) fn of(vc: &Vcore, variant: Variant) -> Self {
        let map = |raw: u32| EntryExit::Map {
            raw,
            entry: raw & 0xff,
            exit: (raw >> 8) & 0xff,
            req: raw & VCORE_EXIT_REQ != 0,
        };
        let count = |raw: u32| EntryExit::Count {
            raw,
            entry: raw & 0xff,
            exit: (raw >> 8) & 0xff,
        };
        match (
            vc.entry_exit_map,
            vc.entry_exit_count,
            variant.has_entry_exit_map(),
        ) {
            (Some(m), _, true) => map(m),
            (_, Some(c), false) => count(c),
            (Some(m), None, false) => map(m),
            (None, Some(c), true) => count(c),
            (None, None, _) => EntryExit::Unknown,
        }
    }

    /// Number of threads counted as entered.
    pub(crate) fn entered(&self) -> u32 {
        match *self {
            EntryExit::Map { entry, .. } => entry.count_ones(),
            EntryExit::Count { entry, .. } => entry,
            EntryExit::Unknown => 0,
        }
    }

    /// The asm's "someone is exiting" test (`word >= 0x100`).
    pub(crate) fn exit_started(&self) -> bool {
        match *self {
            EntryExit::Map { raw, .. } | EntryExit::Count { raw, .. } => raw >= VCORE_EXIT_COUNT_ONE,
            EntryExit::Unknown => false,
        }
    }

    pub(crate) fn key(&self) -> &'static str {
        match self {
            EntryExit::Map { .. } => "entry_exit_map",
            _ => "entry_exit_count",
        }
    }

    pub(crate) fn raw(&self) -> u32 {
        match *self {
            EntryExit::Map { raw, .. } | EntryExit::Count { raw, .. } => raw,
            EntryExit::Unknown => 0,
        }
    }
}

/// Above this many objects of a kind, lookups go through a hash map built
/// once per snapshot; below, a scan is faster and allocates nothing.
const MAP_ABOVE: usize = 32;

/// Index of the first object with each key (the first one wins, as a scan
/// would find it).
fn index<T>(items: &[T], key: impl Fn(&T) -> u64) -> Option<HashMap<u64, usize>> {
    if items.len() <= MAP_ABOVE {
        return None;
    }
    let mut map = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        map.entry(key(item)).or_insert(i);
    }
    Some(map)
}

pub(crate) struct Ctx<'a> {
    pub s: &'a Snapshot,
    pub tpc: u32,
    pub states: &'static VcoreStates,
    /// Whether this variant numbers threads by the seed rule (ptid fixed at
    /// creation, PACA ptid = physical thread); false for prepatch.
    pub aligned: bool,
    vcores_by_addr: Option<HashMap<u64, usize>>,
    vcpus_by_addr: Option<HashMap<u64, usize>>,
    threads_by_cpu: Option<HashMap<u64, usize>>,
    /// PACA kvm_vcpu values -> first thread index holding it (large snapshots).
    held_by: Option<HashMap<u64, usize>>,
    /// vcore address -> (vcpus pointing at it, RUNNABLE among them, all have
    /// a state, highest ptid), for large snapshots.
    members: Option<HashMap<u64, Members>>,
    /// The last [`Ctx::members`] scanned (small snapshots): each vcore's
    /// checks ask for it several times.
    last_members: std::cell::Cell<Option<(u64, Members)>>,
}

/// The vcpus pointing at one vcore.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Members {
    pub count: u32,
    pub runnable: u32,
    pub all_states: bool,
    pub max_ptid: u32,
    /// Vcpus with a ptid other than 0 (the ones a secondary thread runs),
    /// and those of them RUNNABLE.
    pub secondary: u32,
    pub secondary_runnable: u32,
}

impl Members {
    fn add(&mut self, v: &Vcpu) {
        if self.count == 0 {
            self.all_states = true;
        }
        self.count += 1;
        match v.state {
            Some(KVMPPC_VCPU_RUNNABLE) => {
                self.runnable += 1;
                self.secondary_runnable += u32::from(v.ptid != 0);
            }
            Some(_) => {}
            None => self.all_states = false,
        }
        self.max_ptid = self.max_ptid.max(v.ptid as u32);
        self.secondary += u32::from(v.ptid != 0);
    }
}

impl<'a> Ctx<'a> {
    pub fn new(s: &'a Snapshot) -> Self {
        let members = (s.vcpus.len() > MAP_ABOVE).then(|| {
            let mut m: HashMap<u64, Members> = HashMap::new();
            for v in &s.vcpus {
                m.entry(v.vcore).or_default().add(v);
            }
            m
        });
        Ctx {
            s,
            tpc: s.threads_per_core.clamp(1, MAX_SMT_THREADS as u32),
            states: s.variant.vcore_states(),
            aligned: s.variant != Variant::Prepatch,
            vcores_by_addr: index(&s.vcores, |v| v.addr),
            vcpus_by_addr: index(&s.vcpus, |v| v.addr),
            threads_by_cpu: index(&s.threads, |t| t.cpu as u64),
            held_by: index(&s.threads, |t| t.kvm_hstate.kvm_vcpu),
            members,
            last_members: std::cell::Cell::new(None),
        }
    }

    pub fn vcore(&self, addr: u64) -> Option<(usize, &'a Vcore)> {
        if addr == 0 {
            return None;
        }
        match &self.vcores_by_addr {
            Some(m) => m.get(&addr).map(|&i| (i, &self.s.vcores[i])),
            None => self.s.vcores.iter().enumerate().find(|(_, v)| v.addr == addr),
        }
    }

    pub fn vcpu(&self, addr: u64) -> Option<(usize, &'a Vcpu)> {
        if addr == 0 {
            return None;
        }
        match &self.vcpus_by_addr {
            Some(m) => m.get(&addr).map(|&i| (i, &self.s.vcpus[i])),
            None => self.s.vcpus.iter().enumerate().find(|(_, v)| v.addr == addr),
        }
    }

    pub fn thread_at_cpu(&self, cpu: u64) -> Option<(usize, &'a Thread)> {
        match &self.threads_by_cpu {
            Some(m) => m.get(&cpu).map(|&i| (i, &self.s.threads[i])),
            None => self
                .s
                .threads
                .iter()
                .enumerate()
                .find(|(_, t)| t.cpu as u64 == cpu),
        }
    }

    /// The first thread whose PACA holds vcpu `addr` (non-zero).
    pub fn holder(&self, addr: u64) -> Option<usize> {
        match &self.held_by {
            Some(m) => m.get(&addr).copied(),
            None => self.s.threads.iter().position(|t| t.kvm_hstate.kvm_vcpu == addr),
        }
    }

    /// The vcpus pointing at vcore `addr`.
    pub fn members(&self, addr: u64) -> Members {
        match &self.members {
            Some(m) => m.get(&addr).copied().unwrap_or_default(),
            None => match self.last_members.get() {
                Some((a, m)) if a == addr => m,
                _ => {
                    let mut m = Members::default();
                    for v in self.s.vcpus.iter().filter(|v| v.vcore == addr) {
                        m.add(v);
                    }
                    self.last_members.set(Some((addr, m)));
                    m
                }
            },
        }
    }

    /// The vcore a thread takes part in: its kvm_vcore, else its vcpu's vcore.
    pub fn vcore_of_thread(&self, h: &Hstate) -> Option<(usize, &'a Vcore)> {
        self.vcore(h.kvm_vcore)
            .or_else(|| self.vcpu(h.kvm_vcpu).and_then(|(_, v)| self.vcore(v.vcore)))
    }

    /// STARTING (seed), RUNNING, EXITING, and PIGGYBACK (modern): from the
    /// start of kvmppc_run_core's thread setup to the end of the run.
    pub fn in_run(&self, state: u8) -> bool {
        let st = self.states;
        state == st.running
            || state == st.exiting
            || Some(state) == st.starting
            || Some(state) == st.piggyback
    }

    /// Offsets of pcpu within a core that a vcore may run at: thread 0, or on
    /// a modern 8-thread core dynamically split, subcore_thread_map {0,4,2,6}
    /// (a subcore at 4 holds at most 4 threads, at 2/6 at most 2).
    pub fn pcpu_offset_ok(&self, off: u32, num_threads: u32) -> bool {
        if off == 0 {
            return true;
        }
        self.s.variant == Variant::Modern
            && self.tpc == 8
            && ((off == 4 && num_threads <= 4) || ((off == 2 || off == 6) && num_threads <= 2))
    }

    /// PACA ptid values a thread at core index `i` may hold, stale or not:
    /// kvmppc_start_thread always writes `cpu - vc->pcpu` into the PACA of
    /// `cpu`, and a PACA never written holds 0.
    pub fn hstate_ptid_ok(&self, i: usize, ptid: u8) -> bool {
        let i = i as u32;
        let p = ptid as u32;
        if p == 0 || p == i {
            return true;
        }
        // Modern dynamic split of an 8-thread core: ptid is the index within
        // the subcore (4 or 2 threads).
        self.s.variant == Variant::Modern && self.tpc == 8 && (p == i % 4 || p == i % 2)
    }

    /// The PACA ptid of thread `i` of a core once kvmppc_start_thread stored it
    /// (`cpu - vc->pcpu`): its index in the core, or, when a POWER8 8-thread core
    /// is dynamically split (kvmppc_run_core, subcore_thread_map), in its subcore
    /// of 4 or 2 threads.
    pub fn started_ptid_ok(&self, i: usize, ptid: u8) -> bool {
        let (i, p) = (i as u32, ptid as u32);
        p == i || (self.s.variant == Variant::Modern && self.tpc == 8 && (p == i % 4 || p == i % 2))
    }

    /// A thread's number within its core: Linux numbers the threads of a
    /// core consecutively from a multiple of threads_per_core
    /// (cpu_thread_in_core), so this holds even if a reader skipped a thread.
    pub fn core_thread(&self, t: &Thread) -> usize {
        (t.cpu % self.tpc) as usize
    }
}

pub(crate) fn p(path: &str, i: usize, field: &str) -> String {
    format!("{path}[{i}].{field}")
}

pub(crate) fn hs(i: usize, field: &str) -> String {
    format!("threads[{i}].kvm_hstate.{field}")
}

/// A `kvm_hstate` field a violation names.
#[derive(Clone, Copy, Debug)]
pub(crate) enum HsField {
    InGuest,
    Napping,
    HwthreadReq,
    HwthreadState,
    Ptid,
    KvmVcpu,
    KvmVcore,
}

impl super::Violation {
    /// Name thread `i`'s `kvm_hstate` `fields` with their values in `h`
    /// (the pointers in hex): each field's path and value written once,
    /// here, for every check that names them.
    pub(crate) fn hstate(self, i: usize, h: &Hstate, fields: &[HsField]) -> Self {
        fields.iter().fold(self, |v, f| match f {
            HsField::InGuest => v.field(hs(i, "in_guest"), h.in_guest),
            HsField::Napping => v.field(hs(i, "napping"), h.napping),
            HsField::HwthreadReq => v.field(hs(i, "hwthread_req"), h.hwthread_req),
            HsField::HwthreadState => v.field(hs(i, "hwthread_state"), h.hwthread_state),
            HsField::Ptid => v.field(hs(i, "ptid"), h.ptid),
            HsField::KvmVcpu => v.hex(hs(i, "kvm_vcpu"), h.kvm_vcpu),
            HsField::KvmVcore => v.hex(hs(i, "kvm_vcore"), h.kvm_vcore),
        })
    }
}
