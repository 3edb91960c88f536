"""Every benchmark under tests/benchmarks starts: its imports resolve and ``--help`` exits 0,
or, for one that runs only inside gdb, it says so without a traceback (a benchmark is run by hand, so an import that a refactoring broke would otherwise go unseen
until someone needs the figures)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = sorted((ROOT / "tests" / "benchmarks").glob("bench_*.py"))


def test_the_benchmarks_are_found() -> None:
    assert len(BENCHMARKS) >= 5, BENCHMARKS


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_a_benchmark_starts(path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120, env=env
    )
    said = proc.stdout + proc.stderr
    assert "Traceback" not in said, said[-2000:]
    if "inside gdb" in said:  # gdb's Python only: it says how to run it
        return
    assert proc.returncode == 0, said[-2000:]
    assert "usage:" in proc.stdout
