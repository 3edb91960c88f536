//! One observed (or predicted) state of a physical core: every hardware
//! thread's PACA `kvm_hstate`, the vcores and their vcpus, with the kernel's
//! own field names and numeric values.
//!
//! This is the snapshot format that the gdb side writes and `pyvcore check`
//! reads (one JSON object per stop, one per line in a trace), and the view
//! of the model's state that the invariants are evaluated on, so a model
//! step and a live stop are checked by the same code.
//!
//! # Snapshot format, version 2
//!
//! ```text
//! {"version": 2, "variant": "modern", "threads_per_core": 4, "stop": "kvmhv_switch_to_host@cpu1",
//!  "tb": "0x1d4c0b2f3a", "tb_freq": 512000000,
//!  "threads": [{"cpu": 0, "hw_cpu_id": 8, "lpidr": "0x1", "sdr1": "0x75000006",
//!               "pc": "0xc000000000115690", "msr": "0x9000000002803003", "dpdes": "0x0",
//!               "hdec": "0xfff25ffe",
//!               "kvm_hstate": {"kvm_vcpu": "0x0", "kvm_vcore": "0xc000000028186a00", "ptid": 0,
//!                              "hwthread_req": 0, "hwthread_state": 2, "napping": 2, "in_guest": 4}},
//!              {"cpu": 1, "hw_cpu_id": 9, "lpidr": "0x1", "sdr1": "0x75000006",
//!               "kvm_hstate": {"kvm_vcpu": "0xc0000000042e2400", "kvm_vcore": "0xc000000028186a00",
//!                              "ptid": 1, "hwthread_req": 1, "hwthread_state": 2, "napping": 0, "in_guest": 4}},
//!              {"cpu": 2, "hw_cpu_id": 10, "lpidr": "0x1", "sdr1": "0x75000006",
//!               "kvm_hstate": {"kvm_vcpu": "0x0", "kvm_vcore": "0x0", "ptid": 0,
//!                              "hwthread_req": 1, "hwthread_state": 1, "napping": 0, "in_guest": 0}},
//!              {"cpu": 3, "hw_cpu_id": 11, "lpidr": "0x1", "sdr1": "0x75000006",
//!               "kvm_hstate": {"kvm_vcpu": "0x0", "kvm_vcore": "0x0", "ptid": 0,
//!                              "hwthread_req": 1, "hwthread_state": 1, "napping": 0, "in_guest": 0}}],
//!  "vcores": [{"addr": "0xc000000028186a00", "first_vcpuid": 0, "pcpu": 0, "num_threads": 1,
//!              "n_runnable": 1, "vcore_state": 4, "in_guest": 1, "entry_exit_map": 515,
//!              "napping_threads": 1, "runner": "0xc0000000042e2400", "kvm": "0xc0000000040b8000",
//!              "dpdes": "0x0", "tb_offset": "0x0", "tb_offset_applied": "0x0", "seq": 3}],
//!  "vcpus": [{"addr": "0xc0000000042e2400", "vcpu_id": 1, "vcore": "0xc000000028186a00", "ptid": 1,
//!             "cpu": -1, "thread_cpu": -1, "state": 1, "ceded": 0}],
//!  "kvm": {"lpid": "0x1", "sdr1": "0x75000006", "host_lpid": "0x0", "host_sdr1": "0x7c000007"}}
//! ```
//!
//! * Top level: `version` (1 when absent; a version-1 snapshot is judged
//!   without the version-2 fields `tb`, `tb_freq`, a thread's `pc`, `msr`,
//!   `dpdes`, `hdec` and a vcore's `dpdes`, `seq`, `tb_offset`,
//!   `tb_offset_applied`, so one that carries any is refused, naming it),
//!   `variant` (`seed`, `modern`,
//!   `prepatch`), `threads_per_core` (1..8), `stop` (where the snapshot was
//!   taken, free text), `tb` (the core's TB register at the stop, in ticks:
//!   the guest's timebase while its vcore's offset is in force, see
//!   `vcores[]`) and `tb_freq` (its frequency in Hz; 512000000 on
//!   POWER8).  `judged` is never input: it is what `pyvcore check --json`
//!   adds to its output.
//! * `threads[]`: one per hardware thread of the core, thread 0 first: Linux
//!   `cpu`, `hw_cpu_id` (PIR), the thread's SPRs `lpidr`, `sdr1`, `dpdes`
//!   (bit N = doorbell pending for thread N), `hdec` (hypervisor decrementer,
//!   ticks), `pc` and `msr` where the reader has them, and `kvm_hstate` (the
//!   PACA's struct kvmppc_host_state fields, kernel values).  The gdb
//!   readers write `pc`, `msr`, `lpidr`, `sdr1` on every thread and `hdec`,
//!   `dpdes` on the stopping thread only (DPDES is one register per core).
//! * `vcores[]`: struct kvmppc_vcore: `entry_exit_map` (modern) or
//!   `entry_exit_count` (seed layout), `n_woken`/`nap_count` (seed layout),
//!   `dpdes` (modern: the doorbell state the kernel saved at the last exit),
//!   `tb_offset` (the guest's timebase minus the host's, in timebase ticks,
//!   modulo 2^64) and `tb_offset_applied` (the offset thread 0 added to the
//!   core's TB at this run's guest entry and has not taken off again, ticks;
//!   0 when none is in force; kernels that snapshot the offset on entry):
//!   a stop inside the guest reads the guest's timebase in `tb`, and the
//!   checker puts it on the host's with them before comparing two stops;
//!   `seq` (written by a reader that watches kvmppc_run_core: the number of
//!   runs of this vcore it has seen start; two stops with the same `seq`
//!   lie in one run).
//! * `vcpus[]`: struct kvm_vcpu and its arch fields.
//! * `kvm`: the VM's LPID/SDR1 and the host's.
//! * Kernel values (arch/powerpc/include/asm/kvm_book3s_asm.h and
//!   kvm_host.h): a PACA's `in_guest` 0 NONE, 1 GUEST, 2 SKIP, 3 GUEST_HV,
//!   4 HOST_HV, 5 HV_P9 (a vcore's `in_guest` is 0 or 1); `hwthread_state`
//!   0 IN_KERNEL, 1 IN_IDLE (seed: IN_NAP), 2 IN_KVM; `napping` 0 (not
//!   napping), 1 CEDE, 2 NOVCPU, 3 UNSPLIT; a vcpu's `state` 0 NOTREADY,
//!   1 RUNNABLE, 2 BUSY_IN_HOST; `vcore_state` on seed and prepatch
//!   0 INACTIVE, 1 SLEEPING, 2 STARTING, 3 RUNNING, 4 EXITING, on modern
//!   0 INACTIVE, 1 PREEMPT, 2 PIGGYBACK, 3 SLEEPING, 4 RUNNING, 5 EXITING,
//!   6 POLLING; `entry_exit_map` (modern) bit N thread N entered, bit 8+N
//!   thread N exiting, 0x10000 VCORE_EXIT_REQ; `entry_exit_count` (seed)
//!   threads entered in the low byte, exiting in the next.
//!
//! Addresses and other 64-bit kernel values (pointers, SPRs, tb) are written
//! as hex strings (`"0xc000000028c26d00"`) by every pyvcore writer, because
//! JSON numbers lose precision above 2^53 in many readers; every reader
//! accepts a hex string or an integer.  Small counters and bit words stay
//! integers.  0 = NULL.  Unknown keys are ignored; optional keys are those
//! some kernels or readers do not have, and a check that needs one runs only
//! when it is present.
//!
//! A snapshot lists every thread of each core it holds (cpus
//! core * threads_per_core up to the next core), each once (a cpu listed
//! twice is refused), and every vcpu and vcore that a PACA (`kvm_vcpu`,
//! `kvm_vcore`) or a vcore (`runner`) points at.  A reader leaves out what
//! it could not read: what the stop says of it (a thread's bit in
//! `entry_exit_map`, a vcpu's `ptid`...) is then unknown, so no invariant is
//! judged on such a stop ("a thread of the core is not in the snapshot",
//! "a vcpu or vcore it points at is not in the snapshot") and its verdict
//! is "not judged" (exit 2), never clean.

