"""What a lab boot is made of, checked before QEMU starts: the scenario table and its C
header, kernels and modules (BYO), QEMU by path, plugins."""

from __future__ import annotations

import json
import lzma
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pyvcore.lab import Lab, LabError, inputs, scenarios
from pyvcore.lab.cache import KernelManifest
from pyvcore.lab.guest import GUEST_DIR
from pyvcore.lab.tools import CROSS_CC

DEFAULT = KernelManifest.load()
needs_kernel = pytest.mark.skipif(DEFAULT is None, reason="no kernel unpacked (`pyvcore lab setup` does it)")


# --------------------------------------------------------------------------- scenarios


def test_every_scenario_has_ids_for_every_thread_count_inside_its_vcores() -> None:
    for entry in scenarios.SCENARIO_TABLE:
        for threads in scenarios.THREAD_CHOICES:
            ids = entry.vcpu_ids(threads)
            assert ids == tuple(sorted(set(ids))), entry.name
            assert 0 < len(ids) <= scenarios.MAX_VCPUS
            vcores = {i // threads for i in ids}
            # Every scenario but two-vcores lives in vcore 0; two-vcores fills two.
            assert vcores == ({0, 1} if entry.name == "two-vcores" else {0}), (entry.name, threads)
            assert all(entry.role_of(i) in scenarios.ROLES for i in range(len(ids)))
    assert scenarios.scenario_named("novcpu0").vcpu_ids(8) == (1, 3, 5, 7)
    assert 0 not in scenarios.scenario_named("novcpu0").vcpu_ids(4)
    with pytest.raises(KeyError, match="choose one of: all, novcpu0"):
        scenarios.scenario_named("nosuch")


def test_c_header_is_the_table() -> None:
    header = scenarios.c_header()
    rows = [line for line in header.splitlines() if line.startswith('\t{ "')]
    assert len(rows) == sum(len(s.ids) for s in scenarios.SCENARIO_TABLE)
    assert (
        '\t{ "novcpu0", 8, 4, {1, 3, 5, 7}, {PV_ROLE_SPIN, PV_ROLE_SPIN, PV_ROLE_SPIN, PV_ROLE_SPIN}, 1048576L },'
        in rows
    )
    assert f'#define PV_SCENARIO_NAMES "{",".join(scenarios.SCENARIOS)}"' in header
    # vmm.c keeps no scenario table of its own.
    vmm = (GUEST_DIR / "vmm.c").read_text()
    assert '#include "scenarios.h"' in vmm and '{ "all",' not in vmm


@pytest.mark.skipif(
    shutil.which(CROSS_CC) is None, reason=f"{CROSS_CC} not installed (`pyvcore lab setup` does it)"
)
def test_vmm_compiles_against_the_generated_header(tmp_path: Path) -> None:
    from pyvcore.lab.guest import build_guest_programs

    programs = build_guest_programs(tmp_path)
    binary = programs["pyvcore-vmm"].read_bytes()
    assert b"no-ids-for-smt" in binary and ",".join(scenarios.SCENARIOS).encode() in binary
    assert (programs["pyvcore-vmm"].parent / "scenarios.h").read_text() == scenarios.c_header()
    assert build_guest_programs(tmp_path) == programs  # cached by the sources' digest


# --------------------------------------------------------------------------- QEMU, plugin


def test_qemu_by_path(tmp_path: Path) -> None:
    fake = tmp_path / "qemu-system-ppc64"
    fake.write_text("#!/bin/sh\necho 'Supported machines are:'\necho 'powernv8   IBM PowerNV (POWER8)'\n")
    with pytest.raises(LabError, match="not an executable file"):
        inputs.resolve_qemu(fake)
    fake.chmod(0o755)
    assert inputs.resolve_qemu(str(fake)) == ("path", fake.resolve())
    with pytest.raises(LabError, match="not an executable file"):
        inputs.resolve_qemu(str(tmp_path / "nope"))
    with pytest.raises(LabError, match="qemu must be 'patched', 'stock' or the path"):
        Lab(qemu="upstream")


def test_plugin_option(tmp_path: Path) -> None:
    plugin = tmp_path / "libpyvcore_plugin.so"
    plugin.write_bytes(b"\x7fELF")
    assert inputs.plugin_option(None) == []
    assert inputs.plugin_option((plugin, {"log": "/tmp/e.jsonl", "bound": "8"})) == [
        "-plugin",
        f"{plugin},log=/tmp/e.jsonl,bound=8",
    ]
    with pytest.raises(LabError, match="holds a comma"):
        inputs.plugin_option((plugin, {"log": "a,b"}))
    with pytest.raises(LabError, match=r"^cannot read .*missing\.so: No such file or directory$"):
        inputs.plugin_option((tmp_path / "missing.so", {}))


def test_cli_plugin_args() -> None:
    from pyvcore.lab.cli import parse_plugin

    assert parse_plugin("p.so", ["a=1", "b=x=y"]) == ("p.so", {"a": "1", "b": "x=y"})
    assert parse_plugin(None, []) is None
    with pytest.raises(LabError, match="expected KEY=VALUE"):
        parse_plugin("p.so", ["novalue"])
    with pytest.raises(LabError, match="needs --plugin"):
        parse_plugin(None, ["a=1"])


# --------------------------------------------------------------------------- kernels, modules


def test_find_modules(tmp_path: Path) -> None:
    tree = tmp_path / "lib" / "modules" / "6.12.0" / "kernel" / "arch" / "powerpc" / "kvm"
    tree.mkdir(parents=True)
    (tree / "kvm.ko.xz").write_bytes(lzma.compress(b"\x7fELF"))
    with pytest.raises(inputs.KernelRefused, match=r"no kvm-hv\.ko"):
        inputs.find_modules(tmp_path)
    (tree / "kvm-hv.ko").write_bytes(b"\x7fELF")
    assert inputs.find_modules(tmp_path) == {"kvm": tree / "kvm.ko.xz", "kvm_hv": tree / "kvm-hv.ko"}
    (tmp_path / "kvm-hv.ko").write_bytes(b"\x7fELF")
    with pytest.raises(inputs.KernelRefused, match=r"kvm-hv\.ko found 2 times"):
        inputs.find_modules(tmp_path)
    with pytest.raises(inputs.KernelRefused, match=r"^cannot read .*none: No such file or directory$"):
        inputs.find_modules(tmp_path / "none")
    with pytest.raises(
        inputs.KernelRefused, match=r"^cannot read .*kvm-hv\.ko: Not a directory; expected a dir"
    ):
        inputs.find_modules(tmp_path / "kvm-hv.ko")


def test_refuses_what_is_not_a_ppc64le_kernel(tmp_path: Path) -> None:
    text = tmp_path / "vmlinux"
    text.write_text("not a kernel")
    with pytest.raises(inputs.KernelRefused, match=r"^refused: kernel .*vmlinux: not an ELF"):
        inputs.validate(text, {}, ())
    with pytest.raises(inputs.KernelRefused, match=r"^refused: kernel .*: not a ppc64"):
        inputs.validate(Path(sys.executable).resolve(), {}, ())


@needs_kernel
def test_the_lab_kernel_passes_and_names_a_missing_hook_point() -> None:
    assert DEFAULT is not None
    vmlinux = Path(DEFAULT.vmlinux)
    modules = {k: Path(v) for k, v in DEFAULT.modules.items()}
    info = inputs.validate(vmlinux, modules, scenarios.HOOK_POINTS + scenarios.CEDE_POINTS)
    assert info["debug_info"] == "BTF" and info["kvm_hv"] == DEFAULT.modules["kvm_hv"]
    assert (
        info["hook_points"]["kvmppc_run_core"] == "kvm-hv.ko"
        and info["hook_points"]["kvm_do_nap"] == "vmlinux"
    )
    with pytest.raises(inputs.KernelRefused, match=r"hook point kvmppc_no_such_point: no such symbol"):
        inputs.validate(vmlinux, modules, ("kvm_do_nap", "kvmppc_no_such_point"))
    with pytest.raises(inputs.KernelRefused, match="kvm-hv is not built in"):
        inputs.validate(vmlinux, {}, ())


@needs_kernel
def test_modules_of_another_release_are_refused(tmp_path: Path) -> None:
    assert DEFAULT is not None
    real = Path(DEFAULT.modules["kvm_hv"]).read_bytes()
    at = real.index(b"vermagic=") + len(b"vermagic=")
    release = real[at : real.index(b" ", at)]
    other = real.replace(b"vermagic=" + release, b"vermagic=" + b"9" * len(release))
    (tmp_path / "kvm-hv.ko").write_bytes(other)
    shutil.copy(DEFAULT.modules["kvm"], tmp_path / "kvm.ko")
    with pytest.raises(inputs.KernelRefused, match=r"kvm-hv\.ko: built for kernel 9+ \(vermagic\)"):
        inputs.resolve_kernel(DEFAULT.vmlinux, tmp_path, DEFAULT)


@needs_kernel
def test_cli_up_refuses_a_bad_kernel_before_qemu_starts(tmp_path: Path) -> None:
    """One line, exit 2, and no QEMU: the machine lock is never taken."""
    bad = tmp_path / "vmlinux"
    bad.write_bytes(b"\x7fELF" + b"\0" * 60)
    proc = subprocess.run(
        [sys.executable, "-m", "pyvcore", "lab", "up", "--kernel", str(bad), "--qemu", "stock"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"pyvcore lab up: refused: kernel {bad}: ")


def test_kernel_by_name_not_set_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(inputs.LabNotSetUp) as err:
        inputs.not_set_up("7.2-64k", "stock", tmp_path / "pyvcore")
    message = str(err.value)
    assert "kernel 7.2-64k (set up: none)" in message
    assert message.endswith("run `pyvcore lab setup --kernel 7.2 --pagesize 64k`")
    with pytest.raises(inputs.KernelRefused, match=r"not a kernel the lab knows \(6\.1, 6\.12"):
        inputs.not_set_up("9.9", "stock", tmp_path / "pyvcore")
    assert KernelManifest.load(tmp_path, name="../etc") is None


def test_state_round_trip_keeps_kernel_modules_and_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    lab = Lab(
        "novcpu0", 8, kernel="/k/vmlinux", modules="/k/mods", plugin=("/p.so", {"a": "1"}), detached=True
    )
    lab.boot_kernel = inputs.BootKernel(
        Path("/k/vmlinux"), {"kvm": Path("/k/mods/kvm.ko")}, Path("/bb"), "/k/vmlinux", None, {"release": "x"}
    )
    lab.pid, lab.gdb_port, lab.qemu_kind = 1, 1234, "stock"
    for attr in ("vmlinux", "console", "run_dir", "qmp_socket", "qemu_binary"):
        setattr(lab, attr, tmp_path / attr)
    state = json.loads(lab.save_state().read_text())
    assert state["kernel"] == "/k/vmlinux" and state["modules"] == "/k/mods"
    assert state["plugin"] == ["/p.so", {"a": "1"}] and state["boot_kernel"]["modules"] == {
        "kvm": "/k/mods/kvm.ko"
    }
    assert state["threads"] == 8


def test_probe_judges_the_two_fixes_from_the_reports() -> None:
    from pyvcore.lab.probe import FIXES, ProbeResult, judge

    def rep(vcpu: int, started: bool, traps: int = 0, sent: int = 3, received: int = 3) -> dict[str, object]:
        return {
            "vcpu": vcpu,
            "started": started,
            "msgsndp_traps": traps,
            "doorbells_sent": sent,
            "doorbells_received": received,
        }

    patched = [rep(i, True) for i in range(4)]
    assert judge(patched, None)[0] == []
    # Stock QEMU 10.0: vcpus off thread 0 never run, and vcpu 0's msgsndp traps.
    stock = [rep(0, True, traps=3, sent=0, received=0)] + [
        rep(i, False, sent=0, received=0) for i in (1, 2, 3)
    ]
    missing, evidence = judge(stock, [1, 2, 3])
    assert missing == ["lpidr-sdr1", "msgsndp"] and evidence["never_ran"] == [1, 2, 3]
    only_lpidr = [rep(0, True)] + [rep(i, False, sent=0, received=0) for i in (1, 2, 3)]
    assert judge(only_lpidr, [1, 2, 3])[0] == ["lpidr-sdr1"]
    lines = ProbeResult("/q", "x", missing).describe()
    assert len(lines) == 2 and FIXES["msgsndp"][0] in lines[1] and "STALLED" in lines[0]


def test_plain_module_decompresses_once(tmp_path: Path) -> None:
    """gdb's add-symbol-file reads plain ELF: a .ko.xz is handed over decompressed."""
    xz = tmp_path / "kvm-hv.ko.xz"
    xz.write_bytes(lzma.compress(b"\x7fELF module"))
    plain = inputs.plain_module(xz, tmp_path / "cache")
    assert plain.name == "kvm-hv.ko" and plain.read_bytes() == b"\x7fELF module"
    assert inputs.plain_module(xz, tmp_path / "cache") == plain
    assert inputs.plain_module(plain, tmp_path / "cache") == plain
    bad = tmp_path / "bad.ko.xz"
    bad.write_bytes(b"not xz")
    with pytest.raises(inputs.KernelRefused, match=r"not a valid \.xz file"):
        inputs.plain_module(bad, tmp_path / "cache")
