"""Live: `pyvcore diff` across the kernel matrix, as a user runs it.

Each Debian kernel series the lab can set up is booted with kvm-hv as a module,
diffed against the model on the real lab, and its status checked: the package
booted, kvm-hv a module, the layouts' source (BTF, or DWARF for 6.1, whose gdb
gets the -dbg vmlinux), every vcpu on the thread its id names. 6.12 on every
scenario is ``tests/test_live_scenarios.py``; here each other kernel runs the
scenarios that exercise different kernel paths:

* CI's matrix (the default): 7.2 by path (``--kernel``/``--modules`` at the
  unpacked image, as a user points at their own build) on ``all``, 7.2 by name on
  ``two-vcores`` (two vcores through one core) and ``cede-all`` (every vcpu ceded,
  thread 0 napping), 6.12-64k on ``all``, 7.2-64k on ``novcpu0`` (thread 0 without
  a vcpu), 6.1 on ``all``; SMT8 (``--threads 8``) on ``novcpu0``; stock QEMU on 7.2
  (must be flagged by invariant 8, as on 6.12).
* ``PYVCORE_MATRIX=full``: every scenario on 7.2, and ``all`` and ``novcpu0`` on
  each other kernel and on SMT8 (about 20 minutes more on two cores).

Each run is one boot; the time each took is printed at the end of the session
(``pyvcore live matrix``), so CI shows where its minutes go. A kernel that `lab
setup --kernel NAME` has not unpacked is skipped with the command that sets it
up (a failure in CI, where PYVCORE_REQUIRE_LAB is set).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from live_times import MATRIX_TIMES

from pyvcore.diff import DiffResult, run_diff
from pyvcore.lab.cache import KernelManifest
from pyvcore.lab.scenarios import SCENARIOS, scenario_named

pytestmark = [pytest.mark.lab, pytest.mark.gdb, pytest.mark.timeout(900)]
LOCK_WAIT = float(os.environ.get("PYVCORE_LOCK_WAIT", "600"))
STOPS = int(os.environ.get("PYVCORE_MATRIX_STOPS", "60"))
FULL = os.environ.get("PYVCORE_MATRIX") == "full"

if FULL:
    KERNEL_RUNS = [("7.2", s) for s in SCENARIOS] + [
        (k, s) for k in ("6.12-64k", "7.2-64k", "6.1") for s in ("all", "novcpu0")
    ]
    SMT8_RUNS = ["all", "novcpu0"]
else:
    KERNEL_RUNS = [
        ("7.2", "two-vcores"),
        ("7.2", "cede-all"),
        ("6.12-64k", "all"),
        ("7.2-64k", "novcpu0"),
        ("6.1", "all"),
    ]
    SMT8_RUNS = ["novcpu0"]


def set_up(name: str) -> KernelManifest:
    found = KernelManifest.load(name=name)
    if found is None:
        pytest.skip(f"kernel {name} not set up: run `pyvcore lab setup --kernel {name.split('-')[0]}`")
    return found


def diff(label: str, scenario: str, **kwargs: Any) -> DiffResult:
    started = time.monotonic()
    kwargs.setdefault("stops", STOPS)
    result = run_diff(scenario, lock_wait=LOCK_WAIT, **kwargs)
    MATRIX_TIMES.append((label, time.monotonic() - started, result.verdict, sum(result.judged.values())))
    return result


def assert_clean(result: DiffResult, scenario: str, threads: int = 4) -> None:
    """Clean, every stop kind judged, and every vcpu reported from the thread its id names."""
    assert result.verdict == "clean", (result.verdict, result.error, result.violations[:3])
    assert result.judged and all(n > 0 for n in result.judged.values()), result.judged
    assert result.run is not None
    reports = result.run.reports
    assert [r["vcpu"] for r in reports] == list(scenario_named(scenario).vcpu_ids(threads)), reports
    for rep in reports:
        assert rep["started"] and rep["tir"] == rep["vcpu"] - rep["first_vcpuid"], rep


def assert_booted(result: DiffResult, m: KernelManifest, name: str) -> None:
    """The lab booted the package asked for, kvm-hv as a module, layouts from BTF (DWARF on 6.1)."""
    assert result.run is not None
    status = result.run.status
    assert status["kernel"] == m.package
    assert Path(status["kernel_info"]["kvm_hv"]).name.startswith("kvm-hv.ko")  # a module, not built in
    assert status["kernel_info"]["debug_info"] == ("DWARF" if name == "6.1" else "BTF")
    if name == "6.1":
        assert status["vmlinux"] == m.extra["symbols"] != m.vmlinux  # gdb gets the -dbg vmlinux


@pytest.mark.parametrize(("kernel", "scenario"), KERNEL_RUNS)
def test_debian_kernel_clean(kernel: str, scenario: str) -> None:
    m = set_up(kernel)
    result = diff(f"{kernel} {scenario}", scenario, kernel=kernel)
    assert_clean(result, scenario)
    assert_booted(result, m, kernel)


@pytest.mark.parametrize("scenario", SMT8_RUNS)
def test_smt8_clean(scenario: str) -> None:
    """POWER8's 8 threads per core (KVM_CAP_PPC_SMT 8): each vcpu on thread id % 8."""
    assert_clean(diff(f"6.12 {scenario} --threads 8", scenario, threads=8), scenario, threads=8)


def test_stock_qemu_on_7_2_is_flagged_by_invariant_8() -> None:
    set_up("7.2")
    result = diff("7.2 all --qemu stock", "all", kernel="7.2", qemu="stock", stops=40)
    assert result.verdict == "violations", (result.verdict, result.error)
    assert {v["invariant"] for v in result.violations} >= {8}


def test_bring_your_own_7_2_by_path_clean() -> None:
    """--kernel at the unpacked 7.2 image and --modules at its module tree (.ko.xz)."""
    vmlinux = Path(set_up("7.2").vmlinux)
    tree = next(p for p in vmlinux.parents if p.name.startswith("linux-binary-")).parent
    modules = next(tree.glob("linux-modules-*"))
    result = diff("7.2 by path all", "all", kernel=vmlinux, modules=modules)
    assert_clean(result, "all")
    assert result.run is not None
    status = result.run.status
    # The run's label: the path given, with the module tree it was given (kernel_of's form).
    assert status["kernel"].startswith(f"{vmlinux} with modules from {modules.resolve()}")
    # gdb gets plain ELF modules (the tree has .ko.xz).
    for path in status["module_objects"].values():
        assert Path(path).suffix == ".ko" and Path(path).read_bytes()[:4] == b"\x7fELF"
    assert set(status["modules"]) >= {"kvm", "kvm_hv"}
