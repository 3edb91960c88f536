"""`pyvcore gdb`: gdb-multiarch attached to the running lab, ready to use.

Starts gdb with the lab's vmlinux, kvm.ko and kvm-hv.ko symbols at the load
addresses the guest reported (``add-symbol-file`` with the module's
``.text``/``.data``/``.bss``... from ``lab status --json`` "modules"), connects
to the lab's gdbstub and sources the pv-* plugin.  Without a lab, ``--vmlinux``
and ``--remote`` name a kernel and a gdbstub by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

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


def gdb_command(
    *, vmlinux: str, remote: str | None, modules: list[str], gdb: str = GDB, extra: list[str] | None = None
) -> list[str]:
    """The gdb-multiarch argv (kept separate from exec for tests and --print)."""
    ex = [
        "set pagination off",
        "set architecture powerpc:common64",
        "set endian little",
        f"file {vmlinux}",
        "set confirm off",
        *modules,
        "set confirm on",
    ]
    if remote:
        ex.append(f"target remote {remote}")
    ex.append(f"source {plugin_entry()}")
    argv = [gdb, "-q"]
    for command in ex:
        argv += ["-ex", command]
    return argv + list(extra or [])


AUTOLOAD = """\
# gdb auto-load script for this kernel: loads the pyvcore pv-* commands.
# Written by `pyvcore gdb --write-autoload`; gdb runs it when it loads the
# vmlinux next to it, if the directory is in `set auto-load safe-path`.
import runpy

# run_path, not `source`: a nested `source` keeps this file's __file__, and the
# entry finds the pyvcore package from its own path.
runpy.run_path("{entry}", run_name="__main__")
"""


def write_autoload(vmlinux: Path) -> Path:
    """``<vmlinux>-gdb.py`` next to the kernel (gdb's objfile auto-load name)."""
    script = vmlinux.with_name(vmlinux.name + "-gdb.py")
    script.write_text(AUTOLOAD.format(entry=plugin_entry()))
    return script


def run(args: argparse.Namespace) -> int:
    if args.entry:
        print(plugin_entry())
        return 0
    status: dict[str, Any] = {}
    if args.vmlinux is None or (args.remote is None and not args.write_autoload):
        try:
            from pyvcore.lab import Lab

            lab = Lab.running()
        except Exception as e:
            print(f"pyvcore gdb: cannot query the lab: {e}", file=sys.stderr)
            lab = None
        if lab is None and (args.vmlinux is None or (args.remote is None and not args.write_autoload)):
            print(
                "pyvcore gdb: no lab is running: start one with `pyvcore lab up`, "
                "or give --vmlinux and --remote HOST:PORT",
                file=sys.stderr,
            )
            return 2
        if lab is not None:
            status = lab.status()
    vmlinux = args.vmlinux or status.get("vmlinux")
    remote = args.remote or status.get("gdb")
    if not vmlinux or not Path(vmlinux).is_file():
        print(f"pyvcore gdb: vmlinux not found: {vmlinux}", file=sys.stderr)
        return 2
    if args.write_autoload:
        try:
            script = write_autoload(Path(vmlinux))
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


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "gdb",
        help="start gdb-multiarch attached to the running lab with the pv-* commands",
        description="Start gdb-multiarch attached to the running lab (pyvcore lab up): "
        "vmlinux, kvm.ko and kvm-hv.ko symbols at their load addresses, "
        "the gdbstub connected and the pv-* plugin loaded.",
    )
    p.add_argument("--vmlinux", help="kernel image (default: the lab's)")
    p.add_argument("--remote", metavar="HOST:PORT", help="gdbstub (default: the lab's)")
    p.add_argument("--gdb", default=GDB, help=f"gdb binary (default: {GDB})")
    p.add_argument("--no-modules", action="store_true", help="do not load module symbols")
    p.add_argument("--no-connect", action="store_true", help="do not connect to the gdbstub")
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
