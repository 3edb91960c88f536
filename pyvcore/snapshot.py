"""The snapshot object one stop produces (format version 2), from what the reader read.

The format is documented once, in the module doc of ``rust/core/src/view.rs``
(the checker's reader).  This module only writes it: the kernel's field
names, registers per thread, the timebase of the stop, and where the vcore
was found (``vcore_from``: empty when no vcore could be read, so the stop is
not judged for the vcore invariants).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyvcore.decode import KernelLayout, ThreadRow

SNAPSHOT_VERSION = 2

HSTATE_FIELDS = ("in_guest", "napping", "hwthread_req", "hwthread_state", "ptid", "kvm_vcpu", "kvm_vcore")
HSTATE_POINTERS = ("kvm_vcpu", "kvm_vcore")
VCORE_FIELDS = (
    "n_runnable",
    "num_threads",
    "napping_threads",
    "first_vcpuid",
    "pcpu",
    "vcore_state",
    "in_guest",
)
# Written when the kernel has them.  dpdes: the doorbells pending for the
# vcore's virtual threads (struct kvmppc_vcore in
# arch/powerpc/include/asm/kvm_host.h), saved from the DPDES register by
# thread 0 on guest exit and loaded again on entry (book3s_hv_rmhandlers.S,
# VCORE_DPDES).
# tb_offset: the guest's timebase minus the host's (ticks, modulo 2^64),
# set by KVM_SET_ONE_REG KVM_REG_PPC_TB_OFFSET; tb_offset_applied: the offset
# thread 0 added to the core's TB at this run's guest entry and has not taken
# off again (kvmppc_hv_entry / kvmhv_switch_to_host in book3s_hv_rmhandlers.S).
# With them the checker puts the stop's ``tb`` on the host's timebase.
VCORE_OPTIONAL = ("n_woken", "nap_count", "dpdes", "tb_offset", "tb_offset_applied")
VCORE_WIDE = ("tb_offset", "tb_offset_applied")
VCORE_POINTERS = ("runner", "kvm")
# Per-thread registers written when read: pc, msr (the thread's mode),
# lpidr/sdr1 (one register per core on POWER8), hdec, dpdes (SPR 176).  The
# 64-bit ones are written like addresses.
THREAD_REGISTERS = ("pc", "msr", "lpidr", "sdr1", "hdec", "dpdes")
THREAD_WIDE = ("pc", "msr", "sdr1")


def address(value: Any) -> int:
    """A kernel address or other 64-bit value as the snapshot carries it."""
    return int(value) & 0xFFFF_FFFF_FFFF_FFFF


def build_snapshot(
    k: KernelLayout,
    rows: list[ThreadRow],
    vcores: dict[int, dict[str, Any]],
    vcpus: dict[int, dict[str, Any]],
    kvms: dict[int, dict[str, Any]],
    *,
    threads_per_core: int,
    stop: str | None,
    tb_freq: int | None = None,
    stopper: int | None = None,
    vcore_from: dict[int, str] | None = None,
) -> dict[str, Any]:
    """The snapshot JSON object (kernel field names).

    ``tb`` is the timebase of the stopping thread (gdb thread ``stopper``), else
    of the first thread whose timebase was read; ``tb_freq`` is the kernel's
    ``ppc_tb_freq`` in Hz."""
    snap: dict[str, Any] = {
        "version": SNAPSHOT_VERSION,
        "variant": k.variant,
        "threads_per_core": threads_per_core,
    }
    if stop:
        snap["stop"] = stop
    tbs = [r.regs.tb for r in rows if r.regs.tb is not None and r.regs.gdb_thread == stopper]
    tbs += [r.regs.tb for r in rows if r.regs.tb is not None]
    if tbs:
        snap["tb"] = int(tbs[0])
    if tb_freq:
        snap["tb_freq"] = int(tb_freq)
    snap["threads"] = [_thread(row) for row in rows if row.cpu is not None and row.fields]
    snap["vcores"] = [_vcore(k, addr, vc) for addr, vc in vcores.items()]
    snap["vcore_from"] = sorted(set((vcore_from or {}).get(a, "?") for a in vcores))
    snap["vcpus"] = [_vcpu(addr, v) for addr, v in vcpus.items()]
    if kvms:
        kv = next(iter(kvms.values()))
        kd: dict[str, Any] = {"lpid": int(kv.get("arch.lpid", 0)), "sdr1": address(kv.get("arch.sdr1", 0))}
        if "arch.host_lpid" in kv:
            kd["host_lpid"] = int(kv["arch.host_lpid"])
        if "arch.host_sdr1" in kv:
            kd["host_sdr1"] = address(kv["arch.host_sdr1"])
        snap["kvm"] = kd
    return snap


def _thread(row: ThreadRow) -> dict[str, Any]:
    hstate = {}
    for n in HSTATE_FIELDS:
        value = int(row.hstate(n) or 0)
        hstate[n] = address(value) if n in HSTATE_POINTERS else value
    t: dict[str, Any] = {
        "cpu": int(row.fields.get("paca_index", row.cpu or 0)),
        "hw_cpu_id": int(row.fields.get("hw_cpu_id", row.regs.pir or 0)),
        "kvm_hstate": hstate,
    }
    for reg in THREAD_REGISTERS:
        value = getattr(row.regs, reg)
        if value is not None:
            t[reg] = address(value) if reg in THREAD_WIDE else int(value)
    return t


def _vcore(k: KernelLayout, addr: int, vc: dict[str, Any]) -> dict[str, Any]:
    d: dict[str, Any] = {"addr": address(addr)}
    for n in (*VCORE_FIELDS, k.entry_exit, *VCORE_OPTIONAL):
        if n in vc:
            d[n] = address(vc[n]) if n in VCORE_WIDE else int(vc[n])
    for n in VCORE_POINTERS:
        if n in vc:
            d[n] = address(vc[n])
    return d


def _vcpu(addr: int, v: dict[str, Any]) -> dict[str, Any]:
    d = {
        "addr": address(addr),
        "vcpu_id": int(v["vcpu_id"]),
        "vcore": address(v["arch.vcore"]),
        "ptid": int(v["arch.ptid"]),
        "cpu": int(v["cpu"]),
    }
    for key, path in (("thread_cpu", "arch.thread_cpu"), ("state", "arch.state"), ("ceded", "arch.ceded")):
        if path in v:
            d[key] = int(v[path])
    return d


# 64-bit kernel values written as hex strings (JSON numbers lose precision
# above 2^53 in many readers); small counters and bit words stay integers.
WIRE_HEX: dict[str, tuple[str, ...]] = {
    "": ("tb",),
    "threads": ("lpidr", "sdr1", "pc", "msr", "dpdes", "hdec"),
    "kvm_hstate": ("kvm_vcpu", "kvm_vcore"),
    "vcores": ("addr", "runner", "kvm", "dpdes", "tb_offset", "tb_offset_applied"),
    "vcpus": ("addr", "vcore"),
    "kvm": ("lpid", "sdr1", "host_lpid", "host_sdr1"),
}


def _hex(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    out = dict(d)
    for k in keys:
        v = out.get(k)
        if isinstance(v, int) and not isinstance(v, bool):
            out[k] = f"{v & 0xFFFF_FFFF_FFFF_FFFF:#x}"
    return out


def to_wire(record: dict[str, Any]) -> dict[str, Any]:
    """A snapshot (or a log record holding one) as written to JSON: addresses,
    SPRs and the timebase as hex strings ``"0xc000000028c26d00"``, the rest as
    is.  Other keys of a record (violations, problems, ...) are kept unchanged."""
    out = _hex(record, WIRE_HEX[""])
    if isinstance(out.get("threads"), list):
        out["threads"] = [
            {
                **_hex(t, WIRE_HEX["threads"]),
                "kvm_hstate": _hex(t.get("kvm_hstate", {}), WIRE_HEX["kvm_hstate"]),
            }
            for t in out["threads"]
        ]
    for key in ("vcores", "vcpus"):
        if isinstance(out.get(key), list):
            out[key] = [_hex(x, WIRE_HEX[key]) for x in out[key]]
    if isinstance(out.get("kvm"), dict):
        out["kvm"] = _hex(out["kvm"], WIRE_HEX["kvm"])
    return out


def _unhex(d: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    out = dict(d)
    for k in keys:
        v = out.get(k)
        if isinstance(v, str):
            # Not a number: left as it is, for the checker to name.
            with contextlib.suppress(ValueError):
                out[k] = int(v, 16) if v.lower().startswith("0x") else int(v)
    return out


def from_wire(record: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`to_wire`: a record as read from JSON, with the hex-string
    addresses, SPRs and timebase back as ints (integers already there stay), so Python
    code compares them as numbers. Anything that is not a snapshot is returned as is."""
    out = _unhex(record, WIRE_HEX[""])
    if isinstance(out.get("threads"), list):
        out["threads"] = [
            {
                **_unhex(t, WIRE_HEX["threads"]),
                "kvm_hstate": _unhex(t.get("kvm_hstate", {}), WIRE_HEX["kvm_hstate"]),
            }
            if isinstance(t, dict)
            else t
            for t in out["threads"]
        ]
    for key in ("vcores", "vcpus"):
        if isinstance(out.get(key), list):
            out[key] = [_unhex(x, WIRE_HEX[key]) if isinstance(x, dict) else x for x in out[key]]
    if isinstance(out.get("kvm"), dict):
        out["kvm"] = _unhex(out["kvm"], WIRE_HEX["kvm"])
    return out
