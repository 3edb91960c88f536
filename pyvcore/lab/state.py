"""The state file of a detached lab (`pyvcore lab up`): written after the boot, read back by
`pyvcore lab status|down` and :meth:`pyvcore.lab.Lab.running` in another process."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pyvcore.lab.inputs import BootKernel
from pyvcore.lab.process import is_qemu_process
from pyvcore.lab.qemu import ConsoleFile, LabError

if TYPE_CHECKING:
    from pyvcore.lab import Lab

L = TypeVar("L", bound="Lab")


def load_running(cls: type[L], path: Path) -> L | None:
    """The lab recorded in ``path`` if its QEMU still runs, else None."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not is_qemu_process(state.get("pid", -1)):
        return None
    try:
        lab = cls(state["scenario"], state["threads"], state["qemu"], state["hold"], detached=True, log=None)
        lab.pid = state["pid"]
        lab.gdb_port = state["gdb_port"]
        lab.vmlinux = Path(state["vmlinux"])
        lab.console = Path(state["console"])
        lab.run_dir = Path(state["run_dir"])
        lab.qmp_socket = Path(state["qmp"])
        lab.qemu_binary = Path(state["qemu_binary"])
    except (KeyError, TypeError, LabError):
        return None  # a state file from another pyvcore version: as if none ran
    lab._qmp_dir = lab.qmp_socket.parent
    lab.qemu_kind = state.get("qemu_kind")
    lab.kernel = state.get("kernel")
    lab.modules = state.get("modules")
    lab.plugin = state.get("plugin")
    lab.boot_seconds = state.get("boot_seconds")
    lab.attempts = state.get("attempts", 1)
    lab.started_at = state.get("started_at")
    if isinstance(bk := state.get("boot_kernel"), dict):
        lab.boot_kernel = BootKernel(
            vmlinux=Path(bk["vmlinux"]),
            modules={k: Path(v) for k, v in bk["modules"].items()},
            busybox=Path(bk["busybox"]),
            label=bk["label"],
            version=bk.get("version"),
            info=bk.get("info", {}),
            symbols=Path(bk["symbols"]) if bk.get("symbols") else None,
        )
    lab._reader = ConsoleFile(lab.console)
    return lab


def save(lab: Lab, path: Path) -> Path:
    """Write ``lab``'s state to ``path`` (for :func:`load_running`)."""
    target = path
    target.parent.mkdir(parents=True, exist_ok=True)
    bk = lab.boot_kernel
    state = {
        "pid": lab.pid,
        "gdb_port": lab.gdb_port,
        "vmlinux": str(lab.vmlinux),
        "console": str(lab.console),
        "run_dir": str(lab.run_dir),
        "qmp": str(lab.qmp_socket),
        "qemu_binary": str(lab.qemu_binary),
        "qemu_kind": lab.qemu_kind,
        "qemu_probe": lab.qemu_probe,
        "scenario": lab.scenario,
        "threads": lab.threads,
        "qemu": lab.qemu,
        "kernel": lab.kernel,
        "modules": lab.modules,
        "plugin": [os.fspath(lab.plugin[0]), lab.plugin[1]] if lab.plugin else None,
        "hold": lab.hold,
        "boot_seconds": lab.boot_seconds,
        "attempts": lab.attempts,
        "started_at": lab.started_at,
        "boot_kernel": None
        if bk is None
        else {
            "vmlinux": str(bk.vmlinux),
            "modules": {k: str(v) for k, v in bk.modules.items()},
            "busybox": str(bk.busybox),
            "label": bk.label,
            "version": bk.version,
            "info": bk.info,
            "symbols": None if bk.symbols is None else str(bk.symbols),
        },
    }
    target.write_text(json.dumps(state, indent=2) + "\n")
    return target
