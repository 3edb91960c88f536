"""The kernel gdb has loaded (``file vmlinux`` + ``add-symbol-file`` modules), cached.

Layouts come from gdb's DWARF types when the vmlinux has them, else from its
``.BTF`` section (and the modules' split BTF) through
``pyvcore._core.KernelImage``; symbols and ELFv2 local entries from the ELF
files themselves.  The cache is per executable and dropped when gdb's
objfiles change.
"""

from __future__ import annotations

import os
from typing import Any

import gdb  # type: ignore[import-not-found]

from pyvcore.decode import KernelError, KernelLayout, SnapshotReader
from pyvcore.layout import LayoutError, Layouts

from .dwarf import GdbTypeSource, dwarf_available
from .errors import PvError


def _int(value: Any) -> int:
    return int(value) & 0xFFFF_FFFF_FFFF_FFFF


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
        elif getattr(self.image, "btf_error", None):
            raise PvError(f"pyvcore: {os.path.basename(path)}: {self.image.btf_error}")
        else:
            raise PvError(
                f"pyvcore: {os.path.basename(path)} has neither DWARF nor BTF: "
                "no struct layouts (use a kernel built with CONFIG_DEBUG_INFO_BTF "
                "or load its debuginfo)"
            )
        try:
            # self.symbol, not self.address: the reader walks kvm.ko's vm_list when no
            # PACA names a vcore (a preempted one), and that symbol is in no vmlinux.
            self.layout = KernelLayout(
                self.layouts, self.symbol, self.image.little_endian, self.image.release
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

    def address(self, name: str) -> int | None:
        """Address of a vmlinux symbol (None if it has none)."""
        sym = self.image.symbol(name)
        return None if sym is None else symbol_address(sym)

    def symbol(self, name: str) -> int | None:
        """vmlinux symbol, else one gdb knows (e.g. kvm-hv.ko after add-symbol-file)."""
        sym = self.image.symbol(name)
        if sym is not None:
            return symbol_address(sym)
        return gdb_symbol(name)

    def entry_point(self, name: str) -> tuple[int, str] | None:
        """(address, where) of the local entry of function ``name``: where calls
        from code sharing its TOC arrive; None if no symbol has that name.

        ELFv2 (ppc64le) C functions have a global entry (the symbol) that sets
        up r2 and a local entry ``st_other``-encoded bytes on; callers in the
        same module (kvm-hv.ko calling kvmppc_run_core) branch to the local
        one, so a breakpoint on the symbol is never hit.  The offset comes from
        the ELF symbol (vmlinux, or the module .ko gdb loaded with
        add-symbol-file), never from reading code.  Raises PvError when the
        symbol is known but its local entry cannot be (a breakpoint there
        would silently never fire)."""
        sym = self.image.symbol(name)
        if sym is not None:
            return symbol_address(sym) + local_entry(sym, name, self.path), os.path.basename(self.path)
        addr = gdb_symbol(name)
        for path in module_objfiles():
            msym = module_image(path).symbol(name)
            if msym is None:
                continue
            if addr is None:
                raise PvError(
                    f"pyvcore: {name} is in {os.path.basename(path)} but gdb has no address for it "
                    "(add-symbol-file with the module's section addresses, as `pyvcore gdb` does)"
                )
            return addr + local_entry(msym, name, path), os.path.basename(path)
        if addr is not None:
            raise PvError(
                f"pyvcore: {name} is known to gdb but to no ELF file pyvcore can read: its local "
                "entry is unknown, so a breakpoint there might never fire (load the module with "
                "add-symbol-file FILE.ko, as `pyvcore gdb` does)"
            )
        return None


def symbol_address(sym: Any) -> int:
    """Address of a ``KernelImage.symbol`` result (a Symbol, or an int from older bindings)."""
    return int(sym) if isinstance(sym, int) else int(sym.address)


def local_entry(sym: Any, name: str, path: str) -> int:
    """ELFv2 local-entry offset (bytes) of a ``KernelImage.symbol`` result, from ``st_other``."""
    offset = getattr(sym, "local_entry", None)
    if offset is None:
        raise PvError(
            f"pyvcore: no st_other for {name} in {os.path.basename(path)} (pyvcore's extension "
            "is older than this plugin: `pip install -e .`): cannot place its breakpoint correctly"
        )
    return int(offset)


_module_images: dict[str, Any] = {}


def module_objfiles() -> list[str]:
    """Paths of the kernel modules (.ko) gdb has loaded symbols from."""
    return [o.filename for o in gdb.objfiles() if (o.filename or "").endswith(".ko")]


def module_image(path: str) -> Any:
    """``KernelImage`` of a module .ko (cached per path); PvError if it cannot be read."""
    from pyvcore._core import KernelImage

    image = _module_images.get(path)
    if image is None:
        try:
            image = _module_images[path] = KernelImage(path)
        except (OSError, ValueError) as e:
            raise PvError(f"pyvcore: {path}: {e}") from None
    return image


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


def cached() -> Kernel | None:
    """The kernel if one was built already (without building it)."""
    return _kernel


def forget_kernel(*_args: Any) -> None:
    """Drop the kernel and everything derived from it (gdb's objfiles were cleared)."""
    global _kernel
    _kernel = None
    _module_images.clear()
