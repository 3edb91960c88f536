"""Whether a variant given for a whole input fits it: a snapshot trace's
stops (the layout of their vcores) or a `pyvcore trace` event log (the
variant its header names)."""

from __future__ import annotations

import json
from typing import Any, Optional


def layout_problem(snapshot: dict[str, Any], variant: Optional[str]) -> Optional[str]:
    """Why ``snapshot`` cannot be judged as ``variant`` given for a whole trace, or None.

    The modern struct kvmppc_vcore has ``entry_exit_map`` (VCORE_RUNNING 4);
    seed and prepatch have ``entry_exit_count`` (VCORE_RUNNING 3), so a stop of
    the other layout would have its vcore_state misread.  The same rule and
    words as ``pyvcore check --variant`` (``layout_fits`` in
    rust/core/src/snapshot.rs).  ``pyvcore.Checker`` itself judges such a stop as
    told (``pyvcore diff --variant prepatch`` compares the prepatch model's
    placement with a modern kernel)."""
    if variant is None:
        return None
    modern = variant == "modern"
    for k, vc in enumerate(snapshot.get("vcores") or []):
        if not isinstance(vc, dict):
            continue
        has_map, has_count = "entry_exit_map" in vc, "entry_exit_count" in vc
        if has_map and not has_count and not modern:
            key, other, running, own = "entry_exit_map", "modern", 4, ("seed", 3)
        elif has_count and not has_map and modern:
            key, other, running, own = "entry_exit_count", "seed", 3, ("modern", 4)
        else:
            continue
        return (
            f"key `vcores[{k}].{key}`: this vcore has the {other} layout ({key}, VCORE_RUNNING = {running}), "
            f"but the variant given, {variant}, reads the {own[0]} layout (VCORE_RUNNING = {own[1]}): its "
            f"vcore_state would be misread; check it without a variant (each stop's own) or as {other}"
        )
    return None


def event_log_variant(path: str) -> Optional[str]:
    """The ``variant`` an event log's header line names (None if it names none)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            header = json.loads(f.readline(64 << 10))
    except (OSError, ValueError):
        return None
    variant = header.get("variant") if isinstance(header, dict) else None
    return variant if isinstance(variant, str) else None
