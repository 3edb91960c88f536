"""Where the vcore scheduler's state is defined: the kernel functions pyvcore stops at.

One list for every user: `pv-watch` plants its breakpoints here, the lab's kernel
validation requires these symbols, `pyvcore diff` reports per point.

* ``MODULE_POINTS``: C functions of arch/powerpc/kvm/book3s_hv.c, in kvm-hv.ko (or
  in vmlinux when KVM-HV is built in). ELFv2 functions: a breakpoint goes at the
  local entry (``st_other``), where callers that share the TOC arrive.
* ``VMLINUX_POINTS``: labels of arch/powerpc/kvm/book3s_hv_rmhandlers.S, linked into
  vmlinux (real-mode code; no local entry).
"""

from __future__ import annotations

MODULE_POINTS: tuple[str, ...] = ("kvmppc_run_core", "kvmppc_start_thread")
VMLINUX_POINTS: tuple[str, ...] = (
    "kvmppc_hv_entry",
    "kvmppc_primary_no_guest",
    "kvm_do_nap",
    "kvmhv_commence_exit",
    "kvmhv_switch_to_host",
)
HOOK_POINTS: tuple[str, ...] = MODULE_POINTS + VMLINUX_POINTS
