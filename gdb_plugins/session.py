"""What the pv-* commands share: the kernel image, its layouts, and gdb-backed
memory and registers (``GdbTarget``).

The kernel is found from gdb's own program space (``file vmlinux``); its
layouts come from gdb's types when the vmlinux has DWARF, else from the
``.BTF`` section through ``pyvcore._core.KernelImage``.  Everything read at
boot time (PACA addresses, PIR -> cpu) is cached until the connection or the
executable changes.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from typing import Any

import gdb  # type: ignore[import-not-found]

from pyvcore import decode
from pyvcore.decode import (
    KernelError,
    KernelLayout,
    ReadError,
    SnapshotReader,
    ThreadRegs,
    is_linear,
    linear_to_phys,
    normalise_msr,
)
from pyvcore.layout import LayoutError, Layouts


class PvError(gdb.GdbError):
    """One clear line for the user (gdb prints it without a traceback)."""


def _int(value: Any) -> int:
    return int(value) & 0xFFFF_FFFF_FFFF_FFFF


# --------------------------------------------------------------------- layouts
class GdbTypeSource:
    """Struct layouts from gdb's own types (DWARF), in the dicts BTF gives."""

    KINDS = {
        gdb.TYPE_CODE_INT: "int",
        gdb.TYPE_CODE_BOOL: "bool",
        gdb.TYPE_CODE_ENUM: "enum",
        gdb.TYPE_CODE_PTR: "ptr",
        gdb.TYPE_CODE_STRUCT: "struct",
        gdb.TYPE_CODE_UNION: "union",
        gdb.TYPE_CODE_ARRAY: "array",
        gdb.TYPE_CODE_FLT: "float",
        gdb.TYPE_CODE_CHAR: "int",
    }

    def __init__(self) -> None:
        self._anon: list[Any] = []  # gdb.Type of anonymous members, by index

    def _kind(self, t: Any) -> str:
        return self.KINDS.get(t.strip_typedefs().code, "other")

    def _layout(self, name: str, t: Any) -> dict[str, Any]:
        t = t.strip_typedefs()
        members = []
        for f in t.fields():
            ft = f.type.strip_typedefs()
            kind = self._kind(ft)
            d: dict[str, Any] = {
                "name": f.name or "",
                "offset": f.bitpos // 8,
                "bit_offset": f.bitpos,
                "bitfield_size": f.bitsize or None,
                "size": ft.sizeof,
                "type": str(f.type),
                "kind": kind,
                "signed": kind == "int" and not _is_unsigned(ft),
                "type_id": 0,
                "array_len": None,
                "elem_size": None,
                "inner_kind": None,
            }
            if kind in ("struct", "union"):
                d["type_id"] = len(self._anon)
                self._anon.append(ft)
            elif kind == "array":
                et = ft.target().strip_typedefs()
                d["array_len"] = ft.range()[1] - ft.range()[0] + 1
                d["elem_size"] = et.sizeof
                d["inner_kind"] = self._kind(et)
                d["signed"] = d["inner_kind"] == "int" and not _is_unsigned(et)
            elif kind == "ptr":
                d["inner_kind"] = self._kind(ft.target())
            members.append(d)
        return {"name": name, "size": t.sizeof, "is_union": t.code == gdb.TYPE_CODE_UNION, "members": members}

    def struct_layout(self, name: str) -> dict[str, Any]:
        try:
            t = gdb.lookup_type("struct " + name)
        except gdb.error:
            try:
                t = gdb.lookup_type(name)
            except gdb.error:
                raise KeyError(f"no type named {name} in DWARF") from None
        return self._layout(name, t)

    def layout_by_id(self, type_id: int) -> dict[str, Any]:
        try:
            t = self._anon[type_id]
        except IndexError:
            raise KeyError(f"no type #{type_id}") from None
        return self._layout(t.tag or "", t)


def _is_unsigned(t: Any) -> bool:
    try:
        return not t.is_signed  # gdb >= 12
    except (AttributeError, ValueError):
        return str(t).startswith(("unsigned", "u")) or str(t) in ("bool", "_Bool")


def dwarf_available() -> bool:
    try:
        t = gdb.lookup_type("struct kvmppc_vcore")
        return t.sizeof > 0
    except gdb.error:
        return False


