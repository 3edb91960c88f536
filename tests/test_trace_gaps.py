"""`pyvcore trace --edges` prints why each edge is on one side only, with the kernel
code that makes it; the edge table of docs/trace.md (real runs of every scenario) is what the
tool prints for each of its rows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyvcore.trace_edges import compare, kernel_edges, model_edges
from pyvcore.trace_gaps import KERNEL_ONLY, MODEL_ONLY, entry_exit_change, explain

ROOT = Path(__file__).resolve().parents[1]

# The edge table groups entry_exit_map edges by what they did: one real edge of each group.
ENTRY_EXIT = {
    "VCORE_EXIT_REQ set (another subcore's exit)": ("0x7", "0x10007"),
    "cleared for the next run": ("0x707", "0x0"),
    "entry and exit bits of two threads in one change": ("0x3", "0x107"),
    "entry bit set": ("0x1", "0x3"),
    "entry bits of two threads in one change": ("0x1", "0x7"),
    "exit bit set": ("0x7", "0x107"),
    "exit bits of two threads in one change": ("0x7", "0x307"),
}


def readme_cell(field: str, old: str, new: str, sides: set[str]) -> str:
    """The edge table's explanation of a row seen on ``sides`` (K: kernel only, M: model only,
    in different scenarios): what ``--edges`` prints for each side."""
    said = {side: str(explain(field, old, new, KERNEL_ONLY if side == "K" else MODEL_ONLY)) for side in sides}
    if len(set(said.values())) == 1:
        return next(iter(said.values()))
    return "; ".join(f"{side}: {said[side]}" for side in sorted(said))


def readme_edge_rows() -> list[tuple[str, str, str, set[str], str]]:
    """(field, old, new, sides, explanation) of each row of the edge table (docs/trace.md)."""
    text = (ROOT / "docs" / "trace.md").read_text()
    section = text[text.index("## Edges: the kernel's state changes") :]
    section = section.split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 11 or not cells[0].startswith("`"):
            continue
        field = cells[0].strip("`")
        marks = {re.sub(r"×\d+", "", c) for c in cells[2:9]} - {""}
        assert marks and marks <= {"K", "M"}, f"{field} {cells[1]}: {marks}"
        if field == "vcore.entry_exit_map":
            old, new = ENTRY_EXIT[cells[1]]
        else:
            old, new = (x.strip() for x in cells[1].split("->"))
        rows.append((field, old, new, marks, cells[10]))
    return rows


def test_every_gap_of_the_real_runs_is_explained_with_kernel_code() -> None:
    rows = readme_edge_rows()
    assert len(rows) > 60, "the edge table of docs/trace.md was found"
    for field, old, new, sides, _ in rows:
        for where in (KERNEL_ONLY if side == "K" else MODEL_ONLY for side in sides):
            gap = explain(field, old, new, where)
            assert gap is not None and gap.kind != "unexplained", (field, old, new)
            assert re.search(r"\w+\.(c|S)\b", gap.why), (
                f"{field} {old}->{new}: cites no kernel file: {gap.why}"
            )


def test_the_edge_table_says_what_the_tool_prints() -> None:
    for field, old, new, sides, readme in readme_edge_rows():
        assert readme == readme_cell(field, old, new, sides), f"{field} {old} -> {new}"


@pytest.mark.parametrize(
    ("old", "new", "what"),
    [("0x0", "0x1", "entry"), ("0x3", "0x103", "exit"), ("0x1", "0x7", "two threads"),
     ("0x3", "0x303", "two threads"), ("0x707", "0x0", "cleared"), ("0x3", "0x10003", "exit request")],
)  # fmt: skip
def test_entry_exit_changes_are_grouped_by_what_they_did(old: str, new: str, what: str) -> None:
    assert entry_exit_change(old, new) == what


def test_an_edge_on_both_sides_needs_no_explanation_and_an_unknown_one_says_so() -> None:
    assert explain("kvm_hstate.in_guest", "0", "4", "both") is None
    gap = explain("vcore.first_vcpuid", "0", "4", KERNEL_ONLY)
    assert gap is not None and gap.kind == "unexplained"


def test_compare_and_the_report_carry_the_explanation() -> None:
    from pyvcore.trace import TraceResult
    from pyvcore.trace_report import format_result

    summary = {"stats": {"events": 2, "violations": 0}, "variant": "modern", "edges": [
        {"field": "vcore.vcore_state", "old": "0", "new": "1", "pc": "0x1", "fn": "kvmppc_vcore_preempt",
         "count": 1},
        {"field": "kvm_hstate.in_guest", "old": "0", "new": "4", "pc": "0x2", "fn": "kvmppc_hv_entry",
         "count": 1},
    ]}  # fmt: skip
    rows = {
        (r["field"], r["old"], r["new"]): r
        for r in compare(kernel_edges(summary), model_edges("modern", 2, [0, 1], 300))
    }
    preempt = rows[("vcore.vcore_state", "0", "1")]
    assert preempt["where"] == KERNEL_ONLY
    assert preempt["gap"].startswith("model simplification: VCORE_PREEMPT")
    assert rows[("kvm_hstate.in_guest", "0", "4")]["gap"] is None
    text = format_result(TraceResult("all", "patched", "all", "clean", summary=summary), edges=True)
    assert "why" in text and "kvmppc_vcore_preempt / kvmppc_vcore_end_preempt" in text
