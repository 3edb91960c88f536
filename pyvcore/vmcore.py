"""Post-mortem: judge the vcores of a crashed (or dumped) POWER8 host from its vmcore.

``pyvcore check --vmcore FILE --vmlinux VMLINUX [--modules DIR]`` reads the same
snapshot a live stop gives (:class:`pyvcore.decode.SnapshotReader`, layouts from
the vmlinux's BTF or DWARF), one per core that has a vcore, and judges each with
the checker.

* **Dump formats**: ELF vmcores (``/proc/vmcore`` as saved by kdump, QEMU's
  ``dump-guest-memory``) and makedumpfile's compressed kdump format, both read
  by libkdumpfile (``kdumpfile`` Python bindings: Debian's
  python3-libkdumpfile, or pykdumpfile from PyPI where libkdumpfile >= 0.5.5 is
  installed).  A file libkdumpfile refuses is refused, never half-read.
* **Addresses**: the linear map (``0xc000...`` below ``high_memory``) is read
  physically (the top 4 bits dropped, as in HV real mode); vmalloc and module
  space (``struct kvm``) go through the kernel's own page table
  (``swapper_pg_dir``, :mod:`pyvcore.pagetable`).
* **Registers**: per-cpu ``NT_PRSTATUS`` notes give r13, the PC and the MSR.
  LPIDR, SDR1 and HDEC are not in any kdump note (the Linux ``elf_prstatus``
  carries ``pt_regs`` only), so the checks that need them are named as not
  judged.  A note is matched to its cpu by r13 == that cpu's PACA (a thread in
  host kernel mode), else by the note's position (QEMU writes one note per
  vCPU in cpu order, ``pr_pid`` = cpu index + 1).
"""

from __future__ import annotations

import errno
import importlib
import lzma
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyvcore.decode import REAL_ADDRESS_MASK, VMALLOC_START, KernelError, ReadError, ThreadRegs, is_linear
from pyvcore.errors import PyvcoreError, cannot_read, describe

# Registers a kdump note never has (NT_PRSTATUS is pt_regs): the snapshot
# leaves them out, and the checks that need them are reported as not judged.
MISSING_REGISTERS = ("lpidr", "sdr1", "hdec", "dpdes")
# What the notes give, when the dump has notes (QEMU's kdump-compressed files have none).
NOTE_REGISTERS = ("pc", "msr")
# Debian/Ubuntu ship libkdumpfile's bindings for the system Python only
# (python3-libkdumpfile); a virtualenv on the same Python minor can load them.
_SYSTEM_DIST = Path("/usr/lib/python3/dist-packages")


class VmcoreError(PyvcoreError):
    """The dump, the kernel or the bindings cannot be used: one line, exit 2."""


def _kdumpfile() -> Any:
    try:
        return importlib.import_module("kdumpfile")
    except ImportError:
        pass
    tag = f"cpython-{sys.version_info[0]}{sys.version_info[1]}"
    if any(_SYSTEM_DIST.glob(f"_kdumpfile.{tag}-*.so")):
        sys.path.append(str(_SYSTEM_DIST))
        try:
            return importlib.import_module("kdumpfile")
        except ImportError:
            pass
    raise VmcoreError(
        "reading a vmcore needs libkdumpfile's Python bindings: apt-get install python3-libkdumpfile "
        "(Debian/Ubuntu) or pip install pykdumpfile (with libkdumpfile >= 0.5.5)"
    )


