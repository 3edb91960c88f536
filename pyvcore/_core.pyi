__version__: str

# --- checker (rust/python/src/check.rs; wrapped by pyvcore.checker) ---------
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any, Callable, Optional, Union, final

class SnapshotError(ValueError):
    """A snapshot or trace line that cannot be used.

    Named ``pyvcore.SnapshotError`` (``__module__`` "pyvcore"), exported as that."""

    key: str
    """Path of the offending key, e.g. "threads[1].kvm_hstate.ptid" ("" = the whole snapshot)."""
    line: Optional[int]
    """1-based trace line, or None for a single snapshot."""
    column: Optional[int]
    """1-based column within the line, or None."""
    reason: str
    """The reason without the place and key prefix."""
    detail: str
    """The key and the reason without the place: ``key `K`: reason`` (the reason alone for
    the snapshot as a whole); ``pyvcore.errors.at(FILE, line, column)`` is the place."""

class EventLogError(ValueError):
    """An event-log line that cannot be used; str() is ``LINE:COLUMN: reason``.

    Named ``pyvcore.EventLogError`` (``__module__`` "pyvcore")."""

    line: int
    """1-based line of the log."""
    column: Optional[int]
    """1-based column within the line (a line that is not JSON), or None."""
    reason: str
    """Why the line cannot be used, without the place."""

@final
class InvariantInfo:
    """One row of the invariant table."""

    @property
    def number(self) -> int: ...
    @property
    def title(self) -> str: ...
    @property
    def statement(self) -> str: ...
    @property
    def window(self) -> str:
        """When it is judged."""
    @property
    def source(self) -> str:
        """Kernel (or QEMU) file, function and commit."""
    @property
    def meaning(self) -> str:
        """What a violation usually means, and where to look."""
    @property
    def needs(self) -> list[str]:
        """Snapshot fields it needs (empty: always judged)."""
    @property
    def kind(self) -> str:
        """ "snapshot", "step", "history" or "liveness"."""

def invariants() -> list[InvariantInfo]:
    """Every invariant pyvcore can report, by number."""

@final
class Violation:
    """One broken invariant."""

    def __new__(
        cls,
        invariant: int,
        message: str,
        fields: Optional[dict[str, Any]] = None,
        line: Optional[int] = None,
        stop: Optional[str] = None,
    ) -> Violation: ...
    @property
    def invariant(self) -> int: ...
    @property
    def message(self) -> str: ...
    @property
    def fields(self) -> dict[str, Any]:
        """A copy: JSON path -> observed value (64-bit kernel values as hex strings)."""
    @property
    def line(self) -> Optional[int]: ...
    @property
    def stop(self) -> Optional[str]: ...
    def to_dict(self) -> dict[str, Any]: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class CheckOutcome:
    """What checking one snapshot judged."""

    @property
    def violations(self) -> list[Violation]: ...
    @property
    def judged(self) -> list[int]: ...
    @property
    def not_judged(self) -> list[tuple[int, str]]:
        """(invariant, reason) for each invariant whose data the stop lacked."""
    @property
    def not_applicable(self) -> list[int]:
        """Invariants that do not apply to the snapshot's variant (16 on modern)."""
    @property
    def vcore_found(self) -> bool: ...
    @property
    def verdict(self) -> str:
        """ "clean", "violations" or "not judged"."""
    @property
    def same_run(self) -> int:
        """Vcores judged against the previous stop as one run (same ``vcores[].seq``)."""
    @property
    def host_tb(self) -> Optional[int]:
        """The stop's ``tb`` on the host's timebase (None: no ``tb``, or not known)."""
    @property
    def host_tb_unknown(self) -> Optional[str]:
        """Why the stop's ``tb`` cannot be put on the host's timebase, else None."""

_Snapshot = Union[Mapping[str, Any], str, bytes]

