"""`pyvcore lab setup`: everything the lab needs, installed or built once and cached.

Steps (each timed and skipped when already done):

1. apt (root): the bookworm-backports source (deb + deb-src), the ppc64el foreign
   architecture, QEMU 10 from backports, gdb-multiarch, the ppc64el cross compiler, cpio,
   xz, dwarves and QEMU's build dependencies. Skipped when all are present; without root
   it prints the exact commands to run and stops.
2. pip: meson and pycotap for QEMU's configure (Debian's dfsg tarball lacks the wheels).
3. kernel: the newest ``linux-image-6.12*-powerpc64le:ppc64el`` and ``busybox-static:ppc64el``,
   resolved with apt-cache now (never a pinned ABI name), fetched with ``apt-get download``,
   unpacked with ``dpkg-deb -x``; kvm.ko and kvm-hv.ko decompressed.
4. QEMU: Debian's qemu source (``apt-get source``) with our patches from
   ``pyvcore/lab/qemu-patches/`` applied in sorted order, ``qemu-system-ppc64`` built and
   cached under a key of (patches, source version).
5. guest programs: :func:`pyvcore.lab.guest.build_guest_programs`.
"""

from __future__ import annotations

import functools
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pyvcore.lab.cache import KernelManifest, cache_dir, qemu_build_key, qemu_patches

KERNEL_SERIES = "6.12"
FOREIGN_ARCH = "ppc64el"
CROSS_CC = "powerpc64le-linux-gnu-gcc"
STOCK_QEMU = Path("/usr/bin/qemu-system-ppc64")
QEMU_DATA_DIR = Path("/usr/share/qemu")
# bookworm's own QEMU (7.2) segfaults on powernv8 with more than one thread per core.
MIN_QEMU_VERSION = "1:10"
BACKPORTS_SOURCES_FILE = Path("/etc/apt/sources.list.d/pyvcore-backports.sources")
DEBIAN_SOURCES_FILE = Path("/etc/apt/sources.list.d/debian.sources")

BACKPORTS_PACKAGES = ("qemu-system-ppc", "qemu-system-data")
PACKAGES = (
    "gdb-multiarch",
    "gcc-powerpc64le-linux-gnu",
    "libc6-dev-ppc64el-cross",
    "cpio",
    "xz-utils",
    "dwarves",
    "dpkg-dev",  # dpkg-source, for apt-get source
)
QEMU_BUILD_DEPS = (
    "build-essential",
    "pkg-config",
    "libglib2.0-dev",
    "libfdt-dev",
    "libpixman-1-dev",
    "zlib1g-dev",
    "flex",
    "bison",
    "ninja-build",
    "patch",
)
# The dfsg source tarball has no python/wheels/, so QEMU's configure needs these from pip.
PIP_BUILD_PACKAGES = {"meson": "1.5.2", "pycotap": "1.3.1"}
QEMU_CONFIGURE_ARGS = (
    "--target-list=ppc64-softmmu",
    "--without-default-features",
    "--disable-docs",
    "--enable-fdt=system",
    "--disable-install-blobs",
)


class SetupError(RuntimeError):
    """A setup step failed; the message says which and what to do."""


# --------------------------------------------------------------------------- helpers


def log(message: str) -> None:
    print(f"[lab setup] {message}", flush=True)


@dataclass
class Step:
    """Prints a step's start and its duration when it ends."""

    name: str

    def __enter__(self) -> Step:
        self.start = time.monotonic()
        log(f"{self.name} ...")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        took = time.monotonic() - self.start
        state = "done" if exc_type is None else "FAILED"
        log(f"{self.name}: {state} in {took:.1f} s")


def run(
    cmd: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    echo: Callable[[str], None] | None = None,
    check: bool = True,
) -> tuple[int, str]:
    """Run a command, streaming its output lines to ``echo``; returns (status, output)."""
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if echo:
            echo(line.rstrip("\n"))
    status = proc.wait()
    output = "".join(lines)
    if check and status != 0:
        tail = "\n".join(output.rstrip().splitlines()[-15:])
        raise SetupError(f"command failed (exit {status}): {' '.join(cmd)}\n{tail}")
    return status, output


