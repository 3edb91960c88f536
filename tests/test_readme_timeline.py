"""The README's timeline recipe draws the picture the README shows: every PNG that
`pyvcore timeline` writes names the options it was drawn with (its ``Software`` text), and
the recipe printed next to docs/timeline-cede.png gives the same options.  No lab: the recipe
is run on a recorded cede trace."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pyvcore.cli import main
from pyvcore.timeline_render import png_command

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Look at a timeline: `pyvcore timeline`"


def timeline_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return text[start:end]


def recipe_words() -> list[str]:
    """The README's `pyvcore timeline TRACE ...` recipe (after the synopsis), as argv words."""
    blocks = re.findall(r"^```\n(.*?)^```", timeline_section(), re.S | re.M)
    commands = [
        line
        for block in blocks
        for line in block.replace("\\\n", " ").splitlines()
        if line.startswith("pyvcore timeline ") and "[" not in line
    ]
    assert len(commands) == 1, f"expected one timeline recipe in the README, found {commands}"
    return shlex.split(commands[0])


def shaping(words: list[str]) -> list[str]:
    """The options that shape a picture, in a fixed order (paths and -o left out)."""
    out: list[str] = []
    for flag in ("--by-stop",):
        out += [flag] if flag in words else []
    for option in ("--title", "--variant"):
        if option in words:
            out += [option, words[words.index(option) + 1]]
    return out


def test_the_readme_recipe_names_the_options_of_the_picture() -> None:
    pictures = re.findall(r"\]\((docs/[^)]+\.png)\)", timeline_section())
    assert pictures == ["docs/timeline-cede.png"]
    drawn_with = png_command(ROOT / pictures[0])
    assert drawn_with is not None, "the README's picture does not say how it was drawn"
    assert shaping(recipe_words()) == shaping(shlex.split(drawn_with))
    assert "--by-stop" in drawn_with  # the picture's x axis is the stop number


def test_the_recipe_run_as_written_draws_with_those_options(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="a .png needs matplotlib (pyvcore[timeline])")
    words = recipe_words()
    argv = words[1:]
    argv[argv.index("cede-report/trace.jsonl")] = str(ROOT / "tests/checker_live/cede-patched.jsonl")
    out = tmp_path / "timeline-cede.png"
    argv[argv.index("-o") + 1] = str(out)
    assert main(argv) == 0
    assert png_command(out) == png_command(ROOT / "docs/timeline-cede.png")


def test_png_command_is_none_for_another_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="a .png needs matplotlib (pyvcore[timeline])")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.savefig(tmp_path / "other.png", metadata={"Software": "something else"})
    plt.close(fig)
    assert png_command(tmp_path / "other.png") is None
    trace = str(ROOT / "tests/checker_live/cede-patched.jsonl")
    assert main(["timeline", trace, "-o", str(tmp_path / "plain.png")]) == 0
    assert png_command(tmp_path / "plain.png") == "pyvcore timeline"
