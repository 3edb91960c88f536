"""Fake POWER8 KVM-HV hosts in memory, laid out with a real kernel's BTF layouts.

``tests/data/layouts-6.12-btf.json`` was recorded from the Debian
6.12.95+deb12-powerpc64le vmlinux with ``KernelImage.struct_layout`` (the
structs the reader uses, plus their anonymous members), so the decoders are
tested against real offsets without needing the 80 MB kernel package.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pyvcore.decode import KernelLayout, ReadError, SnapshotReader, ThreadRegs
from pyvcore.layout import Layouts

DATA = Path(__file__).parent / "data" / "layouts-6.12-btf.json"

PACA_BASE = 0xC000_0000_0200_0000
PACA_PTRS_ARRAY = 0xC000_0000_0300_0000
VCORE = 0xC000_0000_0400_0000
VCPU0 = 0xC000_0000_0500_0000
VCPU_STRIDE = 0x4000
KVM = 0xC008_0000_0010_0000  # vmalloc space, like the real struct kvm

HOST_LPID, GUEST_LPID = 0, 1
HOST_SDR1, GUEST_SDR1 = 0x3_F000_0010, 0x7_E000_0010
MSR_HOST = 0x9000_0000_0000_1033  # SF HV ME IR DR RI LE
MSR_HV_REAL = 0x9000_0000_0000_1001  # SF HV ME LE, MMU off
MSR_GUEST = 0x8000_0000_0000_1033  # SF ME IR DR RI LE, HV=0
MSR_OPAL = 0x9000_0000_0000_1000  # SF HV ME, big-endian
TB_FREQ = 512_000_000  # POWER8 timebase, Hz


def recorded() -> dict[str, Any]:
    return json.loads(DATA.read_text())


class RecordedSource:
    """A layout source like ``KernelImage`` backed by the recorded JSON."""

    def __init__(self, data: dict[str, Any] | None = None):
        self.data = data or recorded()

    def struct_layout(self, name: str) -> dict[str, Any]:
        try:
            return self.data["by_name"][name]
        except KeyError:
            raise KeyError(f"no type named {name} in BTF") from None

    def layout_by_id(self, type_id: int) -> dict[str, Any]:
        try:
            return self.data["by_id"][str(type_id)]
        except KeyError:
            raise KeyError(f"no type #{type_id}") from None

    def symbol(self, name: str) -> int | None:
        return self.data["symbols"].get(name)


def pre_xarray(data: dict[str, Any], max_vcpus: int = 2048) -> dict[str, Any]:
    """The recorded 6.12 layouts turned into a kernel from before c5b077549136
    ("KVM: Convert the kvm->vcpus array to a xarray", v5.16): ``struct kvm``
    has ``struct kvm_vcpu *vcpus[KVM_MAX_VCPUS]`` where ``vcpu_array`` was."""
    d = copy.deepcopy(data)
    kvm = d["by_name"]["kvm"]
    for m in kvm["members"]:
        if m["name"] == "vcpu_array":
            m.update(
                name="vcpus",
                kind="array",
                type="struct kvm_vcpu *[2048]",
                size=8 * max_vcpus,
                array_len=max_vcpus,
                elem_size=8,
                inner_kind="ptr",
                type_id=0,
            )
    # the array is bigger than the xarray: move every later member up
    at = next(m for m in kvm["members"] if m["name"] == "vcpus")
    grow = 8 * max_vcpus - 16
    for m in kvm["members"]:
        if m["offset"] > at["offset"]:
            m["offset"] += grow
            m["bit_offset"] += 8 * grow
    kvm["size"] += grow
    return d


def seed_like(data: dict[str, Any]) -> dict[str, Any]:
    """The recorded 6.12 layouts turned into an old kernel's: entry_exit_count,
    n_woken/nap_count, and the contiguous ``paca`` array instead of paca_ptrs."""
    d = copy.deepcopy(data)
    members = d["by_name"]["kvmppc_vcore"]["members"]
    for m in members:
        if m["name"] == "entry_exit_map":
            m["name"] = "entry_exit_count"
    d["symbols"]["paca"] = d["symbols"].pop("paca_ptrs")
    return d


class FakeMemory:
    """Sparse memory: reads outside the written regions fail like gdb's do."""

    def __init__(self) -> None:
        self.bytes: dict[int, int] = {}
        self.reads: list[tuple[int, int]] = []
        self.unreadable: list[tuple[int, int]] = []  # [lo, hi) ranges that fail

    def write(self, addr: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self.bytes[addr + i] = b

    def read(self, addr: int, size: int) -> bytes:
        self.reads.append((addr, size))
        for lo, hi in self.unreadable:
            if addr < hi and addr + size > lo:
                raise ReadError(addr, size)
        try:
            return bytes(self.bytes[addr + i] for i in range(size))
        except KeyError:
            raise ReadError(addr, size) from None


class FakeHost:
    """A powernv8 host with one core of ``threads`` threads, built field by field."""

    def __init__(
        self, data: dict[str, Any] | None = None, threads: int = 4, paca_addrs: list[int] | None = None
    ):
        """``paca_addrs``: where each cpu's PACA is (paca_ptrs kernels only);
        by default one every 0x1000 bytes from PACA_BASE."""
        self.source = RecordedSource(data)
        self.layouts = Layouts(self.source, "BTF")
        self.kernel = KernelLayout(self.layouts, self.source.symbol)
        self.mem = FakeMemory()
        self.threads = threads
        sym = self.source.symbol
        self.put_int(sym("nr_cpu_ids"), 4, threads)
        self.put_int(sym("threads_per_core"), 4, threads)
        self.put_int(sym("ppc_tb_freq"), 8, TB_FREQ)
        paca_size = self.layouts.struct("paca_struct").size
        self.pacas = []
        if self.kernel.paca_array == "paca_ptrs":
            self.put_int(sym("paca_ptrs"), 8, PACA_PTRS_ARRAY)
            for cpu in range(threads):
                addr = paca_addrs[cpu] if paca_addrs else PACA_BASE + cpu * 0x1000
                self.put_int(PACA_PTRS_ARRAY + 8 * cpu, 8, addr)
                self.pacas.append(addr)
        else:
            self.put_int(sym("paca"), 8, PACA_BASE)
            self.pacas = [PACA_BASE + cpu * paca_size for cpu in range(threads)]
        for cpu, addr in enumerate(self.pacas):
            self.mem.write(addr, bytes(paca_size))
            self.put("paca_struct", addr, {"paca_index": cpu, "hw_cpu_id": 8 + cpu})
        self.regs = [
            ThreadRegs(
                gdb_thread=cpu + 1,
                pir=8 + cpu,
                msr=MSR_HOST,
                pc=0xC000_0000_0000_1000,
                lpidr=HOST_LPID,
                sdr1=HOST_SDR1,
                hdec=0x7FFFFFFF,
                dpdes=0,
                tb=0x1_0000_0000 + cpu,
            )
            for cpu in range(threads)
        ]

    # -- raw writers
    def put_int(self, addr: int, size: int, value: int) -> None:
        self.mem.write(addr, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))

    def put(self, struct: str, addr: int, values: dict[str, Any]) -> None:
        s = self.layouts.struct(struct)
        for path, value in values.items():
            f = s.field(path)
            if f.kind == "array":
                for i, v in enumerate(value):
                    self.put_int(addr + f.offset + i * (f.elem_size or 8), f.elem_size or 8, v)
            else:
                self.put_int(addr + f.offset, f.size, value)

    def alloc(self, struct: str, addr: int) -> None:
        self.mem.write(addr, bytes(self.layouts.struct(struct).size))

    # -- kernel objects
    def hstate(self, cpu: int, **values: Any) -> None:
        self.put("paca_struct", self.pacas[cpu], {f"kvm_hstate.{k}": v for k, v in values.items()})

    def vm(self, vcpu_ids: list[int], running: list[int] | None = None, thread0_novcpu: bool = False) -> None:
        """One VM with one vcore (ids 0..3) whose listed vcpus run on threads pcpu+ptid.

        (Long: every kernel object of a running vcore written field by field.)"""
        running = vcpu_ids if running is None else running
        self.alloc("kvmppc_vcore", VCORE)
        self.alloc("kvm", KVM)
        entry = 0
        for vid in running:
            entry |= 1 << vid
        if thread0_novcpu:
            entry |= 1
        self.put(
            "kvmppc_vcore",
            VCORE,
            {
                "n_runnable": len(running),
                "num_threads": len(vcpu_ids),
                "entry_exit_map": entry,
                "napping_threads": 1 if thread0_novcpu else 0,
                "first_vcpuid": 0,
                "pcpu": 0,
                "vcore_state": 4,
                "in_guest": 1,
                "runner": self.vcpu_addr(running[0]) if running else 0,
                "kvm": KVM,
                "runnable_threads": [self.vcpu_addr(i) if i in running else 0 for i in range(8)],
            }
            if self.kernel.entry_exit == "entry_exit_map"
            else {
                "n_runnable": len(running),
                "num_threads": len(vcpu_ids),
                "entry_exit_count": len(running),
                "napping_threads": 0,
                "first_vcpuid": 0,
                "pcpu": 0,
                "vcore_state": 3,
                "in_guest": 1,
                "runner": self.vcpu_addr(running[0]) if running else 0,
                "kvm": KVM,
            },
        )
        self.put(
            "kvm",
            KVM,
            {
                "arch.lpid": GUEST_LPID,
                "arch.sdr1": GUEST_SDR1,
                "arch.host_lpid": HOST_LPID,
                "arch.host_sdr1": HOST_SDR1,
                "arch.smt_mode": 4,
            },
        )
        for vid in vcpu_ids:
            addr = self.vcpu_addr(vid)
            self.alloc("kvm_vcpu", addr)
            on = vid in running
            self.put(
                "kvm_vcpu",
                addr,
                {
                    "vcpu_id": vid,
                    "cpu": 0 if on else -1,
                    "arch.vcore": VCORE,
                    "arch.ptid": vid,
                    "arch.thread_cpu": vid if on else -1,
                    "arch.state": 1 if on else 2,
                },
            )
        for cpu in range(self.threads):
            if cpu in running:
                self.hstate(
                    cpu,
                    kvm_vcpu=self.vcpu_addr(cpu),
                    kvm_vcore=VCORE,
                    ptid=cpu,
                    hwthread_req=1 if cpu else 0,
                    hwthread_state=2,
                    in_guest=3,
                )
            elif cpu == 0 and thread0_novcpu:
                self.hstate(
                    0,
                    kvm_vcpu=0,
                    kvm_vcore=VCORE,
                    ptid=0,
                    hwthread_req=1,
                    hwthread_state=2,
                    napping=2,
                    in_guest=4,
                )
            else:
                self.hstate(cpu, hwthread_state=1, hwthread_req=1 if cpu else 0)
            if cpu in running or (cpu == 0 and thread0_novcpu):
                self.regs[cpu].lpidr, self.regs[cpu].sdr1 = GUEST_LPID, GUEST_SDR1

    def kernel_reader(self) -> SnapshotReader:
        return SnapshotReader(self.kernel)

    @staticmethod
    def vcpu_addr(vid: int) -> int:
        return VCPU0 + vid * VCPU_STRIDE
