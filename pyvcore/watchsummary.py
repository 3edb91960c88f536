"""What pv-watch saw, summarised whatever ended it (gdb-free, unit-tested).

Per stop it records the label (``kvm_do_nap@cpu0``), whether the stop was judged
(the active vcore could be read; a stop without one is "not judged", never
"clean"), and the violations.  ``render(why)`` gives: the totals, the violations
grouped by invariant (count, first stop, first message), and a per-label table
with the stops on each cpu, like ``perf stat`` counts events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyvcore.render import render_table, wrap


@dataclass
class InvariantTally:
    count: int = 0
    first_stop: int = 0
    first_label: str = ""
    first_message: str = ""


@dataclass
class WatchTally:
    """Counts of one pv-watch run."""

    stops: int = 0
    judged: int = 0
    not_judged: int = 0
    errors: int = 0
    violations: int = 0
    by_invariant: dict[int, InvariantTally] = field(default_factory=dict)
    # label (without @cpuN) -> cpu -> [stops, violations]
    per_label: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def record(
        self,
        stop: str,
        violations: list[dict[str, Any]],
        *,
        judged: bool = True,
        error: str | None = None,
    ) -> None:
        """One stop: its label, the violations found (``{"invariant", "message"}``)."""
        self.stops += 1
        label, _, cpu = stop.partition("@")
        cell = self.per_label.setdefault(label, {}).setdefault(cpu or "?", [0, 0])
        cell[0] += 1
        if error is not None:
            self.errors += 1
            return
        if not judged:
            self.not_judged += 1
            return
        self.judged += 1
        cell[1] += len(violations)
        self.violations += len(violations)
        for v in violations:
            n = int(v.get("invariant") or 0)
            t = self.by_invariant.get(n)
            if t is None:
                t = self.by_invariant[n] = InvariantTally(0, self.stops, stop, str(v.get("message", "")))
            t.count += 1

    def line(self) -> str:
        """The totals in one line."""
        return (
            f"{self.stops} stop{'' if self.stops == 1 else 's'}: {self.judged} judged, {self.not_judged} not judged (no vcore read), "
            f"{self.errors} unreadable; {self.violations} violations"
        )

    def render(self, why: str, *, width: int | None = None) -> str:
        """The full summary: totals with what ended the watch, violations by invariant,
        stops per label and cpu."""
        out = [wrap(f"pv-watch: off: {why}; {self.line()}", width, indent="  ")]
        if self.by_invariant:
            out.append("violations by invariant (`pyvcore invariants N` explains one):")
            titles = _titles()
            for n, t in sorted(self.by_invariant.items()):
                title = f" ({titles[n]})" if n in titles else ""
                out.append(
                    wrap(
                        f"  invariant {n}{title}: {t.count}x, first at stop {t.first_stop} ({t.first_label}): "
                        f"{t.first_message}",
                        width,
                        indent="    ",
                    )
                )
        if self.per_label:
            cpus = sorted({c for cells in self.per_label.values() for c in cells}, key=_cpu_key)
            rows = []
            for label, cells in sorted(
                self.per_label.items(), key=lambda kv: -sum(c[0] for c in kv[1].values())
            ):
                rows.append(
                    [
                        label,
                        sum(c[0] for c in cells.values()),
                        " ".join(str(cells.get(c, [0, 0])[0]) for c in cpus),
                        sum(c[1] for c in cells.values()),
                    ]
                )
            head = "stops on cpu " + " ".join(c.removeprefix("cpu") for c in cpus)
            out.append(render_table(["stop label", "stops", head, "violations"], rows, width=width))
        return "\n".join(out)


def _titles() -> dict[int, str]:
    """Invariant number -> its title in the invariant table (empty if unavailable)."""
    try:
        from pyvcore import _core

        return {int(i.number): str(i.title) for i in _core.invariants()}
    except (ImportError, AttributeError):
        return {}


def _cpu_key(cpu: str) -> tuple[int, str]:
    digits = cpu.removeprefix("cpu")
    return (int(digits), cpu) if digits.isdigit() else (1 << 30, cpu)
