"""The README's invariant list and snapshot format are the table's and
view.rs's: regenerate with `pyvcore invariants --markdown` when a row changes."""

from __future__ import annotations

from pathlib import Path

from pyvcore import _core
from pyvcore.invariants import markdown_table

ROOT = Path(__file__).resolve().parents[1]


def between(text: str, begin: str, end: str) -> str:
    start = text.index(begin)
    start = text.index("\n", start) + 1
    return text[start : text.index(end, start)].strip()


def test_readme_invariant_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    block = between(readme, "<!-- invariants:begin", "<!-- invariants:end -->")
    assert block == markdown_table(), "run: pyvcore invariants --markdown, and paste it into the README"
    for info in _core.invariants():
        assert f"| {info.number} | {info.title} |" in block


def test_readme_snapshot_format_is_view_rs_module_doc():
    readme = (ROOT / "README.md").read_text()
    block = between(readme, "<!-- snapshot-format:begin", "<!-- snapshot-format:end -->")
    view = (ROOT / "rust/core/src/view.rs").read_text().splitlines()
    doc = "\n".join(
        line[4:] if line.startswith("//! ") else line[3:] for line in view if line.startswith("//!")
    )
    fmt = doc[doc.index("# Snapshot format, version 2") :].split("\n", 1)[1].strip()
    assert block == fmt
    for key in ('"version"', '"tb"', '"tb_freq"', '"pc"', '"msr"', '"dpdes"', '"hdec"', '"seq"'):
        assert key in block
