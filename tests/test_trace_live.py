"""pyvcore trace on the real lab (QEMU with the plugin): every scenario clean on patched QEMU, the
LPIDR/SDR1 sharing bug of stock QEMU flagged through invariant 8 at its first store,
and prepatch refuted by a real placement event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyvcore.lab.scenarios import SCENARIOS
from pyvcore.trace import run_trace

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_patched_qemu_is_clean(scenario: str, tmp_path: Path) -> None:
    r = run_trace(
        scenario, qemu="patched", seconds=3, out=tmp_path / "ev.jsonl", baseline=False, lock_wait=900
    )
    assert r.verdict != "error", r.error
    found = [(v["invariant"], v["seq"], v["field"], v["message"]) for v in r.summary["violations"]]
    assert r.verdict == "clean", f"{r.summary['stats']['violations']} violations, first: {found[:4]}"
    assert (r.traced.done or {}).get("status") == "ok", r.traced.done
    stats = r.summary["stats"]
    assert stats["events_per_field"]["kvm_hstate.in_guest"] > 8
    assert stats["events_per_field"]["vcore.entry_exit_map"] > 8
    # The guest's own timebase (the `tb` register), not the host clock.
    assert r.summary["tb_source"] == "tb register"
    if scenario == "all":
        assert r.summary["prepatch_refuted_by"] is not None


def test_stock_qemu_is_flagged_by_invariant_8(tmp_path: Path) -> None:
    log = tmp_path / "ev.jsonl"
    r = run_trace("all", qemu="stock", seconds=3, out=log, baseline=False, lock_wait=900)
    assert r.verdict == "violations", r.error
    first = r.summary["violations"][0]
    assert first["invariant"] == 8
    assert first["field"].endswith((".lpidr", ".sdr1")), first["field"]
    assert not first["field"].startswith("threads[0]"), "a secondary read the host's value"
    mtspr = [e for e in first["events"] if e["field"] == "threads[0].mtspr_lpidr"]
    assert mtspr, "thread 0 switched LPIDR shortly before"
    # The log replays to the same first violation.
    from pyvcore import _core

    again = json.loads(_core.replay_events(log.read_text()))
    assert (again["violations"][0]["seq"], again["violations"][0]["invariant"]) == (first["seq"], 8)