# --------------------------------------------------------------------- kernel
class Kernel:
    """The executable gdb has loaded, understood as a ppc64 KVM-HV kernel."""

    def __init__(self, path: str):
        from pyvcore._core import KernelImage

        self.path = path
        try:
            self.image = KernelImage(path)
        except OSError as e:
            raise PvError(f"pyvcore: {e}") from None
        except ValueError as e:
            raise PvError(f"pyvcore: {path}: {e}") from None
        if dwarf_available():
            self.layouts = Layouts(GdbTypeSource(), "DWARF")
        elif self.image.has_btf:
            self.layouts = Layouts(self.image, "BTF")
        elif self.image.btf_error:
            raise PvError(f"pyvcore: {os.path.basename(path)}: {self.image.btf_error}")
        else:
            raise PvError(
                f"pyvcore: {os.path.basename(path)} has neither DWARF nor BTF: "
                "no struct layouts (use a kernel built with CONFIG_DEBUG_INFO_BTF "
                "or load its debuginfo)"
            )
        try:
            self.layout = KernelLayout(
                self.layouts, self.image.address, self.image.little_endian, self.image.release
            )
        except (KernelError, LayoutError) as e:
            raise PvError(f"pyvcore: {e}") from None
        self.reader = SnapshotReader(self.layout)
        self.module_btf: dict[str, bool] = {}  # objfile path -> had split BTF

    def add_module_btf(self) -> None:
        """Split BTF of the modules gdb has loaded (add-symbol-file kvm-hv.ko):
        types that vmlinux only forward-declares (kvm_resize_hpt, ...) or does
        not have (preempted_vcore_list) come from there."""
        if not self.image.has_btf:
            return
        for objfile in gdb.objfiles():
            path = objfile.filename or ""
            if not path.endswith(".ko") or path in self.module_btf:
                continue
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
                name = os.path.basename(path)[:-3].replace("-", "_")
                self.module_btf[path] = self.image.add_module_btf(name, data)
            except (OSError, ValueError):
                self.module_btf[path] = False

    @property
    def variant(self) -> str:
        return self.layout.variant

    def symbol(self, name: str) -> int | None:
        """vmlinux symbol, else one gdb knows (e.g. kvm-hv.ko after add-symbol-file)."""
        addr = self.image.address(name)
        if addr is not None:
            return addr
        return gdb_symbol(name)


def gdb_symbol(name: str) -> int | None:
    try:
        return _int(gdb.parse_and_eval(f"(unsigned long)&{name}"))
    except gdb.error:
        return None


_kernel: Kernel | None = None


def executable_path() -> str | None:
    path = gdb.current_progspace().filename
    if path:
        return path
    objfiles = gdb.objfiles()
    return objfiles[0].filename if objfiles else None


def kernel() -> Kernel:
    """The loaded kernel (cached per executable), or a PvError saying what is missing."""
    global _kernel
    path = executable_path()
    if not path:
        raise PvError("pyvcore: no vmlinux loaded (use `file /path/to/vmlinux`, or `pyvcore gdb`)")
    if _kernel is None or _kernel.path != path:
        _kernel = Kernel(path)
    _kernel.add_module_btf()
    return _kernel


def forget(*_args: Any) -> None:
    """Drop boot-time caches (new connection, new executable)."""
    if _kernel is not None:
        _kernel.reader.reset()
    _pir_cache.clear()
    _regnum_cache.clear()
    _thread_cache.clear()


def forget_kernel(*_args: Any) -> None:
    global _kernel
    _kernel = None
    _pir_cache.clear()


# --------------------------------------------------------------------- target
_pir_cache: dict[tuple[int, int, int], int] = {}
_regnum_cache: dict[str, int] = {}
_thread_cache: list[Any] = []


class Stats:
    """Counts of what a pass cost (for the benchmark and `pv-snapshot --stats`)."""

    def __init__(self) -> None:
        self.memory_reads = 0
        self.register_reads = 0
        self.packets = 0
        self.seconds = 0.0


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


