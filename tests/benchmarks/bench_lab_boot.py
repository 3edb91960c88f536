"""Benchmark: lab boots, their stages, their hangs, and how they end.

    python tests/benchmarks/bench_lab_boot.py [--boots 30] [--scenario all] [--threads 4]
        [--phbs] [--qemu patched] [--kernel NAME|PATH] [--hold 1] [--lock-wait 600]

Each boot runs the scenario to its end (``--hold`` guest seconds) with no retry, so a hung
boot counts as such, with the stage it hung in (firmware / kernel / modules / vmm). Prints
per boot: seconds to READY, each stage, the scenario's status and how QEMU ended; then the
medians, the hang rate per stage, and the time from the guest's last line to QEMU's exit.
One QEMU at a time: the boots queue on the machine lock (``--lock-wait``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from typing import Any

from pyvcore.lab import Lab, LabError
from pyvcore.lab.boot import STAGES


def one_boot(args: argparse.Namespace) -> dict[str, Any]:
    lab = Lab(
        args.scenario,
        args.threads,
        args.qemu,
        args.hold,
        kernel=args.kernel,
        retries=0,
        lock_wait=args.lock_wait,
        phbs=args.phbs,
        log=None,
    )
    row: dict[str, Any] = {"hung": None}
    try:
        lab.start()
        row["ready_s"] = lab.boot_seconds
        row["stages"] = lab.status()["stages"]
        done = lab.wait_for(r"PYVCORE DONE scenario=\S+ status=(\S+)", timeout=180)
        row["status"] = done.group(1)
        t_done = time.monotonic()
        lab.wait_exit(timeout=60)
        row["end_s"] = round(time.monotonic() - t_done, 2)
    except LabError as err:
        row["hung"] = lab.hangs[-1]["stage"] if lab.hangs else None
        row["error"] = str(err)
    except Exception as err:  # a failure that is no hang: counted apart, the run goes on
        row["error"] = f"{type(err).__name__}: {err}"
    finally:
        lab.stop()
        row["stopped_by"] = lab.stopped_by
    return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--boots", type=int, default=30)
    parser.add_argument("--scenario", default="all")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--qemu", default="patched")
    parser.add_argument("--kernel", default=None)
    parser.add_argument("--hold", type=int, default=1)
    parser.add_argument("--phbs", action="store_true", help="the machine with its three PHBs (default: none)")
    parser.add_argument("--lock-wait", type=float, default=600.0)
    args = parser.parse_args()
    machine = "3 PHBs" if args.phbs else "no PHBs"
    print(f"# {args.boots} boots: {args.scenario}, {args.threads} threads, {args.qemu} QEMU, {machine}")
    rows = []
    started = time.monotonic()
    for n in range(1, args.boots + 1):
        row = one_boot(args)
        rows.append(row)
        stages = " ".join(f"{k}={v:.1f}" for k, v in row.get("stages", {}).items())
        outcome = f"HUNG in {row['hung']}" if row["hung"] else row.get("error") or row.get("status")
        print(
            f"boot {n:2d}: ready {row.get('ready_s', '-')} s  [{stages}]  {outcome}  "
            f"end {row.get('end_s', '-')} s ({row['stopped_by']})",
            flush=True,
        )
    ok = [r for r in rows if "ready_s" in r]
    print(f"# wall {time.monotonic() - started:.0f} s for {len(rows)} boots")
    if ok:
        ready = [r["ready_s"] for r in ok]
        print(f"ready: median {statistics.median(ready):.1f} s, min {min(ready):.1f}, max {max(ready):.1f}")
        for stage in (s.name for s in STAGES):
            values = [r["stages"][stage] for r in ok if stage in r.get("stages", {})]
            if values:
                print(f"  {stage:8}: median {statistics.median(values):.1f} s, max {max(values):.1f}")
        ends = [r["end_s"] for r in ok if "end_s" in r]
        if ends:
            print(
                f"end (DONE line to QEMU gone): median {statistics.median(ends):.1f} s, max {max(ends):.1f}"
            )
    hung = Counter(r["hung"] for r in rows if r["hung"])
    failed = [r for r in rows if r.get("error") and not r["hung"]]
    rate = sum(hung.values()) / len(rows) if rows else 0.0
    per_stage = ", ".join(f"{stage} {hung.get(stage, 0)}" for stage in (s.name for s in STAGES))
    print(
        f"hangs: {sum(hung.values())}/{len(rows)} ({100 * rate:.1f} %): {per_stage}; other failures {len(failed)}"
    )
    bad_status = [r for r in ok if r.get("status") != "ok"]
    print(f"scenario status not ok: {len(bad_status)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
