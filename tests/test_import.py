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


def test_public_exceptions_carry_their_public_names():
    """Every exception class pyvcore exports is named as users import it: `pyvcore.X`
    in its repr and in a traceback (not the extension's `_core.PyX`), and resolvable
    by that name (pickle finds it)."""
    import pickle

    import pyvcore
    import pyvcore._core as core

    exported = {n: getattr(pyvcore, n) for n in pyvcore.__all__}
    errors = {n: c for n, c in exported.items() if isinstance(c, type) and issubclass(c, BaseException)}
    assert set(errors) == {"EventLogError", "ImageError", "InvariantError", "ModelError", "SnapshotError"}
    for name, cls in errors.items():
        assert (cls.__module__, cls.__qualname__, cls.__name__) == ("pyvcore", name, name)
        assert repr(cls) == f"<class 'pyvcore.{name}'>"
        assert getattr(pyvcore, name) is cls and pickle.loads(pickle.dumps(cls)) is cls
    for name in dir(core):  # the extension's own exception classes are the same objects
        obj = getattr(core, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert obj is errors[name], name


def test_a_traceback_names_the_public_exception(tmp_path):
    not_elf = tmp_path / "vmlinux"
    not_elf.write_text("not a kernel\n")
    cases = {
        "pyvcore.ModelError": "pyvcore.Vcore('seed', threads=4, vcpus=[1]).apply('nosuch')",
        "pyvcore.SnapshotError": "pyvcore.Checker().check('{}')",
        "pyvcore.ImageError": f"pyvcore._core.KernelImage({str(not_elf)!r})",
    }
    for name, code in cases.items():
        r = subprocess.run(
            [sys.executable, "-c", f"import pyvcore, pyvcore._core; {code}"], capture_output=True, text=True
        )
        last = r.stderr.strip().splitlines()[-1]
        assert r.returncode == 1 and last.startswith(f"{name}: "), r.stderr
        assert "_core." not in r.stderr.split("Traceback", 1)[-1].splitlines()[-1]
