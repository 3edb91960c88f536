"""The QEMU plugin's cache: keyed by the files the build reads (cargo's dep-info), one
shared target directory, the newest builds kept. A fake `cargo` on PATH stands in for the
Rust build: it writes the plugin and a dep-info file naming what a real build reads."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from pyvcore.lab import plugin_build
from pyvcore.lab.plugin_build import (
    PLUGIN_NAME,
    cached_plugin,
    dep_info_inputs,
    ensure_plugin,
    plugin_key,
    prune,
    source_root,
)
from pyvcore.lab.qemu import LabError

# What a release build of pyvcore-plugin reads: lib sources, not the #[cfg(test)] modules.
READ = ["rust/core/src/lib.rs", "rust/core/src/shadow/mod.rs", "rust/plugin/src/lib.rs"]
NOT_READ = ["rust/core/src/shadow/tests_settle.rs", "rust/core/examples/demo.rs", "pyvcore/trace.py"]

FAKE_CARGO = """#!/bin/sh
# cargo build --release --locked -p pyvcore-plugin, as far as the cache can tell
echo "$PWD" >> "$CARGO_TARGET_DIR/../cargo-calls"
mkdir -p "$CARGO_TARGET_DIR/release"
cat rust/plugin/src/lib.rs > "$CARGO_TARGET_DIR/release/libpyvcore_plugin.so"
printf '%s: %s %s %s /root/.cargo/registry/src/x/serde-1.0/src/lib.rs\\n' \\
  "$CARGO_TARGET_DIR/release/libpyvcore_plugin.so" \\
  "$PWD/rust/core/src/lib.rs" "$PWD/rust/core/src/shadow/mod.rs" "$PWD/rust/plugin/src/lib.rs" \\
  > "$CARGO_TARGET_DIR/release/libpyvcore_plugin.d"
