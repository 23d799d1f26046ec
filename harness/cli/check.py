"""``toxbench check``: a thin Click layer over harness/check.py."""

from __future__ import annotations

import click

from ..report.check import check as run_check
from .base import ToxbenchCommand
from .leaderboard import warn_skipped


@click.command("check", cls=ToxbenchCommand)
@click.option("--baseline", "-b", type=click.Path(dir_okay=False), default="leaderboards/baseline.json",
              show_default=True, help="Baseline JSON (values, CIs, protocols and tolerances).")
@click.argument("runs", nargs=-1, required=True, metavar="RUNS...")
@click.option("--update", is_flag=True, help="Rewrite the baseline from RUNS (atomically; tolerances kept).")
@click.option("--all", "show_all", is_flag=True, help="Print every compared metric, not only the failures.")
def check(baseline: str, runs: tuple[str, ...], update: bool, show_all: bool) -> None:
    """Compare RUNS with a baseline: exit 0 when every metric is within tolerance, 1 on a regression.

    A metric fails when it moves past its tolerance from the baseline file (default: 2% relative; per metric
    or per task:metric; "use_ci": true also accepts anything inside the baseline's 95% CI); a baseline metric
    missing from RUNS fails too. Exit 2: bad input, or RUNS measured under another protocol than the baseline.
    """
    report = run_check(baseline, list(runs), update=update)
    warn_skipped(report.skipped)
    table = report.markdown(only_failures=not show_all)
    if table:
        click.echo(table)
    click.echo(report.summary())
    if report.exit_code:
        raise SystemExit(report.exit_code)
