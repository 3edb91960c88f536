"""``pyvcore mutants [--list] [--run NAME|all] [--json]``: the kill table."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from pyvcore import cliargs
from pyvcore.diff_cli import Progress
from pyvcore.errors import PyvcoreError
from pyvcore.mutants.catalogue import MUTANTS, Mutant, by_name
from pyvcore.mutants.run import MODES, Outcome, Plan, kill_rate, run_plan, to_json
from pyvcore.render import render_table

DEFAULT_STOPS = 60
# A commit id the catalogue could not confirm in a public copy (Commit.verified false).
UNCONFIRMED = "commit?: not confirmed in a public copy (commit_evidence in --list --json says what was found)"
# A non-terminal run prints the watch's stop count at most this often (s).
TICK_EVERY = 5.0


def _list(as_json: bool) -> int:
    if as_json:
        print(json.dumps([m.to_json() for m in MUTANTS], indent=2))
        return 0
    rows = [
        [
            m.name,
            m.klass,
            m.commit + ("" if m.cites.verified else "?"),
            f"{m.obj}:{m.symbol}+{m.offset:#x}",
            f"{m.expected}->{m.replacement}",
            ",".join(m.scenarios),
        ]
        for m in MUTANTS
    ]
    print(
        render_table(
            ["mutant", "class", "commit", "where", "bytes", "scenarios"],
            rows,
            title=f"{len(MUTANTS)} mutants of Debian 6.12.95 (ppc64le)",
            legend=f"{UNCONFIRMED}; ptid-absolute is equivalent in the lab (its argument: --list --json)",
        )
    )
    return 0


def _table(outcomes: list[Outcome]) -> str:
    rows = [
        [
            o.mutant + (" (equivalent)" if o.equivalent else ""),
            o.klass,
            _commit(o),
            o.scenario + (" (from boot)" if o.from_boot else ""),
            f"{o.sampled}: {o.sampled_by}",
            f"{o.continuous}: {o.continuous_by}",
            f"{o.seconds:.0f}s",
        ]
        for o in outcomes
    ]
    killed, total = kill_rate(outcomes)
    rate = f"kill rate {killed}/{total}" + (f" ({100 * killed / total:.0f}%)" if total else "")
    if any(_commit(o).endswith("?") for o in outcomes):
        rate += f"; {UNCONFIRMED}"
    return render_table(
        ["mutant", "class", "commit", "scenario", "sampled (invariant, stop)", "continuous", "time"],
        rows,
        legend=rate,
    )


def _commit(o: Outcome) -> str:
    """The outcome's commit id, marked ``?`` when the catalogue could not confirm it."""
    known = {m.name: m for m in MUTANTS}.get(o.mutant)
    return o.commit + ("?" if known is not None and not known.cites.verified else "")


def keep_records(o: Outcome, keep: Path) -> None:
    """Copy a run's sampled trace and event log to ``keep`` (named mutant-scenario-mode)
    and point the outcome at the copies."""
    stem = f"{o.mutant.strip('()')}-{o.scenario}" + ("-from-boot" if o.from_boot else "")
    for attr, suffix in (("sampled_trace", "sampled.jsonl"), ("continuous_log", "events.jsonl")):
        src = getattr(o, attr)
        if src and Path(src).is_file():
            dst = keep / f"{stem}-{suffix}"
            shutil.copyfile(src, dst)
            setattr(o, attr, str(dst))