class GdbTarget:
    """Registers and memory of the stopped target, restoring gdb's state on exit.

    Use as a context manager: the selected thread/frame and QEMU's memory mode
    are put back however the pass ends.
    """

    # Per snapshot only what the checker needs; pc and hdec for pv-paca.
    REGISTERS = ("msr", "lpidr", "sdr1")

    def __init__(self, with_hdec: bool = False, in_stop: bool = False):
        # with_hdec: also $pc and $hdec (pv-paca shows them; snapshots don't need them)
        self.with_hdec = with_hdec
        # Inside a Breakpoint.stop() gdb still marks the threads as running
        # (the stop is not reported yet) although the target is halted.
        self.in_stop = in_stop
        self.stats = Stats()
        self._phys = False
        self._reader_thread: Any = None
        self._real_thread: Any = None
        self._current: Any = None
        self._saved: Any = None
        # End of the linear map (high_memory), set by read_state once known.
        self.linear_end = decode.VMALLOC_START

    # -- context
    def __enter__(self) -> GdbTarget:
        if not connected():
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
                self._packet("Qqemu.PhyMemMode:0")
                self._phys = False
        finally:
            if self._saved is not None and self._saved.is_valid():
                self._saved.switch()
            self.stats.seconds = time.perf_counter() - self._t0

    def _packet(self, text: str) -> str:
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
    # Registers are read with raw `Hg` + `p` packets, not through gdb's frames:
    # evaluating `$msr` makes gdb build frame 0 of every thread it visits, and
    # without DWARF that is a prologue analysis of ~30 single-word code reads.
    # gdb's idea of the current remote thread is kept true by reading the
    # reader thread's registers last and doing the first memory read through
    # gdb (which re-sends Hg when its own record differs).
    def _regnums(self) -> dict[str, int]:
        if not _regnum_cache:
            out = gdb.execute("maintenance print remote-registers", to_string=True)
            for line in out.splitlines():
                f = line.split()
                # Name Nr Rel Offset Size Type Rmt-Nr g/G-Offset
                if len(f) >= 7 and f[1].isdigit() and f[-2].isdigit():
                    _regnum_cache[f[0]] = int(f[-2])
        return _regnum_cache

    def _thread_id(self, th: Any) -> str:
        pid, lwp, _ = th.ptid
        return f"p{pid:x}.{lwp:x}"

    def _raw_regs(self, th: Any, names: tuple[str, ...]) -> dict[str, int | None]:
        nums = self._regnums()
        if self._packet(f"Hg{self._thread_id(th)}") != "OK":
            raise gdb.error("Hg refused")
        out: dict[str, int | None] = {}
        for n in names:
            if n not in nums:
                out[n] = None
                continue
            self.stats.register_reads += 1
            reply = self._packet(f"p{nums[n]:x}")
            if not reply or reply.startswith("E") or "x" in reply:
                out[n] = None
            else:
                out[n] = int.from_bytes(bytes.fromhex(reply), "little")
        return out

    def _eval_regs(self, th: Any, names: tuple[str, ...]) -> dict[str, int | None]:
        """Fallback for targets without `maintenance packet` (not a remote stub)."""
        th.switch()
        out: dict[str, int | None] = {}
        for n in names:
            self.stats.register_reads += 1
            try:
                v = gdb.parse_and_eval(f"${n}")
                out[n] = None if v.type.code == gdb.TYPE_CODE_VOID else _int(v)
            except gdb.error:
                out[n] = None
        return out

    def threads(self) -> list[ThreadRegs]:
        """Registers of every gdb thread (one per hardware thread), host byte order."""
        threads = gdb_threads()
        # Read the likely reader thread last (the one gdb had selected), so the
        # remote's current thread is already right for the memory reads.
        if self._saved in threads:
            threads.remove(self._saved)
            threads.append(self._saved)
        names = self.REGISTERS + (("pc", "hdec") if self.with_hdec else ())
        out = []
        last = None
        for th in threads:
            key = th.ptid
            want = names if key in _pir_cache else (*names, "pir")
            try:
                raw = self._raw_regs(th, want)
            except gdb.error:
                raw = self._eval_regs(th, want)
            last = th
            regs = ThreadRegs(gdb_thread=th.num)
            if raw.get("msr") is None:
                regs.error = "registers unavailable"
            else:
                regs.msr, regs.swapped = normalise_msr(raw["msr"])
            if "pir" in raw and raw["pir"] is not None:
                pir = raw["pir"]
                _pir_cache[key] = decode.bswap64(pir) if regs.swapped else pir
            regs.pir = _pir_cache.get(key)
            for n in ("pc", "lpidr", "sdr1", "hdec"):
                value = raw.get(n)
                if value is not None and regs.swapped:
                    value = decode.bswap64(value)
                setattr(regs, n, value)
            out.append(regs)
            if regs.host_virtual and self._reader_thread is None:
                self._reader_thread = th
            elif regs.hv and not regs.in_opal and self._real_thread is None:
                self._real_thread = th
        # Memory is read through one thread: one in host virtual mode reaches
        # everything (vmalloc too); one in HV real mode reaches the linear map,
        # which is where PACAs, vcores and vcpus live.  The thread whose
        # registers were read last is already the remote's current thread:
        # keep it if it will do, saving an Hg round trip.
        last_regs = out[-1] if out else None
        if last is not None and last_regs is not None and last_regs.hv and not last_regs.in_opal:
            chosen = last  # host or HV real mode: both reach the linear map; read() switches for vmalloc
        else:
            chosen = self._reader_thread or self._real_thread
        self._current = chosen
        if chosen is not None:
            if chosen is not last:
                self._packet(f"Hg{self._thread_id(chosen)}")
            chosen.switch()
        out.sort(key=lambda r: r.gdb_thread)
        return out

    # -- memory
    def read(self, addr: int, size: int) -> bytes:
        inf = gdb.selected_inferior()
        linear = is_linear(addr, self.linear_end)
        if linear and memory_mode() == "physical":
            return self._read_physical(inf, addr, size)
        if not linear and self._reader_thread is not None and self._current is not self._reader_thread:
            # vmalloc/module space needs the MMU on: switch to a host-virtual
            # thread (gdb sends the Hg itself before the read).
            self._current = self._reader_thread
            self._reader_thread.switch()
        if not self._phys and (self._reader_thread is not None or (self._real_thread is not None and linear)):
            self.stats.memory_reads += 1
            try:
                return inf.read_memory(addr, size).tobytes()
            except gdb.MemoryError:
                pass
        if not is_linear(addr, self.linear_end):
            raise ReadError(
                addr, size, "cannot access memory (vmalloc/module space, no thread in host virtual mode)"
            )
        return self._read_physical(inf, addr, size)

    def _read_physical(self, inf: Any, addr: int, size: int) -> bytes:
        # Every thread is in a guest (or OPAL): QEMU's physical memory mode and
        # the linear map's va -> pa (top nibble dropped).
        if not self._phys:
            reply = self._packet("Qqemu.PhyMemMode:1")
            if "OK" not in reply:
                raise ReadError(addr, size, "cannot access memory and QEMU refused physical mode")
            self._phys = True
        self.stats.memory_reads += 1
        try:
            return inf.read_memory(linear_to_phys(addr), size).tobytes()
        except gdb.MemoryError as e:
            raise ReadError(addr, size, str(e).split(" at ")[0] or "cannot access memory") from None


