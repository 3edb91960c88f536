"""`pyvcore check --vmcore`: the report of :func:`pyvcore.vmcore.check_vmcore`, and lab dumps.

Text (one line per core with a vcore, its violations, what could not be
judged and why) or ``--json`` (addresses as hex strings); exit 0 clean, 1
violations, 2 unusable input or nothing to judge.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pyvcore.vmcore import VmcoreError, VmcoreReport, check_vmcore


# ------------------------------------------------------------------ reporting
def turned_off(missing: list[str]) -> dict[int, str]:
    """Invariant -> statement, for the checks that need a register the dump lacks.

    From the invariant table's ``needs`` where pyvcore has it; otherwise the
    one check known to read SPRs: invariant 8 (LPIDR/SDR1 are one register
    per core on POWER8, book3s_hv_rmhandlers.S writes them on the primary only).
    """
    from pyvcore import checker

    table = getattr(checker, "invariants", None)
    out: dict[int, str] = {}
    if table is not None:
        for info in table():
            if any(reg in str(need) for need in info.needs for reg in missing):
                out[int(info.number)] = str(info.title)
        return out
    return {8: checker.INVARIANTS.get(8, "LPIDR/SDR1 per core")} if {"lpidr", "sdr1"} & set(missing) else {}


def format_report(report: VmcoreReport) -> str:
    lines = [
        f"{report.vmcore}: {report.fmt} dump of {report.release or 'an unknown kernel'}, "
        f"{report.notes} cpu register notes, {len(report.cores)} core(s) with a vcore"
    ]
    off = turned_off(report.missing)
    if off:
        regs = ", ".join(r.upper() for r in report.missing)
        lines.append(
            f"not in a dump's notes: {regs}; so not judged: "
            + "; ".join(f"invariant {n} ({t})" for n, t in sorted(off.items()))
        )
    for skipped in report.skipped:
        lines.append(f"{skipped}: nothing to judge")
    for core in report.cores:
        vcores = ", ".join(hex(v["addr"]) for v in core.snapshot["vcores"])
        lines.append(
            f"core {core.core} (cpus {', '.join(map(str, core.cpus))}): vcore {vcores}: "
            + (f"{len(core.violations)} violations" if core.violations else "no invariant violated")
        )
        for v in core.violations:
            lines.append(f"    invariant {v.invariant}: {v.message}")
        for n, why in core.not_judged:
            lines.append(f"    not judged: invariant {n}: {why}")
        for problem in core.problems:
            lines.append(f"    note: {problem}")
    for problem in report.problems:
        lines.append(f"note: {problem}")
    verdict = {"clean": "clean", "violations": f"{len(report.violations)} violations"}.get(
        report.verdict, "not judged: no core of this dump has a vcore"
    )
    lines.append(f"verdict: {verdict}")
    return "\n".join(lines)


def to_dict(report: VmcoreReport) -> dict[str, Any]:
    from pyvcore.diff import hexify

    doc: dict[str, Any] = hexify(
        {
            "vmcore": str(report.vmcore),
            "format": report.fmt,
            "release": report.release,
            "verdict": report.verdict,
            "missing_registers": report.missing,
            "not_judged_for_missing_registers": sorted(turned_off(report.missing)),
            "cores": [
                {
                    "core": c.core,
                    "cpus": c.cpus,
                    "snapshot": c.snapshot,
                    "violations": [v.to_dict() for v in c.violations],
                    "not_judged": c.not_judged,
                    "problems": c.problems,
                }
                for c in report.cores
            ],
            "skipped": report.skipped,
            "problems": report.problems,
        }
    )
    return doc


def run(args: Any) -> int:
    """`pyvcore check --vmcore FILE --vmlinux VMLINUX [--modules DIR] [--json]`: 0 clean, 1 violations, 2 unusable."""
    import json

    if not args.vmlinux:
        print("pyvcore check: --vmcore needs --vmlinux VMLINUX (the dumped kernel)", file=sys.stderr)
        return 2
    try:
        report = check_vmcore(args.vmcore, args.vmlinux, args.modules, getattr(args, "variant", None))
    except VmcoreError as exc:
        print(f"pyvcore check: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(to_dict(report)) if args.json else format_report(report))
    return report.exit_code


def dump_guest_memory(
    qmp_socket: str | Path, out: str | Path, fmt: str = "elf", timeout: float = 600.0
) -> Path:
    """Have QEMU write a vmcore of the stopped machine (QMP ``dump-guest-memory``), for tests and demos.

    ``fmt``: "elf" or "kdump-zlib" (makedumpfile's compressed format).  The
    machine is paused for the dump (all vCPUs at once: a consistent state) and
    left paused; ``cont`` over QMP resumes it.  Raises VmcoreError.
    """
    import asyncio

    from qemu.qmp import QMPClient

    out = Path(out).resolve()

    async def go() -> None:
        client = QMPClient("pyvcore-vmcore")
        await asyncio.wait_for(client.connect(str(qmp_socket)), 10)
        try:
            await asyncio.wait_for(client.execute("stop"), 10)
            args = {"paging": False, "protocol": f"file:{out}", "format": fmt}
            await asyncio.wait_for(client.execute("dump-guest-memory", args), timeout)
        finally:
            await asyncio.wait_for(client.disconnect(), 10)

    try:
        asyncio.run(go())
    except Exception as exc:
        from pyvcore.errors import describe

        raise VmcoreError(f"dump-guest-memory ({fmt}) failed: {describe(exc)}") from None
    return out
