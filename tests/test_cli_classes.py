"""The command line's shared behaviour, checked across every subcommand (no lab boots).

1. Bad input is refused before any lab, QEMU, gdb or plugin build starts.
2. A bad enumerated option is one line naming the choices, exit 2, in every subcommand.
3. With ``--json`` stdout carries one JSON object, whatever happened.
4. (tests/test_cli_lock.py: waits for the machine lock say that they wait.)
5. ``--version``; a directory or a non-dump given as a file says what it is and what is expected.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import elfcraft
import pytest

from pyvcore.cli import build_parser, main
from pyvcore.cliargs import LOCK_WAIT_DEFAULT

# Every command that boots the lab (and so takes the machine's one QEMU lock).
LAB_COMMANDS = [["diff"], ["trace", "--scenario", "all"], ["mutants"], ["lab", "up"]]

ROOT_PARSER_COMMANDS = (
    "check",
    "invariants",
    "explore",
    "lab",
    "gdb",
    "diff",
    "timeline",
    "show",
    "mutants",
    "trace",
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Everything that would start a lab, QEMU, gdb or a plugin build records itself here
    (and does nothing): a refusal must leave the list empty."""
    import pyvcore.diff_watch as diff_watch
    import pyvcore.lab as lab
    import pyvcore.lab.plugin_build as plugin_build
    import pyvcore.mutants.cli as mutants_cli

    calls: list[str] = []

    def recorder(name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise RuntimeError(f"{name} started")

        return record

    monkeypatch.setattr(lab.Lab, "start", recorder("Lab.start"))
    monkeypatch.setattr(lab, "acquire_lock", recorder("the machine lock"))
    monkeypatch.setattr(diff_watch, "GdbMI", recorder("gdb (MI)"))  # what attach() starts
    monkeypatch.setattr(plugin_build, "ensure_plugin", recorder("the plugin build"))
    monkeypatch.setattr(mutants_cli, "run_plan", recorder("the mutants' control run"))
    monkeypatch.setattr(os, "execvpe", recorder("gdb (exec)"))
    return calls


@pytest.fixture
def vmlinux(tmp_path: Path) -> Path:
    """A ppc64le kernel image with a banner and BTF but no KVM: accepted by gdb, refused by the lab."""
    return elfcraft.write_vmlinux(tmp_path / "vmlinux")


# ------------------------------------------------------------------ 1. refuse first
def refusals(tmp_path: Path, vmlinux: Path) -> list[list[str]]:
    (tmp_path / "dir").mkdir(exist_ok=True)
    text = tmp_path / "text"
    text.write_text("not a kernel\n")
    return [
        ["diff", "--kernel", str(text)],
        ["diff", "--kernel", str(vmlinux)],  # an ELF kernel without KVM-HV
        ["diff", "--kernel", "9.9"],
        ["diff", "--modules", str(tmp_path / "none")],
        ["diff", "--qemu", str(text)],
        ["diff", "--trace", str(tmp_path / "dir")],
        ["diff", "--report", str(text)],
        ["diff", "--attach", "127.0.0.1:1", "--kernel", "/bin/ls"],
        ["trace", "--scenario", "all", "--kernel", str(text)],
        ["trace", "--scenario", "all", "--out", str(tmp_path / "dir")],
        ["lab", "up", "--kernel", str(text)],
        ["lab", "up", "--plugin", str(tmp_path / "none.so")],
        ["lab", "up", "--modules", str(text)],
        ["mutants", "--run", "ptid-zero", "--scenario", "nosuch"],
        ["mutants", "--run", "nosuch"],
        ["mutants", "--run", "ptid-zero", "--keep", str(text)],
        ["gdb", "--vmlinux", "/bin/ls", "--no-connect"],
        ["gdb", "--vmlinux", str(tmp_path / "dir"), "--no-connect"],
        ["gdb", "--vmlinux", str(vmlinux), "--remote", "nonsense"],
        ["check", "--vmcore", str(text), "--vmlinux", str(vmlinux)],
        ["timeline", str(text), "-o", str(tmp_path / "out.svg")],
        ["show", str(tmp_path / "dir")],
    ]


def test_bad_input_is_refused_before_anything_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, vmlinux: Path, started: list[str]
) -> None:
    for argv in refusals(tmp_path, vmlinux):
        code, _out, err = run(capsys, *argv)
        assert (code, started) == (2, []), (argv, err)
        assert len(err.strip().splitlines()) == 1, (argv, err)
        assert err.startswith(f"pyvcore {argv[0]}") and "booting" not in err, (argv, err)
        assert "Traceback" not in err and "usage:" not in err, (argv, err)


