"""``toxbench sweep``: a method over its strength knob (or any numeric setting), each point an ordinary run dir
paired with the same ``none`` run, then the matched-cost table of the sweep."""

from __future__ import annotations

from typing import Any

import click

from ..report.leaderboard import Leaderboard
from ..report.results import collect
from ..run.runner import execute
from ..run.sweep import run_sweep, sweep_grid, sweep_specs
from .base import ToxbenchCommand
from .options import dry_run_option
from .run import build_spec, run_options


@click.command("sweep", cls=ToxbenchCommand)
@run_options
@click.option("--strength", default=None, metavar="L1,L2,...",
              help="Values of the method's strength knob (AurA strength in [0, 1], toxic-vectors scale); or sweep "
                   "any numeric setting with -a KEY=N1,N2,... (Det0/Damp: -a k=250,500,1000).")
@dry_run_option
def sweep(**kw: Any) -> None:
    """Run INTERVENTION at every value of its knob (and `none`), then print toxicity at matched perplexity cost."""
    strength, dry_run = kw.pop("strength"), kw.pop("dry_run")
    spec = build_spec(**{**kw, "intervention_args": ()})  # the grid is not a run's setting
    from ..spec.values import parse_kv

    args = parse_kv(kw.get("intervention_args", ()), "--intervention-arg", "k=250,500,1000")
    knob, values, rest = sweep_grid(spec.intervention, args, strength)
    specs = sweep_specs(spec, knob, values, rest)
    if dry_run:
        for s in specs:
            click.echo(f"would run: {s.model} x {s.intervention}{dict(s.intervention_args) or ''} on "
                       f"{','.join(s.tasks)}")
        return
    dirs = run_sweep(specs, lambda s: execute(s, force=kw["force"], wait=kw["wait"]),
                     log=lambda m: click.echo(m, err=True))
    lb = Leaderboard(collect(dirs, warn=False), title="sweep")
    frontiers = lb.frontiers()
    if not frontiers:  # the runs are done all the same; say why there is no table
        click.echo("no matched-cost table: it needs a toxicity task and a perplexity task (e.g. -t "
                   "rtp_challenging,wiki_sentences) and at least two knob values", err=True)
    for fr in frontiers:
        click.echo(f"{fr.tox_task} {fr.name} at matched {fr.cost_task} perplexity cost:\n\n{fr.markdown()}\n")
