"""`pyvcore lab setup`'s closing summary: every step it ran, with its time, and "cached"
for a step that found everything done (no apt, network or build: each step is replaced
by a recorder that does or does not run a command)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from test_lab_setup import _quiet_setup

from pyvcore.cli import main
from pyvcore.lab import piptools, plugin_build, qemubuild
from pyvcore.lab.steps import run

SUMMARY_LINE = re.compile(r"^\[lab setup\]   (\S.*?)\s+(\d+\.\d) s(?:  (.+))?$")


def summary(out: str) -> dict[str, str]:
    """step name -> its state ("" when it did something) from the lines after "all done"."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("[lab setup] all done in "))
    found = {}
    for line in lines[start + 1 :]:
        match = SUMMARY_LINE.match(line)
        if not match:
            break
        found[match.group(1)] = match.group(3) or ""
    return found


def started(out: str) -> list[str]:
    """The steps the run announced ("[lab setup] NAME ..."), in order."""
    return [m.group(1) for m in re.finditer(r"^\[lab setup\] (.+) \.\.\.$", out, re.M)]


def test_every_step_run_is_in_the_summary_cached_or_not(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _quiet_setup(monkeypatch, tmp_path)
    monkeypatch.setattr(plugin_build, "ensure_plugin", lambda **kw: tmp_path / "plugin.so")
    assert main(["lab", "setup"]) == 0
    out = capsys.readouterr().out
    steps = summary(out)
    assert list(steps) == started(out) and len(steps) == 7, out
    assert set(steps.values()) == {"cached"}  # the recorders did nothing
    # A step that runs a command is not cached; the others still are.
    monkeypatch.setattr(piptools, "ensure_pip_build_tools", lambda: run([sys.executable, "-c", "pass"]))
    assert main(["lab", "setup"]) == 0
    steps = summary(capsys.readouterr().out)
    assert steps["pip build tools"] == "" and steps["apt packages"] == "cached" and len(steps) == 7


def test_the_cold_check_is_listed_run_or_skipped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _quiet_setup(monkeypatch, tmp_path)
    monkeypatch.setattr(plugin_build, "ensure_plugin", lambda **kw: tmp_path / "plugin.so")
    monkeypatch.setattr(qemubuild, "check_cold_build", lambda cache: 1.0)
    monkeypatch.setattr(qemubuild, "patched_qemu_path", lambda cache: tmp_path / "qemu-system-ppc64")
    (tmp_path / "qemu-system-ppc64").write_text("")  # cached: the cold check runs
    assert main(["lab", "setup", "--check-cold", "--no-plugin-build"]) == 0
    out = capsys.readouterr().out
    steps = summary(out)
    assert list(steps) == started(out) and "QEMU trace plugin" not in steps
    assert steps["QEMU cold check"] == ""  # it did its work
    (tmp_path / "qemu-system-ppc64").unlink()  # built now: the check is skipped, and says so
    assert main(["lab", "setup", "--check-cold"]) == 0
    steps = summary(capsys.readouterr().out)
    assert steps["QEMU cold check"] == "skipped: the patched QEMU was just built from scratch"


def test_pip_build_tools_only_when_qemu_is_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """meson, pycotap and distlib serve QEMU's configure alone: with QEMU cached nothing is
    pip-installed; a QEMU to build, --rebuild-qemu or --check-cold installs them."""
    ran = _quiet_setup(monkeypatch, tmp_path)
    monkeypatch.setattr(plugin_build, "ensure_plugin", lambda **kw: tmp_path / "plugin.so")
    monkeypatch.setattr(qemubuild, "check_cold_build", lambda cache: 1.0)
    monkeypatch.setattr(qemubuild, "patched_qemu_path", lambda cache: tmp_path / "qemu-system-ppc64")
    (tmp_path / "qemu-system-ppc64").write_text("")
    assert main(["lab", "setup"]) == 0
    assert "pip" not in ran
    assert summary(capsys.readouterr().out)["pip build tools"] == "skipped: no QEMU build to configure"
    for args in (["--rebuild-qemu"], ["--check-cold", "--no-qemu-build"]):
        ran.clear()
        assert main(["lab", "setup", *args]) == 0
        assert "pip" in ran, args
    (tmp_path / "qemu-system-ppc64").unlink()  # not built yet: configure will run
    ran.clear()
    assert main(["lab", "setup"]) == 0
    assert "pip" in ran
    ran.clear()
    assert main(["lab", "setup", "--no-qemu-build"]) == 0
    assert "pip" not in ran