def test_the_recorder_sees_a_start(
    capsys: pytest.CaptureFixture[str], vmlinux: Path, started: list[str]
) -> None:
    """The refusals above are refusals: a good input does reach what `started` records."""
    code, _out, _err = run(capsys, "gdb", "--vmlinux", str(vmlinux), "--no-connect")
    assert started == ["gdb (exec)"] and code == 3


def fake_qemu(path: Path, machines: str = "powernv8             IBM PowerNV (POWER8)") -> Path:
    """A program that answers ``-machine help`` as QEMU does, listing ``machines``."""
    path.write_text(f"#!/bin/sh\necho 'Supported machines are:'\necho '{machines}'\n")
    path.chmod(0o755)
    return path


QEMU_ARGS = {"mutants": ["--run", "ptid-zero"]}


@pytest.mark.parametrize("command", LAB_COMMANDS)
def test_a_qemu_that_is_not_a_qemu_system_ppc64_is_refused_before_the_lock(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, started: list[str], command: list[str]
) -> None:
    x86 = fake_qemu(tmp_path / "qemu-system-x86_64", "pc-i440fx-9.2         Standard PC")
    for qemu, said in (("/bin/true", "not a qemu-system-ppc64"), (str(x86), "without the powernv8 machine")):
        code, _out, err = run(
            capsys, *command, *QEMU_ARGS.get(command[0], []), "--qemu", qemu, "--lock-wait", "900"
        )
        assert (code, started) == (2, []), err
        assert said in err and len(err.splitlines()) == 1, err
        assert err.startswith(f"pyvcore {' '.join(command[:1])}"), err


def test_a_qemu_given_by_path_is_asked_once_and_refused_by_the_api_too(tmp_path: Path) -> None:
    from pyvcore.lab.inputs import not_a_qemu, resolve_qemu
    from pyvcore.lab.qemu import LabError

    good = fake_qemu(tmp_path / "qemu-system-ppc64")
    assert not_a_qemu(good) is None
    assert resolve_qemu(str(good)) == ("path", good.resolve())
    with pytest.raises(LabError, match=r"^--qemu /bin/true: not a qemu-system-ppc64"):
        resolve_qemu("/bin/true")


def test_mutants_refuse_a_kernel_they_were_not_made_for_before_the_control(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    vmlinux: Path,
    started: list[str],
    tmp_path: Path,
) -> None:
    import pyvcore.mutants.cli as mutants_cli

    module = vmlinux.with_name("kvm-hv.ko")
    module.write_bytes(elfcraft.Elf(etype=elfcraft.ET_REL).section(".text", bytes(16)).build())
    monkeypatch.setattr(mutants_cli, "_lab_kernel", lambda: (vmlinux, {"kvm": module, "kvm_hv": module}))
    for name in ("ptid-zero", "lpidr-on-secondary"):
        code, _out, err = run(capsys, "mutants", "--run", name, "--qemu", str(fake_qemu(tmp_path / "qemu")))
        assert (code, started) == (2, []), err
        assert err.startswith(f"pyvcore mutants: mutant {name}: ") and len(err.splitlines()) == 1


def test_diff_refuses_the_kernel_before_it_says_booting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, started: list[str]
) -> None:
    from pyvcore.diff import run_diff

    said: list[str] = []
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0\n")
    result = run_diff("all", kernel=text, progress=said.append)
    assert result.verdict == "error" and started == [] and said == []
    assert result.error and "Error:" not in result.error  # pyvcore's own line, no class name


@pytest.mark.parametrize("command", LAB_COMMANDS[:2] + LAB_COMMANDS[3:])
def test_a_refused_kernel_is_one_refusal_line_in_every_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, started: list[str], command: list[str]
) -> None:
    deb = tmp_path / "linux-image-6.12.95+deb12-powerpc64le_6.12.95-1_ppc64el.deb"
    deb.write_bytes(b"!<arch>\ndebian-binary   1700000000  0     0     100644  4         `\n2.0\n")
    code, _out, err = run(capsys, *command, "--kernel", str(deb), "--lock-wait", "900")
    assert (code, started) == (2, []), err
    line = err.strip().splitlines()[-1]
    name = " ".join(command[:2]) if command[0] == "lab" else command[0]
    assert line.startswith(f"pyvcore {name}: refused: kernel {deb}: a Debian package"), err
    assert "could not run" not in err


