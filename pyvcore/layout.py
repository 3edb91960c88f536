"""Struct layouts of the running kernel, whatever they come from.

Two sources give the same dicts (``{"name", "size", "is_union", "members":
[{"name", "offset", "size", "kind", "signed", "type", "type_id", ...}]}``):

* ``pyvcore._core.KernelImage`` reads them from the vmlinux ``.BTF`` section
  (distro kernels ship BTF, not DWARF);
* the gdb plugin builds them from gdb's own types when DWARF is loaded.

:class:`Layouts` turns either into :class:`Struct` objects with dotted-path
field lookup (``vcpu.field("arch.ptid")``), anonymous struct/union members
flattened the way C sees them.  Nothing here needs gdb.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

# The kernel nests anonymous structs/unions a few levels deep (paca_struct: 3).
MAX_ANONYMOUS_NESTING = 64


class LayoutError(LookupError):
    """A struct or field the reader needs is not in the kernel's layouts."""


class LayoutSource(Protocol):
    """Where struct layouts come from (``KernelImage`` or gdb types)."""

    def struct_layout(self, name: str) -> dict[str, Any]: ...

    def layout_by_id(self, type_id: int) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Field:
    """One (possibly nested) member: where it is and how to decode it."""

    name: str
    offset: int
    size: int
    kind: str  # int, bool, enum, ptr, struct, union, array, float, other
    signed: bool
    type: str
    type_id: int
    array_len: int | None = None
    elem_size: int | None = None
    inner_kind: str | None = None
    bitfield_size: int | None = None
    bit_offset: int = 0

    @property
    def end(self) -> int:
        return self.offset + self.size

    def shifted(self, by: int, prefix: str = "") -> Field:
        return Field(
            name=prefix + self.name,
            offset=self.offset + by,
            size=self.size,
            kind=self.kind,
            signed=self.signed,
            type=self.type,
            type_id=self.type_id,
            array_len=self.array_len,
            elem_size=self.elem_size,
            inner_kind=self.inner_kind,
            bitfield_size=self.bitfield_size,
            bit_offset=self.bit_offset + by * 8,
        )


def _field(d: dict[str, Any]) -> Field:
    return Field(
        name=d["name"],
        offset=int(d["offset"]),
        size=int(d["size"]),
        kind=d["kind"],
        signed=bool(d.get("signed")),
        type=d.get("type", ""),
        type_id=int(d.get("type_id") or 0),
        array_len=d.get("array_len"),
        elem_size=d.get("elem_size"),
        inner_kind=d.get("inner_kind"),
        bitfield_size=d.get("bitfield_size"),
        bit_offset=int(d.get("bit_offset", int(d["offset"]) * 8)),
    )


class Struct:
    """A struct layout with C-style member lookup (anonymous members flattened)."""

    def __init__(self, layouts: Layouts, raw: dict[str, Any]):
        self._layouts = layouts
        self.name: str = raw["name"]
        self.size: int = int(raw["size"])
        self.is_union: bool = bool(raw.get("is_union"))
        # Declared members in order (anonymous ones included, unnamed).
        self.declared: list[Field] = [_field(m) for m in raw["members"]]
        self._members: dict[str, Field] | None = None
        self._flattening = False

    @property
    def members(self) -> dict[str, Field]:
        """Named members, with the members of anonymous structs/unions lifted up."""
        if self._members is None:
            # Layouts come from an untrusted file: a struct that contains itself
            # (directly or through anonymous members) or nests absurdly deep is
            # refused, never recursed into without bound.
            if self._flattening:
                raise LayoutError(
                    f"struct {self.name or '(anonymous)'} contains itself (corrupt type information)"
                )
            if self._layouts.nesting >= MAX_ANONYMOUS_NESTING:
                raise LayoutError(
                    f"struct {self.name or '(anonymous)'}: anonymous members nested deeper than "
                    f"{MAX_ANONYMOUS_NESTING} (corrupt type information)"
                )
            self._flattening = True
            self._layouts.nesting += 1
            try:
                out: dict[str, Field] = {}
                for f in self.declared:
                    if f.name:
                        out.setdefault(f.name, f)
                    elif f.kind in ("struct", "union"):
                        inner = self._layouts.by_id(f.type_id)
                        for name, g in inner.members.items():
                            out.setdefault(name, g.shifted(f.offset))
            finally:
                self._flattening = False
                self._layouts.nesting -= 1
            self._members = out
        return self._members

    def has(self, path: str) -> bool:
        try:
            self.field(path)
            return True
        except LayoutError:
            return False

    def field(self, path: str) -> Field:
        """The member at a dotted path, e.g. ``"arch.ptid"``, offset from this struct."""
        struct: Struct = self
        base = 0
        parts = path.split(".")
        for i, part in enumerate(parts):
            f = struct.members.get(part)
            if f is None:
                raise LayoutError(
                    f"struct {struct.name} has no member {part!r}"
                    + (f" (looking for {self.name}.{path})" if i else "")
                )
            if i == len(parts) - 1:
                return replace(f.shifted(base), name=path)
            if f.kind not in ("struct", "union"):
                raise LayoutError(f"{struct.name}.{part} is not a struct ({f.type})")
            base += f.offset
            struct = self._layouts.by_id(f.type_id, hint=f.type)
        raise LayoutError(f"empty member path for struct {self.name}")

    def offsetof(self, path: str) -> int:
        return self.field(path).offset


class Layouts:
    """Cached struct layouts from one source, with the source's name for the banner."""

    def __init__(self, source: LayoutSource, origin: str):
        self.source = source
        self.origin = origin  # "BTF" or "DWARF"
        self._by_name: dict[str, Struct] = {}
        self._by_id: dict[int, Struct] = {}
        self.nesting = 0  # anonymous members being flattened right now

    def struct(self, name: str) -> Struct:
        s = self._by_name.get(name)
        if s is None:
            try:
                raw = self.source.struct_layout(name)
            except KeyError as e:
                raise LayoutError(f"no struct {name} in the kernel's {self.origin}") from e
            except ValueError as e:
                raise LayoutError(f"struct {name}: {e}") from e
            s = self._by_name[name] = Struct(self, raw)
        return s

    def has_struct(self, name: str) -> bool:
        try:
            self.struct(name)
            return True
        except LayoutError:
            return False

    def by_id(self, type_id: int, hint: str = "") -> Struct:
        s = self._by_id.get(type_id)
        if s is None:
            try:
                raw = self.source.layout_by_id(type_id)
            except (KeyError, ValueError) as e:
                raise LayoutError(f"no layout for {hint or f'type #{type_id}'}: {e}") from e
            s = self._by_id[type_id] = Struct(self, raw)
        return s