use serde::{Deserialize, Serialize};

use crate::consts::Variant;

/// `paca->kvm_hstate` (struct kvmppc_host_state): the fields the vcore logic uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hstate {
    /// struct kvm_vcpu * to run on this thread (0 = none).
    #[serde(deserialize_with = "crate::hexint::deserialize")]
    pub kvm_vcpu: u64,
    /// struct kvmppc_vcore * this thread takes part in (may be stale).
    #[serde(deserialize_with = "crate::hexint::deserialize")]
    pub kvm_vcore: u64,
    /// This thread's index within the vcore (may be stale).
    pub ptid: u8,
    pub hwthread_req: u8,
    /// KVM_HWTHREAD_IN_KERNEL / IN_IDLE (IN_NAP) / IN_KVM.
    pub hwthread_state: u8,
    /// 0 / NAPPING_CEDE / NAPPING_NOVCPU / NAPPING_UNSPLIT.
    pub napping: u8,
    /// KVM_GUEST_MODE_*.
    pub in_guest: u8,
}

/// One hardware thread of the core.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Thread {
    /// Linux logical cpu number (paca->paca_index).
    pub cpu: u32,
    /// paca->hw_cpu_id (the PIR).
    pub hw_cpu_id: u32,
    /// This thread's LPIDR SPR, where the reader could get it.
    #[serde(
        deserialize_with = "crate::hexint::opt::deserialize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub lpidr: Option<u64>,
    /// This thread's SDR1 SPR, where the reader could get it.
    #[serde(
        deserialize_with = "crate::hexint::opt::deserialize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sdr1: Option<u64>,
    /// Program counter where the thread stopped.
    #[serde(
        deserialize_with = "crate::hexint::opt::deserialize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pc: Option<u64>,
    /// MSR (mode: HV, IR/DR translation, PR).
    #[serde(
        deserialize_with = "crate::hexint::opt::deserialize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub msr: Option<u64>,
    /// DPDES SPR: directed privileged doorbells pending, bit N for thread N.
    #[serde(
        deserialize_with = "crate::hexint::opt::deserialize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dpdes: Option<u64>,
    /// HDEC SPR (hypervisor decrementer, timebase ticks).
    #[serde(
        deserialize_with = "crate::hexint::opt::deserialize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub hdec: Option<u64>,
    #[serde(deserialize_with = "object::one")]
    pub kvm_hstate: Hstate,
}

