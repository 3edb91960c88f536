"""Mutants: the catalogue matches the lab's real objects, application is checked and
refused when the bytes differ or a relocation touches them, the CLI lists and refuses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import elfcraft
import pytest

from pyvcore.cli import main
from pyvcore.mutants import MUTANTS, Mutant, MutantRefused, apply, locate
from pyvcore.mutants.apply import MODULE_SIG_MAGIC, strip_module_signature
from pyvcore.mutants.catalogue import Commit, by_name
from pyvcore.mutants.run import Outcome, kill_rate


def lab() -> dict[str, Path] | None:
    manifest = Path.home() / ".cache/pyvcore/kernel/current.json"
    if not manifest.is_file():
        return None
    m = json.loads(manifest.read_text())
    paths = {"vmlinux": Path(m["vmlinux"]), **{k: Path(v) for k, v in m["modules"].items()}}
    return paths if all(p.is_file() for p in paths.values()) else None


needs_lab = pytest.mark.skipif(lab() is None, reason="no lab kernel: run `pyvcore lab setup`")


def test_catalogue_shape() -> None:
    names = [m.name for m in MUTANTS]
    assert len(MUTANTS) >= 12 and len(set(names)) == len(names)
    for m in MUTANTS:
        assert m.obj in ("vmlinux", "kvm-hv.ko")
        assert len(bytes.fromhex(m.expected)) == len(bytes.fromhex(m.replacement)) == 4
        assert m.expected != m.replacement
        assert m.scenarios and len(m.commit) == 12
    equivalent = [m for m in MUTANTS if m.equivalent]
    assert equivalent and all("pcpu" in m.equivalent for m in equivalent if m.equivalent)


def test_every_bug_class_is_covered() -> None:
    words = [
        "in_guest",
        "before thread 0 has switched",
        "switching back before",
        "after the exit began",
        "exit IPI",
        "wrong ptid",
        "PACA's vcpu",
        "napping_threads",
        "released before",
        "cede-to-exit",
        "runnable rank",
        "LPIDR",
    ]
    for w in words:
        assert any(w in m.klass for m in MUTANTS), w


@needs_lab
@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_expected_bytes_are_in_the_lab_kernel(mutant: Mutant) -> None:
    paths = lab()
    assert paths is not None
    site = locate(mutant, paths["vmlinux"] if mutant.obj == "vmlinux" else paths["kvm_hv"])
    assert site.found.hex() == mutant.expected


@needs_lab
def test_apply_patches_a_copy_only(tmp_path: Path) -> None:
    paths = lab()
    assert paths is not None
    mutant = next(m for m in MUTANTS if m.obj == "kvm-hv.ko")
    before = paths["kvm_hv"].read_bytes()
    mutated = apply(mutant, tmp_path, vmlinux=paths["vmlinux"], modules=paths)
    assert mutated.kernel is None and mutated.modules is not None
    after = (mutated.modules / "kvm-hv.ko").read_bytes()
    assert paths["kvm_hv"].read_bytes() == before
    # the appended signature is gone (it would no longer match), the rest differs in one word
    if before.endswith(MODULE_SIG_MAGIC):
        assert not after.endswith(MODULE_SIG_MAGIC) and len(after) < len(before)
    diff = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert 1 <= len(diff) <= 4
    assert (mutated.modules / "kvm.ko").read_bytes() == paths["kvm"].read_bytes()
    # a second application to the patched copy is refused: its bytes are no longer the expected ones
    with pytest.raises(MutantRefused, match="expected"):
        locate(mutant, mutated.modules / "kvm-hv.ko")


def crafted_module(tmp_path: Path, text: bytes, relocs: list[int]) -> Path:
    elf = elfcraft.Elf(etype=elfcraft.ET_REL)
    elf.section(".text", text).symbol("f", 0x10, 0x20, ".text", local_entry=8)
    elf.relocations[".text"] = relocs
    path = tmp_path / "kvm-hv.ko"
    path.write_bytes(elf.build())
    return path


def mutant_at(offset: int, expected: str) -> Mutant:
    return Mutant(
        name="t",
        klass="k",
        cites=Commit("0" * 12, "", False),
        obj="kvm-hv.ko",
        symbol="f",
        offset=offset,
        expected=expected,
        replacement="00000060",
        scenarios=("all",),
        source="",
        effect="",
    )


def test_refused_when_bytes_differ(tmp_path: Path) -> None:
    path = crafted_module(tmp_path, bytes(range(0x40)), [])
    assert locate(mutant_at(4, "14151617"), path).found == bytes([0x14, 0x15, 0x16, 0x17])
    with pytest.raises(MutantRefused, match=r"f\+0x4 in kvm-hv.ko holds 14151617, expected 00000000"):
        locate(mutant_at(4, "00000000"), path)
    with pytest.raises(MutantRefused, match="past the end of the symbol"):
        locate(mutant_at(0x20, "00000000"), path)


def test_refused_on_a_relocation_target(tmp_path: Path) -> None:
    path = crafted_module(tmp_path, bytes(range(0x40)), [0x18])
    with pytest.raises(MutantRefused, match="relocation target"):
        locate(mutant_at(8, "18191a1b"), path)
    assert locate(mutant_at(4, "14151617"), path)  # the word before it is free


def test_kill_rate_counts_mutants_not_runs() -> None:
    def o(name: str, sampled: str, equivalent: bool = False) -> Outcome:
        return Outcome(name, "k", "c", "all", sampled, "", equivalent=equivalent)

    outcomes = [
        o("(control)", "survived"),
        o("a", "killed"),
        o("a", "survived"),
        o("b", "survived"),
        o("e", "survived", True),
    ]
    assert kill_rate(outcomes) == (1, 2)


def test_cli_list_and_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mutants", "--list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed] == [m.name for m in MUTANTS]
    assert main(["mutants", "--run", "no-such-mutant"]) == 2
    assert "invalid choice: 'no-such-mutant'" in capsys.readouterr().err


def test_control_policy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The control must be clean; with keep_going a kill needs an invariant the control lacked."""
    import pyvcore.mutants.run as run
    from pyvcore.mutants import MutatedKernel

    verdicts = {None: ("killed", "invariant 11 at x", [11])}

    def fake_sampled(
        scenario: str, kernel: Path | None, modules: Path | None, *a: object, **kw: object
    ) -> tuple[str, str, list[int], str | None]:
        return (*verdicts[None if modules is None else modules.name], None)

    monkeypatch.setattr(run, "sampled", fake_sampled)
    monkeypatch.setattr(run, "continuous", lambda *a, **kw: ("not run", "no trace in this test", [], None))
    monkeypatch.setattr(run, "apply", lambda m, w, **kw: MutatedKernel(None, Path(m.name)))
    a, b = MUTANTS[0], MUTANTS[1]
    verdicts[a.name] = ("killed", "invariant 11 at y", [11])
    verdicts[b.name] = ("killed", "invariant 8 at z", [8, 11])
    paths = {"kvm": tmp_path / "kvm.ko", "kvm_hv": tmp_path / "kvm-hv.ko"}
    plan = run.Plan(mutants=[a, b], stops=1, lock_wait=0, scenarios=("all",))
    with pytest.raises(MutantRefused, match="control run of scenario all is not clean"):
        run.run_plan(plan, vmlinux=tmp_path / "vmlinux", modules=paths)
    plan = run.Plan(mutants=[a, b], stops=1, lock_wait=0, scenarios=("all",), keep_going=True)
    outcomes = run.run_plan(plan, vmlinux=tmp_path / "vmlinux", modules=paths)
    by = {o.mutant: o for o in outcomes}
    assert by[a.name].sampled == "survived" and "control also violated" in by[a.name].sampled_by
    assert by[b.name].sampled == "killed"
    assert kill_rate(outcomes) == (1, 2)


