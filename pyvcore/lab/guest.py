"""Guest side of the lab: the KVM guest programs, the initramfs, and the console protocol.

The initramfs boots the POWER8 host kernel into ``/init`` (``guest/init.sh``), which
offlines the secondary threads, loads kvm + kvm-hv, prints where the modules
landed, runs one scenario with ``pyvcore-vmm`` (``guest/vmm.c`` + the real-mode
guest code ``guest/guest.S``) and powers off.

Kernel command line
    ``pyvcore.scenario=NAME`` (one of :data:`SCENARIOS`, default ``all``) and
    ``pyvcore.hold=SECONDS`` (how long the guest keeps running once every vcpu
    started; default 2; ``0`` = until the lab is stopped).

Console lines (one per line, everything else on the console is kernel noise)
    ``PYVCORE INIT scenario=S hold=H uptime=T``
        /init started.
    ``PYVCORE MODULE <name> <section> 0x<addr>``
        every section of ``kvm`` and ``kvm_hv`` from ``/sys/module/*/sections``.
    ``PYVCORE KVM uptime=T online=CPUS``
        modules loaded, secondaries offline.
    ``PYVCORE VMM scenario=S vcpus=0,1,.. smt=N hold=H spin_pc=0x.. msgsndp_pc=0x.. cede_pc=0x.. start_timeout=S``
        the VMM created the VM; the ``*_pc`` values are guest real addresses
        (breakpoint targets: the spin loop, the ``msgsndp``, the ``H_CEDE`` sc).
    ``PYVCORE READY scenario=S``
        every vcpu of the scenario has executed guest code (its first report
        hcall reached the VMM).
    ``PYVCORE STALLED scenario=S waiting=ID,..``
        instead of READY: these vcpus never ran within 15 s (45 s at 8 threads) (stock QEMU: every
        vcpu off hardware thread 0).
    ``PYVCORE REPORT {json}``
        one per vcpu, printed after the hold time (see below).  Stopping: each vcpu stops
        at its next exit to the VMM; after 3 s the rest are kicked out of KVM_RUN.
    ``PYVCORE DONE scenario=S status=ok vcpus=N started=N seconds=F``
        or ``status=error reason=R ...`` with R one of ``unknown-scenario``,
        ``stalled`` (plus ``never_ran=ID,..``), ``vcpu-error``,
        ``vcpus-did-not-stop``, ``insmod-kvm``, ``insmod-kvm-hv``, ``no-dev-kvm``,
        ``open-dev-kvm``, ``create-vm-hv``, ``bad-hold:...`` and other setup steps.
    ``PYVCORE POWEROFF``
        /init is about to power the machine off.

Report JSON (``PYVCORE REPORT``), one object per vcpu, always these keys:
    ``scenario`` str; ``vcpu`` vcpu id; ``vcore`` = vcpu // smt; ``first_vcpuid`` =
    vcore * smt; ``role`` (``spin``, ``cede-waker``, ``cede-sleeper``, ``doorbell``,
    ``exits``, ``cede-timer``); ``started`` (the vcpu executed guest code); ``finished`` (its VMM
    thread stopped running it); ``tir`` (SPR 446 read by the guest: the physical
    thread it ran on; null if never started); ``tir_changes`` (reports whose TIR
    differed from the first); ``iterations`` (spin-loop iterations, or exit hcalls
    for ``exits``); ``reports`` (report hcalls); ``exits`` (KVM_RUN returns, i.e.
    exits to userspace); ``hcalls`` (hcalls that reached userspace);
    ``decrementers`` (0x900 interrupts); ``cedes`` (H_CEDE returns); ``prods``
    (H_PROD calls); ``doorbells_sent`` (msgsndp that did not trap);
    ``doorbells_received`` (0xA00 interrupts); ``woken_by`` (TIRs of the senders
    whose mailbox bits a doorbell found); ``msgsndp_traps`` (msgsndp that came back
    as a program interrupt); ``program_checks``; ``program_check_pc`` /
    ``program_check_srr1`` (SRR0/SRR1 of the last one, else null); ``msgsndp_pc``
    (guest address of the msgsndp instruction); ``unexpected_vector`` /
    ``unexpected_pc`` (an interrupt the guest has no handler for, else null);
    ``busy_retries`` (KVM_RUN calls that failed with EBUSY and were retried: the vcore
    runner could not grab a secondary thread in time, "KVM: couldn't grab cpu N");
    ``seconds`` (first to last report); ``error`` (VMM-side error or null).

Scenarios
    :data:`pyvcore.lab.scenarios.SCENARIO_TABLE` (vcpu ids per thread count, roles, what
    each does); the VMM gets it as the generated ``scenarios.h``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyvcore.lab.scenarios import SCENARIOS, c_header
from pyvcore.lab.steps import worked
from pyvcore.lab.tools import CROSS_CC

__all__ = ["SCENARIOS", "build_guest_programs", "build_initramfs", "parse_console"]

GUEST_DIR = Path(__file__).resolve().parent / "guest"
VMM_NAME = "pyvcore-vmm"
VMM_SOURCES = ("vmm.c", "guest.S", "layout.h")
CFLAGS = ("-static", "-O2", "-Wall", "-pthread", "-Wa,-mregnames", "-Wa,-mpower8")
REQUIRED_MODULES = ("kvm", "kvm-hv")


class GuestBuildError(RuntimeError):
    """The guest programs or the initramfs could not be built."""


# --------------------------------------------------------------------------- build


def _sources_digest(cc: str) -> str:
    digest = hashlib.sha256()
    for name in VMM_SOURCES:
        digest.update(name.encode() + b"\0" + (GUEST_DIR / name).read_bytes())
    digest.update(b"scenarios.h\0" + c_header().encode())
    digest.update(" ".join((cc, *CFLAGS)).encode())
    return digest.hexdigest()[:16]


def build_guest_programs(out_dir: Path, cc: str = CROSS_CC) -> dict[str, Path]:
    """Cross-compile the static guest programs into ``out_dir``.

    Returns ``{"pyvcore-vmm": path}`` with path ``out_dir/<digest>/pyvcore-vmm``: a
    rebuild happens only when the sources, the scenario table, the compiler name or the
    flags changed.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if shutil.which(cc) is None:
        raise GuestBuildError(
            f"cross compiler {cc!r} not found: install it with "
            "`apt-get install gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross` "
            "(or run `pyvcore lab setup`)"
        )
    # Keyed by the sources' digest: labs of different pyvcore versions sharing one cache
    # (a shared machine) never rebuild each other's VMM, and builds racing for the same
    # key each write their own temporary files and rename them into place.
    digest = _sources_digest(cc)
    keyed = out_dir / digest
    vmm = keyed / VMM_NAME
    if vmm.is_file():
        return {VMM_NAME: vmm}
    worked()  # a `lab setup` step that builds it is not "cached"
    keyed.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build.", dir=keyed))
    try:
        (work / "scenarios.h").write_text(c_header())
        cmd = [
            cc,
            *CFLAGS,
            f"-I{GUEST_DIR}",
            f"-I{work}",
            str(GUEST_DIR / "vmm.c"),
            str(GUEST_DIR / "guest.S"),
            "-o",
            str(work / VMM_NAME),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise GuestBuildError(f"building {VMM_NAME} failed:\n$ {' '.join(cmd)}\n{proc.stderr}")
        os.replace(work / "scenarios.h", keyed / "scenarios.h")
        os.replace(work / VMM_NAME, vmm)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {VMM_NAME: vmm}


@dataclass(frozen=True)
class CpioEntry:
    """One member of a newc cpio archive."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _newc_member(ino: int, entry: CpioEntry) -> bytes:
    name = entry.name.encode() + b"\0"
    fields = (
        ino,
        entry.mode,
        0,
        0,
        2 if stat.S_ISDIR(entry.mode) else 1,
        0,
        len(entry.data),
        0,
        0,
        entry.rdev[0],
        entry.rdev[1],
        len(name),
        0,
    )
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = header + name
    out += b"\0" * (-len(out) % 4)
    out += entry.data + b"\0" * (-len(entry.data) % 4)
    return out


def write_newc(entries: Iterable[CpioEntry]) -> bytes:
    """Serialize ``entries`` as an uncompressed newc ("070701") cpio archive."""
    blob = bytearray()
    for ino, entry in enumerate(entries, start=1):
        blob += _newc_member(ino, entry)
    blob += _newc_member(0, CpioEntry("TRAILER!!!", 0))
    blob += b"\0" * (-len(blob) % 512)
    return bytes(blob)


def read_newc(blob: bytes) -> list[CpioEntry]:
    """Parse a newc cpio archive (the inverse of :func:`write_newc`)."""
    entries: list[CpioEntry] = []
    pos = 0
    while True:
        if blob[pos : pos + 6] != b"070701":
            raise ValueError(f"not a newc cpio member at offset {pos}")
        fields = [int(blob[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = fields[1], fields[6], fields[9], fields[10], fields[11]
        pos += 110
        name = blob[pos : pos + namesize - 1].decode()
        pos += namesize
        pos += -pos % 4
        data = blob[pos : pos + size]
        pos += size
        pos += -pos % 4
        if name == "TRAILER!!!":
            return entries
        entries.append(CpioEntry(name, mode, bytes(data), (rmaj, rmin)))


def _module_bytes(path: Path) -> bytes:
    data = Path(path).read_bytes()
    if data[:6] == b"\xfd7zXZ\0":
        data = lzma.decompress(data)  # busybox insmod wants a plain .ko
    if data[:4] != b"\x7fELF":
        raise GuestBuildError(f"{path} is not a kernel module (ELF)")
    return data


def build_initramfs(out: Path, *, busybox: Path, modules: dict[str, Path], programs: dict[str, Path]) -> Path:
    """Write the lab initramfs (gzip'd newc cpio) to ``out`` and return it.

    ``modules`` maps ``kvm`` and ``kvm-hv`` (``kvm_hv`` accepted) to the module
    files (decompressed, or ``.ko.xz`` which is decompressed here); they land in
    ``/lib/modules/<name>.ko``; with no modules at all /init expects KVM built in.  ``programs`` land in ``/bin``; ``busybox`` is the
    static ppc64el busybox (``/bin/busybox``, ``/bin/sh``); ``/init`` is
    ``guest/init.sh``.  The archive is byte-for-byte reproducible.
    """
    wanted = {name.replace("_", "-"): Path(path) for name, path in modules.items()}
    missing = [m for m in REQUIRED_MODULES if m not in wanted]
    if missing and wanted:  # none at all: KVM is built into the kernel
        raise GuestBuildError(f"build_initramfs: missing modules {missing} (got {sorted(modules)})")
    d, x, r = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o755, stat.S_IFREG | 0o644
    entries = [CpioEntry(name, d) for name in ("bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules")]
    entries.append(CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    entries.append(CpioEntry("init", x, (GUEST_DIR / "init.sh").read_bytes()))
    entries.append(CpioEntry("bin/busybox", x, Path(busybox).read_bytes()))
    entries.append(CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"))
    for name, path in sorted(programs.items()):
        entries.append(CpioEntry(f"bin/{name}", x, Path(path).read_bytes()))
    for name in sorted(wanted):
        entries.append(CpioEntry(f"lib/modules/{name}.ko", r, _module_bytes(wanted[name])))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(write_newc(entries))
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", dir=out.parent)  # concurrent builders
    with os.fdopen(fd, "wb") as fh:
        fh.write(buf.getvalue())
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    return out


def list_initramfs(path: Path) -> dict[str, int]:
    """``{member name: mode}`` of a (gzip'd) newc initramfs."""
    blob = Path(path).read_bytes()
    if blob[:2] == b"\x1f\x8b":
        blob = gzip.decompress(blob)
    return {e.name: e.mode for e in read_newc(blob)}


# ------------------------------------------------------------------------- console

_LINE = re.compile(r"PYVCORE (INIT|MODULE|KVM|VMM|READY|STALLED|REPORT|DONE|POWEROFF)\b ?(.*)")
_KV = re.compile(r"(\w+)=(\S*)")


@dataclass
class ConsoleLog:
    """Everything the guest side printed, parsed from a console log."""

    modules: dict[str, dict[str, int]] = field(default_factory=dict)
    vmm: dict[str, str] | None = None
    ready: str | None = None  # scenario named by the READY line
    stalled: list[int] | None = None  # vcpu ids of a STALLED line
    reports: list[dict[str, Any]] = field(default_factory=list)
    done: dict[str, str] | None = None
    powered_off: bool = False
    bad_lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.done is not None and self.done.get("status") == "ok"

    def report(self, vcpu: int) -> dict[str, Any]:
        """The report of vcpu id ``vcpu`` (KeyError if none)."""
        for rep in self.reports:
            if rep["vcpu"] == vcpu:
                return rep
        raise KeyError(f"no PYVCORE REPORT for vcpu {vcpu}")


def _ids(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip().isdigit()]


def parse_console(text: str) -> ConsoleLog:
    """Parse the ``PYVCORE ...`` lines of a console log (see the module docstring).

    Lines may carry a ``\\r`` or kernel noise before the marker; a REPORT whose
    JSON does not parse goes to ``bad_lines`` instead of raising.
    """
    log = ConsoleLog()
    for raw in text.splitlines():
        match = _LINE.search(raw.rstrip("\r"))
        if not match:
            continue
        kind, rest = match.group(1), match.group(2).strip()
        if kind == "MODULE":
            parts = rest.split()
            try:
                log.modules.setdefault(parts[0], {})[parts[1]] = int(parts[2], 16)
            except (IndexError, ValueError):
                log.bad_lines.append(raw)
        elif kind == "REPORT":
            try:
                rep = json.loads(rest)
            except json.JSONDecodeError:
                log.bad_lines.append(raw)
                continue
            if isinstance(rep, dict) and "vcpu" in rep:
                log.reports.append(rep)
            else:
                log.bad_lines.append(raw)
        elif kind == "READY":
            log.ready = dict(_KV.findall(rest)).get("scenario", "")
        elif kind == "STALLED":
            log.stalled = _ids(dict(_KV.findall(rest)).get("waiting", ""))
        elif kind == "DONE":
            log.done = dict(_KV.findall(rest))
        elif kind == "VMM":
            log.vmm = dict(_KV.findall(rest))
        elif kind == "POWEROFF":
            log.powered_off = True
    return log


def parse_reports(text: str) -> list[dict[str, Any]]:
    """The ``PYVCORE REPORT`` objects of a console log, in order."""
    return parse_console(text).reports


def parse_modules(text: str) -> dict[str, dict[str, int]]:
    """``{"kvm_hv": {".text": addr, ...}, "kvm": {...}}`` from ``PYVCORE MODULE`` lines."""
    return parse_console(text).modules
