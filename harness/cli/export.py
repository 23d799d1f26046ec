"""`toxbench export`: write MODEL with an activation-space intervention folded into its weights.

The result is a standard Hugging Face checkpoint (safetensors + config + tokenizer) that any loader runs as the
intervened model, with no hooks and no toxbench (plain ``AutoModelForCausalLM``, lm-eval ``--model hf``, vLLM).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import torch

from ...interventions import check_args
from ...interventions.fold import check_foldable, export_folded
from ..core.defaults import DEFAULT_SEED
from ..core.errors import UsageError
from ..core.hardware import resolve_dtype, resolve_dtype_name
from ..core.models import resolve_model_source
from ..core.paths import cache_dir as resolve_cache
from ..core.paths import data_dir as resolve_data
from ..run.prepare import Setup, prepare
from ..spec.values import parse_kv
from .base import ToxbenchCommand
from .options import (
    device_option,
    dry_run_option,
    intervention_arg_option,
    intervention_option,
    intervention_state_option,
    model_option,
    path_options,
    seed_option,
    threads_option,
)


@click.command("export", cls=ToxbenchCommand)
@model_option()
@intervention_option("aura", help="aura, det0, damp, mean-act, linear-act with quantiles=q_all (or a composition) - what gets folded into the weights.")
@intervention_state_option
@intervention_arg_option
@click.option("--out", "-o", "out", required=True, type=click.Path(), help="Directory to write the checkpoint to.")
# not the shared --dtype: this is the dtype the checkpoint is saved in (the folding itself runs in float32)
@click.option("--dtype", default="auto", show_default=True,
              help="Saved weight dtype: auto (float32) | float32 | bfloat16 | float16. Folding is in float32.")
@click.option("--fit-dtype", default="auto", show_default=True,
              help="Export the state fitted in this dtype (auto: the one `run --dtype auto` uses here); never "
                   "refitted: a missing state is an error naming the `toxbench fit` command.")
@device_option
@click.option("--revision", default=None, help="Hub revision of --model.")
@seed_option
@threads_option
@click.option("--force", is_flag=True, help="Replace --out if it exists and is not empty.")
@path_options
@dry_run_option
def export(dry_run: bool, **kw: Any) -> None:
    """Fold INTERVENTION into MODEL's weights and save a plain HF checkpoint to --out."""
    click.echo(str(export_checkpoint(**kw, dry_run=dry_run)))


def export_checkpoint(
    model: str,
    intervention: str,
    out: str,
    intervention_state: str | None = None,
    intervention_args: tuple[str, ...] = (),
    dtype: str = "auto",
    fit_dtype: str = "auto",
    device: str = "auto",
    revision: str | None = None,
    seed: int = DEFAULT_SEED,
    force: bool = False,
    cache_dir: str | None = None,
    data_dir: str | None = None,
    threads: int | None = None,
    dry_run: bool = False,
) -> Path | str:
    """Library form of the command (what the CLI calls); ``dry_run``: check the inputs, say what would be done."""
    args = parse_kv(intervention_args, "--intervention-arg", "k=50 or aura.pooling=mean")
    check_foldable(intervention, check_args(intervention, args))  # bad names/values fail before the model loads
    resolve_model_source(model)
    out_path = Path(out).expanduser()
    if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())) and not force:
        raise UsageError(f"export dir {str(out_path)!r} exists and is not empty; pass --force or choose another --out")
    if dry_run:
        return (f"would fold {intervention} (state fitted in {resolve_dtype_name(fit_dtype, device)}) into "
                f"{model} -> {out_path}")
    save_dtype = torch.float32 if dtype == "auto" else resolve_dtype(dtype, "cpu")
    setup = Setup(model=model, revision=revision, dtype=torch.float32, device=device, intervention=intervention,
                  intervention_args=args, intervention_state=intervention_state, cache_dir=resolve_cache(cache_dir),
                  data_dir=resolve_data(data_dir) if data_dir or intervention_state is None else None,
                  seed=seed, state_dtype=resolve_dtype_name(fit_dtype, device))
    prepared = prepare(setup, load_override=False)  # a weight-space intervention has nothing to fold
    loaded = prepared.loaded
    return export_folded(
        loaded.model.to("cpu"), loaded.tokenizer, prepared.intervention, out_path,
        dtype=None if save_dtype == torch.float32 else save_dtype, inplace=True, overwrite=force,
        extra_metadata={"base_model": {"name": model, "source": loaded.source, "revision": loaded.revision,
                                       "fingerprint": loaded.fingerprint}},
    )
