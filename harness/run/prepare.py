"""One setup path for every command that needs a model: load it, build its intervention (load or fit the state),
and load the intervention's weights instead when it is a weight-space one (a merged DPO checkpoint).

``toxbench run`` (runner.execute), ``fit``, ``export``, ``pairs`` and ``analyze activations`` all go through
``prepare``, so a model is loaded, identified and intervened on the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...interventions import build
from ...interventions.base import Intervention
from ..core import models  # models.load_model looked up per call: tests stand in for it
from ..core.defaults import DEFAULT_BATCH_SIZE, DEFAULT_SEED
from ..core.hardware import resolve_device
from ..core.models import LoadedModel
from ..core.paths import cache_dir as resolve_cache_dir


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass(frozen=True)
class Setup:
    """What determines the prepared model and intervention (a RunSpec's subset; ``Setup.of(spec)``)."""

    model: str
    revision: str | None = None
    dtype: str | torch.dtype = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    intervention: str = "none"
    intervention_args: tuple[tuple[str, Any], ...] = ()
    intervention_state: str | None = None
    cache_dir: str | Path | None = None
    data_dir: Path | None = None  # resolved by the caller; None when nothing is fitted (no data needed)
    batch_size: int = DEFAULT_BATCH_SIZE
    seed: int = DEFAULT_SEED
    refit: bool = False
    state_dtype: str | None = None  # look up the state fitted in this dtype (export); None: the model's

    @classmethod
    def of(cls, spec: Any, **override: Any) -> Setup:
        """The setup of a RunSpec (``override``: e.g. the resolved device or dtype)."""
        kw = {"model": spec.model, "revision": spec.model_revision, "dtype": spec.dtype, "device": spec.device,
              "trust_remote_code": spec.trust_remote_code, "intervention": spec.intervention,
              "intervention_args": spec.intervention_args, "intervention_state": spec.intervention_state,
              "cache_dir": spec.cache_dir or None, "batch_size": spec.batch_size, "seed": spec.seed}
        return cls(**{**kw, **override})


@dataclass
class Prepared:
    """The model to evaluate (the base model, or the intervention's own weights) and the intervention on it."""

    loaded: LoadedModel
    intervention: Intervention
    base: dict[str, Any]  # the base model's identity (name, source, revision, fingerprint)
    weights: str | None = None  # the weight-space intervention's checkpoint loaded instead of the base weights

    def describe(self) -> dict[str, Any]:
        """The model's protocol entry: the base identity, plus the weights actually run under an override."""
        if self.weights is None:
            return dict(self.base)
        return {**self.base, "weights": self.weights, "weights_fingerprint": self.loaded.fingerprint}


def prepare(setup: Setup, *, loaded: LoadedModel | None = None, load_override: bool = True,
            log: Callable[[str], None] = _stderr) -> Prepared:
    """Load ``setup.model`` (or take the caller's ``loaded``), build ``setup.intervention`` on it, and, when the
    intervention is weight-space and ``load_override``, load its checkpoint instead (under the base model's name;
    ``Prepared`` keeps the base model's description, not the base model)."""
    device = resolve_device(setup.device)
    cache = resolve_cache_dir(setup.cache_dir)
    if loaded is None:
        loaded = models.load_model(setup.model, dtype=setup.dtype, device=device, revision=setup.revision,
                                   cache_dir=cache, trust_remote_code=setup.trust_remote_code)
    intervention = build(
        setup.intervention, setup.intervention_args, model=loaded.model, tokenizer=loaded.tokenizer,
        model_fingerprint=loaded.fingerprint, model_name=setup.model, state=setup.intervention_state,
        cache_dir=cache, data_dir=setup.data_dir, device=device, batch_size=setup.batch_size, seed=setup.seed,
        refit=setup.refit, state_dtype=setup.state_dtype, log=log,
    )
    base = loaded.describe()
    override = intervention.model_override() if load_override else None
    if override:  # weight-space intervention: same base model identity, other weights
        base_model = loaded.model
        loaded = models.load_model(setup.model, dtype=setup.dtype, device=device, cache_dir=cache,
                                   weights_override=override)
        lam = weight_strength(intervention)
        if lam != 1.0:
            interpolate_weights(loaded.model, base_model, lam)
            loaded.model.__dict__.pop("_toxbench_fingerprint", None)
            loaded = dataclasses.replace(loaded, fingerprint=models.model_fingerprint(loaded.model))
    return Prepared(loaded, intervention, base, override or None)


def weight_strength(intervention: Intervention) -> float:
    """λ of a weight-space intervention's ``strength`` (1: its own weights as trained)."""
    return float(next((p.config.get("strength", 1.0) for p in intervention.parts if p.kind == "weight"), 1.0))


@torch.no_grad()
def interpolate_weights(model: torch.nn.Module, base: torch.nn.Module, lam: float) -> None:
    """W = W0 + λ (W1 - W0) in place on ``model`` (W1) from ``base`` (W0): a DPO curve with no retraining."""
    base_params = dict(base.state_dict())
    for name, p in model.state_dict().items():
        if p.is_floating_point() and name in base_params:
            p.copy_(base_params[name].to(p.dtype) + lam * (p - base_params[name].to(p.dtype)))
