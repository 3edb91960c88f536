"""`pyvcore lab setup|up|status|down`: a real POWER8 KVM-HV host (Debian 6.12, kvm-hv) on
QEMU powernv8 with a multi-vcpu KVM guest and a gdbstub on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pyvcore import cliargs
from pyvcore.lab import SCENARIOS
from pyvcore.lab import qemu as labqemu
from pyvcore.lab.qemu import LabError, clear_lock_info
from pyvcore.lab.scenarios import THREAD_CHOICES


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = subparsers.add_parser("lab", help="the QEMU powernv8 KVM-HV lab", description=__doc__)
    commands = lab.add_subparsers(dest="lab_command", metavar="COMMAND")

    def usage(args: argparse.Namespace) -> int:
        lab.print_help()
        return 2

    lab.set_defaults(func=usage)

    _add_setup(commands)
    _add_up(commands)
    status = commands.add_parser("status", help="show the running lab")
    status.add_argument("--json", action="store_true", help="print the status object as JSON")
    status.set_defaults(func=cmd_status)

    down = commands.add_parser("down", help="stop the running lab")
    down.set_defaults(func=cmd_down)


def _add_setup(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`pyvcore lab setup` and its options."""
    setup = commands.add_parser("setup", help="install packages, fetch the kernel, build the patched QEMU")
    setup.add_argument("--no-qemu-build", action="store_true", help="skip building the patched QEMU")
    setup.add_argument("--rebuild-qemu", action="store_true", help="rebuild the patched QEMU even if cached")
    setup.add_argument(
        "--no-plugin-build",
        action="store_true",
        help="skip building pyvcore trace's QEMU plugin (needs cargo)",
    )
    setup.add_argument(
        "--check-cold",
        action="store_true",
        help="then check the QEMU build's cold path: configure a fresh copy of the patched source "
        "in a temporary directory and compile the patched files and a plugin (about 1-2 minutes)",
    )
    setup.add_argument(
        "--kernel",
        action="append",
        default=[],
        type=_series,
        metavar="SERIES",
        help="also set up this Debian kernel series: 6.1, 6.12 or 7.2 (repeatable; 6.12 always is)",
    )
    setup.add_argument(
        "--pagesize",
        choices=("4k", "64k"),
        default="4k",
        help="page size of the --kernel packages (64k: the -64k flavour)",
    )
    setup.set_defaults(func=cmd_setup)


