//! Kernel constants per variant, by their kernel names.
//!
//! These are `#define`s in the kernel, so a debugger without macro info never
//! sees them: the numbers here are what gdb reads out of memory.
//! Sources: arch/powerpc/include/asm/kvm_host.h (vcore_state, vcpu state),
//! kvm_asm.h (KVM_GUEST_MODE_*), kvm_book3s_asm.h (KVM_HWTHREAD_*),
//! book3s_hv_rmhandlers.S (NAPPING_*), kvm_book3s.h (VCORE_ENTRY_MAP...).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which kernel behaviour is modelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// The seed commit e0b7ec058c0e (v3.14): ptid fixed at vcpu creation,
    /// `entry_exit_count` byte counters, `n_woken`/`nap_count`.
    Seed,
    /// Today's POWER8 path (6.x): `entry_exit_map` bitmaps, VCORE_EXIT_REQ,
    /// modern vcore_state numbering, `thread_cpu`, no `nap_count`.
    Modern,
    /// Before the seed commit: physical threads handed out first-come
    /// first-served each run, so ptid N need not sit on thread pcpu+N.
    Prepatch,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Seed, Variant::Modern, Variant::Prepatch];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Seed => "seed",
            Variant::Modern => "modern",
            Variant::Prepatch => "prepatch",
        }
    }

    /// True where the vcore uses the `entry_exit_map` bitmap encoding.
    pub fn has_entry_exit_map(self) -> bool {
        matches!(self, Variant::Modern)
    }

    /// True where `struct kvmppc_vcore` counts napping secondaries in
    /// `nap_count` (seed and prepatch; kvmppc_wait_for_nap in book3s_hv.c waits
    /// for nap_count == n_woken); today's kernel (modern) has no such field.
    pub fn has_nap_count(self) -> bool {
        !matches!(self, Variant::Modern)
    }

    /// The vcore_state numbering of this variant (prepatch shares the seed's).
    pub fn vcore_states(self) -> &'static VcoreStates {
        match self {
            Variant::Modern => &MODERN_VCORE_STATES,
            Variant::Seed | Variant::Prepatch => &SEED_VCORE_STATES,
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownVariant(pub String);

impl fmt::Display for UnknownVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
        let (last, rest) = names.split_last().expect("Variant::ALL is not empty");
        write!(
            f,
            "unknown variant {:?} (expected {} or {last})",
            self.0,
            rest.join(", ")
        )
    }
}

impl std::error::Error for UnknownVariant {}

impl FromStr for Variant {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| UnknownVariant(s.to_string()))
    }
}

/// `vcore->vcore_state` values. `None` where the variant has no such state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcoreStates {
    pub inactive: u8,
    pub preempt: Option<u8>,
    pub piggyback: Option<u8>,
    pub sleeping: u8,
    pub starting: Option<u8>,
    pub running: u8,
    pub exiting: u8,
    pub polling: Option<u8>,
}

/// Seed (v3.14) numbering.
pub const SEED_VCORE_STATES: VcoreStates = VcoreStates {
    inactive: 0,
    preempt: None,
    piggyback: None,
    sleeping: 1,
    starting: Some(2),
    running: 3,
    exiting: 4,
    polling: None,
};

/// Modern (>= ~v4.7) numbering: values >= SLEEPING need stolen-time accounting.
pub const MODERN_VCORE_STATES: VcoreStates = VcoreStates {
    inactive: 0,
    preempt: Some(1),
    piggyback: Some(2),
    sleeping: 3,
    starting: None,
    running: 4,
    exiting: 5,
    polling: Some(6),
};

impl VcoreStates {
    /// The kernel's name of a vcore_state value, e.g. "VCORE_RUNNING".
    pub fn name(&self, value: u8) -> Option<&'static str> {
        let table: [(Option<u8>, &'static str); 8] = [
            (Some(self.inactive), "VCORE_INACTIVE"),
            (self.preempt, "VCORE_PREEMPT"),
            (self.piggyback, "VCORE_PIGGYBACK"),
            (Some(self.sleeping), "VCORE_SLEEPING"),
            (self.starting, "VCORE_STARTING"),
            (Some(self.running), "VCORE_RUNNING"),
            (Some(self.exiting), "VCORE_EXITING"),
            (self.polling, "VCORE_POLLING"),
        ];
        table.iter().find(|(v, _)| *v == Some(value)).map(|(_, n)| *n)
    }
}

