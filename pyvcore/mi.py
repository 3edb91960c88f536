"""Drive gdb over its machine interface (MI3), one command at a time, with deadlines.

pygdbmi parses MI records; this module adds what a test harness needs on top of it:
every command carries a token and waits for *its own* result record (``^done``,
``^running``, ``^connected``, ``^error``) up to a deadline, the console output
printed while it ran is collected with it, ``^error`` becomes :class:`GdbCommandError`
carrying gdb's message, and stops of the target (``*stopped``) are queued so that
``interrupt()`` and ``cont()`` can wait for them.  pygdbmi's own ``write()`` returns
after a quiet period instead, which drops or mixes output of slow commands.

gdb runs in its own session so that closing the driver (or a crash of a test)
can always take the whole process group down; the context manager does that.

Nothing here imports ``gdb``: this runs in the user's Python, not inside gdb.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pygdbmi.IoManager import IoManager

log = logging.getLogger(__name__)

DEFAULT_GDB = "gdb-multiarch"
DEFAULT_TIMEOUT = 30.0
# How long one poll of gdb's pipes may block; short so that deadlines and a dead
# gdb are noticed quickly.
_POLL_SEC = 0.2
# After a burst of output, how long pygdbmi keeps reading before it returns.
_QUIET_SEC = 0.002


class MIError(RuntimeError):
    """Base class of everything the MI driver raises."""


class GdbCommandError(MIError):
    """gdb answered a command with ``^error``; ``message`` is gdb's own text."""

    def __init__(self, command: str, message: str, console: str = "") -> None:
        super().__init__(f"{command}: {message}")
        self.command = command
        self.message = message
        self.console = console


class MITimeout(MIError, TimeoutError):
    """A command or a wait did not complete before its deadline."""


class GdbExited(MIError):
    """The gdb process went away while we were waiting for it."""


@dataclass
class MIResult:
    """gdb's answer to one command."""

    token: int
    command: str
    message: str  # "done", "running", "connected" or "exit"
    payload: dict[str, Any] | None
    console: str  # console-stream text printed while the command ran
    log: str  # log-stream text (gdb's own warnings and echoed CLI errors)
    records: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def json_lines(self) -> list[Any]:
        """Every console line that is a JSON object or array, parsed.

        The ``pv-`` commands print their machine-readable results as one JSON
        document per line; human text around them is ignored.
        """
        out = []
        for line in self.console.splitlines():
            line = line.strip()
            if line[:1] in ("{", "["):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def json(self) -> Any:
        """The one JSON document the command printed (error if none or several)."""
        docs = self.json_lines()
        if len(docs) != 1:
            raise MIError(
                f"{self.command}: expected one JSON line in the output, got {len(docs)}:\n"
                + _tail(self.console + self.log)
            )
        return docs[0]


