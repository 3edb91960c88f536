"""Does a QEMU binary have the two fixes a POWER8 KVM-HV host needs? Found by running it.

No version is read: the lab boots the binary once with the ``doorbell`` scenario (every
vcpu of one vcore reads its thread id, sends a directed privileged doorbell to each
sibling thread with ``msgsndp``, then spins) and reads the guest's reports:

LPIDR/SDR1 shared between the threads of a core
    POWER8 keeps one LPIDR and SDR1 per core; Linux's P8 guest entry writes them on the
    primary thread only (arch/powerpc/kvm/book3s_hv_rmhandlers.S, ``kvmppc_hv_entry``).
    A QEMU that keeps them per thread (target/ppc/misc_helper.c ``helper_store_lpidr``,
    ``helper_store_sdr1``) runs the secondary threads with the host's partition: their
    vcpus never execute a guest instruction (the guest reports STALLED).
msgsndp on POWER8 without HFSCR[MSGP]
    POWER8 has no HFSCR control over msgsndp (ISA 2.07); a QEMU that checks it anyway
    (target/ppc/excp_helper.c ``helper_msgsndp``) raises a facility-unavailable
    interrupt, which the guest sees as a program check on its msgsndp.

The answer is cached per binary (by content hash) under ``<cache>/qemu-probe``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from pyvcore.lab.cache import cache_dir

PROBE_SCENARIO = "doorbell"
PROBE_HOLD = 4

FIXES = {
    "lpidr-sdr1": (
        "LPIDR/SDR1 shared between POWER8 threads",
        "vcpus off hardware thread 0 never run: the guest reports STALLED and `pyvcore diff` "
        "sees a vcore whose secondary threads never enter the guest",
    ),
    "msgsndp": (
        "msgsndp on POWER8 needs no HFSCR[MSGP]",
        "a guest msgsndp traps (facility unavailable) instead of sending a doorbell: the "
        "doorbell scenario reports msgsndp_traps and no doorbells received",
    ),
}


@dataclass
class ProbeResult:
    """What the probe saw: ``missing`` fix names (keys of :data:`FIXES`) and the evidence."""

    binary: str
    sha256: str
    missing: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    judged: bool = True  # False: the boot itself failed, nothing could be concluded

    def describe(self) -> list[str]:
        """One line per missing fix: what is missing and what the user will see."""
        return [f"{self.binary} lacks the fix '{FIXES[m][0]}': {FIXES[m][1]}" for m in self.missing]


def binary_hash(binary: Path) -> str:
    digest = hashlib.sha256()
    with open(binary, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def judge(reports: list[dict[str, Any]], stalled: list[int] | None) -> tuple[list[str], dict[str, Any]]:
    """The missing fixes from the doorbell scenario's reports (pure; see the module doc)."""
    missing = []
    never_ran = sorted(r["vcpu"] for r in reports if not r.get("started")) or sorted(stalled or [])
    traps = sum(int(r.get("msgsndp_traps") or 0) for r in reports)
    received = sum(int(r.get("doorbells_received") or 0) for r in reports)
    sent = sum(int(r.get("doorbells_sent") or 0) for r in reports)
    if never_ran:
        missing.append("lpidr-sdr1")
    if traps:  # a lone vcpu 0 still sends (the guest stops waiting for siblings that never run)
        missing.append("msgsndp")
    evidence = {
        "never_ran": never_ran,
        "msgsndp_traps": traps,
        "doorbells_sent": sent,
        "doorbells_received": received,
    }
    return missing, evidence


def probe_qemu(
    binary: Path, *, lock_wait: float = 0.0, log: Callable[[str], None] | None = None, refresh: bool = False
) -> ProbeResult:
    """Probe ``binary`` (cached by its content hash). Boots the lab once when not cached."""
    from pyvcore.lab import Lab, LabError

    sha = binary_hash(binary)
    cached = cache_dir() / "qemu-probe" / f"{sha}.json"
    if cached.is_file() and not refresh:
        try:
            return ProbeResult(**json.loads(cached.read_text()))
        except (ValueError, TypeError):
            pass
    if log:
        log(f"probing {binary} for the POWER8 fixes (one short boot, cached afterwards)")
    lab = Lab(PROBE_SCENARIO, 4, str(binary), PROBE_HOLD, lock_wait=lock_wait, log=None, probe=False)
    result = ProbeResult(str(binary), sha)
    try:
        lab.start()
        lab.wait_for(r"PYVCORE DONE", timeout=120)
        console = lab._poll()
        parsed = console.parsed if console else None
        reports = parsed.reports if parsed else []
        result.missing, result.evidence = judge(reports, parsed.stalled if parsed else None)
    except LabError as err:
        result.judged = False
        result.evidence = {"error": str(err)}
    finally:
        lab.stop()
    if result.judged:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result
