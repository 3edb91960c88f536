//! One observed (or predicted) state of a physical core: every hardware
//! thread's PACA `kvm_hstate`, the vcores and their vcpus, with the kernel's
//! own field names and numeric values.
//!
//! This is the snapshot format that the gdb side writes and `pyvcore check`
//! reads (one JSON object per stop), and the view of the model's state that
//! the invariants are evaluated on, so a model step and a live stop are
//! checked by the same code.  Pointers are plain integers (0 = NULL); unknown
//! extra keys are ignored; optional keys are those some kernels or some
//! readers do not have.

use serde::{Deserialize, Serialize};

use crate::consts::Variant;

/// `paca->kvm_hstate` (struct kvmppc_host_state): the fields the vcore logic uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hstate {
    /// struct kvm_vcpu * to run on this thread (0 = none).
    pub kvm_vcpu: u64,
    /// struct kvmppc_vcore * this thread takes part in (may be stale).
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lpidr: Option<u64>,
    /// This thread's SDR1 SPR, where the reader could get it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdr1: Option<u64>,
    pub kvm_hstate: Hstate,
}

/// struct kvmppc_vcore.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vcore {
    /// Address of the struct (what PACAs and vcpus point at).
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<u64>,
    /// Seed only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_woken: Option<u32>,
    /// Seed only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nap_count: Option<u32>,
    /// struct kvm * owning this vcore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kvm: Option<u64>,
}

/// struct kvm_vcpu (with the kvm_vcpu_arch fields the vcore logic uses).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vcpu {
    pub addr: u64,
    pub vcpu_id: u32,
    /// arch.vcore.
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
    pub lpid: u64,
    pub sdr1: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_lpid: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_sdr1: Option<u64>,
}

/// One stop: the whole core.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Snapshot {
    pub variant: Variant,
    pub threads_per_core: u32,
    /// Where the snapshot was taken (breakpoint label), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    /// Indexed by physical thread of the core (thread 0 first).
    pub threads: Vec<Thread>,
    #[serde(default)]
    pub vcores: Vec<Vcore>,
    #[serde(default)]
    pub vcpus: Vec<Vcpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kvm: Option<KvmArch>,
}
