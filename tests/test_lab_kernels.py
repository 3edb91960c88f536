"""Live: other kernels (by name and by path, as a user points at their own build), a QEMU
given by path and probed for the two POWER8 fixes, the machine without PHBs.

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


@pytest.mark.parametrize("name", ["7.2", "6.12-64k", "7.2-64k", "6.1"])
def test_debian_kernel_by_name_runs_all(name: str) -> None:
    m = manifest(name)
    lab = run(Lab("all", 4, "patched", HOLD, kernel=name, lock_wait=LOCK_WAIT, log=None))
    status = lab.status()
    assert status["kernel"] == m.package
    assert Path(status["kernel_info"]["kvm_hv"]).name.startswith("kvm-hv.ko")  # a module, not built in
    expected = "DWARF" if name == "6.1" else "BTF"
    assert status["kernel_info"]["debug_info"] == expected
    if name == "6.1":
        assert status["vmlinux"] == m.extra["symbols"] != m.vmlinux  # gdb gets the -dbg vmlinux


def test_bring_your_own_kernel_as_a_user_would() -> None:
    """--kernel at the unpacked 7.2 vmlinux and --modules at its module tree (.ko.xz)."""
    m = manifest("7.2")
    vmlinux = Path(m.vmlinux)
    tree = next(p for p in vmlinux.parents if p.name.startswith("linux-binary-")).parent
    modules = next(tree.glob("linux-modules-*"))
    lab = run(
        Lab("novcpu0", 4, "patched", HOLD, kernel=vmlinux, modules=modules, lock_wait=LOCK_WAIT, log=None)
    )
    status = lab.status()
    assert status["kernel"] == str(vmlinux)
    # gdb gets plain ELF modules (the tree has .ko.xz).
    for path in status["module_objects"].values():
        assert Path(path).suffix == ".ko" and Path(path).read_bytes()[:4] == b"\x7fELF"
    assert set(status["modules"]) >= {"kvm", "kvm_hv"}


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
