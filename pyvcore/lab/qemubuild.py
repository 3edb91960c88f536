"""`lab setup`'s QEMU step: Debian's qemu source with the lab's patches, built and cached.

The patched ``qemu-system-ppc64`` is built from the same source package version as the
installed stock QEMU, so the two differ only by the patches in ``pyvcore/lab/qemu-patches``.
It is cached under ``qemu/<key>/`` with key = hash(patches in order, source version,
configure arguments): a change to any of them builds from scratch. Between such changes,
:func:`check_cold_build` (``pyvcore lab setup --check-cold``) reruns the build's cold path
(source, patches, configure, a few real compiles and a link) in a temporary directory.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from pyvcore.lab.cache import qemu_build_key, qemu_patches
from pyvcore.lab.steps import SetupError, Step, indent, log, run

__all__ = [
    "QEMU_CONFIGURE_ARGS",
    "BuildStepError",
    "SetupError",
    "check_cold_build",
    "ensure_patched_qemu",
    "patched_qemu_path",
]

QEMU_CONFIGURE_ARGS = (
    "--target-list=ppc64-softmmu",
    "--without-default-features",
    "--disable-docs",
    "--enable-fdt=system",
    "--disable-install-blobs",
    # TCG plugins (``-plugin``): the continuous trace loads its plugin into this QEMU.
    "--enable-plugins",
)


def qemu_source_version() -> str:
    """Version of Debian's qemu source package the installed stock QEMU was built from."""
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${source:Version}", "qemu-system-ppc"], capture_output=True, text=True
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SetupError("qemu-system-ppc is not installed: run `pyvcore lab setup` (apt step) first")
    return proc.stdout.strip()


def patched_qemu_path(cache: Path, source_version: str | None = None) -> Path:
    """Where the patched qemu-system-ppc64 for the current patch series lives."""
    key = qemu_build_key(qemu_patches(), source_version or qemu_source_version(), QEMU_CONFIGURE_ARGS)
    return cache / "qemu" / key / "qemu-system-ppc64"


def pristine_dir(cache: Path, version: str) -> Path:
    """Where Debian's unpatched qemu source of ``version`` is kept."""
    return cache / "qemu-src" / version.replace(":", "_") / "pristine"


def upstream_version(version: str) -> str:
    """'1:10.0.2+ds-2+deb13u1~bpo12+1' -> '10.0.2+ds' (the orig tarball's version)."""
    without_epoch = version.split(":", 1)[-1]
    return without_epoch.rsplit("-", 1)[0]


def fetch_qemu_source(version: str, dest: Path) -> Path:
    """Debian's qemu source tree at ``dest``. Uses the full source package (with Debian's
    patches) when the mirror has it; falls back to the orig tarball alone, saying so."""
    if (dest / "configure").is_file():
        return dest
    downloads = dest.parent / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    status, output = run(
        ["apt-get", "source", "--download-only", "-q", f"qemu={version}"],
        cwd=downloads,
        echo=indent,
        check=False,
    )
    no_epoch = version.split(":", 1)[-1]
    dsc = downloads / f"qemu_{no_epoch}.dsc"
    orig = downloads / f"qemu_{upstream_version(version)}.orig.tar.xz"
    tmp = Path(tempfile.mkdtemp(prefix="src.", dir=dest.parent))
    try:
        if status == 0 and dsc.is_file():
            run(["dpkg-source", "--no-check", "-x", str(dsc), str(tmp / "src")], echo=None)
        elif orig.is_file():
            log(
                f"qemu: the mirror served only {orig.name} (not the .dsc/.debian.tar.xz); "
                "building upstream's source from that tarball without Debian's patch series"
            )
            run(["tar", "-xf", str(orig), "-C", str(tmp)])
            (top,) = [p for p in tmp.iterdir() if p.is_dir()]
            top.rename(tmp / "src")
        else:
            raise SetupError(f"apt-get source qemu={version} failed: {failure_line(output)}")
        (tmp / "src").rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