# ------------------------------------------------------------------ 2. one shape
def enumerated_options() -> list[tuple[list[str], str, bool]]:
    """(argv prefix of the (sub)command, option string, int-typed) for every option with
    choices in every parser, found by walking them: a new option is covered too."""
    found: list[tuple[list[str], str, bool]] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif action.choices is not None and action.option_strings:
                found.append((path, action.option_strings[-1], action.type is int))

    walk(build_parser(), [])
    return found


def test_every_enumerated_option_refuses_in_one_line_naming_the_choices(
    capsys: pytest.CaptureFixture[str], started: list[str]
) -> None:
    options = enumerated_options()
    assert {path[0] for path, _o, _i in options} >= {"diff", "explore", "check", "trace", "lab", "mutants"}
    for path, option, is_int in options:
        bad = "999" if is_int else "nosuch"
        code, out, err = run(capsys, *path, option, bad)
        prog = " ".join(["pyvcore", *path])
        assert code == 2 and out == "" and started == [], (path, option, err)
        assert err.startswith(f"{prog}: argument {option}: invalid choice: "), (path, option, err)
        assert "(choose from " in err and len(err.splitlines()) == 1, (path, option, err)


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["mutants", "--run", "ptid-zero,nosuch"], "--run"),
        (["mutants", "--scenario", "all,nosuch"], "--scenario"),
        (["diff", "--qemu", "nosuch"], "--qemu"),
        (["trace", "--scenario", "all", "--qemu", "nosuch"], "--qemu"),
        (["lab", "up", "--qemu", "nosuch"], "--qemu"),
        (["mutants", "--qemu", "nosuch"], "--qemu"),
        (["lab", "setup", "--kernel", "9.9"], "--kernel"),
        (["lab", "up", "--kernel", "nosuch"], "--kernel"),
        (["diff", "--kernel", "nosuch"], "--kernel"),
        (["trace", "--scenario", "all", "--kernel", "nosuch"], "--kernel"),
    ],
)
def test_lists_and_open_choices_answer_the_same_way(
    capsys: pytest.CaptureFixture[str], argv: list[str], option: str, started: list[str]
) -> None:
    code, _out, err = run(capsys, *argv)
    prog = "pyvcore lab " + argv[1] if argv[0] == "lab" else f"pyvcore {argv[0]}"
    assert code == 2 and started == []
    assert err.startswith(f"{prog}: argument {option}: invalid choice: '"), err
    assert "(choose from " in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("command", [*ROOT_PARSER_COMMANDS, "lab up", "lab status"])
def test_an_unknown_option_is_one_line_named_after_its_subcommand(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    required = {
        "explore": ["--variant", "seed", "--threads", "4"],
        "trace": ["--scenario", "all"],
        "show": ["-"],
        "timeline": ["-"],
    }
    argv = [*command.split(), *required.get(command, []), "--no-such-option"]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith(f"pyvcore {command}: unrecognized arguments: --") and len(err.splitlines()) == 1
    assert f"`pyvcore {command} --help`" in err


# ------------------------------------------------------------------ 3. --json
def json_refusals(tmp_path: Path, vmlinux: Path) -> list[list[str]]:
    text = tmp_path / "text"
    text.write_text("not a kernel\n")
    return [
        ["diff", "--json", "--scenario", "nosuch"],
        ["diff", "--json", "--kernel", str(text)],
        ["diff", "--json", "--attach", "127.0.0.1:1", "--kernel", "/bin/ls"],
        ["trace", "--json", "--scenario", "all", "--kernel", str(text)],
        ["trace", "--json", "--scenario", "nosuch"],
        ["check", "--json", str(tmp_path)],
        ["check", "--json", "--vmcore", str(text)],
        ["check", "--json", "--vmcore", str(text), "--vmlinux", str(vmlinux)],
        ["invariants", "--json", "999"],
        ["explore", "--json", "--variant", "nosuch", "--threads", "4"],
        [
            "explore",
            "--json",
            "--variant",
            "seed",
            "--threads",
            "4",
            "--trace",
            "x",
            "--fault",
            "no-exit-ipi",
        ],
        ["mutants", "--json", "--run", "nosuch"],
        ["lab", "status", "--json", "--bogus"],
    ]


def test_json_always_prints_one_json_object(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, vmlinux: Path, started: list[str]
) -> None:
    for argv in json_refusals(tmp_path, vmlinux):
        code, out, err = run(capsys, *argv)
        assert code == 2 and started == [], (argv, err)
        doc = json.loads(out)  # exactly one JSON document
        assert isinstance(doc, dict) and out.count("\n") == 1, (argv, out)
        assert doc["verdict"] in ("error", "unusable input"), (argv, doc)
        message = doc["error"]["message"] if isinstance(doc["error"], dict) else doc["error"]
        assert message and "Traceback" not in message, (argv, doc)
        assert len(err.strip().splitlines()) == 1 and message in err, (argv, err)  # and the line on stderr


def test_json_error_object_carries_the_line_and_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "invariants", "--json", "999")
    assert code == 2 and json.loads(out) == {"verdict": "error", "error": "no invariant 999", "exit_code": 2}
    assert err == "pyvcore invariants: no invariant 999\n"


