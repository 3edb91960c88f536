//! The logical shadow: what the kernel's scheduler state is after every
//! change, kept as the checker's own [`Snapshot`] types so that the
//! snapshot invariants run on it directly (no JSON in between).

use std::collections::BTreeMap;

use crate::consts::Variant;
use crate::view::{Hstate, Snapshot, Thread, Vcore, Vcpu, TB_OFFSET_NOT_READ};

use super::field::{CField, FieldRef, HField, Reg, VField};

/// Per-thread registers as last seen.  `fresh` is false once another
/// thread executed an `mtspr` to LPIDR/SDR1 after this value was seen: on
/// POWER8 those are one register per core, so this thread's copy may have
/// changed without a store of its own (and on a QEMU that does not share
/// them, it did not) — only a fresh value is compared.  A value read while
/// another thread's `mtspr` is still in flight (see [`Inflight`]) and equal
/// to what that thread held before it stays pending (not fresh).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    pub lpidr: Option<u64>,
    pub sdr1: Option<u64>,
    pub dpdes: Option<u64>,
    pub lpidr_fresh: bool,
    pub sdr1_fresh: bool,
    /// Last doorbell target sent by this thread (msgsnd: PIR, msgsndp: TIR).
    pub msgsnd: Option<u64>,
    pub msgsndp: Option<u64>,
}

/// An `mtspr` to LPIDR or SDR1 whose execution is not yet proven.
///
/// The plugin sees an `mtspr` from an instruction callback, which QEMU runs
/// *before* the instruction (plugin API: `qemu_plugin_register_vcpu_insn_exec_cb`);
/// the write itself is `helper_store_lpidr` / `helper_store_sdr1`
/// (target/ppc/misc_helper.c), which on a core in LPAR-per-core mode writes
/// every sibling's copy at once.  Until the writer's next event (program
/// order: its next callback runs after the `mtspr` executed) a sibling can
/// still read the value the core held before: that read is pending, not a
/// disagreement.  Any other value (a third one, or the old one after the
/// writer moved on) is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inflight {
    /// The writing hardware thread.
    pub writer: usize,
    /// What the writer held before (the core's value, when shared).
    pub before: Option<u64>,
}

/// Why an event's `tb` cannot be put on the host's timebase
/// ([`CoreState::host_tb`]): the log has no timebase offset for the vcore.
pub const TRACE_TB_OFFSET_NOT_READ: &str = "the event log does not carry the timebase offset of thread 0's vcore (vcores[].tb_offset; a log from a plugin that did not watch it): whether the TB register held the guest's timebase is not known";

/// The whole core as the shadow knows it.
#[derive(Clone, Debug)]
pub struct CoreState {
    pub variant: Variant,
    pub threads_per_core: usize,
    pub pacas: Vec<u64>,
    pub hstate: Vec<Hstate>,
    pub regs: Vec<Regs>,
    pub vcores: BTreeMap<u64, Vcore>,
    pub vcpus: BTreeMap<u64, Vcpu>,
    /// In-flight `mtspr`: `[LPIDR, SDR1]`.
    pub inflight: [Option<Inflight>; 2],
}

impl CoreState {
    pub fn new(variant: Variant, threads_per_core: usize) -> Self {
        CoreState {
            variant,
            threads_per_core,
            pacas: vec![0; threads_per_core],
            hstate: vec![Hstate::default(); threads_per_core],
            regs: vec![Regs::default(); threads_per_core],
            vcores: BTreeMap::new(),
            vcpus: BTreeMap::new(),
            inflight: [None; 2],
        }
    }

    /// Thread `cpu` made an event: every `mtspr` it issued before has
    /// executed (its callbacks run in program order).
    pub fn progressed(&mut self, cpu: usize) {
        for f in &mut self.inflight {
            if f.is_some_and(|f| f.writer == cpu) {
                *f = None;
            }
        }
    }

    fn vcore(&mut self, addr: u64) -> &mut Vcore {
        let variant = self.variant;
        self.vcores.entry(addr).or_insert_with(|| Vcore {
            addr,
            entry_exit_map: variant.has_entry_exit_map().then_some(0),
            entry_exit_count: (!variant.has_entry_exit_map()).then_some(0),
            ..Vcore::default()
        })
    }

    fn vcpu(&mut self, addr: u64) -> &mut Vcpu {
        self.vcpus.entry(addr).or_insert_with(|| Vcpu {
            addr,
            cpu: -1,
            ..Vcpu::default()
        })
    }

