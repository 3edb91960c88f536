"""The one table renderer of pyvcore, for the CLI and the gdb commands alike.

Built on ``tabulate`` (one pure-Python module with no dependencies, so gdb's
own Python can import it next to pyvcore): a table is rendered to a plain
string, which gdb's pager and a pipe handle like any other text.

* ``render_table(columns, rows)`` fits ``width`` columns (80 by default): when
  the table is wider, it is transposed into one block per row
  (``render_blocks``), each block a ``column  value`` list.
* Colours stay inside a cell: ``paint(text, "red", on)`` wraps one cell's text
  in an SGR sequence and its reset, so a reset never leaks past a newline or
  into the next column.  ``on`` is the caller's no-colour switch (gdb's ``set
  style enabled``, a terminal for the CLI, ``NO_COLOR``); widths are measured
  without the escape sequences.
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Sequence
from typing import IO, Any

import tabulate as _tabulate

WIDTH = 80
_SGR = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "bold": "1", "dim": "2"}
_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def paint(text: str, colour: str, on: bool = True) -> str:
    """``text`` in ``colour`` (red, green, yellow, blue, bold, dim) when ``on``, else as is."""
    if not on or not text:
        return text
    return f"\x1b[{_SGR[colour]}m{text}\x1b[0m"


def plain(text: str) -> str:
    """``text`` without colour escape sequences."""
    return _ESCAPE.sub("", text)


def visible_width(text: str) -> int:
    """Columns the widest line of ``text`` takes on a terminal (escapes excluded)."""
    return max((len(plain(line)) for line in text.splitlines()), default=0)


def colour_for(stream: IO[Any]) -> bool:
    """Colour for a CLI stream: a terminal, and ``NO_COLOR`` unset (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _frame(body: str, title: str | None, legend: str | None, width: int) -> str:
    parts = []
    if title:
        parts.append(wrap(title, width))
    parts.append(body)
    if legend:
        parts.append(wrap(legend, width))
    return "\n".join(parts)


def wrap(text: str, width: int | None = None, indent: str = "") -> str:
    """Wrap each line of ``text`` to ``width`` (default 80), continuation lines indented
    like the line plus ``indent``; colour is dropped from a line that must wrap."""
    width = width or WIDTH
    out = []
    for line in text.splitlines() or [""]:
        if len(plain(line)) <= width:
            out.append(line)
        else:
            out += textwrap.wrap(
                plain(line),
                width,
                subsequent_indent=indent + " " * (len(line) - len(line.lstrip())),
                break_long_words=True,
                break_on_hyphens=False,
            )
    return "\n".join(out)


def partial(
    shown: int, total: int, ways: str = "--all prints every one, --json lists every one"
) -> str | None:
    """The one line every report prints when it shows only some of the violations it found,
    e.g. ``first 200 of 10,995 violations shown; --all prints every one, --json lists every
    one``: ``ways`` says how the command gives the rest.  None when all ``total`` are shown."""
    if shown >= total:
        return None
    return f"first {shown:,} of {total:,} violations shown; {ways}"


def render_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    width: int | None = None,
    title: str | None = None,
    legend: str | None = None,
) -> str:
    """A table of ``rows`` (each a list of cells, one per column) under ``columns``.

    Cells are strings (``None`` prints as empty); a header may have two lines
    (``"in_guest\\n+0x2d0"``).  Fits ``width`` terminal columns (default 80): a
    table that is wider is transposed into one block per row, headed by the
    row's first cell (see ``render_blocks``).  ``title`` goes above, ``legend``
    below, both wrapped to the width.  Returns the text without a final newline.
    """
    width = width or WIDTH
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    if not cells:
        return _frame("(none)", title, legend, width)
    # tabulate pads every header by MIN_PADDING; the two-space column gap is enough.
    _tabulate.MIN_PADDING = 0
    text = _tabulate.tabulate(cells, headers=list(columns), tablefmt="simple", disable_numparse=True)
    if visible_width(text) <= width:
        return _frame(text, title, legend, width)
    names = [c.replace("\n", " ") for c in columns]
    blocks = [(f"{names[0]} {row[0]}", list(zip(names[1:], row[1:]))) for row in cells]
    return render_blocks(blocks, width=width, title=title, legend=legend)


def render_blocks(
    blocks: Sequence[tuple[str, Sequence[tuple[str, Any]]]],
    *,
    width: int | None = None,
    title: str | None = None,
    legend: str | None = None,
) -> str:
    """The transposed form: per block a heading line, then ``name  value`` lines.

    ``blocks`` is ``[(heading, [(name, value), ...]), ...]``.  Names are aligned
    within a block; a value too long for the width continues on the next line,
    indented under the value.  Returns the text without a final newline.
    """
    width = width or WIDTH
    out = []
    for heading, pairs in blocks:
        out.append(wrap(heading, width))
        pairs = [(n, "" if v is None else str(v)) for n, v in pairs]
        key = min(max((len(plain(n)) for n, _ in pairs), default=0), width // 3)
        for name, value in pairs:
            lead = f"  {name:<{key}}  "
            room = max(width - len(lead), 10)
            if len(plain(value)) <= room:
                out.append(lead + value)
                continue
            chunks = textwrap.wrap(plain(value), room, break_long_words=True) or [""]
            out.append(lead + chunks[0])
            out += [" " * len(lead) + c for c in chunks[1:]]
    return _frame("\n".join(out), title, legend, width)