def test_json_after_gdbs_double_dash_is_gdbs(capsys: pytest.CaptureFixture[str], vmlinux: Path) -> None:
    """`pyvcore gdb ... -- --json` hands --json to gdb: no JSON object from pyvcore."""
    code, out, _err = run(capsys, "gdb", "--vmlinux", str(vmlinux), "--no-connect", "--print", "--", "--json")
    assert code == 0 and out.startswith("gdb-multiarch ") and out.rstrip().endswith("--json")


# ------------------------------------------------------------------ 5. small ones
def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import pyvcore

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"pyvcore {pyvcore.__version__}\n"


def test_check_a_directory_says_what_it_expects(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "check", str(tmp_path))
    assert code == 2 and out == ""
    assert err.startswith(
        f"pyvcore check: cannot read {tmp_path}: Is a directory; pyvcore check reads one file: "
    )
    assert "snapshot trace" in err and "event log" in err and "(this one holds" not in err
    (tmp_path / "trace.jsonl").write_text("")  # a `pyvcore diff --report` folder
    code, _out, err = run(capsys, "check", str(tmp_path))
    assert code == 2 and f"(this one holds {tmp_path / 'trace.jsonl'})" in err


def test_vmcore_refusals_name_the_file_and_what_it_is_not(tmp_path: Path) -> None:
    from pyvcore.vmcore import VmcoreError, dump_kind

    cases = {
        b"root:x:0:0\n": "not a vmcore: neither an ELF core file nor a makedumpfile",
        elfcraft.kernel().build(): "an ELF executable (a vmlinux?), not a core file",
        elfcraft.Elf(etype=elfcraft.ET_REL).build(): "a relocatable ELF object",
        b"\x7fELF\x02\x01": "an ELF file cut short (6 bytes)",
    }
    for data, message in cases.items():
        path = tmp_path / "dump"
        path.write_bytes(data)
        with pytest.raises(VmcoreError) as err:
            dump_kind(path)
        assert err.value.message == f"--vmcore {path}: {message}" or err.value.message.startswith(
            f"--vmcore {path}: {message}"
        )
    with pytest.raises(VmcoreError, match="Is a directory; expected a vmcore: an ELF core file"):
        dump_kind(tmp_path)
    core = tmp_path / "core"
    core.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x04\x00")
    assert dump_kind(core) == "an ELF core file"
    core.write_bytes(b"KDUMP   " + bytes(32))
    assert dump_kind(core) == "a compressed kdump file"


def test_libkdumpfiles_wording_is_wrapped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import pyvcore.vmcore as vmcore

    class Refusing:
        @staticmethod
        def kdumpfile(path: str) -> None:
            raise OSError("Cannot open dump: Cannot set file.set.0.fd: Unknown file format")

    monkeypatch.setattr(vmcore, "_kdumpfile", lambda: Refusing)
    core = tmp_path / "core"
    core.write_bytes(b"KDUMP   " + bytes(32))
    with pytest.raises(vmcore.VmcoreError) as err:
        vmcore.open_dump(core)
    assert err.value.message == (
        f"--vmcore {core}: a compressed kdump file that libkdumpfile cannot read (unknown file format)"
    )


