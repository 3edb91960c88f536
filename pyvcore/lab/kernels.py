"""`lab setup`'s kernel step: Debian's ppc64el kernels by name, through a private apt.

Names: ``6.1`` (bookworm; no .BTF, DWARF from its ``-dbg`` package), ``6.12`` and
``6.12-64k`` (bookworm-backports), ``7.2`` and ``7.2-64k`` (sid). The newest package of
each series is resolved when setup runs, never pinned.

sid packages kernels anew: ``linux-image-*`` is a meta package that depends on
``linux-binary-*`` (the kernel) and ``linux-modules-*``; both are fetched.

Everything goes through the lab's own apt configuration under ``<cache>/apt`` (its own
sources, lists, caches and an empty dpkg status, architecture ppc64el only): the
system's sources, lists and architectures are never touched. The system's apt.conf.d
still applies (proxies, validity checks).
"""

from __future__ import annotations

import lzma
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from debian.deb822 import Deb822, Packages
from debian.debian_support import Version

from pyvcore.lab.apt import DEBIAN_SOURCES_FILE, main_archive_stanza, os_codename
from pyvcore.lab.cache import KernelManifest
from pyvcore.lab.steps import SetupError, indent, log, run, worked

ARCH = "ppc64el"
# kvm_hv depends on kvm: the dict order is the load order.
KVM_MODULES = {"kvm": "kvm.ko", "kvm_hv": "kvm-hv.ko"}


@dataclass(frozen=True)
class KernelSeries:
    """One kernel the lab can set up by name."""

    name: str
    series: str
    suite: str  # "{codename}" / "{codename}-backports" / "sid"
    flavour: str  # package name suffix
    dwarf_from_dbg: bool = False  # no .BTF: read the -dbg package's vmlinux

    def suite_for(self, codename: str) -> str:
        return self.suite.format(codename=codename)

    def image_pattern(self) -> re.Pattern[str]:
        """linux-image-<series>.* names of this flavour (no -dbg, -unsigned or other flavour)."""
        return re.compile(rf"^linux-image-{re.escape(self.series)}(?:[.+~][^ ]*)?-{re.escape(self.flavour)}$")


KERNELS = {
    k.name: k
    for k in (
        KernelSeries("6.1", "6.1", "{codename}", "powerpc64le", dwarf_from_dbg=True),
        KernelSeries("6.12", "6.12", "{codename}-backports", "powerpc64le"),
        KernelSeries("6.12-64k", "6.12", "{codename}-backports", "powerpc64le-64k"),
        KernelSeries("7.2", "7.2", "sid", "powerpc64le"),
        KernelSeries("7.2-64k", "7.2", "sid", "powerpc64le-64k"),
    )
}
DEFAULT_KERNEL = "6.12"


def kernel_name(series: str, pagesize: str = "4k") -> str:
    """``6.12`` + ``64k`` -> ``6.12-64k``; SetupError for a kernel the lab does not know."""
    if pagesize not in ("4k", "64k"):
        raise SetupError(f"--pagesize must be 4k or 64k, not {pagesize!r}")
    name = series if pagesize == "4k" else f"{series}-64k"
    if name not in KERNELS:
        raise SetupError(f"no Debian kernel {name!r} for the lab; choose one of: {', '.join(KERNELS)}")
    return name


def kernel_candidates(names: Sequence[str], series: str = "6.12", flavour: str = "powerpc64le") -> list[str]:
    """Package names of the series' kernel images of one flavour (no -dbg, no -unsigned)."""
    pattern = KernelSeries(series, series, "", flavour).image_pattern()
    return [n for n in names if pattern.match(n)]


def deb_filename(name: str, version: str, arch: str = ARCH) -> str:
    """The file name `apt-get download` gives a package (epoch colon encoded as %3a)."""
    return f"{name}_{version.replace(':', '%3a')}_{arch}.deb"


# --------------------------------------------------------------------------- private apt


