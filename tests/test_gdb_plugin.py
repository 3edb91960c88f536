"""The gdb plugin inside a real gdb-multiarch, without QEMU: loading, help, and the
error lines (no vmlinux, not ppc64, no BTF/DWARF, not connected) -- one line
each, never a Python traceback."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_btf import VMLINUX

GDB = shutil.which("gdb-multiarch")
ENTRY = Path(__file__).resolve().parent.parent / "pyvcore" / "gdb.py"
pytestmark = [
    pytest.mark.gdb,
    pytest.mark.skipif(GDB is None, reason="gdb-multiarch not installed (`pyvcore lab setup`)"),
]
needs_vmlinux = pytest.mark.skipif(VMLINUX is None, reason="no ppc64 vmlinux (`pyvcore lab setup`)")


def gdb_batch(*commands: str, timeout: float = 60) -> str:
    argv = [GDB, "-nx", "-q", "-batch"]
    for c in commands:
        argv += ["-ex", c]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text
    return text


def test_loads_without_a_kernel_and_says_so():
    out = gdb_batch(f"source {ENTRY}", "pv-paca")
    assert "pyvcore 0" in out and "no vmlinux loaded yet" in out
    assert "pyvcore: no vmlinux loaded (use `file /path/to/vmlinux`" in out


def test_not_a_ppc64_kernel():
    out = gdb_batch("file /bin/true", f"source {ENTRY}", "pv-snapshot --json -")
    assert "not a ppc64 kernel (ELF architecture is X86_64)" in out
    assert out.count("not a ppc64 kernel") == 2  # banner + the command's error


def test_no_btf_and_no_dwarf(tmp_path: Path):
    cc = shutil.which("powerpc64le-linux-gnu-gcc")
    if cc is None:
        pytest.skip("powerpc64le-linux-gnu-gcc not installed (`pyvcore lab setup`)")
    src = tmp_path / "k.c"
    src.write_text("void *paca_ptrs[4];\nint nr_cpu_ids = 4;\n")
    obj = tmp_path / "vmlinux"
    subprocess.run([cc, "-c", "-g0", "-o", str(obj), str(src)], check=True)
    out = gdb_batch(f"file {obj}", f"source {ENTRY}", "pv-paca")
    assert "has neither DWARF nor BTF: no struct layouts" in out
    assert out.count("has neither DWARF nor BTF") == 2


@needs_vmlinux
def test_banner_with_btf_kernel_and_not_connected():
    out = gdb_batch(
        f"file {VMLINUX}",
        f"source {ENTRY}",
        "pv-paca",
        "pv-vcore",
        "pv-check",
        "pv-snapshot",
        "p $pv_paca(0)",
    )
    banner = (
        out.replace(":\n  ", ": ").replace(";\n  ", "; ").splitlines()[0]
    )  # one part per line when wider than 80
    assert "layouts from BTF, paca_ptrs, entry_exit_map -> variant modern" in banner
    assert "not connected yet" in banner
    assert out.count("pyvcore: not connected to a target") == 5


@needs_vmlinux
def test_the_snapshot_reader_finds_kvm_ko_symbols():
    """The reader behind pv-check walks kvm.ko's vm_list when no PACA names a vcore (a
    preempted one): it must see module symbols, not only vmlinux's (pv-vcore did)."""
    ko = Path(VMLINUX).parent.parent / "ko" / "kvm.ko"
    if not ko.is_file():
        pytest.skip(f"no {ko} next to the lab kernel (`pyvcore lab setup`)")
    out = gdb_batch(
        f"file {VMLINUX}",
        f"source {ENTRY}",
        f"add-symbol-file {ko} -s .text 0xc008000000000000 -s .data 0xc008000000100000 "
        "-s .bss 0xc008000000200000",
        "python from pyvcore._gdb_plugins import session",
        'python print("VM_LIST", session.kernel().layout.symbol("vm_list"))',
        "p/u (unsigned long)&vm_list",
    )
    found = re.search(r"VM_LIST (\S+)", out)
    gdb_says = re.search(r"\$1 = (\d+)", out)
    assert found and gdb_says, out
    assert found.group(1) == gdb_says.group(1), out


@needs_vmlinux
def test_help_apropos_and_completion():
    out = gdb_batch(
        f"file {VMLINUX}",
        f"source {ENTRY}",
        "help pv-vcore",
        "apropos kvm_hstate",
        "complete pv-watch o",
        "complete pv-check --j",
    )
    assert "Usage: pv-vcore [N|ADDR|all]" in out
    assert "pv-paca -- Show each hardware thread's PACA kvm_hstate" in out
    assert "pv-watch on" in out and "pv-watch off" in out
    assert "pv-check --json" in out


