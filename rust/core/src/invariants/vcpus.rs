//! The vcpus: value ranges, ids within their vcore (1, 2), and the cpu
//! fields of a started vcpu that no PACA holds (6).

use super::ctx::{p, Ctx};
use super::Violation;
use crate::consts::*;
use crate::view::{Vcore, Vcpu};

pub(crate) fn check(cx: &Ctx, out: &mut Vec<Violation>) {
    for (j, v) in cx.s.vcpus.iter().enumerate() {
        values(cx, j, v, out);
        let Some((k, vc)) = cx.vcore(v.vcore) else {
            continue;
        };
        ids(cx, j, v, k, vc, out);
        cpu_fields(cx, j, v, k, vc, out);
    }
}

/// 1, 20, 24: fields with a fixed range.
fn values(cx: &Ctx, j: usize, v: &Vcpu, out: &mut Vec<Violation>) {
    if v.ptid as u32 >= cx.tpc {
        out.push(
            Violation::new(
                1,
                format!(
                    "vcpu {} has ptid {} outside a {}-thread core",
                    v.vcpu_id, v.ptid, cx.tpc
                ),
            )
            .field(p("vcpus", j, "ptid"), v.ptid)
            .field("threads_per_core", cx.s.threads_per_core),
        );
    }
    if let Some(st) = v.state {
        if st > KVMPPC_VCPU_BUSY_IN_HOST {
            out.push(
                Violation::new(20, format!("vcpu {} has unknown arch.state {}", v.vcpu_id, st))
                    .field(p("vcpus", j, "state"), st),
            );
        }
    }
    if let Some(c) = v.ceded {
        if c > 1 {
            out.push(
                Violation::new(24, format!("vcpu {} has arch.ceded {} (0 or 1)", v.vcpu_id, c))
                    .field(p("vcpus", j, "ceded"), c),
            );
        }
    }
}

/// 2, 1: the vcpu id lies in its vcore's range, ptid = id - first_vcpuid.
fn ids(cx: &Ctx, j: usize, v: &Vcpu, k: usize, vc: &Vcore, out: &mut Vec<Violation>) {
    let first = vc.first_vcpuid;
    let in_range = v.vcpu_id >= first && v.vcpu_id - first < cx.tpc;
    if !in_range {
        out.push(
            Violation::new(
                2,
                format!(
                    "vcpu {} is outside its vcore's ids {}..{}",
                    v.vcpu_id,
                    first,
                    first + cx.tpc
                ),
            )
            .field(p("vcpus", j, "vcpu_id"), v.vcpu_id)
            .field(p("vcores", k, "first_vcpuid"), first),
        );
    }
    // Before the seed commit ptid was handed out first-come first-served
    // on every run, so it need not equal vcpu_id - first_vcpuid.
    if cx.aligned && in_range && v.vcpu_id - first != v.ptid as u32 {
        out.push(
            Violation::new(
                1,
                format!(
                    "vcpu {} has ptid {}, not vcpu_id - first_vcpuid = {}",
                    v.vcpu_id,
                    v.ptid,
                    v.vcpu_id - first
                ),
            )
            .field(p("vcpus", j, "ptid"), v.ptid)
            .field(p("vcpus", j, "vcpu_id"), v.vcpu_id)
            .field(p("vcores", k, "first_vcpuid"), first),
        );
    }
}

/// 6: cpu / thread_cpu of a vcpu that no PACA holds.
fn cpu_fields(cx: &Ctx, j: usize, v: &Vcpu, k: usize, vc: &Vcore, out: &mut Vec<Violation>) {
    // vcpu->cpu is vc->pcpu from kvmppc_start_thread until the exit sets
    // it to -1; outside a run it is -1.  Only judged while the vcore is in
    // a run: PREEMPT (modern) moves pcpu while the vcpus are out.
    // A vcpu held by a PACA is judged with its thread in check_threads.
    let held = cx.holder(v.addr).is_some();
    if cx.in_run(vc.vcore_state) && !held {
        if v.cpu != -1 && v.cpu as i64 != vc.pcpu as i64 {
            out.push(
                Violation::new(
                    6,
                    format!(
                        "vcpu {} has cpu {}, not its vcore's pcpu {} (or -1)",
                        v.vcpu_id, v.cpu, vc.pcpu
                    ),
                )
                .field(p("vcpus", j, "cpu"), v.cpu)
                .field(p("vcores", k, "pcpu"), vc.pcpu),
            );
        }
        if let Some(tc) = v.thread_cpu {
            if tc != -1 && tc as i64 != vc.pcpu as i64 + v.ptid as i64 {
                out.push(
                    Violation::new(
                        6,
                        format!(
                            "vcpu {} has thread_cpu {}, not pcpu + ptid = {} (or -1)",
                            v.vcpu_id,
                            tc,
                            vc.pcpu as i64 + v.ptid as i64
                        ),
                    )
                    .field(p("vcpus", j, "thread_cpu"), tc)
                    .field(p("vcpus", j, "ptid"), v.ptid)
                    .field(p("vcores", k, "pcpu"), vc.pcpu),
                );
            }
        }
    }
}
