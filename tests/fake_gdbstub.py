"""A fake POWER8 gdbstub, enough for gdb-multiarch and the pv-* plugin.

It speaks the remote protocol like QEMU's stub (gdbstub/gdbstub.c): one
selected thread for register and memory requests (``Hg``; at a stop, the
stopping thread), the core registers in ``g`` (r0-r31, pc, msr, cr, lr, ctr,
xer: target/ppc/gdbstub.c ``ppc_cpu_gdb_read_register``), every SPR by ``p``,
memory by ``m`` from a table of segments.  Every request is logged with the
thread selected when it arrived, so a test can count round trips and check
that each register read went to the right thread.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field

CORE = [f"r{i}" for i in range(32)] + ["pc", "msr", "cr", "lr", "ctr", "xer"]
CORE_BITS = {"cr": 32, "xer": 32}
SPRS = ["sdr1", "lpidr", "tb", "hdec", "dpdes", "pir"]
SPR_BASE = 70  # remote numbers of the SPRs: after the core registers (64..69)


def _regnum(i: int) -> int:
    return i if i < 32 else 64 + (i - 32)


def _target_xml() -> str:
    core = "".join(
        f'<reg name="{n}" bitsize="{CORE_BITS.get(n, 64)}" regnum="{_regnum(i)}"/>'
        for i, n in enumerate(CORE)
    )
    sprs = "".join(f'<reg name="{n}" bitsize="64" regnum="{SPR_BASE + i}"/>' for i, n in enumerate(SPRS))
    return (
        '<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target>'
        "<architecture>powerpc:common64</architecture>"
        f'<feature name="org.gnu.gdb.power.core">{core}</feature>'
        f'<feature name="org.qemu.power.spr">{sprs}</feature></target>'
    )


@dataclass
class FakeStub:
    """Serve one gdb connection on 127.0.0.1:``port`` (0: any) from a thread.

    ``regs[tid]`` maps register names to values (missing ones read 0);
    ``memory`` maps addresses to bytes; ``zero`` lists [lo, hi) ranges that
    read as zeros (memory the test does not care about)."""

    regs: dict[int, dict[str, int]]
    memory: dict[int, bytes]
    zero: list[tuple[int, int]] = field(default_factory=list)
    log: list[tuple[int, str]] = field(default_factory=list)
    selected: int = 1

    def __post_init__(self) -> None:
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.port = self._srv.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def between(self, start: str, end: str) -> list[tuple[int, str]]:
        """The requests logged between the marker packets ``qMark:start`` and ``qMark:end``."""
        keys = [p for _, p in self.log]
        a, b = keys.index(f"qMark:{start}"), keys.index(f"qMark:{end}")
        return self.log[a + 1 : b]

    # -- the protocol
    def _read_mem(self, addr: int, size: int) -> bytes | None:
        for base, data in self.memory.items():
            if base <= addr and addr + size <= base + len(data):
                return data[addr - base : addr - base + size]
        if any(lo <= addr and addr + size <= hi for lo, hi in self.zero):
            return bytes(size)
        return None

    def _reg(self, name: str) -> bytes:
        value = self.regs[self.selected].get(name, 0)
        return value.to_bytes(CORE_BITS.get(name, 64) // 8, "little")

    def reply(self, pkt: str) -> str:
        self.log.append((self.selected, pkt))
        if pkt.startswith("qSupported"):
            return "PacketSize=1000;qXfer:features:read+"
        m = re.fullmatch(r"qXfer:features:read:target\.xml:([0-9a-f]+),([0-9a-f]+)", pkt)
        if m:
            xml, off, n = _target_xml(), int(m.group(1), 16), int(m.group(2), 16)
            return ("l" if off + n >= len(xml) else "m") + xml[off : off + n]
        if pkt == "?":
            return f"T05thread:{self.selected:x};"
        m = re.fullmatch(r"Hg(?:p[0-9a-f]+\.)?([0-9a-f]+|-1)", pkt)
        if m:
            if m.group(1) not in ("0", "-1"):
                self.selected = int(m.group(1), 16)
            return "OK"
        if pkt.startswith(("H", "T", "qMark:")):
            return "OK"
        if pkt == "qfThreadInfo":
            return "m" + ",".join(f"{t:x}" for t in sorted(self.regs))
        if pkt == "qsThreadInfo":
            return "l"
        if pkt == "qAttached":
            return "1"
        if pkt == "g":
            return b"".join(self._reg(n) for n in CORE).hex()
        if pkt.startswith("p"):
            n = int(pkt[1:], 16)
            if SPR_BASE <= n < SPR_BASE + len(SPRS):
                return self._reg(SPRS[n - SPR_BASE]).hex()
            return self._reg(CORE[n if n < 32 else 32 + n - 64]).hex()
        if pkt.startswith("m"):
            addr, size = (int(x, 16) for x in pkt[1:].split(","))
            data = self._read_mem(addr, size)
            return "E14" if data is None else data.hex()
        return ""

    def _serve(self) -> None:
        conn, _ = self._srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while True:
                    buf = buf.lstrip(b"+")
                    m = re.match(rb"\$([^#]*)#..", buf)
                    if not m:
                        break
                    buf = buf[m.end() :]
                    text = self.reply(m.group(1).decode())
                    conn.sendall(f"+${text}#{sum(text.encode()) & 0xFF:02x}".encode())
