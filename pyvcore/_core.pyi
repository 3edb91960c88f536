__version__: str

# --- checker (rust/bindings/check.rs; wrapped by pyvcore.checker) ---------
from os import PathLike
from pathlib import Path
from typing import Any, Optional, Union, final

class SnapshotError(ValueError):
    """A snapshot or trace line that cannot be used."""

    key: str
    """Path of the offending key, e.g. "threads[1].kvm_hstate.ptid" ("" = the whole snapshot)."""
    line: Optional[int]
    """1-based trace line, or None for a single snapshot."""
    reason: str
    """The reason without the line/key prefix."""

ViolationTuple = tuple[int, str, dict[str, Any]]
"""(invariant number, one-line message, {field path: observed value})."""

class CoreChecker:
    """Stateful checker: keeps the previous snapshot for transition invariants."""

    def __init__(self, variant: Optional[str] = None, same_vm: bool = False) -> None: ...
    @property
    def variant(self) -> Optional[str]: ...
    @property
    def same_vm(self) -> bool:
        """Also check what never changes within one VM's life between snapshots."""
    def check_json(self, text: str, line: Optional[int] = None) -> list[ViolationTuple]:
        """Check one snapshot (JSON text). Raises SnapshotError."""
    def predict_json(self, text: str) -> list[dict[str, Any]]:
        """Per thread: {"thread", "cpu", "ptid", "kvm_vcpu", "kvm_vcore", "vcpu_id"} the model expects."""
    def reset(self) -> None: ...

def check_trace_file(
    path: Union[str, PathLike[str]], variant: Optional[str] = None, same_vm: bool = False
) -> dict[str, Any]:
    """Replay a JSONL trace file: {"snapshots": int, "violations": [{"line", "stop",
    "violation": ViolationTuple}], "error": None | {"line", "key", "message", "text"}}.
    Raises OSError if the file cannot be read."""

def check_trace_text(text: str, variant: Optional[str] = None, same_vm: bool = False) -> dict[str, Any]:
    """Replay a JSONL trace held in a string (same result as check_trace_file)."""

def invariant_descriptions() -> dict[int, str]:
    """{invariant number: one-line statement} for every invariant checked."""

# --- kernel image reader (rust/bindings/btf.rs; used by pyvcore.layout / the gdb plugin) ---

class ImageError(ValueError):
    """A kernel image that is not what it claims: not ELF, not ppc64, corrupt .BTF
    (cycles, absurd depths, overflowing sizes), a symbol or offset outside it."""

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

# --- model and explorer (rust/bindings/model.rs; wrapped by pyvcore.model) ---

class ModelError(ValueError):
    """An event not legal in the model's current state, or a bad model parameter."""

    event: str
    """The event in its text form (e.g. "enter(thread=1)")."""
    reason: str
    """Why it is not legal."""

class CoreModel:
    """One vcore on one physical core, driven event by event (pyvcore.Vcore wraps it)."""

    def __init__(self, variant: str, threads: int, cpu_base: int = 0) -> None:
        """Raises ValueError for an unknown variant, ModelError for bad threads/cpu_base."""
    @property
    def variant(self) -> str: ...
    @property
    def threads(self) -> int: ...
    @property
    def cpu_base(self) -> int: ...
    def apply(self, event: str) -> str:
        """Apply one event (text form); JSON {"event", "stop", "violations": [{"invariant",
        "message", "fields"}], "doorbell_delivered", "ceded_to_nap"}. Raises ModelError."""
    def snapshot_json(self) -> str:
        """The contract-2 snapshot of the current state."""
    def detail_json(self) -> str:
        """Model-only detail: {"threads": [{"thread", "phase", "label", "ipi", "running",
        "kvm_vcpu_id"}], "vcpus": [{"vcpu_id", "prodded", "trap", "started", "cedes"}],
        "vcore": {"entered", "exited", "runnable", "tb_offset_applied", "lock_held"} | None,
        "mmu", "switch_in", "switch_out"}."""
    def enabled(self) -> list[str]:
        """Every event legal now, in text form."""
    def trace(self) -> list[str]: ...
    def copy(self) -> CoreModel: ...

def explore(
    variant: str,
    threads: int,
    vcpus: Optional[list[int]] = None,
    ignore: Optional[list[int]] = None,
    max_states: Optional[int] = None,
    cedes_per_vcpu: Optional[int] = None,
    max_cedes: Optional[int] = None,
    max_prods: Optional[int] = None,
    check_invariants: bool = True,
    symmetry: bool = True,
    exit_request: bool = False,
    fault: Optional[str] = None,
) -> str:
    """Explore one vcore run; JSON {"variant", "threads", "vcpus", "states", "transitions",
    "seconds", "counterexample", "violated", "violation", "complete", "finished_runs",
    "depth", "ignored", "bounds"}. Runs without the GIL. Raises ModelError/ValueError."""

def event_forms() -> list[str]:
    """The text form of every event, e.g. "enter(thread=T)"."""

def fault_names() -> list[str]:
    """The deliberate faults explore(fault=...) accepts."""