def test_strip_module_signature(tmp_path: Path) -> None:
    body = b"\x7fELF" + bytes(60)
    sig = b"S" * 20
    info = bytes([0, 0, 2, 0, 0, 0, 0, 0]) + len(sig).to_bytes(4, "big")
    path = tmp_path / "m.ko"
    path.write_bytes(body + sig + info + MODULE_SIG_MAGIC)
    assert strip_module_signature(path)
    assert path.read_bytes() == body
    assert not strip_module_signature(path)


def test_continuous_reads_run_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    import pyvcore.mutants.run as run

    fake = types.ModuleType("pyvcore.trace")
    results = {
        "all": types.SimpleNamespace(
            verdict="violations", summary={"violations": [{"invariant": 8, "seq": 41, "field": "lpidr"}]}
        ),
        "cede": types.SimpleNamespace(verdict="clean", summary={"stats": {"events": 900}}),
        "exits": types.SimpleNamespace(verdict="error", summary={}, error="lab not set up"),
    }
    seen: list[dict[str, object]] = []

    def run_trace(scenario: str, **kw: object) -> object:
        seen.append(kw)
        return results[scenario]

    fake.run_trace = run_trace  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyvcore.trace", fake)
    assert run.continuous("all", None, None, 0) == (
        "killed",
        "invariant 8 at event seq 41 (lpidr)",
        [8],
        None,
    )
    assert run.continuous("cede", None, None, 0) == ("survived", "900 events clean", [], None)
    assert run.continuous("exits", None, None, 0) == ("error", "lab not set up", [], None)
    # one traced boot per mutant: no untraced timing boot
    assert all(kw["baseline"] is False for kw in seen)


