"""`pyvcore lab setup`'s pieces, without network or root: apt plans, kernel names and
package resolution, .deb streaming, the QEMU build key and progress."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from debian.deb822 import Packages

from pyvcore.lab import apt, kernels, piptools, qemubuild
from pyvcore.lab import setup as labsetup
from pyvcore.lab.cache import qemu_build_key


def test_qemu_build_key_follows_configure_args(tmp_path: Path) -> None:
    a = tmp_path / "0001-a.patch"
    a.write_text("one\n")
    plain = qemu_build_key([a], "1:10.0.2+ds-2", ["--target-list=ppc64-softmmu"])
    plugins = qemu_build_key([a], "1:10.0.2+ds-2", ["--target-list=ppc64-softmmu", "--enable-plugins"])
    assert plain != plugins
    assert "--enable-plugins" in qemubuild.QEMU_CONFIGURE_ARGS
    # The patched QEMU's path follows the configure arguments too.
    key = qemu_build_key([a], "1", qemubuild.QEMU_CONFIGURE_ARGS)
    assert key != qemu_build_key([a], "1")


def test_pip_build_tools_include_distlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """QEMU's configure imports distlib.version, which pip 26 no longer vendors."""
    assert "distlib" in piptools.PIP_BUILD_PACKAGES
    versions = {"meson": "1.5.2", "pycotap": "1.3.1"}

    def fake_version(name: str) -> str:
        if name not in versions:
            raise piptools.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(piptools.metadata, "version", fake_version)
    assert piptools.missing_pip_build_tools() == [f"distlib=={piptools.PIP_BUILD_PACKAGES['distlib']}"]


def test_ninja_progress_keeps_its_own_state(capsys: pytest.CaptureFixture[str]) -> None:
    first = qemubuild.NinjaProgress()
    for n in (1, 2, 50, 100):
        first(f"[{n}/100] cc foo.c")
    second = qemubuild.NinjaProgress()  # a second build prints its own progress from 0
    second("[1/10] cc bar.c")
    second("foo.c:1: error: boom")
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "    ninja 1/100",
        "    ninja 50/100",
        "    ninja 100/100",
        "    ninja 1/10",
        "    foo.c:1: error: boom",
    ]


