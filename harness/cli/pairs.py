"""``toxbench pairs``: offline preference pairs for DPO from the model's own samples (``toxbench fit --intervention
dpo -a pairs=PATH`` trains on them)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..core.errors import UsageError
from ..core.paths import data_dir as resolve_data_dir
from ..measure.scorers import DEFAULT_SCORER
from ..run.pair_pools import resolve_pool
from ..run.pairs import build_pairs, import_pairwise
from ..run.prepare import Setup, prepare
from .base import ToxbenchCommand
from .options import (
    cache_dir_option,
    data_dir_option,
    device_option,
    dtype_option,
    model_option,
    seed_option,
    threads_option,
)


@click.command("pairs", cls=ToxbenchCommand)
@model_option()
@click.option("--scorer", default=None,
              help="Toxicity scorer that ranks samples [default: the project's default scorer].")
@click.option("--pool", "pool", multiple=True, metavar="FILE|NAME",
              help="Prompt file(s) (RTP JSONL, RTP-LX JSON lines, or one prompt per line) or a named pool "
                   "(jigsaw-openings: ~4,700 openings of toxic Jigsaw comments); default: the data dir's English RTP "
                   "prompts that are not evaluation prompts.")
@click.option("--n", "n", default=8, show_default=True, type=int, help="Samples per prompt.")
@click.option("--margin", default=0.1, show_default=True, type=float,
              help="Keep a pair only when rejected_score - chosen_score >= margin.")
@click.option("--limit", default=None, type=int, help="Use only the first N prompts of the pool.")
@seed_option
@click.option("--out", "out", default="pairs.jsonl", show_default=True, type=click.Path(dir_okay=False),
              help="Output JSONL (appended; a rerun resumes it).")
@click.option("--allow-overlap", is_flag=True, help="Keep pool prompts that are also evaluation prompts.")
@click.option("--drop-overlap", is_flag=True, help="Silently drop pool prompts that are evaluation prompts.")
@click.option("--import-pairwise", "import_path", default=None, type=click.Path(exists=False),
              help="Convert the seeds' pairwise data (prompt_text/unpert_gen_text/pert_gen_text; file or folder) "
                   "to --out instead of sampling.")
@click.option("--max-new-tokens", default=20, show_default=True, type=int)
@click.option("--batch-prompts", default=16, show_default=True, type=int, help="Prompts sampled per generate call.")
@data_dir_option
@cache_dir_option
@device_option
@dtype_option
@threads_option
def pairs(model: str, scorer: str | None, pool: tuple[str, ...], n: int, margin: float, limit: int | None, seed: int,
          out: str, allow_overlap: bool, drop_overlap: bool, import_path: str | None, max_new_tokens: int,
          batch_prompts: int, data_dir: str | None, cache_dir: str | None, device: str, dtype: str,
          threads: int | None) -> None:
    """Build DPO preference pairs from the model's own samples (least vs most toxic continuation per prompt)."""
    if import_path is not None:
        rows = import_pairwise(import_path, out)
        click.echo(json.dumps({"out": out, "pairs": len(rows), "source": import_path}))
        return
    if n < 2:
        raise UsageError(f"--n must be at least 2 (a pair needs two samples), got {n}")
    if margin < 0:
        raise UsageError(f"--margin must be >= 0, got {margin}")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be positive, got {limit}")
    root = resolve_data_dir(data_dir)
    # check the pool before loading anything heavy: a bad file or an overlap fails in a second
    prompts, info = resolve_pool(list(pool) or None, root, allow_overlap=allow_overlap, drop_overlap=drop_overlap)
    if len(prompts) < 1000:
        dropped = f", {info['dropped_overlap']} evaluation prompts dropped" if info.get("dropped_overlap") else ""
        click.echo(f"note: the prompt pool has {len(prompts)} prompts{dropped} (the paper trained on ~24k pairs; "
                   "pass --pool FILE for more)", err=True)
    loaded = prepare(Setup(model=model, dtype=dtype, device=device, cache_dir=cache_dir)).loaded
    res = build_pairs(
        loaded.model, loaded.tokenizer, list(pool) or None, n=n, scorer=scorer or DEFAULT_SCORER, margin=margin,
        seed=seed, out_path=Path(out), data_dir=root, cache_dir=cache_dir, limit=limit, allow_overlap=allow_overlap,
        drop_overlap=drop_overlap, max_new_tokens=max_new_tokens, batch_prompts=batch_prompts,
    )
    click.echo(json.dumps(res.to_dict(), sort_keys=True))
