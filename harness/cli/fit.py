"""``toxbench fit``: fit an intervention's state on a model (cached, so `run` finds it) and print where it is."""

from __future__ import annotations

from typing import Any

import click

from ...interventions import INTERVENTIONS, check_args, split_names, state_files
from ...interventions.dpo import DPO
from ..core.errors import UsageError
from ..core.hardware import resolve_dtype_name
from ..core.models import resolve_model_source
from ..core.paths import cache_dir, data_dir
from ..run.prepare import Setup, prepare
from ..spec.values import parse_kv
from .base import ToxbenchCommand
from .options import batch_size_option, dry_run_option, intervention_options, model_options, path_options, seed_option


def fit_dpo_options() -> str:
    """The ``--intervention-arg KEY=VALUE`` keys of ``toxbench fit --intervention dpo`` with their defaults."""
    lines = ["DPO arguments (--intervention-arg KEY=VALUE; defaults = the seed's paper configuration):"]
    lines += [f"  {k}={v!r}" for k, v in DPO.defaults.items()]
    lines.append("Small CPU configuration: see docs/dpo.md (e.g. epochs=1 warmup_steps=10 lora_r=16).")
    return "\n".join(lines)


@click.command("fit", cls=ToxbenchCommand)
@model_options
@intervention_options
@path_options
@batch_size_option
@seed_option
@click.option("--refit", is_flag=True, help="Fit again even when a cached state exists.")
@dry_run_option
def fit(**kw: Any) -> None:
    """Fit an intervention's state on MODEL (cached; `run` then finds it) and print its path."""
    names = split_names(kw["intervention"])
    if not any(getattr(INTERVENTIONS.get(n), "needs_fit", False) for n in names):
        raise UsageError(f"intervention {kw['intervention']!r} has nothing to fit")
    args = parse_kv(kw["intervention_args"], "--intervention-arg", "k=50 or aura.pooling=mean")
    check_args(kw["intervention"], args)
    resolve_model_source(kw["model"])
    if kw["dry_run"]:
        click.echo(f"would fit {kw['intervention']} on {kw['model']} ({resolve_dtype_name(kw['dtype'], kw['device'])},"
                   f" data {data_dir(kw['data_dir'])})")
        return
    cache = cache_dir(kw["cache_dir"])
    setup = Setup(model=kw["model"], revision=kw["revision"], dtype=kw["dtype"], device=kw["device"],
                  trust_remote_code=kw["trust_remote_code"], intervention=kw["intervention"], intervention_args=args,
                  intervention_state=kw["intervention_state"], cache_dir=cache, data_dir=data_dir(kw["data_dir"]),
                  batch_size=kw["batch_size"], seed=kw["seed"], refit=kw["refit"])
    # the merged checkpoint of a weight-space intervention is printed, not loaded
    prepared = prepare(setup, load_override=False)
    for p in state_files(prepared.intervention, cache, prepared.loaded.fingerprint, prepared.loaded.model):
        click.echo(str(p))
    for part in prepared.intervention.parts:  # weight-space: the merged checkpoint, usable as --model DIR
        if part.model_override() is not None:
            click.echo(part.model_override())
