"""What the pv-* commands share: one pass over the stopped target.

The jobs live in their own modules: the DWARF type source (``dwarf``), the
kernel and its cache (``kernel``), register reads (``registers``), memory and
the reader thread (``target``), the ``pv-memory`` parameter (``params``), the
error line (``errors``).  This module ties them together: :func:`read_state`
is one pass (registers, PACAs, vcores, vcpus, kvm), and :func:`install_events`
drops the caches when gdb's connection or objfiles change.
"""

from __future__ import annotations

import contextlib
from typing import Any

import gdb  # type: ignore[import-not-found]

from pyvcore.decode import Hints, KernelError, Reading
from pyvcore.ppc64 import ThreadRegs
from pyvcore.readplan import ReadError

from . import params, registers, target
from .dwarf import GdbTypeSource, dwarf_available  # noqa: F401  (re-exported)
from .errors import PvError
from .kernel import Kernel, executable_path, forget_kernel, gdb_symbol, kernel  # noqa: F401
from .kernel import cached as kernel_cached
from .registers import Stats, connected, gdb_threads
from .target import GdbTarget

__all__ = [
    "GdbTarget",
    "Kernel",
    "PvError",
    "ReadError",
    "Stats",
    "connected",
    "executable_path",
    "gdb_threads",
    "install_events",
    "kernel",
    "prepare",
    "read_state",
]


def forget(*_args: Any) -> None:
    """Drop boot-time caches (new connection, new executable)."""
    k = kernel_cached()
    if k is not None:
        k.reader.reset()
    target.forget()


def _new_objfile(*_args: Any) -> None:
    forget_kernel()
    target.forget()


def prepare(t: GdbTarget, k: Kernel) -> list[ThreadRegs]:
    """Registers of every thread, a reader thread chosen, the linear map's end
    and the kernel page table known (when they can be read)."""
    regs = t.threads()
    with contextlib.suppress(ReadError):
        t.linear_end = k.reader.linear_end(t)
    if not any(r.host_virtual for r in regs):
        # No thread can read vmalloc/module memory virtually: walk the
        # kernel's own page table instead (physical reads only).
        try:
            t.page_table = k.reader.page_table(t, t.read_physical)
        except (KernelError, ReadError):
            t.page_table = None
    return regs


def read_state(
    stop: str | None = None,
    with_hdec: bool = False,
    with_kvm: bool = True,
    in_stop: bool = False,
    entry: str | None = None,
    full_paca: bool = False,
) -> tuple[Reading, Stats]:
    """One pass: registers of every thread, PACAs, vcores, vcpus, kvm.

    ``full_paca``: every PACA field pv-paca shows, not only the snapshot's.

    ``entry``: the function whose entry the selected thread has just hit
    (pv-watch); its argument registers name the vcore/vcpu
    (``pyvcore.decode.ENTRY_ARGUMENTS``)."""
    k = kernel()
    # The stop's own thread (outside a stop, the selected one): the snapshot's
    # timebase, HDEC and the core's DPDES are read there.
    stopper = gdb.selected_thread()
    with GdbTarget(with_hdec=with_hdec, in_stop=in_stop, stopper=stopper) as t:
        regs = prepare(t, k)
        me = next((r for r in regs if stopper is not None and r.gdb_thread == stopper.num), None)
        hints = Hints.from_entry(entry, me) if entry else None
        try:
            reading = k.reader.read(
                t,
                regs,
                stop=stop,
                with_kvm=with_kvm,
                hints=hints,
                stopper=me.gdb_thread if me else None,
                full_paca=full_paca,
            )
        except (KernelError, ReadError) as e:
            raise PvError(f"pyvcore: {e}") from None
    return reading, t.stats


def install_events() -> None:
    params.install()
    # A new objfile (a module's symbols, a new vmlinux) can bring types and
    # symbols the layouts were built without: rebuild the kernel.
    gdb.events.new_objfile.connect(_new_objfile)
    gdb.events.clear_objfiles.connect(_new_objfile)
    if hasattr(gdb.events, "connection_removed"):
        gdb.events.connection_removed.connect(forget)
    gdb.events.exited.connect(forget)
    registers.forget()