/// struct kvmppc_vcore.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vcore {
    /// Address of the struct (what PACAs and vcpus point at).
    #[serde(deserialize_with = "crate::hexint::deserialize")]
    pub addr: u64,
    pub first_vcpuid: u32,
    /// Host cpu of thread 0 of the core running this vcore.
    pub pcpu: u32,
    pub num_threads: u32,
    pub n_runnable: u32,
    pub vcore_state: u8,
    /// 1 once thread 0 has switched the MMU to the guest.
    pub in_guest: u8,
    /// Modern: entered ptids (bits 0-7), exiting ptids (8-15), VCORE_EXIT_REQ (16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_exit_map: Option<u32>,
    /// Seed: threads entered (bits 0-7), threads exiting (bits 8-15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_exit_count: Option<u32>,
    /// Bitmap by ptid of threads napping in the guest context.
    pub napping_threads: u32,
    /// struct kvm_vcpu * of the runner (0 = none).
    #[serde(
        deserialize_with = "crate::hexint::opt::deserialize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub runner: Option<u64>,
    /// Seed only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_woken: Option<u32>,
    /// Seed only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nap_count: Option<u32>,
    /// Modern: doorbell state saved at the last exit (vc->dpdes).
    #[serde(
        deserialize_with = "crate::hexint::opt::deserialize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dpdes: Option<u64>,
    /// vc->tb_offset: the guest's timebase minus the host's, in timebase
    /// ticks, modulo 2^64 (a guest behind its host reads above 2^63); a
    /// multiple of 2^24 (set by KVM_SET_ONE_REG KVM_REG_PPC_TB_OFFSET,
    /// kvmppc_set_one_reg_hv; 93b0f4dc29c5).
    #[serde(
        deserialize_with = "crate::hexint::opt::deserialize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tb_offset: Option<u64>,
    /// vc->tb_offset_applied: the offset thread 0 added to the core's TB
    /// at this run's guest entry and has not taken off again (0: none in
    /// force), ticks; kernels that snapshot the offset on guest entry.
    #[serde(
        deserialize_with = "crate::hexint::opt::deserialize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tb_offset_applied: Option<u64>,
    /// Runs of this vcore the writer saw start (kvmppc_run_core hits); equal
    /// values on two stops prove they lie in one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// struct kvm * owning this vcore.
    #[serde(
        deserialize_with = "crate::hexint::opt::deserialize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub kvm: Option<u64>,
}