# ------------------------------------------------------------------ 6. a file that cannot be read
FILE_TYPES = ("input_file", "file", "input_dir", "kernel", "vmlinux", "qemu")


def file_options() -> list[tuple[list[str], str | None, str]]:
    """(argv prefix, option string or None for a positional, type name) of every argument
    of every (sub)command that names a file or directory to read, found by walking the
    parsers: a new one is covered too."""
    found: list[tuple[list[str], str | None, str]] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif getattr(action.type, "__name__", None) in FILE_TYPES:
                option = action.option_strings[-1] if action.option_strings else None
                found.append((path, option, action.type.__name__))  # type: ignore[union-attr]

    walk(build_parser(), [])
    return found


def test_every_missing_input_file_is_one_plain_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, vmlinux: Path, started: list[str]
) -> None:
    """Every option or argument that reads a file, of every command, says a missing one
    the same way: `pyvcore CMD: cannot read PATH: No such file or directory`, exit 2."""
    options = file_options()
    assert {path[0] for path, _o, _t in options} >= {
        "show",
        "timeline",
        "check",
        "diff",
        "trace",
        "lab",
        "gdb",
    }
    missing = str(tmp_path / "missing")
    explicit: list[list[str]] = [  # read by the command itself, not by an argument type
        ["check", missing],
        ["check", "--json", missing],
        ["check", "--vmcore", missing, "--vmlinux", str(vmlinux)],
        ["gdb", "--vmlinux", str(vmlinux), "--no-connect", "--status", missing],
        ["lab", "up", "--plugin", missing],
    ]
    cases = [[*path, *([option] if option else []), missing] for path, option, _t in options]
    for argv in cases + explicit:
        code, out, err = run(capsys, *argv)
        prog = " ".join(["pyvcore", *argv[: 2 if argv[0] == "lab" else 1]])
        assert code == 2 and started == [], (argv, err)
        assert err == f"{prog}: cannot read {missing}: No such file or directory\n", (argv, err)
        assert out == "" or json.loads(out)["verdict"] in ("error", "unusable input"), (argv, out)


@pytest.mark.skipif(
    not os.path.exists("/proc/self/mem"), reason="needs Linux's /proc/self/mem (EIO at offset 0)"
)
def test_a_file_that_fails_midway_is_the_same_line_as_a_missing_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A file that opens but fails on read (/proc/self/mem gives EIO at offset 0) is
    `cannot read PATH: Input/output error`, exit 2, for every reader: check (snapshot
    trace, --json), show, timeline, and the event-log replay of check."""
    from pyvcore.trace import check_event_log

    mem = "/proc/self/mem"
    line = f"cannot read {mem}: Input/output error"
    for argv in (
        ["check", mem],
        ["check", "--json", mem],
        ["show", mem],
        ["timeline", mem, "-o", str(tmp_path / "t.html")],
    ):
        code, out, err = run(capsys, *argv)
        assert (code, err) == (2, f"pyvcore {argv[0]}: {line}\n"), (argv, out, err)
        assert out == "" or json.loads(out)["verdict"] == "unusable input", (argv, out)
    assert not (tmp_path / "t.html").exists()
    assert check_event_log(mem) == 2
    assert capsys.readouterr().err == f"pyvcore check: {line}\n"


def test_a_directory_where_a_file_is_read_and_the_reverse(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, started: list[str]
) -> None:
    """The wrong kind of path: the C library's words for it, then what to give instead."""
    text = tmp_path / "text"
    text.write_text("x\n")
    for path, option, kind in file_options():
        wrong = text if kind == "input_dir" else tmp_path
        argv = [*path, *([option] if option else []), str(wrong)]
        code, _out, err = run(capsys, *argv)
        reason = "Not a directory" if kind == "input_dir" else "Is a directory"
        assert code == 2 and started == [] and len(err.splitlines()) == 1, (argv, err)
        assert f": cannot read {wrong}: {reason}; expected " in err, (argv, err)


