"""The error a pyvcore command raises for a clean one-line failure.

``pyvcore.cli.main`` prints ``pyvcore COMMAND: MESSAGE`` on stderr and exits
with ``exit_code`` (2 by default: unusable input, could not run, not judged,
incomplete); anything else that escapes a command is an internal error
(exit 3).
"""

from __future__ import annotations


class PyvcoreError(Exception):
    """A failure the user can act on: one line, no traceback.

    ``message`` is the line to print; ``exit_code`` the process exit status
    (2 unless the command says otherwise).
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


__all__ = ["PyvcoreError"]
