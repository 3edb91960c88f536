//! From physical stores to field changes.  Every watched field is one small
//! region of physical memory; a store is spliced into the regions it
//! overlaps (any size, any alignment, real or virtual mode: the address is
//! physical), and each region whose value changed gives one [`Change`].
//! Pointers are followed as they are stored: `paca_ptrs` -> the array ->
//! each PACA's `kvm_hstate` -> the vcores and vcpus it points at.

use std::collections::BTreeMap;

use super::field::{CField, FieldRef, HField, VField};
use super::layout::{Slot, WatchLayout};

/// The kernel's linear map (`PAGE_OFFSET` 0xc000000000000000 on ppc64):
/// kernel virtual address -> physical.  HV real mode ignores the top four
/// bits of an effective address the same way.
pub fn phys(va: u64) -> u64 {
    va & 0x0fff_ffff_ffff_ffff
}

/// `PAGE_OFFSET` (arch/powerpc/include/asm/page.h, ppc64): physical ->
/// kernel virtual address in the linear map.
pub const LINEAR_MAP: u64 = 0xc000_0000_0000_0000;

/// Reads guest memory at a kernel virtual address (the plugin's
/// `qemu_plugin_read_memory_vaddr`), used once when a newly found object
/// starts being watched.  `false` = unreadable.
pub trait Memory {
    fn read(&mut self, vaddr: u64, buf: &mut [u8]) -> bool;
}

/// No memory: newly watched objects start from zero (replay, tests).
pub struct NoMemory;

impl Memory for NoMemory {
    fn read(&mut self, _vaddr: u64, _buf: &mut [u8]) -> bool {
        false
    }
}

/// One field whose value changed; `old == None` when it was just found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub field: FieldRef,
    pub old: Option<u64>,
    pub new: u64,
}

#[derive(Clone, Copy, Debug)]
struct Region {
    size: u8,
    signed: bool,
    field: FieldRef,
    /// Sign-extended for signed fields.
    value: u64,
}

/// How many vcores / vcpus stay watched after no PACA points at them.
const MAX_VCORES: usize = 16;
const MAX_VCPUS: usize = 64;

/// The set of watched regions, keyed by physical start address.
pub struct Decoder {
    layout: WatchLayout,
    threads: usize,
    regions: BTreeMap<u64, Region>,
    /// Sorted physical page numbers (4 KiB) holding a region: the cheap filter.
    pages: Vec<u64>,
    lo: u64,
    hi: u64,
    /// Bumped whenever the watched pages change.
    generation: u64,
    /// Watched objects in the order they were found (oldest first).
    vcores: Vec<u64>,
    vcpus: Vec<u64>,
}

fn extend(raw: u64, size: u8, signed: bool) -> u64 {
    let bits = u32::from(size) * 8;
    if bits >= 64 {
        return raw;
    }
    let raw = raw & ((1u64 << bits) - 1);
    if signed && raw >> (bits - 1) & 1 == 1 {
        raw | !((1u64 << bits) - 1)
    } else {
        raw
    }
}

impl Decoder {
    pub fn new(layout: WatchLayout, threads: usize) -> Self {
        let mut d = Decoder {
            layout,
            threads,
            regions: BTreeMap::new(),
            pages: Vec::new(),
            lo: u64::MAX,
            hi: 0,
            generation: 0,
            vcores: Vec::new(),
            vcpus: Vec::new(),
        };
        let pa = phys(d.layout.paca_ptrs);
        d.regions.insert(
            pa,
            Region {
                size: 8,
                signed: false,
                field: FieldRef::PacaPtrs,
                value: 0,
            },
        );
        d.reindex();
        d
    }

    pub fn layout(&self) -> &WatchLayout {
        &self.layout
    }

    /// Number of watched regions (fields).
    pub fn watched(&self) -> usize {
        self.regions.len()
    }