def indent(line: str) -> None:
    print(f"    {line}", flush=True)


def is_root() -> bool:
    return os.geteuid() == 0


def dpkg_installed_version(package: str) -> str | None:
    """Installed version of a package (``name`` or ``name:arch``), or None."""
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev}|${Version}", package],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return None
    status, _, version = proc.stdout.partition("|")
    return version if status.startswith("ii") else None


def version_ge(a: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, "ge", b]).returncode == 0


def version_cmp(a: str, b: str) -> int:
    if a == b:
        return 0
    return 1 if subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0 else -1


def os_codename() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "bookworm"
    match = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.M)
    return match.group(1) if match else "bookworm"


# --------------------------------------------------------------------------- 1. apt


def parse_deb822(text: str) -> list[dict[str, str]]:
    """Stanzas of a deb822 file (comments dropped, continuation lines joined)."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
            continue
        if raw[0] in " \t" and key:
            current[key] += "\n" + raw.strip()
            continue
        key, _, value = raw.partition(":")
        key = key.strip()
        current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def backports_source(debian_sources: str, codename: str) -> str:
    """A deb822 stanza for ``<codename>-backports`` (deb + deb-src) using the same mirror
    and Signed-By as the stanza of the system's main archive."""
    main = None
    for stanza in parse_deb822(debian_sources):
        if codename in stanza.get("Suites", "").split():
            main = stanza
            break
    if main is None:
        raise SetupError(
            f"no '{codename}' stanza in {DEBIAN_SOURCES_FILE}: cannot derive the backports mirror"
        )
    lines = [
        "Types: deb deb-src",
        f"URIs: {main['URIs']}",
        f"Suites: {codename}-backports",
        f"Components: {main.get('Components', 'main')}",
    ]
    if "Signed-By" in main:
        lines.append(f"Signed-By: {main['Signed-By']}")
    return "\n".join(lines) + "\n"


def backports_configured(codename: str) -> bool:
    """True when some apt source already has ``<codename>-backports`` with deb-src."""
    suite = f"{codename}-backports"
    files = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    has_deb = has_src = False
    for path in files:
        if path.suffix not in (".list", ".sources") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for stanza in parse_deb822(text):
                if suite in stanza.get("Suites", "").split() and stanza.get("Enabled", "yes") != "no":
                    types = stanza.get("Types", "").split()
                    has_deb |= "deb" in types
                    has_src |= "deb-src" in types
        else:
            for line in text.splitlines():
                words = line.split()
                if suite in words:
                    has_deb |= words[0] == "deb"
                    has_src |= words[0] == "deb-src"
    return has_deb and has_src


@dataclass
class AptPlan:
    """What apt work is missing; empty when everything is installed."""

    write_backports: str | None  # deb822 text to write, or None
    add_arch: bool
    backports_packages: list[str]
    packages: list[str]

    @property
    def empty(self) -> bool:
        return not (self.write_backports or self.add_arch or self.backports_packages or self.packages)

    def commands(self, codename: str) -> list[str]:
        """The shell commands a root user runs to carry the plan out."""
        cmds = []
        if self.write_backports:
            body = self.write_backports.rstrip("\n")
            cmds.append(f"cat > {BACKPORTS_SOURCES_FILE} <<'EOF'\n{body}\nEOF")
        if self.add_arch:
            cmds.append(f"dpkg --add-architecture {FOREIGN_ARCH}")
        if self.write_backports or self.add_arch or self.backports_packages or self.packages:
            cmds.append("apt-get update")
        if self.backports_packages:
            cmds.append(
                f"apt-get install -y --no-install-recommends -t {codename}-backports "
                + " ".join(self.backports_packages)
            )
        if self.packages:
            cmds.append("apt-get install -y --no-install-recommends " + " ".join(self.packages))
        return cmds


