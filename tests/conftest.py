"""Shared fixtures: one real lab boot per (scenario, QEMU) for the whole session.

Booting the QEMU powernv8 lab costs 15-25 s and only one QEMU may run on the
machine at a time, so the live tests never boot for themselves: they ask the
session-wide ``live_runs`` cache for a scenario's run (boot, gdb attach, a
bounded pv-watch, detach, the guest's reports, lab torn down) and assert on the
recorded result.  Each (scenario, qemu) boots at most once per session, and a
failed boot is remembered and re-raised instead of retried by every test.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import pytest

# Stops each live run logs.  Enough for every scenario's interesting states to
# show up (measured; see tests/test_live_scenarios.py) while the whole live
# suite stays inside ~10 minutes on a 2-core machine.
LIVE_STOPS = int(os.environ.get("PYVCORE_LIVE_STOPS", "80"))
# Another QEMU on the machine (a developer's `pyvcore lab up`, a parallel run)
# holds the machine lock: wait for it this long instead of failing at once.
LOCK_WAIT = float(os.environ.get("PYVCORE_LOCK_WAIT", "600"))


def pytest_configure(config: pytest.Config) -> None:
    # Also declared in pyproject.toml; repeated here so a run from another
    # rootdir (e.g. an installed wheel's tests) still knows them.
    config.addinivalue_line(
        "markers", "lab: boots the real QEMU powernv8 lab (slow; needs `pyvcore lab setup`)"
    )
    config.addinivalue_line("markers", "gdb: drives a real gdb-multiarch")


# Where the lab must exist (CI sets PYVCORE_REQUIRE_LAB=1 after `pyvcore lab
# setup`), a test skipped because gdb-multiarch, the kernel, the patched QEMU or
# the cross compiler is missing would hide a broken setup behind a green run:
# turn those skips into failures. Skips for other reasons (e.g. PYVCORE_SLOW)
# stay skips.
_MISSING_SETUP_WORDS = ("setup", "set up", "not installed")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and os.environ.get("PYVCORE_REQUIRE_LAB")):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if any(word in reason for word in _MISSING_SETUP_WORDS):
        report.outcome = "failed"
        report.longrepr = f"PYVCORE_REQUIRE_LAB is set, so this skip is a failure: {reason}"


class LiveRuns:
    """Cache of ``pyvcore.diff.run_live`` results keyed by (scenario, qemu)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs: dict[tuple[str, str], Any] = {}
        self.errors: dict[tuple[str, str], BaseException] = {}
        self.wall: dict[tuple[str, str], float] = {}
        # Runs made through the `pyvcore diff --json` CLI: (scenario, qemu) -> its JSON + wall s.
        self.cli: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, scenario: str, qemu: str = "patched", **kwargs: Any) -> Any:
        from pyvcore.diff import run_live

        key = (scenario, qemu)
        if key in self.errors:
            raise self.errors[key]
        if key not in self.runs:
            started = time.monotonic()
            try:
                self.runs[key] = run_live(
                    scenario,
                    qemu=qemu,
                    stops=kwargs.pop("stops", LIVE_STOPS),
                    trace=self.root / f"{scenario}-{qemu}.jsonl",
                    lock_wait=kwargs.pop("lock_wait", LOCK_WAIT),
                    **kwargs,
                )
            except BaseException as exc:
                self.errors[key] = exc
                raise
            finally:
                self.wall[key] = time.monotonic() - started
        return self.runs[key]


_LIVE: LiveRuns | None = None


@pytest.fixture(scope="session")
def live_runs(tmp_path_factory: pytest.TempPathFactory) -> LiveRuns:
    global _LIVE
    if _LIVE is None:
        _LIVE = LiveRuns(tmp_path_factory.mktemp("live-traces"))
    return _LIVE


@pytest.fixture(scope="session")
def live_run(live_runs: LiveRuns) -> Callable[..., Any]:
    """``live_run("cede")`` -> the cached LiveRun of that scenario on patched QEMU."""
    return live_runs.get


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print what the live suite actually saw: stops and snapshots per run."""
    from live_times import write_summary

    write_summary(terminalreporter)
    if _LIVE is None or not (_LIVE.runs or _LIVE.errors or _LIVE.cli):
        return
    from pyvcore.diff import summarize

    tr = terminalreporter
    tr.section("pyvcore live differential runs")
    tr.write_line(
        f"{'scenario':<11} {'qemu':<8} {'stops':>6} {'snapshots':>9} {'violations':>10} "
        f"{'reports':>7} {'boot s':>7} {'watch s':>7} {'wall s':>7}"
    )
    for (scenario, qemu), doc in sorted(_LIVE.cli.items()):
        tr.write_line(
            f"{scenario:<11} {qemu:<8} {sum(k['stops'] for k in doc['stops'].values()):>6} "
            f"{doc['snapshots']:>9} {len(doc['violations']):>10} {len(doc.get('reports', [])):>7} "
            f"{doc['timings'].get('boot_s', 0):>7.1f} {doc['timings'].get('watch_s', 0):>7.1f} "
            f"{doc.get('wall_s', 0):>7.1f}  (pyvcore diff --json)"
        )
    for key in sorted(set(_LIVE.runs) | set(_LIVE.errors)):
        scenario, qemu = key
        if key in _LIVE.errors:
            tr.write_line(f"{scenario:<11} {qemu:<8} FAILED: {_LIVE.errors[key]!r}"[:200])
            continue
        run = _LIVE.runs[key]
        try:
            summary = summarize(run.records)
            violations = str(len(summary.violations))
        except Exception as exc:  # the summary must not hide the test results
            violations = f"? ({exc.__class__.__name__})"
        tr.write_line(
            f"{scenario:<11} {qemu:<8} {len(run.records):>6} {len(run.snapshots):>9} "
            f"{violations:>10} {len(run.reports):>7} {run.timings.get('boot_s', 0):>7.1f} "
            f"{run.timings.get('watch_s', 0):>7.1f} {_LIVE.wall[key]:>7.1f}"
        )