def mi_quote(text: str) -> str:
    """Quote ``text`` as an MI c-string argument."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class GdbMI:
    """One gdb process spoken to over MI3.  Use it as a context manager.

    >>> with GdbMI(args=["./prog"]) as gdb:          # doctest: +SKIP
    ...     gdb.execute("-break-insert main")
    ...     gdb.execute("-exec-run")
    ...     stop = gdb.wait_for_stop(timeout=10)
    """

    def __init__(
        self,
        gdb: str = DEFAULT_GDB,
        args: Sequence[str] = (),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        self.default_timeout = timeout
        self.argv = [gdb, "--nx", "--quiet", "--interpreter=mi3", *args]
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                env=env,
                cwd=cwd,
                # Own session and process group: close() can signal the group,
                # and a Ctrl-C at the terminal does not hit gdb behind our back.
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise MIError(f"cannot start {gdb!r}: not found (install gdb-multiarch)") from exc
        assert self.process.stdin and self.process.stdout and self.process.stderr
        self._io = IoManager(self.process.stdin, self.process.stdout, self.process.stderr, _QUIET_SEC)
        self._tokens = itertools.count(1)
        self._pending: deque[dict[str, Any]] = deque()  # read, not yet consumed
        self._outstanding: deque[int] = deque()  # tokens sent, result not seen yet
        self._stops: deque[dict[str, Any]] = deque()  # *stopped payloads not yet waited for
        self.running = False  # the target is running (last exec record was *running)
        self.target_exited = False  # the inferior exited or the remote end went away
        self.async_console: list[str] = []  # console text printed while no command ran
        self.stderr_text = ""
        self._closed = False
        try:
            # gdb prints a banner-free prompt first; the first command proves it is alive.
            self.execute("-gdb-set mi-async on", timeout=timeout)
            self.execute("-gdb-set pagination off", timeout=timeout)
            self.execute("-gdb-set confirm off", timeout=timeout)
            self.execute("-gdb-set width 0", timeout=timeout)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ reading
    def _read(self, deadline: float) -> bool:
        """Read whatever gdb printed within the deadline into ``_pending``.

        Returns False when nothing came.  Raises GdbExited if gdb is gone.
        """
        wait = max(0.0, min(deadline - time.monotonic(), _POLL_SEC))
        records = self._io.get_gdb_response(timeout_sec=wait, raise_error_on_timeout=False)
        for record in records:
            if record.get("stream") == "stderr":
                self.stderr_text += str(record.get("payload") or "") + "\n"
                continue
            self._pending.append(record)
        if not records and self.process.poll() is not None:
            # Drain what is left, then report the exit.
            raise GdbExited(
                f"gdb exited with status {self.process.returncode}"
                + (f":\n{_tail(self.stderr_text)}" if self.stderr_text.strip() else "")
            )
        return bool(records)

    def _next_record(self, deadline: float) -> dict[str, Any] | None:
        while not self._pending:
            if time.monotonic() >= deadline:
                return None
            self._read(deadline)
        return self._pending.popleft()

    def _note_async(self, record: dict[str, Any]) -> None:
        """Track exec state from out-of-band records."""
        if record.get("type") != "notify":
            return
        if record.get("message") == "running":
            self.running = True
        elif record.get("message") == "stopped":
            self.running = False
            self._stops.append(record.get("payload") or {})
        elif record.get("message") == "thread-group-exited":
            # The inferior exited or the remote side (QEMU) closed the connection;
            # a remote close comes with no *stopped, so make one for waiters.
            self.target_exited = True
            if self.running or not self._stops:
                self._stops.append({"reason": "thread-group-exited", **(record.get("payload") or {})})
            self.running = False

    # ----------------------------------------------------------------- commands
    def execute(self, command: str, timeout: float | None = None) -> MIResult:
        """Send one MI command and wait for its own result record.

        Raises GdbCommandError on ``^error``, MITimeout when the deadline passes
        (the command is then remembered as outstanding and its late output is
        discarded, never attributed to a later command), GdbExited if gdb dies.
        """
        if self._closed:
            raise MIError("gdb driver is closed")
        token = next(self._tokens)
        deadline = time.monotonic() + (self.default_timeout if timeout is None else timeout)
        log.debug("-> %d%s", token, command)
        try:
            self.process.stdin.write(f"{token}{command}\n".encode())  # type: ignore[union-attr]
            self.process.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, OSError) as exc:
            raise GdbExited(f"gdb is gone (writing {command!r}): {exc}") from exc
        self._outstanding.append(token)
        console: list[str] = []
        logs: list[str] = []
        records: list[dict[str, Any]] = []
        while True:
            record = self._next_record(deadline)
            if record is None:
                raise MITimeout(
                    f"{command}: no answer from gdb within "
                    f"{self.default_timeout if timeout is None else timeout:g} s"
                    + (f"; output so far:\n{_tail(''.join(console + logs))}" if console or logs else "")
                )
            kind = record.get("type")
            if kind == "result":
                rtoken = record.get("token")
                if rtoken in self._outstanding:
                    # gdb answers in order: everything before this token's result
                    # belonged to it (or to an older, abandoned command).
                    while self._outstanding and self._outstanding[0] != rtoken:
                        self._outstanding.popleft()
                    self._outstanding.popleft()
                if rtoken != token:
                    log.debug("discarding late answer to token %s: %s", rtoken, record)
                    console.clear()
                    logs.clear()
                    records.clear()
                    continue
                records.append(record)
                payload = record.get("payload")
                message = record.get("message") or ""
                if message == "running":
                    self.running = True
                if message == "error":
                    text = (payload or {}).get("msg", "") if isinstance(payload, dict) else str(payload)
                    raise GdbCommandError(command, text, "".join(console))
                return MIResult(token, command, message, payload, "".join(console), "".join(logs), records)
            records.append(record)
            if kind == "console":
                console.append(record.get("payload") or "")
            elif kind == "log":
                logs.append(record.get("payload") or "")
            else:
                self._note_async(record)

    def console(self, cli_command: str, timeout: float | None = None) -> MIResult:
        """Run a CLI command (e.g. ``pv-snapshot --json -``) and collect what it printed."""
        return self.execute(f"-interpreter-exec console {mi_quote(cli_command)}", timeout)

    def console_json(self, cli_command: str, timeout: float | None = None) -> Any:
        """Run a CLI command that prints one JSON document; return it parsed."""
        return self.console(cli_command, timeout).json()

    # ----------------------------------------------------------- target control
    def poll_events(self, timeout: float = 0.0) -> None:
        """Read and account for out-of-band output (stops, console) for up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            while self._pending:
                record = self._pending.popleft()
                if record.get("type") == "console" and not self._outstanding:
                    self.async_console.append(record.get("payload") or "")
                self._note_async(record)
            if time.monotonic() >= deadline:
                return
            self._read(deadline)

    def wait_for_stop(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the next ``*stopped`` record and return its payload."""
        limit = self.default_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while not self._stops:
            if time.monotonic() >= deadline:
                raise MITimeout(f"target did not stop within {limit:g} s")
            self.poll_events(min(_POLL_SEC, max(0.0, deadline - time.monotonic())))
        return self._stops.popleft()

    def cont(self, timeout: float | None = None, wait: bool = True) -> dict[str, Any] | None:
        """``-exec-continue``; with ``wait``, block until the next stop and return it."""
        self.poll_events()
        self._stops.clear()
        self.execute("-exec-continue", timeout=timeout)
        return self.wait_for_stop(timeout) if wait else None

    def interrupt(self, timeout: float | None = None) -> dict[str, Any]:
        """Stop a running target (all threads) and return the ``*stopped`` payload."""
        self.poll_events()
        if not self.running:
            raise MIError("interrupt: the target is not running")
        self._stops.clear()
        self.execute("-exec-interrupt --all", timeout=timeout)
        return self.wait_for_stop(timeout)

    def connect_remote(self, address: str, timeout: float | None = None) -> MIResult:
        """Attach to a gdbstub (``HOST:PORT`` or a unix socket path)."""
        return self.execute(f"-target-select remote {address}", timeout)

    # ----------------------------------------------------------------- teardown
    def close(self, timeout: float = 5.0) -> None:
        """Quit gdb (it kills or detaches its inferiors), then make sure it is gone."""
        if self._closed:
            return
        self._closed = True
        proc = self.process
        if proc.poll() is None:
            try:
                proc.stdin.write(b"-gdb-exit\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
            except OSError:
                pass
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                continue
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass

    def __enter__(self) -> GdbMI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # last resort; close() is the real path
        try:
            if not self._closed and self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
        except Exception:
            pass


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file (e.g. a ``pv-watch --log`` trace), skipping blank lines."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield json.loads(line)
