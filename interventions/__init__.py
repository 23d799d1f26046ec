"""Interventions: the protocol (base.py), the registry, and ``build`` which parses ``aura+preprompt`` specs,
validates arguments, and finds, loads or fits each part's state (cached per model)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..harness.core.defaults import DEFAULT_BATCH_SIZE, DEFAULT_SEED
from ..harness.core.errors import UsageError, did_you_mean
from ..harness.core.hardware import dtype_name
from ..harness.core.io import canonical_json, sha256_text
from ..harness.core.registry import Registry
from .base import Intervention, State
from .compose import Composite

INTERVENTIONS: Registry[type[Intervention]] = Registry(
    "intervention", "toxbench.interventions", package=__name__, builtins={
        "none": "base:Intervention", "aura": "aura:AurA", "det0": "aura:Det0", "damp": "aura:Damp",
        "preprompt": "preprompt:PrePrompt", "dpo": "dpo:DPO", "toxic-vectors": "toxic_vectors:ToxicVectors",
        "linear-act": "transport:LinearAcT", "mean-act": "transport:MeanAcT", "steer": "steer:Steer"})


def split_names(spec: str) -> list[str]:
    names = [n.strip() for n in spec.split("+") if n.strip()]
    if not names:
        raise UsageError("empty intervention; valid: " + ", ".join(INTERVENTIONS.names()))
    for n in names:
        if n not in INTERVENTIONS:
            raise did_you_mean(n, INTERVENTIONS.names(), "intervention")
    return names


def part_configs(names: list[str], args: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Route ``key=value`` (to every part that has the key) and ``name.key=value`` (to that part)."""
    classes = [INTERVENTIONS.get(n) for n in names]
    configs: list[dict[str, Any]] = [dict(getattr(c, "defaults", {})) for c in classes]
    for key, value in args:
        target, _, bare = key.rpartition(".")
        hit = False
        for name, cls, cfg in zip(names, classes, configs):
            if target and target != name:
                continue
            valid = getattr(cls, "defaults", {})
            if bare in valid:
                cfg[bare] = value
                hit = True
        if not hit:
            valid_keys = sorted({f"{n}.{k}" for n, c in zip(names, classes) for k in getattr(c, "defaults", {})})
            raise did_you_mean(key, valid_keys or ["(this intervention takes no arguments)"], "intervention argument")
    return configs


