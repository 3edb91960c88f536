"""Benchmark: snapshot + check of every thread over QEMU's gdbstub, from inside gdb.

Run it inside gdb-multiarch attached to the lab with the plugin loaded, e.g.

    pyvcore lab up --scenario all
    pyvcore gdb -- -batch -ex 'source tests/benchmarks/bench_gdb_snapshot.py'

Prints the median (and p10/p90) milliseconds of one full pass -- registers of
every thread, PACAs, vcore, vcpus, kvm, then the model check -- and the number
of remote round trips one pass takes, counted from gdb's own `set debug
remote` log (one "Sending packet" per request; QEMU answers each), with the
register set of snapshot format v1 and of v2.  Targets: median <= 5 ms,
<= 30 round trips for 4 threads.

Every pass starts where a pv-watch stop starts: gdb's register cache flushed,
then the stopping (selected) thread's PC read the way gdb reads it to find the
breakpoint (gdb/infrun.c handle_signal_stop: Hg if needed + g), which also
leaves that thread selected in the stub as QEMU does at a stop
(gdbstub/gdbstub.c gdb_set_stop_cpu).  That read is gdb's own cost of the
stop, outside the timed and counted pass; everything after it is counted.
When the lab was stopped where no vcore runs (the PACAs name none), the
benchmark first continues to the next kvmppc_hv_entry (a temporary
breakpoint; the `all` scenario enters its guest all the time), so that the
pass reads the vcore and its vcpus too.

Environment: PYVCORE_BENCH_ROUNDS (default 50).
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time

try:
    import gdb  # type: ignore[import-not-found]
except ImportError:
    sys.exit("run this inside gdb: pyvcore gdb -- -batch -ex 'source tests/benchmarks/bench_gdb_snapshot.py'")

ROUNDS = int(os.environ.get("PYVCORE_BENCH_ROUNDS", "50"))
V2: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())


def new_stop() -> None:
    """The state a pv-watch stop starts from (see the module docstring)."""
    gdb.execute("maintenance flush register-cache", to_string=True)
    gdb.parse_and_eval("$pc")


def one_pass() -> tuple[int, int, int]:
    """One pass: (threads, violations, raw packets the plugin sent itself).

    The plugin reads registers and memory through gdb; its only raw request
    is QEMU's physical-memory mode (Qqemu.PhyMemMode), which through
    `maintenance packet` (gdb < 12) does not show in gdb's remote debug log,
    so the plugin counts it too."""
    from pyvcore._gdb_plugins import check, session

    # in_stop: read as pv-watch does at a breakpoint (the selected thread is
    # the one that stopped: its timebase, HDEC and r3/r4 are read too).
    reading, stats = session.read_state(stop="bench", in_stop=True)
    violations = check.outcome(reading.snapshot).violations
    return len(reading.snapshot["threads"]), len(violations), stats.packets


def at_a_running_vcore() -> str:
    """Make the current stop one where a vcore runs (see the module docstring);
    returns where the passes are measured."""
    from pyvcore._gdb_plugins import session

    reading, _ = session.read_state(stop="bench", in_stop=True)
    if reading.snapshot["vcpus"]:
        return "the stop the lab was attached at"
    gdb.execute("tbreak kvmppc_hv_entry", to_string=True)
    gdb.execute("continue", to_string=True)
    return f"kvmppc_hv_entry, hit by gdb thread {gdb.selected_thread().num}"


def count_round_trips(show_reads: bool = False) -> int:
    """Round trips of one pass, from gdb's remote protocol debug log."""
    fd, path = tempfile.mkstemp(prefix="pv-bench-", suffix=".log")
    os.close(fd)
    new_stop()  # the stop's own packets are not the pass's
    for c in (
        f"set logging file {path}",
        "set logging overwrite on",
        "set logging redirect on",
        "set logging debugredirect on",
        "set logging enabled on",
        "set debug remote 1",
    ):
        gdb.execute(c)  # not to_string: that capture would swallow the redirection
    try:
        _, _, raw = one_pass()
    finally:
        gdb.execute("set debug remote 0")
        gdb.execute("set logging enabled off")
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    os.unlink(path)
    sent = re.findall(r"Sending packet: \$(\w)", text)
    if show_reads:
        reads = re.findall(r"Sending packet: \$m([0-9a-f]+),([0-9a-f]+)#", text)
        print(
            "bench_gdb_snapshot: memory reads: "
            + ", ".join(f"{int(a, 16):#x}+{int(n, 16)}" for a, n in reads)
        )
    kinds: dict[str, int] = {}
    for k in sent:
        kinds[k] = kinds.get(k, 0) + 1
    # Raw packets sent with RemoteTargetConnection.send_packet are in the log;
    # with the `maintenance packet` fallback they are not: add the plugin's count.
    logged_raw = kinds.get("Q", 0)
    total = len(sent) if logged_raw >= raw else len(sent) + raw
    print(
        "bench_gdb_snapshot: packets by kind: "
        + ", ".join(f"{k}={n}" for k, n in sorted(kinds.items()))
        + f" (plugin's own raw requests: {raw})"
    )
    return total


