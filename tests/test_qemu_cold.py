"""The QEMU build's cold path check (`pyvcore lab setup --check-cold`), on a tiny fake QEMU
source tree: the same functions as the real build (copy, patch, configure, ninja) with a
real ``patch``, ``ninja`` and C compiler, in well under a second, and its failures."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from pyvcore import cli
from pyvcore.lab import apt, kernels, piptools, qemubuild
from pyvcore.lab import setup as labsetup
from pyvcore.lab.steps import SetupError

VERSION = "1:10.0.2+ds-2"
TOOLS = ("cc", "ninja", "patch")
needs_tools = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS),
    reason="needs cc, ninja and patch (QEMU's build dependencies, installed by `pyvcore lab setup`)",
)

# configure as QEMU's is called (../configure from build/): writes what meson would, a
# build.ninja and compile_commands.json. other.c does not compile: only the objects of the
# patched files (and the plugin) may be built.
CONFIGURE_OK = """#!/bin/sh
set -e
echo "configure $*"
src=$(cd "$(dirname "$0")" && pwd)
cat > build.ninja <<'EOF'
rule cc
  command = cc -c $in -o $out
rule plugin
  command = cc -shared -fPIC $in -o $out
build target_ppc_helper.c.o: cc ../target/ppc/helper.c
build other.c.o: cc ../other.c
build tests/tcg/plugins/libempty.so: plugin ../plugin.c
EOF
cat > compile_commands.json <<EOF
[{"directory": "$PWD", "file": "../target/ppc/helper.c", "output": "target_ppc_helper.c.o"},
 {"directory": "$PWD", "file": "../other.c", "output": "other.c.o"}]
EOF
"""

# What QEMU 10.0's configure prints when mkvenv finds no distlib (python/scripts/mkvenv.py).
CONFIGURE_NO_DISTLIB = """#!/bin/sh
echo "python determined to be '/usr/bin/python3'"
echo "mkvenv: Creating non-isolated virtual environment at 'pyvenv'"
printf '\\n*** Ouch! ***\\n\\nfound no usable distlib, please install it \\n\\n\\n' >&2
exit 1
"""

PATCH_OK = """--- a/target/ppc/helper.c
+++ b/target/ppc/helper.c
@@ -1 +1 @@
-int helper(void) { return 1; }
+int helper(void) { return 2; }
"""

PATCH_BREAKS_BUILD = PATCH_OK.replace("return 2;", "return nosuch;")
REAL_CHECK_COLD_BUILD = qemubuild.check_cold_build


def _fake_qemu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, configure: str = CONFIGURE_OK, patch: str = PATCH_OK
) -> Path:
    """A cache whose pristine QEMU source is a fake tree; returns the cache directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = tmp_path / "xdg" / "pyvcore"
    pristine = qemubuild.pristine_dir(cache, VERSION)
    (pristine / "target" / "ppc").mkdir(parents=True)
    (pristine / "target" / "ppc" / "helper.c").write_text("int helper(void) { return 1; }\n")
    (pristine / "other.c").write_text("this is not C\n")
    (pristine / "plugin.c").write_text("int qemu_plugin_version = 4;\n")
    (pristine / "configure").write_text(configure)
    (pristine / "configure").chmod(0o755)
    series = tmp_path / "patches" / "0001-target-ppc-helper.patch"
    series.parent.mkdir()
    series.write_text(patch)
    monkeypatch.setattr(qemubuild, "qemu_source_version", lambda: VERSION)
    monkeypatch.setattr(qemubuild, "qemu_patches", lambda: [series])
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return cache


