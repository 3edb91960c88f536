"""`pyvcore.diff.run_diff` and the `pyvcore diff` CLI around it, with the live half faked.

The records are the real 6.12 trace of ``tests/test_diff.py``; the lab, gdb and
pv-watch are replaced by a function returning a LiveRun, so these run anywhere.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import elfcraft
import pytest
from test_diff import fake_run, real_records, swap_ptids

from pyvcore import diff
from pyvcore.diff import DiffInterrupted, LiveRun, hexify, run_diff, summarize
from pyvcore.diff_cli import Progress


def _fake(
    monkeypatch: pytest.MonkeyPatch, run: LiveRun | BaseException, seen: dict[str, Any] | None = None
) -> None:
    def fake_run_live(scenario: str, **kwargs: Any) -> LiveRun:
        if seen is not None:
            seen.update(kwargs, scenario=scenario)
        if isinstance(run, BaseException):
            raise run
        return run

    monkeypatch.setattr(diff, "run_live", fake_run_live)


def test_clean_run_is_judged_per_stop_kind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    _fake(monkeypatch, fake_run(real_records(), tmp_path), seen)
    result = run_diff("all", qemu="patched", stops=4, variant=None, kernel="/k/vmlinux", modules="/k/mods")
    assert result.verdict == "clean" and result.exit_code == 0
    assert result.judged == {"kvmppc_hv_entry": 1, "kvmhv_switch_to_host": 3}
    assert result.violations == []
    # --kernel/--modules reach the lab when run_diff boots it
    assert seen["kernel"] == "/k/vmlinux" and seen["modules"] == "/k/mods" and seen["lab"] is None


def test_violations_verdict_carries_invariant_and_stop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    records = real_records()
    records[2] = swap_ptids(records[2], 0, 1)
    _fake(monkeypatch, fake_run(records, tmp_path))
    result = run_diff("all", stops=4)
    assert result.verdict == "violations" and result.exit_code == 1
    assert {v["invariant"] for v in result.violations} >= {3}
    assert all(v["stop"] == "kvmhv_switch_to_host@cpu2" for v in result.violations)


def test_a_stop_kind_never_judged_is_not_clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """kvmppc_run_core stops whose vcore could not be read: not judged, exit 2."""
    records = real_records()
    blind = copy.deepcopy(records[0])
    blind["stop"], blind["vcores"], blind["vcpus"] = "kvmppc_run_core#3", [], []
    unreadable = {
        "stop": "kvmppc_start_thread@cpu1",
        "error": "Cannot access memory at address 0xd000000001234000",
    }
    _fake(monkeypatch, fake_run([*records, blind, unreadable], tmp_path))
    result = run_diff("all", stops=6)
    assert result.verdict == "not-judged" and result.exit_code == 2
    assert result.judged["kvmppc_run_core"] == 0 and result.judged["kvmppc_start_thread"] == 0
    rows = result.summary.stops if result.summary else {}
    assert rows["kvmppc_run_core"]["reasons"] == {"no vcore found": 1}
    assert "Cannot access memory" in next(iter(rows["kvmppc_start_thread"]["reasons"]))
    text = diff.format_table(result.run, result.summary)  # type: ignore[arg-type]
    assert "not judged: stop kind(s) never judged: kvmppc_run_core, kvmppc_start_thread" in text
    assert "1x no vcore found" in text


def test_empty_trace_is_not_judged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake(monkeypatch, fake_run([], tmp_path))
    result = run_diff("all")
    assert result.verdict == "not-judged" and result.exit_code == 2


def test_a_run_that_fails_is_an_error_verdict_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(monkeypatch, RuntimeError("boot hung twice\nconsole tail: ..."))
    result = run_diff("cede")
    assert result.verdict == "error" and result.exit_code == 2
    assert result.error == "boot hung twice"  # its words, never its class name


def test_bare_gdbstub_needs_the_kernel(tmp_path: Path) -> None:
    result = run_diff("all", attach="127.0.0.1:1")
    assert result.verdict == "error" and "--kernel NAME|VMLINUX" in (result.error or "")
    broken = tmp_path / "broken"
    broken.write_bytes(b"\x7fELF")
    with pytest.raises(diff.DiffError, match="not an ELF file"):  # refused before gdb starts
        diff.resolve_attach("127.0.0.1:1", broken)
    vmlinux = elfcraft.write_vmlinux(tmp_path / "vmlinux")
    with pytest.raises(diff.DiffError, match=r"^nothing answers at 127\.0\.0\.1:1 "):
        diff.resolve_attach("127.0.0.1:1", vmlinux)
    import socket

    with socket.socket() as listening:  # something answers: the target is that gdbstub
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        target = diff.resolve_attach(address, vmlinux)
    assert isinstance(target, diff.GdbStub) and target.gdb_address == address
    assert target.status()["hold"] == 0  # no console: no reports to wait for
    with pytest.raises(diff.DiffError, match="HOST:PORT"):
        diff.resolve_attach("nonsense", vmlinux)


def test_bare_gdbstub_takes_a_kernel_the_lab_set_up_by_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--attach HOST:PORT --kernel 6.12: the set-up kernel's vmlinux (it was read as a path)."""
    import socket

    from pyvcore.lab.cache import cache_dir
    from pyvcore.lab.inputs import KernelManifest

    manifest = KernelManifest.load(cache_dir(), name="6.12")
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        if manifest is not None:
            target = diff.resolve_attach(address, "6.12")
            assert isinstance(target, diff.GdbStub)
            assert target.release and target.release in Path(manifest.vmlinux).name
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing set up
        with pytest.raises(diff.DiffError, match=r"lab not set up: missing kernel 6\.12 .*lab setup"):
            diff.resolve_attach(address, "6.12")