@dataclass
class DumpMemory:
    """:class:`pyvcore.decode.Memory` over a vmcore: physical reads, the linear map, the page table."""

    ctx: Any
    kdump: Any
    linear_end: int = VMALLOC_START
    page_table: Any = None  # pyvcore.pagetable.KernelPageTable, set once the geometry is read
    no_page_table: str = "no kernel page table"
    log: dict[int, bytes] | None = None  # every virtual read, when recording a small core for tests
    reads: int = 0
    unmapped: list[int] = field(default_factory=list)  # addresses outside the linear map that failed

    def read_phys(self, addr: int, size: int) -> bytes:
        self.reads += 1
        try:
            data = self.ctx.read(self.kdump.KDUMP_MACHPHYSADDR, addr, size)
        except Exception as exc:  # libkdumpfile raises its own classes (NoDataError, ...)
            raise ReadError(addr, size, f"not in the dump ({describe(exc)})") from None
        if len(data) != size:
            raise ReadError(addr, size, "short read from the dump")
        return bytes(data)

    def read(self, addr: int, size: int) -> bytes:
        data = self._read(addr, size)
        if self.log is not None:
            self.log[addr] = data
        return data

    def _read(self, addr: int, size: int) -> bytes:
        if is_linear(addr, self.linear_end):
            return self.read_phys(addr & REAL_ADDRESS_MASK, size)
        if self.page_table is None:
            self.unmapped.append(addr)
            raise ReadError(addr, size, f"outside the linear map and {self.no_page_table}")
        translation_error = importlib.import_module("pyvcore.pagetable").TranslationError
        try:
            return bytes(self.page_table.read(addr, size))
        except translation_error as exc:
            self.unmapped.append(addr)
            raise ReadError(addr, size, f"not mapped by the kernel page table ({exc.why})") from None


@dataclass
class Note:
    """One ``NT_PRSTATUS`` note: its position, pr_pid and the registers used here."""

    index: int
    pid: int | None
    regs: dict[str, int] = field(default_factory=dict)


def prstatus_notes(ctx: Any) -> list[Note]:
    """Per-cpu register notes as libkdumpfile exposes them (``cpu.N.reg.*``, ``cpu.N.PID``)."""
    notes: list[Note] = []
    try:
        cpus = ctx.attr["cpu"]
    except (KeyError, Exception):
        return notes
    for key in sorted(cpus.keys(), key=lambda k: int(k) if str(k).isdigit() else 1 << 30):
        if not str(key).isdigit():
            continue
        cpu = cpus[key]
        regs: dict[str, int] = {}
        with _quiet():
            for name, value in cpu["reg"].items():
                regs[str(name)] = int(value)
        pid = None
        with _quiet():
            pid = int(cpu["pid"])
        notes.append(Note(int(key), pid, regs))
    return notes


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], Exception)  # type: ignore[arg-type]


# The formats libkdumpfile reads that pyvcore asks it for: an ELF core file and the
# signatures of makedumpfile's compressed kdump and the older diskdump (makedumpfile's
# diskdump_mod.h: KDUMP_SIGNATURE, DISK_DUMP_SIGNATURE).
ELF_MAGIC = b"\x7fELF"
ET_CORE = 4
DUMP_SIGNATURES = {b"KDUMP   ": "a compressed kdump file", b"DISKDUMP": "a diskdump file"}
ELF_TYPES = {
    1: "a relocatable ELF object (a kernel module?)",
    2: "an ELF executable (a vmlinux?)",
    3: "a shared ELF object",
}
VMCORE_KINDS = "an ELF core file (kdump's /proc/vmcore, QEMU dump-guest-memory) or a makedumpfile dump"


def dump_kind(path: Path) -> str:
    """What kind of dump ``path`` claims to be ("an ELF core file", "a compressed kdump
    file", "a diskdump file"), from its first bytes; VmcoreError naming the file and what it is
    not (a directory, an ELF executable, no dump at all)."""
    if path.is_dir():
        raise VmcoreError(cannot_read(path, errno.EISDIR, f"a vmcore: {VMCORE_KINDS}"))
    try:
        with path.open("rb") as fh:
            head = fh.read(18)
    except OSError as exc:
        raise VmcoreError(cannot_read(path, exc)) from None
    if head[:8] in DUMP_SIGNATURES:
        return DUMP_SIGNATURES[head[:8]]
    if head[:4] != ELF_MAGIC:
        raise VmcoreError(
            f"--vmcore {path}: not a vmcore: neither an ELF core file nor a makedumpfile (kdump or diskdump) dump"
        )
    if len(head) < 18:
        raise VmcoreError(f"--vmcore {path}: an ELF file cut short ({len(head)} bytes): not a vmcore")
    e_type = int.from_bytes(head[16:18], "little" if head[5] == 1 else "big")
    if e_type != ET_CORE:
        what = ELF_TYPES.get(e_type, f"an ELF file of type {e_type}")
        raise VmcoreError(f"--vmcore {path}: {what}, not a core file: not a vmcore")
    return "an ELF core file"


