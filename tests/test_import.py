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
