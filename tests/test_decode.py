"""The snapshot reader on fake memory laid out with real 6.12 BTF offsets (no QEMU)."""

from __future__ import annotations

import pytest
from gdb_fakes import (
    GUEST_LPID,
    GUEST_SDR1,
    HOST_LPID,
    HOST_SDR1,
    KVM,
    MSR_GUEST,
    MSR_HOST,
    MSR_OPAL,
    TB_FREQ,
    VCORE,
    FakeHost,
    RecordedSource,
    recorded,
    seed_like,
)

from pyvcore.decode import (
    KernelError,
    KernelLayout,
    ThreadRegs,
    bswap64,
    normalise_msr,
    thread_list,
)
from pyvcore.layout import LayoutError, Layouts


def test_offsets_match_the_lab_notes():
    # Offsets of the Debian 6.12 kernel as measured in the lab through gdb.
    host = FakeHost()
    L = host.layouts
    assert L.struct("paca_struct").field("kvm_hstate").offset == 664
    hs = L.struct("kvmppc_host_state")
    assert {
        n: hs.field(n).offset
        for n in ("in_guest", "napping", "hwthread_req", "hwthread_state", "ptid", "kvm_vcpu", "kvm_vcore")
    } == {
        "in_guest": 56,
        "napping": 58,
        "hwthread_req": 59,
        "hwthread_state": 60,
        "ptid": 62,
        "kvm_vcpu": 64,
        "kvm_vcore": 72,
    }
    vc = L.struct("kvmppc_vcore")
    assert vc.field("entry_exit_map").offset == 8 and vc.field("runner").offset == 152
    assert L.struct("kvm_vcpu").field("arch.ptid").offset == 512 + 5700
    assert L.struct("kvm_vcpu").field("arch.thread_cpu").offset == 512 + 5704


def test_modern_kernel_detected_from_layout():
    host = FakeHost()
    assert host.kernel.variant == "modern"
    assert host.kernel.paca_array == "paca_ptrs"
    assert host.kernel.entry_exit == "entry_exit_map"


def test_seed_kernel_detected_from_layout():
    host = FakeHost(seed_like(recorded()))
    assert host.kernel.variant == "seed"
    assert host.kernel.paca_array == "paca"
    assert host.kernel.entry_exit == "entry_exit_count"


def test_all_scenario_snapshot():
    host = FakeHost()
    host.vm([0, 1, 2, 3])
    host.put("kvmppc_vcore", VCORE, {"dpdes": 0b100})  # a doorbell pending for virtual thread 2
    host.regs[1].dpdes = 0b1
    r = host.kernel_reader().read(host.mem, host.regs, stop="test")
    s = r.snapshot
    assert r.problems == []
    assert s["variant"] == "modern" and s["threads_per_core"] == 4 and s["stop"] == "test"
    assert [t["cpu"] for t in s["threads"]] == [0, 1, 2, 3]
    assert [t["hw_cpu_id"] for t in s["threads"]] == [8, 9, 10, 11]
    for n, t in enumerate(s["threads"]):
        assert t["kvm_hstate"]["ptid"] == n
        assert t["kvm_hstate"]["kvm_vcpu"] == host.vcpu_addr(n)
        assert t["kvm_hstate"]["kvm_vcore"] == VCORE
        assert t["lpidr"] == 1
        assert t["pc"] == 0xC000_0000_0000_1000 and t["msr"] == MSR_HOST and t["hdec"] == 0x7FFFFFFF
        assert t["dpdes"] == (1 if n == 1 else 0)
    assert s["version"] == 2 and s["tb_freq"] == TB_FREQ
    assert s["tb"] == 0x1_0000_0000  # no stopping thread given: the first thread's
    assert s["vcore_from"] == ["kvm_hstate.kvm_vcore"]
    assert host.kernel_reader().read(host.mem, host.regs, stopper=3).snapshot["tb"] == 0x1_0000_0002
    (vc,) = s["vcores"]
    assert vc == {
        "addr": VCORE,
        "n_runnable": 4,
        "num_threads": 4,
        "napping_threads": 0,
        "first_vcpuid": 0,
        "pcpu": 0,
        "vcore_state": 4,
        "in_guest": 1,
        "entry_exit_map": 0xF,
        "runner": host.vcpu_addr(0),
        "kvm": KVM,
        "dpdes": 0b100,
        "tb_offset": 0,  # a guest started here: no timebase offset (KVM_REG_PPC_TB_OFFSET never set)
        "tb_offset_applied": 0,
    }
    assert sorted(v["vcpu_id"] for v in s["vcpus"]) == [0, 1, 2, 3]
    for v in s["vcpus"]:
        assert v["ptid"] == v["vcpu_id"] and v["vcore"] == VCORE and v["cpu"] == 0
        assert v["thread_cpu"] == v["vcpu_id"]
    assert s["kvm"] == {
        "lpid": GUEST_LPID,
        "sdr1": GUEST_SDR1,
        "host_lpid": HOST_LPID,
        "host_sdr1": HOST_SDR1,
    }


