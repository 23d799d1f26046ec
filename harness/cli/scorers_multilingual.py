"""Click commands for the ``multilingual`` scorer: ``train`` (mounted as ``toxbench scorers train``) and
``eval-multilingual`` (the per-language table behind ``toxbench scorers eval --scorer multilingual``)."""

from __future__ import annotations

from pathlib import Path

import click

from ..core.defaults import DEFAULT_FOLDS_SEED
from ..core.errors import did_you_mean
from ..core.io import atomic_write_text
from ..core.paths import cache_dir as resolve_cache
from ..core.paths import data_dir as resolve_data
from ..measure.scorers import attributes_train, ngram_train, stacked
from ..measure.scorers.multilingual_train import evaluate_multilingual, format_table, train_head
from .base import ToxbenchCommand
from .options import bundle, cache_dir_option, data_dir_option, folds_seed_option, threads_option

TRAINABLE = ("multilingual", "rtp-stack", "rtp-ngram", "rtp-attributes")


_with_common = bundle(
    folds_seed_option,
    cache_dir_option,
    data_dir_option,
    threads_option,  # also OMP_NUM_THREADS, which the encoder's OpenMP runtime reads when first loaded
    click.option("--no-progress", is_flag=True, help="Hide progress bars."),
)


@click.command("train", cls=ToxbenchCommand)
@click.argument("scorer", metavar="SCORER")
@click.option("--out", "-o", "output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the head (default: the shipped file in the package's data folder).")
@_with_common
def train(scorer: str, output: Path | None, folds_seed: int, cache_dir: str | None, data_dir: str | None,
          threads: int | None, no_progress: bool) -> None:  # fmt: skip
    """Rebuild a scorer's shipped head from the data dir (SCORER: rtp-attributes, rtp-ngram, rtp-stack or
    multilingual), byte-identically for the same data and --folds-seed, e.g. `toxbench scorers train multilingual`.

    rtp-attributes (English default): rtp-ngram's features, a head per Perspective attribute and a boosted stage
    for toxicity; nested grouped CV (5 outer folds, both stages fitted inside), then the shipped model; 128 head
    fits, ~30 CPU minutes, resumable (fits are cached). Writes the heads and their out-of-fold scores beside them.

    rtp-ngram: rtp-stack's features plus hashed n-grams of every Perspective-scored RTP text; nested grouped CV
    (5 outer folds; C and the random sample's weight chosen, and a Platt map fitted, in 3 inner folds), then the
    head on everything; ~20 CPU minutes. Writes the head and its out-of-fold scores beside it (deterministic solver;
    byte-identity of a rebuild is not tested for this one).

    rtp-stack (English default): features of every Perspective-scored RTP text (~1 min), a soft-target logistic
    head; prints its held-out ROC-AUC (5 folds grouped by prompt). multilingual: embeds RTP-LX (26 languages), the
    translated RTP-LX prompts and a Jigsaw subsample with the multilingual encoder (cached by text hash and encoder
    version, so a rerun takes seconds; the first run ~20 CPU minutes) and fits the head (ridge on the embedding +
    character n-grams, Platt-scaled).
    """
    if scorer not in TRAINABLE:
        raise did_you_mean(scorer, TRAINABLE, "trainable scorer")
    if scorer == "rtp-attributes":
        info = attributes_train.train_heads(resolve_data(data_dir), resolve_cache(cache_dir),
                                            out=output or attributes_train.HEAD_FILE, seed=folds_seed,
                                            log=lambda m: click.echo(m, err=True))
        auc = ", ".join(f"{k} {v:.3f}" for k, v in info["nested_cv"]["toxicity"].items())
        click.echo(f"trained the rtp-attributes heads on {info['n_train']} texts; nested grouped CV ROC-AUC of "
                   f"toxicity: {auc}; Spearman (random sample) "
                   f"{info['nested_cv']['random_attributes']['toxicity']['spearman']:.3f}")
        click.echo(f"saved {info['path']} ({info['bytes']} bytes, sha256 {info['sha256'][:12]}; float32 storage "
                   f"moves scores by at most {info['storage_rounding']:.1e})")
        return
    if scorer == "rtp-ngram":
        info = ngram_train.train_head(resolve_data(data_dir), resolve_cache(cache_dir),
                                      out=output or ngram_train.HEAD_FILE, seed=folds_seed,
                                      log=lambda m: click.echo(m, err=True))
        auc = ", ".join(f"{k} {v:.3f}" for k, v in info["nested_cv"].items())
        click.echo(f"trained the rtp-ngram head on {info['n_train']} texts (C={info['C']:g}, random-sample "
                   f"weight {info['random_weight']:g}); nested grouped CV ROC-AUC: {auc}")
        click.echo(f"saved {info['path']} ({info['bytes']} bytes, sha256 {info['sha256'][:12]})")
        return
    if scorer == "rtp-stack":
        info = stacked.train_head(resolve_data(data_dir), resolve_cache(cache_dir), out=output or stacked.HEAD_FILE,
                                  seed=folds_seed)
        auc = ", ".join(f"{k} {v:.3f}" for k, v in info["held_out_roc_auc"].items())
        click.echo(f"trained the rtp-stack head on {info['n_train']} Perspective-scored RTP texts; held-out "
                   f"ROC-AUC (5 folds grouped by prompt): {auc}")
        click.echo(f"saved {info['path']} ({info['bytes']} bytes, sha256 {info['sha256'][:12]})")
        return
    summary = train_head(resolve_data(data_dir), resolve_cache(cache_dir), seed=folds_seed, progress=not no_progress,
                         out=output)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary["counts"].items()))
    click.echo(f"trained the multilingual head on {summary['n_train']} texts ({counts}); folds seed {folds_seed}")
    click.echo(f"saved {summary['head']} ({summary['bytes']} bytes, sha256 {summary['sha256'][:12]})")
    click.echo("per-language validation: toxbench scorers eval --scorer multilingual")


def run_eval(seed: int = DEFAULT_FOLDS_SEED, folds: int = 5, cache_dir: Path | None = None, data_dir: Path | None = None,
             output: Path | None = None, progress: bool = True) -> str:  # fmt: skip
    """Compute the per-language table and return it as Markdown (also written to ``output`` .md/.csv if given)."""
    table = evaluate_multilingual(resolve_data(data_dir), resolve_cache(cache_dir), seed=seed, n_splits=folds,
                                  progress=progress)  # fmt: skip
    text = format_table(table)
    if output is not None:
        atomic_write_text(output, table.to_csv(index=False) if output.suffix == ".csv" else text + "\n")
    return text


@click.command("eval-multilingual", cls=ToxbenchCommand)
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Grouped CV folds.")
@click.option("--out", "-o", "output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table here (.md, or .csv for the raw numbers).")  # fmt: skip
@_with_common
def eval_multilingual(folds: int, output: Path | None, folds_seed: int, cache_dir: Path | None, data_dir: Path | None,
                      threads: int | None, no_progress: bool) -> None:  # fmt: skip
    """Per-language ROC-AUC of the multilingual scorer: RTP-LX human labels (26 languages, CV grouped by prompt
    Index) and Perspective on English DecodingTrust texts (held out). Needs `toxbench scorers train multilingual`."""
    click.echo(run_eval(folds_seed, folds, cache_dir, data_dir, output, progress=not no_progress))
