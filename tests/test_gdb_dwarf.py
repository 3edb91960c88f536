"""Layouts from gdb's DWARF types equal layouts from BTF for the same C structs.

A tiny ppc64le object declares stand-ins of the kernel structs (with an
anonymous union, a bitfield, arrays, typedefs); it is compiled twice with the
cross gcc, once with DWARF (-g) and once with BTF (-gbtf), and the gdb plugin's
DWARF source is compared field by field with the Rust BTF reader."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pyvcore._core import KernelImage
from pyvcore.layout import Layouts

CC = shutil.which("powerpc64le-linux-gnu-gcc")
GDB = shutil.which("gdb-multiarch")
ENTRY = Path(__file__).resolve().parent.parent / "pyvcore" / "gdb.py"
pytestmark = [
    pytest.mark.gdb,
    pytest.mark.skipif(
        CC is None or GDB is None,
        reason="needs powerpc64le-linux-gnu-gcc and gdb-multiarch (`pyvcore lab setup`)",
    ),
]

SOURCE = """
typedef unsigned char u8; typedef unsigned short u16; typedef unsigned long long u64;
struct kvm; struct kvm_vcpu;
struct kvmppc_vcore { int n_runnable; int num_threads; int entry_exit_map; int napping_threads;
  int first_vcpuid; u16 pcpu; u16 last_cpu; u8 vcore_state; u8 in_guest;
  struct kvm_vcpu *runnable_threads[8]; struct kvm_vcpu *runner; struct kvm *kvm; };
struct kvmppc_host_state { unsigned long host_r1; u8 in_guest; u8 restore_hid5; u8 napping;
  u8 hwthread_req; u8 hwthread_state; u8 host_ipi; u8 ptid; u8 fake_suspend;
  struct kvm_vcpu *kvm_vcpu; struct kvmppc_vcore *kvm_vcore; };
struct paca_struct { void *lppaca_ptr; u16 paca_index; union { struct { u8 a; u8 b; }; u64 c; };
  short hw_cpu_id; struct kvmppc_host_state kvm_hstate; };
struct kvm_vcpu_arch { u8 ceded; struct kvmppc_vcore *vcore; int state; int ptid; int thread_cpu;
  int bits:3; };
struct kvm_vcpu { struct kvm *kvm; int cpu; int vcpu_id; struct kvm_vcpu_arch arch; };
struct kvm_arch { u64 lpid; unsigned int smt_mode; unsigned int host_lpid; unsigned long sdr1;
  unsigned long host_sdr1; struct kvmppc_vcore *vcores[4]; };
struct kvm { int x; struct { void *next, *prev; } vm_list; struct kvm_arch arch; };
struct paca_struct **paca_ptrs; unsigned int nr_cpu_ids = 4;
struct kvm the_kvm; struct kvm_vcpu the_vcpu; struct paca_struct the_paca;
"""

PATHS = {
    "paca_struct": ["paca_index", "a", "b", "c", "hw_cpu_id", "kvm_hstate.ptid", "kvm_hstate.kvm_vcore"],
    "kvmppc_vcore": ["entry_exit_map", "pcpu", "vcore_state", "runnable_threads", "runner", "kvm"],
    "kvm_vcpu": ["cpu", "vcpu_id", "arch.vcore", "arch.ptid", "arch.thread_cpu", "arch.bits"],
    "kvm": ["vm_list", "arch.lpid", "arch.sdr1", "arch.host_lpid", "arch.vcores"],
}
KEYS = ("offset", "size", "kind", "signed", "array_len", "elem_size", "inner_kind", "bitfield_size")


# Run here and inside gdb's own Python (which has no pytest): kept as source.
FIELDS = f"""
PATHS = {PATHS!r}
KEYS = {KEYS!r}
def fields(layouts):
    out = {{}}
    for struct, paths in PATHS.items():
        s = layouts.struct(struct)
        for p in paths:
            f = s.field(p)
            out[struct + "." + p] = [getattr(f, k) for k in KEYS]
    return out
"""
_ns: dict = {}
exec(FIELDS, _ns)
fields = _ns["fields"]


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("dwarf")
    (d / "k.c").write_text(SOURCE)
    subprocess.run([CC, "-c", "-g", "-o", str(d / "k-dwarf.o"), str(d / "k.c")], check=True)
    r = subprocess.run([CC, "-c", "-gbtf", "-o", str(d / "k-btf.o"), str(d / "k.c")])
    if r.returncode:
        pytest.skip("this gcc cannot emit BTF (-gbtf)")
    return d / "k-dwarf.o", d / "k-btf.o"


def test_dwarf_layouts_equal_btf_layouts(objects, tmp_path):
    dwarf, btf = objects
    expected = fields(Layouts(KernelImage(str(btf)), "BTF"))
    # An oracle independent of both readers (the C above, ppc64 LP64 rules):
    # the two readers must not merely agree with each other.
    assert expected["kvmppc_vcore.entry_exit_map"][:2] == [8, 4]
    assert expected["kvmppc_vcore.runner"][:3] == [32 + 8 * 8, 8, "ptr"]
    assert expected["paca_struct.hw_cpu_id"][:2] == [24, 2]
    assert expected["kvm_vcpu.arch.bits"][-1] == 3
    script = tmp_path / "dump.py"
    script.write_text(
        "import json\n" + FIELDS + "from pyvcore._gdb_plugins import session\n"
        "from pyvcore.layout import Layouts\n"
        "print('@@' + json.dumps(fields(Layouts(session.GdbTypeSource(), 'DWARF'))))\n"
    )
    out = subprocess.run(
        [
            GDB,
            "-nx",
            "-q",
            "-batch",
            "-ex",
            f"file {dwarf}",
            "-ex",
            f"source {ENTRY}",
            "-ex",
            f"source {script}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text
    assert "layouts from DWARF" in text.replace(":\n  ", ": ").replace(";\n  ", "; ").splitlines()[0]
    got = json.loads(next(line for line in text.splitlines() if line.startswith("@@"))[2:])
    assert got == expected
