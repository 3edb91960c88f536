"""pyvcore.drgn helpers in a real drgn, on a recorded small core.

The DWARF of the lab kernel (linux-image-...-dbg, 0.7-0.9 GB) is beyond the CI
budget, so the Program is built by hand the way drgn allows it: memory
segments from ``tests/data/small-core-all-6.12.json`` (every byte
``pyvcore check --vmcore`` read from a QEMU dump of the lab's ``all``
scenario: PACAs, the vcore, its vcpus, the VM) and types from the same
kernel's BTF layouts (``tests/data/layouts-6.12-btf.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

drgn = pytest.importorskip("drgn", reason="the drgn helpers need drgn (pip install drgn)")

DATA = Path(__file__).parent / "data"


def _program() -> Any:
    layouts = json.loads((DATA / "layouts-6.12-btf.json").read_text())
    core = json.loads((DATA / "small-core-all-6.12.json").read_text())
    flags = drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN
    prog = drgn.Program(drgn.Platform(drgn.Architecture.PPC64, flags))
    for addr, data in core["segments"].items():
        raw = bytes.fromhex(data)
        prog.add_memory_segment(int(addr, 16), len(raw), lambda a, n, off, phys, raw=raw: raw[off : off + n])
    structs: dict[str, Any] = {}

    def struct(name: str) -> Any:
        if name not in structs:
            raw = layouts["by_name"].get(name)
            if raw is None:
                structs[name] = prog.struct_type(name, None, None)  # incomplete, as in C
            else:
                members = [
                    drgn.TypeMember(_lazy(m), m["name"], m["offset"] * 8)
                    for m in raw["members"]
                    if _usable(m)
                ]
                structs[name] = prog.struct_type(name, raw["size"], members)
        return structs[name]

    def _usable(m: dict[str, Any]) -> bool:
        return (
            bool(m["name"]) and m["kind"] in ("int", "ptr", "struct", "array") and m["bitfield_size"] is None
        )

    def _pointee(text: str) -> Any:
        text = text.split("*")[0].strip()
        return struct(text.split()[1]) if text.startswith("struct ") else prog.void_type()

    def _lazy(m: dict[str, Any]) -> Any:
        def make() -> Any:
            if m["kind"] == "int":
                return prog.int_type(m["type"], m["size"], bool(m["signed"]))
            if m["kind"] == "ptr":
                return prog.pointer_type(_pointee(m["type"]))
            if m["kind"] == "struct":
                return struct(m["type"].split()[1])
            elem = (
                prog.pointer_type(_pointee(m["type"]))
                if m["inner_kind"] == "ptr"
                else prog.int_type("u8", 1, False)
            )
            return prog.array_type(elem, m["array_len"])

        return make

    def find_type(prog_: Any, kinds: Any, name: str, filename: Any) -> Any:
        return struct(name) if name in layouts["by_name"] else None

    symbols = layouts["symbols"]
    typed = {
        "paca_ptrs": lambda: prog.pointer_type(prog.pointer_type(struct("paca_struct"))),
        "nr_cpu_ids": lambda: prog.int_type("unsigned int", 4, False),
        "threads_per_core": lambda: prog.int_type("int", 4, True),
    }

    def find_object(prog_: Any, name: str, flags: Any, filename: Any) -> Any:
        if name in typed:
            return drgn.Object(prog, typed[name](), address=symbols[name])
        return None

    prog.register_type_finder("pyvcore-test", find_type, enable_index=0)
    prog.register_object_finder("pyvcore-test", find_object, enable_index=0)
    return prog


def test_helpers_read_the_recorded_lab_core() -> None:
    from pyvcore.drgn import for_each_vcore, paca_kvm_hstate

    prog = _program()
    hs = paca_kvm_hstate(prog, 2)
    assert hs.type_.tag == "kvmppc_host_state"
    assert hs.ptid.value_() == 2 and hs.hwthread_state.value_() == 2  # KVM_HWTHREAD_IN_KVM
    vcores = list(for_each_vcore(prog))
    assert len(vcores) == 1 and vcores[0].num_threads.value_() == 4
    assert vcores[0].value_() == hs.kvm_vcore.value_()
    with pytest.raises(ValueError, match="not below nr_cpu_ids"):
        paca_kvm_hstate(prog, 4096)


def test_snapshot_feeds_the_same_checker_as_the_vmcore_reader() -> None:
    from pyvcore import Checker
    from pyvcore.drgn import snapshot

    snap = snapshot(prog := _program())
    assert snap["variant"] == "modern" and snap["threads_per_core"] == 4
    assert [t["kvm_hstate"]["ptid"] for t in snap["threads"]] == [0, 1, 2, 3]
    assert sorted(v["vcpu_id"] for v in snap["vcpus"]) == [0, 1, 2, 3]
    assert snap["kvm"]["lpid"] == 1
    assert Checker().check(snap) == []
    # the same bytes with two ptids swapped are flagged, as in the corrupted dump
    bad = json.loads(json.dumps(snap))
    bad["threads"][1]["kvm_hstate"]["ptid"], bad["threads"][2]["kvm_hstate"]["ptid"] = 2, 1
    assert {v.invariant for v in Checker().check(bad)} == {3}
    assert prog is not None
