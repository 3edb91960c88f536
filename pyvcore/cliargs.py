"""Argument types every pyvcore command shares: inputs are checked while the
command line is parsed, before any lab, gdb or QEMU starts.

Each type returns the value or raises ``argparse.ArgumentTypeError``; pyvcore's
parser (:class:`pyvcore.cli.Parser`) turns that into one line,
``pyvcore CMD: argument --opt: MESSAGE``, and exit status 2.  A list of names
refuses an unknown one with argparse's own ``invalid choice`` wording, so every
enumerated option of every command answers alike.

A file or directory that cannot be read is the exception: the types raise
:class:`pyvcore.errors.UnreadableFile`, which argparse lets through, so the line is
``pyvcore CMD: cannot read PATH: No such file or directory``, the same as when a
command opens the file itself.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from pyvcore.errors import UnreadableFile


def invalid_choice(value: str, choices: Sequence[str], extra: str = "") -> argparse.ArgumentTypeError:
    """argparse's own message for a value outside ``choices`` (``extra`` is added after them)."""
    listed = ", ".join(repr(c) for c in choices)
    return argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {listed}{extra})")


def names(choices: Sequence[str], *, every: str | None = None) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated list of names out of ``choices`` (``every``, e.g. "all", stands for
    all of them), as a tuple; an unknown or empty name is refused naming the choices."""

    def parse(text: str) -> tuple[str, ...]:
        if every is not None and text == every:
            return tuple(choices)
        picked = tuple(part.strip() for part in text.split(","))
        for name in picked:
            if name not in choices:
                more = f", or {every!r}" if every else ""
                raise invalid_choice(name, choices, f"{more}; several comma-separated")
        return picked

    parse.__name__ = "names"
    return parse


LOCK_WAIT_DEFAULT = 600.0
"""Seconds every command that boots the lab queues for the machine's one QEMU by default."""


def add_lock_wait(parser: argparse.ArgumentParser) -> argparse.Action:
    """``--lock-wait SECONDS``, the same for every command that takes the lab's machine lock
    (diff, trace, mutants, lab up): wait that long for another QEMU to free the machine,
    saying who holds it; 0 refuses at once (exit 2)."""
    return parser.add_argument(
        "--lock-wait",
        type=seconds,
        default=LOCK_WAIT_DEFAULT,
        metavar="SECONDS",
        help="seconds to wait for another QEMU lab on this machine to finish, saying who holds it "
        "(default %(default)g; 0 = fail at once)",
    )


def seconds(text: str) -> float:
    """A duration in seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, not {text!r}")
    return value


def positive(text: str) -> int:
    """An integer above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value


def factor(text: str) -> float:
    """A number above 0 (a multiplier)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number above 0, not {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, not {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port number, 1-65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a TCP port (1-65535), not {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"expected a TCP port (1-65535), not {text!r}")
    return value


def input_file(text: str) -> str:
    """An existing, readable regular file ("-" passes: stdin, where the command reads it)."""
    return _readable(text, "a file")


def file_of(expected: str) -> Callable[[str], str]:
    """:func:`input_file` whose refusal of a directory says what file is expected."""

    def parse(text: str) -> str:
        return _readable(text, expected)

    parse.__name__ = "file"
    return parse


TRACE_FILE = "a trace file (JSONL snapshots from pv-watch / `pyvcore diff`, or a `pyvcore trace` event log)"


def _readable(text: str, expected: str) -> str:
    """``text`` when it names a readable regular file, else UnreadableFile (one line)."""
    if text == "-":
        return text
    path = Path(text).expanduser()
    if path.is_dir():
        inside = path / "trace.jsonl"  # a `pyvcore diff --report` folder: name its trace, as check does
        if expected == TRACE_FILE and inside.is_file():
            expected += f" (this one holds {Path(text) / 'trace.jsonl'})"
        raise UnreadableFile(text, errno.EISDIR, expected)
    if not path.exists():
        raise UnreadableFile(text, errno.ENOENT)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a regular file; expected {expected}")
    if not os.access(path, os.R_OK):
        raise UnreadableFile(text, errno.EACCES)
    return text


def input_dir(text: str) -> str:
    """An existing, readable directory; UnreadableFile (one line) otherwise."""
    path = Path(text).expanduser()
    if not path.exists():
        raise UnreadableFile(text, errno.ENOENT)
    if not path.is_dir():
        raise UnreadableFile(text, errno.ENOTDIR, "a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UnreadableFile(text, errno.EACCES)
    return text


def _creatable(path: Path) -> str | None:
    """Why ``path`` (which does not exist) could not be created, or None."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not writable"
    return None