@final
class CoreChecker:
    """Stateful checker: keeps the previous snapshot for the step invariants."""

    def __new__(cls, variant: Optional[str] = None, same_vm: bool = False) -> CoreChecker: ...
    @property
    def variant(self) -> Optional[str]: ...
    @property
    def same_vm(self) -> bool:
        """Also check what never changes within one VM's life between snapshots."""
    def check_outcome(self, snapshot: _Snapshot, line: Optional[int] = None) -> CheckOutcome:
        """Check one snapshot (dict or JSON text). Raises SnapshotError, TypeError."""
    def predict(self, snapshot: _Snapshot) -> list[dict[str, Any]]:
        """Per thread: {"thread", "cpu", "ptid", "kvm_vcpu", "kvm_vcore", "vcpu_id"} the model expects."""
    def reset(self) -> None: ...

@final
class CoreTraceReport:
    """The result of replaying a trace."""

    @property
    def snapshots(self) -> int: ...
    @property
    def violations(self) -> list[Violation]:
        """The first `keep` violations."""
    @property
    def total_violations(self) -> int: ...
    @property
    def groups(self) -> list[tuple[int, int, Violation]]:
        """(invariant, count, first violation), by invariant number."""
    @property
    def not_judged(self) -> int: ...
    @property
    def first_not_judged(self) -> Optional[int]: ...
    @property
    def unread(self) -> int:
        """Stops pv-watch could not read (``{"stop": LABEL, "error": MESSAGE}`` lines)."""
    @property
    def first_unread(self) -> Optional[tuple[int, str, str]]:
        """(line, stop label, pv-watch's error) of the first of them."""
    @property
    def error(self) -> Optional[tuple[Optional[int], Optional[int], str, str, str]]:
        """(line, column, key, reason, detail) of the unusable line; detail is ``key `K`: reason``
        without the place (``pyvcore.errors.at(FILE, line, column)``)."""
    @property
    def exit_code(self) -> int: ...
    @property
    def verdict(self) -> str: ...

def check_trace_file(
    path: Union[str, PathLike[str]],
    variant: Optional[str] = None,
    same_vm: bool = False,
    max_line_bytes: int = ...,
    keep: int = 1000,
) -> CoreTraceReport:
    """Replay a JSONL trace file, streamed. Raises OSError if it cannot be opened."""

def check_trace_stdin(
    variant: Optional[str] = None, same_vm: bool = False, max_line_bytes: int = ..., keep: int = 1000
) -> CoreTraceReport:
    """Replay a JSONL trace from file descriptor 0, streamed."""

def check_trace_text(
    text: str,
    variant: Optional[str] = None,
    same_vm: bool = False,
    max_line_bytes: int = ...,
    keep: int = 1000,
) -> CoreTraceReport:
    """Replay a JSONL trace held in a string."""

# --- kernel image reader (rust/bindings/btf.rs; used by pyvcore.layout / the gdb plugin) ---

class ImageError(ValueError):
    """A kernel image that is not what it claims: not ELF, not ppc64, corrupt .BTF
    (cycles, absurd depths, overflowing sizes), a symbol or offset outside it.

    Named ``pyvcore.ImageError`` (``__module__`` "pyvcore"), exported as that."""

@final
class Symbol:
    """One ELF symbol of a KernelImage."""

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> int:
        """st_value: an address in vmlinux, an offset into `section` in a module."""
    @property
    def size(self) -> int:
        """st_size in bytes (0 for assembly labels)."""
    @property
    def local_entry(self) -> int:
        """ELFv2 local entry offset in bytes from st_other (0 when none)."""
    @property
    def section(self) -> str: ...
    @property
    def local(self) -> bool: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...

