"""pv-snapshot: the snapshot (format version 2) of the stopped machine."""

from __future__ import annotations

import json

import gdb  # type: ignore[import-not-found]

from pyvcore.snapshot import to_wire

from . import session
from .args import ArgParser
from .session import PvError


def write_json_line(path: str, record: dict) -> None:
    """Append one JSON object as one line (a trace is a .jsonl of these), with
    addresses and 64-bit values as hex strings."""
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(to_wire(record), separators=(",", ":")) + "\n")
    except OSError as e:
        raise PvError(f"pyvcore: cannot write {path}: {e.strerror}") from None


class PvSnapshot(gdb.Command):
    """Take a snapshot of every thread's kvm_hstate, the vcores, vcpus and VM.

    Usage: pv-snapshot [--json FILE|-] [--stop LABEL] [--stats]

      (no option)    print the snapshot as indented JSON
      --json -       print it as one JSON line (for scripts and pygdbmi)
      --json FILE    append it as one line to FILE: repeated snapshots build a
                     trace that `pyvcore check FILE` reads
      --stop LABEL   record LABEL as the snapshot's "stop"
      --stats        also print how long it took and how many reads it needed

    The snapshot is the object `pyvcore check` reads (format version 2):
    {"version", "variant", "threads_per_core", "stop", "tb", "tb_freq",
    "threads": [{"cpu", "hw_cpu_id", "pc", "msr", "lpidr", "sdr1", "kvm_hstate": {...}}],
    "vcores": [...], "vcore_from": [...], "vcpus": [...], "kvm": {...}} with the
    kernel's field names; addresses and 64-bit values as hex strings."""

    def __init__(self) -> None:
        super().__init__("pv-snapshot", gdb.COMMAND_DATA, gdb.COMPLETE_FILENAME)

    def invoke(self, arg: str, from_tty: bool) -> None:
        p = ArgParser("pv-snapshot")
        p.add_argument("--json", dest="json_out")
        p.add_argument("--stop")
        p.add_argument("--stats", action="store_true")
        a = p.parse(arg)
        reading, stats = session.read_state(stop=a.stop)
        snap = reading.snapshot
        if reading.problems:
            snap["problems"] = reading.problems
        if a.json_out == "-":
            gdb.write(json.dumps(to_wire(snap), separators=(",", ":")) + "\n")
        elif a.json_out:
            write_json_line(a.json_out, snap)
            gdb.write(f"pv-snapshot: appended to {a.json_out}\n")
        else:
            gdb.write(json.dumps(to_wire(snap), indent=1) + "\n")
            for problem in reading.problems:
                gdb.write(f"pv-snapshot: {problem}\n")
        if a.stats:
            gdb.write(
                f"pv-snapshot: {stats.seconds * 1000:.2f} ms, {stats.memory_reads} memory reads, "
                f"{stats.register_reads} register reads\n"
            )


def register() -> None:
    PvSnapshot()
