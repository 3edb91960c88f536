"""What a lab boot is made of: which QEMU, which kernel and modules, which plugin.

Everything is resolved and checked here, before the machine lock is taken and before
QEMU starts: a kernel that is not what it claims is refused with one line.

Kernels
    ``None``: the kernel `pyvcore lab setup` unpacked by default (Debian's 6.12, 4k pages).
    A name (``6.12``, ``6.12-64k``, ``7.2``, ``7.2-64k``, ``6.1``): a Debian kernel
    `pyvcore lab setup --kernel NAME` unpacked. A path: a vmlinux (ELF) of the user's
    own build; kvm/kvm-hv then come from ``modules`` or are built in.
Modules
    A directory holding ``kvm.ko`` and ``kvm-hv.ko`` (``.ko.xz`` too, found anywhere
    below it, e.g. a ``lib/modules/<release>`` tree); they replace the kernel package's.
QEMU
    ``patched`` (built by setup), ``stock`` (Debian's), or a path to a qemu-system-ppc64.
Symbols
    The debug image of a kernel that has neither BTF nor DWARF (Debian's
    ``/usr/lib/debug/boot/vmlinux-REL``): the kernel boots, gdb and the readers load this.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import lzma
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyvcore.errors import cannot_read
from pyvcore.hookpoints import HOOK_POINTS
from pyvcore.lab.cache import KernelManifest, cache_dir
from pyvcore.lab.qemu import LabError
from pyvcore.lab.tools import QEMU_DATA_DIR, STOCK_QEMU

QEMU_KINDS = ("patched", "stock")
# The largest kernel file QEMU's powernv machine loads (hw/ppc/pnv.c, KERNEL_MAX_SIZE): a
# vmlinux with its DWARF (Debian's -dbg one: 256 MiB for 6.1) is refused by QEMU as "Could not
# load kernel".
PNV_KERNEL_MAX_BYTES = 128 << 20
# Module file names as they appear in a kernel tree; dict order is the load order.
MODULE_FILES = {"kvm": ("kvm.ko",), "kvm_hv": ("kvm-hv.ko", "kvm_hv.ko")}


class LabNotSetUp(LabError):
    """Something `pyvcore lab setup` provides is missing (``missing`` names it)."""

    def __init__(self, missing: str, fix: str = "run `pyvcore lab setup`") -> None:
        super().__init__(f"lab not set up: missing {missing}; {fix}")
        self.missing = missing
        self.fix = fix


class KernelRefused(LabError):
    """The kernel or modules given cannot run the lab (one line says why)."""


@dataclass
class BootKernel:
    """The kernel a boot uses: vmlinux, the kvm modules to insmod (empty: built in),
    busybox for the initramfs, and what to call it in status output."""

    vmlinux: Path
    modules: dict[str, Path]
    busybox: Path
    label: str
    version: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    symbols: Path | None = None  # the vmlinux gdb and the readers use (DWARF of -dbg), if not vmlinux

    @property
    def symbol_file(self) -> Path:
        return self.symbols or self.vmlinux


def kernel_of(status: dict[str, Any]) -> dict[str, Any]:
    """The kernel a run watched, from a ``lab status`` object (or a bare gdbstub's):
    ``{"kernel": the path given or the Debian package (with "with modules from DIR"),
    "name": the lab's name for it ("6.1") or None, "version": the package's version or
    None, "release": its release string (init/version.c's UTS_RELEASE) or None,
    "vmlinux": the file read}``."""
    info = status.get("kernel_info") or {}
    return {
        "kernel": status.get("kernel") or status.get("vmlinux"),
        "name": status.get("kernel_name"),
        "version": status.get("kernel_version"),
        "release": info.get("release"),
        "vmlinux": status.get("vmlinux"),
    }


def kernel_line(status: dict[str, Any]) -> str:
    """One line naming the kernel of a run, e.g. ``kernel /src/vmlinux, release
    6.1.0-50-powerpc64le`` or ``kernel 6.12: linux-image-6.12.95+deb12-powerpc64le
    6.12.95-1~bpo12+1, release 6.12.95+deb12-powerpc64le`` (the lab's default kernel is
    called that when no --kernel was given)."""
    k = kernel_of(status)
    package, given, modules = str(k["kernel"] or "unknown").partition(" with modules from ")
    what = f"{package} {k['version']}" if k["version"] else package
    what += f"{given}{modules}"
    if k["name"]:
        what = f"{k['name']}: {what}"
    elif k["version"]:
        what = f"the lab's default: {what}"
    release = k["release"] or "unknown (no linux_banner read)"
    return f"kernel {what}, release {release}"


def is_path_like(value: str | os.PathLike[str]) -> bool:
    """True when ``value`` names a file rather than a kind or a kernel name."""
    text = os.fspath(value)
    return isinstance(value, os.PathLike) or "/" in text or Path(text).exists()


# --------------------------------------------------------------------------- QEMU


def resolve_qemu(qemu: str | os.PathLike[str], cache: Path | None = None) -> tuple[str, Path]:
    """(kind, binary): kind is ``patched``, ``stock`` or ``path``. Raises LabNotSetUp
    when setup has not built/installed it, LabError for a path that is no program."""
    from pyvcore.lab import qemubuild

    text = os.fspath(qemu)
    if text == "stock":
        if not STOCK_QEMU.is_file():
            raise LabNotSetUp(f"{STOCK_QEMU} (qemu-system-ppc)")
        return "stock", STOCK_QEMU
    if text == "patched":
        try:
            binary = qemubuild.patched_qemu_path(cache or cache_dir())
        except qemubuild.SetupError as err:
            raise LabNotSetUp(f"the patched QEMU ({err})") from None
        if not binary.is_file():
            raise LabNotSetUp(f"the patched QEMU for the current patch series ({binary})")
        return "patched", binary
    if not is_path_like(qemu):
        raise LabError(f"qemu must be 'patched', 'stock' or the path of a qemu-system-ppc64, not {text!r}")
    binary = Path(text).expanduser().resolve()
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise LabError(f"--qemu {text}: not an executable file")
    why = not_a_qemu(binary)
    if why:
        raise LabError(f"--qemu {text}: {why}")
    return "path", binary


QEMU_ASK_S = 10.0
"""Seconds a QEMU given by path has to list its machines."""


def not_a_qemu(binary: Path) -> str | None:
    """Why ``binary`` is not a qemu-system-ppc64 with the lab's machine, or None when it is.

    Asked once per file (path, size, modification time) and process: ``binary -machine
    help`` must list ``powernv8`` (QEMU's hw/ppc/pnv.c registers it in qemu-system-ppc64
    only).  Nothing boots and no lock is taken, so a wrong --qemu is refused before the
    machine lock and before any QEMU starts."""
    try:
        st = binary.stat()
    except OSError as exc:
        return cannot_read(binary, exc)
    return _not_a_qemu(str(binary), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _not_a_qemu(binary: str, _size: int, _mtime_ns: int) -> str | None:
    import subprocess

    from pyvcore.errors import reason

    try:
        done = subprocess.run(
            [binary, "-machine", "help"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=QEMU_ASK_S,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"not a qemu-system-ppc64 (`-machine help` did not answer within {QEMU_ASK_S:g} s)"
    except OSError as exc:
        return f"not a qemu-system-ppc64 (it cannot be run: {reason(exc)})"
    listed = done.stdout.decode("utf-8", "replace")
    if "powernv8" in listed.split():
        return None
    if "Supported machines" in listed:
        return "a QEMU without the powernv8 machine: give a qemu-system-ppc64"
    return "not a qemu-system-ppc64 (`-machine help` lists no machine)"


def plugin_option(plugin: tuple[str | os.PathLike[str], dict[str, str]] | None) -> list[str]:
    """``["-plugin", "PATH,k=v,..."]`` for ``(path, args)``; [] for None.

    QEMU splits the option at commas, so neither the path nor a value may hold one."""
    if plugin is None:
        return []
    path, args = plugin
    target = Path(path).expanduser().resolve()
    if not target.is_file():
        raise LabError(
            cannot_read(path, errno.EISDIR if target.is_dir() else errno.ENOENT, "a QEMU plugin (.so)")
        )
    parts = [str(target), *(f"{k}={v}" for k, v in args.items())]
    bad = [p for p in parts if "," in p or (p is not parts[0] and "=" not in p)]
    if bad:
        raise LabError(f"plugin option {bad[0]!r} holds a comma (QEMU splits -plugin at commas)")
    return ["-plugin", ",".join(parts)]


# --------------------------------------------------------------------------- kernels


def find_modules(directory: str | os.PathLike[str]) -> dict[str, Path]:
    """``{"kvm": file, "kvm_hv": file}`` from anywhere below ``directory``.

    Raises KernelRefused when a module is missing or found twice (which one is meant?)."""
    root = Path(directory).expanduser()
    if not root.is_dir():
        code = errno.ENOTDIR if root.exists() else errno.ENOENT
        raise KernelRefused(cannot_read(os.fspath(directory), code, "a directory with kvm.ko and kvm-hv.ko"))
    found: dict[str, Path] = {}
    for module, names in MODULE_FILES.items():
        hits = sorted(
            p
            for name in names
            for pattern in (name, name + ".xz")
            for p in root.rglob(pattern)
            if p.is_file()
        )
        if not hits:
            raise KernelRefused(f"--modules {directory}: no {names[0]} (or .ko.xz) below it")
        if len(hits) > 1:
            listed = ", ".join(str(h.relative_to(root)) for h in hits[:3]) + (
                ", ..." if len(hits) > 3 else ""
            )
            raise KernelRefused(f"--modules {directory}: {names[0]} found {len(hits)} times ({listed})")
        found[module] = hits[0]
    return found


def plain_module(path: Path, cache: Path) -> Path:
    """``path`` itself for a .ko, else its decompressed copy under ``<cache>/modules/<hash>/``:
    gdb's add-symbol-file and the readers read plain ELF, not .ko.xz."""
    if path.suffix != ".xz":
        return path
    data = path.read_bytes()
    out = cache / "modules" / hashlib.sha256(data).hexdigest()[:16] / path.stem
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        plain = lzma.decompress(data)
    except lzma.LZMAError as err:
        raise KernelRefused(f"{path}: not a valid .xz file ({err})") from None
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", dir=out.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(plain)
    os.replace(tmp, out)
    return out


def kernel_manifest(kernel: str | os.PathLike[str] | None, cache: Path) -> KernelManifest:
    """The manifest of a Debian kernel set up by name, or of the default one (whose busybox
    a kernel given by path uses too). LabNotSetUp when setup has not unpacked it."""
    name = None if kernel is None or is_path_like(kernel) else os.fspath(kernel)
    manifest = KernelManifest.load(cache, name=name)
    if manifest is None:
        if name is None:
            raise LabNotSetUp("the kernel unpack (vmlinux, kvm.ko, kvm-hv.ko, busybox)")
        from pyvcore.lab.kernels import KERNELS

        if name not in KERNELS:
            raise KernelRefused(
                f"--kernel {name}: no such file, and not a kernel the lab knows ({', '.join(KERNELS)})"
            )
        known = ", ".join(KernelManifest.names(cache)) or "none"
        series, _, size = name.partition("-")
        fix = f"run `pyvcore lab setup --kernel {series}" + (f" --pagesize {size}`" if size else "`")
        raise LabNotSetUp(f"kernel {name} (set up: {known})", fix)
    return manifest


def resolve_kernel(
    kernel: str | os.PathLike[str] | None,
    modules: str | os.PathLike[str] | None,
    default: KernelManifest,
    *,
    hook_points: tuple[str, ...] = HOOK_POINTS,
    symbols: str | os.PathLike[str] | None = None,
) -> BootKernel:
    """The kernel a boot uses (see the module docstring), validated; ``default`` is
    :func:`kernel_manifest`'s answer. ``symbols``: the debug image of a kernel with
    neither BTF nor DWARF (a kernel set up by name brings its own: 6.1's -dbg vmlinux;
    else one is looked for where distributions put it)."""
    own = False
    if kernel is not None and is_path_like(kernel):
        own = True
        vmlinux = Path(kernel).expanduser().resolve()
        if not vmlinux.is_file():
            code = errno.EISDIR if vmlinux.is_dir() else errno.ENOENT
            raise KernelRefused(cannot_read(os.fspath(kernel), code, "a kernel image (vmlinux)"))
        mods = find_modules(modules) if modules is not None else {}
        label, version = str(vmlinux), None
        if modules is not None:
            label += f" with modules from {Path(modules).expanduser().resolve()}"
    else:
        vmlinux = Path(default.vmlinux)
        mods = (
            find_modules(modules) if modules is not None else {k: Path(v) for k, v in default.modules.items()}
        )
        label, version = default.package, default.version
        if modules is not None:
            label += f" with modules from {modules}"
        if symbols is None and kernel is not None:
            symbols = default.extra.get("symbols")
    _loadable(vmlinux)
    debug = None if symbols is None else Path(symbols).expanduser().resolve()
    if debug is not None and not debug.is_file():
        code = errno.EISDIR if debug.is_dir() else errno.ENOENT
        raise KernelRefused(cannot_read(os.fspath(symbols or ""), code, "a kernel debug image (vmlinux)"))
    info = validate(vmlinux, mods, hook_points, debug)
    mods = {k: plain_module(p, cache_dir()) for k, p in mods.items()}  # what gdb can read
    found = Path(info["symbols"]) if info.get("symbols") else None
    if found is not None and own:  # your own kernel: its debug image, given or found
        label += f", symbols from {found}"
    return BootKernel(vmlinux, mods, Path(default.busybox), label, version, info, found)


def _loadable(vmlinux: Path) -> None:
    """KernelRefused for a file larger than QEMU's powernv machine loads as a kernel."""
    size = vmlinux.stat().st_size
    if size > PNV_KERNEL_MAX_BYTES:
        raise KernelRefused(
            f"refused: kernel {vmlinux}: {size / 2**20:.0f} MiB, more than the "
            f"{PNV_KERNEL_MAX_BYTES >> 20} MiB QEMU's powernv machine loads (hw/ppc/pnv.c, KERNEL_MAX_SIZE); "
            "if it is a debug image, boot the stripped one and give this as --symbols FILE"
        )


def validate(
    vmlinux: Path,
    modules: dict[str, Path],
    hook_points: tuple[str, ...],
    symbols: Path | None = None,
) -> dict[str, Any]:
    """Refuse a kernel the lab cannot run (KernelRefused: every reason on its one line,
    separated by "; ") with :func:`pyvcore.kernel.validate_kernel`: not ppc64le, no
    POWER8 KVM-HV, neither BTF nor DWARF (nor a debug image of the same build), modules of
    another release (vermagic), a hook point missing. Returns the kernel's facts (release,
    variant, page size, BTF or DWARF, where kvm and kvm-hv come from, the debug image) as
    a dict."""
    from pyvcore.kernel import KernelRefused as Refused
    from pyvcore.kernel import validate_kernel

    try:
        info = validate_kernel(vmlinux, _modules_dir(modules), hook_points=hook_points, symbols=symbols)
    except Refused as err:
        # every problem on the one line: the CLIs (and --json) print the message only
        raise KernelRefused("refused: " + "; ".join(err.reasons or [str(err)])) from None
    return asdict(info)


def _modules_dir(modules: dict[str, Path]) -> Path | None:
    if not modules:
        return None
    parents = {p.parent for p in modules.values()}
    return parents.pop() if len(parents) == 1 else Path(os.path.commonpath([str(p) for p in parents]))


def firmware_missing() -> list[str]:
    """What QEMU's powernv machine needs from qemu-system-data and is not there."""
    return (
        []
        if (QEMU_DATA_DIR / "skiboot.lid").is_file()
        else [f"{QEMU_DATA_DIR}/skiboot.lid (qemu-system-data)"]
    )


def not_set_up(kernel: str | os.PathLike[str] | None, qemu: str | os.PathLike[str], cache: Path) -> None:
    """One LabNotSetUp naming everything setup still has to provide, or nothing."""
    missing: list[str] = []
    fixes: list[str] = []
    for check in (lambda: kernel_manifest(kernel, cache), lambda: resolve_qemu(qemu, cache)):
        try:
            check()
        except LabNotSetUp as err:
            missing.append(err.missing)
            fixes.append(err.fix)
    missing += firmware_missing()
    if missing:
        fix = next((f for f in fixes if f != "run `pyvcore lab setup`"), "run `pyvcore lab setup`")
        raise LabNotSetUp("; ".join(missing), fix)