/// struct kvm_vcpu (with the kvm_vcpu_arch fields the vcore logic uses).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vcpu {
    #[serde(deserialize_with = "crate::hexint::deserialize")]
    pub addr: u64,
    pub vcpu_id: u32,
    /// arch.vcore.
    #[serde(deserialize_with = "crate::hexint::deserialize")]
    pub vcore: u64,
    /// arch.ptid.
    pub ptid: u8,
    /// vcpu->cpu: vc->pcpu while started, -1 otherwise.
    pub cpu: i32,
    /// Modern: arch.thread_cpu, the thread running it, -1 otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_cpu: Option<i32>,
    /// arch.state (KVMPPC_VCPU_*).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<u8>,
    /// arch.ceded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceded: Option<u8>,
}

/// kvm->arch values the MMU invariants compare the SPRs against.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KvmArch {
    #[serde(deserialize_with = "crate::hexint::deserialize")]
    pub lpid: u64,
    #[serde(deserialize_with = "crate::hexint::deserialize")]
    pub sdr1: u64,
    #[serde(
        deserialize_with = "crate::hexint::opt::deserialize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub host_lpid: Option<u64>,
    #[serde(
        deserialize_with = "crate::hexint::opt::deserialize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub host_sdr1: Option<u64>,
}

/// One stop: the whole core.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Snapshot {
    /// Format version (1 when absent, 2 with the fields below).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    pub variant: Variant,
    pub threads_per_core: u32,
    /// Where the snapshot was taken (breakpoint label), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    /// Indexed by physical thread of the core (thread 0 first).
    #[serde(deserialize_with = "object::many")]
    pub threads: Vec<Thread>,
    /// Timebase at the stop (ticks).
    #[serde(
        deserialize_with = "crate::hexint::opt::deserialize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tb: Option<u64>,
    /// Timebase frequency (Hz).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tb_freq: Option<u64>,
    #[serde(default, deserialize_with = "object::many")]
    pub vcores: Vec<Vcore>,
    #[serde(default, deserialize_with = "object::many")]
    pub vcpus: Vec<Vcpu>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object::opt"
    )]
    pub kvm: Option<KvmArch>,
}

/// Nested structs are JSON objects: serde's derive would also take a struct
/// from an array (by position), which hides a writer's mistake.
mod object {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::value::MapAccessDeserializer;
    use serde::de::{MapAccess, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer};

    struct ObjectVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }
    }

    /// One object.
    pub fn one<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
        d.deserialize_map(ObjectVisitor(PhantomData))
    }

    struct Obj<T>(T);

    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            one(d).map(Obj)
        }
    }

    /// An object or null.
    pub fn opt<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
        Ok(Option::<Obj<T>>::deserialize(d)?.map(|o| o.0))
    }

    struct ManyVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ManyVisitor<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of JSON objects")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            // The hint is capped: it comes from the input.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(Obj(item)) = seq.next_element::<Obj<T>>()? {
                out.push(item);
            }
            Ok(out)
        }
    }

    /// An array of objects.
    pub fn many<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(ManyVisitor(PhantomData))
    }
}

/// Keys of 64-bit kernel values (addresses, SPRs, timebase): written as hex
/// strings by [`Snapshot::to_hex_json`].
pub const HEX_KEYS: &[&str] = &[
    "kvm_vcpu",
    "kvm_vcore",
    "addr",
    "vcore",
    "runner",
    "kvm",
    "lpidr",
    "sdr1",
    "pc",
    "msr",
    "dpdes",
    "hdec",
    "lpid",
    "host_lpid",
    "host_sdr1",
    "tb",
    "tb_offset",
    "tb_offset_applied",
];

/// Why a stop's `tb` cannot be put on the host's timebase
/// ([`Snapshot::host_tb`]): old traces.
pub const TB_OFFSET_NOT_READ: &str =
    "the snapshot does not carry the vcore's timebase offset (vcores[].tb_offset): whether the TB register held the guest's timebase is not known";
/// ... a kernel that does not record the offset in force.
pub const TB_OFFSET_NOT_RECORDED: &str = "the vcore has a timebase offset and the kernel does not record whether it is in force (no vcores[].tb_offset_applied): the TB register may hold the guest's or the host's timebase";
/// ... a stop inside thread 0's switch of the timebase.
pub const TB_OFFSET_SWITCHING: &str = "thread 0 is inside its switch of the timebase offset (vcores[].tb_offset_applied and in_guest disagree: kvmppc_hv_entry adds it before in_guest is set, kvmhv_switch_to_host takes it off before in_guest is cleared): the TB register may hold the guest's or the host's timebase";
/// ... thread 0's vcore is not in the snapshot.
pub const TB_OFFSET_NO_VCORE: &str =
    "thread 0's vcore is not in the snapshot: whether its timebase offset was in force is not known";
