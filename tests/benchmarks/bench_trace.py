"""Benchmark of `pyvcore trace` (prints figures; not a timed test).

    python tests/benchmarks/bench_trace.py [SCENARIO ...] [--seconds N] [--mode all|kvm]
    python tests/benchmarks/bench_trace.py --long 600 [--scenario all]

Per scenario: boot to READY and the guest's own scenario time with and without the
plugin (target: at most 2x), stores seen per second, stores decoded, events.  With
``--long S``: one scenario held S seconds with the plugin, QEMU's resident memory
sampled every 10 s (target: bounded — the shadow keeps a ring of events, the
violations and counters, never the trace; the event log goes to a file).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from pyvcore.trace import _vmlinux, run_trace


def per_scenario(scenarios: list[str], seconds: int, mode: str) -> int:
    print(f"{'scenario':<11} {'boot':>14} {'scenario':>16} {'stores/s':>12} {'decoded':>10} {'events':>9}")
    worst = 0.0
    for name in scenarios:
        r = run_trace(name, seconds=seconds, mode=mode, lock_wait=600)
        if r.verdict == "error":
            print(f"{name:<11} error: {r.error}")
            continue
        base = r.baseline
        s = r.summary
        stats = s["stats"]
        secs = s.get("seconds") or 1.0

        def pair(a: float | None, b: float | None) -> str:
            return f"{a or 0:.1f}/{b or 0:.1f}" + (f" {a / b:.2f}x" if a and b else "")

        boot = pair(r.traced.boot_s, base.boot_s if base else None)
        scen = pair(r.traced.scenario_s, base.scenario_s if base else None)
        if r.traced.scenario_s and base and base.scenario_s:
            worst = max(worst, r.traced.scenario_s / base.scenario_s)
        print(
            f"{name:<11} {boot:>14} {scen:>16} {s['stores_seen'] / secs:>12,.0f} "
            f"{stats['stores_checked']:>10,} {stats['events']:>9,}  ({r.verdict})"
        )
    print(f"worst scenario slowdown with the plugin: {worst:.2f}x (target <= 2x)")
    return 0


def long_run(scenario: str, seconds: int, mode: str) -> int:
    import psutil

    from pyvcore.lab import Lab
    from pyvcore.lab.plugin_build import ensure_plugin

    work = Path(tempfile.mkdtemp(prefix="pyvcore-bench-trace-"))
    args = {
        "vmlinux": _vmlinux(None),
        "log": str(work / "events.jsonl"),
        "summary": str(work / "summary.json"),
        "mode": mode,
    }
    lab = Lab(scenario, hold=seconds, lock_wait=600, plugin=(str(ensure_plugin()), args))  # type: ignore[call-arg]
    samples = []
    with lab:
        started = time.monotonic()
        proc = psutil.Process(lab.pid)
        while lab.alive() and time.monotonic() - started < seconds + 60:
            rss = proc.memory_info().rss / 2**20
            samples.append((time.monotonic() - started, rss))
            print(f"t={samples[-1][0]:6.0f} s  QEMU RSS {rss:8.1f} MiB", flush=True)
            if lab.status().get("done"):
                break
            time.sleep(10)
        lab.stop()
    summary = json.loads((work / "summary.json").read_text())
    first, last = samples[0][1], samples[-1][1]
    print(
        f"RSS {first:.1f} -> {last:.1f} MiB over {samples[-1][0]:.0f} s; max {max(s for _, s in samples):.1f} MiB"
    )
    print(
        f"events {summary['stats']['events']:,}, log {(work / 'events.jsonl').stat().st_size / 2**20:.1f} MiB"
    )
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("scenarios", nargs="*", default=["all", "novcpu0", "cede", "doorbell", "sparse", "exits"])
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--mode", default="all")
    p.add_argument("--long", type=int, help="one long traced run of this many seconds (memory)")
    p.add_argument("--scenario", default="all")
    a = p.parse_args()
    if a.long:
        return long_run(a.scenario, a.long, a.mode)
    return per_scenario(a.scenarios, a.seconds, a.mode)


if __name__ == "__main__":
    sys.exit(main())
