"""`pyvcore gdb`: the gdb-multiarch command line it builds, and its auto-load script."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import elfcraft
import pytest

from pyvcore.cli import main
from pyvcore.gdbcli import gdb_command, module_commands, plugin_entry, write_autoload

STATUS = {
    "gdb": "127.0.0.1:4321",
    "vmlinux": "/k/vmlinux",
    "modules": {
        "kvm_hv": {".text": 0xC0003D0000478000, ".data": 0xC0003D000049EB40, ".bss": 0xC0003D00004A34C0},
        "kvm": {".data": 1},
    },  # no .text: not loadable
    "module_objects": {"kvm_hv": "/k/kvm-hv.ko", "kvm": "/k/kvm.ko"},
}


def test_module_symbols_at_reported_addresses():
    assert module_commands(STATUS) == [
        "add-symbol-file /k/kvm-hv.ko 0xc0003d0000478000 -s .bss 0xc0003d00004a34c0 "
        "-s .data 0xc0003d000049eb40"
    ]


def test_gdb_command_order():
    argv = gdb_command(
        vmlinux="/k/vmlinux", remote="127.0.0.1:4321", modules=["add-symbol-file x 0x1"], verbose=True
    )
    ex = [argv[i + 1] for i, a in enumerate(argv) if a == "-ex"]
    assert argv[0] == "gdb-multiarch"
    assert (
        ex.index("file /k/vmlinux")
        < ex.index("add-symbol-file x 0x1")
        < ex.index("target remote 127.0.0.1:4321")
        < ex.index(f"source {plugin_entry()}")
    )
    assert "set architecture powerpc:common64" in ex and "set endian little" in ex


def test_quiet_start_loads_modules_and_connects_inside_python_in_order():
    argv = gdb_command(
        vmlinux="/k/vmlinux", remote="127.0.0.1:4321", modules=module_commands(STATUS), verbose=False
    )
    ex = [argv[i + 1] for i, a in enumerate(argv) if a == "-ex"]
    quiet = next(e for e in ex if e.startswith("python exec("))
    assert ex.index(quiet) < ex.index(f"source {plugin_entry()}")
    assert not any(e.startswith(("add-symbol-file", "target remote", "file ")) for e in ex)
    code = eval(quiet[len("python exec(") : -1])  # the script gdb runs
    compile(code, "quiet", "exec")
    assert "to_string=True" in code and "kvm-hv" in code and "127.0.0.1:4321" in code
    assert code.index("/k/vmlinux") < code.index("kvm-hv.ko") < code.index("127.0.0.1:4321")


def test_no_connect_needs_no_lab(tmp_path, capsys, monkeypatch):
    import pyvcore.lab

    def no_lab(cls):
        raise AssertionError("the lab must not be asked")

    monkeypatch.setattr(pyvcore.lab.Lab, "running", classmethod(no_lab))
    vmlinux = elfcraft.write_vmlinux(tmp_path / "vmlinux")
    assert main(["gdb", "--vmlinux", str(vmlinux), "--no-connect", "--print"]) == 0
    out = capsys.readouterr().out
    assert "target remote" not in out and str(vmlinux) in out


def test_status_file_instead_of_asking_the_lab(tmp_path, capsys, monkeypatch):
    import json

    import pyvcore.lab

    monkeypatch.setattr(pyvcore.lab.Lab, "running", classmethod(lambda cls: 1 / 0))
    vmlinux = elfcraft.write_vmlinux(tmp_path / "vmlinux")
    status = tmp_path / "status.json"
    status.write_text(json.dumps({**STATUS, "vmlinux": str(vmlinux)}))
    assert main(["gdb", "--status", str(status), "--print", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "target remote 127.0.0.1:4321" in out and "add-symbol-file /k/kvm-hv.ko" in out
    status.write_text("[1]")
    assert main(["gdb", "--status", str(status)]) == 2
    assert "not a lab status object" in capsys.readouterr().err


def test_unreachable_remote_fails_fast(tmp_path, capsys):
    import socket
    import time

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    vmlinux = elfcraft.write_vmlinux(tmp_path / "vmlinux")
    started = time.monotonic()
    assert main(["gdb", "--vmlinux", str(vmlinux), "--remote", f"127.0.0.1:{port}"]) == 2
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert f"nothing answers at 127.0.0.1:{port}" in err and len(err.strip().splitlines()) == 1
    assert main(["gdb", "--vmlinux", str(vmlinux), "--remote", "nonsense"]) == 2
    assert "argument --remote: expected HOST:PORT" in capsys.readouterr().err


def test_entry_is_the_packaged_gdb_py(capsys):
    assert main(["gdb", "--entry"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.name == "gdb.py" and path.parent.name == "pyvcore"
    assert (path.parent / "_gdb_plugins" / "watch.py").is_file()


def test_without_a_lab_it_says_what_to_do(capsys, monkeypatch):
    import pyvcore.lab

    monkeypatch.setattr(pyvcore.lab.Lab, "running", classmethod(lambda cls: None))
    assert main(["gdb"]) == 2
    assert "no lab is running: start one with `pyvcore lab up`" in capsys.readouterr().err


def test_remote_without_vmlinux_says_it_needs_vmlinux(capsys, monkeypatch):
    import pyvcore.lab

    monkeypatch.setattr(pyvcore.lab.Lab, "running", classmethod(lambda cls: None))
    assert main(["gdb", "--remote", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyvcore gdb: --remote HOST:PORT needs --vmlinux VMLINUX"), err
    assert "\n" not in err.strip() and "start one with" not in err


def test_print_with_explicit_target(tmp_path, capsys):
    vmlinux = elfcraft.write_vmlinux(tmp_path / "vmlinux")
    assert main(["gdb", "--vmlinux", str(vmlinux), "--remote", "127.0.0.1:1", "--print"]) == 0
    out = capsys.readouterr().out
    assert "127.0.0.1:1" in out and str(vmlinux) in out


@pytest.mark.gdb
@pytest.mark.skipif(shutil.which("gdb-multiarch") is None, reason="gdb-multiarch not installed")
def test_autoload_script_loads_the_plugin(tmp_path):
    vmlinux = tmp_path / "vmlinux"
    shutil.copy("/bin/true", vmlinux)  # any ELF: the plugin must still load and explain
    script = write_autoload(vmlinux)
    assert script.name == "vmlinux-gdb.py"
    out = subprocess.run(
        [
            "gdb-multiarch",
            "-nx",
            "-q",
            "-batch",
            "-ex",
            f"add-auto-load-safe-path {tmp_path}",
            "-ex",
            f"file {vmlinux}",
            "-ex",
            "help pv-vcore",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    text = out.stdout + out.stderr
    assert "Traceback" not in text
    assert "pv-paca, pv-vcore, pv-vcpu, pv-print, pv-snapshot, pv-check, pv-watch" in text.replace(
        ":\n  ", ": "
    ).replace(";\n  ", "; ")
    assert "not a ppc64 kernel" in text
    assert "Usage: pv-vcore [N|ADDR|all]" in text


PV_COMMANDS = ("pv-paca", "pv-vcore", "pv-vcpu", "pv-print", "pv-snapshot", "pv-check", "pv-watch")
PV_FUNCTIONS = ("pv_paca", "pv_vcore", "pv_vcpu")


def help_examples(text: str) -> list[str]:
    """The lines under "Examples:" in a help text (indented, up to a blank line)."""
    out, inside = [], False
    for line in text.splitlines():
        if line.strip() == "Examples:":
            inside = True
        elif inside and line.startswith("  ") and line.strip():
            out.append(line.strip())
        elif inside:
            inside = False
    return out


def function_examples(text: str) -> list[str]:
    """`p $pv_...(...)`-style examples quoted in a function's help."""
    import re

    return [m for m in re.findall(r"`([^`]+)`", text) if "$pv_" in m and not m.startswith("$pv_")]


