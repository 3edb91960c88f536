"""pv-paca and $pv_paca: every hardware thread's PACA kvm_hstate."""

from __future__ import annotations

from typing import Any

import gdb  # type: ignore[import-not-found]

from pyvcore import tables
from pyvcore.decode import KernelError, ReadError
from pyvcore.render import wrap

from . import check, gdbtypes, session
from .args import ArgParser, complete_words
from .session import PvError


class PvPaca(gdb.Command):
    """Show each hardware thread's PACA kvm_hstate (xmon `dp` style, with offsets).

    Usage: pv-paca [CPU|all]

      all (default)  one row per hardware thread (Linux cpu, thread in the core
                     t0..t7, $pir): the kvm_hstate fields the vcore logic uses
                     (in_guest, napping, hwthread_req, hwthread_state, ptid,
                     kvm_vcpu as a vcpu id, kvm_vcore as vc0, vc1... as numbered
                     by pv-vcore), each with its offset inside paca_struct; then
                     the thread's mode from MSR (host/real/guest/opal), $pc,
                     $lpidr, $sdr1, $hdec.  Fits 80 columns.
      CPU            one Linux cpu (the same number as $pv_paca(CPU)), every
                     field as a `name = value (offset)` list with addresses.

    Examples:
      pv-paca
      pv-paca 0

    gdb threads are matched to Linux cpus by $pir == paca->hw_cpu_id, and PACAs
    are found through paca_ptrs[] (or the pre-4.17 paca array).  Offsets come
    from DWARF when gdb has it, else from the vmlinux .BTF section."""

    def __init__(self) -> None:
        super().__init__("pv-paca", gdb.COMMAND_DATA)

    def complete(self, text: str, word: str) -> list[str]:
        return complete_words(text, word, ("all",))

    def invoke(self, arg: str, from_tty: bool) -> None:
        p = ArgParser("pv-paca")
        p.add_argument("which", nargs="?", default="all")
        a = p.parse(arg)
        cpu: int | None = None
        if a.which != "all":
            try:
                cpu = int(a.which, 0)
            except ValueError:
                raise PvError(f"pv-paca: CPU must be a number or `all`, not {a.which!r}") from None
        k = session.kernel()
        reading, _ = session.read_state(with_hdec=True, with_kvm=False, full_paca=True)
        if cpu is None:
            gdb.write(tables.paca_table(k.layout, reading, width=check.terminal_width()) + "\n")
        else:
            rows = [r for r in reading.rows if r.cpu == cpu]
            if not rows:
                known = ", ".join(str(r.cpu) for r in reading.rows if r.cpu is not None)
                raise PvError(f"pv-paca: no gdb thread is cpu {cpu} (cpus: {known})")
            gdb.write(tables.paca_list(k.layout, rows[0], reading) + "\n")
        for problem in reading.problems:
            gdb.write(wrap(f"pv-paca: {problem}", check.terminal_width(), indent="    ") + "\n")


class PvPacaFunction(gdb.Function):
    """$pv_paca(CPU): the PACA of Linux cpu CPU (as in `pv-paca CPU`).

    A `struct paca_struct *`: from DWARF, or with BTF only from types rebuilt
    from the BTF layout (compiled once by powerpc64le-linux-gnu-gcc, which
    `pyvcore lab setup` installs), so that `p $pv_paca(0)->kvm_hstate` works.
    Without a compiler it is a `void *`; pv-print still prints the fields:
    `pv-print paca_struct $pv_paca(0) kvm_hstate`.
    Examples: `p $pv_paca(0)`, `x/4gx $pv_paca(1)`."""

    def __init__(self) -> None:
        super().__init__("pv_paca")

    def invoke(self, *args: Any) -> Any:
        cpu = one_argument("$pv_paca", "CPU", args)
        k = session.kernel()
        with session.GdbTarget() as target:
            session.prepare(target, k)
            try:
                pacas = k.reader.paca_addresses(target)
            except (KernelError, ReadError) as e:
                raise PvError(f"$pv_paca: {e}") from None
        n = cpu
        if n not in pacas:
            raise PvError(f"$pv_paca: no PACA for cpu {n} (cpus 0..{max(pacas) if pacas else -1})")
        return typed_pointer(pacas[n], "paca_struct")


def one_argument(name: str, what: str, args: tuple[Any, ...]) -> int:
    """The single integer argument of a $pv_* function, or a one-line error."""
    if len(args) != 1:
        raise PvError(f"{name}: takes one argument, {what} (e.g. {name}(0)); got {len(args)}")
    try:
        return int(args[0])
    except (gdb.error, TypeError, ValueError):
        raise PvError(f"{name}: {what} must be an integer, not {args[0]}") from None


def typed_pointer(addr: int, struct: str) -> Any:
    """``(struct S *) addr`` when gdb knows the type: from DWARF, or rebuilt from BTF
    (gdbtypes, needs the ppc64le cross compiler); else ``(void *) addr``."""
    value = gdb.Value(addr).cast(gdb.lookup_type("unsigned long"))
    for attempt in range(2):
        try:
            return value.cast(gdb.lookup_type(f"struct {struct}").pointer())
        except gdb.error:
            if attempt or not gdbtypes.ensure(session.kernel()):
                break
    return value.cast(gdb.lookup_type("void").pointer())


def register() -> None:
    PvPaca()
    PvPacaFunction()
