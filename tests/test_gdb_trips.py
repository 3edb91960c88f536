"""Round trips of one pv-watch pass, counted from what gdb-multiarch sends.

gdb and the plugin talk to a fake POWER8 stub (``fake_gdbstub``) that serves
the memory of the lab's ``all`` scenario (``tests/data/small-core-all-6.12.json``:
4 threads, one vcore, 4 vcpus) with the real 6.12 vmlinux loaded, so the
count is gdb's own: its register cache, its ``Hg`` bookkeeping and the
plugin's reads.  A pass starts as a stop does: gdb has read the stopping
thread's ``g`` and the stub has that thread selected.  No QEMU.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from fake_gdbstub import FakeStub
from test_btf import VMLINUX

GDB = shutil.which("gdb-multiarch")
ENTRY = Path(__file__).resolve().parent.parent / "pyvcore" / "gdb.py"
DUMP = Path(__file__).parent / "data" / "small-core-all-6.12.json"
pytestmark = [
    pytest.mark.gdb,
    pytest.mark.skipif(GDB is None, reason="gdb-multiarch not installed (`pyvcore lab setup`)"),
    pytest.mark.skipif(VMLINUX is None, reason="no ppc64 vmlinux (`pyvcore lab setup`)"),
]
MSR_HOST = 0x9000_0000_0000_1033  # SF HV ME IR DR RI LE
# The three secondaries' PACAs and the SLB shadows between them (the dump
# keeps only the bytes a reader read; the kernel has memory there).
PACAS_1_3 = (0xC000_0000_7FFF_F000, 0xC000_0000_8000_0000)

SCRIPT = """
import gdb, json
from pyvcore._gdb_plugins import session
from pyvcore.snapshot import to_wire
conn = gdb.selected_inferior().connection
def snap(stop, **kw):
    reading, _ = session.read_state(stop=stop, **kw)
    print("SNAP " + json.dumps(to_wire(reading.snapshot)))
session.read_state(stop="warm-up", in_stop=True)
# a new stop at thread 1: nothing cached but the g gdb read to find the breakpoint
gdb.execute("maintenance flush register-cache", to_string=True)
gdb.parse_and_eval("$pc")
conn.send_packet("qMark:a")
snap("stop", in_stop=True)
conn.send_packet("qMark:b")
# a script read thread 2's PIR, then selected thread 3: the stub still has 2
by_num = {t.num: t for t in gdb.selected_inferior().threads()}
by_num[2].switch()
gdb.parse_and_eval("$pir")
by_num[3].switch()
conn.send_packet("qMark:c")
snap("user")
conn.send_packet("qMark:d")
"""


def num(value: int | str | None) -> int | None:
    """A snapshot value: 64-bit ones are hex strings on the wire."""
    return int(value, 16) if isinstance(value, str) else value


def thread_regs(tid: int) -> dict[str, int]:
    return {
        "pc": 0xC000_0000_0010_0000 + 0x100 * tid,
        "msr": MSR_HOST,
        "r3": 0x3000 + tid,
        "r4": 0x4000 + tid,
        "pir": 8 + tid - 1,
        "lpidr": 0,
        "sdr1": 0x7C00_0007,
        "tb": 0x10_0000_0000 + tid,
        "hdec": 0x7000 + tid,
        "dpdes": 0,
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakeStub, list[dict]]:
    from pyvcore._core import KernelImage

    image = KernelImage(str(VMLINUX))
    tb_freq = image.address("ppc_tb_freq")
    assert tb_freq is not None
    memory = {int(a, 16): bytes.fromhex(v) for a, v in json.loads(DUMP.read_text())["segments"].items()}
    memory[tb_freq] = (512_000_000).to_bytes(8, "little")
    stub = FakeStub(regs={t: thread_regs(t) for t in (1, 2, 3, 4)}, memory=memory, zero=[PACAS_1_3])
    script = tmp_path_factory.mktemp("trips") / "pass.py"
    script.write_text(SCRIPT)
    argv = [GDB, "-nx", "-q", "-batch", "-ex", f"file {VMLINUX}", "-ex", f"source {ENTRY}"]
    argv += ["-ex", f"target remote 127.0.0.1:{stub.port}", "-ex", f"source {script}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert "Traceback" not in text and "pyvcore:" not in text, text
    snaps = [json.loads(line[5:]) for line in out.stdout.splitlines() if line.startswith("SNAP ")]
    assert len(snaps) == 2, text
    return stub, snaps


def test_a_stop_costs_at_most_30_round_trips(run: tuple[FakeStub, list[dict]]):
    stub, _ = run
    kinds = Counter(p[0] for _, p in stub.between("a", "b"))
    # Hg for threads 2-4 only; g of threads 2-4 (thread 1's is gdb's, from the
    # stop); p: LPIDR+SDR1 x 4, TB, HDEC, DPDES of thread 1; m: PACA 0, PACAs
    # 3+2 in one request, PACA 1, the vcore, 2 ranges x 4 vcpus
    assert kinds == {"H": 3, "g": 3, "p": 11, "m": 12}, stub.between("a", "b")
    assert sum(kinds.values()) <= 30


def test_every_register_request_went_to_its_thread(run: tuple[FakeStub, list[dict]]):
    stub, _ = run
    requests = stub.between("a", "b")
    spr = [(sel, p) for sel, p in requests if p[0] in "gp"]
    # thread 1 (the stopping one) first, with no Hg, then 2, 3, 4 after theirs
    assert [sel for sel, _ in spr] == [1] * 5 + [2] * 3 + [3] * 3 + [4] * 3
    assert [p for _, p in requests if p[0] == "H"] == ["Hg2", "Hg3", "Hg4"]


def test_the_snapshot_carries_each_threads_own_registers(run: tuple[FakeStub, list[dict]]):
    stub, (at_stop, by_user) = run
    for snap, stopper in ((at_stop, 1), (by_user, 3)):
        assert num(snap["tb"]) == 0x10_0000_0000 + stopper
        assert len(snap["threads"]) == 4
        for t in snap["threads"]:
            tid = t["hw_cpu_id"] - 8 + 1
            assert num(t["pc"]) == 0xC000_0000_0010_0000 + 0x100 * tid
            assert num(t.get("hdec")) == (0x7000 + tid if tid == stopper else None)
    # the user's pass: gdb sent the Hg the stub needed (it had thread 2 selected)
    first = stub.between("c", "d")[0]
    assert first == (2, "Hg3")