@needs_tools
def test_cold_check_configures_and_compiles_the_patched_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = _fake_qemu(monkeypatch, tmp_path)
    took = qemubuild.check_cold_build(cache)
    assert took > 0
    out = capsys.readouterr().out
    assert "qemu: configure: done" in out
    assert "qemu: ninja target_ppc_helper.c.o tests/tcg/plugins/libempty.so: done" in out
    assert "qemu: cold path (source, patches, configure, ninja) passed in" in out
    log = (cache / "qemu" / "cold-check.log").read_text()
    assert f"--python={qemubuild.sys.executable} {' '.join(qemubuild.QEMU_CONFIGURE_ARGS)}" in log
    assert list((tmp_path / "tmp").iterdir()) == []  # the temporary tree is gone
    pristine = qemubuild.pristine_dir(cache, VERSION)
    assert "return 1;" in (pristine / "target" / "ppc" / "helper.c").read_text()  # never patched


@needs_tools
def test_cold_check_configure_failure_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = _fake_qemu(monkeypatch, tmp_path, configure=CONFIGURE_NO_DISTLIB)
    with pytest.raises(SetupError) as err:
        qemubuild.check_cold_build(cache)
    log_file = cache / "qemu" / "cold-check.log"
    assert str(err.value) == (
        "QEMU cold check: qemu configure failed (exit 1): found no usable distlib, please install it "
        f"(full output: {log_file})"
    )
    assert "*** Ouch! ***" in log_file.read_text()
    assert "qemu: configure: FAILED in" in capsys.readouterr().out
    assert list((tmp_path / "tmp").iterdir()) == []


@needs_tools
def test_cold_check_compile_failure_names_ninja_and_the_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache = _fake_qemu(monkeypatch, tmp_path, patch=PATCH_BREAKS_BUILD)
    with pytest.raises(SetupError) as err:
        qemubuild.check_cold_build(cache)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("QEMU cold check: qemu ninja failed (exit 1): ../target/ppc/helper.c:1:")
    assert "error:" in message and "nosuch" in message
    assert list((tmp_path / "tmp").iterdir()) == []


