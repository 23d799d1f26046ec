"""``toxbench fluency RUN_DIR``: conditional perplexity and dist-n of a finished run's continuations."""

from __future__ import annotations

import click

from ..measure.fluency import add_fluency
from ..spec.values import split_commas
from .base import ToxbenchCommand
from .options import batch_size_option, cache_dir_option, device_option, dtype_option, threads_option

REFERENCE_HELP = ("Causal LM that scores the continuations (alias, directory or hub id). Default: the run's own base "
                  "model, without its intervention.")
TASKS_HELP = "Only these generation tasks of the run (default: every task with continuations)."


@click.command("fluency", cls=ToxbenchCommand)
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--reference-model", "-m", default=None, metavar="M", help=REFERENCE_HELP)
@click.option("--tasks", "-t", default=None, metavar="T1,T2", help=TASKS_HELP)
@batch_size_option
@device_option
@dtype_option
@cache_dir_option
@threads_option
@click.option("--perplexity/--no-perplexity", default=True, show_default=True,
              help="--no-perplexity: only dist-n and script share (seconds, no model).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def fluency(run_dir: str, reference_model: str | None, tasks: str | None, batch_size: int, device: str, dtype: str,
            cache_dir: str | None, threads: int | None, perplexity: bool, quiet: bool) -> None:
    """Add conditional_ppl_mean/median, dist-1/2/3 and script_share to RUN_DIR/results.json from its samples (no
    regeneration).

    Conditional perplexity as DExperts computes it (ppl of each continuation given its prompt under the reference
    model; ppl >= 1e4 dropped); dist-n per prompt over its k continuations, averaged over prompts; script share:
    the fraction of letters in the prompt language's script (Arabic, Devanagari, Cyrillic, CJK, Hangul prompts), so
    a model that answers in English shows.
    """
    added = add_fluency(run_dir, reference_model=reference_model,
                        tasks=split_commas(tasks) if tasks else None, batch_size=batch_size, device=device,
                        dtype=dtype, cache_dir=cache_dir, progress=not quiet, perplexity=perplexity)
    for task, metrics in added.items():
        shown = "  ".join(f"{k}={v['value']:.4g}" for k, v in metrics.items())
        click.echo(f"{task}: {shown}")
