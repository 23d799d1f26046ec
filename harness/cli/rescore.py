"""``toxbench rescore RUN_DIR --scorer NAME``: a thin Click layer over harness/rescore.py."""

from __future__ import annotations

import click

from ..run.rescore import rescore as rescore_run
from ..spec.values import parse_kv
from .base import ToxbenchCommand
from .show import show_results


@click.command("rescore", cls=ToxbenchCommand)
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--scorer", required=True, help="The other scorer (see `toxbench list scorers`).")
@click.option("--scorer-arg", "scorer_args", multiple=True, metavar="KEY=VALUE", help="Scorer option (repeatable).")
@click.option("--output-dir", "-o", default=None, type=click.Path(file_okay=False),
              help="Where the new run dir goes (default: beside RUN_DIR, in the spec's output dir).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def rescore(run_dir: str, scorer: str, scorer_args: tuple[str, ...], output_dir: str | None, quiet: bool) -> None:
    """Score RUN_DIR's continuations with another scorer, as a new run, reusing its generations.

    The new run has RUN_DIR's spec with the other scorer; its generation cache is copied from RUN_DIR, so no
    continuation is sampled again; tasks without continuations (perplexity, common sense) are copied with their
    samples, so a perplexity-only run is copied whole.
    """
    args = parse_kv(scorer_args, "--scorer-arg", "calibrate=isotonic")
    show_results(rescore_run(run_dir, scorer, args, output_dir=output_dir, progress=not quiet))
