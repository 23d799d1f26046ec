"""Click commands for the ``multilingual`` scorer: ``train`` (mounted as ``toxbench scorers train``) and
``eval-multilingual`` (the per-language table behind ``toxbench scorers eval --scorer multilingual``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from toxbench.harness.commands import ToxbenchCommand
from toxbench.harness.errors import did_you_mean
from toxbench.harness.options import cache_dir_option, data_dir_option

TRAINABLE = ("multilingual",)



def _threads(n: int | None) -> None:
    if n:  # read by the encoder's OpenMP runtime when it is first loaded
        os.environ["OMP_NUM_THREADS"] = str(n)


_common = [
    click.option("--seed", type=int, default=0, show_default=True, help="Seed recorded in the head; shuffles the CV folds of eval."),
    cache_dir_option,
    data_dir_option,
    click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads of the encoder."),
    click.option("--no-progress", is_flag=True, help="Hide progress bars."),
]  # fmt: skip


def _with_common(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(_common):
        fn = opt(fn)
    return fn


@click.command("train", cls=ToxbenchCommand)
@click.argument("scorer", metavar="SCORER")
@_with_common
def train(scorer: str, seed: int, cache_dir: str | None, data_dir: str | None, threads: int | None,
          no_progress: bool) -> None:  # fmt: skip
    """Train a scorer's head from the data dir (SCORER: multilingual), e.g. `toxbench scorers train multilingual`.

    Embeds RTP-LX (26 languages), the translated RTP-LX prompts and a Jigsaw subsample with the multilingual
    encoder (cached, so a rerun takes seconds; the first run takes tens of CPU minutes) and fits the head (ridge on
    the embedding + character n-grams, Platt-scaled); deterministic given the data and --seed (recorded in the
    head); saved as safetensors in the cache.
    """
    if scorer not in TRAINABLE:
        raise did_you_mean(scorer, TRAINABLE, "trainable scorer")
    from toxbench.harness.paths import cache_dir as resolve_cache, data_dir as resolve_data
    from toxbench.harness.scorers.multilingual_train import train_head

    _threads(threads)
    summary = train_head(resolve_data(data_dir), resolve_cache(cache_dir), seed=seed, progress=not no_progress)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary["counts"].items()))
    click.echo(f"trained the multilingual head on {summary['n_train']} texts ({counts}); seed {seed}")
    click.echo(f"saved {summary['head']} ({summary['bytes']} bytes, sha256 {summary['sha256'][:12]})")
    click.echo("per-language validation: toxbench scorers eval --scorer multilingual")


def run_eval(seed: int = 0, folds: int = 5, cache_dir: Path | None = None, data_dir: Path | None = None,
             output: Path | None = None, progress: bool = True) -> str:  # fmt: skip
    """Compute the per-language table and return it as Markdown (also written to ``output`` .md/.csv if given)."""
    from toxbench.harness.io import atomic_write_text
    from toxbench.harness.paths import cache_dir as resolve_cache, data_dir as resolve_data
    from toxbench.harness.scorers.multilingual_train import evaluate_multilingual, format_table

    table = evaluate_multilingual(resolve_data(data_dir), resolve_cache(cache_dir), seed=seed, n_splits=folds,
                                  progress=progress)  # fmt: skip
    text = format_table(table)
    if output is not None:
        atomic_write_text(output, table.to_csv(index=False) if output.suffix == ".csv" else text + "\n")
    return text


@click.command("eval-multilingual", cls=ToxbenchCommand)
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Grouped CV folds.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table here (.md, or .csv for the raw numbers).")  # fmt: skip
@_with_common
def eval_multilingual(folds: int, output: Path | None, seed: int, cache_dir: Path | None, data_dir: Path | None,
                      threads: int | None, no_progress: bool) -> None:  # fmt: skip
    """Per-language ROC-AUC of the multilingual scorer: RTP-LX human labels (26 languages, CV grouped by prompt
    Index) and Perspective on English DecodingTrust texts (held out). Needs `toxbench scorers train multilingual`."""
    _threads(threads)
    click.echo(run_eval(seed, folds, cache_dir, data_dir, output, progress=not no_progress))
