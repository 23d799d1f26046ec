"""Scale the activations of the toxic MLP value vectors (Lee et al. 2024; Li, Yong & Bach 2024, Table 4).

``fit`` trains the residual-stream toxicity probe, takes the top-``top_k`` MLP value vectors by cosine with it and
keeps those whose neurons fire positively while the model continues English RTP-LX prompts
(``toxbench.harness.measure.analysis.value_vectors``); the state stores their ``(layer, neuron)`` list. ``attach``
multiplies those neurons' activations -- the input of the MLP down projection at those indices, i.e. the
coefficient of each value vector -- by ``scale`` (0 removes the vectors' contribution, >1 amplifies it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..harness.core import models
from ..harness.core.defaults import DEFAULT_SEED
from ..harness.core.errors import UsageError
from ..harness.core.paths import data_dir as resolve_data_dir
from ..harness.measure.analysis.probe import ProbeSettings
from ..harness.measure.analysis.value_vectors import find_toxic_vectors_cached, mlp_sites, vectors_state
from .base import Intervention, State
from .forward_hooks import hooked

PreHook = Callable[[torch.nn.Module, tuple], Any]


def pre_hooked(model: torch.nn.Module, hooks: Mapping[str, PreHook]):
    """``hooked`` for forward *pre*-hooks (same rules: names validated first, only our handles removed)."""
    return hooked(model, hooks, pre=True)


def scale_input_hook(alpha: torch.Tensor) -> PreHook:
    """A pre-hook multiplying a module's first input by ``alpha`` along its last (neuron) dimension."""
    cache: dict[tuple, torch.Tensor] = {}

    def hook(module: torch.nn.Module, args: tuple) -> tuple:
        x = args[0]
        key = (x.dtype, x.device)
        a = cache.get(key)
        if a is None:
            a = cache[key] = alpha.to(dtype=x.dtype, device=x.device)
        return (x * a, *args[1:])

    return hook


class ToxicVectors(Intervention):
    """Activation space: the toxic value vectors' neurons scaled by ``scale`` (see the module docstring)."""

    name: ClassVar[str] = "toxic-vectors"
    kind: ClassVar[str] = "activation"
    needs_fit: ClassVar[bool] = True
    apply_keys: ClassVar[tuple[str, ...]] = ("scale",)
    strength_key: ClassVar[str | None] = "scale"
    defaults: ClassVar[dict[str, Any]] = {
        "scale": 0.0,  # factor on the toxic neurons' activations (attach only; fit ignores it)
        "top_k": 100,  # candidates by cosine with the probe (both papers: 100)
        "n_new_tokens": 20,  # greedy tokens over which activations are averaged (both papers: 20)
        "prompts": 200,  # English RTP-LX prompts used to keep positively-activated vectors (null: all)
        "probe_limit": 2000,  # Jigsaw comments for the probe (null: the whole file)
        "jigsaw_file": "robtest_balanced/test.csv",
    }

    # -- fit -------------------------------------------------------------------------------------------------------
    def fit(self, model: torch.nn.Module, tokenizer: Any, **context: Any) -> State:
        cfg = {**self.defaults, **self.config}
        data_dir = resolve_data_dir(context.get("data_dir"))
        seed = int(context.get("seed", DEFAULT_SEED))
        fingerprint = context.get("model_fingerprint") or models.model_fingerprint(model)
        probe, vectors = find_toxic_vectors_cached(
            model,
            tokenizer,
            data_dir,
            context.get("cache_dir"),
            ProbeSettings(jigsaw_file=cfg["jigsaw_file"], limit=cfg["probe_limit"], seed=seed),
            top_k=int(cfg["top_k"]),
            n_new_tokens=int(cfg["n_new_tokens"]),
            prompt_limit=cfg["prompts"],
            seed=seed,
            batch_size=int(context.get("batch_size", 16)),
            model_fingerprint=fingerprint,
            model_name=context.get("model_name", ""),
            progress=context.get("progress", True),
        )
        kept = [v for v in vectors if v.kept]
        if not kept:
            raise UsageError("no toxic value vector has a positive mean activation on the English prompts; "
                             "nothing to scale (try a larger top_k)")
        return vectors_state(kept, probe, fingerprint, context.get("model_name", ""),
                             {k: cfg[k] for k in cfg if k != "scale"}, n_candidates=len(vectors))

    # -- attach ----------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def attach(self, model: torch.nn.Module) -> Iterator[None]:
        if self.state is None:
            raise UsageError("toxic-vectors needs a fitted state: run `toxbench fit --intervention toxic-vectors` "
                             "or pass --intervention-state PATH")
        scale = float(self.config.get("scale", self.defaults["scale"]))
        hooks = {name: scale_input_hook(alpha) for name, alpha in neuron_scales(model, self.state, scale).items()}
        with pre_hooked(model, hooks):
            yield


def state_neurons(state: State) -> list[tuple[int, int]]:
    if "layers" not in state.tensors or "neurons" not in state.tensors:
        raise UsageError("state is not a toxic-vectors state (needs 'layers' and 'neurons' tensors)")
    return list(zip(state.tensors["layers"].tolist(), state.tensors["neurons"].tolist()))


def neuron_scales(model: torch.nn.Module, state: State, scale: float) -> dict[str, torch.Tensor]:
    """``{down-projection module name: per-neuron factor}`` for the layers that hold toxic vectors."""
    sites = {s.layer: s for s in mlp_sites(model)}
    out: dict[str, torch.Tensor] = {}
    for layer, neuron in state_neurons(state):
        site = sites.get(layer)
        if site is None:
            raise UsageError(f"toxic-vectors state names MLP layer {layer}, but the model has layers "
                             f"0..{max(sites)}; it was fitted on another model")
        if not 0 <= neuron < site.d_mlp:
            raise UsageError(f"toxic-vectors state names neuron {neuron} of layer {layer}, but that MLP has "
                             f"{site.d_mlp} neurons; it was fitted on another model")
        alpha = out.setdefault(site.name, torch.ones(site.d_mlp))
        alpha[neuron] = scale
    return out


def load_vectors(path: str | Path, model_fingerprint: str | None = None) -> list[tuple[int, int]]:
    """``(layer, neuron)`` pairs from a toxic-vectors state file (``analyze toxic-vectors`` or ``fit``)."""
    return state_neurons(State.load(path, model_fingerprint))
