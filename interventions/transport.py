"""Linear-AcT and Mean-AcT: Activation Transport (Rodriguez et al., ICLR 2025, "Controlling Language and Diffusion
Models by Transporting Activations"; code: apple/ml-act ``linear_ot`` / ``mean_ot``).

Both learn, per unit of the chosen modules, a map that moves the responses of toxic sentences onto those of
non-toxic ones (``transport_fit.py``), and apply it with strength λ: ``a <- (1 - λ) a + λ (ω a + β)``.
Defaults follow ml-act's configs: mean pooling over tokens, incremental estimation, Linear-AcT applied only inside
the toxic responses' range (``q_0_100``), Mean-AcT everywhere (``q_all``), the family's module set
(``module_presets.TRANSPORT_PRESETS``). Sentences: the same Jigsaw file, per-class count and seed as AurA, so the
two methods learn from the same sentences. docs/linear-act.md and docs/mean-act.md list the deviations.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Iterator
from typing import Any, ClassVar

import torch

from ..harness.core.errors import UsageError, did_you_mean
from .aura import DEFAULT_DATA
from .base import Intervention, State
from .forward_hooks import hooked, resolve_modules
from .module_presets import TRANSPORT_PRESETS, default_patterns
from .responses import POOLINGS, collect_responses
from .sentences import FitContext, fit_device, labelled_sentences, merged_config, state_metadata
from .transport_fit import MODES, fit_incremental, fit_map, parse_quantiles, transport_hook

#: ml-act's names for the estimation modes.
_MODE_ALIASES = {"incr": "incremental", "atonce": "atonce", "incremental": "incremental", "all": "atonce"}
_PARTS = ("omega", "beta", "lo", "hi")


class LinearAcT(Intervention):
    """Linear-AcT: per-unit affine transport fitted by least squares on rank-paired (1-D OT) responses."""

    name: ClassVar[str] = "linear-act"
    kind: ClassVar[str] = "activation"
    needs_fit: ClassVar[bool] = True
    method: ClassVar[str] = "linear"
    apply_keys: ClassVar[tuple[str, ...]] = ("strength",)
    strength_key: ClassVar[str | None] = "strength"
    defaults: ClassVar[dict[str, Any]] = {
        "modules": "auto",  # comma-separated globs; "auto" = ml-act's module set for the family
        "data": DEFAULT_DATA,
        "text_column": 0,
        "label_column": 1,
        "n_per_class": 128,  # as AurA: the same sentences for both methods
        "seq_len": 128,  # ml-act's model configs
        "pooling": "mean",  # ml-act's linear_ot/mean_ot (AurA: max)
        "skip_first_token": True,  # pool without the first token (attention-sink outliers; docs/linear-act.md)
        "mode": "incremental",  # ml-act's toxicity default (incremental: incr); or "atonce"
        "quantiles": "q_0_100",  # ml-act's linear_ot quantiles_src: map only inside the toxic responses' range
        "std_eps": 1e-4,
        "strength": 1.0,  # λ (applied, never part of the fit): 0 = the unmitigated model, 1 = the full map
    }

    def __init__(self, state: State | None = None, **config: Any) -> None:
        merged = merged_config(self.name, self.defaults, config)
        if merged["pooling"] not in POOLINGS:
            raise did_you_mean(str(merged["pooling"]), POOLINGS, "pooling")
        mode = _MODE_ALIASES.get(str(merged["mode"]))
        if mode is None:
            raise did_you_mean(str(merged["mode"]), MODES, f"{self.name} mode")
        merged["mode"] = mode
        parse_quantiles(merged["quantiles"])
        super().__init__(state=state, **merged)
        if state is not None:
            method = state.metadata.get("method")
            if method != self.method:
                raise UsageError(f"intervention state was fitted for {method!r}, not for {self.method!r}")

    # -- learning ---------------------------------------------------------------------------------------------
    def fit(self, model: torch.nn.Module, tokenizer: Any, **context: Any) -> State:
        cfg, ctx = self.config, FitContext.of(context)
        patterns = self._patterns(model)
        names = resolve_modules(model, patterns)
        texts, y, data_path = labelled_sentences(cfg, ctx.data_dir, ctx.seed)
        dev = fit_device(model, ctx.device)
        t0 = time.perf_counter()
        common = {"method": self.method, "quantiles": cfg["quantiles"], "std_eps": float(cfg["std_eps"])}
        if cfg["mode"] == "incremental":
            maps = fit_incremental(model, tokenizer, texts, y, names, seq_len=cfg["seq_len"], pooling=cfg["pooling"],
                                   device=dev, batch_size=ctx.batch_size, skip_first=cfg["skip_first_token"], **common)
        else:
            resp = collect_responses(model, tokenizer, texts, y, names, batch_size=ctx.batch_size,
                                     seq_len=cfg["seq_len"], pooling=cfg["pooling"], device=dev, progress=ctx.progress,
                                     skip_first=cfg["skip_first_token"])
            maps = {n: fit_map(resp.matrix(n), y, **common) for n in names}
        self.fit_timing = {"fit_s": time.perf_counter() - t0, "sentences": len(texts),
                           "units": sum(m["omega"].numel() for m in maps.values())}
        meta = state_metadata(self, model, ctx, data_path, y, method=self.method,
                              patterns=list(patterns), modules=names)
        tensors = {f"{n}/{part}": t for n, m in maps.items() for part, t in m.items()}
        return State(tensors=tensors, metadata=meta)

    # -- applying ---------------------------------------------------------------------------------------------
    def maps(self) -> dict[str, dict[str, torch.Tensor]]:
        """``{module: {"omega", "beta"[, "lo", "hi"]}}`` from the state."""
        if self.state is None:
            raise UsageError(f"intervention {self.name!r} needs a fitted state: run `toxbench fit --intervention "
                             f"{self.name}` or pass --intervention-state PATH")
        out: dict[str, dict[str, torch.Tensor]] = {}
        for key, t in self.state.tensors.items():
            module, _, part = key.rpartition("/")
            if part not in _PARTS or not module:
                raise UsageError(f"intervention state tensor {key!r} is not part of a transport map")
            out.setdefault(module, {})[part] = t.to(torch.float32)
        return out

    def affine(self, model: torch.nn.Module | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{module: (scale, shift)}`` with ``output <- scale * output + shift``, what ``fold.py`` writes into the
        weights; a map under a range mask is not affine, so it cannot be folded."""
        self.check_foldable(self.config)
        lam = float(self.config["strength"])
        return {name: (1 + lam * (m["omega"] - 1), lam * m["beta"]) for name, m in self.maps().items()}

    @classmethod
    def check_foldable(cls, config: dict[str, Any]) -> None:
        quantiles = config.get("quantiles", cls.defaults["quantiles"])
        if parse_quantiles(quantiles) is not None:
            raise UsageError(f"{cls.name} with quantiles={quantiles} transports only activations inside the toxic "
                             "responses' range, which weights cannot express; export needs a state fitted with "
                             "-a quantiles=q_all (or run it with hooks)")

    @contextlib.contextmanager
    def attach(self, model: torch.nn.Module) -> Iterator[None]:
        cache = self.__dict__.setdefault("_hook_cache", weakref.WeakKeyDictionary())
        hooks = cache.get(model)
        if hooks is None:
            maps = self.maps()
            _check_widths(model, maps)
            lam = float(self.config["strength"])
            hooks = cache[model] = {n: transport_hook(m, lam) for n, m in maps.items()} if lam else {}
        with hooked(model, hooks):
            yield

    def _patterns(self, model: torch.nn.Module) -> list[str]:
        mods = self.config["modules"]
        if mods in (None, "", "auto"):
            return default_patterns(model, TRANSPORT_PRESETS)
        return [p.strip() for p in str(mods).split(",") if p.strip()]


