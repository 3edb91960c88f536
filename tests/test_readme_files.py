"""Every file a README example hands to pyvcore exists: in the repository, or made by a
README command before it (an output option such as ``--trace``/``-o``/``--report``, a
shell ``> FILE``, or ``dump_guest_memory(socket, "FILE", ...)``).

The examples are the ``pyvcore ...`` command lines of the README's code blocks (``$ ``
prompts of transcripts included, synopses with ``[...]`` left out) and its inline code
spans that start with ``pyvcore``; a line ``pyvcore CMD: ...`` is output, not a command.
What is not a file of this repository is written so: an upper-case placeholder
(``TRACE.jsonl``, ``DIR/x``), ``/path/...``, or ``~/...`` (your own files, and the cache
`pyvcore lab setup` fills). The test reads the README as it is, whatever its sections.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from pyvcore.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
FILE_SUFFIXES = (".jsonl", ".json", ".elf", ".html", ".png", ".ko", ".xz", ".so", ".txt", ".dbg", ".py")


def output_options() -> dict[str, set[str]]:
    """Command ("diff", "lab up") -> its options that name a file or directory it writes
    (their argument type is an output type), found in the parsers."""
    found: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif "output" in getattr(action.type, "__name__", ""):
                found.setdefault(" ".join(path), set()).update(action.option_strings)

    walk(build_parser(), [])
    return found


def examples(text: str) -> list[str]:
    """The README's pyvcore command lines, in order (see the module docstring)."""
    found: list[tuple[int, str]] = []
    fenced = False
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        elif fenced:
            body = line.strip().removeprefix("$ ")
            for command in re.split(r"\s*(?:;|&&)\s*", body):
                if command.startswith(("pyvcore ", "echo ")) and "[" not in command:
                    found.append((offset, command))
        offset += len(line)
    for match in re.finditer(r"`(pyvcore [^`]+)`", text):
        found.append((match.start(), " ".join(match.group(1).split())))
    return [command for _at, command in sorted(found) if not re.match(r"pyvcore [\w -]*:", command)]


def is_placeholder(token: str) -> bool:
    stem = Path(token).name.split(".")[0]
    first = token.split("/")[0]
    return (
        token.startswith(("~/", "/path/", "$"))
        or (stem.isupper() and len(stem) > 1)
        or (first.isupper() and len(first) > 1)
    )


def is_file(token: str) -> bool:
    return not token.startswith("-") and "=" not in token and ("/" in token or token.endswith(FILE_SUFFIXES))


def check_examples(text: str) -> list[str]:
    """The files README examples read that neither exist nor were made before; [] when
    every one is there."""
    outputs = output_options()
    made: set[str] = set(re.findall(r'dump_guest_memory\([^,()]+,\s*"([^"]+)"', text))
    missing = []
    for command in examples(text):
        words = shlex.split(command, comments=True)
        if words and words[0] == "echo":
            made.update(words[i + 1] for i, w in enumerate(words[:-1]) if w == ">")
            continue
        sub = " ".join(words[1:3]) if words[1:2] == ["lab"] else " ".join(words[1:2])
        writes = outputs.get(sub, set())
        for i, word in enumerate(words[2:], 2):
            if words[i - 1] in writes:
                made.add(word)
            elif is_file(word) and not is_placeholder(word):
                inside_made = any(word.startswith(d.rstrip("/") + "/") for d in made)
                if not ((ROOT / word).exists() or word in made or inside_made):
                    missing.append(f"{command!r}: {word}")
    return missing


def test_every_file_a_readme_example_reads_exists() -> None:
    assert examples(README), "no pyvcore example found in the README"
    assert check_examples(README) == []


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("```\npyvcore check stock.jsonl\n```\n", ["stock.jsonl"]),
        ("see `pyvcore show nope/t.jsonl --line 3`", ["nope/t.jsonl"]),
        ("```\n$ pyvcore check --vmcore all-bad.elf --vmlinux vm.ko\n```\n", ["all-bad.elf", "vm.ko"]),
        ("```\npyvcore explore --variant seed --threads 2 --trace t.jsonl\npyvcore check t.jsonl\n```\n", []),
        (
            "```\npyvcore check t.jsonl\npyvcore explore --variant seed --threads 2 --trace t.jsonl\n```\n",
            ["t.jsonl"],
        ),
        ("`pyvcore diff --report r` then `pyvcore timeline r/trace.jsonl -o x.html`", []),
        ("```\necho '{}' > bad.jsonl; pyvcore check bad.jsonl\n```\n", []),
        ("```\npyvcore check tests/checker_live/all-stock.jsonl TRACE.jsonl ~/mine.jsonl\n```\n", []),
        ("`pyvcore check: cannot read t.jsonl: No such file or directory`", []),
    ],
)
def test_the_check_finds_what_is_missing(text: str, missing: list[str]) -> None:
    """The checker is not vacuous: a file nothing made is reported, one made before is not."""
    assert [m.rsplit(": ", 1)[1] for m in check_examples(text)] == missing