class NinjaProgress:
    """Echo for ninja's output: its [N/M] progress about every 10 %, and error lines."""

    def __init__(self) -> None:
        self.step = -1

    def __call__(self, line: str) -> None:
        match = re.match(r"\[(\d+)/(\d+)\]", line)
        if match:
            done, total = int(match.group(1)), int(match.group(2))
            step = int(10 * done / total)
            if step > self.step or done == total:
                self.step = step
                indent(f"ninja {done}/{total}")
        elif "error" in line.lower():
            indent(line)


def patched_source(pristine: Path, patches: Sequence[Path], src: Path) -> Path:
    """A private copy of ``pristine`` at ``src`` with ``patches`` applied in order (the
    pristine tree is never patched, so every build starts from the same source).
    SetupError (one line) when the copy fails or a patch does not apply."""
    try:
        shutil.copytree(pristine, src, symlinks=True)
    except (OSError, shutil.Error) as err:
        raise SetupError(f"qemu: cannot copy the source {pristine} to {src}: {err}") from None
    for patch in patches:
        status, out = run(
            ["patch", "-p1", "--forward", "--batch", "-i", str(patch)], cwd=src, echo=indent, check=False
        )
        if status != 0:
            raise SetupError(f"qemu: patch {patch.name} does not apply (exit {status}): {failure_line(out)}")
    return src


def patched_files(patches: Sequence[Path]) -> list[str]:
    """The files the patches change, relative to the source tree (their ``+++ b/...`` lines)."""
    files: list[str] = []
    for patch in patches:
        for line in patch.read_text(errors="replace").splitlines():
            match = re.match(r"\+\+\+ b/(\S+)", line)
            if match and match.group(1) not in files:
                files.append(match.group(1))
    return files


def objects_of(build: Path, sources: Sequence[str]) -> list[str]:
    """The ninja targets of the objects compiled from ``sources`` (paths relative to the
    source tree, which is ``build``'s parent), from meson's ``compile_commands.json``."""
    src = build.parent.resolve()
    wanted = {(src / name).resolve() for name in sources}
    try:
        commands = json.loads((build / "compile_commands.json").read_text())
    except (OSError, ValueError) as err:
        raise SetupError(f"qemu: configure left no usable {build / 'compile_commands.json'}: {err}") from None
    return [
        entry["output"]
        for entry in commands
        if (Path(entry["directory"]) / entry["file"]).resolve() in wanted and "output" in entry
    ]


class BuildStepError(SetupError):
    """A QEMU build step (configure, ninja) failed: one line naming the step, the line of
    its output that says why, and the log that has all of it."""

    def __init__(self, step: str, status: int, output: str, log_file: Path) -> None:
        self.step = step
        super().__init__(
            f"qemu {step} failed (exit {status}): {failure_line(output)} (full output: {log_file})"
        )


