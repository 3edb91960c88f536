"""DPDES through the patched gdbstub, and invariant 31 on a real kernel stop.

The lab's guests send their doorbells once, right after their vcpus start,
to siblings running guest code that take them at once: no watched stop sees a
doorbell pending.  So the test gives the kernel one: at kvmppc_hv_entry,
thread 0 is about to load DPDES from vc->dpdes (``mtdpdes r8``); setting r8
to 0x4 (a doorbell for thread 2, as if it had been saved at the last exit)
makes the core's DPDES 0x4, which the gdbstub must then show on every thread
(QEMU patch 0003).  Then, at kvmhv_switch_to_host, the store that clears
DPDES ("so we don't get guest doorbells in the host") is given 0x4 instead:
once thread 0 has set vc->in_guest back to 0 with the host's LPIDR,
invariant 31 must report the doorbell left pending in the host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pyvcore.gdbcli import gdb_command, module_commands

pytestmark = [
    pytest.mark.lab,
    pytest.mark.gdb,
    pytest.mark.skipif(
        shutil.which("gdb-multiarch") is None, reason="gdb-multiarch not installed (`pyvcore lab setup`)"
    ),
]


def mtdpdes_in(vmlinux: str, function: str) -> int:
    """Address of the first ``mtdpdes`` (mtspr DPDES) in ``function`` of vmlinux."""
    out = subprocess.run(
        ["gdb-multiarch", "-nx", "-batch", "-ex", f"x/400i {function}", vmlinux],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    m = re.search(r"^\s*(0x[0-9a-f]+) <[^>]+>:\s+mtdpdes\s", out, flags=re.M)
    assert m, f"no mtdpdes in {function}:\n{out[-2000:]}"
    return int(m.group(1), 16)


def start_lab(scenario: str) -> Any:
    """A started Lab, queued on the machine lock (PYVCORE_LAB_WAIT seconds, default 900)."""
    from pyvcore.lab import Lab, LabNotSetUp

    wait = float(os.environ.get("PYVCORE_LAB_WAIT", "900"))
    try:
        return Lab(scenario=scenario, threads=4, qemu="patched", hold=0, lock_wait=wait).start()
    except LabNotSetUp as e:
        pytest.skip(f"lab not set up ({e}); run `pyvcore lab setup`")


def json_after(text: str, marker: str) -> dict[str, Any]:
    line = text.split(f"@@{marker}\n", 1)[1].splitlines()[0]
    return json.loads(line)


@pytest.fixture(scope="module")
def forced(tmp_path_factory: pytest.TempPathFactory) -> str:
    lab = start_lab("all")
    try:
        status = lab.status()
        load = mtdpdes_in(status["vmlinux"], "kvmppc_hv_entry")
        clear = mtdpdes_in(status["vmlinux"], "kvmhv_switch_to_host")
        commands = [
            "set pagination off",
            f"break *{load:#x}",
            "continue",
            "delete",
            "set $r8 = 4",
            "stepi",
            'thread apply all printf "@@dpdes %#lx\\n", $dpdes',
            "echo @@load\\n",
            "pv-check --json",
            f"break *{clear:#x}",
            "continue",
            "delete",
            "set $r8 = 4",
            "stepi",
        ]
        argv = gdb_command(vmlinux=status["vmlinux"], remote=status["gdb"], modules=module_commands(status))
        argv[1:1] = ["-nx", "-batch"]
        for c in commands:
            argv += ["-ex", c]
        # then thread 0 runs on until it has stored 0 to vc->in_guest
        argv += ["-x", str(_after_in_guest_store(tmp_path_factory.mktemp("dpdes")))]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        text = out.stdout + out.stderr
        assert "Traceback" not in text, text[-3000:]
        return text
    finally:
        lab.stop()


def _after_in_guest_store(tmp: Path) -> Path:
    """A gdb script: run thread 0 to the instruction after kvmhv_switch_to_host's
    ``stb r0, VCORE_IN_GUEST(r5)`` (the first byte store from r0 to the vcore
    after the DPDES clear: book3s_hv_rmhandlers.S stores nothing else there
    in between), then pv-check."""
    script = tmp / "after.py"
    script.write_text(
        "import gdb, re\n"
        "text = gdb.execute('x/160i kvmhv_switch_to_host', to_string=True)\n"
        "after = text.split('mtdpdes', 1)[1]\n"
        "store = re.search(r'^\\s*(0x[0-9a-f]+) <[^>]+>:\\s+stb\\s+r0,\\d+\\(r5\\)', after, re.M)\n"
        "gdb.execute(f'break *{int(store.group(1), 16) + 4:#x}')\n"
        "gdb.execute('continue')\n"
        "gdb.execute('delete')\n"
        "gdb.write('@@host\\n')\n"
        "gdb.execute('pv-check --json')\n"
    )
    return script


def test_gdbstub_shows_the_core_dpdes_on_every_thread(forced: str) -> None:
    values = re.findall(r"^@@dpdes (0x[0-9a-f]+)$", forced, flags=re.M)
    assert values == ["0x4"] * 4, forced[-3000:]


def test_dpdes_read_at_the_stop_is_in_the_snapshot_and_judged(forced: str) -> None:
    doc = json_after(forced, "load")
    carrying = [t for t in doc["snapshot"]["threads"] if "dpdes" in t]
    assert [t["dpdes"] for t in carrying] == ["0x4"], doc["snapshot"]["threads"]
    # entry: thread 0 has the guest's LPIDR, vc->in_guest not yet 1: nothing wrong
    assert [v for v in doc["violations"] if v["invariant"] == 31] == [], doc["violations"]


def test_a_doorbell_left_pending_in_the_host_breaks_31(forced: str) -> None:
    doc = json_after(forced, "host")
    snap = doc["snapshot"]
    assert snap["vcores"][0]["in_guest"] == 0
    found = [v for v in doc["violations"] if v["invariant"] == 31]
    assert found and "doorbell for thread 2 is pending in the host partition" in found[0]["message"], doc
