"""A new user's first steps, typed into `pyvcore gdb` in a real terminal of 80x24 (tmux).

Boots the `novcpu0` lab, starts `pyvcore gdb --status FILE` inside a detached
tmux session of 80 columns and 24 rows, types the commands a kernel developer
tries first (every example of the commands' help among them), answers gdb's
pager when it asks, and reads the whole scrollback with wrapped lines joined:
no line may be wider than the terminal and no Python traceback may appear.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.lab,
    pytest.mark.gdb,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed (apt-get install tmux)"),
    pytest.mark.skipif(shutil.which("gdb-multiarch") is None, reason="gdb-multiarch not installed"),
]

PROMPT = "(gdb) "
PAGER = "--Type <RET> for more"

FIRST_STEPS = [
    "pv-watch on --at kvm_do_nap --max-stops 1",
    "continue",
    "pv-paca",
    "pv-paca 0",
    "pv-vcore",
    "pv-vcore 0",
    "pv-vcore $pv_vcore(0)",
    "pv-vcpu",
    "pv-vcpu 1",
    "pv-check",
    "pv-check --explain",
    "p $pv_paca(0)",
    "p $pv_paca(0)->kvm_hstate",
    "p $pv_paca()",
    "p $pv_vcore(0)",
    "p $pv_vcpu(1)",
    "x/4gx $pv_paca(1)",
    "pv-print paca_struct $pv_paca(0) kvm_hstate",
    "pv-print kvmppc_vcore $pv_vcore(0)",
    "pv-print kvm_vcpu $pv_vcpu(1) vcpu_id arch.ptid arch.ceded",
    "pv-watch",
]


class Tmux:
    """One detached tmux session of a fixed size, driven by send-keys."""

    def __init__(self, name: str, command: list[str], width: int = 80, height: int = 24):
        self.name = name
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), *command],
            check=True,
        )
        subprocess.run(["tmux", "set-option", "-t", name, "history-limit", "50000"], check=True)

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True, check=False
        ).stdout

    def scrollback(self) -> str:
        """Everything printed so far, each wrapped line joined back into one (-J)."""
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-J", "-S", "-", "-t", self.name],
            capture_output=True,
            text=True,
            check=False,
        ).stdout

    def type(self, text: str) -> None:
        """Type a command and Enter, and wait until the terminal shows it was taken."""
        before = self.screen()
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)
        subprocess.run(["tmux", "send-keys", "-t", self.name, "Enter"], check=True)
        self.wait_change(before)

    def wait_change(self, before: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.screen() == before and time.monotonic() < deadline:
            time.sleep(0.1)

    def wait_prompt(self, timeout: float = 120) -> None:
        """Until gdb shows its prompt on the last line, pressing RET once at each pager
        stop (and waiting for the page to turn: a second RET at the prompt would
        repeat the last command)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            lines = [line for line in screen.splitlines() if line.strip()]
            last = lines[-1] if lines else ""
            if PAGER in last:
                subprocess.run(["tmux", "send-keys", "-t", self.name, "Enter"], check=True)
                self.wait_change(screen)
            elif last.rstrip() == PROMPT.rstrip():
                time.sleep(0.3)  # settled: the prompt is still the last line
                if self.screen() == screen:
                    return
            else:
                time.sleep(0.3)
        raise AssertionError(f"no gdb prompt after {timeout} s:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], check=False)


@pytest.fixture(scope="module")
def terminal(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from test_gdb_live import start_lab

    lab = start_lab("novcpu0")
    tmux = None
    try:
        tmp = tmp_path_factory.mktemp("tmux")
        status = tmp / "status.json"
        status.write_text(json.dumps(lab.status()))
        tmux = Tmux(
            f"pyvcore-{int(time.time())}", [sys.executable, "-m", "pyvcore", "gdb", "--status", str(status)]
        )
        tmux.wait_prompt()
        outputs = {}
        for command in FIRST_STEPS:
            before = tmux.scrollback().rstrip("\n")
            tmux.type(command)
            tmux.wait_prompt()
            after = tmux.scrollback().rstrip("\n")
            outputs[command] = after[len(before) :]
        yield tmux.scrollback(), outputs
    finally:
        if tmux is not None:
            tmux.type("quit")
            time.sleep(1)
            tmux.close()
        lab.stop()


def test_nothing_wraps_and_no_traceback(terminal: Any) -> None:
    text, _ = terminal
    Path("/tmp/pyvcore-tmux-first-steps.txt").write_text(text)  # for a human reading a failure
    wide = [line for line in text.splitlines() if len(line) > 80]
    assert not wide, wide
    assert "Traceback" not in text and "Python Exception" not in text


def test_start_is_quiet(terminal: Any) -> None:
    text, _ = terminal
    start = text[: text.index("pv-watch on")]
    assert (
        "pyvcore gdb: kvm, kvm-hv symbols at their load addresses" in start
        and "pyvcore gdb: connected to 127.0.0.1:" in start
    )
    assert "add symbol table from file" not in start and ".strtab" not in start
    assert "Cannot access memory" not in start
    # one line for the symbols, the first stop's frame, one for the connection, the banner
    assert len([line for line in start.splitlines() if line.strip()]) <= 9


def test_first_steps_show_what_they_promise(terminal: Any) -> None:
    _, out = terminal
    assert len(re.findall(r"^\d\s+t\d\s+0x", out["pv-paca"], re.M)) == 4
    assert "NOVCPU" in out["pv-paca"]
    assert re.search(r"kvm_hstate\.napping\s+= 2 NOVCPU", out["pv-paca 0"])
    assert re.search(r"^vc0 vcore 0xc", out["pv-vcore"], re.M)
    assert out["pv-vcore 0"].strip() and "vc0 vcore" in out["pv-vcore 0"]
    assert "vc0 vcore" in out["pv-vcore $pv_vcore(0)"]
    assert re.search(r"^1\s+vc0\s+1\s+RUNNABLE", out["pv-vcpu"], re.M)
    verdicts = re.findall(
        r"^\d\s+t\d\s+\S+\s+\S+\s+(ok|allowed-now.*|violation|not judged)$", out["pv-check"], re.M
    )
    assert len(verdicts) == 4
    assert "no invariant violated" in out["pv-check"]
    assert re.search(r"= \(void \*\) 0xc|= \(struct paca_struct \*\) 0xc", out["p $pv_paca(0)"])
    assert "$pv_paca: takes one argument" in out["p $pv_paca()"]
    # typed from BTF (types rebuilt by the cross compiler): fields by name
    assert re.search(r"napping = 2 '\\002'|napping = 2\b", out["p $pv_paca(0)->kvm_hstate"])
    assert re.search(r"\.ptid\s+u8\s+0", out["pv-print paca_struct $pv_paca(0) kvm_hstate"])
    assert re.search(
        r"vcpu_id\s+int\s+1$", out["pv-print kvm_vcpu $pv_vcpu(1) vcpu_id arch.ptid arch.ceded"], re.M
    )
