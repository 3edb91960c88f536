"""pyvcore: model and live checker of the KVM Book3S HV (POWER8) vcore scheduler."""

from pyvcore._core import __version__

__all__ = ["__version__"]
