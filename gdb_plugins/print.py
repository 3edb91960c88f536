"""pv-print: any kernel struct at an address, from BTF or DWARF, with offsets and values."""

from __future__ import annotations

import gdb  # type: ignore[import-not-found]

from pyvcore.decode import ReadError, is_kernel_pointer
from pyvcore.layout import LayoutError
from pyvcore.structprint import print_struct

from . import check, session
from .args import ArgParser
from .session import PvError


class PvPrint(gdb.Command):
    """Print a kernel struct at an address: offset, size, field, type and value.

    Usage: pv-print TYPE ADDR [FIELD...]

      TYPE    a struct name as the kernel declares it (paca_struct, kvmppc_vcore,
              kvm_vcpu, kvm ...; a leading `struct` is accepted)
      ADDR    an expression giving its address ($pv_paca(0), $pv_vcore(0), 0xc...)
      FIELD   only these members (dotted paths, e.g. kvm_hstate or arch.ceded);
              a struct member is listed with its own members, offsets from TYPE.

    Like `ptype/o` with the values beside the offsets, but it needs no debuginfo:
    the layout comes from the kernel's BTF (kvm-hv.ko's too) when gdb has no
    DWARF.  Arrays of numbers or pointers are listed element by element (the
    first 8).

    Examples:
      pv-print paca_struct $pv_paca(0) kvm_hstate
      pv-print kvmppc_vcore $pv_vcore(0)
      pv-print kvm_vcpu $pv_vcpu(1) vcpu_id arch.ptid arch.ceded"""

    def __init__(self) -> None:
        super().__init__("pv-print", gdb.COMMAND_DATA, gdb.COMPLETE_EXPRESSION)

    def invoke(self, arg: str, from_tty: bool) -> None:
        p = ArgParser("pv-print")
        p.add_argument("type")
        p.add_argument("addr")
        p.add_argument("fields", nargs="*")
        a = p.parse(arg)
        try:
            addr = int(gdb.parse_and_eval(a.addr)) & 0xFFFF_FFFF_FFFF_FFFF
        except gdb.error as e:
            raise PvError(f"pv-print: {a.addr}: {e}") from None
        if not is_kernel_pointer(addr):
            raise PvError(f"pv-print: {addr:#x} is not a kernel address")
        k = session.kernel()
        with session.GdbTarget() as target:
            session.prepare(target, k)
            try:
                text = print_struct(
                    k.layouts,
                    target,
                    a.type,
                    addr,
                    a.fields,
                    order=k.layout.order,
                    width=check.terminal_width(),
                )
            except LayoutError as e:
                raise PvError(f"pv-print: {e}") from None
            except ReadError as e:
                raise PvError(f"pv-print: struct {a.type} at {addr:#x}: {e}") from None
        gdb.write(text + "\n")


def register() -> None:
    PvPrint()
