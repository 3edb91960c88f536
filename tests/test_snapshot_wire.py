"""The snapshot as written: 64-bit values as hex strings, everything else as read."""

from __future__ import annotations

from gdb_fakes import KVM, VCORE, FakeHost

from pyvcore.snapshot import to_wire


def test_addresses_and_sprs_are_hex_counters_are_not():
    host = FakeHost()
    host.vm([0, 1, 2, 3])
    r = host.kernel_reader().read(host.mem, host.regs, stop="s", stopper=1)
    w = to_wire(r.snapshot)
    assert w["tb"] == "0x100000000" and w["tb_freq"] == 512_000_000 and w["version"] == 2
    t1 = w["threads"][1]
    assert t1["kvm_hstate"]["kvm_vcpu"] == hex(host.vcpu_addr(1))
    assert t1["kvm_hstate"]["kvm_vcore"] == hex(VCORE) and t1["kvm_hstate"]["ptid"] == 1
    assert t1["msr"] == "0x9000000000001033" and t1["pc"] == "0xc000000000001000"
    assert t1["lpidr"] == "0x1" and t1["hdec"] == "0x7fffffff" and t1["cpu"] == 1
    (vc,) = w["vcores"]
    assert vc["addr"] == hex(VCORE) and vc["kvm"] == hex(KVM) and vc["n_runnable"] == 4
    assert vc["entry_exit_map"] == 0xF  # a bit word stays an integer
    assert {v["vcore"] for v in w["vcpus"]} == {hex(VCORE)}
    assert w["kvm"]["lpid"] == "0x1"
    # the in-memory snapshot (what the pv-* tables use) is not changed
    assert r.snapshot["vcores"][0]["addr"] == VCORE


def test_records_keep_their_other_keys():
    rec = {"stop": "x", "violations": [{"invariant": 8}], "tb": 5, "threads": [], "problems": ["p"]}
    assert to_wire(rec) == {**rec, "tb": "0x5"}
