"""`pyvcore gdb`: gdb-multiarch attached to the running lab, ready to use.

Starts gdb with the lab's vmlinux, kvm.ko and kvm-hv.ko symbols at the load
addresses the guest reported (``add-symbol-file`` with the module's
``.text``/``.data``/``.bss``... from ``lab status --json`` "modules"), connects
to the lab's gdbstub and sources the pv-* plugin.  Without a lab, ``--vmlinux``
and ``--remote`` name a kernel and a gdbstub by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from pyvcore import cliargs
from pyvcore.errors import PyvcoreError, at, cannot_read

GDB = "gdb-multiarch"


def plugin_entry() -> Path:
    """The file gdb sources (works from a checkout and from an installed wheel)."""
    return Path(__file__).resolve().parent / "gdb.py"


def module_commands(status: dict[str, Any]) -> list[str]:
    """``add-symbol-file`` for every module the guest reported, at its section addresses."""
    out = []
    objects = status.get("module_objects") or {}
    for name, sections in sorted((status.get("modules") or {}).items()):
        path = objects.get(name)
        sections = sections or {}
        if not path or ".text" not in sections:
            continue
        extra = " ".join(
            f"-s {sec} {int(addr):#x}" for sec, addr in sorted(sections.items()) if sec != ".text"
        )
        out.append(f"add-symbol-file {path} {int(sections['.text']):#x} {extra}".rstrip())
    return out


QUIET_START = """\
import gdb
for command in ("set architecture powerpc:common64", "set endian little", "file " + {vmlinux!r}):
    try:
        gdb.execute(command, to_string=True)
    except gdb.error as e:
        gdb.write("pyvcore gdb: %s: %s\\n" % (command, e), gdb.STDERR)
loaded = []
for name, command in {modules!r}:
    try:
        gdb.execute(command, to_string=True)
        loaded.append(name)
    except gdb.error as e:
        gdb.write("pyvcore gdb: symbols of %s not loaded: %s\\n" % (name, e), gdb.STDERR)
if loaded:
    gdb.write("pyvcore gdb: %s symbols at their load addresses\\n" % ", ".join(loaded))
"""
QUIET_CONNECT = """\
try:
    gdb.execute("target remote " + {remote!r}, to_string=True)
    gdb.write("pyvcore gdb: connected to %s\\n" % {remote!r})
except gdb.error as e:
    gdb.write("pyvcore gdb: cannot connect to %s: %s\\n" % ({remote!r}, e), gdb.STDERR)
"""


def gdb_command(
    *,
    vmlinux: str,
    remote: str | None,
    modules: list[str],
    gdb: str = GDB,
    extra: list[str] | None = None,
    verbose: bool = True,
) -> list[str]:
    """The gdb-multiarch argv (kept separate from exec for tests and --print).

    Quiet (``verbose=False``): the module symbols are loaded and the target
    connected inside gdb's Python with their output captured, so the user sees
    one line for each instead of every section address, the `.strtab`/`.symtab`
    warnings and the first stop's "Cannot access memory" lines."""
    ex = ["set tcp connect-timeout 5"]
    if verbose:
        ex += ["set architecture powerpc:common64", "set endian little", f"file {vmlinux}"]
        ex += ["set confirm off", *modules, "set confirm on"]
        if remote:
            ex.append(f"target remote {remote}")
    else:
        named = [(_module_name(m), m) for m in modules]
        code = QUIET_START.format(vmlinux=vmlinux, modules=named)
        if remote:
            code += QUIET_CONNECT.format(remote=remote)
        ex.append(f"python exec({code!r})")
    ex.append(f"source {plugin_entry()}")
    argv = [gdb, "-q"]
    for command in ex:
        argv += ["-ex", command]
    return argv + list(extra or [])


def _module_name(command: str) -> str:
    """``add-symbol-file /x/kvm-hv.ko ...`` -> ``kvm-hv``."""
    return Path(command.split()[1]).name.split(".")[0]


LAB_HINT = "is the lab up (`pyvcore lab status`)?"