def vmlinux_or_skip() -> str:
    from test_btf import VMLINUX

    if VMLINUX is None or shutil.which("gdb-multiarch") is None:
        pytest.skip("needs gdb-multiarch and the lab's ppc64 vmlinux (`pyvcore lab setup`)")
    return str(VMLINUX)


def gdb_batch(*commands: str) -> str:
    argv = [
        "gdb-multiarch",
        "-nx",
        "-q",
        "-batch",
        "-ex",
        f"file {vmlinux_or_skip()}",
        "-ex",
        f"source {plugin_entry()}",
    ]
    for c in commands:
        argv += ["-ex", c]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return out.stdout + out.stderr


@pytest.mark.gdb
def test_every_help_example_parses_and_fails_only_for_want_of_a_target():
    """Without a target each example must get as far as needing one: no usage error,
    no unknown command or function, no traceback.  (Live: tests/test_gdb_tmux.py.)"""
    helps = gdb_batch(*(f"help {c}" for c in PV_COMMANDS), *(f"help function {f}" for f in PV_FUNCTIONS))
    examples = help_examples(helps) + function_examples(helps)
    assert {"pv-paca 0", "pv-vcore 0", "pv-vcpu 1", "pv-check --explain", "p $pv_paca(0)"} <= set(examples)
    out = gdb_batch(*examples)
    assert "Traceback" not in out and "Python Exception" not in out
    for bad in ("unrecognized arguments", "Undefined command", "No symbol", "invalid choice", "must be"):
        assert bad not in out, (bad, out)
    assert out.count("not connected to a target") == len(examples)