def output_file(text: str) -> str:
    """A file pyvcore may write: not a directory, in an existing writable directory.
    Nothing is created here."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give the path of a file to write")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"{text}: not writable (permission denied)")
        return text
    parent = path.absolute().parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: no directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: {parent} is not writable")
    return text


def output_dir(text: str) -> str:
    """A directory pyvcore may write into: an existing writable one, or one it can make."""
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a file; give a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{text}: not writable (permission denied)")
        return text
    why = _creatable(path)
    if why:
        raise argparse.ArgumentTypeError(f"cannot create {text}: {why}")
    return text


def qemu(text: str) -> str:
    """``patched``, ``stock`` or the path of an executable qemu-system-ppc64 (one that lists
    the powernv8 machine: :func:`pyvcore.lab.inputs.not_a_qemu`), checked before any lock
    is taken or QEMU booted."""
    from pyvcore.lab.inputs import QEMU_KINDS

    if text in QEMU_KINDS:
        return text
    path = Path(text).expanduser()
    if "/" not in text and not path.exists():
        raise invalid_choice(text, QEMU_KINDS, ", or the path of a qemu-system-ppc64")
    if path.is_dir() or not path.exists():
        code = errno.EISDIR if path.is_dir() else errno.ENOENT
        raise UnreadableFile(text, code, "patched, stock or a qemu-system-ppc64")
    if not os.access(path, os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: not an executable file (a qemu-system-ppc64)")
    from pyvcore.lab.inputs import not_a_qemu

    why = not_a_qemu(path.resolve())
    if why:
        raise argparse.ArgumentTypeError(f"{text}: {why}")
    return text


def kernel(text: str) -> str:
    """A kernel the lab boots: a Debian kernel's name it can set up (6.12, 7.2-64k, ...) or
    the path of a vmlinux (a path is checked in full, with its modules, when the lab
    prepares: :func:`pyvcore.lab.inputs.validate`)."""
    from pyvcore.lab.inputs import is_path_like
    from pyvcore.lab.kernels import KERNELS

    if is_path_like(text):
        return _readable(text, "a kernel image (vmlinux)")
    if text not in KERNELS:
        raise invalid_choice(text, list(KERNELS), ", or the path of a vmlinux")
    return text


def add_kernel(parser: argparse.ArgumentParser, extra: str = "") -> argparse.Action:
    """``--kernel NAME|VMLINUX``, the same for every command that boots the lab (lab up, diff,
    trace): its help names the kernels the lab knows by name (the one table,
    :data:`pyvcore.lab.kernels.KERNELS`); ``extra`` is added to the help."""
    from pyvcore.lab.kernels import KERNELS

    return parser.add_argument(
        "--kernel",
        metavar="NAME|VMLINUX",
        default=None,
        type=kernel,
        help=f"a Debian kernel the lab sets up by name ({', '.join(KERNELS)}: `pyvcore lab setup "
        "--kernel SERIES`), or the path of your own vmlinux (default: the lab's 6.12)" + extra,
    )


def vmlinux(text: str) -> str:
    """A ppc64le Linux kernel image with BTF or DWARF (:func:`pyvcore.kernel.check_vmlinux`):
    ``text``, or the path of its debug image when it has neither and one is found where
    distributions put it (:mod:`pyvcore.kernelsymbols`)."""
    from pyvcore.kernel import KernelRefused, check_image, debug_image

    _readable(text, "a kernel image (vmlinux)")
    try:
        found = debug_image(Path(text), check_image(Path(text), ""), None, "")[1]
    except KernelRefused as err:
        raise argparse.ArgumentTypeError(err.message.strip()) from None
    return text if found is None else str(found)


SYMBOLS_HELP = (
    "the debug image of --kernel when that has neither BTF nor DWARF: the same build's "
    "vmlinux with DWARF, e.g. Debian's /usr/lib/debug/boot/vmlinux-REL (linux-image-REL-dbg) or "
    "your build's unstripped vmlinux; refused when its build-id (or linux_banner) is not the "
    "kernel's. Without it one is looked for in /usr/lib/debug (boot/vmlinux-REL, "
    "lib/modules/REL/vmlinux, .build-id/), in the same unpacked tree and as VMLINUX.debug. "
    "Named after drgn's -s/--symbols: a file of symbols and types for a kernel that runs "
    "from another image (gdb's symbol-file)"
)


def symbols(text: str) -> str:
    """A readable file, the debug image of --kernel (checked against the kernel when the
    lab prepares: :func:`pyvcore.kernel.debug_image`)."""
    return _readable(text, "a kernel debug image (vmlinux with DWARF)")


def scenarios() -> tuple[str, ...]:
    """The lab's scenario names (its one table, :mod:`pyvcore.lab.scenarios`)."""
    from pyvcore.lab.scenarios import SCENARIOS

    return tuple(SCENARIOS)