def reachable(
    remote: str, timeout: float = 3.0, *, option: str = "--remote", hint: str = LAB_HINT
) -> str | None:
    """None when something accepts TCP connections at HOST:PORT, else why not (one line:
    ``nothing answers at HOST:PORT (Connection refused); HINT``).  The one probe of a
    gdbstub before gdb is started on it (`pyvcore gdb --remote`, `pyvcore diff --attach`):
    a TCP connect answers in milliseconds where gdb's own ``target remote`` retries for
    seconds and then names its MI command."""
    import socket

    host, _, port = remote.rpartition(":")
    if not host or not port.isdigit():
        return f"{option} must be HOST:PORT, not {remote!r}"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except OSError as e:
        why = e.strerror or str(e) or "no answer"
        return f"nothing answers at {remote} ({why}); {hint}"


AUTOLOAD = """\
# gdb auto-load script for this kernel: loads the pyvcore pv-* commands.
# Written by `pyvcore gdb --write-autoload`; gdb runs it when it loads the
# vmlinux next to it, if the directory is in `set auto-load safe-path`.
import runpy

# run_path, not `source`: a nested `source` keeps this file's __file__, and the
# entry finds the pyvcore package from its own path.
runpy.run_path("{entry}", run_name="__main__")
"""


CHAIN = """\
import runpy
runpy.run_path("{entry}", run_name="__main__")  # pyvcore pv-* commands
"""


class AutoloadExists(OSError):
    """``<vmlinux>-gdb.py`` is already there (a file or a symlink): never overwritten."""


def write_autoload(vmlinux: Path) -> Path:
    """Create ``<vmlinux>-gdb.py`` next to the kernel (gdb's objfile auto-load name).

    Refuses (AutoloadExists, saying how to chain pyvcore into it) when that
    name exists in any form: in a kernel build tree it is the symlink to
    scripts/gdb's own loader, tracked by git.  Created with O_EXCL|O_NOFOLLOW,
    so a file or link appearing meanwhile is not written through either."""
    script = vmlinux.with_name(vmlinux.name + "-gdb.py")
    entry = plugin_entry()
    if os.path.lexists(script):
        raise AutoloadExists(_exists_message(script, entry))
    try:
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        raise AutoloadExists(_exists_message(script, entry)) from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(AUTOLOAD.format(entry=entry))
    return script


def _exists_message(script: Path, entry: Path) -> str:
    what = f"a symlink to {os.readlink(script)}" if script.is_symlink() else "a file"
    chain = CHAIN.format(entry=entry).rstrip("\n").replace("\n", "\n    ")
    return (
        f"{script} already exists ({what}); pyvcore does not overwrite it or write through it.\n"
        f"To load the pv-* commands with it, append to the loader it is (or to ~/.gdbinit, "
        f"as `source {entry}`):\n    {chain}"
    )


def lab_status(args: argparse.Namespace) -> dict[str, Any] | None:
    """The lab's status object: from ``--status FILE`` (``pyvcore lab status --json``
    output, ``-`` for stdin), else from the running lab; None when there is none."""
    if args.status:
        try:
            text = sys.stdin.read() if args.status == "-" else Path(args.status).read_text()
            status = json.loads(text)
        except OSError as e:
            raise PyvcoreError(cannot_read(args.status, e)) from None
        except json.JSONDecodeError as e:  # STATUS:LINE:COLUMN, as every reader places a line
            raise PyvcoreError(
                f"{at(args.status, e.lineno, e.colno)}: not a lab status object (`pyvcore lab status --json`): "
                f"not JSON: {e.msg}"
            ) from None
        except ValueError as e:
            raise PyvcoreError(
                f"{args.status} is not a lab status object (`pyvcore lab status --json`): {e}"
            ) from None
        if not isinstance(status, dict):
            raise PyvcoreError(f"{args.status} is not a lab status object (`pyvcore lab status --json`)")
        return status
    try:
        from pyvcore.lab import Lab

        lab = Lab.running()
    except Exception as e:
        print(f"pyvcore gdb: cannot query the lab: {e}", file=sys.stderr)
        return None
    return lab.status() if lab is not None else None


