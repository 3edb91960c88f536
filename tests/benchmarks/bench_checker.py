"""Checker figures, printed (not asserted):

1. `pyvcore check FILE` and `pyvcore check - < FILE` on a 10^6-line trace:
   wall time, lines/s and the peak RSS of the checking process (streamed:
   the two should match, and neither should grow with the trace);
2. one snapshot with 100,000 threads and 100,000 vcpus (map lookups, not
   scans): parse + check time;
3. `Checker.check(dict)` one snapshot at a time from Python.

    python tests/benchmarks/bench_checker.py [--lines 1000000] [--threads 4]

The machine is shared: run it when no lab is up; the CPU seconds are
printed next to the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import checker_states as cs

from pyvcore import Checker


def write_trace(path: Path, threads: int, lines: int) -> int:
    base = cs.clean_sequence()[1:] if threads == 4 else [cs.running(threads=threads, vcpu_ids=range(threads))]
    texts = [json.dumps(s, separators=(",", ":")) + "\n" for s in base]
    with path.open("w") as f:
        for i in range(lines):
            f.write(texts[i % len(texts)])
    return path.stat().st_size


def run_measured(args: list[str], stdin_path: Path | None = None) -> tuple[float, float, int, int]:
    """(wall s, CPU s, peak RSS KiB, exit code) of one `pyvcore` process."""
    stdin = stdin_path.open("rb") if stdin_path else subprocess.DEVNULL
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyvcore", *args],
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if stdin_path:
        stdin.close()  # type: ignore[union-attr]
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, proc.returncode


def huge_snapshot(n: int) -> str:
    s = cs.running()
    t1, v1 = s["threads"][1], s["vcpus"][1]
    for i in range(4, n):
        t = json.loads(json.dumps(t1))
        t["cpu"], t["hw_cpu_id"] = i, 8 + i
        t["kvm_hstate"]["kvm_vcpu"] = cs.vcpu_addr(i)
        s["threads"].append(t)
        v = dict(v1, addr=cs.vcpu_addr(i), vcpu_id=i)
        s["vcpus"].append(v)
    return json.dumps(s, separators=(",", ":"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--huge", type=int, default=100_000, help="threads and vcpus in the one huge snapshot")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.jsonl"
        size = write_trace(path, args.threads, args.lines)
        print(
            f"trace: {args.lines:,} lines, {args.threads} threads, {size / 1e6:,.0f} MB ({size / args.lines:.0f} B/line)"
        )
        for label, cmd, stdin in (
            ("file ", ["check", str(path)], None),
            ("stdin", ["check", "-"], path),
        ):
            wall, cpu, rss, code = run_measured(cmd, stdin)
            assert code == 0, f"exit {code}"
            print(
                f"  pyvcore check {label}: {wall:6.1f} s wall, {cpu:6.1f} s CPU, "
                f"{args.lines / wall:,.0f} lines/s, peak RSS {rss / 1024:,.0f} MiB"
            )

    text = huge_snapshot(args.huge)
    checker = Checker()
    t0 = time.perf_counter()
    found = checker.check(text)
    print(
        f"one snapshot with {args.huge:,} threads and vcpus ({len(text) / 1e6:.0f} MB): "
        f"{time.perf_counter() - t0:.2f} s parse + check, {len(found):,} violations"
    )

    dicts = [cs.running(), cs.exit_in_progress(), cs.live_only_vcpu1()] * 5000
    t0 = time.perf_counter()
    for d in dicts:
        checker.check(d)
    print(f"Checker.check(dict): {len(dicts) / (time.perf_counter() - t0):,.0f} snapshots/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