def _libkdumpfile_reason(exc: Exception) -> str:
    """libkdumpfile's reason without its call path ("Cannot open dump: Cannot set
    file.set.0.fd: Unsupported ELF class: 2" -> "unsupported ELF class: 2")."""
    parts = [p for p in str(exc).split(": ") if not re.fullmatch(r"Cannot (open dump|set \S+)", p.strip())]
    reason = ": ".join(parts).strip() or "no reason given"
    return reason[:1].lower() + reason[1:]


def open_dump(path: Path, page_size: int = 4096) -> tuple[Any, Any]:
    """(libkdumpfile context, module) for ``path``; VmcoreError if it is not a dump it can read."""
    kind = dump_kind(path)
    kdump = _kdumpfile()
    try:
        ctx = kdump.kdumpfile(str(path))
    except Exception as exc:  # libkdumpfile: "Unknown file format", "Truncated file", ...
        reason = _libkdumpfile_reason(exc)
        raise VmcoreError(f"--vmcore {path}: {kind} that libkdumpfile cannot read ({reason})") from None
    try:
        fmt = str(ctx.attr["file.format"])
    except Exception:
        fmt = "?"
    # Reads are by machine-physical address: pyvcore translates kernel virtual
    # addresses itself (linear map, page table), so libkdumpfile needs no OS
    # model, only the page size an ELF dump without VMCOREINFO does not state
    # (libkdumpfile 0.5.1 divides by it: SIGFPE when unset).
    try:
        ctx.attr["arch.page_size"]
    except KeyError:
        ctx.attr["arch.page_size"] = page_size
    ctx.format_name = fmt  # for the report line
    return ctx, kdump


def module_btf(image: Any, modules: Path | None) -> list[str]:
    """Add kvm.ko / kvm-hv.ko split BTF from ``modules`` (.ko or .ko.xz); returns the names added."""
    added: list[str] = []
    if modules is None:
        return added
    if not modules.is_dir():
        code = errno.ENOTDIR if modules.exists() else errno.ENOENT
        raise VmcoreError(cannot_read(modules, code, "a directory with kvm.ko and kvm-hv.ko"))
    for path in sorted(modules.rglob("kvm*.ko*")):
        if path.suffix not in (".ko", ".xz"):
            continue
        data = path.read_bytes()
        if path.suffix == ".xz":
            try:
                data = lzma.decompress(data)
            except lzma.LZMAError as exc:
                raise VmcoreError(f"{path}: not a valid .xz module ({exc})") from None
        name = path.name.split(".ko")[0].replace("-", "_")
        try:
            if image.add_module_btf(name, data):
                added.append(name)
        except ValueError as exc:
            raise VmcoreError(f"{path}: {exc}") from None
    return added


