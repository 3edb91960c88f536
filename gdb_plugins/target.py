"""Registers and memory of the stopped target, through gdb and QEMU's gdbstub.

Memory is read through one thread: one in host virtual mode reaches
everything (vmalloc and modules too); one in hypervisor real mode reaches the
linear map.  When no thread can read an address virtually, a linear-map
address is read in QEMU's physical-memory mode (``Qqemu.PhyMemMode:1``,
va & 0x0fff...), and a vmalloc/module address is translated through the
kernel's own page table (:mod:`pyvcore.pagetable`) and then read physically.
"""

from __future__ import annotations

import re
import time
from typing import Any

import gdb  # type: ignore[import-not-found]

from pyvcore.pagetable import KernelPageTable, TranslationError
from pyvcore.ppc64 import VMALLOC_START, ThreadRegs, bswap64, is_linear, linear_to_phys, normalise_msr
from pyvcore.readplan import ReadError

from . import params, registers
from .errors import PvError
from .registers import Stats

# PIR of each gdb thread (ptid): fixed per hardware thread, read once per connection.
_pir_cache: dict[tuple[int, int, int], int] = {}


def forget() -> None:
    _pir_cache.clear()
    registers.forget()


class GdbTarget:
    """Registers and memory of the stopped target, restoring gdb's state on exit.

    Use as a context manager: the selected thread and QEMU's memory mode are
    put back however the pass ends.  ``stopper`` is the gdb thread that hit a
    stop (or the selected one): its timebase, HDEC, the core's DPDES and the
    argument registers r3/r4 are read too.
    ``with_hdec`` reads HDEC of every thread (pv-paca shows it)."""

    def __init__(self, with_hdec: bool = False, in_stop: bool = False, stopper: Any = None):
        self.with_hdec = with_hdec
        # Inside a Breakpoint.stop() gdb still marks the threads as running
        # (the stop is not reported yet) although the target is halted.
        self.in_stop = in_stop
        self.stopper = stopper
        self.stats = Stats()
        self._phys = False
        self._reader_thread: Any = None
        self._real_thread: Any = None
        self._current: Any = None
        self._saved: Any = None
        # End of the linear map (high_memory), set by prepare() once known.
        self.linear_end = VMALLOC_START
        # The kernel's page table, set by prepare() when it can be read.
        self.page_table: KernelPageTable | None = None
        self._t0 = 0.0

    # -- context
    def __enter__(self) -> GdbTarget:
        if not registers.connected():
            raise PvError(
                "pyvcore: not connected to a target (`target remote HOST:PORT`, "
                "or start the lab and use `pyvcore gdb`)"
            )
        if not self.in_stop and gdb.selected_thread() is not None and gdb.selected_thread().is_running():
            raise PvError("pyvcore: the target is running; interrupt it first (Ctrl-C)")
        # Only the thread is saved: asking gdb for the selected *frame* makes it
        # unwind (dozens of 4-byte code reads on a kernel without DWARF).
        self._saved = gdb.selected_thread()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._phys:
                self.packet("Qqemu.PhyMemMode:0")
                self._phys = False
        finally:
            if self._saved is not None and self._saved.is_valid():
                self._saved.switch()
            self.stats.seconds = time.perf_counter() - self._t0

    def packet(self, text: str) -> str:
        """One raw remote request; returns the reply payload.

        gdb >= 12 has RemoteTargetConnection.send_packet; `maintenance packet`
        is the fallback (same packet, plus CLI parsing and output capture)."""
        self.stats.packets += 1
        conn = getattr(gdb.selected_inferior(), "connection", None)
        if conn is not None and hasattr(conn, "send_packet"):
            reply = conn.send_packet(text)
            return reply.decode("ascii", "replace") if isinstance(reply, bytes) else str(reply)
        out = gdb.execute(f"maintenance packet {text}", to_string=True)
        m = re.search(r'received: "(.*)"', out)
        return m.group(1) if m else ""

    # -- registers
    def _names(self, th: Any, first_time: bool) -> tuple[str, ...]:
        names: tuple[str, ...] = registers.PER_THREAD
        if th is self.stopper:
            names += registers.STOPPER_ONLY
        elif self.with_hdec:
            names += ("hdec",)
        return (*names, "pir") if first_time else names

    def threads(self) -> list[ThreadRegs]:
        """Registers of every gdb thread (one per hardware thread), host byte order.

        The stopping thread is read first: at a stop gdb already holds its
        core registers and the stub has it selected (see
        :mod:`.registers`); the thread read last stays selected for the
        memory reads when it can do them."""
        first = self.stopper if self.stopper is not None else self._saved
        out = []
        last = None
        for th in registers.read_order(registers.gdb_threads(), first):
            want = self._names(th, th.ptid not in _pir_cache)
            raw = registers.read_registers(th, want, self.stats)
            last = th
            regs = self._thread_regs(th, raw)
            out.append(regs)
            registers.remember_reader(th, regs.hv and not regs.in_opal)
            if regs.host_virtual and self._reader_thread is None:
                self._reader_thread = th
            elif regs.hv and not regs.in_opal and self._real_thread is None:
                self._real_thread = th
        self._choose_reader(last, out[-1] if out else None)
        out.sort(key=lambda r: r.gdb_thread)
        return out

    @staticmethod
    def _thread_regs(th: Any, raw: dict[str, int | None]) -> ThreadRegs:
        regs = ThreadRegs(gdb_thread=th.num)
        if raw.get("msr") is None:
            regs.error = "registers unavailable"
        else:
            regs.msr, regs.swapped = normalise_msr(raw["msr"])  # type: ignore[arg-type]
        if raw.get("pir") is not None:
            pir = int(raw["pir"])
            _pir_cache[th.ptid] = bswap64(pir) if regs.swapped else pir
        regs.pir = _pir_cache.get(th.ptid)
        for n in ("pc", "lpidr", "sdr1", "hdec", "dpdes", "tb", "r3", "r4"):
            value = raw.get(n)
            if value is not None and regs.swapped:
                value = bswap64(value)
            setattr(regs, n, value)
        return regs

    def _choose_reader(self, last: Any, last_regs: ThreadRegs | None) -> None:
        # The thread whose registers were read last is the stub's selected
        # thread: keep it if it will do (host or HV real mode both reach the
        # linear map; read() switches for vmalloc), saving an Hg.  gdb sends
        # the Hg itself, on the first memory read, when the reader changes.
        if last is not None and last_regs is not None and last_regs.hv and not last_regs.in_opal:
            chosen = last
        else:
            chosen = self._reader_thread or self._real_thread
        self._current = chosen
        if chosen is not None:
            chosen.switch()

    # -- memory
    def read(self, addr: int, size: int) -> bytes:
        """``size`` bytes of kernel memory at ``addr``, or ReadError saying why not."""
        inf = gdb.selected_inferior()
        linear = is_linear(addr, self.linear_end)
        if linear and params.memory_mode() == "physical":
            return self.read_physical(linear_to_phys(addr), size)
        if not linear and self._reader_thread is not None and self._current is not self._reader_thread:
            # vmalloc/module space needs the MMU on: switch to a host-virtual
            # thread (gdb sends the Hg itself before the read).
            self._current = self._reader_thread
            self._reader_thread.switch()
        if not self._phys and (self._reader_thread is not None or (self._real_thread is not None and linear)):
            self.stats.memory_reads += 1
            try:
                return bytes(inf.read_memory(addr, size))
            except gdb.MemoryError:
                pass
        if linear:
            return self.read_physical(linear_to_phys(addr), size)
        if self.page_table is None:
            raise ReadError(
                addr, size, "cannot access memory (vmalloc/module space, no thread in host virtual mode)"
            )
        try:
            return self.page_table.read(addr, size)
        except TranslationError as e:
            raise ReadError(addr, size, f"not mapped in the kernel page table ({e.why})") from None

    def read_physical(self, pa: int, size: int) -> bytes:
        """Physical memory, in QEMU's physical-memory mode (entered once per pass)."""
        if not self._phys:
            reply = self.packet("Qqemu.PhyMemMode:1")
            if "OK" not in reply:
                raise ReadError(pa, size, "cannot access memory and QEMU refused physical mode")
            self._phys = True
        self.stats.memory_reads += 1
        try:
            return bytes(gdb.selected_inferior().read_memory(pa, size))
        except gdb.MemoryError as e:
            raise ReadError(pa, size, str(e).split(" at ")[0] or "cannot access memory") from None