@needs_tools
def test_cold_check_patch_that_does_not_apply(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cache = _fake_qemu(monkeypatch, tmp_path, patch=PATCH_OK.replace("return 1;", "return 7;"))
    with pytest.raises(
        SetupError, match=r"^QEMU cold check: qemu: patch 0001-target-ppc-helper\.patch does not apply"
    ):
        qemubuild.check_cold_build(cache)
    assert list((tmp_path / "tmp").iterdir()) == []


def _setup_steps_recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Every `lab setup` step but the cold check replaced by a recorder."""
    ran: list[str] = []
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(apt, "os_codename", lambda: "bookworm")
    monkeypatch.setattr(apt, "ensure_apt", lambda codename: ran.append("apt"))
    monkeypatch.setattr(piptools, "ensure_pip_build_tools", lambda: ran.append("pip"))
    monkeypatch.setattr(kernels, "private_apt", lambda cache, names: None)

    def kernel(cache: Path, name: str, kapt: object) -> object:
        return type("Manifest", (), {"package": "linux-image", "version": "1", "vmlinux": "vmlinux"})()

    monkeypatch.setattr(kernels, "ensure_kernel", kernel)
    monkeypatch.setattr(
        qemubuild, "ensure_patched_qemu", lambda cache, force: ran.append("qemu") or Path("q")
    )
    monkeypatch.setattr(labsetup, "ensure_guest_programs", lambda cache: None)
    monkeypatch.setattr(qemubuild, "check_cold_build", lambda cache: ran.append("cold") or 1.0)
    return ran


def test_setup_check_cold_runs_last_unless_qemu_was_just_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran = _setup_steps_recorded(monkeypatch, tmp_path)
    cached = tmp_path / "cached" / "qemu-system-ppc64"
    cached.parent.mkdir()
    cached.write_text("")
    monkeypatch.setattr(qemubuild, "patched_qemu_path", lambda cache: cached)
    assert labsetup.setup(build_plugin=False, check_cold=True) == 0
    assert ran == ["apt", "pip", "qemu", "cold"]
    ran.clear()
    assert labsetup.setup(build_plugin=False) == 0
    assert "cold" not in ran
    ran.clear()
    cached.unlink()  # setup builds QEMU from scratch: that was the cold path itself
    assert labsetup.setup(build_plugin=False, check_cold=True) == 0
    assert ran == ["apt", "pip", "qemu"]
    ran.clear()
    assert labsetup.setup(build_qemu=False, build_plugin=False, check_cold=True) == 0
    assert ran == ["apt", "pip", "cold"]


@needs_tools
def test_cli_check_cold_failure_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = _fake_qemu(monkeypatch, tmp_path, configure=CONFIGURE_NO_DISTLIB)
    ran = _setup_steps_recorded(monkeypatch, tmp_path)
    monkeypatch.setattr(qemubuild, "check_cold_build", REAL_CHECK_COLD_BUILD)
    assert cli.main(["lab", "setup", "--check-cold", "--no-qemu-build", "--no-plugin-build"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "pyvcore lab setup: QEMU cold check: qemu configure failed (exit 1): "
        f"found no usable distlib, please install it (full output: {cache / 'qemu' / 'cold-check.log'})"
    ]
    assert "[lab setup] QEMU cold check: FAILED in" in captured.out
    assert ran == ["apt", "pip"]


def test_failure_line_picks_the_reason() -> None:
    mkvenv = "mkvenv: checking for meson>=1.5.0\n\n*** Ouch! ***\n\nfound no usable distlib \n\n\nexit 1\n"
    assert qemubuild.failure_line(mkvenv) == "found no usable distlib"
    configure = "Using './build' as the directory\n\nERROR: glib-2.66 gthread-2.66 is required\n\n"
    assert qemubuild.failure_line(configure) == "ERROR: glib-2.66 gthread-2.66 is required"
    meson = 'Program python3 found: YES\n../meson.build:2034:10: ERROR: Dependency "fdt" not found\n'
    assert qemubuild.failure_line(meson) == '../meson.build:2034:10: ERROR: Dependency "fdt" not found'
    ninja = (
        "[1/3] Compiling C object a.o\nFAILED: a.o\ncc -c ../a.c\n"
        "../a.c:3:12: error: 'x' undeclared\n    3 | return x;\nninja: build stopped: subcommand failed.\n"
    )
    assert qemubuild.failure_line(ninja) == "../a.c:3:12: error: 'x' undeclared"
    assert qemubuild.failure_line("E: Unable to find a source package for qemu\n") == (
        "E: Unable to find a source package for qemu"
    )
    assert qemubuild.failure_line("x\nlast words\n") == "last words"
    assert qemubuild.failure_line("") == "no output"


def test_objects_of_reads_compile_commands(tmp_path: Path) -> None:
    build = tmp_path / "src" / "build"
    build.mkdir(parents=True)
    entries = [
        {
            "directory": str(build),
            "file": "../target/ppc/misc_helper.c",
            "output": "lib.a.p/target_ppc_misc_helper.c.o",
        },
        {
            "directory": str(build),
            "file": "../target/ppc/translate.c",
            "output": "lib.a.p/target_ppc_translate.c.o",
        },
        {
            "directory": str(tmp_path / "src"),
            "file": "target/ppc/gdbstub.c",
            "output": "lib.a.p/target_ppc_gdbstub.c.o",
        },
    ]
    (build / "compile_commands.json").write_text(json.dumps(entries))
    wanted = ["target/ppc/misc_helper.c", "target/ppc/cpu.h", "target/ppc/gdbstub.c"]
    assert qemubuild.objects_of(build, wanted) == [
        "lib.a.p/target_ppc_misc_helper.c.o",
        "lib.a.p/target_ppc_gdbstub.c.o",
    ]
    (build / "compile_commands.json").write_text("[")
    with pytest.raises(SetupError, match=r"configure left no usable .*compile_commands\.json"):
        qemubuild.objects_of(build, wanted)


def test_patched_files_of_the_lab_series() -> None:
    """The lab's own patches change C files of target/ppc that the cold check compiles."""
    files = qemubuild.patched_files(qemubuild.qemu_patches())
    assert files, "the lab has QEMU patches"
    assert all(name.startswith("target/ppc/") for name in files)
    assert any(name.endswith(".c") for name in files)
    assert len(files) == len(set(files))
