"""``toxbench list {models,interventions,tasks,scorers}``: the names toxbench resolves."""

from __future__ import annotations

from pathlib import Path

import click

from ...interventions import INTERVENTIONS
from ...tasks import task_names
from ..core.models import EMBEDDED, HUB_ALIASES
from ..measure.scorers import SCORERS
from .base import ToxbenchCommand


@click.command("list", cls=ToxbenchCommand)
@click.argument("what", type=click.Choice(["models", "interventions", "tasks", "scorers"]))
@click.option("--include-path", multiple=True, type=click.Path())
def list_(what: str, include_path: tuple[str, ...]) -> None:
    """List the names toxbench resolves."""
    if what == "models":
        for k, e in EMBEDDED.items():
            click.echo(f"{k}\tembedded{' (multilingual)' if e.multilingual else ''}")
        for k, v in HUB_ALIASES.items():
            click.echo(f"{k}\t{v}")
    elif what == "interventions":
        click.echo("\n".join(INTERVENTIONS.names()))
    elif what == "tasks":
        click.echo("\n".join(task_names(tuple(str(Path(p).resolve()) for p in include_path))))
    else:
        click.echo("\n".join(SCORERS.names()))