    /// The cheap test run on every store: does `[pa, pa+len)` touch a
    /// watched page at all?
    #[inline]
    pub fn may_watch(&self, pa: u64, len: u64) -> bool {
        if pa > self.hi || pa + len <= self.lo {
            return false;
        }
        let (a, b) = (pa >> 12, (pa + len - 1) >> 12);
        self.pages.binary_search(&a).is_ok() || (a != b && self.pages.binary_search(&b).is_ok())
    }

    /// The watched physical page numbers (4 KiB pages), sorted.
    pub fn pages(&self) -> &[u64] {
        &self.pages
    }

    /// Changes whenever [`Decoder::pages`] does.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn reindex(&mut self) {
        self.generation += 1;
        self.pages.clear();
        self.lo = u64::MAX;
        self.hi = 0;
        for (&start, r) in &self.regions {
            let end = start + u64::from(r.size) - 1;
            self.pages.push(start >> 12);
            self.pages.push(end >> 12);
            self.lo = self.lo.min(start);
            self.hi = self.hi.max(end);
        }
        self.pages.sort_unstable();
        self.pages.dedup();
    }

    /// Whether `[pa, pa+len)` overlaps a watched field (the exact test
    /// after [`Decoder::may_watch`]).
    pub fn overlaps(&self, pa: u64, len: u64) -> bool {
        self.regions
            .range(pa.saturating_sub(7)..pa + len)
            .any(|(s, r)| *s + u64::from(r.size) > pa)
    }

    /// Which of `fields` memory already holds another value for than the
    /// shadow: a store to them executed whose callback has not run yet
    /// (under multi-threaded TCG a memory callback runs after its store, on
    /// the storing vCPU's thread, so another thread can act on the stored
    /// value first).  Unreadable or unwatched fields count as settled.
    pub fn behind(&self, fields: &[FieldRef], mem: &mut dyn Memory) -> Vec<FieldRef> {
        self.regions
            .iter()
            .filter(|(_, r)| fields.contains(&r.field))
            .filter(|(&pa, r)| {
                let mut buf = [0u8; 8];
                let n = usize::from(r.size);
                mem.read(pa | LINEAR_MAP, &mut buf[..n])
                    && extend(u64::from_le_bytes(buf), r.size, r.signed) != r.value
            })
            .map(|(_, r)| r.field)
            .collect()
    }

    /// Apply a store of `bytes` (in memory order) at physical `pa`.
    pub fn store(&mut self, pa: u64, bytes: &[u8], mem: &mut dyn Memory) -> Vec<Change> {
        let mut out = Vec::new();
        let end = pa + bytes.len() as u64;
        let hits: Vec<u64> = self
            .regions
            .range(pa.saturating_sub(7)..end)
            .filter(|(s, r)| **s + u64::from(r.size) > pa)
            .map(|(s, _)| *s)
            .collect();
        for start in hits {
            let Some(r) = self.regions.get_mut(&start) else {
                continue;
            };
            let mut le = r.value.to_le_bytes();
            for (k, b) in le.iter_mut().enumerate().take(usize::from(r.size)) {
                let at = start + k as u64;
                if at >= pa && at < end {
                    *b = bytes[(at - pa) as usize];
                }
            }
            let new = extend(u64::from_le_bytes(le), r.size, r.signed);
            if new != r.value {
                let old = r.value;
                r.value = new;
                out.push(Change {
                    field: r.field,
                    old: Some(old),
                    new,
                });
            }
        }
        let mut followed = Vec::new();
        for c in &out {
            followed.extend(self.follow(*c, mem));
        }
        out.extend(followed);
        out
    }

    /// Start/stop watching what a changed pointer points at.
    fn follow(&mut self, c: Change, mem: &mut dyn Memory) -> Vec<Change> {
        let mut out = Vec::new();
        match c.field {
            FieldRef::PacaPtrs => {
                self.regions
                    .retain(|_, r| !matches!(r.field, FieldRef::Paca(_) | FieldRef::Hstate(..)));
                if c.new != 0 {
                    for i in 0..self.threads {
                        let f = FieldRef::Paca(i);
                        out.extend(self.watch(c.new + 8 * i as u64, 8, false, f, mem));
                    }
                }
            }
            FieldRef::Paca(i) => {
                self.regions
                    .retain(|_, r| !matches!(r.field, FieldRef::Hstate(t, _) if t == i));
                if c.new != 0 {
                    let base = c.new + self.layout.hstate_offset;
                    let slots: Vec<Slot<HField>> = self.layout.hstate.clone();
                    for s in slots {
                        let f = FieldRef::Hstate(i, s.field);
                        out.extend(self.watch(base + s.offset, s.size, s.signed, f, mem));
                    }
                }
            }
            FieldRef::Hstate(_, HField::KvmVcore) if c.new != 0 => out.extend(self.watch_vcore(c.new, mem)),
            FieldRef::Hstate(_, HField::KvmVcpu) | FieldRef::Vcore(_, VField::Runner) if c.new != 0 => {
                out.extend(self.watch_vcpu(c.new, mem))
            }
            _ => {}
        }
        if !out.is_empty() || matches!(c.field, FieldRef::PacaPtrs | FieldRef::Paca(_)) {
            self.reindex();
        }
        let mut more = Vec::new();
        for d in &out {
            more.extend(self.follow(*d, mem));
        }
        out.extend(more);
        out
    }

    fn watch_vcore(&mut self, addr: u64, mem: &mut dyn Memory) -> Vec<Change> {
        if let Some(k) = self.vcores.iter().position(|&a| a == addr) {
            let a = self.vcores.remove(k);
            self.vcores.push(a);
            return Vec::new();
        }
        if self.vcores.len() >= MAX_VCORES {
            let gone = self.vcores.remove(0);
            self.regions
                .retain(|_, r| !matches!(r.field, FieldRef::Vcore(a, _) if a == gone));
        }
        self.vcores.push(addr);
        let slots: Vec<Slot<VField>> = self.layout.vcore.clone();
        let mut out = Vec::new();
        for s in slots {
            let f = FieldRef::Vcore(addr, s.field);
            out.extend(self.watch(addr + s.offset, s.size, s.signed, f, mem));
        }
        out
    }

    fn watch_vcpu(&mut self, addr: u64, mem: &mut dyn Memory) -> Vec<Change> {
        if let Some(k) = self.vcpus.iter().position(|&a| a == addr) {
            let a = self.vcpus.remove(k);
            self.vcpus.push(a);
            return Vec::new();
        }
        if self.vcpus.len() >= MAX_VCPUS {
            let gone = self.vcpus.remove(0);
            self.regions
                .retain(|_, r| !matches!(r.field, FieldRef::Vcpu(a, _) if a == gone));
        }
        self.vcpus.push(addr);
        let slots: Vec<Slot<CField>> = self.layout.vcpu.clone();
        let mut out = Vec::new();
        for s in slots {
            let f = FieldRef::Vcpu(addr, s.field);
            out.extend(self.watch(addr + s.offset, s.size, s.signed, f, mem));
        }
        out
    }

    /// Watch one field at kernel virtual address `va`, reading its current
    /// value; the change reported has `old: None`.
    fn watch(
        &mut self,
        va: u64,
        size: u8,
        signed: bool,
        field: FieldRef,
        mem: &mut dyn Memory,
    ) -> Option<Change> {
        let mut buf = [0u8; 8];
        if !mem.read(va, &mut buf[..usize::from(size)]) {
            buf = [0u8; 8];
        }
        let value = extend(u64::from_le_bytes(buf), size, signed);
        self.regions.insert(
            phys(va),
            Region {
                size,
                signed,
                field,
                value,
            },
        );
        Some(Change {
            field,
            old: None,
            new: value,
        })
    }
}