@needs_vmlinux
def test_bad_arguments_are_one_line():
    out = gdb_batch(
        f"file {VMLINUX}",
        f"source {ENTRY}",
        "pv-paca one two",
        "pv-paca x",
        "pv-watch on --max-stops 0",
        "pv-watch sideways",
    )
    assert "pv-paca: unrecognized arguments: two (see `help pv-paca`)" in out
    assert "pv-paca: CPU must be a number or `all`, not 'x'" in out
    assert "pv-watch: --max-stops must be at least 1" in out
    assert "pv-watch: argument action: invalid choice: 'sideways'" in out


# `maint info breakpoints` line of an internal (negative-numbered) breakpoint
INTERNAL_BP = re.compile(r"^-\d+\s+breakpoint\s+\S+\s+\S+\s+0x[0-9a-f]+\s+<([\w.]+)(?:\+(\d+))?>", re.M)


def internal_breakpoints(text: str) -> dict[str, int]:
    """symbol -> offset of every internal breakpoint listed in ``text``."""
    return {m.group(1): int(m.group(2) or 0) for m in INTERNAL_BP.finditer(text)}


@needs_vmlinux
def test_watch_plants_internal_breakpoints_at_local_entries_and_removes_them():
    out = gdb_batch(
        f"file {VMLINUX}",
        f"source {ENTRY}",
        "pv-watch on --log /dev/null",
        "pv-watch",
        "maint info breakpoints",
        "pv-watch off",
        "pv-watch off",
        "maint info breakpoints",
    )
    assert "pv-watch: on at kvmppc_hv_entry, kvmppc_primary_no_guest, kvm_do_nap" in out
    assert "not watched (symbol unknown): kvmppc_run_core, kvmppc_start_thread" in out
    assert "pv-watch: already off" in out
    before, after = out.split("pv-watch: off:")
    # Five internal breakpoints: the real-mode asm labels at their symbol, the C
    # function kvmhv_commence_exit at its ELFv2 local entry (st_other: 8 bytes
    # on, where callers sharing its TOC arrive); after `off`, none.
    assert internal_breakpoints(before) == {
        "kvmppc_hv_entry": 0,
        "kvmppc_primary_no_guest": 0,
        "kvm_do_nap": 0,
        "kvmhv_commence_exit": 8,
        "kvmhv_switch_to_host": 0,
    }
    assert internal_breakpoints(after) == {}


@needs_vmlinux
def test_an_unexpected_error_inside_a_command_is_one_line():
    out = gdb_batch(
        f"file {VMLINUX}",
        f"source {ENTRY}",
        "python from pyvcore._gdb_plugins import session; session.kernel = lambda: 1 / 0",
        "pv-snapshot",
    )
    assert "pv-snapshot: internal error: ZeroDivisionError: division by zero (please report it" in out


def test_no_target_no_vmlinux_and_bad_arguments_never_trace():
    out = gdb_batch(
        f"source {ENTRY}",
        "pv-watch on",
        "pv-check --json",
        "pv-snapshot --stop",
        "pv-vcore all",
        "set pv-memory sideways",
    )
    assert out.count("pyvcore: no vmlinux loaded") == 3
    assert "pv-snapshot: argument --stop: expected one argument" in out


def test_watch_writes_no_seq_after_a_run_start_it_could_not_count(tmp_path: Path):
    """pv-watch's run count (vcores[].seq): a kvmppc_run_core hit it could not
    read (or without the vcore in r3) may be a new run of any vcore, so no
    stop carries a seq until that vcore's next counted start, and a seq is
    never reused for another run."""
    script = (
        "from pyvcore._gdb_plugins.watch import Watcher\n"
        "w = Watcher(None, None, False)\n"
        "A = 0xc000000028186a00\n"
        "def stop(entry, source=None):\n"
        "    snap = {'vcores': [{'addr': A}]}\n"
        "    w._count_runs(entry, {A: source} if source else {}, snap)\n"
        "    return snap['vcores'][0].get('seq')\n"
        "seen = [stop('kvmppc_run_core', 'r3 at kvmppc_run_core'), stop(None)]\n"
        "w.log_error('kvmppc_run_core', RuntimeError('unreadable'))\n"
        "seen += [stop(None), stop('kvmppc_run_core', 'kvm_hstate.kvm_vcore'), stop(None)]\n"
        "seen += [stop('kvmppc_run_core', 'r3 at kvmppc_run_core'), stop(None)]\n"
        "print('SEQS', seen)\n"
    )
    script_file = tmp_path / "seq.py"
    script_file.write_text(script)
    out = gdb_batch(f"source {ENTRY}", f"source {script_file}")
    assert "SEQS [None, 1, None, None, None, None, 4]" in out, out