def test_novcpu0_snapshot():
    host = FakeHost()
    host.vm([0, 1], running=[1], thread0_novcpu=True)
    r = host.kernel_reader().read(host.mem, host.regs)
    t0, t1, t2, _ = r.snapshot["threads"]
    assert t0["kvm_hstate"]["kvm_vcpu"] == 0 and t0["kvm_hstate"]["kvm_vcore"] == VCORE
    assert t0["kvm_hstate"]["napping"] == 2 and t0["kvm_hstate"]["hwthread_req"] == 1
    assert t1["kvm_hstate"]["ptid"] == 1 and t1["kvm_hstate"]["kvm_vcpu"] == host.vcpu_addr(1)
    assert t2["kvm_hstate"]["hwthread_state"] == 1 and t2["kvm_hstate"]["kvm_vcore"] == 0
    assert r.snapshot["vcores"][0]["entry_exit_map"] == 0b11
    # vcpu 0 is not running but is reachable from nowhere: only vcpu 1 is read.
    assert [v["vcpu_id"] for v in r.snapshot["vcpus"]] == [1]


def test_one_read_per_struct_and_cached_boot_values():
    host = FakeHost()
    host.vm([0, 1, 2, 3])
    reader = host.kernel_reader()
    reader.read(host.mem, host.regs)
    host.mem.reads.clear()
    reader.read(host.mem, host.regs)
    # 4 PACAs + 1 vcore + 4 vcpus x 2 ranges (cpu/vcpu_id, arch.*); kvm->arch is cached.
    assert len(host.mem.reads) == 4 + 1 + 8
    assert all(size <= 2048 for _, size in host.mem.reads)


def test_threads_matched_by_pir_not_gdb_order():
    host = FakeHost()
    host.vm([0, 1, 2, 3])
    host.regs.reverse()  # gdb thread numbers in another order than cpus
    for i, r in enumerate(host.regs):
        r.gdb_thread = i + 1
    r = host.kernel_reader().read(host.mem, host.regs)
    assert [row.cpu for row in r.rows] == [0, 1, 2, 3]
    assert [row.regs.pir for row in r.rows] == [8, 9, 10, 11]


def test_garbage_pointer_in_a_paca_is_one_problem_and_the_rest_is_read():
    host = FakeHost()
    host.vm([0, 1, 2, 3])
    host.hstate(2, kvm_vcore=0x1234_5678)
    r = host.kernel_reader().read(host.mem, host.regs)
    assert any("cpu 2: kvm_hstate.kvm_vcore = 0x12345678 is not a kernel address" in p for p in r.problems)
    assert len(r.snapshot["threads"]) == 4 and len(r.snapshot["vcores"]) == 1


def test_unreadable_vcore_pointer_is_reported():
    host = FakeHost()
    host.vm([0, 1, 2, 3])
    host.hstate(3, kvm_vcore=0xC000_0000_0DEA_D000)
    r = host.kernel_reader().read(host.mem, host.regs)
    assert any("kvmppc_vcore at 0xc00000000dead000 unreadable" in p for p in r.problems)
    assert len(r.snapshot["vcores"]) == 1