def plan_apt(codename: str) -> AptPlan:
    write_backports = None
    if not backports_configured(codename):
        try:
            debian_sources = DEBIAN_SOURCES_FILE.read_text()
        except OSError as err:
            raise SetupError(f"cannot read {DEBIAN_SOURCES_FILE}: {err}") from err
        write_backports = backports_source(debian_sources, codename)
    arches = subprocess.run(
        ["dpkg", "--print-foreign-architectures"], capture_output=True, text=True
    ).stdout.split()
    backports_missing = []
    for package in BACKPORTS_PACKAGES:
        version = dpkg_installed_version(package)
        if version is None or not version_ge(version, MIN_QEMU_VERSION):
            backports_missing.append(package)
    missing = [p for p in (*PACKAGES, *QEMU_BUILD_DEPS) if dpkg_installed_version(p) is None]
    return AptPlan(write_backports, FOREIGN_ARCH not in arches, backports_missing, missing)


# "libpcre2-dev : Depends: libpcre2-8-0 (= 10.42-1) but 10.42-1+deb12u1 is to be installed"
_EXACT_DEP = re.compile(r"Depends: (\S+) \(= ([^)]+)\) but (\S+) is to be installed")


def mirror_skew_pins(apt_output: str) -> list[str]:
    """``pkg=version`` pins that resolve apt's "Depends: X (= V) but W is to be installed":
    the machine has a newer X than the mirror's -dev packages were built against."""
    return sorted({f"{name}={version}" for name, version, _ in _EXACT_DEP.findall(apt_output)})


def apt_install(packages: Sequence[str], target_release: str | None = None) -> None:
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
    if target_release:
        cmd += ["-t", target_release]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    status, output = run([*cmd, *packages], env=env, echo=indent, check=False)
    if status == 0:
        return
    pins = mirror_skew_pins(output)
    if not pins:
        raise SetupError(f"apt-get install failed (exit {status}); see the output above")
    log(
        "apt: an installed library is newer than the mirror's matching -dev package; "
        f"installing the mirror's version instead: {' '.join(pins)}"
    )
    run([*cmd, "--allow-downgrades", *packages, *pins], env=env, echo=indent)


def apt_update(attempts: int = 2) -> None:
    """`apt-get update`, tolerating index files that fail to download.

    A mirror in mid-sync serves some index files with the wrong size (seen here:
    bookworm-security's ppc64el Packages, which the lab never uses). apt then
    exits 100 but keeps every other list, so retry once and otherwise go on: a
    package that really cannot be found fails the install step with its name.
    """
    for attempt in range(1, attempts + 1):
        status, output = run(["apt-get", "update", "-q"], echo=indent, check=False)
        if status == 0:
            return
        failed = [line for line in output.splitlines() if line.startswith("E: Failed to fetch")]
        if attempt < attempts:
            log(f"apt: `apt-get update` exited {status}; retrying in 5 s")
            time.sleep(5)
    log(
        f"apt: WARNING: `apt-get update` still exits {status} "
        f"({len(failed)} index file(s) failed, e.g. {failed[0][len('E: Failed to fetch ') :].split()[0] if failed else '?'}); "
        "going on with the lists apt has"
    )


def ensure_apt(codename: str) -> None:
    plan = plan_apt(codename)
    if plan.empty:
        log("apt: every package is already installed (skipping apt)")
        return
    if not is_root():
        commands = "\n".join(plan.commands(codename))
        raise SetupError(
            "apt packages are missing and installing them needs root. Run as root:\n\n"
            f"{commands}\n\nthen run `pyvcore lab setup` again."
        )
    if plan.write_backports:
        BACKPORTS_SOURCES_FILE.write_text(plan.write_backports)
        log(f"apt: wrote {BACKPORTS_SOURCES_FILE}")
    if plan.add_arch:
        run(["dpkg", "--add-architecture", FOREIGN_ARCH], echo=indent)
    apt_update()
    if plan.backports_packages:
        apt_install(plan.backports_packages, target_release=f"{codename}-backports")
    if plan.packages:
        apt_install(plan.packages)


