"""The walkers over vm_list, kvm->arch.vcores[] and a VM's vcpus, on fake memory,
for both vcpu containers: the xarray (since c5b077549136, v5.16) and the
``vcpus[]`` array before it; and the reader finding the vcore where the kernel
has it when no PACA points at one (a function argument, or vm_list)."""

from __future__ import annotations

import pytest
from gdb_fakes import KVM, VCORE, FakeHost, pre_xarray, recorded

from pyvcore.decode import Hints
from pyvcore.ppc64 import ThreadRegs
from pyvcore.walk import (
    WalkError,
    kvm_vcores,
    kvm_vcpus,
    vcpu_container,
    vm_list,
    xarray_entries,
)

VM_LIST = 0xC008_0000_0900_0000  # kvm.ko's `vm_list` (module data)
NODE = 0xC000_0000_0600_0000


def with_vm_list(host: FakeHost, kvms: list[int]) -> int:
    """kvm.ko's vm_list holding ``kvms`` (each already allocated) in order."""
    host.source.data["symbols"]["vm_list"] = VM_LIST
    off = host.layouts.struct("kvm").field("vm_list").offset
    nodes = [VM_LIST] + [k + off for k in kvms] + [VM_LIST]
    for here, nxt in zip(nodes, nodes[1:]):
        host.put_int(here, 8, nxt)
    return VM_LIST


def xarray_of(host: FakeHost, vcpus: list[int]) -> None:
    xa = KVM + host.layouts.struct("kvm").field("vcpu_array").offset
    host.alloc("xa_node", NODE)
    host.put("xa_node", NODE, {"shift": 0, "count": len(vcpus), "slots": vcpus + [0] * (64 - len(vcpus))})
    host.put_int(xa + host.layouts.struct("xarray").field("xa_head").offset, 8, NODE | 2)


def test_xarray_entries():
    host = FakeHost()
    host.vm([0, 1, 2, 3])
    xarray_of(host, [host.vcpu_addr(i) for i in range(4)])
    xa = KVM + host.layouts.struct("kvm").field("vcpu_array").offset
    assert xarray_entries(host.mem, host.layouts, xa, "little") == {i: host.vcpu_addr(i) for i in range(4)}
    # one vcpu: the entry sits in xa_head itself
    host.put_int(xa + 8, 8, host.vcpu_addr(1))
    assert xarray_entries(host.mem, host.layouts, xa, "little") == {0: host.vcpu_addr(1)}
    host.put_int(xa + 8, 8, 0)
    assert xarray_entries(host.mem, host.layouts, xa, "little") == {}


def test_xarray_node_pointing_at_itself_is_refused():
    host = FakeHost()
    host.vm([0])
    xarray_of(host, [host.vcpu_addr(0)])
    host.put("xa_node", NODE, {"shift": 6, "slots": [NODE | 2] + [0] * 63})
    xa = KVM + host.layouts.struct("kvm").field("vcpu_array").offset
    with pytest.raises(WalkError, match="shift 6"):
        xarray_entries(host.mem, host.layouts, xa, "little")


def test_vcpus_of_a_vm_through_the_xarray():
    host = FakeHost()
    host.vm([0, 1, 2, 3])
    assert vcpu_container(host.layouts) == "vcpu_array"
    xarray_of(host, [host.vcpu_addr(i) for i in (2, 0, 3, 1)])
    assert kvm_vcpus(host.mem, host.layouts, KVM, "little") == [host.vcpu_addr(i) for i in (2, 0, 3, 1)]


def test_vcpus_of_a_vm_through_the_pre_xarray_array():
    host = FakeHost(pre_xarray(recorded()))
    host.vm([0, 1, 2, 3])
    assert vcpu_container(host.layouts) == "vcpus"
    s = host.layouts.struct("kvm")
    for i in range(4):
        host.put_int(KVM + s.field("vcpus").offset + 8 * i, 8, host.vcpu_addr(i))
    host.put_int(KVM + s.field("online_vcpus.counter").offset, 4, 3)  # only 3 are online yet
    assert kvm_vcpus(host.mem, host.layouts, KVM, "little") == [host.vcpu_addr(i) for i in range(3)]
    host.put_int(KVM + s.field("online_vcpus.counter").offset, 4, 5000)
    with pytest.raises(WalkError, match="online_vcpus = 5000"):
        kvm_vcpus(host.mem, host.layouts, KVM, "little")


def test_pre_xarray_layout_keeps_the_arch_fields_readable():
    host = FakeHost(pre_xarray(recorded()))
    host.vm([0, 1, 2, 3])
    r = host.kernel_reader().read(host.mem, host.regs)
    assert r.snapshot["kvm"]["lpid"] == 1 and r.problems == []


def test_vm_list_and_arch_vcores():
    host = FakeHost()
    host.vm([0, 1, 2, 3])
    kvm2 = KVM + 0x10_0000
    host.alloc("kvm", kvm2)
    head = with_vm_list(host, [KVM, kvm2])
    assert vm_list(host.mem, host.layouts, head, "little") == [KVM, kvm2]
    f = host.layouts.struct("kvm").field("arch.vcores")
    host.put_int(KVM + f.offset, 8, VCORE)
    assert kvm_vcores(host.mem, host.layouts, KVM, "little") == {0: VCORE}
    assert kvm_vcores(host.mem, host.layouts, kvm2, "little") == {}
    host.put_int(kvm2 + f.offset + 8, 8, 0x1234)
    with pytest.raises(WalkError, match=r"arch.vcores\[1\] = 0x1234"):
        kvm_vcores(host.mem, host.layouts, kvm2, "little")


