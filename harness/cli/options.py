"""The options every command shares, declared once: model, dtype, device, threads, seed, data and cache dirs.

A command stacks the bundles it needs (``@model_options``, ``@path_options``, ``@threads_option`` ...), so a
setting has one name, one default and one help text across the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..core.defaults import DEFAULT_BATCH_SIZE, DEFAULT_FOLDS_SEED, DEFAULT_MODEL, DEFAULT_SEED
from ..core.hardware import set_threads
from ..run.validation import check_setting

__all__ = ["DEFAULT_MODEL", "DEFAULT_SEED", "bundle", "model_options", "path_options", "intervention_options",
           "threads_option", "seed_option", "dtype_option", "device_option", "model_option", "dry_run_option",
           "batch_size_option", "folds_seed_option", "intervention_option", "intervention_arg_option",
           "intervention_state_option"]

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def bundle(*options: Decorator) -> Decorator:
    """Apply ``options`` in the order written (the order ``--help`` shows)."""

    def apply(f: Callable[..., Any]) -> Callable[..., Any]:
        for opt in reversed(options):
            f = opt(f)
        return f

    return apply


def _apply_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    set_threads(value)  # before anything loads, so every command (and env.json) runs with what was asked
    return value


def model_option(default: str = DEFAULT_MODEL) -> Decorator:
    return click.option("--model", "-m", default=default, show_default=True,
                        help="Embedded alias (smollm2-135m, gemma3-270m), local checkpoint dir, or hub id/short name.")


dtype_option = click.option("--dtype", default="auto", show_default=True,
                            help="auto (bf16 where the CPU/GPU computes it natively, else float32) | float32 | "
                                 "bfloat16 | float16.")
device_option = click.option("--device", default="auto", show_default=True,
                             help="auto (CUDA when present) | cpu | cuda[:N].")
threads_option = click.option("--threads", type=click.IntRange(min=1), default=None, callback=_apply_threads,
                              expose_value=True, help="torch CPU threads [default: torch's choice; 1 is often "
                                                      "fastest on a busy machine].")
seed_option = click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True,
                           help="Seed of sampling and of any fit.")
folds_seed_option = click.option("--folds-seed", type=int, default=DEFAULT_FOLDS_SEED, show_default=True,
                                 help="Seed of the grouped cross-validation folds (recorded in a trained head).")


def _in_range(ctx: click.Context, param: click.Parameter, value: int) -> int:
    check_setting(param.name, value)  # the range every RunSpec is checked against (run/validation.py)
    return value


batch_size_option = click.option("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, callback=_in_range,
                                 show_default=True, help="Prompts (or texts) per forward pass.")
data_dir_option = click.option("--data-dir", default=None, envvar="TOXBENCH_DATA", show_envvar=True,
                               help="Data folder (default ../shared/data).")
cache_dir_option = click.option("--cache-dir", default=None, envvar="TOXBENCH_CACHE", show_envvar=True,
                                help="Model/state/score cache (default ~/.cache/toxbench).")

model_options = bundle(
    model_option(),
    click.option("--revision", default=None, help="Hub revision (branch, tag or commit)."),
    dtype_option,
    device_option,
    threads_option,
    click.option("--trust-remote-code", is_flag=True, help="Allow model code from the hub (off by default)."),
)
path_options = bundle(data_dir_option, cache_dir_option)


def intervention_option(default: str | None = "none", help: str | None = None) -> Decorator:
    """``--intervention/-i`` (``default=None``: required)."""
    return click.option("--intervention", "-i", default=default, required=default is None,
                        show_default=default is not None,
                        help=help or "Name or composition, e.g. aura, det0, damp, preprompt, dpo, aura+preprompt.")


intervention_arg_option = click.option(
    "--intervention-arg", "-a", "intervention_args", multiple=True, metavar="KEY=VALUE",
    help="Intervention setting (repeatable); NAME.KEY=VALUE targets one part of a composition.")
intervention_state_option = click.option(
    "--intervention-state", default=None, type=click.Path(),
    help="A fitted state file (or DPO checkpoint dir) instead of the cached/fitted one.")
intervention_options = bundle(intervention_option(), intervention_arg_option, intervention_state_option)
dry_run_option = click.option("--dry-run", is_flag=True,
                              help="Check every input and say what would run; load no model, write nothing.")
