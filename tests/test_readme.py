"""The README keeps up with the command line: every option of every subcommand's parser is in
the synopsis that opens the README's section for that command, and every link of the table of
contents reaches a heading.  Fast: argparse and text only, no lab, no gdb."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pyvcore.cli import SUBJECT_MODULES, build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

# Command -> the heading of the README section that documents it.  The first fenced block of
# that section is its synopsis: one `pyvcore COMMAND ...` line (lab: one per subcommand) with
# indented continuation lines.
SECTIONS = {
    "check": "## Check a trace: `pyvcore check`",
    "invariants": "### The invariants",
    "explore": "## Explore the model: `pyvcore explore` and Python",
    "lab": "## Bring your own kernel or QEMU: `pyvcore lab`",
    "gdb": "## The gdb commands: `pyvcore gdb`, `pv-*`",
    "diff": "## Compare a live kernel with the model: `pyvcore diff`",
    "timeline": "## Look at a timeline: `pyvcore timeline`",
    "show": "### Any recorded stop, without a lab: `pyvcore show`",
    "mutants": "## Kernel mutants: `pyvcore mutants`",
    "trace": "## Trace every store: `pyvcore trace`",
}


def section(heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    lines = README.splitlines()
    assert heading in lines, f"README has no heading {heading!r}"
    start = lines.index(heading) + 1
    level = len(heading) - len(heading.lstrip("#"))
    end = len(lines)
    fenced = False
    for i in range(start, len(lines)):
        if lines[i].startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", lines[i]):
            end = i
            break
    return "\n".join(lines[start:end])


def synopsis(command: str) -> dict[str, str]:
    """The synopsis of a command's section: ``pyvcore CMD [SUB]`` -> that logical line's text."""
    text = section(SECTIONS[command])
    match = re.search(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M)
    assert match, f"the section for `pyvcore {command}` has no fenced synopsis"
    logical: dict[str, str] = {}
    key = None
    for line in match.group(1).splitlines():
        if line.startswith("pyvcore "):
            words = line.split()
            key = " ".join(words[:3] if command == "lab" else words[:2])
            logical[key] = logical.get(key, "") + " " + line
        elif line.startswith(" ") and key is not None:
            logical[key] += " " + line
        else:
            key = None
    assert f"pyvcore {command}" in " ".join(logical), (
        f"the synopsis of {command} is not `pyvcore {command} ...`"
    )
    return logical


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def option_strings(parser: argparse.ArgumentParser) -> list[list[str]]:
    """Each option's spellings (``["-o", "--output"]``), ``--help`` left out, and so is a
    hidden old name of an option that is listed (``lab up --wait`` of ``--lock-wait``)."""
    shown = {a.dest for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS}
    return [
        list(a.option_strings)
        for a in parser._actions
        if a.option_strings
        and not isinstance(a, argparse._HelpAction)
        and not (a.help == argparse.SUPPRESS and a.dest in shown)
    ]


def mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def parsers_of(command: str) -> dict[str, argparse.ArgumentParser]:
    """``pyvcore CMD`` (or ``pyvcore lab SUB`` for each lab subcommand) -> its parser."""
    parser = subparsers(build_parser(command))[command]
    nested = subparsers(parser)
    if nested:
        return {f"pyvcore {command} {name}": sub for name, sub in nested.items()}
    return {f"pyvcore {command}": parser}


# The README opens with these two commands, word for word: the first sets up and runs the main
# job, the second runs the whole test suite (what `.ci/run` runs after installing).
FIRST_COMMANDS = [
    "pip install -e '.[test]' && pyvcore lab setup && pyvcore diff --scenario all",
    "cargo test && python -m pytest",
]


def test_readme_opens_with_the_two_commands() -> None:
    """The first block of the README, before any section, is the two commands, each with its
    comment, and nothing else."""
    lines = README.splitlines()
    assert lines[0] == "# pyvcore"
    first_fence = next(i for i, line in enumerate(lines) if line.startswith("```"))
    assert not any(line.startswith("## ") for line in lines[:first_fence]), "the commands come first"
    block = lines[first_fence + 1 : lines.index("```", first_fence + 1)]
    assert [line.split("#", 1)[0].strip() for line in block] == FIRST_COMMANDS
    assert all("#" in line for line in block), "each command says what it does"


def test_the_intro_and_tests_section_say_what_the_test_command_costs() -> None:
    """The second command boots QEMU under the machine-wide lock for many minutes: the
    paragraph under the two commands and the Tests section both say so, with figures."""
    intro = README.split("\n## ", 1)[0]
    tests = README.split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]
    for text in (intro, tests):
        flat = " ".join(text.split())
        assert re.search(r"`python -m pytest` 25 to 45 minutes", flat), flat
        assert "/tmp/pyvcore-qemu.lock" in flat and "cargo test` about a minute" in flat


def test_every_command_has_a_readme_section() -> None:
    assert set(SECTIONS) == set(SUBJECT_MODULES), "map the new command to its README section"


@pytest.mark.parametrize("command", sorted(SECTIONS))
def test_every_option_is_in_the_readme_synopsis(command: str) -> None:
    lines = synopsis(command)
    missing = []
    for name, parser in parsers_of(command).items():
        assert name in lines, f"the README synopsis has no `{name}` line"
        for spellings in option_strings(parser):
            if not any(mentions(lines[name], s) for s in spellings):
                missing.append(f"{name} {'/'.join(spellings)}")
    assert not missing, "options missing from the README's synopsis: " + ", ".join(missing)


def test_the_checks_fail_on_a_missing_option() -> None:
    """The matcher is not vacuous: a prefix of an option is not that option."""
    assert mentions("[--no-reports] [--json]", "--no-reports")
    assert not mentions("[--no-reports-x]", "--no-reports")
    assert not mentions("[--stops N]", "--stop")


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.lstrip("#").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(text: str | None = None) -> list[str]:
    """The headings of ``text`` (default: the README), code blocks skipped (a ``# comment``
    there is none)."""
    found = []
    fenced = False
    for line in (README if text is None else text).splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            found.append(line)
    return found


def test_table_of_contents_links_reach_headings() -> None:
    anchors = {github_anchor(h) for h in headings()}
    links = re.findall(r"\]\(#([^)]+)\)", section("## Contents"))
    assert len(links) >= 10
    broken = [link for link in links if link not in anchors]
    assert not broken, f"table of contents links without a heading: {broken}"
    top = {github_anchor(h) for h in headings() if h.startswith("## ")} - {"contents"}
    assert top <= set(links), f"top-level sections missing from the contents: {sorted(top - set(links))}"


def quick_start() -> tuple[list[tuple[str, int]], str]:
    """The `pyvcore ...` lines of "Try it without a lab" with the exit status each comment
    promises, and its Python block."""
    text = section("## Try it without a lab")
    shell = re.search(r"^```sh\n(.*?)^```", text, re.S | re.M)
    python = re.search(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert shell and python
    commands = []
    for line in shell.group(1).splitlines():
        if line.startswith("pyvcore "):
            command, _, comment = line.partition("#")
            status = re.search(r"\(exit (\d)\)", comment)
            assert status, f"say which exit status to expect: {line}"
            commands.append((command.strip(), int(status.group(1))))
    return commands, python.group(1)


def test_quick_start_commands_run_as_the_readme_says(tmp_path: Path) -> None:
    """Each command of the quick start, run in order in a scratch directory that sees the
    checkout's tests/, ends with the exit status its comment gives."""
    import shlex
    import subprocess
    import sys

    (tmp_path / "tests").symlink_to(ROOT / "tests")
    commands, _ = quick_start()
    assert len(commands) >= 6
    for command, expected in commands:
        argv = shlex.split(command)[1:]
        done = subprocess.run(
            [sys.executable, "-m", "pyvcore", *argv],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == expected, f"{command}: exit {done.returncode}\n{done.stderr[-2000:]}"
    assert (tmp_path / "cede.html").is_file()


def test_quick_start_python_gives_what_its_comments_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    monkeypatch.chdir(tmp_path)
    _, code = quick_start()
    *body, last = code.strip().splitlines()
    scope: dict[str, object] = {}
    exec("\n".join(body), scope)
    assert "[8, 8]" in last
    assert eval(last.split("#")[0], scope) == [8, 8]


def test_links_to_docs_reach_a_file_and_a_heading() -> None:
    """Every relative link of the README and of docs/*.md reaches a file, and its #anchor a heading
    of that file: what moved out of the README is found where the README says."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    checked = 0
    for page in docs:
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#([^)]+))?\)", page.read_text()):
            path, anchor = target
            linked = (page.parent / path).resolve()
            assert linked.is_file(), f"{page.name}: link to a missing file {path}"
            if anchor:
                found = [github_anchor(h) for h in headings(linked.read_text())]
                assert anchor in found, f"{page.name}: {path}#{anchor} reaches no heading"
            checked += 1
    assert checked >= 10, "the README links its docs/ pages"


# Transcripts of commands that need no lab: run each as written and find every line the README
# shows in what it prints now.  Lab commands (diff, trace, check --vmcore of a lab dump) are left
# to the live tests.
NO_LAB = ("explore", "check", "show", "invariants", "timeline")
TIMING = re.compile(r"\d+\.\d+ s \([\d,]+ states/s\)")


def transcripts() -> list[tuple[str, list[str]]]:
    """(command, the output lines the README shows for it) of each `$ pyvcore ...` of a block."""
    found: list[tuple[str, list[str]]] = []
    for block in re.findall(r"^```\n(\$ .*?)^```", README, re.S | re.M):
        for part in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, *output = part.rstrip("\n").splitlines()
            found.append((command, output))
    return found


def expected_line(line: str) -> re.Pattern[str]:
    """A README output line as a pattern: `...` at its end stands for the elided rest, and a
    timing (`0.015 s (103,234 states/s)`) for any timing, a process peak RSS for any."""
    elided = line.endswith("...") and line.strip() != "..."
    text = line[:-3] if elided else line
    parts = [re.escape(p) for p in TIMING.split(text)]
    pattern = r"\d+\.\d+ s \([\d,]+ states/s\)".join(parts)
    # the process's peak RSS (explore) differs from run to run as a timing does
    pattern = re.sub(
        re.escape(re.escape("process peak RSS ")) + r"[\d,]+",
        lambda _m: r"process\ peak\ RSS\ [\d,]+",
        pattern,
    )
    return re.compile(pattern + (".*" if elided else "") + r"\Z")


def test_no_lab_transcripts_print_what_the_readme_shows(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "tests").symlink_to(ROOT / "tests")
    ran = 0
    for command, output in transcripts():
        words = command.split("#")[0].split()
        sub = words[words.index("pyvcore") + 1]
        if sub not in NO_LAB or "--vmcore" in words:
            continue
        status = next((int(line.split()[-1]) for line in output if line.startswith("# exit")), None)
        shell = re.sub(r"(^|;\s*)pyvcore ", rf"\1{sys.executable} -m pyvcore ", command)
        done = subprocess.run(
            ["bash", "-c", shell], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        printed = (done.stdout + done.stderr).splitlines()
        for line in output:
            if line.strip() == "..." or line.startswith("# exit"):
                continue
            pattern = expected_line(line)
            assert any(pattern.match(p) for p in printed), f"{command}: not printed now: {line}"
        if status is not None:
            assert done.returncode == status, f"{command}: exit {done.returncode}"
        ran += 1
    assert ran >= 3, "the README's no-lab transcripts were found"


def test_transcript_lines_are_matched_strictly() -> None:
    """The matcher is not vacuous: a changed word fails, a timing or an elided tail does not."""
    line = "1,535 states, 2,570 transitions, 0.015 s (103,234 states/s), depth 8"
    assert expected_line(line).match(line.replace("0.015 s (103,234", "0.2 s (7,675"))
    assert not expected_line(line).match(line.replace("depth 8", "depth 9"))
    rss = "0 finished runs, search structures ~0 MiB (estimate), process peak RSS 19 MiB"
    assert expected_line(rss).match(rss.replace("RSS 19", "RSS 1,024"))
    assert not expected_line(rss).match(rss.replace("~0 MiB", "~1 MiB"))
    assert expected_line("bounds: one run; ...").match("bounds: one run; at most 1 cede")
    assert not expected_line("bounds: one run").match("bounds: one run; at most 1 cede")


def test_quick_start_prepatch_lines_say_where_each_command_reports(tmp_path: Path) -> None:
    """The quick start's prepatch pair: explore reports invariant 29 after the event its comment
    names, check reports it first at the line its comment names, and the text's mapping (line
    N+1 = after event N) holds: that line is the state after event N, as explore prints."""
    import json
    import subprocess
    import sys

    text = section("## Try it without a lab")
    explore = next(
        line for line in text.splitlines() if line.startswith("pyvcore explore --variant prepatch")
    )
    check = next(line for line in text.splitlines() if line.startswith("pyvcore check pre.jsonl"))
    said_event = re.search(r"invariant 29's doorbell after event (\d+)", explore)
    said_line = re.search(r"invariant 29's per-state form, first at line (\d+)", check)
    assert said_event and said_line, (explore, check)
    event, line = int(said_event.group(1)), int(said_line.group(1))

    def run(command: str) -> str:
        argv = command.partition("#")[0].split()[1:]
        done = subprocess.run(
            [sys.executable, "-m", "pyvcore", *argv],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr
        return done.stdout

    explored = run(explore)
    assert f"violated after event {event}: invariant 29 " in explored
    assert "line 1 is the state before event 1, line N+1 the state after event N" in explored
    assert f"(line {event + 1}: after event {event})" in explored
    assert f"invariant 29, first at line {line}: doorbell delivery" in run(check)
    states = (tmp_path / "pre.jsonl").read_text().splitlines()
    assert len(states) == event + 1 and "event" not in json.loads(states[0])
    counterexample = re.findall(r"^ +\d+\. (.+)$", explored, re.M)
    assert json.loads(states[line - 1])["event"] == counterexample[line - 2]
    words = " ".join(text.split())
    assert f"line {line}, the state after event {line - 1} (`{counterexample[line - 2]}`)" in words


def test_the_mutants_section_gives_run_times_and_says_kills_may_vary() -> None:
    section = README.split("\n## Kernel mutants", 1)[1].split("\n## ", 1)[0]
    flat = " ".join(section.split())
    assert "What `--run` costs" in flat and re.search(r"\d+ s", flat)
    assert "may vary from run to run" in flat
    assert "seems to be stuck" in flat  # the wait for the guest's reports ends there