@pytest.mark.gdb
def test_pv_functions_with_wrong_arguments_are_one_line():
    out = gdb_batch("p $pv_paca()", "p $pv_vcore(1, 2)", "p $pv_vcpu()")
    assert "Traceback" not in out and "Python Exception" not in out
    assert "$pv_paca: takes one argument, CPU (e.g. $pv_paca(0)); got 0" in out
    assert "$pv_vcore: takes one argument, N (e.g. $pv_vcore(0)); got 2" in out
    assert "$pv_vcpu: takes one argument, ID (e.g. $pv_vcpu(0)); got 0" in out


@pytest.mark.gdb
def test_the_live_first_steps_run_every_help_example():
    """tests/test_gdb_tmux.py types FIRST_STEPS into a live gdb: every example is among them."""
    from test_gdb_tmux import FIRST_STEPS

    helps = gdb_batch(*(f"help {c}" for c in PV_COMMANDS), *(f"help function {f}" for f in PV_FUNCTIONS))
    missing = set(help_examples(helps) + function_examples(helps)) - set(FIRST_STEPS)
    assert not missing


def test_btf_types_compile_with_every_offset_checked(tmp_path):
    """The C rebuilt from the recorded 6.12 BTF layouts compiles, and its _Static_asserts
    (one per member offset, one per struct size) hold."""
    from gdb_fakes import FakeHost

    from pyvcore import btftypes

    cc = shutil.which("powerpc64le-linux-gnu-gcc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    source = btftypes.c_source(FakeHost().layouts, btftypes.ROOTS)
    assert "struct paca_struct {" in source and "struct kvmppc_host_state {" in source
    assert source.count("_Static_assert(__builtin_offsetof(") > 100
    src = tmp_path / "t.c"
    src.write_text(source)
    r = subprocess.run(
        [cc, "-g", "-c", "-o", str(tmp_path / "t.o"), str(src)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[:2000]
    # a wrong offset is refused by the compiler
    src.write_text(source.replace('== 726, "struct paca_struct.', '== 727, "struct paca_struct.', 1))
    bad = subprocess.run([cc, "-c", "-o", str(tmp_path / "b.o"), str(src)], capture_output=True, text=True)
    assert bad.returncode != 0 or "== 726" not in source


@pytest.mark.gdb
def test_btf_only_kernel_gets_gdb_struct_types():
    if shutil.which("powerpc64le-linux-gnu-gcc") is None:
        pytest.skip("powerpc64le-linux-gnu-gcc not installed (`pyvcore lab setup`)")
    out = gdb_batch(
        "python from pyvcore._gdb_plugins import gdbtypes, session; print('types', gdbtypes.ensure(session.kernel()))",
        "p &((struct paca_struct *)0)->kvm_hstate.ptid",
        "p sizeof(struct kvmppc_vcore)",
        "p &((struct kvm_vcpu *)0)->arch.ceded",
        "python print('origin', session.kernel().layouts.origin)",
    )
    assert "types True" in out
    assert "origin BTF" in out  # the rebuilt types are not taken for the kernel's DWARF
    assert "0x2d6" in out  # kvm_hstate (0x298) + ptid (0x3e), the BTF offsets
    assert "Traceback" not in out and "Python Exception" not in out
