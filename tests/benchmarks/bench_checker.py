"""Snapshot-check throughput: `pyvcore check` on a generated trace (parse +
check in Rust) and `Checker.check` one dict at a time from Python.

    python tests/benchmarks/bench_checker.py [--snapshots N] [--threads 2 4 8]

Target (issue 2): >= 100,000 snapshots/s checked from Python.  The machine is
shared (a QEMU lab takes both cores when it runs), so the per-CPU-second figure
is printed too: it does not depend on what else runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import checker_states as cs

from pyvcore import Checker, check_trace


def trace_lines(threads: int, n: int) -> list:
    if threads == 4:
        base = cs.clean_sequence()[1:]  # [0] has fewer vcpus: it cannot follow the others
    else:
        base = [
            cs.running(threads=threads, vcpu_ids=range(threads)),
            cs.running(threads=threads, vcpu_ids=range(1, threads), num_threads=threads),
        ]
    texts = [json.dumps(s) for s in base]
    return [texts[i % len(texts)] for i in range(n)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snapshots", type=int, default=200_000)
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 4, 8])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n_threads in args.threads:
            lines = trace_lines(n_threads, args.snapshots)
            path = Path(tmp) / f"trace{n_threads}.jsonl"
            path.write_text("\n".join(lines) + "\n")
            size = path.stat().st_size

            t0, c0 = time.perf_counter(), time.process_time()
            report = check_trace(path)
            api, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert report.snapshots == args.snapshots and report.exit_code == 0, report.format_text()[-500:]

            t0 = time.perf_counter()
            r = subprocess.run(
                [sys.executable, "-m", "pyvcore", "check", str(path)], capture_output=True, text=True
            )
            cli = time.perf_counter() - t0
            assert r.returncode == 0, r.stderr

            dicts = [json.loads(line) for line in lines[:20_000]]
            checker = Checker()
            t0 = time.perf_counter()
            for d in dicts:
                checker.check(d)
            one = time.perf_counter() - t0

            print(
                f"N={n_threads}: {args.snapshots} snapshots ({size / args.snapshots:.0f} B each): "
                f"check_trace {args.snapshots / api:,.0f}/s wall ({args.snapshots / cpu:,.0f} per CPU-second), "
                f"`pyvcore check` {args.snapshots / cli:,.0f}/s (incl. interpreter start), "
                f"Checker.check(dict) {len(dicts) / one:,.0f}/s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