@final
class KernelImage:
    """A ppc64 kernel ELF: symbols from its symtab, struct layouts from its .BTF.

    Raises OSError if the file cannot be read, ImageError if it is not a ppc64 ELF.
    """

    def __new__(cls, path: Union[str, PathLike[str]]) -> KernelImage: ...
    @property
    def path(self) -> Path: ...
    @property
    def machine(self) -> str:
        """ELF architecture name ("PowerPc64")."""
    @property
    def little_endian(self) -> bool: ...
    @property
    def has_btf(self) -> bool: ...
    @property
    def btf_error(self) -> Optional[str]:
        """Why the .BTF section could not be read, or None."""
    @property
    def relocatable(self) -> bool:
        """True for a module (ET_REL): symbols are section-relative."""
    @property
    def modinfo(self) -> list[tuple[str, str]]:
        """.modinfo key=value pairs of a module."""
    @property
    def section_names(self) -> list[str]: ...
    @property
    def has_debug_info(self) -> bool:
        """True when the image carries DWARF (.debug_info)."""
    @property
    def banner(self) -> Optional[str]:
        """linux_banner ("Linux version ...")."""
    @property
    def build_id(self) -> Optional[str]:
        """GNU build-id note in lowercase hex, or None (same in a kernel and its debug file)."""
    @property
    def release(self) -> Optional[str]:
        """Kernel release, e.g. "6.12.95+deb12-powerpc64le"."""
    def symbol(self, name: str) -> Optional[Symbol]: ...
    def address(self, name: str) -> Optional[int]: ...
    def file_offset(self, symbol: str, offset: int = 0, length: int = 4) -> int:
        """File offset of `length` bytes at symbol+offset; ImageError outside it."""
    def relocations_in(self, section: str, start: int, length: int) -> list[int]:
        """Relocation targets touching [start, start+length) of a module section."""
    def symbol_info(self, name: str) -> Optional[dict[str, Any]]:
        """{"address", "size", "section", "local", "local_entry"} or None."""
    def struct_layout(self, name: str) -> dict[str, Any]:
        """{"name", "size", "is_union", "members": [{"name", "offset", "bit_offset",
        "bitfield_size", "size", "type", "kind", "signed", "type_id", "array_len",
        "elem_size", "inner_kind"}]}; KeyError if unknown, ImageError without BTF."""
    def layout_by_id(self, type_id: int, module: Optional[str] = None) -> dict[str, Any]:
        """Layout of an (anonymous) struct/union by BTF id."""
    def has_type(self, name: str) -> bool: ...
    def add_module_btf(self, name: str, elf: bytes) -> bool:
        """Add a module's split BTF (decompressed .ko bytes); False if it has none."""

def module_symbols(elf: bytes) -> dict[str, tuple[str, int]]:
    """Symbols of a (decompressed) module ELF: {name: (section, offset)}."""

# --- model and explorer (rust/python/src/model.rs; wrapped by pyvcore.model, pyvcore.explorer) ---

class ModelError(ValueError):
    """An event not legal in the model's current state, or a bad model parameter.

    Named ``pyvcore.ModelError`` (``__module__`` "pyvcore"), exported as that."""

    event: str
    """The event in its text form (e.g. "enter(thread=1)")."""
    reason: str
    """Why it is not legal."""

MAX_VCPU_ID: int
"""vcpu ids are below this (KVM_MAX_VCPU_IDS of a POWER8 host)."""

@final
class Event:
    """One model event: Event("enter", thread=1), Event("exit", 1, trap=0xc00)."""

    def __new__(cls, name: str, *args: int, **kwargs: int) -> Event:
        """Raises ModelError (a ValueError) for an unknown name or bad arguments."""
    @staticmethod
    def parse(text: str) -> Event:
        """The text form, e.g. "doorbell(vcpu=1, thread=2)"; ModelError if it is none."""
    @property
    def name(self) -> str: ...
    @property
    def label(self) -> str:
        """The kernel function or label the event ends at (a snapshot's "stop")."""
    @property
    def args(self) -> dict[str, int]: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __ne__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Step:
    """What one applied event did."""

    @property
    def event(self) -> Event: ...
    @property
    def stop(self) -> str: ...
    @property
    def violations(self) -> list[Violation]:
        """Each invariant the step broke (stop = the event's label)."""
    @property
    def doorbell_taken(self) -> Optional[int]:
        """take_doorbell: the vcpu id that took the doorbell."""
    @property
    def ceded_to_nap(self) -> bool: ...

