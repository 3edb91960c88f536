"""The tables of one stop, built from its snapshot alone.

The same text comes out of ``pv-check`` in gdb (a live stop) and ``pyvcore
show`` (a recorded one), so a failure in CI reads like a session at the lab.
A snapshot is the checker's input (one JSON object per stop); numbers in it may
be integers or hex strings (``"0xc000000028c26d00"``).

Threads are named by Linux cpu and hardware thread: ``threads[i]`` of a
snapshot is hardware thread ``i`` of the core (the thread a vcpu with ptid
``i`` must run on, since "KVM: PPC: Book3S HV: Align physical and virtual CPU
thread numbers", e0b7ec058c0e).  vcores are numbered ``vc0``, ``vc1``... by
(VM lpid, first_vcpuid), the same numbers as ``pv-vcore N`` and ``$pv_vcore(N)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyvcore.decode import GUEST_MODES, HWTHREAD_STATES, NAPPING, VCORE_STATES, VCPU_STATES, name_of
from pyvcore.ppc64 import ThreadRegs, entry_exit_text
from pyvcore.render import paint, render_table, wrap

LEGEND = (
    "kernel: what the thread's PACA holds (ptid/vcpu/vcore); model: where the model places the vcore's "
    "vcpus in this vcore state.  verdict: ok = the same; allowed-now = different in a state the kernel "
    "passes through legally (reason given); violation = an invariant fails (listed below) "
    "and names this thread's fields; a vcore row (vc0..) holds a violation of the vcore as a whole; "
    "not judged = the stop lacks what the check needs."
)


def num(value: Any) -> int | None:
    """An integer from a snapshot value: int, hex/decimal string, or None."""
    if value is None or isinstance(value, bool):
        return None if value is None else int(value)
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 0)
    except ValueError:
        return None


def vcore_order(snapshot: Mapping[str, Any]) -> list[int]:
    """vcore addresses in stable order: by VM (lpid, else kvm address), then first_vcpuid."""
    lpid = num((snapshot.get("kvm") or {}).get("lpid"))

    def key(vc: Mapping[str, Any]) -> tuple[int, int, int]:
        return (lpid if lpid is not None else 0, num(vc.get("kvm")) or 0, num(vc.get("first_vcpuid")) or 0)

    return [num(vc.get("addr")) or 0 for vc in sorted(snapshot.get("vcores") or [], key=key)]


@dataclass
class Names:
    """Short names for the addresses of one stop: vcores ``vc0``.., vcpus by id."""

    vcores: dict[int, str] = field(default_factory=dict)
    vcpus: dict[int, int] = field(default_factory=dict)

    @classmethod
    def of(cls, snapshot: Mapping[str, Any]) -> Names:
        names = cls()
        for i, addr in enumerate(vcore_order(snapshot)):
            names.vcores[addr] = f"vc{i}"
        for v in snapshot.get("vcpus") or []:
            vaddr, vid = num(v.get("addr")), num(v.get("vcpu_id"))
            if vaddr and vid is not None:
                names.vcpus[vaddr] = vid
        return names

    def vcore(self, addr: Any) -> str:
        a = num(addr)
        if a is None:
            return "?"
        return "-" if a == 0 else self.vcores.get(a, f"{a:#x}")

    def vcpu(self, addr: Any) -> str:
        a = num(addr)
        if a is None:
            return "?"
        return "-" if a == 0 else str(self.vcpus[a]) if a in self.vcpus else f"{a:#x}"


def thread_label(snapshot: Mapping[str, Any], i: int) -> str:
    return f"cpu {snapshot['threads'][i].get('cpu', '?')} / t{i}"


def threads_table(snapshot: Mapping[str, Any], *, width: int | None = None) -> str:
    """Per hardware thread: cpu, the kvm_hstate fields of the vcore logic, LPIDR and SDR1 (the
    partition's id and page table register, one per core on POWER8), under the VM's values."""
    names = Names.of(snapshot)
    variant = snapshot.get("variant", "modern")
    rows = []
    for i, t in enumerate(snapshot.get("threads") or []):
        hs = t.get("kvm_hstate") or {}
        rows.append(
            [
                t.get("cpu", "?"),
                f"t{i}",
                name_of(GUEST_MODES, num(hs.get("in_guest"))),
                name_of(NAPPING, num(hs.get("napping"))),
                name_of(
                    HWTHREAD_STATES.get(variant, HWTHREAD_STATES["modern"]), num(hs.get("hwthread_state"))
                ),
                hs.get("hwthread_req", "?"),
                hs.get("ptid", "?"),
                names.vcpu(hs.get("kvm_vcpu")),
                names.vcore(hs.get("kvm_vcore")),
                _hex(t.get("lpidr")),
                _hex(t.get("sdr1")),
            ]
        )
    columns = ["cpu", "t", "in_guest", "napping", "hwthread", "req", "ptid", "vcpu", "vcore", "lpidr", "sdr1"]
    return render_table(columns, rows, width=width, title=_partition_line(snapshot))


REGISTERS = ("pc", "msr", "dpdes", "hdec")
"""A snapshot-v2 thread's registers (absent where the reader could not read them)."""


def registers_table(snapshot: Mapping[str, Any], *, width: int | None = None) -> str | None:
    """Per hardware thread, the registers a version-2 snapshot carries: where it stopped (pc),
    its MSR with the mode it says (``host``: hypervisor with translation on; ``real``:
    hypervisor real mode, as KVM's entry and exit code runs; ``guest``: MSR[HV] clear; ``opal``:
    big-endian firmware), DPDES (bit N: a doorbell pending for thread N) and HDEC (timebase
    ticks; negative once it has expired).  None when no thread has any of them (a version-1
    stop, or a reader that read none)."""
    threads = snapshot.get("threads") or []
    if not any(name in t for t in threads for name in REGISTERS):
        return None
    rows = []
    for i, t in enumerate(threads):
        msr = num(t.get("msr"))
        mode = ThreadRegs(gdb_thread=i, msr=msr).mode if msr is not None else "-"
        hdec = num(t.get("hdec"))
        rows.append(
            [
                t.get("cpu", "?"),
                f"t{i}",
                _hex(t.get("pc")),
                _hex(msr),
                mode,
                _hex(t.get("dpdes")),
                "-" if hdec is None else str(_signed_hdec(hdec)),
            ]
        )
    return render_table(["cpu", "t", "pc", "msr", "mode", "dpdes", "hdec"], rows, width=width)


def _signed_hdec(value: int) -> int:
    """HDEC as the signed count it is: POWER8's is 32 bits (ISA 2.07; the large decrementer
    came with POWER9), read as is or sign-extended to 64 bits by the reader."""
    if value >= 1 << 63:
        return value - (1 << 64)
    if 1 << 31 <= value < 1 << 32:
        return value - (1 << 32)
    return value


def _partition_line(snapshot: Mapping[str, Any]) -> str | None:
    """The VM's partition registers next to the host's (``struct kvm_arch`` lpid/sdr1,
    host_lpid/host_sdr1): what a thread's LPIDR and SDR1 hold in the guest and in the host.
    Thread 0 writes both for the core in kvmppc_hv_entry and restores the host's in
    kvmhv_switch_to_host (arch/powerpc/kvm/book3s_hv_rmhandlers.S)."""
    kvm = snapshot.get("kvm") or {}
    if not kvm:
        return None
    guest = f"guest lpid {_hex(kvm.get('lpid'))} sdr1 {_hex(kvm.get('sdr1'))}"
    if "host_lpid" in kvm or "host_sdr1" in kvm:
        return f"partition: {guest}; host lpid {_hex(kvm.get('host_lpid'))} sdr1 {_hex(kvm.get('host_sdr1'))}"
    return f"partition: {guest}"


def _hex(value: Any) -> str:
    n = num(value)
    return "-" if n is None else f"{n:#x}"


def vcores_text(snapshot: Mapping[str, Any], *, width: int | None = None) -> str:
    """Each vcore (numbered as pv-vcore does) with its vcpus."""
    names = Names.of(snapshot)
    states = VCORE_STATES.get(snapshot.get("variant", "modern"), VCORE_STATES["modern"])
    by_addr = {num(vc.get("addr")): vc for vc in snapshot.get("vcores") or []}
    on_thread = {
        num((t.get("kvm_hstate") or {}).get("kvm_vcpu")): i
        for i, t in enumerate(snapshot.get("threads") or [])
    }
    out = []
    for addr in vcore_order(snapshot):
        vc = by_addr[addr]
        field = "entry_exit_map" if "entry_exit_map" in vc else "entry_exit_count"
        items = [
            f"{names.vcore(addr)} {addr:#x}: {name_of(states, num(vc.get('vcore_state')))}",
            f"in_guest {vc.get('in_guest')}",
            entry_exit_text(field, num(vc.get(field)) or 0),
            f"napping_threads {_bits(num(vc.get('napping_threads')) or 0)}",
            f"runner vcpu {names.vcpu(vc.get('runner'))}",
        ]
        title = _join_wrapped(items, width)
        rows = [
            [
                v.get("vcpu_id"),
                v.get("ptid"),
                name_of(VCPU_STATES, num(v.get("state"))),
                v.get("ceded", "-"),
                v.get("thread_cpu", "-"),
                f"t{on_thread[num(v.get('addr'))]}" if num(v.get("addr")) in on_thread else "-",
            ]
            for v in sorted(snapshot.get("vcpus") or [], key=lambda v: num(v.get("vcpu_id")) or 0)
            if num(v.get("vcore")) == addr
        ]
        out.append(
            render_table(
                ["vcpu", "ptid", "state", "ceded", "thread_cpu", "in PACA of"], rows, width=width, title=title
            )
        )
    return "\n".join(out) if out else "(no vcore in this stop)"


def _join_wrapped(items: Sequence[str], width: int | None) -> str:
    """``items`` joined by commas, a line broken only between two items (a name is never
    parted from its value); continuation lines indented by two."""
    width = width or 80
    lines = [items[0]]
    for item in items[1:]:
        if len(lines[-1]) + 2 + len(item) + 1 <= width:
            lines[-1] += ", " + item
        else:
            lines[-1] += ","
            lines.append("  " + item)
    return "\n".join(lines)


def _bits(bitmap: int) -> str:
    return "{" + ",".join(str(i) for i in range(32) if bitmap >> i & 1) + "}"


@dataclass
class Judgement:
    """What a check of one snapshot said (the checker's outcome, in one shape)."""

    violations: list[Any]
    predicted: list[dict[str, Any]] | None
    not_judged: list[tuple[int, str]] = field(default_factory=list)
    vcore_found: bool = True
    # The checker's own verdict (CheckOutcome.verdict), when it gives one.
    checked: str | None = None

    @property
    def verdict(self) -> str:
        """The stop's verdict as `pyvcore check` gives it (CheckOutcome.verdict): "violations",
        "not judged" (no vcore read, or a thread / vcpu / vcore it names missing: never clean)
        or "clean"; worked out here only for a checker without an outcome."""
        if self.checked is not None:
            return self.checked
        if self.violations:
            return "violations"
        if not self.vcore_found or any(why in INCOMPLETE for _, why in self.not_judged):
            return "not judged"
        return "clean"


_PATH = re.compile(r"\b(threads|vcpus|vcores)\[(\d+)\]")
_THREAD_WORD = re.compile(r"\bthread (\d+)\b")


@dataclass(frozen=True)
class Place:
    """Where a violation is shown: the hardware threads it names, else once on its vcores.

    ``threads`` are indexes into ``snapshot["threads"]``; ``vcores`` are vcore names
    (``vc0``...), or ``"core"`` when the stop has no vcore."""

    threads: frozenset[int]
    vcores: frozenset[str]


def place(snapshot: Mapping[str, Any], v: Any) -> Place:
    """The rows a violation belongs on, from its structured fields (``threads[2].lpidr``,
    ``vcpus[1].ptid``, ``vcores[0].in_guest``, ``kvm.lpid``), else from ``thread N`` in its
    message.  A vcpu names the thread whose PACA holds it (``kvm_hstate.kvm_vcpu``); a vcpu
    on no thread, a vcore field or a VM field is core-wide: it goes on the vcore's row."""
    names = Names.of(snapshot)
    threads: set[int] = set()
    vcores: set[str] = set()
    listed = {key: snapshot.get(key) or [] for key in ("threads", "vcpus", "vcores")}
    on_thread = {num((t.get("kvm_hstate") or {}).get("kvm_vcpu")): i for i, t in enumerate(listed["threads"])}
    on_thread.pop(0, None)
    fields = getattr(v, "fields", None) or {}
    for key in fields:
        for kind, index in _PATH.findall(str(key)):
            i = int(index)
            if kind == "threads":
                threads.add(i)
            elif i >= len(listed[kind]):
                continue
            elif kind == "vcores":
                vcores.add(names.vcore(listed["vcores"][i].get("addr")))
            else:
                vcpu = listed["vcpus"][i]
                if num(vcpu.get("addr")) in on_thread:
                    threads.add(on_thread[num(vcpu.get("addr"))])
                else:
                    vcores.add(names.vcore(vcpu.get("vcore")))
    if not fields:
        threads = {int(n) for n in _THREAD_WORD.findall(str(getattr(v, "message", "")))}
    threads = {i for i in threads if i < len(listed["threads"])}
    if not threads and not vcores:  # the VM's fields (kvm.lpid...) or nothing said: every vcore
        vcores = set(names.vcores.values()) or {"core"}
    return Place(frozenset(threads), frozenset() if threads else frozenset(vcores))


def allowed_reason(snapshot: Mapping[str, Any], i: int) -> str:
    """Why a PACA may differ from the model's placement at this instant."""
    hs = snapshot["threads"][i].get("kvm_hstate") or {}
    vc = next(
        (c for c in snapshot.get("vcores") or [] if num(c.get("addr")) == num(hs.get("kvm_vcore"))),
        None,
    ) or next(iter(snapshot.get("vcores") or []), None)
    if vc is None:
        return "no vcore"
    ee = num(vc.get("entry_exit_map", vc.get("entry_exit_count"))) or 0
    state = name_of(VCORE_STATES.get(snapshot.get("variant", "modern"), {}), num(vc.get("vcore_state")))
    if ee >> 8 or state == "EXITING":
        return "exit in progress"
    if not ee & (1 << i) and num(hs.get("kvm_vcore")):
        return "entry in progress"
    if state not in ("RUNNING", "EXITING"):
        return f"vcore {state}"
    return "between two stores"


def _verdicts(snapshot: Mapping[str, Any], j: Judgement, colour: bool) -> list[str]:
    named = set().union(*(place(snapshot, v).threads for v in j.violations))
    out = []
    for i, t in enumerate(snapshot.get("threads") or []):
        hs = t.get("kvm_hstate") or {}
        p = (j.predicted or [])[i] if j.predicted and i < len(j.predicted) else None
        p = p.get("kvm_hstate", p) if p else None
        same = p is not None and all(
            p.get(key) is None or num(p.get(key)) == num(hs.get(key))
            for key in ("ptid", "kvm_vcpu", "kvm_vcore")
        )
        if not j.vcore_found:
            out.append(paint("not judged", "yellow", colour))
        elif i in named:
            out.append(paint("violation", "red", colour))
        elif p is None:
            out.append("no prediction")
        elif same:
            out.append(paint("ok", "green", colour))
        else:
            out.append(paint("allowed-now", "yellow", colour) + f": {allowed_reason(snapshot, i)}")
    return out


def _core_rows(snapshot: Mapping[str, Any], j: Judgement, colour: bool) -> list[list[str]]:
    """One row per vcore with a core-wide violation (a vcore or VM field, no thread named)."""
    invariants: dict[str, list[str]] = {}
    for v in j.violations:
        for vc in sorted(place(snapshot, v).vcores):
            numbers = invariants.setdefault(vc, [])
            if str(getattr(v, "invariant", "?")) not in numbers:
                numbers.append(str(getattr(v, "invariant", "?")))
    return [
        ["-", vc, "core-wide", "-", paint("violation", "red", colour) + f": invariant {', '.join(numbers)}"]
        for vc, numbers in invariants.items()
    ]


def _triple(names: Names, d: Mapping[str, Any] | None) -> str:
    if not d:
        return "?"
    ptid = d.get("ptid")
    return (
        f"{'*' if ptid is None else ptid}/{names.vcpu(d.get('kvm_vcpu'))}/{names.vcore(d.get('kvm_vcore'))}"
    )


def check_text(
    snapshot: Mapping[str, Any],
    judgement: Judgement,
    *,
    colour: bool = False,
    width: int | None = None,
    explain: Any = None,
    legend: bool = True,
) -> str:
    """pv-check's table (kernel vs model per thread, with a verdict), then the violations.

    ``explain(n) -> str | None`` gives an invariant's explanation, printed once per invariant."""
    names = Names.of(snapshot)
    verdicts = _verdicts(snapshot, judgement, colour)
    rows = []
    for i, t in enumerate(snapshot.get("threads") or []):
        p = judgement.predicted[i] if judgement.predicted and i < len(judgement.predicted) else None
        rows.append(
            [
                t.get("cpu", "?"),
                f"t{i}",
                _triple(names, t.get("kvm_hstate")),
                _triple(names, p.get("kvm_hstate", p) if p else None),
                verdicts[i],
            ]
        )
    rows += _core_rows(snapshot, judgement, colour)
    vcores = ", ".join(f"{n} = {a:#x}" for a, n in names.vcores.items()) or "none"
    title = f"stop {snapshot.get('stop', '?')}, variant {snapshot.get('variant', '?')}; vcores: {vcores}"
    out = [
        render_table(
            ["cpu", "t", "kernel\nptid/vcpu/vcore", "model\nptid/vcpu/vcore", "verdict"],
            rows,
            width=width,
            title=title,
            legend=LEGEND if legend else None,
        )
    ]
    out += [wrap(line, width, indent="    ") for line in _outcome_lines(snapshot, judgement, colour, explain)]
    return "\n".join(out)


# The checker's reasons (rust/core/src/invariants/mod.rs) when a stop does not hold what it
# names: nothing of it is judged, and its verdict is "not judged".
INCOMPLETE = (
    "a thread of the core is not in the snapshot",
    "a vcpu or vcore it points at is not in the snapshot",
)


def absent_cpus(snapshot: Mapping[str, Any]) -> list[int]:
    """The cpus of the cores ``snapshot`` lists that it lacks (the checker's own rule,
    rust/core/src/snapshot.rs ``absent_cpus``): a stop lacking one is not judged."""
    try:
        tpc = max(int(snapshot.get("threads_per_core") or 1), 1)
        cpus = {int(t["cpu"]) for t in snapshot.get("threads") or []}
    except (TypeError, ValueError, KeyError):
        return []
    cores = {c // tpc for c in cpus}
    return [c for core in sorted(cores) for c in range(core * tpc, (core + 1) * tpc) if c not in cpus]


def _off_core_lines(snapshot: Mapping[str, Any]) -> list[str]:
    """A vcore found with no thread of this core pointing at it (kvm.ko's vm_list, or a
    function argument): say so, since the thread rows then judge nothing of it."""
    names = Names.of(snapshot)
    on_core = {num((t.get("kvm_hstate") or {}).get("kvm_vcore")) for t in snapshot.get("threads") or []}
    states = VCORE_STATES.get(snapshot.get("variant", "modern"), VCORE_STATES["modern"])
    out = []
    for vc in snapshot.get("vcores") or []:
        addr = num(vc.get("addr")) or 0
        if addr in on_core:
            continue
        state = name_of(states, num(vc.get("vcore_state")))
        out.append(
            f"{names.vcore(addr)} {addr:#x} (vcore_state {state}) exists but no thread of this core "
            f"points at it (no PACA's kvm_hstate.kvm_vcore): only its vcore-wide invariants are judged"
        )
    return out


def _outcome_lines(snapshot: Mapping[str, Any], j: Judgement, colour: bool, explain: Any) -> list[str]:
    out = _off_core_lines(snapshot)
    if j.not_judged:
        by_why: dict[str, list[str]] = {}
        for number, why in j.not_judged:
            by_why.setdefault(why, []).append(str(number))
        which = ", ".join(f"{', '.join(numbers)} ({why})" for why, numbers in by_why.items())
        out.append(paint(f"not judged at this stop, for want of data: invariant {which}", "yellow", colour))
    if absent := absent_cpus(snapshot):
        out.append(
            paint(
                f"cpu {', '.join(map(str, absent))} of this stop's core(s) not in the snapshot (a reader "
                "leaves out a thread it could not read): what the vcore says of it cannot be judged",
                "yellow",
                colour,
            )
        )
    explained: set[int] = set()
    for v in j.violations:
        n = getattr(v, "invariant", None)
        out.append(paint(f"violation of invariant {n}: {getattr(v, 'message', v)}", "red", colour))
        if explain is not None and n is not None and n not in explained:
            explained.add(n)
            text = explain(n)
            if text:
                out += ["    " + line for line in text.splitlines()]
    if not j.violations:
        if not j.vcore_found:
            out.append(paint("not judged: no active vcore could be read at this stop", "yellow", colour))
        elif whys := sorted({why for _, why in j.not_judged if why in INCOMPLETE}):
            out.append(paint(f"not judged: {'; '.join(whys)}", "yellow", colour))
        else:
            out.append(paint(f"no invariant violated ({snapshot.get('variant', '?')})", "green", colour))
    return out


def judge(checker: Any, snapshot: Mapping[str, Any]) -> Judgement:
    """Run ``checker`` on ``snapshot``: the three-way outcome when the checker gives one."""
    outcome = getattr(checker, "check_outcome", None)
    if outcome is not None:
        o = outcome(dict(snapshot))
        violations = list(o.violations)
        not_judged = [(int(n), str(why)) for n, why in getattr(o, "not_judged", [])]
        found = bool(getattr(o, "vcore_found", True))
        checked = getattr(o, "verdict", None)
    else:
        checked = None
        violations, not_judged = list(checker.check(dict(snapshot))), []
        found = bool(snapshot.get("vcores"))
    predicted: list[dict[str, Any]] | None
    try:
        predicted = list(checker.predict(dict(snapshot)))
    except (ValueError, TypeError, NotImplementedError, AttributeError):
        predicted = None
    return Judgement(violations, predicted, not_judged, found, checked)


def violation_count(judgements: Sequence[Judgement]) -> int:
    return sum(len(j.violations) for j in judgements)