class PrivateApt:
    """apt-get/apt-cache with the lab's own sources, lists and caches under ``root``."""

    def __init__(self, root: Path, suites: Sequence[str], codename: str) -> None:
        self.root = root
        self.suites = sorted(set(suites))
        self.codename = codename

    def sources_text(self) -> str:
        try:
            system = DEBIAN_SOURCES_FILE.read_text()
        except OSError as err:
            raise SetupError(f"cannot read {DEBIAN_SOURCES_FILE}: {err}") from err
        main = main_archive_stanza(system, self.codename)
        stanza = Deb822()
        stanza["Types"] = "deb"
        stanza["URIs"] = main["URIs"]
        stanza["Suites"] = " ".join(self.suites)
        stanza["Components"] = "main"
        if "Signed-By" in main:
            stanza["Signed-By"] = main["Signed-By"]
        return str(stanza.dump())

    def options(self) -> list[str]:
        r = self.root
        opts = {
            "Dir::Etc::SourceList": str(r / "sources.list"),
            "Dir::Etc::SourceParts": str(r / "sources.list.d"),
            "Dir::Etc::PreferencesParts": str(r / "preferences.d"),
            "Dir::Etc::Preferences": str(r / "preferences"),
            "Dir::State": str(r / "state"),
            "Dir::State::Lists": str(r / "state" / "lists"),
            "Dir::State::status": str(r / "state" / "status"),
            "Dir::Cache": str(r / "cache"),
            # Container images often turn apt's binary caches off; without them every
            # apt-cache call re-reads the lists (half a minute each on a loaded machine).
            "Dir::Cache::pkgcache": "pkgcache.bin",
            "Dir::Cache::srcpkgcache": "srcpkgcache.bin",
            "APT::Architecture": ARCH,
            "APT::Architectures": ARCH,
            # Packages other than the kernels (busybox-static) come from the system's release.
            "APT::Default-Release": self.codename,
            "Acquire::Languages": "none",
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled": "false",
            "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled": "false",
            "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled": "false",
            # The lists live in the user's cache, which apt's _apt user may not enter.
            "APT::Sandbox::User": "root",
        }
        return [item for key, value in opts.items() for item in ("-o", f"{key}={value}")]

    def prepare(self) -> None:
        for sub in ("sources.list.d", "preferences.d", "state/lists/partial", "cache/archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "sources.list").write_text("")
        (self.root / "state" / "status").touch()
        (self.root / "sources.list.d" / "pyvcore.sources").write_text(self.sources_text())

    def update(self) -> None:
        """apt-get update of the private lists (the suites' ppc64el Packages only)."""
        self.prepare()
        status, output = run(["apt-get", *self.options(), "update", "-q"], echo=indent, check=False)
        if status != 0:
            failed = [line for line in output.splitlines() if line.startswith(("E:", "W:"))]
            log(f"kernel apt: `apt-get update` exited {status} ({'; '.join(failed[:2])}); going on")

    def names(self, regex: str) -> list[str]:
        proc = subprocess.run(
            ["apt-cache", *self.options(), "search", "--names-only", regex], capture_output=True, text=True
        )
        return [line.split(" ", 1)[0] for line in proc.stdout.splitlines() if line.strip()]

    def show(self, names: Sequence[str]) -> list[Packages]:
        """Every version apt knows of each package (``apt-cache show``), parsed."""
        if not names:
            return []
        proc = subprocess.run(["apt-cache", *self.options(), "show", *names], capture_output=True, text=True)
        return list(Packages.iter_paragraphs(proc.stdout, use_apt_pkg=False))

    def candidate(self, name: str) -> str | None:
        """The version apt would fetch for ``name`` (the system's release first), read from
        the file name `apt-get download --print-uris` prints."""
        proc = subprocess.run(
            ["apt-get", *self.options(), "download", "--print-uris", name], capture_output=True, text=True
        )
        for line in proc.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[1].startswith(f"{name}_") and fields[1].endswith(f"_{ARCH}.deb"):
                return fields[1][len(name) + 1 : -len(f"_{ARCH}.deb")].replace("%3a", ":")
        return None

    def download(self, name: str, version: str, dest: Path) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / deb_filename(name, version)
        if target.is_file():
            log(f"{target.name}: already downloaded")
            return target
        run(["apt-get", *self.options(), "download", "-q", f"{name}={version}"], cwd=dest, echo=indent)
        if not target.is_file():
            raise SetupError(f"apt-get download did not produce {target}")
        return target


def newest(paragraphs: Sequence[Packages], names: Sequence[str]) -> tuple[str, str] | None:
    """(name, version) of the highest version among ``names`` (Debian version order)."""
    best: tuple[str, str] | None = None
    for para in paragraphs:
        if para.get("Package") in names and (best is None or Version(para["Version"]) > Version(best[1])):
            best = (para["Package"], para["Version"])
    return best


def depends_names(paragraph: Packages) -> list[str]:
    """Package names in a paragraph's Depends (first alternative of each)."""
    return [rel[0]["name"] for rel in paragraph.relations.get("depends", []) if rel]


# --------------------------------------------------------------------------- unpacking


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


def _ar_members(fh: IO[bytes]) -> Iterator[tuple[str, int]]:
    """(name, size) of each member of an ar archive (a .deb), leaving ``fh`` at its data."""
    if fh.read(8) != b"!<arch>\n":
        raise SetupError("not a .deb (ar) archive")
    while header := fh.read(60):
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
        start = fh.tell()
        yield name, size
        fh.seek(start + size + (size & 1))


def extract_from_deb(deb: Path, wanted: re.Pattern[str], dest: Path, limit: int = 0) -> list[Path]:
    """Extract the data members whose path matches ``wanted`` by streaming the .deb's
    data.tar (never unpacking the rest: a -dbg package is most of a gigabyte), stopping
    after ``limit`` of them (0: read it all)."""
    out: list[Path] = []
    with open(deb, "rb") as fh:
        for name, _size in _ar_members(fh):
            if not name.startswith("data.tar"):
                continue
            with tarfile.open(fileobj=fh, mode="r|*") as tar:
                for member in tar:
                    if member.isfile() and wanted.search(member.name):
                        target = dest / Path(member.name).name
                        dest.mkdir(parents=True, exist_ok=True)
                        src = tar.extractfile(member)
                        assert src is not None
                        with open(target, "wb") as fout:
                            shutil.copyfileobj(src, fout)
                        out.append(target)
                        if limit and len(out) >= limit:
                            break
            break
    return out


def decompress_module(src: Path, dest: Path) -> Path:
    """A kernel module as busybox insmod wants it (.ko.xz -> .ko)."""
    if dest.is_file():
        return dest
    worked()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    if src.suffix == ".xz":
        with lzma.open(src) as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    else:
        shutil.copyfile(src, tmp)
    tmp.replace(dest)
    return dest


def find_one(root: Path, pattern: str) -> Path:
    return find_in([root], pattern)


def find_in(roots: Sequence[Path], *patterns: str) -> Path:
    """The last (newest-named) file matching one of ``patterns`` under any of ``roots``."""
    hits = sorted(p for root in roots for pattern in patterns for p in root.glob(pattern) if p.is_file())
    if not hits:
        raise SetupError(f"{' or '.join(patterns)} not found under {', '.join(map(str, roots))}")
    return hits[-1]


# --------------------------------------------------------------------------- the step


def private_apt(cache: Path, names: Sequence[str]) -> PrivateApt:
    """The lab's apt for these kernels (every suite they need, plus the system's own for
    busybox-static), its lists updated once."""
    codename = os_codename()
    suites = [codename, *(KERNELS[name].suite_for(codename) for name in names)]
    apt = PrivateApt(cache / "apt", suites, codename)
    apt.update()
    return apt


def ensure_kernel(cache: Path, name: str = DEFAULT_KERNEL, apt: PrivateApt | None = None) -> KernelManifest:
    """Resolve, fetch and unpack kernel ``name`` (and busybox-static); save its manifest
    (kernel/by-name/NAME.json, and kernel/current.json for the default kernel)."""
    spec = KERNELS[name]
    codename = os_codename()
    suite = spec.suite_for(codename)
    apt = apt or private_apt(cache, [name])
    images = apt.names(rf"^linux-image-{re.escape(spec.series)}[.0-9].*-{re.escape(spec.flavour)}$")
    images = [n for n in images if spec.image_pattern().match(n)]
    paragraphs = apt.show(images)
    found = newest(paragraphs, images)
    if found is None:
        raise SetupError(
            f"no linux-image-{spec.series}*-{spec.flavour} in {suite} for {ARCH} (kernel {name})"
        )
    bb_version = apt.candidate("busybox-static")
    if bb_version is None:
        raise SetupError(f"no busybox-static for {ARCH} in {codename}")
    bb = ("busybox-static", bb_version)
    package, version = found
    log(f"kernel {name}: newest is {package} {version} ({suite}); busybox-static {bb[1]}")
    debs = cache / "debs"
    root = cache / "kernel" / f"{package}_{version.replace(':', '_')}"
    image_para = next(p for p in paragraphs if p["Package"] == package and p["Version"] == version)
    # sid: the image is a meta package over linux-binary-* and linux-modules-*.
    parts = [d for d in depends_names(image_para) if d.startswith(("linux-binary-", "linux-modules-"))]
    if parts:
        part_paras = apt.show(parts)
        trees = []
        for part in parts:
            pv = newest(part_paras, [part])
            if pv is None:
                raise SetupError(f"{package} depends on {part}, which apt cannot find")
            trees.append(unpack_deb(apt.download(*pv, debs), root / part))
    else:
        trees = [unpack_deb(apt.download(package, version, debs), root)]
    # bookworm/backports: boot/vmlinux-REL; sid: usr/lib/modules/REL/vmlinuz (an ELF all the same).
    vmlinux = find_in(trees, "boot/vmlinu[xz]-*", "usr/lib/modules/*/vmlinu[xz]")
    modules = {}
    for module, filename in KVM_MODULES.items():
        kvm_dir = "lib/modules/*/kernel/arch/powerpc/kvm"
        src = find_in(trees, f"{kvm_dir}/{filename}*", f"usr/{kvm_dir}/{filename}*")
        modules[module] = str(decompress_module(src, root / "ko" / filename))
    extra = {"suite": suite}
    if spec.dwarf_from_dbg:
        extra["symbols"] = str(dbg_vmlinux(apt, package, version, root, debs))
    bb_root = unpack_deb(apt.download(*bb, debs), cache / "busybox" / bb[1].replace(":", "_"))
    manifest = KernelManifest(
        package=package,
        version=version,
        vmlinux=str(vmlinux),
        modules=modules,
        busybox=str(find_in([bb_root], "bin/busybox", "usr/bin/busybox")),
        busybox_version=bb[1],
        extra=extra,
    )
    manifest.save(cache, name=name)
    if name == DEFAULT_KERNEL:
        manifest.save(cache)
    log(f"kernel {name}: vmlinux {vmlinux}")
    return manifest


def dbg_vmlinux(apt: PrivateApt, package: str, version: str, root: Path, debs: Path) -> Path:
    """The DWARF vmlinux of ``package``'s -dbg package, streamed out of the .deb, which
    is then deleted (only the vmlinux is kept)."""
    target_dir = root / "dbg"
    done = sorted(target_dir.glob("vmlinux-*"))
    if done:
        return done[0]
    deb = apt.download(f"{package}-dbg", version, debs)
    log(f"kernel: streaming vmlinux out of {deb.name} ({deb.stat().st_size / 2**20:.0f} MiB)")
    found = extract_from_deb(deb, re.compile(r"usr/lib/debug/(boot/)?vmlinux-"), target_dir, limit=1)
    if not found:
        raise SetupError(f"{deb.name} holds no usr/lib/debug/boot/vmlinux-*")
    deb.unlink()
    return found[0]
