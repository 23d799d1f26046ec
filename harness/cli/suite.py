"""``toxbench suite``: a thin Click layer over harness/suite.py."""

from __future__ import annotations

from pathlib import Path

import click

from ..run.suite import load_suite, run_suite
from ..spec.values import nest, parse_kv
from .base import ToxbenchCommand
from .options import dry_run_option


@click.command("suite", cls=ToxbenchCommand)
@click.argument("suite_file", metavar="SUITE.yaml")
@dry_run_option
@click.option("--force", is_flag=True, help="Recompute runs that are already complete.")
@click.option("--set", "set_", multiple=True, metavar="KEY=VALUE",
              help="Override a shared setting for every run (repeatable), e.g. --set limit=20 --set generation.k=5.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None,
              help="Leaderboard path (default: the suite's out).")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write PNG plots beside the leaderboard.")
def suite(suite_file: str, dry_run: bool, force: bool, set_: tuple[str, ...], out: str | None, plots: bool) -> None:
    """Run a declared grid of models × interventions × tasks (skipping complete runs), then its leaderboard."""
    overrides = nest(parse_kv(set_, "--set", "limit=20 or generation.k=4"))
    s = load_suite(suite_file, overrides=overrides)
    if out:
        s.out = Path(out)
    click.echo(f"suite {s.name}: {len(s.specs)} run(s) -> {s.out}", err=True)
    result = run_suite(s, force=force, dry_run=dry_run, plots=plots, log=lambda m: click.echo(m, err=True))
    for p in result.outputs:
        click.echo(f"wrote {p}")
