"""The one table renderer (pyvcore.render): width, transposition, colour inside cells."""

from __future__ import annotations

import re

from pyvcore import render

SGR = re.compile(r"\x1b\[([0-9;]*)m")


def balanced(line: str) -> bool:
    """Every colour opened on a line is reset on that same line, before its end."""
    codes = SGR.findall(line)
    return not codes or codes[-1] == "0"


def test_narrow_table_stays_a_table_with_headers_and_aligned_columns():
    text = render.render_table(["cpu", "verdict"], [["0", "ok"], ["12", "violation"]], title="T", legend="L")
    lines = text.splitlines()
    assert lines[0] == "T" and lines[-1] == "L"
    assert lines[1].split() == ["cpu", "verdict"]
    # the verdict column starts at the same column on every row
    starts = {line.index(word) for line, word in zip(lines[3:5], ["ok", "violation"])}
    assert len(starts) == 1


def test_two_line_headers():
    text = render.render_table(["field\n+0x2d0", "value"], [["in_guest", "3"]])
    assert text.splitlines()[1].split() == ["+0x2d0"]


def test_too_wide_table_is_transposed_to_blocks_that_fit():
    wide = "0xc0000000042e2400 (vcpu 1)"
    rows = [[f"{cpu}", wide, wide, wide, "z" * 120] for cpu in range(4)]
    text = render.render_table(["cpu", "a", "b", "c", "long"], rows, width=80)
    assert render.visible_width(text) <= 80
    assert [line for line in text.splitlines() if line.startswith("cpu ")] == [f"cpu {i}" for i in range(4)]
    assert re.search(r"^  a\s+0xc0000000042e2400 \(vcpu 1\)$", text, re.M)
    # nothing lost: the 120 z are all there, folded
    assert text.count("z") == 4 * 120


def test_width_is_a_parameter():
    rows = [["0", "y" * 60]]
    assert "cpu 0" not in render.render_table(["cpu", "v"], rows, width=100)
    assert "cpu 0" in render.render_table(["cpu", "v"], rows, width=40)


def test_colour_stays_inside_cells_and_does_not_count_as_width():
    rows = [["0", render.paint("violation", "red")], ["1", render.paint("ok", "green")]]
    text = render.render_table(["cpu", "verdict"], rows)
    assert "\x1b[31mviolation\x1b[0m" in text
    assert all(balanced(line) for line in text.splitlines())
    assert render.visible_width(text) == max(len(line) for line in render.plain(text).splitlines())
    assert render.visible_width(text) < max(len(line) for line in text.splitlines())
    blocks = render.render_table(["cpu", "verdict", "pad"], [[r[0], r[1], "p" * 90] for r in rows])
    assert all(balanced(line) for line in blocks.splitlines())


def test_no_colour_mode_writes_no_escape():
    assert render.paint("ok", "green", on=False) == "ok"
    text = render.render_table(["v"], [[render.paint("ok", "green", on=False)]])
    assert "\x1b" not in text


def test_empty_table_says_so():
    assert render.render_table(["a"], [], title="t") == "t\n(none)"


def test_cli_colour_follows_terminal_and_no_color(monkeypatch):
    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert render.colour_for(Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not render.colour_for(Tty())
    monkeypatch.delenv("NO_COLOR")
    assert not render.colour_for(open("/dev/null"))  # noqa: SIM115
