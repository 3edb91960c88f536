"""`pyvcore check --vmcore`: post-mortem snapshots from ELF and kdump-compressed vmcores.

The lab tests make real dumps with QMP ``dump-guest-memory`` (tests/vmcore_lab.py):
each scenario dumped in both formats must be clean (three by default, every one with
``PYVCORE_MATRIX=full``), and the ``all`` scenario
dumped again after two PACAs' ptids were swapped in guest memory must be
flagged (invariant 3) in both formats.  The others run without a lab.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from pyvcore.cli import main
from pyvcore.decode import ThreadRegs
from pyvcore.diff import SCENARIOS  # the lab's one scenario table
from pyvcore.vmcore import Note, VmcoreError, _same_kernel, cores, thread_regs


# ------------------------------------------------------------------ no lab
def test_notes_are_matched_by_r13_then_by_position() -> None:
    pacas = {0: 0xC000000002000000, 1: 0xC000000002010000, 2: 0xC000000002020000}
    notes = [
        Note(0, 1, {"r13": 0xC000000002010000, "pc": 0x10, "msr": 0x9000000000001033}),  # cpu 1's PACA
        Note(1, 2, {"r13": 0x12345678, "pc": 0x20, "msr": 0x8000000000001001}),  # in a guest: guest r13
        Note(2, 3, {"r13": 0xC000000002020000, "pc": 0x30, "msr": 0x9000000000001033}),
    ]
    regs = thread_regs(notes, pacas, {0: 8, 1: 9, 2: 10})
    assert regs[1].pc == 0x10 and regs[2].pc == 0x30  # by r13
    assert regs[0].pc == 0x20  # no note has cpu 0's PACA in r13: the one left over
    assert all(isinstance(r, ThreadRegs) and r.pir == 8 + cpu for cpu, r in regs.items())


def test_cpus_are_grouped_by_core() -> None:
    assert list(cores([0, 1, 2, 3, 4, 5, 6, 7, 9], 4)) == [[0, 1, 2, 3], [4, 5, 6, 7], [9]]
    assert list(cores([0, 1], 0)) == [[0], [1]]


class _Image:
    def __init__(self, banner: str) -> None:
        self.banner = banner

    def address(self, name: str) -> int:
        return 0xC000000001000000


class _Mem:
    def __init__(self, text: bytes) -> None:
        self.text = text

    def read(self, addr: int, size: int) -> bytes:
        return self.text[:size].ljust(size, b"\0")


def test_a_dump_of_another_kernel_is_refused() -> None:
    ours = "Linux version 6.12.95+deb12-powerpc64le (debian-kernel@lists.debian.org)"
    _same_kernel(_Image(ours), _Mem(ours.encode()))  # type: ignore[arg-type]
    with pytest.raises(VmcoreError, match="the dump is of another kernel"):
        _same_kernel(
            _Image(ours), _Mem(b"Linux version 6.1.0-30-powerpc64le (debian-kernel@lists.debian.org)")
        )  # type: ignore[arg-type]


def test_unusable_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "vmcore"
    junk.write_bytes(b"\x7fELF" + b"\0" * 60)
    cases = [
        (["check", "--vmcore", str(junk)], "--vmcore needs --vmlinux"),
        (["check", "--vmcore", str(junk), "--vmlinux", str(junk)], "--vmlinux"),
        (["check", "--vmcore", str(tmp_path / "none"), "--vmlinux", str(junk)], "--vmlinux"),
        (["check"], "give a TRACE.jsonl"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------- lab
@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from pyvcore.lab import Lab, LabNotSetUp

    try:
        Lab("all")._prepare()
    except LabNotSetUp as exc:
        pytest.skip(f"the lab is not set up: {exc}")
    root = tmp_path_factory.mktemp("vmcores")
    made: dict[str, dict[str, Any]] = {}

    def get(scenario: str) -> dict[str, Any]:
        import vmcore_lab

        if scenario not in made:
            made[scenario] = vmcore_lab.make_dumps(scenario, root / scenario, corrupt=scenario == "all")
        return made[scenario]

    yield get
    shutil.rmtree(root, ignore_errors=True)  # 2 GB per ELF dump


def _check(path: Path, vmlinux: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["check", "--vmcore", str(path), "--vmlinux", vmlinux, "--json"])
    return code, json.loads(capsys.readouterr().out)


# Every scenario with PYVCORE_MATRIX=full; by default the three whose dumps differ most
# (4 vcpus in the guest, every vcpu ceded with thread 0 napping, two vcores through one core):
# each dump writes 2 GB of ELF.
DUMP_SCENARIOS = (
    list(SCENARIOS) if os.environ.get("PYVCORE_MATRIX") == "full" else ["all", "cede-all", "two-vcores"]
)


@pytest.mark.lab
@pytest.mark.parametrize("scenario", DUMP_SCENARIOS)
def test_lab_dump_of_every_scenario_is_clean_in_both_formats(
    dumps: Any, scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    made = dumps(scenario)
    for fmt in ("elf", "kdump"):
        code, doc = _check(made[fmt], made["vmlinux"], capsys)
        assert code == 0, (fmt, doc)
        assert doc["verdict"] == "clean" and doc["format"] == ("elf" if fmt == "elf" else "diskdump")
        assert doc["cores"] and all(c["snapshot"]["vcores"] for c in doc["cores"])
        # LPIDR/SDR1 and DPDES are in no dump note; QEMU's kdump files have no notes at all (MSR)
        expected = {8, 31} if fmt == "elf" else {8, 31, 32}
        assert set(doc["not_judged_for_missing_registers"]) == expected
        threads = doc["cores"][0]["snapshot"]["threads"]
        assert [t["hw_cpu_id"] for t in threads] == [8, 9, 10, 11]
        assert all(isinstance(t["kvm_hstate"]["kvm_vcore"], str) for t in threads)  # hex strings
    if scenario != "all":  # the corrupted-dump test reuses `all`; the others' 2 GB ELF files go now
        Path(made["elf"]).unlink(missing_ok=True)


@pytest.mark.lab
def test_corrupted_lab_dump_is_flagged_in_both_formats(
    dumps: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    made = dumps("all")
    for fmt in ("bad-elf", "bad-kdump"):
        code, doc = _check(made[fmt], made["vmlinux"], capsys)
        assert code == 1 and doc["verdict"] == "violations", fmt
        found = [v for c in doc["cores"] for v in c["violations"]]
        assert {v["invariant"] for v in found} == {3}
        assert any(
            "has PACA ptid" in v["message"] and "not its own thread number" in v["message"] for v in found
        )
    code = main(["check", "--vmcore", str(made["bad-kdump"]), "--vmlinux", made["vmlinux"]])
    text = capsys.readouterr().out
    assert code == 1 and "not judged: invariant 8" in text and "violations" in text.splitlines()[-1]