class MeanAcT(LinearAcT):
    """Mean-AcT: the mean shift only (ω = 1, β = mean(non-toxic) − mean(toxic)), applied everywhere (ml-act's
    ``mean_ot``: ``quantiles_src: q_all``), so it folds into any output with a bias."""

    name: ClassVar[str] = "mean-act"
    method: ClassVar[str] = "mean"
    defaults: ClassVar[dict[str, Any]] = {**LinearAcT.defaults, "quantiles": "q_all"}


def output_width(module: torch.nn.Module) -> int | None:
    """Units of a module's output: a Linear's / Conv1D's outputs, a norm's weight length; None when unknown."""
    width = getattr(module, "out_features", None) or getattr(module, "nf", None)
    weight = getattr(module, "weight", None)
    if width is None and isinstance(weight, torch.Tensor) and weight.dim() == 1:
        width = weight.numel()
    return width


def _check_widths(model: torch.nn.Module, maps: dict[str, dict[str, torch.Tensor]]) -> None:
    modules = dict(model.named_modules())
    for name, m in maps.items():
        mod = modules.get(name)
        if mod is None:
            raise did_you_mean(name, [n for n in modules if n], "module in intervention state")
        width = output_width(mod)
        if width is not None and m["omega"].numel() != width:
            raise UsageError(f"intervention state has {m['omega'].numel()} units for {name!r} but the module "
                             f"outputs {width}; the state was fitted on another model")
