"""Live: a QEMU given by path and probed for the two POWER8 fixes, the machine with PHBs.
(Other kernels, by name and by path, are `tests/test_live_matrix.py`.)

Each test boots the lab once with a short hold. Kernels that `pyvcore lab setup --kernel
NAME` has not unpacked are skipped with the command that sets them up (in CI, where
PYVCORE_REQUIRE_LAB is set, such a skip fails)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyvcore.lab import Lab, LabError
from pyvcore.lab.cache import KernelManifest
from pyvcore.lab.scenarios import scenario_named
from pyvcore.lab.tools import STOCK_QEMU

pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]
LOCK_WAIT = float(os.environ.get("PYVCORE_LOCK_WAIT", "600"))
HOLD = 2


def manifest(name: str) -> KernelManifest:
    found = KernelManifest.load(name=name)
    if found is None:
        pytest.skip(f"kernel {name} not set up: run `pyvcore lab setup --kernel {name.split('-')[0]}`")
    return found


def run(lab: Lab) -> Lab:
    """Boot, let the scenario finish, and check every vcpu ran on its own thread."""
    try:
        lab.start()
        done = lab.wait_for(r"PYVCORE DONE scenario=\S+ status=(\S+)", timeout=180)
        assert done.group(1) == "ok", lab.console_text()[-2000:]
        lab.wait_exit(timeout=60)
    finally:
        lab.stop()
    ids = scenario_named(lab.scenario).vcpu_ids(lab.threads)
    reports = lab.reports()
    assert [r["vcpu"] for r in reports] == list(ids)
    for rep in reports:
        assert rep["started"] and rep["tir"] == rep["vcpu"] - rep["first_vcpuid"], rep
    return lab


def test_stock_qemu_by_path_is_probed_and_both_fixes_named(tmp_path: Path) -> None:
    from pyvcore.lab.probe import probe_qemu

    result = probe_qemu(STOCK_QEMU, lock_wait=LOCK_WAIT, refresh=True)
    assert result.judged, result.evidence
    assert result.missing == ["lpidr-sdr1", "msgsndp"], result.evidence
    assert result.evidence["never_ran"] == [1, 2, 3] and result.evidence["msgsndp_traps"] > 0
    lines = result.describe()
    assert "STALLED" in lines[0] and "msgsndp" in lines[1]


def test_patched_qemu_by_path_has_both_fixes() -> None:
    from pyvcore.lab.inputs import resolve_qemu
    from pyvcore.lab.probe import probe_qemu

    try:
        _, binary = resolve_qemu("patched")
    except LabError as err:
        pytest.skip(f"{err}")
    result = probe_qemu(binary, lock_wait=LOCK_WAIT, refresh=True)
    assert result.judged and result.missing == [], result.evidence
    assert result.evidence["doorbells_received"] > 0


def test_machine_with_phbs_still_boots_and_ends_by_opal_power_off() -> None:
    """The default machine has no PHBs; the one QEMU builds by default still works."""
    lab = run(Lab("all", 4, "patched", HOLD, phbs=True, lock_wait=LOCK_WAIT, log=None))
    assert "PCI: Probing slots" in lab.console_text()
    assert lab.status()["stages"]["firmware"] > 0
