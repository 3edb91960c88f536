"""pyvcore: model and live checker of the KVM Book3S HV (POWER8) vcore scheduler."""

from pyvcore._core import EventLogError, ImageError, __version__
from pyvcore.checker import Checker, SnapshotError, TraceReport, Violation, check_trace
from pyvcore.explorer import ExploreResult, explore
from pyvcore.model import InvariantError, ModelError, Step, Vcore

__all__ = [
    "Checker",
    "EventLogError",
    "ExploreResult",
    "ImageError",
    "InvariantError",
    "ModelError",
    "SnapshotError",
    "Step",
    "TraceReport",
    "Vcore",
    "Violation",
    "__version__",
    "check_trace",
    "explore",
]
