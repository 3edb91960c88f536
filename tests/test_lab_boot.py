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


def test_boot_news_tells_stage_ends_host_trouble_and_long_quiet() -> None:
    """What a waiting user sees: each stage's end, a host kernel's oops or soft lockup the
    moment its line is on the console, and a line per QUIET_EVERY s of silence with the bound."""
    from pyvcore.lab.boot import QUIET_EVERY, BootNews

    said: list[str] = []
    t, news = StageTracker(started=0.0), BootNews(said.append)
    console = [
        (5.0, "INIT: Starting kernel at 0x20010000, fdt at 0x30eb1618 105612 bytes"),
        (13.0, "PYVCORE INIT scenario=all hold=0 uptime=8.1"),
        (14.0, "PYVCORE KVM uptime=9.0 online=0"),
        (14.5, "[   12.1] BUG: Kernel NULL pointer dereference on read at 0x00000000"),
        (14.6, "[   12.1] Oops: Kernel access of bad area, sig: 11 [#1]"),
        (14.7, "[   12.2] NIP [c0080000002b1c3c] kvmppc_run_core+0x5dc/0x1c60 [kvm_hv]"),
    ]
    for now, line in console:
        t.line(line, now=now)
        news.line(line, t)
    assert said == [
        "boot: firmware stage done at 5.0 s",
        "boot: kernel stage done at 13.0 s",
        "boot: modules stage done at 14.0 s",
        "the host kernel says: [   12.1] BUG: Kernel NULL pointer dereference on read at 0x00000000",
        "the host kernel says: [   12.1] Oops: Kernel access of bad area, sig: 11 [#1]",
    ]
    said.clear()
    for now in range(15, 15 + int(2 * QUIET_EVERY) + 2):  # polled once a second, 31 s of quiet
        news.quiet(t, float(now))
    assert said == [
        f"boot: vmm stage, console quiet for {QUIET_EVERY:.0f} s (judged stalled after {STAGES[3].silence:.0f} s of quiet)",
        f"boot: vmm stage, console quiet for {2 * QUIET_EVERY:.0f} s (judged stalled after {STAGES[3].silence:.0f} s of quiet)",
    ]
    said.clear()
    lockup = "[   61.3] watchdog: BUG: soft lockup - CPU#1 stuck for 49s! [vmm:70]"
    t.line(lockup, now=60.0)
    news.line(lockup, t)
    news.quiet(t, 61.0)  # output came: the quiet count starts again
    news.quiet(t, 60.0 + QUIET_EVERY)
    assert said == [
        f"the host kernel says: {lockup.strip()}",
        f"boot: vmm stage, console quiet for {QUIET_EVERY:.0f} s (judged stalled after {STAGES[3].silence:.0f} s of quiet)",
    ]


def test_console_news_tells_what_a_watched_console_gains() -> None:
    """While gdb watches (no boot waiter reads the console), each poll tells the new lines'
    news: the stages of a boot watched from its first instruction, a host oops as printed;
    lines that were there before the watch are not told again."""
    from pyvcore.lab.boot import ConsoleNews

    console = ["old line: BUG: told by the boot already\n"]
    said: list[str] = []
    news = ConsoleNews(lambda: "".join(console), said.append)
    news.poll()
    assert said == []
    console += [
        "INIT: Starting kernel at 0x20010000\n",
        "[   12.1] Oops: Kernel access of bad area, sig: 11 [#1]\n",
    ]
    console += ["[   12.2] half a li"]  # not complete yet: not told
    news.poll()
    assert said[0].startswith("boot: firmware stage done at ")
    assert said[1:] == ["the host kernel says: [   12.1] Oops: Kernel access of bad area, sig: 11 [#1]"]
    console[-1] += "ne, watchdog: BUG: soft lockup - CPU#1 stuck for 49s!\n"
    news.poll()
    assert (
        said[-1]
        == "the host kernel says: [   12.2] half a line, watchdog: BUG: soft lockup - CPU#1 stuck for 49s!"
    )
    news.poll()
    assert len(said) == 3


def test_the_diff_watch_ticks_carry_the_console_news() -> None:
    """pyvcore diff's watch tick also tells the console's news (a lab has a console); against
    a bare gdbstub (no console) the tick is left as it is."""
    from types import SimpleNamespace

    from pyvcore.diff_live import _with_console

    console = [""]
    said: list[str] = []
    ticks: list[str] = []
    lab = SimpleNamespace(console_text=lambda: console[0])
    tick = _with_console(lab, said.append, ticks.append)
    console[0] = "[   61.3] watchdog: BUG: soft lockup - CPU#1 stuck for 49s! [vmm:70]\n"
    tick("watching: 3/60 stops logged")
    assert said == [
        "the host kernel says: [   61.3] watchdog: BUG: soft lockup - CPU#1 stuck for 49s! [vmm:70]"
    ]
    assert ticks == ["watching: 3/60 stops logged"]
    assert _with_console(SimpleNamespace(), said.append, ticks.append) == ticks.append