def check_args(spec: str, args: Iterable[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Every name, key and value of an intervention spec checked before anything loads (constructing a part
    without a state validates its values, e.g. a preprompt preset): the parts' configs."""
    names = split_names(spec)
    configs = part_configs(names, args)
    for name, cfg in zip(names, configs):
        INTERVENTIONS.get(name)(**cfg)
    return configs


def fit_dtype(model: Any) -> str:
    """The dtype a state is fitted in: part of its identity, since a fit in bf16 ranks units differently from a fit
    in fp32 (AurA's alphas differ by up to 0.3 on SmolLM2)."""
    param = next(iter(model.parameters()), None) if model is not None else None
    return dtype_name(param.dtype) if param is not None else "unknown"


def state_path(cache_dir: Path, model_fingerprint: str, name: str, config: dict[str, Any], dtype: str) -> Path:
    """Where the state fitted for (model, intervention config, fit dtype) is cached."""
    key = sha256_text(canonical_json({**config, "fit_dtype": dtype}))[:12]
    return cache_dir / "states" / model_fingerprint[:16] / f"{name}-{key}.safetensors"


def build(
    spec: str,
    args: Iterable[tuple[str, Any]] = (),
    *,
    model: Any = None,
    tokenizer: Any = None,
    model_fingerprint: str | None = None,
    model_name: str = "",
    state: str | None = None,
    cache_dir: Path | None = None,
    data_dir: Path | None = None,
    device: str = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = DEFAULT_SEED,
    fit_missing: bool = True,
    refit: bool = False,
    state_dtype: str | None = None,
    log=lambda msg: print(msg, file=sys.stderr),
) -> Intervention:
    """An Intervention (a Composite when ``spec`` has ``+``), each part ready to attach.

    A part that needs fitting uses, in order: ``state`` (an explicit path, given to the first such part), the
    cached state for (model, name, config), or a fresh fit (announced, then cached) when ``fit_missing``.
    ``state_dtype``: look up the state fitted in this dtype rather than the loaded model's (``export`` folds in
    float32 the state that `run` fitted in its own dtype); such a state is never fitted here.
    """
    names = split_names(spec)
    configs = part_configs(names, args)
    parts: list[Intervention] = []
    explicit = state
    for name, cfg in zip(names, configs):
        cls = INTERVENTIONS.get(name)
        if not cls.needs_state(cfg):
            parts.append(cls(**cfg))
            continue
        if explicit is not None:
            parts.append(cls(state=_explicit_state(Path(explicit), model_fingerprint), **cfg))
            explicit = None
            continue
        if cache_dir is None or model_fingerprint is None:
            raise UsageError(f"intervention {name!r} needs a fitted state: pass --intervention-state PATH")
        dtype = state_dtype or fit_dtype(model)
        fit_cfg = {k: v for k, v in cfg.items() if k not in cls.apply_keys}  # one state for every strength
        path = state_path(cache_dir, model_fingerprint, name, fit_config(cls, cfg), dtype)
        if path.is_file() and not refit:
            if state_dtype:
                log(f"[toxbench] {name}: the state fitted in {dtype} ({path})")
            parts.append(cls(state=State.load(path, model_fingerprint), **cfg))
            continue
        if state_dtype:
            raise UsageError(f"no {name} state fitted in {dtype} for {model_name or 'this model'}: fit it first with "
                             f"`toxbench fit --intervention {name} --dtype {dtype}` (what `run --dtype {dtype}` "
                             f"uses), or pass --intervention-state PATH")
        if not fit_missing:
            raise UsageError(f"no fitted state for {name!r} on this model; run `toxbench fit -i {name}` first")
        log(f"[toxbench] fitting {name} on {model_name or 'the model'} (cached at {path})")
        parts.append(cls(state=_fit(cls, fit_cfg, path, model, tokenizer, data_dir=data_dir, cache_dir=cache_dir,
                                    device=device, batch_size=batch_size, model_fingerprint=model_fingerprint,
                                    model_name=model_name, seed=seed), **cfg))
    return parts[0] if len(parts) == 1 else Composite(parts)


def _explicit_state(path: Path, model_fingerprint: str | None) -> State:
    """``--intervention-state``: a state file, or a folder holding ``state.safetensors`` (a DPO checkpoint)."""
    if path.is_dir() and (path / "state.safetensors").is_file():
        path = path / "state.safetensors"
    return State.load(path, model_fingerprint)


def _fit(cls: type[Intervention], cfg: dict[str, Any], path: Path, model: Any, tokenizer: Any,
         **context: Any) -> State:
    """Fit one part's state (identified by the model it was fitted on) and cache it at ``path``."""
    fitted = cls(**cfg).fit(model, tokenizer, **context)
    fitted.metadata.setdefault("model_fingerprint", context["model_fingerprint"])
    fitted.metadata.setdefault("model", context["model_name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fitted.save(path)
    return fitted


def state_files(intervention: Intervention, cache_dir: Path, model_fingerprint: str, model: Any) -> list[Path]:
    """Where each fitted part's state is cached (for `toxbench fit` to print)."""
    return [state_path(cache_dir, model_fingerprint, p.name, fit_config(type(p), p.config), fit_dtype(model))
            for p in intervention.parts if p.state is not None and type(p).needs_state(p.config)]


def fit_config(cls: type[Intervention], config: dict[str, Any]) -> dict[str, Any]:
    """The config a state is fitted (and cached) under: the part's normalised config without its apply keys."""
    return cls(**{k: v for k, v in config.items() if k not in cls.apply_keys}).config