class MemoryMode(gdb.Parameter):
    """How pv-* commands read kernel memory: auto (default) reads through a
    thread in host mode and falls back to QEMU's physical-memory mode
    (Qqemu.PhyMemMode) for linear-map addresses when no thread can; physical
    always reads the linear map physically (useful to check that path)."""

    set_doc = "Set how pv-* commands read kernel memory (auto|physical)."
    show_doc = "Show how pv-* commands read kernel memory."

    def __init__(self) -> None:
        super().__init__("pv-memory", gdb.COMMAND_DATA, gdb.PARAM_ENUM, ["auto", "physical"])
        self.value = "auto"

    def get_show_string(self, svalue: str) -> str:
        return f"pv-* commands read kernel memory in {svalue} mode"


_memory_mode: MemoryMode | None = None


def memory_mode() -> str:
    return _memory_mode.value if _memory_mode is not None else "auto"


def prepare(target: GdbTarget, k: Kernel) -> list[ThreadRegs]:
    """Registers of every thread, a reader thread chosen, the linear map's end known."""
    regs = target.threads()
    with contextlib.suppress(ReadError):
        target.linear_end = k.reader.linear_end(target)
    return regs


def read_state(
    stop: str | None = None, with_hdec: bool = False, with_kvm: bool = True, in_stop: bool = False
) -> tuple[decode.Reading, Stats]:
    """One pass: registers of every thread, PACAs, vcores, vcpus, kvm."""
    k = kernel()
    with GdbTarget(with_hdec=with_hdec, in_stop=in_stop) as target:
        regs = prepare(target, k)
        try:
            reading = k.reader.read(target, regs, stop=stop, with_kvm=with_kvm)
        except KernelError as e:
            raise PvError(f"pyvcore: {e}") from None
        except ReadError as e:
            raise PvError(f"pyvcore: {e}") from None
    return reading, target.stats


def install_events() -> None:
    global _memory_mode
    if _memory_mode is None:
        _memory_mode = MemoryMode()
    gdb.events.new_objfile.connect(lambda _e: forget())
    gdb.events.clear_objfiles.connect(forget_kernel)
    if hasattr(gdb.events, "connection_removed"):
        gdb.events.connection_removed.connect(forget)
    gdb.events.exited.connect(forget)
