"""The options every command shares, declared once: model, dtype, device, threads, seed, data and cache dirs.

A command stacks the bundles it needs (``@model_options``, ``@path_options``, ``@threads_option`` ...), so a
setting has one name, one default and one help text across the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..core.defaults import DEFAULT_MODEL, DEFAULT_SEED
from ..core.hardware import set_threads

__all__ = ["DEFAULT_MODEL", "DEFAULT_SEED", "bundle", "model_options", "path_options", "intervention_options",
           "threads_option", "seed_option", "dtype_option", "device_option", "model_option", "dry_run_option"]

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
seed_option = click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True)
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
intervention_options = bundle(
    click.option("--intervention", "-i", default="none", show_default=True,
                 help="Name or composition, e.g. aura, det0, damp, preprompt, dpo, aura+preprompt."),
    click.option("--intervention-arg", "-a", "intervention_args", multiple=True, metavar="KEY=VALUE",
                 help="Intervention setting (repeatable); NAME.KEY=VALUE targets one part of a composition."),
    click.option("--intervention-state", default=None, type=click.Path(),
                 help="A fitted state file (or DPO checkpoint dir) instead of the cached/fitted one."),
)
dry_run_option = click.option("--dry-run", is_flag=True,
                              help="Check every input and say what would run; load no model, write nothing.")