// kvm_hstate.in_guest (KVM_GUEST_MODE_*, kvm_asm.h); the same in every variant.
pub const KVM_GUEST_MODE_NONE: u8 = 0;
pub const KVM_GUEST_MODE_GUEST: u8 = 1;
pub const KVM_GUEST_MODE_SKIP: u8 = 2;
pub const KVM_GUEST_MODE_GUEST_HV: u8 = 3;
pub const KVM_GUEST_MODE_HOST_HV: u8 = 4;
/// P9 path only (briefly named HV_FAST); never seen on the P8 path.
pub const KVM_GUEST_MODE_HV_P9: u8 = 5;

// kvm_hstate.hwthread_state (kvm_book3s_asm.h). Value 1 was renamed
// KVM_HWTHREAD_IN_NAP -> KVM_HWTHREAD_IN_IDLE around v4.8; same number.
pub const KVM_HWTHREAD_IN_KERNEL: u8 = 0;
pub const KVM_HWTHREAD_IN_IDLE: u8 = 1;
pub const KVM_HWTHREAD_IN_KVM: u8 = 2;

// kvm_hstate.napping (book3s_hv_rmhandlers.S). UNSPLIT exists in modern only.
pub const NAPPING_CEDE: u8 = 1;
pub const NAPPING_NOVCPU: u8 = 2;
pub const NAPPING_UNSPLIT: u8 = 3;

// vcpu->arch.state (kvm_host.h); unchanged since the seed.
pub const KVMPPC_VCPU_NOTREADY: u8 = 0;
pub const KVMPPC_VCPU_RUNNABLE: u8 = 1;
pub const KVMPPC_VCPU_BUSY_IN_HOST: u8 = 2;

// Seed entry_exit_count: low byte = threads entered, next byte = threads exiting.
pub const VCORE_EXIT_COUNT_ONE: u32 = 0x100;
// Modern entry_exit_map: bits 0-7 entered ptids, 8-15 exiting ptids,
// bit 16 an exit requested from another subcore.
pub const VCORE_EXIT_REQ: u32 = 0x10000;

/// The kernel's names (their `#define`s without the prefix) of the values of
/// a numbered field, for readers to show next to the number: `in_guest`
/// (KVM_GUEST_MODE_*), `hwthread_state` (KVM_HWTHREAD_*; value 1 is IN_NAP
/// before the rename, IN_IDLE in modern), `napping` (NAPPING_*; 0 has no
/// name) and `vcpu_state` (KVMPPC_VCPU_*).  None for any other field.
pub fn kernel_names(field: &str, variant: Variant) -> Option<&'static [(u8, &'static str)]> {
    const GUEST_MODES: &[(u8, &str)] = &[
        (KVM_GUEST_MODE_NONE, "NONE"),
        (KVM_GUEST_MODE_GUEST, "GUEST"),
        (KVM_GUEST_MODE_SKIP, "SKIP"),
        (KVM_GUEST_MODE_GUEST_HV, "GUEST_HV"),
        (KVM_GUEST_MODE_HOST_HV, "HOST_HV"),
        (KVM_GUEST_MODE_HV_P9, "HV_P9"),
    ];
    const HWTHREAD_MODERN: &[(u8, &str)] = &[
        (KVM_HWTHREAD_IN_KERNEL, "IN_KERNEL"),
        (KVM_HWTHREAD_IN_IDLE, "IN_IDLE"),
        (KVM_HWTHREAD_IN_KVM, "IN_KVM"),
    ];
    const HWTHREAD_SEED: &[(u8, &str)] = &[
        (KVM_HWTHREAD_IN_KERNEL, "IN_KERNEL"),
        (KVM_HWTHREAD_IN_IDLE, "IN_NAP"),
        (KVM_HWTHREAD_IN_KVM, "IN_KVM"),
    ];
    const NAPPING: &[(u8, &str)] = &[
        (NAPPING_CEDE, "CEDE"),
        (NAPPING_NOVCPU, "NOVCPU"),
        (NAPPING_UNSPLIT, "UNSPLIT"),
    ];
    const VCPU_STATES: &[(u8, &str)] = &[
        (KVMPPC_VCPU_NOTREADY, "NOTREADY"),
        (KVMPPC_VCPU_RUNNABLE, "RUNNABLE"),
        (KVMPPC_VCPU_BUSY_IN_HOST, "BUSY_IN_HOST"),
    ];
    match field {
        "in_guest" => Some(GUEST_MODES),
        "hwthread_state" if variant == Variant::Modern => Some(HWTHREAD_MODERN),
        "hwthread_state" => Some(HWTHREAD_SEED),
        "napping" => Some(NAPPING),
        "vcpu_state" => Some(VCPU_STATES),
        _ => None,
    }
}

