"""`toxbench export`: write MODEL with an activation-space intervention folded into its weights.

The result is a standard Hugging Face checkpoint (safetensors + config + tokenizer) that any loader runs as the
intervened model, with no hooks and no toxbench (plain ``AutoModelForCausalLM``, lm-eval ``--model hf``, vLLM).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from toxbench.harness.errors import UsageError
from toxbench.harness.options import threads_option


@click.command("export")
@click.option("--model", "-m", default="smollm2-135m", show_default=True,
              help="Embedded alias, local checkpoint dir, or hub id/short name.")
@click.option("--intervention", "-i", default="aura", show_default=True,
              help="aura, det0, damp (or a composition of them) - what gets folded into the weights.")
@click.option("--intervention-state", default=None, type=click.Path(),
              help="A fitted state file; default: the cached state for this model (fitted first if missing).")
@click.option("--intervention-arg", "-a", "intervention_args", multiple=True, metavar="KEY=VALUE",
              help="Intervention setting (repeatable), as for `toxbench run`.")
@click.option("--out", "-o", "out", required=True, type=click.Path(), help="Directory to write the checkpoint to.")
@click.option("--dtype", default="auto", show_default=True,
              help="Saved weight dtype: auto (float32 on CPU) | float32 | bfloat16 | float16. Folding is in float32.")
@click.option("--device", default="auto", show_default=True, help="Where to fit a missing state: auto | cpu | cuda.")
@click.option("--revision", default=None, help="Hub revision of --model.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Batch size if a state must be fitted.")
@click.option("--seed", type=int, default=1234, show_default=True, help="Seed if a state must be fitted.")
@threads_option
@click.option("--force", is_flag=True, help="Replace --out if it exists and is not empty.")
@click.option("--cache-dir", default=None, envvar="TOXBENCH_CACHE", show_envvar=True,
              help="Model/state cache (default ~/.cache/toxbench).")
@click.option("--data-dir", default=None, envvar="TOXBENCH_DATA", show_envvar=True,
              help="Data folder for fitting (default ../shared/data).")
def export(**kw: Any) -> None:
    """Fold INTERVENTION into MODEL's weights and save a plain HF checkpoint to --out."""
    try:
        out = export_checkpoint(**kw)
    except UsageError as e:
        raise click.UsageError(str(e).splitlines()[0]) from None
    click.echo(str(out))


def export_checkpoint(
    model: str,
    intervention: str,
    out: str,
    intervention_state: str | None = None,
    intervention_args: tuple[str, ...] = (),
    dtype: str = "auto",
    device: str = "auto",
    revision: str | None = None,
    batch_size: int = 32,
    seed: int = 1234,
    force: bool = False,
    cache_dir: str | None = None,
    data_dir: str | None = None,
    threads: int | None = None,
) -> Path:
    """Library form of the command (what the CLI calls)."""
    import torch

    from toxbench.harness.models import load_model, resolve_device, resolve_dtype, resolve_model_source
    from toxbench.harness.paths import cache_dir as resolve_cache
    from toxbench.harness.paths import data_dir as resolve_data
    from toxbench.interventions import build, parse_args, split_names
    from toxbench.interventions.fold import export_folded

    split_names(intervention)  # unknown names fail before the model loads
    args = parse_args(intervention_args)
    resolve_model_source(model)
    out_path = Path(out).expanduser()
    if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())) and not force:
        raise UsageError(f"export dir {str(out_path)!r} exists and is not empty; pass --force or choose another --out")
    dev = resolve_device(device)
    save_dtype = resolve_dtype(dtype, "cpu")
    cache = resolve_cache(cache_dir)
    loaded = load_model(model, dtype=torch.float32, device=dev, revision=revision, cache_dir=cache)
    interv = build(
        intervention, args, model=loaded.model, tokenizer=loaded.tokenizer, model_fingerprint=loaded.fingerprint,
        model_name=model, state=intervention_state, cache_dir=cache,
        data_dir=resolve_data(data_dir) if data_dir or intervention_state is None else None,
        device=dev, batch_size=batch_size, seed=seed,
    )
    return export_folded(
        loaded.model.to("cpu"), loaded.tokenizer, interv, out_path,
        dtype=None if save_dtype == torch.float32 else save_dtype, inplace=True, overwrite=force,
        extra_metadata={"base_model": {"name": model, "source": loaded.source, "revision": loaded.revision,
                                       "fingerprint": loaded.fingerprint}},
    )