def thread_regs(notes: list[Note], pacas: dict[int, int], hw_ids: dict[int, int]) -> dict[int, ThreadRegs]:
    """cpu -> ThreadRegs: the note whose r13 is the cpu's PACA, else the unmatched notes in cpu order.

    r13 holds the PACA in host kernel code (arch/powerpc/include/asm/paca.h:
    local_paca); a thread stopped in a guest has the guest's r13, and QEMU
    writes one note per vCPU in cpu order, so the leftovers go by position.
    """
    by_r13 = {n.regs.get("r13"): n for n in notes if n.regs.get("r13") is not None}
    chosen: dict[int, Note] = {cpu: by_r13[paca] for cpu, paca in pacas.items() if paca in by_r13}
    spare = [n for n in notes if all(n is not c for c in chosen.values())]
    for cpu in sorted(pacas):
        if cpu not in chosen and spare:
            chosen[cpu] = spare.pop(0)
    out: dict[int, ThreadRegs] = {}
    for cpu in sorted(pacas):
        regs = chosen[cpu].regs if cpu in chosen else {}
        out[cpu] = ThreadRegs(
            gdb_thread=cpu + 1,
            pir=hw_ids.get(cpu),
            msr=regs.get("msr"),
            pc=regs.get("pc", regs.get("nip")),
            r13=regs.get("r13"),
        )
    return out