def register_set(version: str) -> None:
    """Registers read per pass: "v2" = today's set (pc, msr, lpidr, sdr1 of
    every thread; r3, r4, tb, hdec and DPDES of the stopping thread);
    "v2-no-hdec-dpdes" = the v2 set without HDEC and DPDES; "v1" = the v1 set
    (msr, lpidr, sdr1), to print the cost of each."""
    from pyvcore._gdb_plugins import registers

    per_thread, stopper_only = V2
    if version == "v1":
        registers.PER_THREAD, registers.STOPPER_ONLY = ("msr", "lpidr", "sdr1"), ()
    elif version == "v2-no-hdec-dpdes":
        registers.PER_THREAD = per_thread
        registers.STOPPER_ONLY = tuple(n for n in stopper_only if n not in ("hdec", "dpdes"))
    else:
        registers.PER_THREAD, registers.STOPPER_ONLY = V2


def main() -> None:
    try:
        from pyvcore._gdb_plugins import session
    except ImportError:
        sys.exit("bench_gdb_snapshot: source pyvcore/gdb.py first (or use `pyvcore gdb`)")
    if not session.connected():
        sys.exit("bench_gdb_snapshot: not connected to the lab")
    from pyvcore._gdb_plugins import registers

    global V2
    V2 = (registers.PER_THREAD, registers.STOPPER_ONLY)
    where = at_a_running_vcore()
    threads, violations, _ = one_pass()  # warm-up: boot-time values get cached
    print(f"bench_gdb_snapshot: measured at {where}")
    times = []
    for _ in range(ROUNDS):
        new_stop()
        t0 = time.perf_counter()
        one_pass()
        times.append((time.perf_counter() - t0) * 1000.0)
    register_set("v1")
    trips_v1 = count_round_trips()
    register_set("v2-no-hdec-dpdes")
    trips_before = count_round_trips()
    register_set("v2")
    trips = count_round_trips(show_reads=True)
    print(
        f"bench_gdb_snapshot: round trips per pass: {trips_v1} with the v1 registers, "
        f"{trips_before} with v2 without HDEC/DPDES, {trips} with v2 now"
    )
    # The floor under the pass time: one gdbstub round trip on this machine now
    # (about 70 us on an idle machine; it grows with the load).
    inf = gdb.selected_inferior()
    from pyvcore._gdb_plugins import session as _s

    paca = _s.kernel().address("paca_ptrs")
    rtt = []
    # A thread in host virtual mode reads the kernel's address: the pass put
    # the remote on its reader thread; the selected one may be in the guest.
    from pyvcore._gdb_plugins import registers as _r

    for th in _r.gdb_threads():
        th.switch()
        try:
            inf.read_memory(paca, 8)
            break
        except gdb.MemoryError:
            continue
    for _ in range(50):
        t0 = time.perf_counter()
        try:
            inf.read_memory(paca, 8)
        except gdb.MemoryError:
            break
        rtt.append((time.perf_counter() - t0) * 1e6)
    rtt = rtt or [float("nan")]
    times.sort()
    p10 = times[len(times) // 10]
    p90 = times[(len(times) * 9) // 10]
    print(
        f"bench_gdb_snapshot: {threads} threads, {ROUNDS} rounds: snapshot+check median "
        f"{statistics.median(times):.2f} ms (p10 {p10:.2f}, p90 {p90:.2f}); "
        f"{trips} remote round trips per pass; {violations} violations at this stop"
    )
    rt = statistics.median(rtt)
    print(
        f"bench_gdb_snapshot: one round trip (8-byte read) median {rt:.0f} us now; "
        f"{trips} x that = {trips * rt / 1000:.2f} ms of the pass is waiting on the stub; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"bench_gdb_snapshot: targets: median <= 5 ms "
        f"[{'met' if statistics.median(times) <= 5 else 'MISSED'}], <= 30 round trips "
        f"[{'met' if trips <= 30 else 'MISSED'}]"
    )


main()
