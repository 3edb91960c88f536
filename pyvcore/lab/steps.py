"""What every `pyvcore lab setup` step shares: its error, its log lines, timing, and
running a command with its output streamed."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Callable


class SetupError(RuntimeError):
    """A setup step failed; the message says which and what to do."""


def log(message: str) -> None:
    print(f"[lab setup] {message}", flush=True)


def indent(line: str) -> None:
    print(f"    {line}", flush=True)


_RUNNING: list[Step] = []  # the steps in progress, outermost first


def worked() -> None:
    """The steps in progress did something (ran a command, built, unpacked): not cached.
    :func:`run` says so itself; code that works without it calls this."""
    for step in _RUNNING:
        step.worked = True


@dataclass
class Step:
    """Prints a step's start and its duration when it ends.

    ``seconds`` is set when it ends; ``worked`` when anything in it did something
    (:func:`worked`), else the step found everything done ("cached"); ``note`` replaces
    that word (e.g. "skipped: ...")."""

    name: str
    worked: bool = False
    seconds: float | None = None
    note: str = ""

    def __enter__(self) -> Step:
        self.start = time.monotonic()
        _RUNNING.append(self)
        log(f"{self.name} ...")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _RUNNING.remove(self)
        self.seconds = time.monotonic() - self.start
        state = "done" if exc_type is None else "FAILED"
        log(f"{self.name}: {state} in {self.seconds:.1f} s")

    @property
    def state(self) -> str:
        """What the summary says after its time: the note, "cached" or nothing."""
        return self.note or ("" if self.worked else "cached")


def run(
    cmd: Sequence[str],
    *,
    cwd: os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    echo: Callable[[str], None] | None = None,
    check: bool = True,
) -> tuple[int, str]:
    """Run a command, streaming its output lines to ``echo``; returns (status, output).

    With ``check``, a non-zero status raises SetupError with the command and the last
    15 lines of its output."""
    worked()
    try:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as err:
        raise SetupError(f"cannot run {cmd[0]}: {err.strerror or err}") from None
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if echo:
            echo(line.rstrip("\n"))
    status = proc.wait()
    output = "".join(lines)
    if check and status != 0:
        tail = "\n".join(output.rstrip().splitlines()[-15:])
        raise SetupError(f"command failed (exit {status}): {' '.join(cmd)}\n{tail}")
    return status, output


def is_root() -> bool:
    return os.geteuid() == 0