def test_vm_list_cycle_is_refused():
    host = FakeHost()
    host.vm([0])
    head = with_vm_list(host, [KVM])
    off = host.layouts.struct("kvm").field("vm_list").offset
    host.put_int(KVM + off, 8, KVM + off)  # points at itself, never back to the head
    with pytest.raises(WalkError, match="cycle"):
        vm_list(host.mem, host.layouts, head, "little")


def idle_host_with_a_vm() -> FakeHost:
    """A VM whose vcore no PACA points at (all threads idle), as at kvmppc_run_core."""
    host = FakeHost()
    host.vm([0, 1, 2, 3], running=[])
    for cpu in range(4):
        host.hstate(cpu, kvm_vcore=0, kvm_vcpu=0)
    return host


def test_vcore_from_r3_at_kvmppc_run_core():
    host = idle_host_with_a_vm()
    r = host.kernel_reader().read(host.mem, host.regs)
    assert r.snapshot["vcores"] == [] and r.snapshot["vcore_from"] == []
    stopper = ThreadRegs(gdb_thread=2, r3=VCORE)
    hints = Hints.from_entry("kvmppc_run_core", stopper)
    r = host.kernel_reader().read(host.mem, host.regs, hints=hints)
    assert [v["addr"] for v in r.snapshot["vcores"]] == [VCORE]
    assert r.snapshot["vcore_from"] == ["r3 at kvmppc_run_core"]
    assert r.vcore_from == {VCORE: "r3 at kvmppc_run_core"}
    assert r.snapshot["kvm"]["lpid"] == 1


def test_vcore_and_vcpu_from_kvmppc_start_thread():
    host = idle_host_with_a_vm()
    hints = Hints.from_entry("kvmppc_start_thread", ThreadRegs(gdb_thread=1, r3=host.vcpu_addr(2), r4=VCORE))
    r = host.kernel_reader().read(host.mem, host.regs, hints=hints)
    assert r.snapshot["vcore_from"] == ["r4 at kvmppc_start_thread"]
    assert [v["vcpu_id"] for v in r.snapshot["vcpus"]] == [2]
    # a thread started with no vcpu: r3 is NULL and names nothing
    hints = Hints.from_entry("kvmppc_start_thread", ThreadRegs(gdb_thread=1, r3=0, r4=VCORE))
    assert hints.vcpus == [] and hints.vcores == [(VCORE, "r4 at kvmppc_start_thread")]


def test_garbage_argument_is_a_problem_not_a_vcore():
    host = idle_host_with_a_vm()
    hints = Hints.from_entry("kvmppc_run_core", ThreadRegs(gdb_thread=1, r3=0x42))
    r = host.kernel_reader().read(host.mem, host.regs, hints=hints)
    assert r.snapshot["vcores"] == []
    assert any("r3 at kvmppc_run_core = 0x42 is not a kernel address" in p for p in r.problems)


def test_vcore_from_vm_list_when_nothing_else_names_it():
    host = idle_host_with_a_vm()
    with_vm_list(host, [KVM])
    host.put_int(KVM + host.layouts.struct("kvm").field("arch.vcores").offset, 8, VCORE)
    r = host.kernel_reader().read(host.mem, host.regs)
    assert [v["addr"] for v in r.snapshot["vcores"]] == [VCORE]
    assert r.snapshot["vcore_from"] == ["vm_list"]
    # an INACTIVE vcore is not the one being run
    host.put("kvmppc_vcore", VCORE, {"vcore_state": 0})
    r = host.kernel_reader().read(host.mem, host.regs)
    assert r.snapshot["vcores"] == []


def test_unreadable_vm_list_is_a_problem():
    host = idle_host_with_a_vm()
    with_vm_list(host, [KVM])
    host.mem.unreadable.append((VM_LIST, VM_LIST + 8))
    r = host.kernel_reader().read(host.mem, host.regs)
    assert r.snapshot["vcores"] == []
    assert any(p.startswith("vm_list unreadable") for p in r.problems)


def test_a_preempted_vcore_off_the_core_is_named_in_pv_check():
    """A VCORE_PREEMPT vcore (no PACA points at it) found through vm_list: pv-check's text
    says it exists and that no thread points at it, and judges it (not "no active vcore")."""
    from pyvcore import stopview
    from pyvcore.checker import Checker

    host = idle_host_with_a_vm()
    with_vm_list(host, [KVM])
    host.put_int(KVM + host.layouts.struct("kvm").field("arch.vcores").offset, 8, VCORE)
    host.put("kvmppc_vcore", VCORE, {"vcore_state": 1, "in_guest": 0})
    snap = host.kernel_reader().read(host.mem, host.regs, stop="pv-check").snapshot
    text = stopview.check_text(snap, stopview.judge(Checker(snap["variant"]), snap), legend=False)
    flat = " ".join(text.split())
    assert f"vc0 {VCORE:#x} (vcore_state PREEMPT) exists but no thread of this core points at it" in flat
    assert "no active vcore" not in text and "no invariant violated" in text
    # a vcore a thread points at gets no such line
    host.hstate(0, kvm_vcore=VCORE, kvm_vcpu=0)
    snap = host.kernel_reader().read(host.mem, host.regs, stop="pv-check").snapshot
    text = stopview.check_text(snap, stopview.judge(Checker(snap["variant"]), snap), legend=False)
    assert "no thread of this core points" not in " ".join(text.split())