def test_kvm_in_vmalloc_unreadable_keeps_snapshot():
    host = FakeHost()
    host.vm([0, 1, 2, 3])
    host.mem.unreadable.append((KVM, KVM + 0x10000))
    r = host.kernel_reader().read(host.mem, host.regs)
    assert "kvm" not in r.snapshot
    assert any("vmalloc space" in p for p in r.problems)
    assert len(r.snapshot["vcpus"]) == 4


def test_thread_inside_opal():
    host = FakeHost()
    host.vm([0, 1, 2, 3])
    host.regs[2].msr = MSR_OPAL
    r = host.kernel_reader().read(host.mem, host.regs)
    assert any(p.startswith("cpu 2: inside OPAL firmware") for p in r.problems)
    assert r.rows[2].regs.mode == "opal"
    assert len(r.snapshot["threads"]) == 4


def test_thread_without_matching_paca():
    host = FakeHost()
    host.regs.append(ThreadRegs(gdb_thread=5, pir=0x99, msr=MSR_GUEST))
    r = host.kernel_reader().read(host.mem, host.regs)
    assert "gdb thread 5: no PACA has hw_cpu_id == $pir 0x99" in r.problems
    assert len(r.snapshot["threads"]) == 4


def test_paca_ptrs_not_set_up():
    host = FakeHost()
    host.put_int(host.source.symbol("paca_ptrs"), 8, 0)
    with pytest.raises(KernelError, match="paca_ptrs = 0x0: not set up yet"):
        host.kernel_reader().read(host.mem, host.regs)


def test_seed_kernel_snapshot_uses_paca_array_and_count():
    host = FakeHost(seed_like(recorded()))
    host.vm([0, 1, 2, 3])
    s = host.kernel_reader().read(host.mem, host.regs).snapshot
    assert s["variant"] == "seed"
    assert s["vcores"][0]["entry_exit_count"] == 4 and "entry_exit_map" not in s["vcores"][0]
    assert [t["kvm_hstate"]["ptid"] for t in s["threads"]] == [0, 1, 2, 3]


def test_not_a_kvm_kernel():
    data = recorded()
    del data["by_name"]["kvmppc_vcore"]
    src = RecordedSource(data)
    with pytest.raises(KernelError, match="no struct kvmppc_vcore"):
        KernelLayout(Layouts(src, "BTF"), src.symbol)


def test_not_a_ppc64_kernel_symbols():
    data = recorded()
    del data["symbols"]["paca_ptrs"]
    src = RecordedSource(data)
    with pytest.raises(KernelError, match="not a ppc64 kernel"):
        KernelLayout(Layouts(src, "BTF"), src.symbol)


def test_missing_field_is_a_layout_error():
    host = FakeHost()
    with pytest.raises(LayoutError, match="has no member 'nope'"):
        host.layouts.struct("kvm_vcpu").field("arch.nope")


def test_msr_byte_order():
    assert normalise_msr(MSR_GUEST) == (MSR_GUEST, False)
    assert normalise_msr(bswap64(MSR_OPAL)) == (MSR_OPAL, True)


def test_thread_list():
    assert thread_list(0b1011) == "{0,1,3}"
    assert thread_list(0) == "{}"


def test_kvm_hv_not_loaded():
    host = FakeHost()
    host.put_int(host.source.symbol("hv_vm_count"), 4, 0)
    r = host.kernel_reader().read(host.mem, host.regs)
    assert any(p.startswith("kvm-hv: no HV guest exists (hv_vm_count = 0)") for p in r.problems)
    assert r.snapshot["vcores"] == [] and len(r.snapshot["threads"]) == 4


def test_idle_host_with_a_vm_is_not_called_unloaded():
    host = FakeHost()
    host.put_int(host.source.symbol("hv_vm_count"), 4, 1)
    r = host.kernel_reader().read(host.mem, host.regs)
    assert r.problems == []
