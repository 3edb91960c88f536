"""Host programs the lab runs, named once."""

from __future__ import annotations

from pathlib import Path

# The ppc64el cross compiler for the guest programs (gcc-powerpc64le-linux-gnu).
CROSS_CC = "powerpc64le-linux-gnu-gcc"
# Debian's own qemu-system-ppc64 (qemu-system-ppc), without the lab's patches.
STOCK_QEMU = Path("/usr/bin/qemu-system-ppc64")
# Firmware (skiboot.lid) and other blobs of qemu-system-data.
QEMU_DATA_DIR = Path("/usr/share/qemu")