/// MAX_SMT_THREADS: the most threads a core (and so a vcore) has.
pub const MAX_SMT_THREADS: usize = 8;

/// Guest interrupt vectors the model names (arch.trap).
pub const BOOK3S_INTERRUPT_EXTERNAL: u32 = 0x500;
pub const BOOK3S_INTERRUPT_HV_DECREMENTER: u32 = 0x980;
pub const BOOK3S_INTERRUPT_SYSCALL: u32 = 0xc00;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_round_trip() {
        for v in Variant::ALL {
            assert_eq!(v.name().parse::<Variant>().unwrap(), v);
        }
        assert!("p8"
            .parse::<Variant>()
            .unwrap_err()
            .to_string()
            .contains("seed, modern or prepatch"));
    }

    #[test]
    fn kernel_names_follow_the_constants() {
        let name = |field, variant, value| {
            kernel_names(field, variant)
                .unwrap()
                .iter()
                .find(|(v, _)| *v == value)
                .map(|(_, n)| *n)
        };
        assert_eq!(
            name("in_guest", Variant::Seed, KVM_GUEST_MODE_HOST_HV),
            Some("HOST_HV")
        );
        assert_eq!(
            name("hwthread_state", Variant::Seed, KVM_HWTHREAD_IN_IDLE),
            Some("IN_NAP")
        );
        assert_eq!(
            name("hwthread_state", Variant::Modern, KVM_HWTHREAD_IN_IDLE),
            Some("IN_IDLE")
        );
        assert_eq!(name("napping", Variant::Modern, 0), None);
        assert_eq!(
            name("vcpu_state", Variant::Modern, KVMPPC_VCPU_BUSY_IN_HOST),
            Some("BUSY_IN_HOST")
        );
        assert!(kernel_names("vcore_state", Variant::Modern).is_none());
    }

    /// The snapshot format's list of kernel values (view.rs module doc) is
    /// these constants: every value and name of every field, for each variant.
    #[test]
    fn the_snapshot_format_lists_these_values() {
        let doc: String = include_str!("view.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        let values = &doc[doc.find("* Kernel values").expect("the list")..];
        for field in ["in_guest", "hwthread_state", "napping", "vcpu_state"] {
            for (v, name) in kernel_names(field, Variant::Modern).unwrap() {
                assert!(values.contains(&format!("{v} {name}")), "{field} {v} {name}");
            }
        }
        assert!(values.contains("1 IN_IDLE (seed: IN_NAP)"));
        for (variant, label) in [
            (Variant::Seed, "on seed and prepatch"),
            (Variant::Modern, "on modern"),
        ] {
            let st = variant.vcore_states();
            let listed: Vec<String> = (0..=8u8)
                .filter_map(|v| st.name(v).map(|n| format!("{v} {}", &n["VCORE_".len()..])))
                .collect();
            assert!(
                values.contains(&format!("{label} {}", listed.join(", "))),
                "{label}: {}",
                listed.join(", ")
            );
        }
        assert!(values.contains(&format!("{VCORE_EXIT_REQ:#x} VCORE_EXIT_REQ")));
    }

    #[test]
    fn vcore_state_numbering_differs_between_seed_and_modern() {
        assert_eq!(Variant::Seed.vcore_states().name(3), Some("VCORE_RUNNING"));
        assert_eq!(Variant::Modern.vcore_states().name(3), Some("VCORE_SLEEPING"));
        assert_eq!(Variant::Modern.vcore_states().name(4), Some("VCORE_RUNNING"));
        assert_eq!(Variant::Seed.vcore_states().name(6), None);
    }
}