def cores(cpus: list[int], threads_per_core: int) -> Iterator[list[int]]:
    """Linux cpus grouped by core (cpu // threads_per_core, the powernv numbering)."""
    groups: dict[int, list[int]] = {}
    for cpu in cpus:
        groups.setdefault(cpu // max(threads_per_core, 1), []).append(cpu)
    for core in sorted(groups):
        yield groups[core]


# ------------------------------------------------------------------- the check
@dataclass
class CoreResult:
    """One core of the dump: its cpus, the snapshot read, what the checker said."""

    core: int
    cpus: list[int]
    snapshot: dict[str, Any]
    violations: list[Any]
    not_judged: list[tuple[int, str]]
    problems: list[str]


@dataclass
class VmcoreReport:
    """Every core with a vcore, judged; ``exit_code`` 0 clean, 1 violations, 2 nothing judged."""

    vmcore: Path
    fmt: str
    release: str | None
    cores: list[CoreResult]
    skipped: list[str]
    missing: list[str]
    notes: int
    problems: list[str]

    @property
    def violations(self) -> list[Any]:
        return [v for c in self.cores for v in c.violations]

    @property
    def verdict(self) -> str:
        if self.violations:
            return "violations"
        return "clean" if self.cores else "not-judged"

    @property
    def exit_code(self) -> int:
        return {"clean": 0, "violations": 1}.get(self.verdict, 2)


def _load_kernel(vmlinux: Path, modules: Path | None) -> tuple[Any, Any]:
    """(KernelImage, SnapshotReader) for ``vmlinux``; VmcoreError with the reason otherwise."""
    from pyvcore._core import KernelImage
    from pyvcore.decode import KernelLayout, SnapshotReader
    from pyvcore.layout import LayoutError, Layouts

    try:
        image = KernelImage(str(vmlinux))
    except OSError as exc:
        raise VmcoreError(cannot_read(vmlinux, exc)) from None
    except ValueError as exc:
        raise VmcoreError(f"--vmlinux {vmlinux}: {exc}") from None
    if not image.has_btf:
        raise VmcoreError(
            f"--vmlinux {vmlinux}: no .BTF section; for a kernel with DWARF only, use the drgn "
            "helpers (pyvcore.drgn.snapshot)"
        )
    module_btf(image, modules)
    try:
        layout = KernelLayout(Layouts(image, "BTF"), image.address, image.little_endian, image.release)
    except (KernelError, LayoutError) as exc:
        raise VmcoreError(f"--vmlinux {vmlinux}: {exc}") from None
    return image, SnapshotReader(layout)


def _same_kernel(image: Any, mem: DumpMemory) -> None:
    """Refuse a dump of another kernel: its linux_banner must be the vmlinux's."""
    addr = image.address("linux_banner")
    want = image.banner
    if addr is None or not want:
        return
    try:
        got = mem.read(addr, len(want.encode())).decode(errors="replace")
    except ReadError as exc:
        raise VmcoreError(
            f"the dump has no linux_banner at {addr:#x} ({exc.why}): not this kernel's dump?"
        ) from None
    if got != want:
        raise VmcoreError(
            f"the dump is of another kernel: {got.strip()[:90]!r}, vmlinux is {want.strip()[:90]!r}"
        )


def _attach_page_table(reader: Any, mem: DumpMemory) -> None:
    walker = getattr(reader, "page_table", None)
    if walker is None:
        mem.no_page_table = "this pyvcore has no kernel page-table walk"
        return
    try:
        mem.page_table = walker(mem, mem.read_phys)
    except (KernelError, ReadError) as exc:
        mem.no_page_table = f"the kernel page table is unusable ({exc})"


def check_vmcore(
    vmcore: str | Path,
    vmlinux: str | Path,
    modules: str | Path | None = None,
    variant: str | None = None,
    record: dict[int, bytes] | None = None,
) -> VmcoreReport:
    """Read a snapshot of every core that has a vcore out of ``vmcore`` and judge each.

    ``vmlinux``: the dumped kernel (its BTF gives the layouts, its symbols the
    addresses; its ``linux_banner`` must match the dump's); ``modules``: a
    directory with kvm.ko/kvm-hv.ko for their split BTF; ``record``: a dict
    that receives every kernel-virtual read (address -> bytes), to keep a
    small core of just what was read.  Raises VmcoreError
    (one line) for a dump, kernel or binding that cannot be used.
    """
    from pyvcore.checker import Checker

    dump_kind(Path(vmcore))  # a file that is no dump is refused before the kernel is read
    image, reader = _load_kernel(Path(vmlinux), Path(modules) if modules else None)
    ctx, kdump = open_dump(Path(vmcore))
    mem = DumpMemory(ctx, kdump, log=record)
    _same_kernel(image, mem)
    problems: list[str] = []
    try:
        mem.linear_end = reader.linear_end(mem)
        _attach_page_table(reader, mem)
        pacas = reader.paca_addresses(mem)
        hw_ids = {cpu: int(reader.read_paca(mem, addr).get("hw_cpu_id", -1)) for cpu, addr in pacas.items()}
        tpc = reader.threads_per_core(mem) or 8
    except (KernelError, ReadError) as exc:
        raise VmcoreError(f"the dump's PACAs cannot be read: {exc}") from None
    notes = prstatus_notes(ctx)
    regs = thread_regs(notes, pacas, hw_ids)
    checker = Checker(variant)
    report = VmcoreReport(
        Path(vmcore),
        getattr(ctx, "format_name", "?"),
        image.release,
        [],
        [],
        list(MISSING_REGISTERS) + ([] if notes else list(NOTE_REGISTERS)),
        len(notes),
        problems,
    )
    for index, cpus in enumerate(cores(sorted(pacas), tpc)):
        reading = reader.read(
            mem, [regs[c] for c in cpus], stop=f"vmcore core {index} (cpus {cpus[0]}-{cpus[-1]})"
        )
        if not reading.vcores:
            report.skipped.append(f"core {index} (cpus {cpus[0]}-{cpus[-1]}): no vcore")
            continue
        snap = reading.snapshot
        for thread in snap["threads"]:
            r = regs.get(int(thread["cpu"]))
            if r is not None and r.pc is not None:
                thread["pc"], thread["msr"] = r.pc, r.msr
        outcome = getattr(checker, "check_outcome", None)
        if outcome is not None:
            o = outcome(snap)
            found, not_judged = list(o.violations), [(int(n), str(why)) for n, why in o.not_judged]
        else:
            found, not_judged = checker.check(snap), []
        checker.reset()  # cores are independent: no transition between them
        report.cores.append(CoreResult(index, cpus, snap, found, not_judged, reading.problems))
    if mem.unmapped:
        problems.append(
            f"{len(mem.unmapped)} reads outside the linear map failed, first {mem.unmapped[0]:#x}"
        )
    return report


__all__ = [
    "MISSING_REGISTERS",
    "DumpMemory",
    "Note",
    "VmcoreError",
    "VmcoreReport",
    "check_vmcore",
    "open_dump",
]