def test_check_of_a_missing_file_through_the_process(tmp_path: Path) -> None:
    """The trace is opened by the Rust reader: its io error reaches the user as the C
    library words it, without Rust's "(os error 2)"."""
    import subprocess
    import sys

    missing = tmp_path / "nope.jsonl"
    for argv in (["check", str(missing)], ["timeline", str(missing), "-o", str(tmp_path / "t.html")]):
        r = subprocess.run(
            [sys.executable, "-m", "pyvcore", *argv], capture_output=True, text=True, timeout=60
        )
        assert (r.returncode, r.stdout) == (2, ""), r
        assert r.stderr == f"pyvcore {argv[0]}: cannot read {missing}: No such file or directory\n"


def test_the_python_api_raises_a_plain_file_not_found(tmp_path: Path) -> None:
    import pyvcore

    with pytest.raises(FileNotFoundError) as err:
        pyvcore.check_trace(tmp_path / "nope.jsonl")
    assert err.value.strerror == "No such file or directory" and str(err.value.filename) == str(
        tmp_path / "nope.jsonl"
    )


# ------------------------------------------------------------------ 7. one name for one thing
def visible_options() -> dict[str, set[tuple[str, ...]]]:
    """dest -> the spellings --help shows for it, over every (sub)command."""
    found: dict[str, set[tuple[str, ...]]] = {}

    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
            elif action.option_strings and action.help != argparse.SUPPRESS:
                found.setdefault(action.dest, set()).add(tuple(action.option_strings))

    walk(build_parser())
    return found


def test_one_spelling_per_option_across_every_command() -> None:
    """An option that means one thing is spelled one way in every command's --help."""
    differing = {dest: spellings for dest, spellings in visible_options().items() if len(spellings) > 1}
    assert differing == {}
    assert visible_options()["lock_wait"] == {("--lock-wait",)}


@pytest.mark.parametrize("command", LAB_COMMANDS)
def test_every_command_that_boots_the_lab_queues_with_lock_wait(command: list[str]) -> None:
    args = build_parser(command[0]).parse_args([*command, "--lock-wait", "12"])
    assert args.lock_wait == 12.0


def _lock_wait_action(command: list[str]) -> argparse.Action:
    parser = build_parser(command[0])
    for word in command:
        if word.startswith("-"):
            break
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return next(a for a in parser._actions if "--lock-wait" in a.option_strings)


def test_every_command_that_boots_the_lab_waits_alike_by_default() -> None:
    """One default (wait 600 s), one metavar and one help text for every command that takes
    the machine lock: a busy lab is queued for, whichever command meets it."""
    for command in LAB_COMMANDS:
        assert build_parser(command[0]).parse_args(command).lock_wait == LOCK_WAIT_DEFAULT == 600.0, command
    shown = {(a.default, a.metavar, a.help) for a in map(_lock_wait_action, LAB_COMMANDS)}
    assert len(shown) == 1, shown
    assert "0 = fail at once" in str(next(iter(shown))[2])


def test_lab_up_wait_is_a_hidden_alias_of_lock_wait(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser("lab")
    assert parser.parse_args(["lab", "up", "--wait", "7"]).lock_wait == 7.0
    assert parser.parse_args(["lab", "up"]).lock_wait == LOCK_WAIT_DEFAULT
    with pytest.raises(SystemExit):
        main(["lab", "up", "--help"])
    shown = capsys.readouterr().out
    assert "--lock-wait SECONDS" in shown and "--wait" not in shown.replace("--lock-wait", "")


def test_lab_up_says_it_boots_as_diff_does(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, started: list[str]
) -> None:
    import pyvcore.lab as lab

    monkeypatch.setattr(lab.Lab, "prepare", lambda self: None)
    monkeypatch.setattr(lab.Lab, "running", staticmethod(lambda: None))
    _code, _out, err = run(capsys, "lab", "up", "--scenario", "cede", "--lock-wait", "900")
    assert started == ["Lab.start"]  # the line comes before the boot, as diff's does
    assert (
        err.splitlines()[0] == "pyvcore lab up: booting the lab: scenario cede, patched QEMU, 4 threads ..."
    )


@pytest.mark.parametrize("command", [["diff"], ["trace"], ["lab", "up"]])
def test_kernel_help_names_the_kernels_the_lab_knows(command: list[str]) -> None:
    from pyvcore.lab.kernels import KERNELS

    parser = build_parser(command[0])
    sub = parser
    for word in command:
        sub = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    (action,) = [a for a in sub._actions if "--kernel" in a.option_strings]
    assert action.metavar == "NAME|VMLINUX"
    assert all(name in (action.help or "") for name in KERNELS)
