"""The text the pv-* commands print, built from fake-memory readings (no gdb, no QEMU)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from gdb_fakes import MSR_GUEST, MSR_OPAL, VCORE, FakeHost

from pyvcore import stopview, tables


def reading(novcpu0: bool = False):
    host = FakeHost()
    if novcpu0:
        host.vm([0, 1], running=[1], thread0_novcpu=True)
    else:
        host.vm([0, 1, 2, 3])
    return host, host.kernel_reader().read(host.mem, host.regs)


def test_paca_table_one_row_per_thread_with_offsets_under_the_names():
    host, r = reading()
    text = tables.paca_table(host.kernel, r)
    lines = text.splitlines()
    assert lines[0].startswith("paca_struct.kvm_hstate at +0x298 (272 bytes")
    head = next(i for i, line in enumerate(lines) if line.startswith("cpu  t "))
    names, offsets = lines[head].split(), lines[head + 1].split()
    assert names[3:] == ["in_guest", "napping", "req", "hwthread_state", "ptid", "vcpu", "vcore"]
    assert offsets == ["0x2d0", "0x2d2", "0x2d3", "0x2d4", "0x2d6", "0x2d8", "0x2e0"]
    rows = [line.split() for line in lines[head + 3 : head + 7]]
    assert [row[:3] for row in rows] == [
        ["0", "t0", "0x8"],
        ["1", "t1", "0x9"],
        ["2", "t2", "0xa"],
        ["3", "t3", "0xb"],
    ]
    assert [row[7:] for row in rows] == [[str(i), str(i), "vc0"] for i in range(4)]
    assert all(row[3:7] == ["GUEST_HV", "-", "1" if row[0] != "0" else "0", "IN_KVM"] for row in rows)
    assert f"vc0 = {VCORE:#x}" in text


@pytest.mark.parametrize("threads", [4, 8])
def test_paca_table_fits_80_columns(threads):
    host = FakeHost(threads=threads)
    host.vm(list(range(threads)))
    r = host.kernel_reader().read(host.mem, host.regs)
    text = tables.paca_table(host.kernel, r)
    assert max(map(len, text.splitlines())) <= 80
    assert len(re.findall(r"^\d+\s+t\d\s+0x", text, re.M)) == threads  # not transposed


def test_paca_list_for_one_cpu():
    host, r = reading(novcpu0=True)
    text = tables.paca_list(host.kernel, r.rows[0], r)
    assert text.splitlines()[0].startswith("paca for cpu 0 (gdb thread 1) at 0xc")
    assert re.search(r"kvm_hstate\.napping\s+= 2 NOVCPU\s+\(0x2d2\)", text)
    assert re.search(r"kvm_hstate\.kvm_vcpu\s+= 0\s+\(0x2d8\)", text)
    assert re.search(rf"kvm_hstate\.kvm_vcore\s+= {VCORE:#x}", text)


def test_vcore_text_decodes_states_and_maps():
    host, r = reading()
    text = tables.vcore_text(host.kernel, VCORE, r.vcores[VCORE], r)
    assert "vcore_state 4 RUNNING" in text
    assert "entry_exit_map 0xf: entered {0,1,2,3} exiting {}" in text
    assert "(lpid 1)" in text
    rows = re.findall(r"^(\d)\s+(\d)\s+0xc[0-9a-f]+\s+0\s+(\d)\s+RUNNABLE\s+0\s+cpu \d / t\d$", text, re.M)
    assert rows == [("0", "0", "0"), ("1", "1", "1"), ("2", "2", "2"), ("3", "3", "3")]
    assert text.count("cpu ") >= 4


def test_exit_request_bit_is_named():
    host, _ = reading()
    assert tables.entry_exit_text(host.kernel.entry_exit, 0x10F03).endswith(
        "entered {0,1} exiting {0,1,2,3} EXIT_REQ"
    )


def test_check_text_verdicts_per_thread():
    _host, r = reading()

    v = SimpleNamespace(invariant=3, message="thread 2 runs vcpu 1", fields={"threads[2].ptid": 7})

    predicted = [dict(t["kvm_hstate"]) for t in r.snapshot["threads"]]
    predicted[2]["ptid"] = 7
    judged = stopview.Judgement([v], predicted)
    text = stopview.check_text(r.snapshot, judged)
    verdicts = re.findall(r"^(\d+)\s+(t\d)\s+\S+\s+\S+\s+(.*)$", text, re.M)
    assert verdicts == [("0", "t0", "ok"), ("1", "t1", "ok"), ("2", "t2", "violation"), ("3", "t3", "ok")]
    assert "violation of invariant 3: thread 2 runs vcpu 1" in text
    # a difference that no violation names is allowed at this instant, with a reason
    predicted[2]["ptid"] = 2
    predicted[1]["kvm_vcpu"] = 0
    text = stopview.check_text(r.snapshot, stopview.Judgement([], predicted))
    assert re.search(r"^1\s+t1\s+1/1/vc0\s+1/-/vc0\s+allowed-now: between two stores$", text, re.M)
    coloured = stopview.check_text(r.snapshot, stopview.Judgement([], predicted), colour=True)
    assert "\x1b[32mno invariant violated (modern)\x1b[0m" in coloured
    not_judged = stopview.check_text(r.snapshot, stopview.Judgement([], predicted, [(8, "no vcore")], False))
    assert (
        not_judged.count("not judged") >= 5
        and "not judged at this stop, for want of data: invariant 8 (no vcore)" in not_judged
    )


def test_an_invariant_the_variant_lacks_is_not_listed_as_not_judged():
    """Modern has no nap_count: invariant 16 does not apply there, so a modern stop is judged
    on every invariant it carries data for and says nothing of 16; a seed stop that did not
    read nap_count says 16 is not judged, in one pair of parentheses."""
    from pyvcore.checker import Checker

    _host, r = reading()
    assert r.snapshot["variant"] == "modern"
    outcome = Checker("modern").check_outcome(dict(r.snapshot))
    assert 16 in outcome.not_applicable and 16 not in dict(outcome.not_judged)
    text = stopview.check_text(r.snapshot, stopview.judge(Checker("modern"), r.snapshot))
    assert "invariant 16" not in text and "nap_count" not in text
    seed = {**r.snapshot, "variant": "seed"}
    seed_text = stopview.check_text(
        seed, stopview.Judgement([], None, list(Checker("seed").check_outcome(seed).not_judged))
    )
    assert "not judged at this stop, for want of data: invariant 16 (no nap_count read)" in seed_text


def test_opal_thread_still_shown():
    host = FakeHost()
    host.vm([0, 1, 2, 3])
    host.regs[3].msr = MSR_OPAL
    r = host.kernel_reader().read(host.mem, host.regs)
    text = tables.paca_table(host.kernel, r)
    assert re.search(r"^3\s+t3\s+opal\s+0x", text, re.M)
    assert re.search(r"^0\s+t0\s+host\s+0x", text, re.M)


def test_pv_print_lists_every_member_with_offset_type_and_value():
    from pyvcore.structprint import print_struct

    host, _ = reading()
    text = print_struct(host.layouts, host.mem, "struct kvmppc_vcore", VCORE)
    assert text.splitlines()[0] == f"struct kvmppc_vcore at {VCORE:#x} (240 bytes, layout from BTF)"
    assert re.search(r"^0x18\s+1\s+vcore_state\s+u8\s+4$", text, re.M)
    assert re.search(r"^0xa0\s+8\s+kvm\s+struct kvm \*\s+0xc008000000100000$", text, re.M)
    # arrays of pointers element by element, at their own offsets
    assert re.search(r"^0x28\s+8\s+runnable_threads\[1\]\s+0xc0000000050040", text, re.M)
    assert max(map(len, text.splitlines())) <= 80


def test_pv_print_expands_a_struct_member_and_refuses_bad_names():
    from pyvcore.layout import LayoutError
    from pyvcore.structprint import print_struct

    host, r = reading()
    paca = r.rows[1].paca
    text = print_struct(host.layouts, host.mem, "paca_struct", paca, ["kvm_hstate", "hw_cpu_id"])
    assert re.search(r"^0x2d6\s+1\s+\.ptid\s+u8\s+1$", text, re.M)
    assert re.search(r"^0x38\s+2\s+hw_cpu_id\s+s16\s+9$", text, re.M)
    with pytest.raises(LayoutError, match="no member 'nope'"):
        print_struct(host.layouts, host.mem, "paca_struct", paca, ["nope"])
    with pytest.raises(LayoutError, match="no struct no_such_struct"):
        print_struct(host.layouts, host.mem, "no_such_struct", paca)


def test_pv_vcpu_tables():
    from pyvcore import vcpuview

    host = FakeHost()
    host.vm([0, 1], running=[1], thread0_novcpu=True)
    host.regs[1].msr = MSR_GUEST
    r = host.kernel_reader().read(host.mem, host.regs)
    names = {VCORE: "vc0"}
    details = {
        a: vcpuview.read_detail(host.layouts, host.mem, a, "little") for a in map(host.vcpu_addr, (0, 1))
    }
    assert {d["vcpu_id"] for d in details.values()} == {0, 1}
    text = vcpuview.vcpu_tables(details, r, names, r.vcores)
    rows = re.findall(r"^(\d)\s+vc0\s+(\d)\s+(\S+)\s+(\d)\s+(\d)\s+\S+\s+(\S+)\s+(.*)$", text, re.M)
    assert [(row[0], row[1], row[2]) for row in rows] == [("0", "0", "BUSY_IN_HOST"), ("1", "1", "RUNNABLE")]
    assert rows[1][-1] == "cpu 1 / t1" and rows[0][-1] == "-"
    # vcpu 1 is executing the guest on thread 1: its PC/MSR are live from that thread
    assert re.search(r"^1\s+live \(cpu 1 / t1\)\s+0x", text, re.M)
    assert re.search(r"^0\s+saved at exit\s+", text, re.M)
    assert max(map(len, text.splitlines())) <= 80


def test_watch_summary_groups_violations_and_counts_per_label_and_cpu():
    from pyvcore.watchsummary import WatchTally

    t = WatchTally()
    lpidr = {"invariant": 8, "message": "threads of one core disagree on LPIDR"}
    for i in range(12):
        label = ("kvmppc_hv_entry", "kvmhv_switch_to_host")[i % 2]
        t.record(f"{label}@cpu{i % 4}", [lpidr] if i >= 2 else [])
    t.record("kvm_do_nap@cpu0", [], judged=False)
    t.record("kvm_do_nap@cpu1", [], error="cannot access memory")
    text = t.render("--max-stops 14")
    lines = text.splitlines()
    assert lines[0].startswith("pv-watch: off: --max-stops 14; 14 stops: 12 judged, 1 not judged")
    assert "10 violations" in text.replace("\n  ", " ")
    assert (
        "  invariant 8 (partition registers): 10x, first at stop 3 (kvmppc_hv_entry@cpu2):"
        in text.replace("\n      ", " ")
    )
    assert re.search(r"^kvmppc_hv_entry\s+6\s+3 0 3 0\s+5$", text, re.M)
    assert re.search(r"^kvmhv_switch_to_host\s+6\s+0 3 0 3\s+5$", text, re.M)
    assert re.search(r"^kvm_do_nap\s+2\s+1 1 0 0\s+0$", text, re.M)
    assert max(map(len, lines)) <= 80
    # nothing found is still a summary
    assert WatchTally().render("pv-watch off").startswith("pv-watch: off: pv-watch off; 0 stops")
    one = WatchTally()
    one.record("kvm_do_nap@cpu0", [])
    assert one.line().startswith("1 stop: 1 judged, ")