    /// Apply one change.  Values of signed fields come sign-extended.
    /// Threads outside the core are ignored (returns false).
    pub fn apply(&mut self, field: FieldRef, v: u64) -> bool {
        let n = self.threads_per_core;
        match field {
            FieldRef::PacaPtrs => {}
            FieldRef::Paca(i) if i < n => self.pacas[i] = v,
            FieldRef::Hstate(i, f) if i < n => {
                let h = &mut self.hstate[i];
                match f {
                    HField::InGuest => h.in_guest = v as u8,
                    HField::Napping => h.napping = v as u8,
                    HField::HwthreadReq => h.hwthread_req = v as u8,
                    HField::HwthreadState => h.hwthread_state = v as u8,
                    HField::HostIpi => {}
                    HField::Ptid => h.ptid = v as u8,
                    HField::KvmVcpu => h.kvm_vcpu = v,
                    HField::KvmVcore => h.kvm_vcore = v,
                }
            }
            FieldRef::Reg(i, r) if i < n => self.apply_reg(i, r, v),
            FieldRef::Vcore(a, f) => {
                let vc = self.vcore(a);
                match f {
                    VField::NRunnable => vc.n_runnable = v as u32,
                    VField::NumThreads => vc.num_threads = v as u32,
                    VField::EntryExitMap => vc.entry_exit_map = Some(v as u32),
                    VField::EntryExitCount => vc.entry_exit_count = Some(v as u32),
                    VField::NappingThreads => vc.napping_threads = v as u32,
                    VField::FirstVcpuid => vc.first_vcpuid = v as u32,
                    VField::Pcpu => vc.pcpu = v as u32,
                    VField::VcoreState => vc.vcore_state = v as u8,
                    VField::InGuest => vc.in_guest = v as u8,
                    VField::Runner => vc.runner = Some(v),
                    VField::Kvm => vc.kvm = Some(v),
                    VField::NWoken => vc.n_woken = Some(v as u32),
                    VField::NapCount => vc.nap_count = Some(v as u32),
                    VField::Dpdes => vc.dpdes = Some(v),
                    VField::TbOffset => vc.tb_offset = Some(v),
                    VField::TbOffsetApplied => vc.tb_offset_applied = Some(v),
                }
            }
            FieldRef::Vcpu(a, f) => {
                let c = self.vcpu(a);
                match f {
                    CField::VcpuId => c.vcpu_id = v as u32,
                    CField::Cpu => c.cpu = v as i32,
                    CField::Vcore => c.vcore = v,
                    CField::Ptid => c.ptid = v as u8,
                    CField::ThreadCpu => c.thread_cpu = Some(v as i32),
                    CField::State => c.state = Some(v as u8),
                    CField::Ceded => c.ceded = Some(v as u8),
                    // Not part of the snapshot: judged by invariant 45
                    // (super::exit_ipi) from the event itself.
                    CField::Trap => {}
                }
            }
            _ => return false,
        }
        true
    }

    fn apply_reg(&mut self, i: usize, r: Reg, v: u64) {
        match r {
            Reg::Lpidr | Reg::Sdr1 => {
                let k = usize::from(r == Reg::Sdr1);
                let pending = self.inflight[k].is_some_and(|f| f.writer != i && f.before == Some(v));
                let g = &mut self.regs[i];
                if k == 0 {
                    (g.lpidr, g.lpidr_fresh) = (Some(v), !pending);
                } else {
                    (g.sdr1, g.sdr1_fresh) = (Some(v), !pending);
                }
            }
            Reg::MtLpidr | Reg::MtSdr1 => {
                let lp = r == Reg::MtLpidr;
                let before = if lp { self.regs[i].lpidr } else { self.regs[i].sdr1 };
                self.inflight[usize::from(!lp)] = Some(Inflight { writer: i, before });
                for (t, g) in self.regs.iter_mut().enumerate() {
                    if t == i {
                        if lp {
                            (g.lpidr, g.lpidr_fresh) = (Some(v), true);
                        } else {
                            (g.sdr1, g.sdr1_fresh) = (Some(v), true);
                        }
                    } else if lp {
                        g.lpidr_fresh = false;
                    } else {
                        g.sdr1_fresh = false;
                    }
                }
            }
            Reg::Dpdes | Reg::MtDpdes => self.regs[i].dpdes = Some(v),
            Reg::Msgsnd => self.regs[i].msgsnd = Some(v),
            Reg::Msgsndp => self.regs[i].msgsndp = Some(v),
            // Judged by invariant 45 (super::exit_ipi) from the event itself.
            Reg::CommenceExit => {}
        }
    }