# --------------------------------------------------------------------------- 2. pip


def ensure_pip_build_tools() -> None:
    from importlib import metadata

    missing = []
    for name, version in PIP_BUILD_PACKAGES.items():
        try:
            if metadata.version(name) == version:
                continue
        except metadata.PackageNotFoundError:
            pass
        missing.append(f"{name}=={version}")
    if not missing:
        log("pip: " + ", ".join(f"{n} {v}" for n, v in PIP_BUILD_PACKAGES.items()) + " present")
        return
    run([sys.executable, "-m", "pip", "install", "-q", *missing], echo=indent)


# --------------------------------------------------------------------------- 3. kernel, busybox


def apt_candidate_versions(packages: Sequence[str]) -> dict[str, str]:
    """{package: version apt would fetch} for ``name:arch`` packages, in one apt-cache call
    (each call re-reads every package list: seconds on this machine)."""
    proc = subprocess.run(["apt-cache", "policy", *packages], capture_output=True, text=True)
    return parse_apt_policy(proc.stdout)


def parse_apt_policy(text: str) -> dict[str, str]:
    found = {}
    package = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            package = line.rstrip()[:-1]
        elif package and (match := re.match(r"\s+Candidate:\s*(\S+)", line)):
            if match.group(1) != "(none)":
                found[package] = match.group(1)
    return found


KERNEL_NAME = re.compile(r"^linux-image-(\d+\.\d+)\.(\d+)\+\S*-powerpc64le$")


def kernel_candidates(names: Sequence[str], series: str = KERNEL_SERIES) -> list[str]:
    """Package names of the series' powerpc64le kernel images (no -dbg, no -unsigned)."""
    return [n for n in names if (m := KERNEL_NAME.match(n)) and m.group(1) == series]


def newest_kernel_package() -> tuple[tuple[str, str], str]:
    """((name, version) of the newest ``linux-image-6.12*-powerpc64le``, busybox-static version)
    for ppc64el, as apt resolves them now."""
    proc = subprocess.run(
        ["apt-cache", "search", "--names-only", rf"^linux-image-{re.escape(KERNEL_SERIES)}\..*-powerpc64le$"],
        capture_output=True,
        text=True,
    )
    names = kernel_candidates([line.split(" ", 1)[0] for line in proc.stdout.splitlines()])
    busybox = f"busybox-static:{FOREIGN_ARCH}"
    versions = apt_candidate_versions([*(f"{name}:{FOREIGN_ARCH}" for name in names), busybox])
    found = [
        (name, versions[f"{name}:{FOREIGN_ARCH}"]) for name in names if f"{name}:{FOREIGN_ARCH}" in versions
    ]
    if not found:
        raise SetupError(
            f"apt knows no linux-image-{KERNEL_SERIES}*-powerpc64le for {FOREIGN_ARCH}: is the "
            f"{os_codename()}-backports source configured and `apt-get update` run after "
            f"`dpkg --add-architecture {FOREIGN_ARCH}`?"
        )
    if busybox not in versions:
        raise SetupError(f"apt knows no {busybox}")
    found.sort(key=functools.cmp_to_key(lambda a, b: version_cmp(a[1], b[1])))
    return found[-1], versions[busybox]


def deb_filename(name: str, version: str, arch: str = FOREIGN_ARCH) -> str:
    """The file name `apt-get download` gives a package (epoch colon encoded as %3a)."""
    return f"{name}_{version.replace(':', '%3a')}_{arch}.deb"


def download_deb(name: str, version: str, debs: Path) -> Path:
    debs.mkdir(parents=True, exist_ok=True)
    target = debs / deb_filename(name, version)
    if target.is_file():
        log(f"{target.name}: already downloaded")
        return target
    run(["apt-get", "download", "-q", f"{name}:{FOREIGN_ARCH}={version}"], cwd=debs, echo=indent)
    if not target.is_file():
        raise SetupError(f"apt-get download did not produce {target}")
    return target


