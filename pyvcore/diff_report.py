"""`pyvcore diff --report DIR`: one folder a reviewer can open.

Written there: ``table.txt`` (what the command printed), ``diff.json`` (the
``--json`` document), ``trace.jsonl`` (the pv-watch trace), ``timeline.html``
and ``timeline.json`` (the trace drawn as lanes: a page and Perfetto's
trace-event JSON), ``console.log`` (the guest console: boot, the VMM's reports)
and ``README.txt`` saying what each file is.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

FILES = {
    "table.txt": "the per-stop-kind table and verdict, as printed",
    "diff.json": "the same as `pyvcore diff --json` (addresses as hex strings)",
    "trace.jsonl": "the pv-watch trace, one snapshot per stop (re-check: pyvcore check trace.jsonl)",
    "timeline.html": "the trace as lanes, one page, no network (open in a browser)",
    "timeline.json": "the same lanes in trace-event JSON (open in ui.perfetto.dev or chrome://tracing)",
    "console.log": "the lab's console: kernel boot, module loads, the guest's PYVCORE REPORT lines",
}


def write_report(directory: Path, result: Any, table: str) -> list[Path]:
    """Write the report files of a finished ``DiffResult`` into ``directory``; returns their paths.

    A timeline that cannot be drawn (no stop was read) is left out and named in
    README.txt rather than failing the report.
    """
    from pyvcore.timeline import TimelineError, from_snapshots, write

    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    notes: list[str] = []

    def put(name: str, text: str) -> None:
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)

    put("table.txt", table + "\n")
    put("diff.json", json.dumps(result.to_dict(), indent=1) + "\n")
    run = result.run
    trace = directory / "trace.jsonl"
    if run is not None and run.trace is not None and Path(run.trace).exists():
        if Path(run.trace).resolve() != trace.resolve():
            shutil.copyfile(run.trace, trace)
        written.append(trace)
    elif run is not None:
        put("trace.jsonl", "".join(json.dumps(r) + "\n" for r in run.records))
    records = list(enumerate(run.records, 1)) if run is not None else []
    try:
        from pyvcore.lab.inputs import kernel_of

        release = kernel_of(run.status)["release"] if run else None
        title = f"{run.scenario} ({run.qemu} QEMU{', ' + release if release else ''})" if run else "diff"
        tl = from_snapshots(title, records, result.summary.variant)
        written += [write(tl, directory / "timeline.html"), write(tl, directory / "timeline.json")]
    except TimelineError as exc:
        notes.append(f"no timeline: {exc}")
    put("console.log", run.console if run is not None else "")
    lines = ["pyvcore diff report"]
    if run is not None:
        from pyvcore.lab.inputs import kernel_line

        lines.append(f"scenario {run.scenario}, {run.qemu} QEMU; {kernel_line(run.status)}")
    lines += [f"verdict: {result.verdict}", ""]
    lines += [f"{name:<14} {what}" for name, what in FILES.items() if directory.joinpath(name).exists()]
    put("README.txt", "\n".join(lines + notes) + "\n")
    return written
