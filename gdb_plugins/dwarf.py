"""Struct layouts from gdb's own types, when the vmlinux has DWARF.

Gives the same dicts as ``KernelImage.struct_layout`` (BTF), so
:class:`pyvcore.layout.Layouts` reads either.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gdb  # type: ignore[import-not-found]


class GdbTypeSource:
    """Struct layouts from gdb's own types (DWARF), in the dicts BTF gives."""

    KINDS: ClassVar[dict[int, str]] = {
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
    """The kernel's own DWARF is loaded (not the types pyvcore rebuilt from BTF, gdbtypes.py)."""
    try:
        gdb.lookup_type("struct __pv_btf_rebuilt")
        return False
    except gdb.error:
        pass
    try:
        t = gdb.lookup_type("struct kvmppc_vcore")
        return t.sizeof > 0
    except gdb.error:
        return False