@final
class CoreModel:
    """One vcore on one physical core, driven event by event (pyvcore.Vcore wraps it)."""

    def __new__(cls, variant: str, threads: int, cpu_base: int = 0) -> CoreModel:
        """Raises ValueError for an unknown variant or threads not 1, 2, 4, 8; ModelError for a bad cpu_base."""
    @property
    def variant(self) -> str: ...
    @property
    def threads(self) -> int: ...
    @property
    def cpu_base(self) -> int: ...
    def apply(self, event: Union[Event, str]) -> Step:
        """Apply one event. Raises ModelError (an illegal event, or text that is no event)."""
    def snapshot(self) -> dict[str, Any]:
        """The snapshot of the current state."""
    def snapshot_json(self) -> str:
        """The snapshot as one line of JSON."""
    def vcore(self) -> Optional[dict[str, Any]]:
        """The vcore's snapshot fields plus vcore_state_name, runnable, dpdes_saved."""
    def thread_detail(self) -> list[dict[str, Any]]:
        """Per thread: thread, phase, label, ipi, running, kvm_vcpu_id, doorbell."""
    def vcpu_detail(self) -> dict[int, dict[str, int]]:
        """Per vcpu id: prodded, trap, started, cedes."""
    def enabled(self) -> list[Event]:
        """Every event legal now."""
    def trace(self) -> list[Event]: ...
    def copy(self) -> CoreModel: ...

@final
class ExploreProgress:
    """Where a running exploration is."""

    @property
    def states(self) -> int: ...
    @property
    def transitions(self) -> int: ...
    @property
    def depth(self) -> int: ...
    @property
    def frontier(self) -> int: ...
    @property
    def seconds(self) -> float: ...
    @property
    def memory(self) -> int:
        """Estimated bytes in use."""

@final
class ExploreReport:
    """The outcome of explore()."""

    @property
    def variant(self) -> str: ...
    @property
    def threads(self) -> int: ...
    @property
    def vcpus(self) -> list[int]: ...
    @property
    def states(self) -> int: ...
    @property
    def transitions(self) -> int: ...
    @property
    def seconds(self) -> float: ...
    @property
    def counterexample(self) -> Optional[list[Event]]: ...
    @property
    def violation(self) -> Optional[Violation]: ...
    @property
    def incomplete(self) -> Optional[str]:
        """Why the search ended early; None when it saw every state."""
    @property
    def finished_runs(self) -> int: ...
    @property
    def depth(self) -> int: ...
    @property
    def ignored(self) -> list[int]: ...
    @property
    def bounds(self) -> str: ...
    @property
    def peak_memory(self) -> int: ...
    @property
    def fault(self) -> Optional[str]: ...
    @property
    def without_fault(self) -> Optional[tuple[int, int]]:
        """With a fault and a counterexample: (invariant, event number from 1) that the
        same events break with the fault left out, when they do (the variant's own bug is
        shorter than the fault's); None otherwise."""

@final
class FaultInfo:
    """A deliberate fault: name, the public fix it undoes, the variants it applies to."""

    @property
    def name(self) -> str: ...
    @property
    def fixed_by(self) -> Optional[str]:
        """The commit that fixed the real bug ("Linux 7b444c6710c6"), None when none is known."""
    @property
    def description(self) -> str:
        """ "the bug fixed by COMMIT: RULE", or "breaks the rule in PLACE: RULE"."""
    @property
    def variants(self) -> list[str]: ...
    @property
    def not_modelled(self) -> dict[str, str]:
        """Variant -> why the fault is not offered for it (explore raises ValueError with it)."""

