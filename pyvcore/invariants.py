"""``pyvcore invariants [N]``: what each invariant states, when it is judged,
the kernel source it comes from, and what a violation usually means.

The text comes from the invariant table in Rust (``pyvcore._core.invariants()``,
``rust/core/src/invariants/table.rs``), the same rows every violation is
built from.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from typing import Any, Optional

from pyvcore import _core
from pyvcore.errors import PyvcoreError


def explain(number: int, *, width: int = 80) -> str:
    """The long explanation of invariant ``number`` (raises PyvcoreError if
    there is no such invariant)."""
    rows = {i.number: i for i in _core.invariants()}
    info = rows.get(number)
    if info is None:
        known = ", ".join(map(str, sorted(rows)))
        raise PyvcoreError(f"no invariant {number} (known: {known})")
    wrap = textwrap.TextWrapper(width=width, initial_indent="  ", subsequent_indent="  ")
    parts = [f"invariant {info.number}: {info.title}  [{info.kind}]"]
    for label, text in (
        ("statement", info.statement),
        ("judged", info.window),
        ("source", info.source),
        ("a violation means", info.meaning),
    ):
        parts.append(f"{label}:")
        parts.append(wrap.fill(text))
    if info.needs:
        parts.append(f"needs: {', '.join(info.needs)} (not judged without)")
    return "\n".join(parts)


def summary_table() -> str:
    """One line per invariant: number, kind, title."""
    return "\n".join(f"{i.number:>3}  {i.kind:<8}  {i.title}" for i in _core.invariants())


def markdown_table() -> str:
    """The README's invariant table (number, title, kind, window, source),
    generated from the table; a test keeps the README equal to it."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| # | invariant | judged | kernel source |", "|---|---|---|---|"]
    for i in _core.invariants():
        window = f"{i.kind}: {i.window}"
        lines.append(f"| {i.number} | {cell(i.title)} | {cell(window)} | {cell(i.source)} |")
    return "\n".join(lines)


def as_dict(info: Any) -> dict[str, Any]:
    return {
        "number": info.number,
        "title": info.title,
        "statement": info.statement,
        "window": info.window,
        "source": info.source,
        "meaning": info.meaning,
        "needs": list(info.needs),
        "kind": info.kind,
    }


def _run(args: argparse.Namespace) -> int:
    number: Optional[int] = args.number
    rows = list(_core.invariants())
    if args.markdown:
        print(markdown_table())
        return 0
    if args.json:
        chosen = [r for r in rows if number is None or r.number == number]
        if not chosen:
            raise PyvcoreError(f"no invariant {number}")
        print(json.dumps([as_dict(r) for r in chosen], indent=1))
        return 0
    if number is not None:
        print(explain(number))
    elif args.all:
        print("\n\n".join(explain(r.number) for r in rows))
    else:
        print(summary_table())
        print("\n`pyvcore invariants N` explains one; `--all` explains every one.")
    return 0


def register(subparsers: Any) -> None:
    """Add ``pyvcore invariants [N] [--all] [--json]``."""
    p = subparsers.add_parser(
        "invariants",
        help="list the invariants, or explain one",
        description="Each invariant pyvcore can report: what it states, when it is judged, the kernel "
        "function and commit it comes from, and what a violation usually means.",
    )
    p.add_argument("number", nargs="?", type=int, help="explain this invariant")
    p.add_argument("--all", action="store_true", help="explain every invariant")
    p.add_argument("--json", action="store_true", help="the table rows as JSON")
    p.add_argument("--markdown", action="store_true", help="the README's table of every invariant")
    p.set_defaults(func=_run)


__all__ = ["as_dict", "explain", "markdown_table", "register", "summary_table"]