def test_continuous_kill_needs_an_invariant_the_control_trace_lacked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The trace of the unmutated kernel may not be clean yet: a continuous kill by
    invariants that control also showed is no kill; another invariant is."""
    import pyvcore.mutants.run as run
    from pyvcore.mutants import MutatedKernel

    traces = {
        None: ("killed", "invariant 42 at event seq 9 (x)", [42], None),
        MUTANTS[0].name: ("killed", "invariant 42 at event seq 3 (x)", [42], None),
        MUTANTS[1].name: ("killed", "invariant 13 at event seq 5 (y)", [13, 42], None),
    }
    monkeypatch.setattr(run, "continuous", lambda s, k, m, *a, **kw: traces[None if m is None else m.name])
    monkeypatch.setattr(run, "apply", lambda m, w, **kw: MutatedKernel(None, Path(m.name)))
    paths = {"kvm": tmp_path / "kvm.ko", "kvm_hv": tmp_path / "kvm-hv.ko"}
    plan = run.Plan(mutants=MUTANTS[:2], stops=1, lock_wait=0, scenarios=("all",), modes=("continuous",))
    by = {o.mutant: o for o in run.run_plan(plan, vmlinux=tmp_path / "vmlinux", modules=paths)}
    assert by[MUTANTS[0].name].continuous == "survived"
    assert "control's trace also showed" in by[MUTANTS[0].name].continuous_by
    assert by[MUTANTS[1].name].continuous == "killed"
    assert by[MUTANTS[1].name].sampled == "not run"


def test_keep_copies_each_runs_records(tmp_path: Path) -> None:
    """--keep DIR: the run's pv-watch trace and event log are copied under the mutant's
    and scenario's name, and the outcome points at the copies (the originals rotate)."""
    from pyvcore.mutants.cli import keep_records

    trace, log = tmp_path / "diff.jsonl", tmp_path / "events.jsonl"
    trace.write_text('{"stop": "kvmppc_hv_entry@cpu1"}\n')
    log.write_text('{"format": "pyvcore-events"}\n')
    o = Outcome("ptid-zero", "k", "c", "all", "killed", "invariant 3", sampled_trace=str(trace))
    o.continuous_log = str(log)
    kept = tmp_path / "kept"
    kept.mkdir()
    keep_records(o, kept)
    assert o.sampled_trace == str(kept / "ptid-zero-all-sampled.jsonl")
    assert (kept / "ptid-zero-all-sampled.jsonl").read_text() == trace.read_text()
    assert (kept / "ptid-zero-all-events.jsonl").read_text() == log.read_text()
    control = Outcome("(control)", "k", "-", "exits", "survived", "")
    keep_records(control, kept)  # nothing kept: nothing copied, no error
    assert control.sampled_trace is None


