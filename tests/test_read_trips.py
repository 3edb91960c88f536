"""Round trips of one snapshot pass, counted on fake memory.

Every read of :class:`gdb_fakes.FakeMemory` is one ``m`` request through
QEMU's gdbstub.  The PACA addresses are those of the lab's 6.12 kernel with 4
threads (from the ``all`` scenario's memory dump in
``tests/data/small-core-all-6.12.json``): the boot cpu's PACA on its own, the
three secondaries' 0x580 bytes apart (arch/powerpc/kernel/paca.c
``allocate_paca``: a PACA, then its SLB shadow, allocated top-down).
"""

from __future__ import annotations

import pytest
from gdb_fakes import FakeHost, FakeMemory

from pyvcore.readplan import MAX_PACKET_BYTES, ReadError, coalesce, read_many

LAB_PACAS = [0xC000_0000_028A_0000, 0xC000_0000_7FFF_FB00, 0xC000_0000_7FFF_F580, 0xC000_0000_7FFF_F000]


def lab_host() -> FakeHost:
    host = FakeHost(paca_addrs=LAB_PACAS)
    for paca in LAB_PACAS[1:]:  # each secondary's SLB shadow, right after its PACA
        host.mem.write(paca + 0x500, bytes(0x80))
    host.vm([0, 1, 2, 3])
    return host


def test_coalesce_groups_what_fits_one_packet_and_nothing_else():
    reqs = [(0x1000, 24), (0x1580, 24), (0x1B00, 24), (0x9000, 8)]
    groups = coalesce(reqs)
    # 0x1000..0x1598 fits (1432 bytes); adding 0x1B00 would span 2840 > 2048
    assert groups == [(0x1000, 0x598, [0, 1]), (0x1B00, 24, [2]), (0x9000, 8, [3])]
    assert all(size <= MAX_PACKET_BYTES for _, size, _ in groups)
    # request order does not matter, the indices still name the requests
    assert coalesce(list(reversed(reqs)))[0] == (0x1000, 0x598, [3, 2])


def test_coalesce_never_splits_or_grows_one_range():
    assert coalesce([(0x100, 4096)]) == [(0x100, 4096, [0])]
    assert coalesce([(0x100, 2040), (0x100 + 2040, 16)]) == [(0x100, 2040, [0]), (0x100 + 2040, 16, [1])]


def test_read_many_slices_one_read_per_group():
    mem = FakeMemory()
    mem.write(0x1000, bytes(range(256)) * 8)
    got = read_many(mem, [(0x1010, 4), (0x1400, 8), (0x1000, 2)])
    assert got == [bytes(range(16, 20)), bytes(range(0, 8)), bytes([0, 1])]
    assert mem.reads == [(0x1000, 0x408)]


def test_read_many_loses_only_the_unreadable_object():
    mem = FakeMemory()
    mem.write(0x1000, b"\x11" * 16)
    mem.write(0x1400, b"\x22" * 16)  # 0x1200 is nowhere: the merged read fails
    got = read_many(mem, [(0x1000, 8), (0x1200, 8), (0x1400, 8)])
    assert got[0] == b"\x11" * 8 and got[2] == b"\x22" * 8
    assert isinstance(got[1], ReadError) and got[1].addr == 0x1200
    assert len(mem.reads) == 4  # the group, then each range alone


def _pass(host: FakeHost, reader, **kw):
    host.mem.reads.clear()
    reading = reader.read(host.mem, host.regs, stop="t", stopper=1, **kw)
    return reading, list(host.mem.reads)


