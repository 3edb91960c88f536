"""Any kernel struct printed from its layout (BTF or DWARF) and raw memory: ``pv-print``.

Like gdb's ``ptype/o`` with the values next to the offsets, but it needs no
debuginfo: the layout comes from :mod:`pyvcore.layout`, the bytes from any
:class:`pyvcore.decode.Memory`, so it is tested on fake memory.  One read of
the whole struct (one gdbstub round trip per 2 KB).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyvcore.decode import Memory, decode_value
from pyvcore.layout import Field, LayoutError, Layouts, Struct
from pyvcore.readplan import ByteOrder
from pyvcore.render import render_table

TYPE_WIDTH = 22
ARRAY_SHOWN = 8  # elements of an array listed one per row; the rest summarised


def _type(f: Field) -> str:
    text = f.type or f.kind
    return text if len(text) <= TYPE_WIDTH else text[: TYPE_WIDTH - 1] + "~"


def _value(f: Field, buf: bytes, at: int, order: ByteOrder) -> str:
    if f.kind in ("struct", "union"):
        return f"{{...}} ({f.size} bytes)"
    if at + f.size > len(buf):
        return "?"
    v = decode_value(f, buf, at, order)
    if isinstance(v, bytes):
        return f"[{f.array_len or '?'}] ({f.size} bytes)"
    if isinstance(v, list):
        return f"[{len(v)}]"
    return _int(v, f)


def _int(v: int, f: Field) -> str:
    if f.kind == "ptr" or (f.inner_kind == "ptr"):
        return "0" if v == 0 else f"{v:#x}"
    if f.kind == "bool":
        return "true" if v else "false"
    if -1024 < v < 1024:
        return str(v)
    raw = v & (1 << 8 * f.size) - 1
    return f"{v} ({raw:#x})" if raw < 1 << 32 else f"{raw:#x}"


def rows_of(
    struct: Struct, layouts: Layouts, buf: bytes, paths: Sequence[str], order: ByteOrder
) -> list[list[str]]:
    """(offset, size, field, type, value) rows: every declared member when ``paths`` is
    empty, else each path, and a struct/union path expanded one level."""
    out: list[list[str]] = []

    def add(f: Field, name: str) -> None:
        out.append([f"{f.offset:#x}", str(f.size), name, _type(f), _value(f, buf, f.offset, order)])
        if (
            f.kind == "array"
            and f.inner_kind in ("int", "ptr", "enum", "bool")
            and f.offset + f.size <= len(buf)
        ):
            values = decode_value(f, buf, f.offset, order)
            es = f.elem_size or 0
            for i, v in enumerate(values[:ARRAY_SHOWN]):
                out.append([f"{f.offset + i * es:#x}", str(es), f"{name}[{i}]", "", _int(v, f)])
            if len(values) > ARRAY_SHOWN:
                out.append(["", "", f"{name}[{ARRAY_SHOWN}..{len(values) - 1}]", "", "..."])

    if not paths:
        for f in struct.declared:
            add(f, f.name or "(anonymous)")
        return out
    for path in paths:
        f = struct.field(path)
        add(f, path)
        if f.kind in ("struct", "union"):
            inner = layouts.by_id(f.type_id, hint=f.type)
            for g in inner.declared:
                add(g.shifted(f.offset), f"  .{g.name or '(anonymous)'}")
    return out


def print_struct(
    layouts: Layouts,
    memory: Memory,
    type_name: str,
    addr: int,
    paths: Sequence[str] = (),
    *,
    order: ByteOrder = "little",
    width: int | None = None,
) -> str:
    """The table pv-print shows for ``struct type_name`` at ``addr``.

    Raises LayoutError for an unknown struct or member, and the memory's
    ReadError when the struct cannot be read."""
    name = type_name.removeprefix("struct ").strip()
    struct = layouts.struct(name)
    for path in paths:
        struct.field(path)  # a bad member is an error before any read
    buf = memory.read(addr, struct.size)
    title = f"struct {name} at {addr:#x} ({struct.size} bytes, layout from {layouts.origin})"
    return render_table(
        ["offset", "size", "field", "type", "value"],
        rows_of(struct, layouts, buf, paths, order),
        width=width,
        title=title,
    )


__all__ = ["LayoutError", "print_struct", "rows_of"]
