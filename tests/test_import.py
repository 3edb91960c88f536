import subprocess
import sys


def test_version_comes_from_the_compiled_core():
    import pyvcore
    import pyvcore._core

    assert pyvcore.__version__ == pyvcore._core.__version__
    assert pyvcore.__version__.count(".") == 2


def test_cli_help_lists_every_subject():
    out = subprocess.run(
        [sys.executable, "-m", "pyvcore", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "usage: pyvcore" in out


def test_each_command_imports_only_its_own_subject():
    # `pyvcore check` must not pay for the lab's asyncio/QMP imports.
    code = (
        "import sys; from pyvcore.cli import build_parser; build_parser('check'); "
        "print('pyvcore.lab.qemu' in sys.modules, 'pyvcore.checker' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_help_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "pyvcore", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("check", "explore", "lab", "gdb", "diff"):
        assert command in out