def _add_up(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`pyvcore lab up` and its options."""
    up = commands.add_parser("up", help="boot the lab and leave it running (detached)")
    up.add_argument(
        "--scenario",
        default="all",
        choices=SCENARIOS,
        metavar="SCENARIO",
        help=f"guest scenario: {', '.join(SCENARIOS)} (default: all)",
    )
    up.add_argument(
        "--threads",
        type=int,
        default=4,
        choices=THREAD_CHOICES,
        help=f"hardware threads per core: {'|'.join(map(str, THREAD_CHOICES))}",
    )
    up.add_argument(
        "--qemu",
        default="patched",
        type=cliargs.qemu,
        metavar="patched|stock|PATH",
        help="which QEMU (default: patched)",
    )
    add_kernel_options(up)
    up.add_argument(
        "--plugin",
        metavar="PATH",
        type=cliargs.input_file,
        help="a QEMU TCG plugin to load (-plugin PATH,...)",
    )
    up.add_argument(
        "--plugin-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an argument for --plugin (repeatable)",
    )
    up.add_argument(
        "--hold",
        type=int,
        default=0,
        help="seconds the guest scenario runs before it reports and powers off (0 = until `lab down`)",
    )
    up.add_argument(
        "--gdb-port", type=cliargs.port, default=None, help="gdbstub port on 127.0.0.1 (default: a free one)"
    )
    up.add_argument(
        "--timeout",
        type=cliargs.seconds,
        default=None,
        help="seconds a boot may take before it counts as hung",
    )
    cliargs.add_lock_wait(up)
    # The option's old name, kept working and out of --help (every command says --lock-wait).
    up.add_argument(
        "--wait", dest="lock_wait", type=cliargs.seconds, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    up.set_defaults(func=cmd_up)


def _series(text: str) -> str:
    """A Debian kernel series the lab can set up (6.1, 6.12, 7.2)."""
    from pyvcore.lab.kernels import KERNELS

    series = list(dict.fromkeys(k.series for k in KERNELS.values()))
    if text not in series:
        raise cliargs.invalid_choice(text, series)
    return text


def add_kernel_options(parser: argparse.ArgumentParser) -> None:
    """``--kernel NAME|VMLINUX`` (:func:`pyvcore.cliargs.add_kernel`) and ``--modules DIR``."""
    cliargs.add_kernel(parser)
    parser.add_argument(
        "--modules",
        metavar="DIR",
        default=None,
        type=cliargs.input_dir,
        help="a directory with kvm.ko and kvm-hv.ko (.ko or .ko.xz, anywhere below it) for --kernel; "
        "without it KVM must be built into your kernel",
    )
    add_symbols_option(parser)


def add_symbols_option(parser: argparse.ArgumentParser) -> None:
    """``--symbols FILE``: the debug image of a --kernel with neither BTF nor DWARF."""
    parser.add_argument(
        "--symbols",
        metavar="FILE",
        default=None,
        type=cliargs.symbols,
        help=cliargs.SYMBOLS_HELP,
    )


def parse_plugin(path: str | None, args: list[str]) -> tuple[str, dict[str, str]] | None:
    """``(path, {key: value})`` from --plugin/--plugin-arg; LabError on a bad KEY=VALUE."""
    if path is None:
        if args:
            raise LabError("--plugin-arg needs --plugin")
        return None
    parsed = {}
    for item in args:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LabError(f"--plugin-arg {item!r}: expected KEY=VALUE")
        parsed[key] = value
    return path, parsed


def _fail(command: str, err: LabError) -> int:
    print(f"pyvcore lab {command}: {err}", file=sys.stderr)
    if err.detail:  # console tail of a hung or dead boot
        print("\n".join(f"    {line}" for line in err.detail.splitlines()), file=sys.stderr)
    return 2


def cmd_setup(args: argparse.Namespace) -> int:
    from pyvcore.lab.kernels import kernel_name
    from pyvcore.lab.setup import SetupError, setup

    try:
        names = [kernel_name(series, args.pagesize) for series in args.kernel]
    except SetupError as err:
        print(f"pyvcore lab setup: {err}", file=sys.stderr)
        return 2
    return setup(
        build_qemu=not args.no_qemu_build,
        force_qemu=args.rebuild_qemu,
        kernel_names=names,
        build_plugin=not args.no_plugin_build,
        check_cold=args.check_cold,
    )


def cmd_up(args: argparse.Namespace) -> int:
    from pyvcore.lab import BOOT_TIMEOUT, Lab

    try:
        lab = Lab(
            args.scenario,
            args.threads,
            args.qemu,
            args.hold,
            kernel=args.kernel,
            modules=args.modules,
            symbols=args.symbols,
            plugin=parse_plugin(args.plugin, args.plugin_arg),
            gdb_port=args.gdb_port,
            boot_timeout=args.timeout or BOOT_TIMEOUT,
            lock_wait=args.lock_wait,
            detached=True,
        )
        lab.prepare()  # bad input is refused before anything else is looked at
        running = Lab.running()
        if running is not None:
            raise LabError(
                f"a lab is already running (pid {running.pid}, scenario {running.scenario}, "
                f"gdb {running.gdb_address}); stop it with `pyvcore lab down`"
            )
        kernel = f", kernel {args.kernel}" if args.kernel else ""
        print(
            f"pyvcore lab up: booting the lab: scenario {args.scenario}, {args.qemu} QEMU, "
            f"{args.threads} threads{kernel} ...",
            file=sys.stderr,
            flush=True,
        )
        lab.start()
    except LabError as err:
        return _fail("up", err)
    lab.save_state()
    _print_status(lab.status())
    return 0


def _print_status(status: dict[str, Any]) -> None:
    rows = [
        (
            "scenario",
            f"{status['scenario']} ({status['threads']} threads, {status['qemu']} QEMU, hold {status['hold']} s)",
        ),
        ("kernel", status.get("kernel")),
        ("gdb", status["gdb"]),
        ("pid", status["pid"]),
        ("state", status.get("run_state") or ("running" if status["running"] else "stopped")),
        ("boot", f"{status['boot_seconds']} s to READY" if status.get("boot_seconds") else "?"),
        ("vmlinux", status["vmlinux"]),
        ("console", status["console"]),
    ]
    for name, sections in sorted(status["modules"].items()):
        # The main sections only (`--json` has them all): what add-symbol-file needs.
        text = " ".join(f"{sec}=0x{sections[sec]:x}" for sec in (".text", ".data", ".bss") if sec in sections)
        rows.append((f"module {name}", text))
    if status.get("plugin"):
        rows.append(("plugin", status["plugin"]))
    if status.get("done"):
        rows.append(("done", status["done"]["status"]))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"attach: pyvcore gdb   (or gdb-multiarch {status['vmlinux']} -ex 'target remote {status['gdb']}')")


def cmd_status(args: argparse.Namespace) -> int:
    from pyvcore.lab import Lab

    lab = Lab.running()
    if lab is None:
        Lab.clear_state()
        # A lab that ended on its own (--hold) is named no more; one started by another
        # program (a Lab() in a script or test, `pyvcore diff`) still holds the machine.
        held_by = None if clear_lock_info() else labqemu.lock_holder(labqemu.LOCK_FILE)
        if args.json:
            print(json.dumps({"running": False} | ({"machine_lock_held_by": held_by} if held_by else {})))
        elif held_by:
            print(
                "no lab started by `pyvcore lab up` is running, but the machine's one QEMU lab "
                f"is in use by {held_by}: `pyvcore lab up --lock-wait SECONDS` (or `pyvcore diff "
                "--lock-wait SECONDS`) queues for it",
                file=sys.stderr,
            )
        else:
            print("no lab is running (start one with `pyvcore lab up`)", file=sys.stderr)
        return 2
    status = lab.status()
    if args.json:
        print(json.dumps(status))
    else:
        _print_status(status)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from pyvcore.lab import Lab

    lab = Lab.running()
    if lab is None:
        Lab.clear_state()
        clear_lock_info()
        print("no lab is running")
        return 0
    pid = lab.pid
    lab.stop()
    Lab.clear_state()
    print(f"lab stopped (QEMU pid {pid})")
    return 0