def test_a_pass_after_the_first_reads_12_ranges_on_the_lab_layout():
    host = lab_host()
    reader = host.kernel_reader()
    first, _ = _pass(host, reader)
    second, reads = _pass(host, reader)
    assert second.snapshot == first.snapshot and not second.problems
    paca_reads = [r for r in reads if any(p <= r[0] < p + 0x500 for p in LAB_PACAS)]
    # cpu 0 alone, cpus 3 and 2 together, cpu 1 alone
    assert paca_reads == [
        (LAB_PACAS[0] + 0x2D0, 24),
        (LAB_PACAS[3] + 0x2D0, 0x598),
        (LAB_PACAS[1] + 0x2D0, 24),
    ]
    # + the vcore (one range) and 4 vcpus (cpu..vcpu_idx, then the arch fields)
    assert len(reads) == 3 + 1 + 8, reads
    for t in second.snapshot["threads"]:
        assert t["hw_cpu_id"] == 8 + t["cpu"]


def test_a_pass_sees_what_changed_in_every_paca():
    host = lab_host()
    reader = host.kernel_reader()
    _pass(host, reader)
    host.hstate(2, in_guest=0, hwthread_state=1, kvm_vcpu=0)
    host.hstate(3, napping=1)
    reading, _ = _pass(host, reader)
    by_cpu = {t["cpu"]: t["kvm_hstate"] for t in reading.snapshot["threads"]}
    assert by_cpu[2]["in_guest"] == 0 and by_cpu[2]["kvm_vcpu"] == 0 and by_cpu[2]["hwthread_state"] == 1
    assert by_cpu[3]["napping"] == 1 and by_cpu[1]["in_guest"] == 3


def test_full_paca_reads_every_field_pv_paca_shows():
    host = lab_host()
    reader = host.kernel_reader()
    _pass(host, reader)
    host.hstate(1, host_ipi=1)
    reading, reads = _pass(host, reader, full_paca=True)
    row = next(r for r in reading.rows if r.cpu == 1)
    assert row.hstate("host_ipi") == 1 and "kvm_hstate.saved_xirr" in row.fields
    assert (LAB_PACAS[1] + 8, 0x388) in reads


@pytest.mark.parametrize("bad", [2, 3])
def test_an_unreadable_paca_is_reported_alone(bad: int):
    host = lab_host()
    reader = host.kernel_reader()
    _pass(host, reader)
    host.mem.unreadable.append((LAB_PACAS[bad], LAB_PACAS[bad] + 0x500))
    reading, _ = _pass(host, reader)
    assert [p for p in reading.problems if "PACA" in p] == [
        f"cpu {bad}: PACA at {LAB_PACAS[bad]:#x} unreadable: cannot access memory at {LAB_PACAS[bad] + 8:#x} (+904)"
    ]
    assert sorted(t["cpu"] for t in reading.snapshot["threads"]) == sorted({0, 1, 2, 3} - {bad})


def test_a_stop_carries_the_vcores_timebase_offset_and_the_checker_takes_it_off():
    """vc->tb_offset and vc->tb_offset_applied (struct kvmppc_vcore, kvm_book3s.h) are read
    with the vcore, in the same range (they sit next to each other), and written as hex; the
    checker takes the applied offset off the stop's tb: inside the guest the TB register holds
    the guest's timebase (kvmppc_hv_entry added the offset with TBU40)."""
    from gdb_fakes import VCORE

    from pyvcore import Checker
    from pyvcore.snapshot import to_wire

    host = lab_host()
    offset = (3 * 3600 * 512_000_000) >> 24 << 24
    host.put("kvmppc_vcore", VCORE, {"tb_offset": offset, "tb_offset_applied": offset})
    reader = host.kernel_reader()
    reading, reads = _pass(host, reader)
    vc = reading.snapshot["vcores"][0]
    assert (vc["tb_offset"], vc["tb_offset_applied"]) == (offset, offset)
    wire = to_wire(reading.snapshot)
    assert wire["vcores"][0]["tb_offset"] == hex(offset)
    assert len([r for r in reads if VCORE <= r[0] < VCORE + 0x1000]) == 1, reads
    snap = {**reading.snapshot, "tb": offset + 1000, "tb_freq": 512_000_000}
    assert Checker().check_outcome(snap).host_tb == 1000