/// ... cores with different offsets in force.
pub const TB_OFFSET_CORES: &str =
    "the snapshot's cores have different timebase offsets in force and one tb: which core it was read on is not known";

impl Vcore {
    /// The timebase offset this vcore has in force on its core's TB, by the
    /// rules of [`Snapshot::host_tb`] (thread 0 of the core runs it):
    /// `tb_offset_applied` while `in_guest` agrees with it, 0 for a kernel
    /// without `tb_offset_applied` whose `tb_offset` is 0, and `Err(reason)`
    /// where it cannot be known.  The continuous trace
    /// ([`crate::shadow::CoreState::host_tb`]) uses the same rules.
    pub fn offset_in_force(&self) -> Result<u64, &'static str> {
        match (self.tb_offset, self.tb_offset_applied) {
            (Some(0), None) => Ok(0),
            (None, _) => Err(TB_OFFSET_NOT_READ),
            (Some(_), None) => Err(TB_OFFSET_NOT_RECORDED),
            (Some(o), Some(a)) => {
                let entering = a != 0 && self.in_guest == 0;
                let leaving = a == 0 && self.in_guest != 0 && o != 0;
                if entering || leaving {
                    return Err(TB_OFFSET_SWITCHING);
                }
                Ok(a)
            }
        }
    }
}

impl Snapshot {
    /// The stop's timebase (`tb`) on the host's timebase: `Ok(None)` when
    /// the stop carries no `tb`, `Err(reason)` when it cannot be known.
    ///
    /// While a vcore runs, thread 0 of the core has added `vc->tb_offset`
    /// to the core's TB (kvmppc_hv_entry, book3s_hv_rmhandlers.S: it
    /// stores the offset in `vc->tb_offset_applied`, writes TBU40, then
    /// sets `vc->in_guest`); kvmhv_switch_to_host clears
    /// `tb_offset_applied`, writes TBU40 back, then clears `in_guest`
    /// (init_vcore_to_run in book3s_hv.c also clears it when a run
    /// starts).  So the TB a stop reads is the guest's where
    /// `tb_offset_applied` is set and `in_guest` is 1, the host's where
    /// both are 0 (or no offset exists), and unknown when they disagree:
    /// thread 0 stopped between its store and its TBU40 write.  A kernel
    /// without `tb_offset_applied` adds and subtracts `vc->tb_offset`
    /// itself, so only an offset of 0 is known.  The 2^24-tick carry of
    /// the TBU40 write (one more write when the lower bits wrapped) is
    /// below a millisecond's accuracy and ignored.
    pub fn host_tb(&self) -> Result<Option<u64>, &'static str> {
        let Some(tb) = self.tb else {
            return Ok(None);
        };
        let per_core = self.threads_per_core.max(1);
        let mut applied: Option<u64> = None;
        for t in self.threads.iter().filter(|t| t.cpu % per_core == 0) {
            let addr = t.kvm_hstate.kvm_vcore;
            if addr == 0 {
                continue;
            }
            let Some(vc) = self.vcores.iter().find(|v| v.addr == addr) else {
                return Err(TB_OFFSET_NO_VCORE);
            };
            let off = vc.offset_in_force()?;
            match applied {
                Some(other) if other != off => return Err(TB_OFFSET_CORES),
                _ => applied = Some(off),
            }
        }
        Ok(Some(tb.wrapping_sub(applied.unwrap_or(0))))
    }

    /// The snapshot as JSON with every 64-bit kernel value as a hex string,
    /// the form every pyvcore writer emits.
    pub fn to_hex_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        hexify(&mut v);
        v
    }
}

/// Rewrite the integer values of [`HEX_KEYS`] as hex strings, recursively.
pub fn hexify(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                if let (true, Some(n)) = (HEX_KEYS.contains(&k.as_str()), item.as_u64()) {
                    *item = serde_json::Value::String(format!("{n:#x}"));
                } else {
                    hexify(item);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(hexify),
        _ => {}
    }
}
