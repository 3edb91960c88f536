__version__: str

# --- checker (rust/bindings/check.rs; wrapped by pyvcore.checker) ---------
from os import PathLike
from typing import Any, Dict, List, Optional, Tuple, Union

class SnapshotError(ValueError):
    """A snapshot or trace line that cannot be used."""

    key: str
    """Path of the offending key, e.g. "threads[1].kvm_hstate.ptid" ("" = the whole snapshot)."""
    line: Optional[int]
    """1-based trace line, or None for a single snapshot."""
    reason: str
    """The reason without the line/key prefix."""

ViolationTuple = Tuple[int, str, Dict[str, Any]]
"""(invariant number, one-line message, {field path: observed value})."""

class CoreChecker:
    """Stateful checker: keeps the previous snapshot for transition invariants."""

    def __init__(self, variant: Optional[str] = None) -> None: ...
    @property
    def variant(self) -> Optional[str]: ...
    def check_json(self, text: str, line: Optional[int] = None) -> List[ViolationTuple]:
        """Check one snapshot (JSON text). Raises SnapshotError."""
    def predict_json(self, text: str) -> List[Dict[str, Any]]:
        """Per thread: {"thread", "cpu", "ptid", "kvm_vcpu", "kvm_vcore", "vcpu_id"} the model expects."""
    def reset(self) -> None: ...

def check_trace_file(path: Union[str, PathLike[str]], variant: Optional[str] = None) -> Dict[str, Any]:
    """Replay a JSONL trace file: {"snapshots": int, "violations": [{"line", "stop",
    "violation": ViolationTuple}], "error": None | {"line", "key", "message", "text"}}.
    Raises OSError if the file cannot be read."""

def check_trace_text(text: str, variant: Optional[str] = None) -> Dict[str, Any]:
    """Replay a JSONL trace held in a string (same result as check_trace_file)."""

def invariant_descriptions() -> Dict[int, str]:
    """{invariant number: one-line statement} for every invariant checked."""
