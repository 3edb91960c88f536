"""Boot stages and stall detection, on console lines and a fake clock."""

from __future__ import annotations

from pyvcore.lab.boot import FIRMWARE_BACKTRACE_GRACE, STAGES, StageTracker

SKIBOOT_HANG = [
    "PCI: Probing slots...",
    "CPU 0008 Backtrace:",
    " S: 0000000031c13a40 R: 00000000300139d8   .backtrace+0x48",
    " S: 0000000031c13ae0 R: 0000000030023f4c   .cpu_wait_job+0x13c",
]


def test_stages_end_at_their_lines_and_durations_add_up() -> None:
    t = StageTracker(started=0.0)
    t.line("OPAL v7.1 starting...", now=0.5)
    assert t.stage == "firmware"
    t.line("INIT: Starting kernel at 0x20010000, fdt at 0x30eb1618 105612 bytes", now=5.0)
    assert t.stage == "kernel"
    t.line("[    7.9] Run /init as init process", now=12.0)
    t.line("PYVCORE INIT scenario=all hold=0 uptime=8.1", now=13.0)
    t.line("PYVCORE KVM uptime=9.0 online=0", now=14.0)
    t.line("PYVCORE READY scenario=all", now=15.5)
    assert t.stage == "up" and t.check(now=500.0) is None
    assert t.durations() == {"firmware": 5.0, "kernel": 8.0, "modules": 1.0, "vmm": 1.5}


def test_silence_is_judged_per_stage() -> None:
    t = StageTracker(started=0.0)
    firmware = STAGES[0]
    assert t.check(now=firmware.silence - 1) is None
    reason = t.check(now=firmware.silence + 1)
    assert reason is not None and "no console output for" in reason and "usually takes about 5 s" in reason
    t.line("INIT: Starting kernel at 0x0", now=5.0)
    assert t.check(now=5.0 + STAGES[1].silence - 1) is None
    assert t.stage == "kernel" and t.check(now=5.0 + STAGES[1].silence + 1) is not None


def test_skiboot_cpu_wait_job_backtraces_are_a_stall_not_progress() -> None:
    t = StageTracker(started=0.0)
    for i, line in enumerate(SKIBOOT_HANG):
        t.line(line, now=3.0 + i * 0.1)
    # Backtraces keep coming, but they are no progress: the hang is called after the grace.
    t.line("CPU 0008 Backtrace:", now=9.0)
    assert t.check(now=3.2 + FIRMWARE_BACKTRACE_GRACE - 0.5) is None
    reason = t.check(now=3.2 + FIRMWARE_BACKTRACE_GRACE + 0.5)
    assert reason is not None and "cpu_wait_job" in reason
    # Far sooner than the silence bound of the stage.
    assert STAGES[0].silence > 3.2 + FIRMWARE_BACKTRACE_GRACE + 0.5


def test_progress_after_a_backtrace_clears_it() -> None:
    t = StageTracker(started=0.0)
    t.line("CPU 0008 Backtrace:", now=1.0)
    t.line("PHB#0000:00:00.0 link up", now=2.0)
    assert t.check(now=1.0 + FIRMWARE_BACKTRACE_GRACE + 1) is None


def test_one_silence_bound_for_tests() -> None:
    t = StageTracker(started=0.0, silence=1.5)
    assert t.check(now=1.0) is None and t.check(now=2.0) is not None


def test_ftrace_patching_may_be_silent_longer_than_the_stage() -> None:
    """6.1 patches every mcount site after "ftrace: allocating": a long silence, not a hang;
    the next line brings the stage's own bound back."""
    t = StageTracker(started=0.0)
    t.line("INIT: Starting kernel at 0x0", now=5.0)
    kernel = STAGES[1]
    t.line("[    0.000000] ftrace: allocating 33690 entries in 13 pages", now=6.0)
    assert t.check(now=6.0 + kernel.silence + 30) is None
    assert t.check(now=6.0 + 151) is not None
    t.line("[    0.000000] ftrace: allocated 13 pages with 3 groups", now=60.0)
    assert t.check(now=60.0 + kernel.silence + 1) is not None


def test_the_vmm_stage_may_be_as_quiet_as_the_vmm_says_it_waits() -> None:
    """Under a TCG plugin the VMM waits longer for its vcpus' first run (its first line says
    how long): the stage's silence bound grows with it, and only then."""
    vmm = STAGES[3]
    t = StageTracker(started=0.0)
    for i, line in enumerate(("INIT: Starting kernel at 0x0", "PYVCORE INIT scenario=cede", "PYVCORE KVM")):
        t.line(line, now=float(i))
    t.line("PYVCORE VMM scenario=cede vcpus=0,1,2,3 smt=4 hold=3 spin_pc=0x1 start_timeout=45", now=3.0)
    assert t.check(now=3.0 + vmm.silence + 5) is None
    assert t.check(now=3.0 + 45 + 21) is not None
    quick = StageTracker(started=0.0)
    for i, line in enumerate(("INIT: Starting kernel at 0x0", "PYVCORE INIT scenario=cede", "PYVCORE KVM")):
        quick.line(line, now=float(i))
    quick.line("PYVCORE VMM scenario=cede vcpus=0,1,2,3 smt=4 hold=3 spin_pc=0x1 start_timeout=15", now=3.0)
    assert quick.check(now=3.0 + vmm.silence + 1) is not None
