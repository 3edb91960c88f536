"""``pv-vcpu``: one row per vcpu of the vcores found, gdb-free (tested on fake memory).

What a vcpu of a POWER8 vcore shows (struct kvm_vcpu_arch, arch/powerpc/include/
asm/kvm_host.h): its state (KVMPPC_VCPU_NOTREADY / RUNNABLE / BUSY_IN_HOST),
``ceded`` (it executed H_CEDE and naps until an interrupt or H_PROD),
``prodded`` (an H_PROD is pending), a pending doorbell (``doorbell_request``, or
its thread's bit in the vcore's ``dpdes`` where msgsndp doorbells are kept),
the last exit's interrupt vector ``trap``, its ptid and the thread whose PACA
holds it.  The guest's PC and MSR are live in that thread's registers while the
thread executes the guest; otherwise the values saved at the last exit
(``arch.regs.nip``, ``arch.shregs.msr``) are shown, when the layout has them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyvcore.decode import VCPU_STATES, Memory, ReadError, Reading, ThreadRow, decode_value, name_of
from pyvcore.layout import Layouts
from pyvcore.readplan import ByteOrder
from pyvcore.render import render_table

DETAIL = (
    "vcpu_id",
    "arch.state",
    "arch.ceded",
    "arch.prodded",
    "arch.doorbell_request",
    "arch.trap",
    "arch.ptid",
    "arch.thread_cpu",
    "arch.vcore",
    "arch.regs.nip",
    "arch.shregs.msr",
)


def read_detail(layouts: Layouts, mem: Memory, addr: int, order: ByteOrder) -> dict[str, Any]:
    """The DETAIL fields of the kvm_vcpu at ``addr`` that the layout has (one read
    per field; a field that cannot be read is left out)."""
    s = layouts.struct("kvm_vcpu")
    out: dict[str, Any] = {}
    for path in DETAIL:
        if not s.has(path):
            continue
        f = s.field(path)
        try:
            raw = mem.read(addr + f.offset, f.size)
        except ReadError:
            continue
        out[path] = decode_value(f, raw, 0, order)
    return out


def _doorbell(v: Mapping[str, Any], vcores: Mapping[int, Mapping[str, Any]]) -> str:
    if v.get("arch.doorbell_request"):
        return "yes"
    vc = vcores.get(int(v.get("arch.vcore") or 0)) or {}
    dpdes, ptid = vc.get("dpdes"), v.get("arch.ptid")
    if dpdes is None or ptid is None:
        return "-" if "arch.doorbell_request" not in v else "no"
    return "yes (dpdes)" if int(dpdes) >> int(ptid) & 1 else "no"


def vcpu_tables(
    details: Mapping[int, Mapping[str, Any]],
    reading: Reading,
    vcore_names: Mapping[int, str],
    vcores: Mapping[int, Mapping[str, Any]],
    *,
    width: int | None = None,
) -> str:
    """pv-vcpu's two tables: scheduling state per vcpu, then its guest PC/MSR."""
    from pyvcore.tables import thread_index

    on: dict[int, tuple[str, ThreadRow | None]] = {}
    for row in reading.rows:
        if row.fields and row.hstate("kvm_vcpu"):
            on[int(row.hstate("kvm_vcpu"))] = (f"cpu {row.cpu} / {thread_index(reading, row)}", row)
    state_rows, reg_rows = [], []
    for addr, v in sorted(details.items(), key=lambda kv: (int(kv[1].get("vcpu_id", 0)), kv[0])):
        vid = v.get("vcpu_id", "?")
        where, held = on.get(addr, ("-", None))
        state_rows.append(
            [
                vid,
                vcore_names.get(int(v.get("arch.vcore") or 0), "-"),
                v.get("arch.ptid", "?"),
                name_of(VCPU_STATES, v.get("arch.state")),
                v.get("arch.ceded", "?"),
                v.get("arch.prodded", "?"),
                _doorbell(v, vcores),
                f"{int(v['arch.trap']):#x}" if v.get("arch.trap") is not None else "?",
                where,
            ]
        )
        if held is not None and held.regs.mode == "guest":
            reg_rows.append([vid, f"live ({where})", _hex(held.regs.pc), _hex(held.regs.msr)])
        else:
            reg_rows.append(
                [vid, "saved at exit", _hex(v.get("arch.regs.nip")), _hex(v.get("arch.shregs.msr"))]
            )
    return "\n".join(
        [
            render_table(
                ["vcpu", "vcore", "ptid", "state", "ceded", "prodded", "doorbell", "trap", "in PACA of"],
                state_rows,
                width=width,
            ),
            render_table(["vcpu", "guest pc/msr", "pc", "msr"], reg_rows, width=width),
        ]
    )


def _hex(value: Any) -> str:
    return "?" if value is None else f"{int(value):#x}"
