"""A method swept over its knob: one ordinary, resumable run dir per value, all paired with the same ``none`` run.

``--strength 0.25,0.5,1`` sweeps the method's strength knob (AurA's ``strength``, toxic vectors' ``scale``);
``-a k=250,500,1000`` (a comma list of numbers) sweeps any numeric setting, e.g. Det0/Damp's ``k``. A knob that is
applied to a fitted state (``Intervention.apply_keys``) never refits: the first point fits, the others load it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...interventions import INTERVENTIONS, split_names
from ..core.errors import UsageError
from ..spec.runspec import RunSpec
from ..spec.values import split_commas


def parse_grid_values(flag: str, raw: str) -> list[float]:
    """Comma-separated numbers >= 0; anything else is a one-line error naming the bad value."""
    items = split_commas([raw])
    if not items:
        raise UsageError(f"{flag} needs at least one value, e.g. {flag} 0.25,0.5,1")
    out = []
    for item in items:
        try:
            v = float(item)
        except ValueError:
            raise UsageError(f"{flag} value {item!r} is not a number; e.g. {flag} 0.25,0.5,1") from None
        if v < 0 or v != v:
            raise UsageError(f"{flag} value {item!r} is invalid: must be >= 0")
        out.append(int(v) if v.is_integer() and flag != "--strength" else v)
    return out


def _is_number_list(value: Any) -> bool:
    if not isinstance(value, str) or "," not in value:
        return False
    try:
        [float(x) for x in value.split(",") if x.strip()]
    except ValueError:
        return False
    return True


def sweep_grid(intervention: str, args: tuple[tuple[str, Any], ...], strength: str | None
               ) -> tuple[str, list[float], tuple[tuple[str, Any], ...]]:
    """(knob, values, the other intervention args) of a sweep; one-line errors for an empty, negative or
    non-numeric grid, a knob the method lacks, or no grid at all."""
    names = split_names(intervention)
    grids = [(k, v) for k, v in args if _is_number_list(v)]
    rest = tuple((k, v) for k, v in args if not _is_number_list(v))
    if strength is not None:
        knobs = [INTERVENTIONS.get(n).strength_key for n in names if INTERVENTIONS.get(n).strength_key]
        if not knobs:
            raise UsageError(f"{intervention!r} has no strength knob; sweep one of its numeric settings instead, "
                             f"e.g. -a k=250,500,1000 (Det0/Damp)")
        if grids:
            raise UsageError("sweep one knob at a time: --strength or one -a KEY=N1,N2,... list")
        return knobs[0], parse_grid_values("--strength", strength), rest
    if len(grids) != 1:
        raise UsageError("a sweep needs one grid: --strength 0.25,0.5,1 or -a KEY=N1,N2,... (e.g. -a k=250,500)"
                         if not grids else "sweep one knob at a time: one -a KEY=N1,N2,... list")
    key, raw = grids[0]
    return key.rpartition(".")[2], parse_grid_values(f"-a {key}", raw), rest


def point_args(intervention: str, rest: tuple[tuple[str, Any], ...], knob: str, value: float
               ) -> tuple[tuple[str, Any], ...]:
    """The intervention args of one sweep point. The method's default value is the plain run (AurA at strength 1
    is `aura`), so it shares that run's id and dir."""
    defaults = [INTERVENTIONS.get(n).defaults.get(knob) for n in split_names(intervention)]
    return rest if value in defaults else (*rest, (knob, value))


def sweep_specs(base: RunSpec, knob: str, values: list[float], rest: tuple[tuple[str, Any], ...]) -> list[RunSpec]:
    """The ``none`` spec first, then one spec per knob value (each checked like a run before anything runs)."""
    from .runner import validate

    none = dataclasses.replace(base, intervention="none", intervention_args=(), intervention_state=None)
    specs = [none] + [dataclasses.replace(base, intervention_args=point_args(base.intervention, rest, knob, v))
                      for v in values]
    for s in specs:
        validate(s)
    return specs


def run_sweep(specs: list[RunSpec], execute: Callable[..., Path], log: Callable[[str], None]) -> list[Path]:
    """Execute (or resume) every spec in order; returns their run dirs."""
    out = []
    for i, spec in enumerate(specs):
        label = spec.intervention + ("".join(f" {k}={v}" for k, v in spec.intervention_args[-1:])
                                     if spec.intervention != "none" else "")
        log(f"[sweep] {i + 1}/{len(specs)}: {label}")
        out.append(Path(execute(spec)))
    return out
