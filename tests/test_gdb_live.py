"""pv-paca, pv-vcore, pv-snapshot, pv-check and pv-watch against the real lab.

Boots the QEMU powernv8 lab (patched QEMU, Debian 6.12 kernel, kvm-hv) once per
scenario, then runs a real gdb-multiarch in batch mode with the exact command
line `pyvcore gdb` builds (vmlinux, kvm/kvm-hv symbols at the addresses the
guest reported, target remote, source pyvcore/gdb.py).  Each gdb run lets
pv-watch take snapshots at kvmppc_run_core / kvmppc_hv_entry / kvmhv_switch_to_host
(the first in kvm-hv.ko, at its ELFv2 local entry), then stops
inside the guest at the VMM's spin loop and prints every command's output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from typing import Any

import pytest

from pyvcore.gdbcli import gdb_command, module_commands

pytestmark = [
    pytest.mark.lab,
    pytest.mark.gdb,
    pytest.mark.skipif(
        shutil.which("gdb-multiarch") is None, reason="gdb-multiarch not installed (`pyvcore lab setup`)"
    ),
]

WATCH_STOPS = 16


def num(value: Any) -> int:
    """A snapshot value: addresses and 64-bit values are written as hex strings."""
    return int(value, 16) if isinstance(value, str) else int(value)


def start_lab(scenario: str) -> Any:
    """A started Lab; waits (bounded: PYVCORE_LAB_WAIT seconds, default 600)
    while another QEMU holds the machine lock."""
    from pyvcore.lab import Lab, LabBusy, LabNotSetUp

    deadline = time.monotonic() + float(os.environ.get("PYVCORE_LAB_WAIT", "600"))
    while True:
        lab = Lab(scenario=scenario, threads=4, qemu="patched", hold=0)
        try:
            return lab.start()
        except LabNotSetUp as e:
            pytest.skip(f"lab not set up ({e}); run `pyvcore lab setup`")
        except LabBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(5)


class Session:
    """What one batch gdb run against a scenario printed, split per command."""

    def __init__(self, lab: Any, tmp: Any):
        status = lab.status()
        spin_pc = spin_pc_of(lab)
        self.log = tmp / "watch.jsonl"
        commands = [
            f"pv-watch on --at kvmppc_run_core,kvmppc_hv_entry,kvmhv_switch_to_host --log {self.log} "
            f"--max-stops {WATCH_STOPS}",
            "continue",
            # a stop inside the guest: the VMM's spin loop, guest (MSR[HV]=0) only
            f"break *{spin_pc:#x} if ($msr & (1 << 60)) == 0",
            "continue",
            "delete",
            "echo @@pv-paca\\n",
            "pv-paca",
            "echo @@pv-vcore\\n",
            "pv-vcore",
            "echo @@pv-snapshot\\n",
            "pv-snapshot --json -",
            "echo @@pv-check\\n",
            "pv-check --json",
            "echo @@pv-check-table\\n",
            "pv-check",
            f"pv-snapshot --json {tmp / 'trace.jsonl'}",
            f"pv-snapshot --json {tmp / 'trace.jsonl'}",
            "echo @@end\\n",
        ]
        argv = gdb_command(vmlinux=status["vmlinux"], remote=status["gdb"], modules=module_commands(status))
        argv[1:1] = ["-nx", "-batch"]
        for c in commands:
            argv += ["-ex", c]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        self.text = out.stdout + out.stderr
        assert "Traceback" not in self.text, self.text[-3000:]
        parts = re.split(r"^@@([\w-]+)$", self.text, flags=re.M)
        self.banner = (
            parts[0].replace(":\n  ", ": ").replace(";\n  ", "; ")
        )  # one part per line when wider than 80
        self.out = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}
        self.snapshot = json.loads(self.out["pv-snapshot"].splitlines()[0])
        self.check = json.loads(self.out["pv-check"].splitlines()[0])
        self.watch = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        self.trace = tmp / "trace.jsonl"


def spin_pc_of(lab: Any) -> int:
    text = lab.console.read_text(errors="replace")
    m = re.search(r"PYVCORE VMM .*spin_pc=(0x[0-9a-f]+)", text)
    assert m, "the VMM did not report its spin loop address"
    return int(m.group(1), 16)


@pytest.fixture(scope="module", params=["all", "novcpu0"])
def session(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Session:
    lab = start_lab(request.param)
    try:
        s = Session(lab, tmp_path_factory.mktemp(f"gdb-{request.param}"))
        s.scenario = request.param  # type: ignore[attr-defined]
        yield s
    finally:
        lab.stop()


def test_banner_and_module_symbols(session: Session) -> None:
    assert "layouts from BTF, paca_ptrs, entry_exit_map -> variant modern" in session.banner
    assert "4 threads" in session.banner
    assert "kvm-hv.ko symbols not loaded" not in session.banner


def test_threads_match_pacas(session: Session) -> None:
    s = session.snapshot
    assert s["variant"] == "modern" and s["threads_per_core"] == 4
    assert [t["cpu"] for t in s["threads"]] == [0, 1, 2, 3]
    hw = [t["hw_cpu_id"] for t in s["threads"]]
    assert hw == list(range(hw[0], hw[0] + 4))  # powernv8: PIR = chip<<7 | core<<3 | thread


def test_ptid_n_on_thread_n_at_every_stop(session: Session) -> None:
    snaps = [r for r in session.watch if r.get("threads")] + [session.snapshot]
    assert len(snaps) >= WATCH_STOPS // 2, [r.get("error") for r in session.watch]
    for s in snaps:
        vcpus = {v["addr"]: v for v in s["vcpus"]}
        for t in s["threads"]:
            hs = t["kvm_hstate"]
            if num(hs["kvm_vcpu"]):
                assert hs["ptid"] == t["cpu"], (s.get("stop"), t)
                assert vcpus[hs["kvm_vcpu"]]["vcpu_id"] == hs["ptid"], (s.get("stop"), t)
                assert vcpus[hs["kvm_vcpu"]]["ptid"] == hs["ptid"]


def test_scenario_state(session: Session) -> None:
    snaps = [r for r in session.watch if r.get("threads")] + [session.snapshot]

    def placed(s: dict) -> dict[int, tuple[int, bool, bool]]:
        return {
            t["cpu"]: (
                t["kvm_hstate"]["ptid"],
                bool(num(t["kvm_hstate"]["kvm_vcpu"])),
                bool(num(t["kvm_hstate"]["kvm_vcore"])),
            )
            for t in s["threads"]
        }

    if session.scenario == "all":  # type: ignore[attr-defined]
        want = {n: (n, True, True) for n in range(4)}
        assert any(placed(s) == want for s in snaps), [placed(s) for s in snaps]
        (vc,) = session.snapshot["vcores"]
        assert vc["num_threads"] == 4 and vc["first_vcpuid"] == 0 and vc["pcpu"] == 0
        assert sorted(v["vcpu_id"] for v in session.snapshot["vcpus"]) == [0, 1, 2, 3]
    else:
        # thread 0 switched the MMU with no vcpu of its own; vcpu 1 runs on thread 1
        assert any(p[0] == (0, False, True) and p[1] == (1, True, True) for p in map(placed, snaps)), [
            placed(s) for s in snaps
        ]
        (vc,) = session.snapshot["vcores"]
        assert vc["first_vcpuid"] == 0 and vc["pcpu"] == 0
        assert [v["vcpu_id"] for v in session.snapshot["vcpus"]] == [1]
    assert num(session.snapshot["kvm"]["lpid"]) != num(session.snapshot["kvm"]["host_lpid"])


def test_snapshot_v2_fields(session: Session) -> None:
    # every watch stop: the timebase of the stopping thread, the kernel's
    # ppc_tb_freq (POWER8: 512 MHz), pc/msr per thread, where the vcore came from
    stops = [r for r in session.watch if r.get("threads")]
    assert stops
    tbs = [num(r["tb"]) for r in stops]
    assert all(r["version"] == 2 and r["tb_freq"] == 512_000_000 for r in stops)
    assert tbs == sorted(tbs) and len(set(tbs)) == len(tbs), tbs  # the timebase only moves forward
    for r in stops:
        # at kvmppc_run_core's entry no PACA points at the vcore yet: it is the argument
        want = "r3 at kvmppc_run_core" if r["stop"].startswith("kvmppc_run_core") else "kvm_hstate.kvm_vcore"
        assert r["vcores"] and want in r["vcore_from"], (r["stop"], r["vcore_from"])
        # 6.12 has vc->tb_offset and tb_offset_applied; the lab's guest sets no offset
        offsets = [(num(vc["tb_offset"]), num(vc["tb_offset_applied"])) for vc in r["vcores"]]
        assert set(offsets) == {(0, 0)}, (r["stop"], offsets)
        for t in r["threads"]:  # SF set; a kernel or a real address
            assert num(t["msr"]) >> 60 in (0x8, 0x9) and num(t["pc"]) >> 60 in (0x0, 0xC), t
        # HDEC and the core's DPDES are read on the stopping thread (label@cpuN)
        assert "@cpu" in r["stop"], r["stop"]  # the stopping thread was matched to its cpu
        cpu = int(r["stop"].rsplit("@cpu", 1)[1])
        me = [t for t in r["threads"] if t["cpu"] == cpu]
        assert me and "hdec" in me[0] and "dpdes" in me[0], (r["stop"], me)
        assert all("dpdes" not in t for t in r["threads"] if t["cpu"] != cpu)
    # the vcore's run count (seq) is written once its kvmppc_run_core was seen, and
    # grows by one per kvmppc_run_core hit in between (a hit that could not be read
    # is a missed start: it moves the count on too, gdb_plugins/watch.py missed_start)
    last: int | None = None
    starts = 0
    for r in session.watch:
        if r.get("stop", "").startswith("kvmppc_run_core"):
            starts += 1
        if not (r.get("threads") and r.get("vcores")) or "seq" not in r["vcores"][0]:
            continue
        seq = r["vcores"][0]["seq"]
        if last is not None:
            assert last <= seq <= last + starts, (r["stop"], last, seq, starts)
        last, starts = seq, 0
    assert last is not None, "no stop carried a run count"


def test_in_guest_stop_reads_guest_mmu(session: Session) -> None:
    # stopped at the guest's spin loop: that thread is in the guest, and the
    # LPIDR of thread 0 is the guest's (thread 0 did the partition switch)
    s = session.snapshot
    guest = [t for t in s["threads"] if t["kvm_hstate"]["in_guest"] == 3]
    assert guest, s["threads"]
    assert num(s["threads"][0]["lpidr"]) == num(s["kvm"]["lpid"])
    assert num(s["threads"][0]["sdr1"]) == num(s["kvm"]["sdr1"])


def test_pv_paca_table(session: Session) -> None:
    text = session.out["pv-paca"]
    assert "layouts from BTF, variant modern" in " ".join(text.split())  # the header wraps at 80
    # one row per thread: cpu, t, pir, in_guest, napping, req, hwthread_state, ptid, vcpu, vcore
    rows = re.findall(
        r"^(\d+)\s+t(\d)\s+0x[0-9a-f]+\s+(\S+)\s+\S+\s+\S+\s+\S+\s+(\S+)\s+\S+\s+\S+$", text, re.M
    )
    assert [(cpu, t) for cpu, t, _, _ in rows] == [("0", "0"), ("1", "1"), ("2", "2"), ("3", "3")]
    assert max(map(len, text.splitlines())) <= 80
    values = [ptid for _, _, _, ptid in rows]
    if session.scenario == "all":  # type: ignore[attr-defined]
        assert values == ["0", "1", "2", "3"], text
    else:
        assert values[:2] == ["0", "1"]
    assert "GUEST_HV" in [in_guest for _, _, in_guest, _ in rows]


def test_pv_vcore_decoded(session: Session) -> None:
    text = session.out["pv-vcore"]
    assert re.search(r"^(vc\d+ )?vcore 0xc[0-9a-f]+\s+kvm 0xc[0-9a-f]+ \(lpid \d+\)", text, re.M)
    assert re.search(r"vcore_state \d (RUNNING|EXITING|PREEMPT|INACTIVE)", text)
    assert re.search(r"entry_exit_map 0x[0-9a-f]+: entered \{[0-9,]*\} exiting \{[0-9,]*\}", text)
    if session.scenario == "all":  # type: ignore[attr-defined]
        rows = re.findall(r"^(\d)\s+(\d)\s+0xc[0-9a-f]+\s", text, re.M)
        assert sorted(rows) == [("0", "0"), ("1", "1"), ("2", "2"), ("3", "3")]


def test_pv_check_clean_on_a_correct_kernel(session: Session) -> None:
    assert session.check["violations"] == [], session.check["violations"]
    assert "no invariant violated (modern)" in session.out["pv-check-table"]
    watched = [r for r in session.watch if "violations" in r]
    assert watched and all(r["violations"] == [] for r in watched), [
        (r["stop"], r["violations"]) for r in watched if r["violations"]
    ]


def test_snapshot_appends_build_a_trace_pyvcore_check_reads(session: Session) -> None:
    from pyvcore.cli import main

    lines = session.trace.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["threads"]
    assert main(["check", str(session.trace)]) == 0