@pytest.mark.parametrize("keep", [False, True])
def test_continuous_event_logs_leave_nothing_in_tmp(
    keep: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A continuous run's event log sits in a `pyvcore-trace-*` temporary directory: it is
    removed once judged, after --keep DIR has copied it (no lab: the runs are faked)."""
    import pyvcore.mutants.cli as mcli

    work = tmp_path / "pyvcore-trace-all-x1"
    work.mkdir()
    (work / "events.jsonl").write_text('{"format": "pyvcore-events"}\n')
    (work / "summary.json").write_text("{}\n")

    def fake_plan(plan: object, *, vmlinux: Path, modules: object, progress: object) -> list[Outcome]:
        o = Outcome("ptid-zero", "k", "c", "all", "killed", "invariant 3")
        o.continuous, o.continuous_log = "killed", str(work / "events.jsonl")
        progress(o)  # type: ignore[operator]
        return [o]

    monkeypatch.setattr(mcli, "_lab_kernel", lambda: (tmp_path / "vmlinux", {}))
    monkeypatch.setattr(mcli, "preflight", lambda *args, **kwargs: None)
    monkeypatch.setattr(mcli, "run_plan", fake_plan)
    kept = tmp_path / "kept"
    argv = ["mutants", "--run", "ptid-zero", "--mode", "continuous"] + (["--keep", str(kept)] if keep else [])
    main(argv)
    capsys.readouterr()
    assert not work.exists()
    if keep:
        assert (kept / "ptid-zero-all-events.jsonl").read_text() == '{"format": "pyvcore-events"}\n'


def test_a_run_tells_its_progress_and_a_clean_control_reads_clean(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every phase line a boot's judge says reaches the plan's ``say`` with the mutant,
    scenario and mode in front, the watch's ticks reach ``tick``; the unmutated control's
    clean verdict is "clean", a mutant's is "survived"."""
    import pyvcore.mutants.run as run
    from pyvcore.mutants import MutatedKernel

    def fake_sampled(scenario: str, kernel: Path | None, modules: Path | None, *a: object, **kw: Any) -> Any:
        kw["say"]("booting the lab: scenario all ...")
        kw["say"]("the host kernel says: watchdog: BUG: soft lockup - CPU#1 stuck for 49s! [vmm:70]")
        kw["tick"]("12 stops")
        return ("survived", "60 stops judged clean", [], None)

    def fake_continuous(
        scenario: str, kernel: Path | None, modules: Path | None, *a: object, **kw: Any
    ) -> Any:
        kw["say"]("boot: kernel stage done at 13.0 s")
        return ("survived", "900 events clean", [], None)

    monkeypatch.setattr(run, "sampled", fake_sampled)
    monkeypatch.setattr(run, "continuous", fake_continuous)
    monkeypatch.setattr(run, "apply", lambda m, w, **kw: MutatedKernel(None, Path(m.name)))
    said: list[str] = []
    ticked: list[str] = []
    mutant = by_name("ptid-zero")
    plan = run.Plan(
        mutants=[mutant], stops=1, lock_wait=0, scenarios=("all",), say=said.append, tick=ticked.append
    )
    paths = {"kvm": tmp_path / "kvm.ko", "kvm_hv": tmp_path / "kvm-hv.ko"}
    control, killed = run.run_plan(plan, vmlinux=tmp_path / "vmlinux", modules=paths)
    assert (control.sampled, control.continuous) == ("clean", "clean")
    assert (killed.sampled, killed.continuous) == ("survived", "survived")
    where = "ptid-zero [all, from boot]"
    assert f"{where} apply: patching a copy of kvm-hv.ko at kvmppc_start_thread+0x78 ..." in said
    assert (
        f"{where} sampled: the host kernel says: watchdog: BUG: soft lockup - CPU#1 stuck for 49s! [vmm:70]"
        in said
    )
    assert f"{where} continuous: boot: kernel stage done at 13.0 s" in said
    assert "(control) [all, from boot] sampled: clean: 60 stops judged clean" in said
    assert f"{where} sampled: survived: 60 stops judged clean" in said
    assert ticked == ["(control) [all, from boot] sampled: 12 stops", f"{where} sampled: 12 stops"]


def test_the_cli_prints_progress_lines_and_throttles_ticks(capsys: pytest.CaptureFixture[str]) -> None:
    """Off a terminal the watch's once-a-second count is printed at most every TICK_EVERY s."""
    from pyvcore.diff_cli import Progress
    from pyvcore.mutants.cli import TICK_EVERY

    assert 1.0 < TICK_EVERY <= 10.0
    lines = Progress(every=TICK_EVERY, prog="pyvcore mutants")
    for n in range(5):
        lines.tick(f"{n} stops")
    lines.say("x [all] sampled: attaching gdb")
    assert capsys.readouterr().err.splitlines() == [
        "pyvcore mutants: 0 stops",
        "pyvcore mutants: x [all] sampled: attaching gdb",
    ]


def test_the_readme_table_and_list_agree_on_confirmed_commits(capsys: pytest.CaptureFixture[str]) -> None:
    """A commit id the catalogue could not confirm carries `?` in `--list` and in the README's
    table alike; a confirmed one in neither."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = {
        cells[1]: cells[4]
        for line in readme.splitlines()
        if line.startswith("| ") and len(cells := [c.strip() for c in line.split("|")]) > 5
    }
    assert main(["mutants", "--list"]) == 0
    listed = capsys.readouterr().out
    for m in MUTANTS:
        shown = m.commit + ("" if m.cites.verified else "?")
        assert rows[m.name] == shown, f"README table: {m.name} commit {rows[m.name]}, catalogue {shown}"
        assert re.search(rf"\b{re.escape(shown)}(\s|$)", listed) or re.search(rf"{re.escape(shown)}", listed)
        if m.cites.verified:
            assert f"{m.commit}?" not in listed
