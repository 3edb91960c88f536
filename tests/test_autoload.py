"""`pyvcore gdb --write-autoload` never overwrites or writes through what is there.

In a kernel build tree ``vmlinux-gdb.py`` is the symlink to scripts/gdb's own
loader, tracked by git: it must survive, and the user is told how to chain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import elfcraft
import pytest

from pyvcore.gdbcli import AutoloadExists, plugin_entry, write_autoload


def _vmlinux(tmp_path: Path) -> Path:
    return elfcraft.write_vmlinux(tmp_path / "vmlinux")  # `pyvcore gdb --vmlinux` checks it is a kernel


def test_fresh_script_is_written(tmp_path: Path):
    script = write_autoload(_vmlinux(tmp_path))
    assert script == tmp_path / "vmlinux-gdb.py"
    assert str(plugin_entry()) in script.read_text()


def test_existing_file_is_left_alone(tmp_path: Path):
    vmlinux = _vmlinux(tmp_path)
    script = tmp_path / "vmlinux-gdb.py"
    script.write_text("# the user's own loader\n")
    with pytest.raises(AutoloadExists, match="already exists \\(a file\\)") as e:
        write_autoload(vmlinux)
    assert script.read_text() == "# the user's own loader\n"
    assert f'runpy.run_path("{plugin_entry()}"' in str(e.value)
    assert f"source {plugin_entry()}" in str(e.value)


def test_symlink_to_the_kernels_loader_is_neither_followed_nor_replaced(tmp_path: Path):
    vmlinux = _vmlinux(tmp_path)
    target = tmp_path / "scripts" / "gdb" / "vmlinux-gdb.py"
    target.parent.mkdir(parents=True)
    target.write_text("# scripts/gdb loader\n")
    link = tmp_path / "vmlinux-gdb.py"
    link.symlink_to(target)
    with pytest.raises(AutoloadExists, match=f"a symlink to {target}"):
        write_autoload(vmlinux)
    assert link.is_symlink() and target.read_text() == "# scripts/gdb loader\n"


def test_dangling_symlink_is_not_written_through(tmp_path: Path):
    vmlinux = _vmlinux(tmp_path)
    link = tmp_path / "vmlinux-gdb.py"
    link.symlink_to(tmp_path / "elsewhere.py")
    with pytest.raises(AutoloadExists):
        write_autoload(vmlinux)
    assert not (tmp_path / "elsewhere.py").exists()


def test_cli_exits_2_with_the_chaining_hint(tmp_path: Path):
    vmlinux = _vmlinux(tmp_path)
    (tmp_path / "vmlinux-gdb.py").write_text("# mine\n")
    out = subprocess.run(
        [sys.executable, "-m", "pyvcore", "gdb", "--vmlinux", str(vmlinux), "--write-autoload"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out
    assert "already exists (a file)" in out.stderr and "Traceback" not in out.stderr
    assert (tmp_path / "vmlinux-gdb.py").read_text() == "# mine\n"