def failure_line(output: str) -> str:
    """The line of a failed configure or ninja run that says why, else its last line.

    In order: what follows QEMU's mkvenv ``*** Ouch! ***`` (python/scripts/mkvenv.py, e.g.
    "found no usable distlib, please install it"), the first ``ERROR:`` line (configure's
    error_exit, meson), the first compiler or linker ``error:`` line, ninja's ``FAILED:``,
    apt's ``E:``."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for i, line in enumerate(lines[:-1]):
        if line == "*** Ouch! ***":
            return lines[i + 1][:400]
    for pattern in (r"\bERROR:", r"\berror:", r"^FAILED:", r"^E: "):
        for line in lines:
            if re.search(pattern, line):
                return line[:400]
    return lines[-1][:400] if lines else "no output"


def configure(src: Path, log_file: Path) -> Path:
    """Run QEMU's ``configure`` in the new directory ``src/build`` with the lab's options
    (:data:`QEMU_CONFIGURE_ARGS`) and this interpreter as its Python (the one the pip step
    installed meson, pycotap and distlib into); its output goes to ``log_file``. Returns the
    build directory; BuildStepError when configure fails."""
    build = src / "build"
    build.mkdir()
    with Step("qemu: configure"):
        status, out = run(
            ["../configure", f"--python={sys.executable}", *QEMU_CONFIGURE_ARGS], cwd=build, check=False
        )
        log_file.write_text(out)
        if status != 0:
            raise BuildStepError("configure", status, out, log_file)
    return build


def ninja(build: Path, targets: Sequence[str], log_file: Path) -> None:
    """``ninja TARGET...`` in a configured build directory, progress echoed, output appended
    to ``log_file``; BuildStepError when it fails."""
    with Step(f"qemu: ninja {' '.join(targets)}"):
        status, out = run(["ninja", *targets], cwd=build, echo=NinjaProgress(), check=False)
        with open(log_file, "a") as fh:
            fh.write(out)
        if status != 0:
            raise BuildStepError("ninja", status, out, log_file)


def ensure_patched_qemu(cache: Path, *, force: bool = False) -> Path:
    """The patched qemu-system-ppc64, built now unless cached (about 3.5 minutes on 2 idle cores)."""
    version = qemu_source_version()
    patches = qemu_patches()
    key = qemu_build_key(patches, version, QEMU_CONFIGURE_ARGS)
    out_dir = cache / "qemu" / key
    binary = out_dir / "qemu-system-ppc64"
    if binary.is_file() and not force:
        log(f"qemu: patched build {key} cached ({binary})")
        return binary
    log(f"qemu: building {version} with {len(patches)} patch(es): " + ", ".join(p.name for p in patches))
    pristine = fetch_qemu_source(version, pristine_dir(cache, version))
    work = out_dir / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    src = patched_source(pristine, patches, work / "src")
    log_file = out_dir / "build.log"
    started = time.monotonic()
    build = configure(src, log_file)
    ninja(build, ["qemu-system-ppc64"], log_file)
    tmp_binary = out_dir / "qemu-system-ppc64.tmp"
    shutil.copy2(build / "qemu-system-ppc64", tmp_binary)
    tmp_binary.replace(binary)
    meta = {
        "source_version": version,
        "patches": [p.name for p in patches],
        "configure": list(QEMU_CONFIGURE_ARGS),
        "key": key,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (out_dir / "build.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    log(f"qemu: patched build {key} at {binary} in {meta['build_seconds']} s")
    return binary


# A TCG plugin compiled and linked against QEMU's plugin API: what ``--enable-plugins`` is
# in the build for (``pyvcore trace`` loads its plugin into this QEMU), and a real link.
COLD_CHECK_TARGETS = ("tests/tcg/plugins/libempty.so",)


def check_cold_build(cache: Path) -> float:
    """Run the QEMU build's cold path without the full build; returns the seconds it took.

    The cached patched QEMU hides a broken toolchain, pip state (meson, distlib) or
    configure, so this redoes what :func:`ensure_patched_qemu` does on an empty cache, in a
    fresh temporary directory that is removed afterwards: copy Debian's source (the
    pristine tree under the cache, fetched first if missing), apply the patches, run
    configure (same function and options), then ``ninja`` the objects of the C files the
    patches change (which also runs every generator they depend on: QAPI, tracetool,
    decodetree, keymaps) and :data:`COLD_CHECK_TARGETS`. The full output is in
    ``<cache>/qemu/cold-check.log``. Raises SetupError, one line naming the failed step."""
    started = time.monotonic()
    version = qemu_source_version()
    patches = qemu_patches()
    log(f"qemu: source {version}, {len(patches)} patch(es)")
    log_file = cache / "qemu" / "cold-check.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="pyvcore-qemu-cold."))
    try:
        pristine = fetch_qemu_source(version, pristine_dir(cache, version))
        with Step(f"qemu: copy {version} source to {tmp}, apply {len(patches)} patch(es)"):
            src = patched_source(pristine, patches, tmp / "src")
        build = configure(src, log_file)
        ninja(build, [*objects_of(build, patched_files(patches)), *COLD_CHECK_TARGETS], log_file)
    except SetupError as err:
        raise SetupError(f"QEMU cold check: {err}") from None
    finally:
        with Step(f"qemu: remove {tmp}"):
            shutil.rmtree(tmp, ignore_errors=True)
    took = time.monotonic() - started
    log(f"qemu: cold path (source, patches, configure, ninja) passed in {took:.1f} s")
    return took