def test_temporary_trace_is_removed_unless_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for keep in (False, True):
        tmp = tmp_path / f"pyvcore-diff-{keep}"
        tmp.mkdir()
        run = fake_run(real_records(), tmp)
        run.temp_dir = tmp
        _fake(monkeypatch, run)
        result = run_diff("all", keep=keep)
        assert tmp.exists() is keep
        assert (result.trace is not None) is keep
        assert result.verdict == "clean"  # judged from the records read before removal


def test_json_has_verdict_and_hex_addresses(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    records = real_records()
    records[1] = swap_ptids(records[1], 0, 1)
    _fake(monkeypatch, fake_run(records, tmp_path))
    from pyvcore.cli import main

    assert main(["diff", "--json", "--stops", "4"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "violations" and doc["judged"]["kvmhv_switch_to_host"] == 3
    fields = [
        f for v in doc["violations"] for k, f in v["fields"].items() if k.endswith(("kvm_vcore", ".vcore"))
    ]
    assert fields and all(isinstance(f, str) and f.startswith("0xc0000") for f in fields)


def test_hexify_keeps_small_numbers_and_writes_addresses_exactly() -> None:
    doc = hexify({"threads[1].kvm_hstate.kvm_vcore": 0xC000000002C9D700, "ptid": 3, "x": 2**40, "lpidr": 1})
    assert doc == {
        "threads[1].kvm_hstate.kvm_vcore": "0xc000000002c9d700",
        "ptid": 3,
        "x": "0x10000000000",
        "lpidr": "0x1",
    }


def test_ctrl_c_names_the_partial_trace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    partial = tmp_path / "partial.jsonl"
    partial.write_text("{}\n{}\n")
    _fake(monkeypatch, DiffInterrupted(partial, 2))
    from pyvcore.cli import main

    assert main(["diff"]) == 130
    assert f"interrupted; partial trace (2 stops) kept in {partial}" in capsys.readouterr().err


def test_cli_could_not_run_is_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake(monkeypatch, OSError("gdb-multiarch not found"))
    from pyvcore.cli import main

    assert main(["diff", "--scenario", "cede"]) == 2
    assert capsys.readouterr().err.endswith("pyvcore diff: could not run: gdb-multiarch not found\n")


def test_attach_to_nothing_is_the_same_fast_line_as_gdb_remote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket
    import time

    from pyvcore.cli import main

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    vmlinux = elfcraft.write_vmlinux(tmp_path / "vmlinux")
    started = time.monotonic()
    code = main(["diff", "--attach", f"127.0.0.1:{port}", "--kernel", str(vmlinux), "--lock-wait", "900"])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - started < 5, err
    assert err == (
        f"pyvcore diff: could not run: nothing answers at 127.0.0.1:{port} (Connection refused); "
        "is a gdbstub listening there (QEMU's -gdb tcp::PORT)?\n"
    )
    assert main(["gdb", "--vmlinux", str(vmlinux), "--remote", f"127.0.0.1:{port}"]) == 2
    assert f"nothing answers at 127.0.0.1:{port} (Connection refused)" in capsys.readouterr().err


def test_a_failure_is_said_in_its_own_words_never_a_class_name_or_an_mi_command() -> None:
    from pyvcore.errors import error_line
    from pyvcore.mi import GdbCommandError, MITimeout

    refused = GdbCommandError("-target-select remote 10.0.0.1:1234", "10.0.0.1:1234: Connection timed out.")
    assert error_line(refused) == "gdb refused: 10.0.0.1:1234: Connection timed out."
    assert error_line(MITimeout("gdb did not answer within 30 s")) == "gdb did not answer within 30 s"
    assert error_line(KeyError()) == "no reason given"
    assert error_line(TimeoutError()) == "timed out"
    assert error_line(FileNotFoundError(2, "x", "/nope/gdb")) == "/nope/gdb: No such file or directory"
    assert error_line(RuntimeError("boot hung\nconsole tail")) == "boot hung"


def test_a_gdbstub_that_refuses_gdb_is_named_without_the_mi_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyvcore.diff_watch as diff_watch
    from pyvcore.mi import GdbCommandError, MIError

    class Gdb:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.closed = False

        def console(self, command: str, timeout: float | None = None) -> object:
            return type("R", (), {"console": ""})()

        def execute(self, command: str, timeout: float | None = None) -> None:
            return None

        def connect_remote(self, address: str, timeout: float | None = None) -> None:
            raise GdbCommandError(f"-target-select remote {address}", f"{address}: Connection timed out.")

        def close(self) -> None:
            self.closed = True

    class Stub:
        vmlinux = "/k/vmlinux"
        gdb_address = "10.0.0.1:1234"

        def status(self) -> dict[str, object]:
            return {"modules": {}}

    monkeypatch.setattr(diff_watch, "GdbMI", Gdb)
    with pytest.raises(MIError) as caught:
        diff_watch.attach(Stub())
    assert str(caught.value) == "gdb could not connect to 10.0.0.1:1234: Connection timed out"
    assert "target-select" not in diff.error_line(caught.value)


def test_progress_counts_down_in_place_on_a_terminal_and_rarely_in_a_log() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    p = Progress(tty)
    p.tick("waiting for the guest's reports: 17 s left")
    p.tick("waiting for the guest's reports: 16 s left")
    p.say("done")
    out = tty.getvalue()
    assert out.count("\r\x1b[K") == 3 and out.endswith("pyvcore diff: done\n")
    log = io.StringIO()
    p = Progress(log, every=3600)
    for n in range(5):
        p.tick(f"{n} s left")
    assert log.getvalue() == "pyvcore diff: 0 s left\n"


def test_summary_rows_say_what_was_judged() -> None:
    rows = summarize(real_records()).stops
    assert rows["kvmhv_switch_to_host"]["judged"] == 3 and rows["kvmhv_switch_to_host"]["not_judged"] == 0


def test_report_folder_has_every_file_and_survives_an_empty_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = fake_run(real_records(), tmp_path)
    run.console = "PYVCORE READY scenario=all\n"
    _fake(monkeypatch, run)
    from pyvcore.cli import main

    out = tmp_path / "report"
    assert main(["diff", "--report", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "README.txt",
        "console.log",
        "diff.json",
        "table.txt",
        "timeline.html",
        "timeline.json",
        "trace.jsonl",
    ]
    assert json.loads((out / "diff.json").read_text())["verdict"] == "clean"
    assert "verdict: clean" in (out / "table.txt").read_text()
    events = json.loads((out / "timeline.json").read_text())["traceEvents"]
    assert any(e.get("cat") == "entering" for e in events)
    assert f"report in {out}" in capsys.readouterr().err
    # no stop at all: no timeline, said so in README.txt, the rest still written
    _fake(monkeypatch, fake_run([], tmp_path))
    empty = tmp_path / "empty"
    assert main(["diff", "--report", str(empty)]) == 2
    assert not (empty / "timeline.html").exists()
    assert "no timeline:" in (empty / "README.txt").read_text()


def test_a_hung_run_is_judged_at_the_deadline_snapshot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A core that hangs inside a vcore run reaches no hook point again: the snapshot
    pv-watch takes when the watch deadline interrupts it ("(deadline)") is paired with
    the last stop of the same run (same seq), and a run older than its bound is
    invariant 44.  A "(deadline)" snapshot with no vcore is no hook point left unjudged."""
    records = real_records()
    last = copy.deepcopy(records[-1])
    running = [vc for vc in last["vcores"] if vc.get("vcore_state") == 4]  # modern VCORE_RUNNING
    assert running, "the real trace ends inside a run"
    last["version"] = 2  # the v1 recording with version-2 fields added
    for vc in last["vcores"]:
        vc["seq"] = 7
        vc["tb_offset"] = vc["tb_offset_applied"] = "0x0"  # the lab's guest: no timebase offset
    last["tb"], last["tb_freq"] = 1_000_000_000, 512_000_000
    hung = copy.deepcopy(last)
    hung["stop"] = "(deadline)"
    hung["tb"] = last["tb"] + 30 * 512_000_000  # 30 s of timebase later, still in run 7
    _fake(monkeypatch, fake_run([*records[:-1], last, hung], tmp_path))
    result = run_diff("all", stops=5)
    assert result.verdict == "violations"
    assert [v["stop"] for v in result.violations if v["invariant"] == 44] == ["(deadline)"]
    # an empty deadline snapshot (the machine showed no vcore) leaves the verdict alone
    empty = {**copy.deepcopy(records[-1]), "stop": "(deadline)", "vcores": [], "vcpus": []}
    _fake(monkeypatch, fake_run([*records, empty], tmp_path))
    assert run_diff("all", stops=5).verdict == "clean"


BYOK_STATUS = {
    "vmlinux": "/src/linux/vmlinux",
    "kernel": "/src/linux/vmlinux with modules from /src/linux/ko",
    "kernel_name": None,
    "kernel_version": None,
    "kernel_info": {"release": "6.1.0-50-powerpc64le"},
}


def test_every_report_names_the_kernel_and_its_release(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = fake_run(real_records(), tmp_path)
    run.status = dict(BYOK_STATUS)
    _fake(monkeypatch, run)
    from pyvcore.cli import main

    line = "kernel /src/linux/vmlinux with modules from /src/linux/ko, release 6.1.0-50-powerpc64le"
    out = tmp_path / "report"
    assert main(["diff", "--report", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[1] == line  # under the header, on stdout
    assert (out / "table.txt").read_text().splitlines()[1] == line
    assert line in (out / "README.txt").read_text()
    assert "6.1.0-50-powerpc64le" in (out / "timeline.html").read_text()
    kernel = json.loads((out / "diff.json").read_text())["kernel"]
    assert kernel["release"] == "6.1.0-50-powerpc64le" and kernel["vmlinux"] == "/src/linux/vmlinux"
    assert main(["diff", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kernel"]["kernel"] == BYOK_STATUS["kernel"]


def test_the_kernel_line_names_a_lab_kernel_by_its_name_and_package() -> None:
    from pyvcore.lab.inputs import kernel_line

    named = {
        "vmlinux": "/c/boot/vmlinux-6.1.0-50-powerpc64le",
        "kernel": "linux-image-6.1.0-50-powerpc64le",
        "kernel_name": "6.1",
        "kernel_version": "6.1.176-1",
        "kernel_info": {"release": "6.1.0-50-powerpc64le"},
    }
    assert (
        kernel_line(named)
        == "kernel 6.1: linux-image-6.1.0-50-powerpc64le 6.1.176-1, release 6.1.0-50-powerpc64le"
    )
    default = {**named, "kernel_name": None}
    assert kernel_line(default).startswith(
        "kernel the lab's default: linux-image-6.1.0-50-powerpc64le 6.1.176-1"
    )
    stub = diff.GdbStub("127.0.0.1:1234", Path("/k/vmlinux"), "6.12.95+deb12-powerpc64le")
    assert kernel_line(stub.status()) == "kernel /k/vmlinux, release 6.12.95+deb12-powerpc64le"


def test_the_trace_report_names_the_kernel() -> None:
    from pyvcore.trace import LabRun, TraceResult
    from pyvcore.trace_report import format_result

    result = TraceResult(scenario="cede", qemu="patched", mode="all", verdict="clean")
    result.traced = LabRun(status=dict(BYOK_STATUS))
    result.summary = {"stats": {"violations": 0}}
    text = format_result(result)
    assert text.splitlines()[1].startswith(
        "kernel /src/linux/vmlinux with modules from /src/linux/ko, release 6.1.0-50"
    )
    assert result.to_dict()["kernel"]["release"] == "6.1.0-50-powerpc64le"