def drop_event_log(log: str | None) -> None:
    """Remove a continuous run's event log (every store of a boot: large) from /tmp with the
    temporary directory ``pyvcore trace`` made for it, once --keep has copied it or when
    --keep was not given."""
    if not log:
        return
    path = Path(log)
    if path.parent.name.startswith("pyvcore-trace-"):
        shutil.rmtree(path.parent, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _lab_kernel() -> tuple[Path, dict[str, Path]]:
    try:
        from pyvcore.lab.cache import KernelManifest

        manifest = KernelManifest.load()
    except Exception as e:  # the lab package may be absent or not set up
        raise PyvcoreError(f"cannot read the lab's kernel manifest: {e}") from None
    if manifest is None:
        raise PyvcoreError("the lab is not set up: run `pyvcore lab setup`")
    return Path(manifest.vmlinux), {k: Path(v) for k, v in manifest.modules.items()}


def preflight(mutants: list[Mutant], qemu: str, *, vmlinux: Path, modules: dict[str, Path]) -> None:
    """Refuse, before the first (control) boot, what would fail later: a QEMU the lab has
    not got, and any mutant whose bytes are not where it expects them in this kernel
    (:func:`pyvcore.mutants.apply.locate`). Raises PyvcoreError (LabError, MutantRefused)."""
    from pyvcore.lab.cache import cache_dir
    from pyvcore.lab.inputs import resolve_qemu
    from pyvcore.mutants.apply import locate

    resolve_qemu(qemu, cache_dir())
    for m in mutants:
        locate(m, vmlinux if m.obj == "vmlinux" else modules["kvm_hv"])


def main(args: argparse.Namespace) -> int:
    if args.list or not args.run:
        return _list(args.json)
    mutants: list[Mutant] = [by_name(n) for n in args.run]  # names checked by argparse
    vmlinux, modules = _lab_kernel()
    preflight(mutants, args.qemu, vmlinux=vmlinux, modules=modules)
    scenarios = args.scenario or None
    plan = Plan(
        mutants=mutants,
        stops=args.stops,
        lock_wait=args.lock_wait,
        scenarios=scenarios,
        qemu=args.qemu,
        keep_going=args.keep_going,
        modes=MODES if args.mode == "both" else (args.mode,),
    )

    keep = Path(args.keep) if args.keep else None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)

    lines = Progress(every=TICK_EVERY, prog="pyvcore mutants")
    plan.say, plan.tick = lines.say, lines.tick

    def progress(o: Outcome) -> None:
        made = o.continuous_log
        if keep is not None:
            keep_records(o, keep)  # points o at the copy
        else:
            o.continuous_log = None
        drop_event_log(made)
        lines.say(
            f"{o.mutant} [{o.scenario}{', from boot' if o.from_boot else ''}] done in {o.seconds:.0f} s: sampled {o.sampled}, continuous {o.continuous}"
        )

    outcomes = run_plan(plan, vmlinux=vmlinux, modules=modules, progress=progress)
    print(to_json(outcomes) if args.json else _table(outcomes))
    killed, total = kill_rate(outcomes)
    controls = [o for o in outcomes if o.mutant == "(control)"]
    if any(o.sampled not in ("clean", "not run") for o in controls):
        print(
            "pyvcore mutants: a control run was not clean: the kill table is not a verdict", file=sys.stderr
        )
        return 2
    for o in controls:
        if o.continuous not in ("clean", "not run"):
            # The trace of the unmutated kernel is not clean (yet): a continuous kill
            # then counts only by an invariant that control did not show.
            print(
                f"pyvcore mutants: the control's trace of {o.scenario} is not clean ({o.continuous_by}): "
                "continuous kills there count only by other invariants",
                file=sys.stderr,
            )
    return 0 if killed == total else 1


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "mutants",
        help="put known bugs back into the lab's kernel and see whether pyvcore catches them",
        description=(
            "Each mutant is a one-instruction edit of Debian 6.12.95's vmlinux or kvm-hv.ko that "
            "reintroduces a bug class the POWER8 vcore code really had.  --list shows the catalogue; "
            "--run boots the unmutated kernel (control, must be clean) and each mutant in its scenarios, "
            "judges it with pyvcore diff (sampled) and pyvcore trace (continuous, when available) and "
            "prints the kill table.  Exit 0 every non-equivalent mutant killed, 1 some survived, "
            "2 could not run (e.g. a kernel whose bytes differ: refused, never patched blindly)."
        ),
    )
    p.add_argument("--list", action="store_true", help="list the mutants (the default without --run)")
    p.add_argument(
        "--run",
        metavar="NAME|all",
        type=cliargs.names([m.name for m in MUTANTS], every="all"),
        help="mutants to run: a name, several comma-separated, or all",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--scenario",
        metavar="SCENARIO[,SCENARIO]",
        type=cliargs.names(cliargs.scenarios()),
        help="run every mutant in these scenarios instead of its own (comma-separated)",
    )
    p.add_argument(
        "--stops",
        type=cliargs.positive,
        default=DEFAULT_STOPS,
        help="stops each sampled boot watches, as pyvcore diff --stops (default %(default)s)",
    )
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="go on when a control run has violations (a kill then needs an invariant the control did not "
        "violate; exit 2)",
    )
    p.add_argument(
        "--mode",
        choices=("both", *MODES),
        default="both",
        help="sampled (pyvcore diff), continuous (pyvcore trace: one more boot) or both (default)",
    )
    p.add_argument(
        "--keep",
        metavar="DIR",
        type=cliargs.output_dir,
        help="copy each run's pv-watch trace and trace event log into DIR (without it the event logs "
        "are removed after each run)",
    )
    p.add_argument(
        "--qemu",
        default="patched",
        type=cliargs.qemu,
        help="patched (default) or a QEMU binary with both lab fixes",
    )
    cliargs.add_lock_wait(p)
    p.set_defaults(func=main)
