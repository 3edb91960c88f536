"""What each live matrix run took (tests/test_live_matrix.py), printed by conftest at the
end of the session so CI shows where its minutes go."""

from __future__ import annotations

from typing import Any

# (label, seconds, verdict, stops judged), in the order the runs happened.
MATRIX_TIMES: list[tuple[str, float, str, int]] = []


def write_summary(tr: Any) -> None:
    """Write the table into pytest's terminal summary (nothing when no run happened)."""
    if not MATRIX_TIMES:
        return
    tr.section("pyvcore live matrix (pyvcore diff per kernel)")
    for label, seconds, verdict, judged in MATRIX_TIMES:
        tr.write_line(f"{label:<32} {verdict:<11} {judged:>4} stops judged {seconds:>7.1f} s")
    total = sum(t[1] for t in MATRIX_TIMES)
    tr.write_line(f"{'total':<32} {'':<11} {'':>4} {'':>13} {total:>7.1f} s")
