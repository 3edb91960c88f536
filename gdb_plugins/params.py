"""gdb parameters of the pv-* commands."""

from __future__ import annotations

import gdb  # type: ignore[import-not-found]


class MemoryMode(gdb.Parameter):
    """How pv-* commands read kernel memory: auto (default) reads through a
    thread in host mode and falls back to QEMU's physical-memory mode
    (Qqemu.PhyMemMode) when no thread can: linear-map addresses directly,
    vmalloc/module addresses through the kernel's page table; physical always
    reads the linear map physically (useful to check that path)."""

    set_doc = "Set how pv-* commands read kernel memory (auto|physical)."
    show_doc = "Show how pv-* commands read kernel memory."

    def __init__(self) -> None:
        super().__init__("pv-memory", gdb.COMMAND_DATA, gdb.PARAM_ENUM, ["auto", "physical"])
        self.value = "auto"

    def get_show_string(self, svalue: str) -> str:
        return f"pv-* commands read kernel memory in {svalue} mode"


_memory_mode: MemoryMode | None = None


def install() -> None:
    global _memory_mode
    if _memory_mode is None:
        _memory_mode = MemoryMode()


def memory_mode() -> str:
    return str(_memory_mode.value) if _memory_mode is not None else "auto"