"""


def checkout(root: Path) -> Path:
    for rel in [*plugin_build.MANIFESTS, *READ, *NOT_READ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"// {rel}\n")
    return root


@pytest.fixture
def cargo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake cargo on PATH and an empty cache; returns the cache's plugin directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cargo").write_text(FAKE_CARGO)
    (bin_dir / "cargo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "pyvcore" / "plugin"


def calls(plugin_dir: Path) -> list[str]:
    path = plugin_dir / "cargo-calls"
    return path.read_text().split() if path.exists() else []


def test_dep_info_names_the_checkouts_files_and_the_manifests(tmp_path: Path) -> None:
    root = checkout(tmp_path / "src")
    dep = tmp_path / "x.d"
    spaced = root / "rust/core/src/a b.rs"
    spaced.write_text("")
    dep.write_text(
        f"/t/release/libpyvcore_plugin.so: {root}/rust/core/src/lib.rs {str(spaced).replace(' ', chr(92) + ' ')}"
        " /root/.cargo/registry/src/x/serde/src/lib.rs\n"
    )
    assert dep_info_inputs(dep, root) == sorted(
        [*plugin_build.MANIFESTS, "rust/core/src/lib.rs", "rust/core/src/a b.rs"]
    )


def test_built_once_then_found_and_unread_files_do_not_rebuild(cargo: Path, tmp_path: Path) -> None:
    root = checkout(tmp_path / "src")
    built = ensure_plugin(root=root)
    assert built.parent.parent == cargo / "builds" and built.read_text() == "// rust/plugin/src/lib.rs\n"
    assert (built.parent / "inputs.txt").read_text().split() == sorted([*plugin_build.MANIFESTS, *READ])
    assert ensure_plugin(root=root) == built and len(calls(cargo)) == 1
    for rel in NOT_READ:  # a test module, an example, Python: not what the plugin is built from
        (root / rel).write_text("// changed\n")
    assert ensure_plugin(root=root) == built and len(calls(cargo)) == 1
    for rel in ["rust/core/src/shadow/mod.rs", "Cargo.lock"]:
        (root / rel).write_text("// changed\n")
        rebuilt = ensure_plugin(root=root)
        assert rebuilt != built and rebuilt.is_file()
        built = rebuilt
    assert len(calls(cargo)) == 3
    assert [p.name for p in cargo.iterdir() if p.name.startswith("target")] == ["target"]


def test_another_checkout_with_the_same_sources_reuses_the_build(cargo: Path, tmp_path: Path) -> None:
    first = ensure_plugin(root=checkout(tmp_path / "one"))
    assert ensure_plugin(root=checkout(tmp_path / "two")) == first
    assert calls(cargo) == [str(tmp_path / "one")]


def test_the_newest_builds_are_kept(cargo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin_build, "BUILDS_KEPT", 2)
    root = checkout(tmp_path / "src")
    builds = []
    for n in range(3):
        (root / "rust/plugin/src/lib.rs").write_text(f"// version {n}\n")
        builds.append(ensure_plugin(root=root))
        time.sleep(0.01)
    assert [b.is_file() for b in builds] == [False, True, True]
    # A hit counts as a use: version 1 is used again, so version 2 goes when 3 comes.
    (root / "rust/plugin/src/lib.rs").write_text("// version 1\n")
    assert ensure_plugin(root=root) == builds[1]
    time.sleep(0.01)
    (root / "rust/plugin/src/lib.rs").write_text("// version 3\n")
    ensure_plugin(root=root)
    assert builds[1].is_file() and not builds[2].is_file()


def test_the_older_layout_is_pruned_once_unused(cargo: Path, tmp_path: Path) -> None:
    """<cache>/plugin/<key>/ and target-<checkout>/ of earlier versions: gone after an hour."""
    old_build = cargo / "0123456789abcdef" / PLUGIN_NAME
    old_target = cargo / "target-0123456789ab" / "release"
    for d in (old_build.parent, old_target):
        d.mkdir(parents=True)
    old_build.write_text("so")
    recent = cargo / "fedcba9876543210"
    recent.mkdir()
    now = time.time()
    for path in (old_build.parent, old_build, old_target):
        os.utime(path, (now - 7200, now - 7200))
    removed = prune(cargo.parent, now=now)
    assert sorted(p.name for p in removed) == ["0123456789abcdef", "target-0123456789ab"]
    assert recent.is_dir()


def test_a_cache_hit_prunes_too(cargo: Path, tmp_path: Path) -> None:
    root = checkout(tmp_path / "src")
    built = ensure_plugin(root=root)
    old = cargo / "0123456789abcdef"
    old.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert ensure_plugin(root=root) == built and not old.exists()


def test_cache_lookup_of_the_real_checkout(cargo: Path) -> None:
    """The real sources: a build recorded with today's inputs is found; a key over a file
    the checkout does not have is not."""
    root = source_root()
    inputs = [*plugin_build.MANIFESTS, "rust/core/src/lib.rs", "rust/plugin/src/lib.rs"]
    key = plugin_key(root, inputs)
    assert key is not None and plugin_key(root, [*inputs, "rust/core/src/nothing.rs"]) is None
    build = cargo / "builds" / key
    build.mkdir(parents=True)
    (build / PLUGIN_NAME).write_text("so")
    (build / "inputs.txt").write_text("\n".join(inputs) + "\n")
    assert cached_plugin(root) == build / PLUGIN_NAME


def test_no_plugin_source_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="rust/plugin"):
        ensure_plugin(root=tmp_path)


def test_a_failing_build_is_one_error(cargo: Path, tmp_path: Path) -> None:
    (cargo.parent.parent.parent / "bin" / "cargo").write_text(
        "#!/bin/sh\necho 'error[E0425]: nope' >&2\nexit 101\n"
    )
    with pytest.raises(LabError, match=r"building the QEMU plugin failed") as e:
        ensure_plugin(root=checkout(tmp_path / "src"))
    assert "E0425" in (e.value.detail or "")
    assert not (cargo / "builds").exists() or not any((cargo / "builds").iterdir())
    shutil.rmtree(tmp_path / "src")