__all__ = [
    "TRACE_FILE",
    "add_kernel",
    "factor",
    "file_of",
    "input_dir",
    "input_file",
    "invalid_choice",
    "kernel",
    "names",
    "output_dir",
    "output_file",
    "port",
    "positive",
    "qemu",
    "scenarios",
    "seconds",
    "symbols",
    "vmlinux",
]


VCPU_HELP = "e.g. 1,2 or 0-3 or 8-15"


def vcpu_ids(max_id: int, per_core: int) -> Callable[[str], list[int]]:
    """A list of vcpu ids such as ``0,1,3``, ``0-3`` or a mix: each below
    ``max_id`` (KVM_MAX_VCPU_IDS), at most ``per_core`` of them (one vcore), a
    range never expanded wider than that."""

    def one(text: str) -> int:
        text = text.strip()
        if not text.isdigit():
            raise argparse.ArgumentTypeError(f"{text!r} is not a vcpu id ({VCPU_HELP})")
        if len(text) > 12 or int(text) >= max_id:
            shown = text if len(text) <= 24 else text[:20] + "..."
            raise argparse.ArgumentTypeError(
                f"{shown} is too large (vcpu ids are 0..{max_id - 1}, KVM_MAX_VCPU_IDS)"
            )
        return int(text)

    def parse(text: str) -> list[int]:
        ids: list[int] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if part.startswith("-"):
                raise argparse.ArgumentTypeError(f"{part} is not a vcpu id: ids are 0 or more ({VCPU_HELP})")
            if "-" in part:
                lo_text, hi_text = part.split("-", 1)
                lo, hi = one(lo_text), one(hi_text)
                if hi < lo:
                    raise argparse.ArgumentTypeError(f"range {part!r} runs backwards")
                if hi - lo >= per_core:
                    raise argparse.ArgumentTypeError(
                        f"range {part!r} has {hi - lo + 1} ids, more than a vcore holds ({per_core})"
                    )
                ids.extend(range(lo, hi + 1))
            else:
                ids.append(one(part))
            if len(ids) > per_core:
                raise argparse.ArgumentTypeError(f"more than {per_core} ids (one vcore)")
        if not ids:
            raise argparse.ArgumentTypeError(f"no vcpu id in {text!r} ({VCPU_HELP})")
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise argparse.ArgumentTypeError(
                f"vcpu {', '.join(map(str, twice))} given twice: a vcore's vcpus are distinct"
            )
        return ids

    return parse


def count(limit: int) -> Callable[[str], int]:
    """A whole number 0..limit."""

    def parse(text: str) -> int:
        n = int(text) if text.strip().isdigit() and len(text.strip()) <= 20 else -1
        if not 0 <= n <= limit:
            raise argparse.ArgumentTypeError(f"expected a whole number 0..{limit}, not {text!r}")
        return n

    return parse


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def size(text: str) -> int:
    """A size in bytes such as 512M or 4G (K, M, G: powers of 1024)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    number = t[: len(t) - len(unit)]
    if not number.isdigit() or len(number) > 12 or int(number) == 0:
        raise argparse.ArgumentTypeError(f"expected a size such as 512M or 4G, not {text!r}")
    return int(number) * _UNITS[unit]
