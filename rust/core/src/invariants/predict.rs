//! What the model expects each PACA to hold, for side-by-side tables.

use serde::Serialize;

use crate::consts::*;
use crate::view::{Snapshot, Vcore};

/// What the model says one thread's PACA should hold, for side-by-side tables.
/// `None` = the model allows any value here (stale fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Prediction {
    /// Index of the thread in the core.
    pub thread: usize,
    pub cpu: u32,
    pub ptid: Option<u8>,
    pub kvm_vcpu: Option<u64>,
    pub kvm_vcore: Option<u64>,
    /// vcpu_id of the vcpu expected on this thread, if any.
    pub vcpu_id: Option<u32>,
}

/// The vcore the model expects on the core whose thread 0 is cpu `base`: the
/// one in a run with that pcpu (RUNNING before STARTING/PIGGYBACK before
/// EXITING).
pub fn active_vcore(s: &Snapshot, base: u32) -> Option<&Vcore> {
    let st = s.variant.vcore_states();
    let rank = |state: u8| {
        if state == st.running {
            Some(0)
        } else if Some(state) == st.starting || Some(state) == st.piggyback {
            Some(1)
        } else if state == st.exiting {
            Some(2)
        } else {
            None
        }
    };
    s.vcores
        .iter()
        .filter(|v| v.pcpu == base)
        .filter_map(|v| rank(v.vcore_state).map(|r| (r, v)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, v)| v)
}

/// Per thread of the snapshot's core: the PACA ptid / kvm_vcpu / kvm_vcore
/// the model expects, given the vcores and vcpus of the snapshot.
///
/// Seed/modern place vcpu `first_vcpuid + N` on thread `pcpu + N`; prepatch
/// placed a vcpu on `pcpu + arch.ptid`, with ptid chosen per run, so its
/// prediction follows the observed arch.ptid.  A vcpu counts as started when
/// it is RUNNABLE (or its state is unknown).
pub fn predict(s: &Snapshot) -> Vec<Prediction> {
    let modern = s.variant == Variant::Modern;
    let tpc = s.threads_per_core.clamp(1, MAX_SMT_THREADS as u32);
    s.threads
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let Some(vc) = active_vcore(s, t.cpu - t.cpu % tpc) else {
                return Prediction {
                    thread: i,
                    cpu: t.cpu,
                    ptid: None,
                    kvm_vcpu: Some(0),
                    // Modern release clears kvm_vcore; the seed leaves it stale.
                    kvm_vcore: if modern { Some(0) } else { None },
                    vcpu_id: None,
                };
            };
            let n = t.cpu as i64 - vc.pcpu as i64;
            let vcpu = s.vcpus.iter().find(|v| {
                v.vcore == vc.addr
                    && v.state.is_none_or(|st| st == KVMPPC_VCPU_RUNNABLE)
                    && match s.variant {
                        Variant::Prepatch => v.ptid as i64 == n,
                        _ => v.vcpu_id as i64 - vc.first_vcpuid as i64 == n,
                    }
            });
            let participates = n == 0 || vcpu.is_some();
            Prediction {
                thread: i,
                cpu: t.cpu,
                ptid: u8::try_from(n).ok().filter(|_| participates),
                kvm_vcpu: Some(vcpu.map_or(0, |v| v.addr)),
                kvm_vcore: if participates {
                    Some(vc.addr)
                } else if modern {
                    Some(0)
                } else {
                    None
                },
                vcpu_id: vcpu.map(|v| v.vcpu_id),
            }
        })
        .collect()
}