def explore(
    variant: str,
    threads: int,
    vcpus: Optional[list[int]] = None,
    *,
    ignore: Optional[list[int]] = None,
    max_states: Optional[int] = None,
    max_memory: Optional[int] = None,
    cedes_per_vcpu: Optional[int] = None,
    max_cedes: Optional[int] = None,
    max_prods: Optional[int] = None,
    max_doorbells: Optional[int] = None,
    check_invariants: bool = True,
    symmetry: bool = True,
    exit_request: bool = False,
    fault: Optional[str] = None,
    workers: Optional[int] = None,
    partial_order: bool = False,
    subsumption: bool = True,
    forget_dead: bool = True,
    reduction: bool = True,
    progress: Optional[Callable[[ExploreProgress], object]] = None,
) -> ExploreReport:
    """Explore one vcore run without the GIL; progress(p) between batches; Ctrl-C and
    exceptions from progress stop the search and are raised. Raises ModelError/ValueError."""

def event_forms() -> list[str]:
    """The text form of every event, e.g. "enter(thread=T)"."""

def event_labels() -> list[tuple[str, str]]:
    """(event name, kernel function or label it models)."""

def faults() -> list[FaultInfo]:
    """The deliberate faults explore(fault=...) accepts."""

def variants() -> list[str]:
    """The model variants."""

def vcore_state_names(variant: str) -> list[tuple[int, str]]:
    """(vcore_state value, kernel name) of a variant."""

def kernel_names(field: str, variant: str) -> list[tuple[int, str]]:
    """(value, kernel name) of a numbered field (in_guest, hwthread_state, napping,
    vcpu_state) in a variant; ValueError for another field."""

def thread_counts() -> list[int]:
    """Threads per core the model accepts: 1, 2, 4, 8."""

# --- continuous trace (pyvcore trace): the event log replayed through the shadow
def replay_events(text: str) -> str:
    """Replay a ``pyvcore-events`` log (header line first) through the shadow and its
    checks; JSON summary {"stats", "violations", "edges", "bounds", ...}. Runs without
    the GIL. EventLogError (a ValueError: ``.line``, ``.column``, ``.reason``) on an unusable
    line."""

def is_event_log(first_line: str) -> bool:
    """Whether ``first_line`` is a ``pyvcore-events`` header."""

@final
class EventLogPoint:
    """The shadow at one point of an event log (:func:`replay_events_at`)."""

    @property
    def seq(self) -> int | None:
        """The last store applied; None before the first store."""
    @property
    def tb(self) -> int:
        """That store's timebase (0 before the first)."""
    @property
    def reached(self) -> bool:
        """False: the log ended before the point (the shadow is at its end)."""
    @property
    def events(self) -> int:
        """Events (field changes) applied up to the point."""
    @property
    def total_violations(self) -> int:
        """Violations found up to the point (``violations`` keeps the first 200)."""
    @property
    def snapshot(self) -> dict[str, Any]:
        """The shadow's state as a snapshot dict (the shape ``pv-watch --log`` writes)."""
    @property
    def violations(self) -> list[dict[str, Any]]:
        """The violations up to the point: invariant, message, fields, seq, tb, cpu, pc,
        field, and ``events``, the events that led to it."""
    @property
    def registers(self) -> list[tuple[int | None, int | None]]:
        """Per thread (thread 0 first), (LPIDR, SDR1) as it last read or wrote them (None:
        never seen); ``snapshot`` has them only while the core is in KVM (and fresh)."""

def replay_events_at(text: str, *, seq: int | None = None, violation: int | None = None) -> EventLogPoint:
    """Replay a ``pyvcore-events`` log up to a point: after the store ``seq`` (every store up
    to and including it) or after the store that made the ``violation``-th violation (from
    1); neither: the whole log. Runs without the GIL. EventLogError (``.line``, ``.column``,
    ``.reason``) on an unusable line; ValueError for both, or ``violation=0``. Past the log's end:
    ``reached`` is False."""
