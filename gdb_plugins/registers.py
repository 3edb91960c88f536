"""Registers of every hardware thread, read with raw remote packets.

Evaluating ``$msr`` makes gdb build frame 0 of every thread it visits, and
without DWARF that is a prologue analysis of ~30 single-word code reads.  So
registers are read with ``Hg`` (select the thread), one ``g`` (the core
registers: r0-r31, pc, msr, ... in one reply) and one ``p`` per SPR that is
not in it (lpidr, sdr1, hdec, tb).  QEMU answers in each thread's own byte
order (MSR[LE]; target/ppc/gdbstub.c ``ppc_maybe_bswap_register``).

What QEMU's gdbstub shows (target/ppc/gdbstub.c ``gdb_get_spr_reg``, QEMU
10.0): HDEC and TB ("tb", SPR 268 on ppc64) are computed at the read.  DPDES
stock QEMU returns from ``env->spr[SPR_DPDES]``, which the TCG doorbell
emulation never writes (the pending doorbell lives in each thread's
``pending_interrupts``; ``helper_load_dpdes`` builds the register from them),
so it always reads 0 there.  The lab's QEMU patch
``0003-target-ppc-gdbstub-reads-DPDES-from-the-pending-doorbells.patch``
makes the stub return what ``mfspr DPDES`` returns: one bit per thread of the
core, the same value on every thread.
"""

from __future__ import annotations

import re
from typing import Any

import gdb  # type: ignore[import-not-found]

# name -> (remote register number, byte offset in the `g` reply, size)
_regnum_cache: dict[str, tuple[int, int, int]] = {}
_thread_cache: list[Any] = []

# Read for every thread (the checker needs them per thread), and for the
# thread that hit a stop (or, outside a stop, the selected one): the stop's
# timebase, HDEC, the core's DPDES (one register per POWER8 core: QEMU builds
# the same value on every thread, so one read shows the core) and r3/r4 (the
# arguments at a function entry; free, they come in the same `g` reply).
# HDEC of every thread costs one round trip per thread: only pv-paca reads
# it (with_hdec).
PER_THREAD = ("pc", "msr", "lpidr", "sdr1")
STOPPER_ONLY = ("tb", "hdec", "dpdes", "r3", "r4")


class Stats:
    """Counts of what a pass cost (for the benchmark and `pv-snapshot --stats`)."""

    def __init__(self) -> None:
        self.memory_reads = 0
        self.register_reads = 0
        self.packets = 0
        self.seconds = 0.0


def forget() -> None:
    _regnum_cache.clear()
    _g_bytes[0] = 0
    _thread_cache.clear()


def connected() -> bool:
    inf = gdb.selected_inferior()
    return inf is not None and inf.pid != 0 and gdb.selected_thread() is not None


def gdb_threads() -> list[Any]:
    """The inferior's threads, cached: `Inferior.threads()` refreshes gdb's
    thread list (qfThreadInfo + one qsThreadInfo per thread) on every call,
    and QEMU's hardware threads never change while connected."""
    if not _thread_cache or not all(t.is_valid() for t in _thread_cache):
        _thread_cache[:] = sorted(gdb.selected_inferior().threads(), key=lambda t: t.num)
    return list(_thread_cache)


def regnums() -> dict[str, tuple[int, int, int]]:
    """From ``maintenance print remote-registers``: Name Nr Rel Offset Size Type Rmt-Nr g/G-Offset."""
    if not _regnum_cache:
        out = gdb.execute("maintenance print remote-registers", to_string=True)
        for line in out.splitlines():
            f = line.split()
            if len(f) >= 8 and f[-1].isdigit() and f[-2].isdigit() and f[-4].isdigit():
                _regnum_cache[f[0]] = (int(f[-2]), int(f[-1]), int(f[-4]))
    return _regnum_cache


def thread_id(th: Any) -> str:
    pid, lwp, _ = th.ptid
    return f"p{pid:x}.{lwp:x}"


class RemoteRegisters:
    """Raw register reads through one packet sender (``send(text) -> reply``)."""

    def __init__(self, send: Any, stats: Stats):
        self.send = send
        self.stats = stats

    def read(self, th: Any, names: tuple[str, ...]) -> dict[str, int | None]:
        """The named registers of thread ``th``, as sent (thread byte order,
        decoded little-endian); None for one the stub does not have."""
        nums = regnums()
        if self.send(f"Hg{thread_id(th)}") != "OK":
            raise gdb.error("Hg refused")
        out: dict[str, int | None] = {}
        in_g = [n for n in names if n in nums and (n in CORE or nums[n][1] + nums[n][2] <= _g_bytes[0])]
        if in_g:
            self.stats.register_reads += 1
            reply = self.send("g")
            _g_bytes[0] = len(reply) // 2
            for n in in_g:
                _, off, size = nums[n]
                if off + size <= _g_bytes[0]:
                    out[n] = _decode(reply[2 * off : 2 * (off + size)])
        for n in names:
            if n in out:
                continue
            if n not in nums:
                out[n] = None
                continue
            self.stats.register_reads += 1
            out[n] = _decode(self.send(f"p{nums[n][0]:x}"))
        return out


# Core registers of every POWER gdbstub (org.gnu.gdb.power.core): in `g`.
CORE = ("pc", "msr", "r3", "r4")
# Length of the `g` reply in bytes, learnt from the first one: other
# registers whose offset falls inside it are read from it too.
_g_bytes = [0]


def _decode(hexdigits: str) -> int | None:
    if not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", hexdigits or ""):  # "E01", "xx..." (unavailable)
        return None
    return int.from_bytes(bytes.fromhex(hexdigits), "little")


def eval_registers(th: Any, names: tuple[str, ...], stats: Stats) -> dict[str, int | None]:
    """Fallback for targets without raw packets (not a remote stub): gdb's values."""
    th.switch()
    out: dict[str, int | None] = {}
    for n in names:
        stats.register_reads += 1
        try:
            v = gdb.parse_and_eval(f"${n}")
            out[n] = None if v.type.code == gdb.TYPE_CODE_VOID else int(v) & 0xFFFF_FFFF_FFFF_FFFF
        except gdb.error:
            out[n] = None
    return out
