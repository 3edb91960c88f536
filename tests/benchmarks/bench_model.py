"""Benchmark of the model: explorer size, time and peak memory (doorbell state
included) and snapshot-check throughput (snapshots/s through ``pyvcore
check``) for N = 2, 4, 8 threads.

    python tests/benchmarks/bench_model.py [--quick] [--snapshots K] [--workers K] [--compare]

Targets (2-core machine): a full N=4 exploration under 0.5 s, N=8 under 5 s,
>= 100,000 snapshots/s checked from Python.  Prints the state count, the
wall time, the CPU time the process spent in it (user + system, every
thread: the fairer figure on a shared machine), the explorer's own estimate
of its peak memory and the process's peak RSS; asserts nothing.
``--compare`` also runs the full search (``reduction=False``: no symmetry,
subsumption or dead-value merging) at N = 2 and at N = 4 with smaller bounds
(no doorbell, no prod, one cede), and prints both state counts.
The check traces are model snapshots from random legal walks (so the checker
does its full work on realistic states, none violating).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

from pyvcore import Vcore, check_trace, explore


def walk_snapshots(variant: str, threads: int, count: int, seed: int = 1) -> list[str]:
    """``count`` snapshot lines from random legal walks (restarting after each run)."""
    rng = random.Random(seed)
    lines: list[str] = []
    while len(lines) < count:
        vc = Vcore(variant, threads=threads, vcpus=range(threads))
        for _ in range(400):
            enabled = [e for e in vc.enabled() if not e.startswith(("create_vcpu", "block"))]
            if not enabled or len(lines) >= count:
                break
            vc.apply(rng.choice(enabled))
            lines.append(vc.snapshot_json())
    return lines


def bench_explore(threads: int, quick: bool, workers: int | None) -> None:
    for variant in ("seed", "modern", "prepatch"):
        if quick and threads == 8 and variant != "prepatch":
            print(f"  explore {variant:8s} N={threads}: skipped (--quick)")
            continue
        cpu0 = time.process_time()
        r = explore(variant, threads, workers=workers)
        cpu = time.process_time() - cpu0
        verdict = (
            ("all invariants hold" if r.complete else f"INCOMPLETE ({r.incomplete})")
            if r.ok
            else f"counterexample of {len(r.counterexample or [])} events ({r.violated})"
        )
        target = {4: 0.5, 8: 5.0}.get(threads)
        mark = (
            ""
            if target is None or variant == "prepatch"
            else " [target < {:.1f} s: {}]".format(target, "met" if r.seconds < target else "MISSED")
        )
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"  explore {variant:8s} N={threads}: {r.states:>10,} states {r.transitions:>11,} transitions "
            f"{r.seconds:8.3f} s ({cpu:7.2f} s CPU) {r.states_per_second:>10,.0f} states/s, "
            f"peak ~{r.peak_memory / 2**20:,.0f} MiB "
            f"(process RSS {rss:,.0f} MiB)  {verdict}{mark}"
        )


def bench_compare(workers: int | None) -> None:
    """The reduced search against the full one, where the full one is small enough."""
    small = {"max_doorbells": 0, "max_prods": 0, "max_cedes": 1}
    for threads, bounds in ((2, {}), (4, small)):
        for variant in ("seed", "modern"):
            runs = []
            for reduction in (True, False):
                cpu0 = time.process_time()
                r = explore(variant, threads, workers=workers, reduction=reduction, **bounds)
                runs.append((r, time.process_time() - cpu0))
            (red, red_cpu), (full, full_cpu) = runs
            same = (red.violated, red.complete) == (full.violated, full.complete)
            print(
                f"  compare {variant:8s} N={threads}{' (small bounds)' if bounds else ''}: "
                f"{red.states:>10,} states reduced ({red.seconds:.3f} s, {red_cpu:.2f} s CPU), "
                f"{full.states:>10,} full ({full.seconds:.3f} s, {full_cpu:.2f} s CPU), "
                f"{full.states / max(red.states, 1):.1f}x; same verdict: {same}"
            )


def bench_check(threads: int, count: int) -> None:
    for variant in ("seed", "modern"):
        t0 = time.perf_counter()
        lines = walk_snapshots(variant, threads, count)
        made = time.perf_counter() - t0
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            f.write("\n".join(lines) + "\n")
            path = f.name
        try:
            t0 = time.perf_counter()
            report = check_trace(path)
            api = time.perf_counter() - t0
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "pyvcore", "check", path], capture_output=True, text=True
            )
            cli = time.perf_counter() - t0
        finally:
            os.unlink(path)
        rate_api = report.snapshots / api if api > 0 else float("inf")
        rate_cli = report.snapshots / cli if cli > 0 else float("inf")
        print(
            f"  check   {variant:8s} N={threads}: {report.snapshots:>8,} snapshots "
            f"({len(report.violations)} violations, exit {proc.returncode}); check_trace {rate_api:>10,.0f}/s, "
            f"`pyvcore check` {rate_cli:>10,.0f}/s incl. start-up [target >= 100,000/s: "
            f"{'met' if rate_api >= 100_000 else 'MISSED'}] (trace made in {made:.1f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="skip the 8-thread seed/modern explorations")
    parser.add_argument("--snapshots", type=int, default=100_000, help="snapshots per check trace")
    parser.add_argument("--workers", type=int, default=None, help="explorer threads (default: every core)")
    parser.add_argument("--compare", action="store_true", help="also run the full search where it is small")
    args = parser.parse_args()
    print(
        f"pyvcore model benchmark on {os.cpu_count()} CPU(s), load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    for threads in (2, 4, 8):
        print(f"N = {threads}")
        bench_explore(threads, args.quick, args.workers)
        bench_check(threads, args.snapshots)
    if args.compare:
        print("reduced against full")
        bench_compare(args.workers)


if __name__ == "__main__":
    main()