def unpack_deb(deb: Path, dest: Path) -> Path:
    """dpkg-deb -x into ``dest`` (atomically: a half-unpacked tree never looks done)."""
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        run(["dpkg-deb", "-x", str(deb), str(tmp)])
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def decompress_module(src: Path, dest: Path) -> Path:
    """A kernel module as busybox insmod wants it (.ko.xz -> .ko)."""
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    if src.suffix == ".xz":
        with lzma.open(src) as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    else:
        shutil.copyfile(src, tmp)
    tmp.replace(dest)
    return dest


# kvm_hv depends on kvm: the dict order is the load order.
KVM_MODULES = {"kvm": "kvm.ko", "kvm_hv": "kvm-hv.ko"}


def find_one(root: Path, pattern: str) -> Path:
    hits = sorted(root.glob(pattern))
    if not hits:
        raise SetupError(f"{pattern} not found under {root}")
    return hits[-1]


def ensure_kernel(cache: Path) -> KernelManifest:
    (name, version), bb_version = newest_kernel_package()
    log(f"kernel: newest {KERNEL_SERIES} package is {name} {version}; busybox-static {bb_version}")
    deb = download_deb(name, version, cache / "debs")
    root = unpack_deb(deb, cache / "kernel" / f"{name}_{version.replace(':', '_')}")
    vmlinux = find_one(root, "boot/vmlinux-*")
    modules = {}
    for module, filename in KVM_MODULES.items():
        src = find_one(root, f"lib/modules/*/kernel/arch/powerpc/kvm/{filename}*")
        modules[module] = str(decompress_module(src, root / "ko" / filename))

    bb_deb = download_deb("busybox-static", bb_version, cache / "debs")
    bb_root = unpack_deb(bb_deb, cache / "busybox" / bb_version.replace(":", "_"))
    busybox = find_one(bb_root, "bin/busybox")

    manifest = KernelManifest(
        package=name,
        version=version,
        vmlinux=str(vmlinux),
        modules=modules,
        busybox=str(busybox),
        busybox_version=bb_version,
    )
    manifest.save(cache)
    log(f"kernel: vmlinux {vmlinux}")
    return manifest


# --------------------------------------------------------------------------- 4. QEMU


def qemu_source_version() -> str:
    """Version of Debian's qemu source package the installed stock QEMU was built from:
    the patched build uses the same, so patched and stock differ only by our patches."""
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${source:Version}", "qemu-system-ppc"], capture_output=True, text=True
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SetupError("qemu-system-ppc is not installed: run `pyvcore lab setup` (apt step) first")
    return proc.stdout.strip()


def patched_qemu_path(cache: Path | None = None, source_version: str | None = None) -> Path:
    """Where the patched qemu-system-ppc64 for the current patch series lives."""
    key = qemu_build_key(qemu_patches(), source_version or qemu_source_version())
    return (cache or cache_dir()) / "qemu" / key / "qemu-system-ppc64"


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
            raise SetupError(f"apt-get source qemu={version} failed:\n{output[-2000:]}")
        (tmp / "src").rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def ninja_progress(line: str, _state: dict[str, float] = {}) -> None:  # noqa: B006
    """Print ninja's [N/M] progress about every 10 %, and any warning/error lines."""
    match = re.match(r"\[(\d+)/(\d+)\]", line)
    if match:
        done, total = int(match.group(1)), int(match.group(2))
        step = int(10 * done / total)
        if step > _state.get("step", -1) or done == total:
            _state["step"] = step
            indent(f"ninja {done}/{total}")
    elif "error" in line.lower():
        indent(line)


