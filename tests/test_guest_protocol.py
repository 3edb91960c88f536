"""The console protocol of the lab guest (pyvcore.lab.guest), on recorded console text."""

import json

from pyvcore.lab.guest import SCENARIOS, parse_console, parse_modules, parse_reports

# Trimmed from a real boot (stock QEMU 10.0.2, 6.12.95, scenario "all"), with the
# kernel noise and the \r the hvc console adds.
STOCK_ALL = """\
[    6.105399] Run /init as init process\r
PYVCORE INIT scenario=all hold=3 uptime=7.71\r
PYVCORE MODULE kvm .text 0xc008000006c40000\r
PYVCORE MODULE kvm .data 0xc008000006c70000\r
PYVCORE MODULE kvm .bss 0xc008000006c78a00\r
PYVCORE MODULE kvm_hv .text 0xc008000006d40000\r
PYVCORE MODULE kvm_hv .data 0xc008000006d90000\r
PYVCORE MODULE kvm_hv .bss 0xc008000006d99000\r
PYVCORE KVM uptime=12.87 online=0\r
PYVCORE VMM scenario=all vcpus=0,1,2,3 smt=4 hold=3 spin_pc=0x103c msgsndp_pc=0x11a8 cede_pc=0x10a4\r
PYVCORE STALLED scenario=all waiting=1,2,3\r
PYVCORE REPORT {"scenario":"all","vcpu":0,"vcore":0,"first_vcpuid":0,"role":"spin","started":true,"finished":true,"tir":0,"tir_changes":0,"iterations":59768832,"reports":58,"exits":58,"hcalls":58,"decrementers":0,"cedes":0,"prods":0,"doorbells_sent":0,"doorbells_received":0,"woken_by":[],"msgsndp_traps":0,"program_checks":0,"program_check_pc":null,"program_check_srr1":null,"msgsndp_pc":4520,"unexpected_vector":null,"unexpected_pc":null,"busy_retries":0,"seconds":17.570,"error":null}\r
PYVCORE REPORT {"scenario":"all","vcpu":1,"vcore":0,"first_vcpuid":0,"role":"spin","started":false,"finished":true,"tir":null,"tir_changes":0,"iterations":0,"reports":0,"exits":0,"hcalls":0,"decrementers":0,"cedes":0,"prods":0,"doorbells_sent":0,"doorbells_received":0,"woken_by":[],"msgsndp_traps":0,"program_checks":0,"program_check_pc":null,"program_check_srr1":null,"msgsndp_pc":4520,"unexpected_vector":null,"unexpected_pc":null,"busy_retries":0,"seconds":0.000,"error":null}\r
[   30.1] random kernel line PYVCORE is not at the start here: PYVCORE REPORT {broken\r
PYVCORE DONE scenario=all status=error reason=stalled vcpus=4 started=1 never_ran=1,2,3 seconds=18.894\r
PYVCORE POWEROFF\r
"""


def test_modules_are_parsed_to_integer_addresses():
    mods = parse_modules(STOCK_ALL)
    assert set(mods) == {"kvm", "kvm_hv"}
    assert mods["kvm_hv"][".text"] == 0xC008000006D40000
    assert set(mods["kvm"]) == {".text", ".data", ".bss"}


def test_reports_stalled_and_done():
    log = parse_console(STOCK_ALL)
    assert [r["vcpu"] for r in log.reports] == [0, 1]
    assert log.report(0)["iterations"] == 59768832 and log.report(0)["tir"] == 0
    assert log.report(1)["started"] is False and log.report(1)["tir"] is None
    assert log.stalled == [1, 2, 3]
    assert log.ready is None
    assert log.done == {
        "scenario": "all",
        "status": "error",
        "reason": "stalled",
        "vcpus": "4",
        "started": "1",
        "never_ran": "1,2,3",
        "seconds": "18.894",
    }
    assert not log.ok
    assert log.powered_off
    assert log.vmm["msgsndp_pc"] == "0x11a8"
    # the garbled REPORT is kept aside, not raised and not returned as a report
    assert len(log.bad_lines) == 1 and "broken" in log.bad_lines[0]
    assert parse_reports(STOCK_ALL) == log.reports


def test_ready_and_ok():
    text = "PYVCORE READY scenario=cede\nPYVCORE DONE scenario=cede status=ok vcpus=4 started=4 seconds=3.2\n"
    log = parse_console(text)
    assert log.ready == "cede" and log.ok and log.reports == []


def test_report_lookup_of_missing_vcpu_names_it():
    log = parse_console(STOCK_ALL)
    try:
        log.report(7)
    except KeyError as e:
        assert "vcpu 7" in str(e)
    else:
        raise AssertionError("expected KeyError")


def test_every_report_has_the_documented_keys():
    """The VMM's JSON keys are the ones the module docstring documents."""
    import pyvcore.lab.guest as guest

    keys = json.loads(STOCK_ALL.split("PYVCORE REPORT ", 1)[1].split("\r", 1)[0]).keys()
    for key in keys:
        assert f"``{key}``" in guest.__doc__, key
    assert SCENARIOS == ("all", "novcpu0", "cede", "doorbell", "sparse", "two-vcores", "exits", "cede-all")
