"""C declarations of kernel structs rebuilt from their BTF layout, for gdb.

A kernel without debuginfo gives gdb no struct types, so ``$pv_paca(0)`` could
only be an address.  This writes C for the structs pv-* needs (each member at
its BTF offset, holes filled with byte arrays, every struct packed and padded to
its BTF size, pointers to other rebuilt structs a few levels deep), with a
``_Static_assert`` per member on its offset and per struct on its size, so a
compiler refuses a layout that differs from BTF.  ``pyvcore gdb`` compiles it
with ``-g`` and loads the object's DWARF with ``add-symbol-file``: then
``p $pv_paca(0)->kvm_hstate`` works with BTF alone.

Bitfields are left inside the padding (their bytes stay readable as a whole).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pyvcore.layout import Field, LayoutError, Layouts, Struct

_INT = {1: "int8_t", 2: "int16_t", 4: "int32_t", 8: "int64_t"}
_UINT = {1: "uint8_t", 2: "uint16_t", 4: "uint32_t", 8: "uint64_t"}
_STRUCT_PTR = re.compile(r"^struct (\w+) \*(\[\d+\])?$")


class CWriter:
    """Emits each struct once, dependencies first."""

    def __init__(self, layouts: Layouts, depth: int = 2):
        self.layouts = layouts
        self.depth = depth
        self.done: set[str] = set()
        self.forward: set[str] = set()
        self.out: list[str] = []
        self.asserts: list[str] = []
        self.pending: list[tuple[str, int]] = []
        self.kinds: dict[
            str, str
        ] = {}  # name -> "struct" or "union"  # pointer targets, emitted after the current struct
        self._anon = 0

    def root(self, name: str) -> None:
        """Emit ``struct name``, then the structs its pointers reach (breadth first:
        a pointer needs no definition before it, a member held by value does)."""
        self.struct(name)
        while self.pending:
            target, depth = self.pending.pop(0)
            self.struct(target, depth)

    def struct(self, name: str, depth: int | None = None) -> None:
        """Emit ``struct name`` (and what it holds by value) unless already emitted."""
        if name in self.done:
            return
        self.done.add(name)
        s = self.layouts.struct(name)
        body = self._body(s, f"struct {name}", self.depth if depth is None else depth)
        kw = "union" if s.is_union else "struct"
        self.kinds[name] = kw
        self.out.append(f"{kw} {name} {{\n{body}}} __attribute__((packed));")
        self.asserts.append(f'_Static_assert(sizeof({kw} {name}) == {s.size}, "{name} size");')

    def _body(self, s: Struct, path: str, depth: int) -> str:
        lines: list[str] = []
        at = 0
        for f in sorted(s.declared, key=lambda f: f.offset):
            if f.bitfield_size or (not s.is_union and f.offset < at) or f.end > s.size:
                continue
            decl = self._member(f, depth)
            if decl is None:
                continue
            if not s.is_union and f.offset > at:
                lines.append(f"\tuint8_t {self._anon_name()}[{f.offset - at}];")
            lines.append(f"\t{decl};")
            if f.name and not s.is_union and not path.startswith("__anon"):
                self.asserts.append(
                    f'_Static_assert(__builtin_offsetof({path}, {f.name}) == {f.offset}, "{path}.{f.name}");'
                )
            at = max(at, f.offset + f.size) if not s.is_union else at
        if not s.is_union and s.size > at:
            lines.append(f"\tuint8_t {self._anon_name()}[{s.size - at}];")
        if s.is_union and not lines:
            lines.append(f"\tuint8_t {self._anon_name()}[{s.size}];")
        return "".join(line + "\n" for line in lines)

    def _member(self, f: Field, depth: int) -> str | None:
        name = f.name
        if f.kind in ("int", "enum", "char") and f.size in _INT:
            return f"{(_INT if f.signed else _UINT)[f.size]} {name}"
        if f.kind == "bool" and f.size == 1:
            return f"_Bool {name}"
        if f.kind == "ptr" and f.size == 8:
            return f"{self._pointer(f.type, depth)} {name}"
        if f.kind in ("struct", "union"):
            try:
                inner = self.layouts.by_id(f.type_id, hint=f.type)
            except LayoutError:
                return f"uint8_t {name or self._anon_name()}[{f.size}]"
            if not inner.name or not name:
                kw = "union" if inner.is_union else "struct"
                body = self._body(inner, "__anon", depth).replace("\n\t", "\n\t\t")
                return f"{kw} {{\n\t{body}\t}} __attribute__((packed)) {name}".rstrip()
            self.struct(inner.name, depth)
            return f"{'union' if inner.is_union else 'struct'} {inner.name} {name}"
        if f.kind == "array" and f.array_len and f.elem_size:
            m = _STRUCT_PTR.match(f.type)
            if f.inner_kind == "ptr" and f.elem_size == 8:
                target = self._pointer(f"struct {m.group(1)} *" if m else "void *", depth)
                return f"{target} {name}[{f.array_len}]"
            if f.inner_kind in ("int", "enum", "char", "bool") and f.elem_size in _UINT:
                table = _INT if f.signed else _UINT
                return f"{table[f.elem_size]} {name}[{f.array_len}]"
        if not name:
            return None
        return f"uint8_t {name}[{f.size}]"

    def _pointer(self, ctype: str, depth: int) -> str:
        m = _STRUCT_PTR.match(ctype)
        if not m:
            return "void *"
        target = m.group(1)
        if depth > 0 and target not in self.done and self.layouts.has_struct(target):
            self.pending.append((target, depth - 1))
        self.forward.add(target)
        return f"struct {target} *"

    def _anon_name(self) -> str:
        self._anon += 1
        return f"__pv_anon_{self._anon}"

    def source(self) -> str:
        forward = sorted(self.forward - self.done)
        anchors = [f"{self.kinds.get(n, 'struct')} {n} *__pv_type_{n};" for n in sorted(self.done)]
        return "\n".join(
            [
                "/* Kernel struct layouts rebuilt from BTF by pyvcore (pyvcore/btftypes.py). */",
                "#include <stdint.h>",
                "/* Marks these types as rebuilt: the gdb plugin keeps reading layouts from BTF. */",
                "struct __pv_btf_rebuilt { int rebuilt; } __pv_btf_rebuilt_marker;",
                *[f"struct {n};" for n in forward],
                *self.out,
                *self.asserts,
                *anchors,
                "",
            ]
        )


def c_source(layouts: Layouts, roots: Iterable[str], depth: int = 2) -> str:
    """C for ``roots`` (struct names) and the structs they reach within ``depth`` pointers.

    Raises LayoutError when a root is not in the layouts."""
    w = CWriter(layouts, depth)
    for name in roots:
        w.root(name)
    return w.source()


ROOTS = ("paca_struct", "kvmppc_vcore", "kvm_vcpu", "kvm")
