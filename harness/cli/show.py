"""``toxbench show``: a run dir's results, or one line per run under a folder; ``show_results`` also ends
``toxbench run`` and ``toxbench merge``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..core.errors import UsageError
from ..measure.schema import COUNT_METRICS, HEADLINE_METRICS  # a listing shows a task's best-ranked one
from ..report.leaderboard import build_leaderboard
from ..report.markdown import compact_summary
from ..report.results import find_run_dirs
from ..spec.lock import describe_holder, live_holder
from ..spec.rundir import RunDir
from .base import ToxbenchCommand


def show_results(run_dir: Path | str) -> None:
    """Print a run's metrics (with CIs) per task and group."""
    rd = RunDir(Path(run_dir))
    res = rd.load_results()
    if not res:
        raise UsageError(f"{str(run_dir)!r} has no results.json yet")
    click.echo(f"run {res.get('run_id')}  (model {res['protocol']['model']['name']}, "
               f"intervention {res['protocol']['intervention']['name']}, complete={res.get('completed')})")
    for task, r in res.get("tasks", {}).items():
        parts = []
        for m, v in r["metrics"].items():
            if m in COUNT_METRICS:
                parts.append(f"{m}={v['value']:.0f}")
                continue
            s = f"{m}={v['value']:.4g}"
            if v.get("ci"):
                s += f" [{v['ci'][0]:.3g}, {v['ci'][1]:.3g}]"
            parts.append(s)
        click.echo(f"  {task} (n={r['n']}): " + ", ".join(parts))
    for g, r in res.get("groups", {}).items():
        click.echo(f"  {g}: " + ", ".join(f"{m}={v['value']:.4g}" for m, v in r["metrics"].items()))
    click.echo(f"  -> {rd.path}")


@click.command("show", cls=ToxbenchCommand)
@click.argument("run_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print results.json as is.")
def show(run_dir: str, as_json: bool) -> None:
    """Print a run directory's results, or list the runs under a folder (status, tasks, headline metrics)."""
    path = Path(run_dir)
    if path.is_file() and path.name in ("results.json", "run_spec.json"):
        run_dir = str(path.parent)  # a run dir's own file: show that run
    elif path.is_file():
        raise UsageError(f"{run_dir!r} is a file, not a run directory; pass the folder of a run (or of runs)")
    elif not path.is_dir():
        raise UsageError(f"run directory {run_dir!r} does not exist")
    rd = RunDir(Path(run_dir))
    if not rd.results_file.is_file() and not rd.spec_file.is_file():
        list_runs(Path(run_dir), as_json)  # a folder of runs (e.g. runs/): one line per run
    elif as_json:
        click.echo(json.dumps(rd.load_results(), indent=2))
    elif not rd.results_file.is_file():
        holder = live_holder(rd.path)
        state = f"running ({describe_holder(holder)})" if holder else "no task finished yet; run it again to resume"
        raise UsageError(f"run {rd.path.name!r} has no results yet: {state}")
    else:
        show_results(run_dir)


def run_summary(path: Path) -> dict[str, Any]:
    """Status, tasks and headline metrics of one run dir (damaged files are reported, not raised)."""
    rd = RunDir(path)
    out: dict[str, Any] = {"run": path.name, "path": str(path), "status": "not started", "tasks": [], "metrics": {}}
    try:
        res = rd.load_results()
        planned = rd.load_spec().tasks if rd.spec_file.is_file() else ()
    except UsageError:
        out["status"] = "damaged (unreadable JSON; `toxbench show` on it says which file)"
        return out
    done = res.get("top_level_done", [])
    out["tasks"] = list(planned or res.get("tasks", {}))
    if res.get("completed"):
        out["status"] = "complete"
    elif res or planned:
        out["status"] = f"incomplete ({len(done)}/{len(planned) or '?'} tasks)"
    holder = live_holder(path)
    if holder:
        out["status"] = f"running ({describe_holder(holder)})"
    for task, r in res.get("tasks", {}).items():
        metrics = r.get("metrics", {}) if isinstance(r, dict) else {}
        name = next((m for m in HEADLINE_METRICS if m in metrics), next(iter(metrics), None))
        if name is not None and isinstance(metrics[name], dict) and metrics[name].get("value") is not None:
            out["metrics"][task] = {name: metrics[name]["value"]}
    return out


def list_runs(folder: Path, as_json: bool = False) -> None:
    """One line per run dir under ``folder`` (or a JSON list)."""
    try:
        dirs = find_run_dirs([folder])
    except UsageError:
        raise UsageError(f"{str(folder)!r} is neither a run dir nor a folder of run dirs (no run_spec.json or "
                         "results.json in it or below)") from None
    rows = [run_summary(d) for d in dirs]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{len(rows)} run(s) under {folder}:")
    for r in rows:
        heads = ", ".join(f"{t} {m}={v:.4g}" for t, mv in r["metrics"].items() for m, v in mv.items())
        click.echo(f"  {r['run']}  [{r['status']}]  tasks: {','.join(r['tasks']) or '-'}"
                   + (f"  {heads}" if heads else ""))
    finished = [d for d, r in zip(dirs, rows) if r["status"] == "complete"]
    if finished:  # the compact board of what is finished (the Summary a leaderboard would open with)
        try:
            click.echo("\n" + compact_summary(build_leaderboard(finished, warn=False)))
        except UsageError:
            pass