def ensure_patched_qemu(cache: Path, *, force: bool = False) -> Path:
    version = qemu_source_version()
    patches = qemu_patches()
    key = qemu_build_key(patches, version)
    out_dir = cache / "qemu" / key
    binary = out_dir / "qemu-system-ppc64"
    if binary.is_file() and not force:
        log(f"qemu: patched build {key} cached ({binary})")
        return binary
    log(f"qemu: building {version} with {len(patches)} patch(es): " + ", ".join(p.name for p in patches))
    log("qemu: this takes about 4-5 minutes on 2 cores")
    source_cache = cache / "qemu-src" / version.replace(":", "_")
    pristine = fetch_qemu_source(version, source_cache / "pristine")

    work = out_dir / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    src = work / "src"
    # A private copy: patches must apply to pristine source every time.
    shutil.copytree(pristine, src, symlinks=True)
    for patch in patches:
        run(["patch", "-p1", "--forward", "--batch", "-i", str(patch)], cwd=src, echo=indent)
    build = src / "build"
    build.mkdir()
    log_file = out_dir / "build.log"
    started = time.monotonic()
    with Step("qemu: configure"):
        _, out = run(["../configure", f"--python={sys.executable}", *QEMU_CONFIGURE_ARGS], cwd=build)
        log_file.write_text(out)
    with Step("qemu: ninja qemu-system-ppc64"):
        _, out = run(["ninja", "qemu-system-ppc64"], cwd=build, echo=ninja_progress)
        with open(log_file, "a") as fh:
            fh.write(out)
    tmp_binary = out_dir / "qemu-system-ppc64.tmp"
    shutil.copy2(build / "qemu-system-ppc64", tmp_binary)
    tmp_binary.replace(binary)
    (out_dir / "build.json").write_text(
        json.dumps(
            {
                "source_version": version,
                "patches": [p.name for p in patches],
                "key": key,
                "build_seconds": round(time.monotonic() - started, 1),
            },
            indent=2,
        )
        + "\n"
    )
    shutil.rmtree(work, ignore_errors=True)
    log(f"qemu: patched build {key} at {binary}")
    return binary


# --------------------------------------------------------------------------- 5. guest programs


def ensure_guest_programs(cache: Path) -> dict[str, Path]:
    """Cross-compile the guest programs (contract 5; the builder skips unchanged sources)."""
    from pyvcore.lab import guest

    try:
        programs = guest.build_guest_programs(cache / "guest", cc=CROSS_CC)
    except guest.GuestBuildError as err:
        raise SetupError(str(err)) from None
    log("guest programs: " + ", ".join(f"{name} ({path})" for name, path in sorted(programs.items())))
    return programs


# --------------------------------------------------------------------------- main


def setup(*, build_qemu: bool = True, force_qemu: bool = False) -> int:
    """Run every setup step; returns a process exit status."""
    cache = cache_dir()
    codename = os_codename()
    total = time.monotonic()
    try:
        with Step("apt packages"):
            ensure_apt(codename)
        with Step("pip build tools"):
            ensure_pip_build_tools()
        with Step("kernel and busybox"):
            manifest = ensure_kernel(cache)
        qemu = None
        if build_qemu:
            with Step("patched QEMU"):
                qemu = ensure_patched_qemu(cache, force=force_qemu)
        with Step("guest programs"):
            ensure_guest_programs(cache)
    except SetupError as err:
        print(f"pyvcore lab setup: {err}", file=sys.stderr)
        return 1
    log(f"all done in {time.monotonic() - total:.1f} s; cache {cache}")
    log(f"vmlinux  {manifest.vmlinux}")
    for module, path in manifest.modules.items():
        log(f"{module:8} {path}")
    log(f"busybox  {manifest.busybox}")
    if qemu:
        log(f"qemu     {qemu} (patched); stock {STOCK_QEMU}")
    return 0


def iter_missing(cache: Path | None = None) -> Iterator[str]:
    """What a lab boot needs that is not there (for a clear 'run setup' error)."""
    manifest = KernelManifest.load(cache)
    if manifest is None:
        yield "the kernel unpack (vmlinux, kvm.ko, kvm-hv.ko, busybox)"
    if not shutil.which("cpio") and not Path("/usr/bin/cpio").exists():
        yield "cpio"
    if not (QEMU_DATA_DIR / "skiboot.lid").is_file():
        yield f"{QEMU_DATA_DIR}/skiboot.lid (qemu-system-data)"
