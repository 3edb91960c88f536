"""Live: `pyvcore diff` across the kernel matrix, as a user runs it.

Every Debian kernel series the lab can set up is diffed against the model on the
real lab: 7.2 (sid) on every scenario, the 64k-page flavours of 6.12 and 7.2 and
6.1 (layouts from DWARF, not BTF) on ``all`` and ``novcpu0``, SMT8 (``--threads
8``) on the same two, stock QEMU on 7.2 (must be flagged by invariant 8, as on
6.12), and 7.2 pointed at by path as a user points at their own build. 6.12 on
every scenario is ``tests/test_live_scenarios.py``.

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
from pyvcore.lab.scenarios import SCENARIOS

pytestmark = [pytest.mark.lab, pytest.mark.gdb, pytest.mark.timeout(900)]
LOCK_WAIT = float(os.environ.get("PYVCORE_LOCK_WAIT", "600"))
STOPS = int(os.environ.get("PYVCORE_MATRIX_STOPS", "60"))


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


def assert_clean(result: DiffResult) -> None:
    assert result.verdict == "clean", (result.verdict, result.error, result.violations[:3])
    assert result.judged and all(n > 0 for n in result.judged.values()), result.judged


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_kernel_7_2_every_scenario_clean(scenario: str) -> None:
    set_up("7.2")
    assert_clean(diff(f"7.2 {scenario}", scenario, kernel="7.2"))


@pytest.mark.parametrize("scenario", ["all", "novcpu0"])
@pytest.mark.parametrize("kernel", ["6.12-64k", "7.2-64k", "6.1"])
def test_other_kernels_clean(kernel: str, scenario: str) -> None:
    set_up(kernel)
    assert_clean(diff(f"{kernel} {scenario}", scenario, kernel=kernel))


@pytest.mark.parametrize("scenario", ["all", "novcpu0"])
def test_smt8_clean(scenario: str) -> None:
    assert_clean(diff(f"6.12 {scenario} --threads 8", scenario, threads=8))


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
    assert_clean(diff("7.2 by path all", "all", kernel=vmlinux, modules=modules))
