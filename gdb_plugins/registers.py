"""Registers of every hardware thread, read through gdb's own register cache.

Each register is evaluated as ``$name`` on its thread.  gdb fetches a thread's
core registers (r0-r31, pc, msr, ...) with one ``g`` packet and every other
register (lpidr, sdr1, hdec, tb, dpdes, pir) with one ``p`` each, and keeps
them until the target resumes.  gdb also tracks which thread the stub has
selected and sends ``Hg`` only when it changes (gdb/remote.c
``set_general_thread``).  Two round trips come free that way:

* At a stop gdb has already fetched the stopping thread's ``g`` (it reads the
  PC to find the breakpoint: gdb/infrun.c ``handle_signal_stop``), and QEMU
  has already selected that CPU for register and memory requests
  (gdbstub/gdbstub.c ``gdb_set_stop_cpu``), so the stopping thread, read
  first, costs only the ``p`` of its SPRs.
* The last thread read stays selected, so when it can read kernel memory the
  memory reads that follow need no ``Hg`` either.

Evaluating ``$msr`` with gdb 13 builds no frame and analyses no prologue: it
reads the register cache of frame 0's sentinel (measured: ``Hg`` + ``g`` for a
cold thread, nothing for a cached one, one ``p`` per SPR).  QEMU answers in
each thread's own byte order (MSR[LE]; target/ppc/gdbstub.c
``ppc_maybe_bswap_register``) and gdb decodes little-endian, like the
vmlinux; :func:`pyvcore.ppc64.normalise_msr` undoes it for a big-endian
thread.

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

from typing import Any

import gdb  # type: ignore[import-not-found]

_thread_cache: list[Any] = []
# ptid -> whether the thread could read kernel memory (MSR[HV], not in OPAL)
# at the last pass: threads that could are read last, so that the thread the
# stub is left on is likely the memory reader (an ordering hint only).
_could_read: dict[Any, bool] = {}

# Read for every thread (the checker needs them per thread), and for the
# thread that hit a stop (or, outside a stop, the selected one): the stop's
# timebase, HDEC, the core's DPDES (one register per POWER8 core: QEMU builds
# the same value on every thread, so one read shows the core) and r3/r4 (the
# arguments at a function entry; free, they come in the same `g` reply).
# HDEC of every thread costs one round trip per thread: only pv-paca reads
# it (with_hdec).  Core registers first: the first of them fetches the `g`
# reply that carries them all.
PER_THREAD = ("pc", "msr", "lpidr", "sdr1")
STOPPER_ONLY = ("r3", "r4", "tb", "hdec", "dpdes")


class Stats:
    """Counts of what a pass cost (for the benchmark and `pv-snapshot --stats`).

    ``register_reads`` counts registers asked of gdb (a cached one costs no
    round trip); ``packets`` the raw requests the plugin sent itself."""

    def __init__(self) -> None:
        self.memory_reads = 0
        self.register_reads = 0
        self.packets = 0
        self.seconds = 0.0


def forget() -> None:
    _thread_cache.clear()
    _could_read.clear()


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


def read_order(threads: list[Any], first: Any) -> list[Any]:
    """``threads`` in the order to read them: ``first`` (the stopping thread),
    then the others, those that could read kernel memory at the last pass
    last (stable by gdb thread number otherwise)."""
    rest = [t for t in threads if t is not first]
    rest.sort(key=lambda t: (_could_read.get(t.ptid, False), t.num))
    return ([first] if first in threads else []) + rest


def remember_reader(th: Any, could_read: bool) -> None:
    _could_read[th.ptid] = could_read


def read_registers(th: Any, names: tuple[str, ...], stats: Stats) -> dict[str, int | None]:
    """The named registers of gdb thread ``th`` as gdb holds them (64-bit,
    unsigned); None for one the stub does not have or cannot read."""
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
