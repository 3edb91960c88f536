"""Benchmark of `pyvcore trace` (prints figures; not a timed test).

    python tests/benchmarks/bench_trace.py [SCENARIO ...] [--seconds N] [--mode all|kvm] [--save DIR]
    python tests/benchmarks/bench_trace.py --long 600 [--scenario all]
    python tests/benchmarks/bench_trace.py --edges DIR

With ``--save DIR`` each scenario's result (summary with edges) is written to
``DIR/SCENARIO.json``; ``--edges DIR`` prints the edge tables of the saved results
(kernel vs model, both gap kinds) as Markdown, as docs/trace.md shows them.

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

from pyvcore.trace import _preflight, run_trace


def per_scenario(scenarios: list[str], seconds: int, mode: str, save: Path | None) -> int:
    print(
        f"{'scenario':<11} {'boot':>14} {'scenario':>16} {'stores/s':>12} {'decoded':>10} {'checked/s':>9} "
        f"{'events':>9}  verdict"
    )
    worst = 0.0
    for name in scenarios:
        r = run_trace(name, seconds=seconds, mode=mode, lock_wait=1800)
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)
            (save / f"{name}.json").write_text(json.dumps(r.to_dict()))
        if r.verdict == "error":
            print(f"{name:<11} error: {r.error}", flush=True)
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
            f"{stats['stores_checked']:>10,} {stats['stores_checked'] / secs:>9,.0f} {stats['events']:>9,}  "
            f"{r.verdict} ({stats['violations']} violations)",
            flush=True,
        )
    print(f"worst scenario slowdown with the plugin: {worst:.2f}x (target <= 2x)")
    return 0


def long_run(scenario: str, seconds: int, mode: str) -> int:
    import psutil

    from pyvcore.lab import Lab
    from pyvcore.lab.plugin_build import ensure_plugin

    work = Path(tempfile.mkdtemp(prefix="pyvcore-bench-trace-"))
    args = {
        # The lab's kernel, checked as `pyvcore trace` checks it (the plugin reads its BTF).
        "vmlinux": _preflight(
            scenario, qemu="patched", threads=4, seconds=seconds, kernel=None, modules=None
        ),
        "log": str(work / "events.jsonl"),
        "summary": str(work / "summary.json"),
        "mode": mode,
    }
    lab = Lab(scenario, hold=seconds, lock_wait=1800, plugin=(str(ensure_plugin()), args))
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
    stats = summary["stats"]
    secs = summary.get("seconds") or 1.0
    print(
        f"RSS {first:.1f} -> {last:.1f} MiB over {samples[-1][0]:.0f} s; peak {max(s for _, s in samples):.1f} MiB"
    )
    print(
        f"events {stats['events']:,}, log {(work / 'events.jsonl').stat().st_size / 2**20:.1f} MiB; "
        f"stores seen {summary['stores_seen']:,} ({summary['stores_seen'] / secs:,.0f}/s), "
        f"checked {stats['stores_checked']:,} ({stats['stores_checked'] / secs:,.0f}/s) over {secs:.0f} s; "
        f"{stats['violations']} violations, {stats['distinct_states']:,} distinct states"
    )
    return 0


def map_class(old: str, new: str) -> str:
    """An ``entry_exit_map`` edge by what it did (entry bits 0-7, exit bits 8-15, 0x10000
    VCORE_EXIT_REQ), so that the 4-thread interleavings read as a few rows."""
    a, b = int(old, 16), int(new, 16)
    if b == 0:
        return "cleared for the next run"
    if b & 0x10000 and not a & 0x10000:
        return "VCORE_EXIT_REQ set (another subcore's exit)"
    if b & ~a & 0xFFFF != b ^ a:
        return "bits cleared (not a store any thread makes)"
    gained_entry, gained_exit = (b & ~a) & 0xFF, (b & ~a) >> 8 & 0xFF
    what = "entry" if gained_entry else "exit"
    if gained_entry and gained_exit:
        what = "entry and exit"
    several = bin(gained_entry).count("1") > 1 or bin(gained_exit).count("1") > 1
    return f"{what} bit{'s of two threads in one change' if several or what == 'entry and exit' else ' set'}"


def edge_tables(save: Path) -> int:
    """Markdown edge tables of the results saved by ``--save``: one row per field edge,
    ``entry_exit_map`` edges grouped by what they did (with how many edges each row holds)."""
    from pyvcore.lab.scenarios import scenario_named
    from pyvcore.trace_edges import compare, kernel_edges, model_edges

    for f in sorted(save.glob("*.json")):
        r = json.loads(f.read_text())
        s = r["summary"]
        if not s:
            print(f"### {f.stem}: no result ({r.get('error')})\n")
            continue
        # The model holds one vcore: vcpu ids 0..3 on 4 threads (two-vcores' first).
        vcpus = [v for v in scenario_named(f.stem).ids.get(4, ()) if v < 4]
        rows = compare(kernel_edges(s), model_edges(s.get("variant", "modern"), 4, vcpus))
        count = {w: sum(1 for x in rows if x["where"] == w) for w in ("both", "kernel only", "model only")}
        print(
            f"`{f.stem}` (vcpus {vcpus}; {s['stats']['events']:,} events, {r['verdict']}): "
            f"{count['both']} edges on both sides, {count['kernel only']} kernel only, "
            f"{count['model only']} model only\n"
        )
        groups: dict[tuple[str, str, str], tuple[int, list[str]]] = {}
        for x in rows:
            if x["where"] == "both":
                continue
            edge = f"{x['old']} -> {x['new']}"
            if x["field"] == "vcore.entry_exit_map":
                edge = map_class(x["old"], x["new"])
            n, fns = groups.get((x["field"], edge, x["where"]), (0, []))
            groups[(x["field"], edge, x["where"])] = (
                n + 1,
                fns + [g for g in x["functions"] if g not in fns],
            )
        print("| field | edge | seen in | edges | kernel functions |\n|---|---|---|---|---|")
        for (field, edge, where), (n, fns) in sorted(groups.items()):
            print(f"| `{field}` | {edge} | {where} | {n} | {', '.join(fns[:3])} |")
        print()
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    from pyvcore.lab.scenarios import SCENARIOS

    p.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--mode", default="all")
    p.add_argument("--long", type=int, help="one long traced run of this many seconds (memory)")
    p.add_argument("--scenario", default="all")
    p.add_argument("--save", type=Path, help="write each scenario's result to DIR/SCENARIO.json")
    p.add_argument("--edges", type=Path, help="print the edge tables of the results saved in DIR")
    a = p.parse_args()
    if a.edges:
        return edge_tables(a.edges)
    if a.long:
        return long_run(a.scenario, a.long, a.mode)
    return per_scenario(a.scenarios, a.seconds, a.mode, a.save)


if __name__ == "__main__":
    sys.exit(main())