def test_backports_source_copies_mirror_and_key() -> None:
    debian_sources = (
        "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
        "URIs: http://deb.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://deb.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    text = apt.backports_source(debian_sources, "bookworm")
    stanza = apt.parse_deb822(text)[0]
    assert stanza == {
        "Types": "deb deb-src",
        "URIs": "http://deb.example/debian",
        "Suites": "bookworm-backports",
        "Components": "main",
        "Signed-By": "/usr/share/keyrings/debian-archive-keyring.gpg",
    }
    with pytest.raises(apt.SetupError, match="no 'trixie' stanza"):
        apt.backports_source(debian_sources, "trixie")


def test_apt_plan_commands_for_a_non_root_user() -> None:
    plan = apt.AptPlan("Types: deb deb-src\n", ["qemu-system-ppc"], ["cpio", "flex"])
    cmds = plan.commands("bookworm")
    assert cmds[0].startswith(f"cat > {apt.BACKPORTS_SOURCES_FILE} <<'EOF'")
    assert cmds[1] == "apt-get update"
    assert cmds[2] == "apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-ppc"
    assert cmds[3] == "apt-get install -y --no-install-recommends cpio flex"
    assert apt.AptPlan(None, [], []).empty


def test_debian_version_order_without_dpkg() -> None:
    assert apt.version_ge("1:10.0.2+ds-2~bpo12+1", apt.MIN_QEMU_VERSION)
    assert not apt.version_ge("1:7.2+dfsg-7+deb12u7", apt.MIN_QEMU_VERSION)
    assert apt.version_ge("6.12.10-1~bpo12+1", "6.12.9-1")  # numeric, not string, order


def test_mirror_skew_pins_from_apt_error() -> None:
    output = (
        "The following packages have unmet dependencies:\n"
        " libpcre2-dev : Depends: libpcre2-8-0 (= 10.42-1) but 10.42-1+deb12u1 is to be installed\n"
        "E: Unable to correct problems, you have held broken packages.\n"
    )
    assert apt.mirror_skew_pins(output) == ["libpcre2-8-0=10.42-1"]
    assert apt.mirror_skew_pins("E: Unable to locate package foo") == []


def test_kernel_candidates_pick_the_series_images_only() -> None:
    names = [
        "linux-image-6.12.95+deb12-powerpc64le",
        "linux-image-6.12.95+deb12-powerpc64le-dbg",
        "linux-image-6.12.48+deb12-powerpc64le",
        "linux-image-6.1.0-35-powerpc64le",
        "linux-image-6.12.95+deb12-powerpc64le-64k",
        "linux-image-powerpc64le",
    ]
    assert kernels.kernel_candidates(names) == [
        "linux-image-6.12.95+deb12-powerpc64le",
        "linux-image-6.12.48+deb12-powerpc64le",
    ]
    assert kernels.kernel_candidates(names, "6.1") == ["linux-image-6.1.0-35-powerpc64le"]
    assert kernels.kernel_candidates(names, "6.12", "powerpc64le-64k") == [
        "linux-image-6.12.95+deb12-powerpc64le-64k"
    ]


def test_kernel_names_and_pagesizes() -> None:
    assert kernels.kernel_name("7.2", "64k") == "7.2-64k"
    assert kernels.kernel_name("6.1") == "6.1"
    with pytest.raises(kernels.SetupError, match=r"choose one of: 6\.1, 6\.12"):
        kernels.kernel_name("6.1", "64k")  # bookworm's 6.1 has no 64k flavour here
    with pytest.raises(kernels.SetupError, match="--pagesize must be 4k or 64k"):
        kernels.kernel_name("6.12", "16k")
    assert kernels.KERNELS["6.1"].dwarf_from_dbg and not kernels.KERNELS["7.2"].dwarf_from_dbg
    assert kernels.KERNELS["7.2"].suite_for("bookworm") == "sid"
    assert kernels.KERNELS["6.12"].suite_for("bookworm") == "bookworm-backports"


def test_newest_version_and_sid_meta_package_parts() -> None:
    text = (
        "Package: linux-image-7.2.13+deb14-powerpc64le\nVersion: 7.2.13-1\n"
        "Depends: linux-binary-7.2.13+deb14-powerpc64le (= 7.2.13-1), "
        "linux-modules-7.2.13+deb14-powerpc64le (= 7.2.13-1) | foo\n\n"
        "Package: linux-image-7.2.9+deb14-powerpc64le\nVersion: 7.2.9-2\n\n"
        "Package: linux-image-7.2.10+deb14-powerpc64le\nVersion: 7.2.10-1\n"
    )
    paras = list(Packages.iter_paragraphs(text, use_apt_pkg=False))
    names = [p["Package"] for p in paras]
    assert kernels.newest(paras, names) == ("linux-image-7.2.13+deb14-powerpc64le", "7.2.13-1")
    assert kernels.newest(paras, ["nothing"]) is None
    assert kernels.depends_names(paras[0]) == [
        "linux-binary-7.2.13+deb14-powerpc64le",
        "linux-modules-7.2.13+deb14-powerpc64le",
    ]


def test_private_apt_never_points_at_the_system_state(tmp_path: Path) -> None:
    private = kernels.PrivateApt(tmp_path / "apt", ["sid", "bookworm"], "bookworm")
    opts = private.options()
    values = dict(o.split("=", 1) for o in opts[1::2])
    for key in (
        "Dir::Etc::SourceList",
        "Dir::Etc::SourceParts",
        "Dir::State::Lists",
        "Dir::State::status",
        "Dir::Cache",
    ):
        assert values[key].startswith(str(tmp_path / "apt")), key
    assert values["APT::Architectures"] == "ppc64el"
    assert private.suites == ["bookworm", "sid"]


def _deb(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A minimal .deb (ar: debian-binary, control.tar.xz, data.tar.xz)."""

    def tar_xz(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", tar_xz({"./control": b"Package: x\n"})),
        ("data.tar.xz", tar_xz(files)),
    ]
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) & 1 else b"")
    deb = tmp_path / "x.deb"
    deb.write_bytes(bytes(out))
    return deb


def test_extract_from_deb_streams_only_the_wanted_member(tmp_path: Path) -> None:
    deb = _deb(
        tmp_path,
        {
            "./usr/lib/debug/boot/vmlinux-6.1.0-35-powerpc64le": b"\x7fELF dwarf",
            "./usr/lib/debug/lib/modules/6.1.0-35-powerpc64le/kernel/fs/x.ko": b"other",
        },
    )
    found = kernels.extract_from_deb(deb, re.compile(r"usr/lib/debug/(boot/)?vmlinux-"), tmp_path / "out")
    assert [p.name for p in found] == ["vmlinux-6.1.0-35-powerpc64le"]
    assert found[0].read_bytes() == b"\x7fELF dwarf"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["vmlinux-6.1.0-35-powerpc64le"]
    if subprocess.run(["which", "dpkg-deb"], capture_output=True).returncode == 0:
        # dpkg-deb reads the same archive: the test's .deb is a real one.
        listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True)
        assert "vmlinux-6.1.0-35-powerpc64le" in listing.stdout
    two = kernels.extract_from_deb(deb, re.compile(r"usr/lib/debug/"), tmp_path / "two")
    assert len(two) == 2
    one = kernels.extract_from_deb(deb, re.compile(r"usr/lib/debug/"), tmp_path / "one", limit=1)
    assert [p.name for p in one] == ["vmlinux-6.1.0-35-powerpc64le"]
    (tmp_path / "bad.deb").write_bytes(b"not ar")
    with pytest.raises(kernels.SetupError, match=r"not a \.deb"):
        kernels.extract_from_deb(tmp_path / "bad.deb", re.compile("x"), tmp_path / "o2")


def test_deb_filename_encodes_epoch() -> None:
    assert kernels.deb_filename("busybox-static", "1:1.35.0-4+deb12u1+b1") == (
        "busybox-static_1%3a1.35.0-4+deb12u1+b1_ppc64el.deb"
    )
    assert qemubuild.upstream_version("1:10.0.2+ds-2+deb13u1~bpo12+1") == "10.0.2+ds"


def test_setup_without_root_prints_the_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = apt.AptPlan(None, ["qemu-system-data"], ["gdb-multiarch"])
    monkeypatch.setattr(apt, "plan_apt", lambda codename: plan)
    monkeypatch.setattr(apt, "is_root", lambda: False)
    with pytest.raises(apt.SetupError) as err:
        apt.ensure_apt("bookworm")
    message = str(err.value)
    assert "needs root" in message
    assert "apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-data" in message
    assert "apt-get install -y --no-install-recommends gdb-multiarch" in message
    assert message.rstrip().endswith("then run `pyvcore lab setup` again.")


def test_setup_failure_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def no_root(codename: str) -> None:
        raise apt.SetupError("apt packages are missing")

    monkeypatch.setattr(apt, "ensure_apt", no_root)
    assert labsetup.setup() == 2
    assert "pyvcore lab setup: apt packages are missing" in capsys.readouterr().err


def _quiet_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Every setup step replaced by a recorder (no apt, network or builds)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    ran: list[str] = []
    monkeypatch.setattr(apt, "os_codename", lambda: "bookworm")
    monkeypatch.setattr(apt, "ensure_apt", lambda codename: ran.append("apt"))
    monkeypatch.setattr(piptools, "ensure_pip_build_tools", lambda: ran.append("pip"))
    monkeypatch.setattr(kernels, "private_apt", lambda cache, names: ran.append("kernel apt"))

    def kernel(cache: Path, name: str, kapt: object) -> object:
        ran.append(f"kernel {name}")
        return type("Manifest", (), {"package": "linux-image", "version": "1", "vmlinux": "vmlinux"})()

    def qemu(cache: Path, force: bool) -> Path:
        ran.append("qemu")
        return tmp_path / "qemu-system-ppc64"

    monkeypatch.setattr(kernels, "ensure_kernel", kernel)
    monkeypatch.setattr(qemubuild, "ensure_patched_qemu", qemu)
    monkeypatch.setattr(labsetup, "ensure_guest_programs", lambda cache: ran.append("guest"))
    return ran


def test_setup_builds_the_trace_plugin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pyvcore.lab import plugin_build

    ran = _quiet_setup(monkeypatch, tmp_path)
    built = tmp_path / "plugin" / "k" / plugin_build.PLUGIN_NAME

    def ensure_plugin(**kw: object) -> Path:
        ran.append("plugin")
        return built

    monkeypatch.setattr(plugin_build, "ensure_plugin", ensure_plugin)
    assert labsetup.setup() == 0
    assert ran.index("plugin") > ran.index("qemu")
    ran.clear()
    assert labsetup.setup(build_plugin=False) == 0
    assert "plugin" not in ran


def test_setup_plugin_build_failure_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pyvcore.lab import plugin_build
    from pyvcore.lab.qemu import LabError

    _quiet_setup(monkeypatch, tmp_path)

    def no_cargo(**kw: object) -> Path:
        raise LabError("cannot build the QEMU plugin: cargo is not on PATH")

    monkeypatch.setattr(plugin_build, "ensure_plugin", no_cargo)
    assert labsetup.setup() == 2
    assert "pyvcore lab setup: cannot build the QEMU plugin: cargo is not on PATH" in capsys.readouterr().err
