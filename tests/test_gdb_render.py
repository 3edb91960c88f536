"""The text the pv-* commands print, built from fake-memory readings (no gdb, no QEMU)."""

from __future__ import annotations

import re

from gdb_fakes import MSR_OPAL, VCORE, FakeHost

from pyvcore import tables


def reading(novcpu0: bool = False):
    host = FakeHost()
    if novcpu0:
        host.vm([0, 1], running=[1], thread0_novcpu=True)
    else:
        host.vm([0, 1, 2, 3])
    return host, host.kernel_reader().read(host.mem, host.regs)


def test_paca_table_has_offsets_and_one_column_per_thread():
    host, r = reading()
    text = tables.paca_table(host.kernel, r)
    lines = text.splitlines()
    assert lines[0].startswith("paca_struct.kvm_hstate at +0x298 (272 bytes); layouts from BTF")
    ptid = next(line for line in lines if re.match(r"\s+0x2d6\s+ptid\b", line))
    assert ptid.split()[2:] == ["0", "1", "2", "3"]
    vcpu = next(line for line in lines if "kvm_vcpu" in line)
    assert vcpu.count("(vcpu ") == 4
    assert re.search(r"0x2d0\s+in_guest\s+3 GUEST_HV", text)
    assert re.search(r"hwthread_state\s+2 IN_KVM", text)


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
    rows = re.findall(r"^\s+(\d)\s+(\d)\s+0xc[0-9a-f]+\s+0\s+(\d)\s+RUNNABLE", text, re.M)
    assert rows == [("0", "0", "0"), ("1", "1", "1"), ("2", "2", "2"), ("3", "3", "3")]
    assert text.count("cpu ") >= 4


def test_exit_request_bit_is_named():
    host, _ = reading()
    assert tables.entry_exit_text(host.kernel, 0x10F03).endswith("entered {0,1} exiting {0,1,2,3} EXIT_REQ")


def test_check_table_marks_differences_and_violations():
    _host, r = reading()

    class V:
        invariant = 3
        message = "thread 2 runs vcpu 1"

    predicted = [dict(t["kvm_hstate"]) for t in r.snapshot["threads"]]
    predicted[2]["ptid"] = 7
    text = tables.check_table(r, predicted, [V()], tables.Style(colour=False))
    lines = text.splitlines()
    assert lines[1].endswith("ok") and lines[3].endswith("DIFF")
    assert lines[-1] == "violated invariant 3: thread 2 runs vcpu 1"
    coloured = tables.check_table(r, predicted, [], tables.Style(colour=True))
    assert "\033[32mno invariant violated (modern)\033[0m" in coloured


def test_opal_thread_still_shown():
    host = FakeHost()
    host.vm([0, 1, 2, 3])
    host.regs[3].msr = MSR_OPAL
    r = host.kernel_reader().read(host.mem, host.regs)
    text = tables.paca_table(host.kernel, r)
    assert re.search(r"mode \(MSR\)\s+host .* opal 0x9000000000001000", text)
    assert re.search(r"0x2d6\s+ptid\s+0\s+1\s+2\s+3", text)