    /// The value a field has now (for the `old` of an event).
    pub fn value(&self, field: FieldRef) -> Option<u64> {
        let n = self.threads_per_core;
        Some(match field {
            FieldRef::Paca(i) if i < n => self.pacas[i],
            FieldRef::Hstate(i, f) if i < n => {
                let h = &self.hstate[i];
                match f {
                    HField::InGuest => h.in_guest.into(),
                    HField::Napping => h.napping.into(),
                    HField::HwthreadReq => h.hwthread_req.into(),
                    HField::HwthreadState => h.hwthread_state.into(),
                    HField::HostIpi => return None,
                    HField::Ptid => h.ptid.into(),
                    HField::KvmVcpu => h.kvm_vcpu,
                    HField::KvmVcore => h.kvm_vcore,
                }
            }
            FieldRef::Reg(i, Reg::Lpidr | Reg::MtLpidr) if i < n => self.regs[i].lpidr?,
            FieldRef::Reg(i, Reg::Sdr1 | Reg::MtSdr1) if i < n => self.regs[i].sdr1?,
            FieldRef::Reg(i, Reg::Dpdes | Reg::MtDpdes) if i < n => self.regs[i].dpdes?,
            _ => return None,
        })
    }

    /// An event's `tb` (the storing thread's TB register, read by the
    /// plugin) on the host's timebase, or why that is not known.
    ///
    /// POWER8's TB is one register per core, and while thread 0 runs a
    /// vcore with a timebase offset it holds the guest's timebase:
    /// kvmppc_hv_entry (book3s_hv_rmhandlers.S) stores `vc->tb_offset` in
    /// `vc->tb_offset_applied`, adds it with `mtspr TBU40`, then sets
    /// `vc->in_guest`; kvmhv_switch_to_host clears `tb_offset_applied`,
    /// takes it off with TBU40, then clears `in_guest`.  The lab's QEMU
    /// writes every sibling's TB at the TBU40 write (helper_store_tbu40,
    /// target/ppc/timebase_helper.c: POWER8 is LPAR-per-core), so every
    /// thread's `tb` carries the offset of the vcore thread 0 runs.  The
    /// rules are the stops' ([`Vcore::offset_in_force`], as for invariant
    /// 44): known outside the switch, unknown between the store to
    /// `tb_offset_applied` and the store to `in_guest` (the plugin reads
    /// the TB under the shadow's lock, after every callback already
    /// applied, so a TBU40 write can only lie inside that window), and
    /// unknown for a vcore whose offset the log does not carry (a log from
    /// a plugin that did not watch it).  The kernel's own P8 timing
    /// (kvmhv_accumulate_time) takes the host's time the same way: TB
    /// minus `tb_offset_applied`.
    pub fn host_tb(&self, tb: u64) -> Result<u64, &'static str> {
        let Some(addr) = self.hstate.first().map(|h| h.kvm_vcore).filter(|&a| a != 0) else {
            return Ok(tb);
        };
        let Some(vc) = self.vcores.get(&addr) else {
            return Err(TRACE_TB_OFFSET_NOT_READ);
        };
        match vc.offset_in_force() {
            Ok(off) => Ok(tb.wrapping_sub(off)),
            Err(TB_OFFSET_NOT_READ) => Err(TRACE_TB_OFFSET_NOT_READ),
            Err(why) => Err(why),
        }
    }

    /// The vcores worth showing: those a PACA points at, and every vcore
    /// seen since (their state after the PACAs were released still counts:
    /// EXITING -> INACTIVE happens after the release).
    pub fn snapshot(&self) -> Snapshot {
        // LPIDR/SDR1 are judged while the core is in KVM (a PACA points at
        // a vcore).  Outside it every thread writes its own copy at bring-up
        // (hash__early_init_mmu_secondary, __setup_cpu_power8), so a
        // difference there is harmless to the kernel.
        let in_kvm = self.hstate.iter().any(|h| h.kvm_vcore != 0);
        let threads = (0..self.threads_per_core)
            .map(|i| {
                let r = &self.regs[i];
                Thread {
                    cpu: i as u32,
                    // The PIR is not watched: the thread's index in the core.
                    hw_cpu_id: i as u32,
                    lpidr: r.lpidr.filter(|_| r.lpidr_fresh && in_kvm),
                    sdr1: r.sdr1.filter(|_| r.sdr1_fresh && in_kvm),
                    kvm_hstate: self.hstate[i].clone(),
                    pc: None,
                    msr: None,
                    // DPDES is one register per core: a thread's own
                    // mtspr leaves its siblings' copies unknown, so it is
                    // logged (`threads[N].mtspr_dpdes`) but not judged.
                    dpdes: None,
                    hdec: None,
                }
            })
            .collect();
        let vcores: Vec<Vcore> = self.vcores.values().cloned().collect();
        let vcpus = self
            .vcpus
            .values()
            .filter(|c| self.vcores.contains_key(&c.vcore))
            .cloned()
            .collect();
        Snapshot {
            variant: self.variant,
            threads_per_core: self.threads_per_core as u32,
            stop: None,
            threads,
            vcores,
            vcpus,
            kvm: None,
            version: Some(2),
            // Left out so that equal states hash equal (distinct states);
            // every event of the log carries its tb.
            tb: None,
            tb_freq: None,
        }
    }
}
