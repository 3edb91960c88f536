"""`lab setup`'s apt step (as root): the system packages the lab needs.

The bookworm-backports source (deb + deb-src) is added to the system when missing, for
QEMU 10 and its source (bookworm's own QEMU 7.2 segfaults on powernv8 with more than one
thread per core). The kernels come through the lab's private apt configuration
(:mod:`pyvcore.lab.kernels`), never through the system's sources.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from debian.deb822 import Deb822
from debian.debian_support import Version

from pyvcore.lab.steps import SetupError, indent, is_root, log, run

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
    """Debian version order (``dpkg --compare-versions a ge b``)."""
    return Version(a) >= Version(b)


def os_codename() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "bookworm"
    match = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.M)
    return match.group(1) if match else "bookworm"


def parse_deb822(text: str) -> list[dict[str, str]]:
    """Stanzas of a deb822 file (comment lines dropped), as plain dicts."""
    kept = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    return [dict(stanza) for stanza in Deb822.iter_paragraphs(kept, use_apt_pkg=False)]


def main_archive_stanza(debian_sources: str, codename: str) -> dict[str, str]:
    """The deb822 stanza of the system's main archive for ``codename`` (mirror, keyring)."""
    for stanza in parse_deb822(debian_sources):
        if codename in stanza.get("Suites", "").split():
            return stanza
    raise SetupError(f"no '{codename}' stanza in {DEBIAN_SOURCES_FILE}: cannot derive the Debian mirror")


def backports_source(debian_sources: str, codename: str) -> str:
    """A deb822 stanza for ``<codename>-backports`` (deb + deb-src) using the same mirror
    and Signed-By as the stanza of the system's main archive."""
    main = main_archive_stanza(debian_sources, codename)
    stanza = Deb822()
    stanza["Types"] = "deb deb-src"
    stanza["URIs"] = main["URIs"]
    stanza["Suites"] = f"{codename}-backports"
    stanza["Components"] = main.get("Components", "main")
    if "Signed-By" in main:
        stanza["Signed-By"] = main["Signed-By"]
    return str(stanza.dump())


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
    backports_packages: list[str]
    packages: list[str]

    @property
    def empty(self) -> bool:
        return not (self.write_backports or self.backports_packages or self.packages)

    def commands(self, codename: str) -> list[str]:
        """The shell commands a root user runs to carry the plan out."""
        cmds = []
        if self.write_backports:
            body = self.write_backports.rstrip("\n")
            cmds.append(f"cat > {BACKPORTS_SOURCES_FILE} <<'EOF'\n{body}\nEOF")
        if not self.empty:
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
    """What is missing: the backports source, QEMU 10 from it, the other packages."""
    write_backports = None
    if not backports_configured(codename):
        try:
            debian_sources = DEBIAN_SOURCES_FILE.read_text()
        except OSError as err:
            raise SetupError(f"cannot read {DEBIAN_SOURCES_FILE}: {err}") from err
        write_backports = backports_source(debian_sources, codename)
    backports_missing = []
    for package in BACKPORTS_PACKAGES:
        version = dpkg_installed_version(package)
        if version is None or not version_ge(version, MIN_QEMU_VERSION):
            backports_missing.append(package)
    missing = [p for p in (*PACKAGES, *QEMU_BUILD_DEPS) if dpkg_installed_version(p) is None]
    return AptPlan(write_backports, backports_missing, missing)


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
        f"({len(failed)} index file(s) failed, e.g. {_first_url(failed)}); going on with the lists apt has"
    )


def _first_url(failed: list[str]) -> str:
    return failed[0][len("E: Failed to fetch ") :].split()[0] if failed else "?"


def ensure_apt(codename: str) -> None:
    """Carry out :func:`plan_apt` (as root), or say which commands a root user runs."""
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
    apt_update()
    if plan.backports_packages:
        apt_install(plan.backports_packages, target_release=f"{codename}-backports")
    if plan.packages:
        apt_install(plan.packages)