def run(args: argparse.Namespace) -> int:
    if args.entry:
        print(plugin_entry())
        return 0
    need_remote = not (args.no_connect or args.write_autoload)
    status: dict[str, Any] = {}
    if args.status or args.vmlinux is None or (need_remote and args.remote is None):
        found = lab_status(args)
        if found is None and args.remote is not None and args.vmlinux is None:
            print(
                "pyvcore gdb: --remote HOST:PORT needs --vmlinux VMLINUX (the kernel that target runs); "
                "no lab is running to take it from",
                file=sys.stderr,
            )
            return 2
        if found is None:
            print(
                "pyvcore gdb: no lab is running: start one with `pyvcore lab up`, "
                "or give --vmlinux (and --remote HOST:PORT, or --no-connect)",
                file=sys.stderr,
            )
            return 2
        status = found
    vmlinux = args.vmlinux or status.get("vmlinux")
    remote = args.remote or status.get("gdb")
    if not vmlinux:
        raise PyvcoreError("the lab status names no vmlinux; give --vmlinux")
    if not args.vmlinux:  # the lab's (or --status's): checked as --vmlinux is by argparse
        try:
            cliargs.vmlinux(str(vmlinux))
        except argparse.ArgumentTypeError as e:
            raise PyvcoreError(f"the lab's vmlinux: {e}") from None
    if args.write_autoload:
        try:
            script = write_autoload(Path(vmlinux))
        except AutoloadExists as e:
            print(f"pyvcore gdb: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"pyvcore gdb: cannot write the auto-load script: {e}", file=sys.stderr)
            return 2
        print(f"wrote {script}\nallow it in ~/.gdbinit with: add-auto-load-safe-path {script.parent}")
        return 0
    modules = [] if args.no_modules else module_commands(status)
    argv = gdb_command(
        vmlinux=str(vmlinux),
        remote=None if args.no_connect else remote,
        modules=modules,
        gdb=args.gdb,
        extra=args.gdb_args,
        verbose=args.verbose,
    )
    if args.print:
        print(" ".join(_quote(a) for a in argv))
        return 0
    if shutil.which(args.gdb) is None:
        print(
            f"pyvcore gdb: {args.gdb} not found (apt-get install gdb-multiarch, or `pyvcore lab setup`)",
            file=sys.stderr,
        )
        return 2
    if remote and not args.no_connect:
        why = reachable(remote)
        if why:
            print(f"pyvcore gdb: {why}", file=sys.stderr)
            return 2
    os.execvpe(argv[0], argv, gdb_environment())
    return 0  # not reached


def gdb_environment() -> dict[str, str]:
    """This environment plus where pyvcore's dependencies are, for gdb's own Python."""
    import tabulate

    env = dict(os.environ)
    env["PYVCORE_SITE_PACKAGES"] = str(Path(tabulate.__file__).resolve().parent.parent)
    return env


def _quote(word: str) -> str:
    import shlex

    return shlex.quote(word)


def _host_port(text: str) -> str:
    """HOST:PORT of a gdbstub."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return text


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "gdb",
        help="start gdb-multiarch attached to the running lab with the pv-* commands",
        description="Start gdb-multiarch attached to the running lab (pyvcore lab up): "
        "vmlinux, kvm.ko and kvm-hv.ko symbols at their load addresses, "
        "the gdbstub connected and the pv-* plugin loaded.",
    )
    p.add_argument("--vmlinux", type=cliargs.vmlinux, help="kernel image (default: the lab's)")
    p.add_argument("--remote", metavar="HOST:PORT", type=_host_port, help="gdbstub (default: the lab's)")
    p.add_argument("--gdb", default=GDB, help=f"gdb binary (default: {GDB})")
    p.add_argument("--no-modules", action="store_true", help="do not load module symbols")
    p.add_argument(
        "--no-connect",
        action="store_true",
        help="do not connect to the gdbstub (no lab needed with --vmlinux)",
    )
    p.add_argument(
        "--status",
        metavar="FILE",
        type=cliargs.input_file,
        help="the lab's status object (`pyvcore lab status --json` output; '-' for stdin) "
        "instead of asking the running lab",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="show gdb's own output while loading module symbols and connecting",
    )
    p.add_argument("--print", action="store_true", help="print the gdb command line and exit")
    p.add_argument(
        "--entry",
        action="store_true",
        help="print the path of the gdb entry script (for `source` in ~/.gdbinit)",
    )
    p.add_argument(
        "--write-autoload",
        action="store_true",
        help="write <vmlinux>-gdb.py next to the kernel so gdb loads pv-* with it",
    )
    p.add_argument(
        "gdb_args", nargs=argparse.REMAINDER, help="extra gdb arguments after `--` (e.g. -batch -ex pv-paca)"
    )
    p.set_defaults(func=_run_stripping_dashdash)


def _run_stripping_dashdash(args: argparse.Namespace) -> int:
    if args.gdb_args and args.gdb_args[0] == "--":
        args.gdb_args = args.gdb_args[1:]
    return run(args)
