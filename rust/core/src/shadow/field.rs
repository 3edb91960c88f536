//! The names of watched fields, as they appear in the event log
//! (`threads[1].kvm_hstate.in_guest`, `vcores[0xc000000028186a00].vcore_state`,
//! ...), and their parsing.  The names are the kernel's.

use std::fmt;

macro_rules! names {
    ($(#[$m:meta])* $t:ident { $($v:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $t { $($v),* }
        impl $t {
            pub const ALL: &'static [$t] = &[$($t::$v),*];
            pub fn name(self) -> &'static str {
                match self { $($t::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($t::$v),)* _ => None }
            }
        }
    };
}

names!(
    /// `paca->kvm_hstate` members.
    HField {
        InGuest = "in_guest",
        Napping = "napping",
        HwthreadReq = "hwthread_req",
        HwthreadState = "hwthread_state",
        HostIpi = "host_ipi",
        Ptid = "ptid",
        KvmVcpu = "kvm_vcpu",
        KvmVcore = "kvm_vcore",
    }
);

names!(
    /// `struct kvmppc_vcore` members.
    VField {
        NRunnable = "n_runnable",
        NumThreads = "num_threads",
        EntryExitMap = "entry_exit_map",
        EntryExitCount = "entry_exit_count",
        NappingThreads = "napping_threads",
        FirstVcpuid = "first_vcpuid",
        Pcpu = "pcpu",
        VcoreState = "vcore_state",
        InGuest = "in_guest",
        Runner = "runner",
        Kvm = "kvm",
        NWoken = "n_woken",
        NapCount = "nap_count",
        Dpdes = "dpdes",
        TbOffset = "tb_offset",
        TbOffsetApplied = "tb_offset_applied",
    }
);

names!(
    /// `struct kvm_vcpu` members (`arch.*` written without the prefix, as in
    /// the snapshot format).
    CField {
        VcpuId = "vcpu_id",
        Cpu = "cpu",
        Vcore = "vcore",
        Ptid = "ptid",
        ThreadCpu = "thread_cpu",
        State = "state",
        Ceded = "ceded",
        Trap = "trap",
    }
);

names!(
    /// Per-thread registers: `lpidr`/`sdr1`/`dpdes` are values read from
    /// the thread (it is current at that event), `mtspr_*` the thread's own
    /// `mtspr` (the value written), `msgsnd`/`msgsndp` a doorbell it sent
    /// (the value is the target: PIR for msgsnd, TIR for msgsndp),
    /// `kvmhv_commence_exit` a call the thread made to that function (the
    /// value is its `trap` argument, r3 at the function's local entry).
    Reg {
        Lpidr = "lpidr",
        Sdr1 = "sdr1",
        Dpdes = "dpdes",
        MtLpidr = "mtspr_lpidr",
        MtSdr1 = "mtspr_sdr1",
        MtDpdes = "mtspr_dpdes",
        Msgsnd = "msgsnd",
        Msgsndp = "msgsndp",
        CommenceExit = "kvmhv_commence_exit",
    }
);

/// One watched field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldRef {
    /// `paca_ptrs` itself: the address of the array of PACA pointers.
    PacaPtrs,
    /// `paca_ptrs[cpu]`.
    Paca(usize),
    Hstate(usize, HField),
    Reg(usize, Reg),
    Vcore(u64, VField),
    Vcpu(u64, CField),
}

impl FieldRef {
    /// Pointer-valued fields (written as hex strings).
    pub fn is_address(self) -> bool {
        matches!(
            self,
            FieldRef::PacaPtrs
                | FieldRef::Paca(_)
                | FieldRef::Hstate(_, HField::KvmVcpu | HField::KvmVcore)
                | FieldRef::Reg(
                    _,
                    Reg::Lpidr | Reg::Sdr1 | Reg::Dpdes | Reg::MtLpidr | Reg::MtSdr1 | Reg::MtDpdes
                )
                | FieldRef::Vcore(_, VField::Runner | VField::Kvm | VField::Dpdes)
                | FieldRef::Vcpu(_, CField::Vcore)
        )
    }

    /// The name without the thread or object address, for counting events
    /// per field: `kvm_hstate.in_guest`, `vcore.vcore_state`, `vcpu.ceded`.
    pub fn kind(self) -> String {
        match self {
            FieldRef::PacaPtrs => "paca_ptrs".into(),
            FieldRef::Paca(_) => "paca_ptrs[]".into(),
            FieldRef::Hstate(_, f) => format!("kvm_hstate.{}", f.name()),
            FieldRef::Reg(_, r) => r.name().into(),
            FieldRef::Vcore(_, f) => format!("vcore.{}", f.name()),
            FieldRef::Vcpu(_, f) => format!("vcpu.{}", f.name()),
        }
    }

    /// Parse the event log's name back.
    pub fn parse(s: &str) -> Option<FieldRef> {
        if s == "paca_ptrs" {
            return Some(FieldRef::PacaPtrs);
        }
        let (head, rest) = s.split_once('[')?;
        let (index, tail) = rest.split_once(']')?;
        let tail = tail.strip_prefix('.').unwrap_or(tail);
        let num = |t: &str| -> Option<u64> {
            match t.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => t.parse().ok(),
            }
        };
        let n = num(index)?;
        match head {
            "paca_ptrs" if tail.is_empty() => Some(FieldRef::Paca(n as usize)),
            "threads" => match tail.strip_prefix("kvm_hstate.") {
                Some(f) => Some(FieldRef::Hstate(n as usize, HField::parse(f)?)),
                None => Some(FieldRef::Reg(n as usize, Reg::parse(tail)?)),
            },
            "vcores" => Some(FieldRef::Vcore(n, VField::parse(tail)?)),
            "vcpus" => Some(FieldRef::Vcpu(n, CField::parse(tail)?)),
            _ => None,
        }
    }
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FieldRef::PacaPtrs => f.write_str("paca_ptrs"),
            FieldRef::Paca(i) => write!(f, "paca_ptrs[{i}]"),
            FieldRef::Hstate(i, h) => write!(f, "threads[{i}].kvm_hstate.{}", h.name()),
            FieldRef::Reg(i, r) => write!(f, "threads[{i}].{}", r.name()),
            FieldRef::Vcore(a, v) => write!(f, "vcores[{a:#x}].{}", v.name()),
            FieldRef::Vcpu(a, c) => write!(f, "vcpus[{a:#x}].{}", c.name()),
        }
    }
}
