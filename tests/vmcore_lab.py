"""Real vmcores from the lab for the post-mortem tests (QMP ``dump-guest-memory``).

:func:`make_dumps` boots a scenario (held until stopped), waits until its vcpus
run, pauses the machine and writes an ELF and a kdump-compressed vmcore; with
``corrupt`` it then swaps two threads' ``kvm_hstate.ptid`` in guest memory while
the machine stays paused (``gpa2hva`` over the HMP, then ``/proc/PID/mem`` of
QEMU) and dumps again, so the same kernel state is dumped clean and broken.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

# Formats of dump-guest-memory libkdumpfile reads: QEMU's plain "kdump-zlib" is
# makedumpfile's *flattened* stream (made for pipes), which needs `makedumpfile
# -R` first; "kdump-raw-zlib" (QEMU 8.2+) is the seekable file.
FORMATS = {"elf": "elf", "kdump": "kdump-raw-zlib"}
# Dumps at most before a fixture gives up, resumed 0.5 s, 1 s, ... 3 s between, then again from
# 0.5 s: in cede-all the vcore spends long stretches blocked in the host (no PACA points at it),
# and 12 tries in a row once all landed there (CI, a clean clone); each try is independent.
ATTEMPTS = 24


def hmp(qmp_socket: Path, command: str) -> str:
    from qemu.qmp import QMPClient

    async def go() -> str:
        client = QMPClient("pyvcore-test")
        await asyncio.wait_for(client.connect(str(qmp_socket)), 10)
        try:
            return str(
                await asyncio.wait_for(client.execute("human-monitor-command", {"command-line": command}), 30)
            )
        finally:
            await client.disconnect()

    return asyncio.run(go())


def poke(lab: Any, phys: int, data: bytes) -> None:
    """Write ``data`` at guest physical ``phys`` through QEMU's own mapping of guest RAM."""
    answer = hmp(lab.qmp_socket, f"gpa2hva {phys:#x}")
    m = re.search(r"0x[0-9a-f]+", answer.split("is")[-1])
    assert m, f"gpa2hva: {answer!r}"
    with open(f"/proc/{lab.pid}/mem", "r+b") as mem:
        mem.seek(int(m.group(0), 16))
        mem.write(data)


def ptid_targets(vmcore: Path, vmlinux: str) -> list[tuple[int, int]]:
    """(physical address of kvm_hstate.ptid, ptid) of the threads that run a vcpu in the dump."""
    from pyvcore.decode import REAL_ADDRESS_MASK
    from pyvcore.vmcore import DumpMemory, _load_kernel, check_vmcore, open_dump

    _image, reader = _load_kernel(Path(vmlinux), None)
    ctx, kdump = open_dump(vmcore)
    pacas = reader.paca_addresses(DumpMemory(ctx, kdump))
    off = reader.k.paca.offsetof("kvm_hstate.ptid")
    out = []
    for core in check_vmcore(vmcore, vmlinux).cores:
        for t in core.snapshot["threads"]:
            if t["kvm_hstate"]["kvm_vcpu"]:
                out.append(((pacas[t["cpu"]] + off) & REAL_ADDRESS_MASK, t["kvm_hstate"]["ptid"]))
    return out


def has_vcore(vmcore: Path, vmlinux: str) -> bool:
    from pyvcore.vmcore import check_vmcore

    return bool(check_vmcore(vmcore, vmlinux).cores)


def make_dumps(
    scenario: str, out: Path, *, corrupt: bool = False, lock_wait: float = 900.0
) -> dict[str, Any]:
    """Boot ``scenario``, dump it in both formats (and corrupted, with ``corrupt``); returns paths + vmlinux."""
    from pyvcore.lab import Lab
    from pyvcore.vmcore_cli import dump_guest_memory

    out.mkdir(parents=True, exist_ok=True)
    made: dict[str, Any] = {"scenario": scenario}
    with Lab(scenario=scenario, hold=0, lock_wait=lock_wait) as lab:
        # start() returned on READY, or on STALLED (a vcpu that has not run yet:
        # stock QEMU, or a machine too loaded): dump either way, and say which.
        made["stalled"] = lab.status().get("stalled")
        time.sleep(3)  # let the vcpus run a while: vcores in every state the scenario has
        made["vmlinux"] = str(lab.vmlinux)
        # A dump between two vcore runs has no vcore on any PACA (nothing to
        # judge), and `all` spends short moments with one vcpu on the core: resume
        # for a while (0.5 s to 3 s, in turn: a loaded host runs the guest slowly) and
        # dump again until the dump shows what the test needs; both formats are
        # written from the same pause, so they hold the same kernel state.
        want = 2 if corrupt else 1
        seen: list[int] = []
        for attempt in range(ATTEMPTS):
            made["kdump"] = dump_guest_memory(lab.qmp_socket, out / f"{scenario}.kdump", FORMATS["kdump"])
            if corrupt:
                targets = ptid_targets(made["kdump"], made["vmlinux"])
                seen.append(len(targets))
            else:
                seen.append(int(has_vcore(made["kdump"], made["vmlinux"])))
            if seen[-1] >= want:
                break
            hmp(lab.qmp_socket, "cont")
            time.sleep(0.5 * (attempt % 6 + 1))
        assert seen[-1] >= want, (
            f"{scenario}: no dump with {'two threads running a vcpu' if corrupt else 'a vcore'} in {ATTEMPTS} tries "
            f"(per try: {seen})"
        )
        made["elf"] = dump_guest_memory(lab.qmp_socket, out / f"{scenario}.elf", FORMATS["elf"])
        if corrupt:
            # swap the ptids of two threads that run a vcpu: invariant 3 must see it
            (first, a), (second, b) = targets[:2]
            poke(lab, first, bytes([b]))
            poke(lab, second, bytes([a]))
            for name, fmt in FORMATS.items():
                made[f"bad-{name}"] = dump_guest_memory(lab.qmp_socket, out / f"{scenario}-bad.{name}", fmt)
    (out / f"{scenario}.json").write_text(json.dumps({k: str(v) for k, v in made.items()}))
    return made
