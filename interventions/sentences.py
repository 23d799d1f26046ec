"""What the interventions learned from labelled sentences share: their config checks, the sentences, and the
metadata every such state carries (model fingerprint, data file + hash, counts, seed, config, version)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..harness.core import models
from ..harness.core.defaults import DEFAULT_BATCH_SIZE, DEFAULT_SEED
from ..harness.core.errors import UsageError, did_you_mean
from ..harness.core.io import sha256_file
from .aura import _coerce, _data_path, _version, load_labelled_texts


@dataclass(frozen=True)
class FitContext:
    """What ``build`` passes every ``fit`` (``**context``), with the defaults a direct call gets."""

    data_dir: str | Path | None = None
    device: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    model_fingerprint: str | None = None
    model_name: str | None = None
    seed: int = DEFAULT_SEED
    progress: bool = True

    @classmethod
    def of(cls, context: dict[str, Any]) -> FitContext:
        return cls(**{k: v for k, v in context.items() if k in cls.__dataclass_fields__})


def merged_config(name: str, defaults: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` updated by ``config`` (CLI strings coerced to the defaults' types); unknown keys, a negative
    ``n_per_class`` or ``strength`` and a ``seq_len`` below 1 are one-line errors."""
    unknown = [k for k in config if k not in defaults]
    if unknown:
        raise did_you_mean(unknown[0], defaults, f"{name} argument")
    merged = {k: _coerce(k, config.get(k, v), v) for k, v in defaults.items()}
    if int(merged.get("n_per_class", 0)) < 0 or int(merged.get("seq_len", 1)) < 1:
        raise UsageError("n_per_class must be >= 0 and seq_len >= 1")
    if float(merged.get("strength", 0)) < 0:
        raise UsageError(f"{name} strength {merged['strength']!r} is invalid: must be >= 0 (0 = the unmitigated "
                         "model)")
    return merged


def labelled_sentences(cfg: dict[str, Any], data_dir: str | Path | None, seed: int
                       ) -> tuple[list[str], torch.Tensor, Path]:
    """The config's sentences (``n_per_class`` of each class, drawn with ``seed``), their labels as a bool tensor
    (toxic = True) and the data file."""
    path = _data_path(cfg["data"], data_dir)
    texts, labels = load_labelled_texts(path, cfg["text_column"], cfg["label_column"], cfg["n_per_class"], seed)
    return texts, torch.tensor(labels, dtype=torch.bool), path


def fit_device(model: torch.nn.Module, device: str | None) -> torch.device:
    """The device the fit's forward passes run on: the one asked for, else the model's."""
    return torch.device(device) if device not in (None, "auto") else next(model.parameters()).device


def state_metadata(intervention: Any, model: torch.nn.Module, ctx: FitContext, data_path: Path,
                   labels: torch.Tensor, **extra: Any) -> dict[str, Any]:
    """The metadata of a state fitted on sentences; the config without the apply keys (one state, every λ)."""
    cfg = intervention.config
    return {
        "intervention": intervention.name,
        "model_fingerprint": ctx.model_fingerprint or models.model_fingerprint(model),
        "model": ctx.model_name or getattr(getattr(model, "config", None), "_name_or_path", "") or "",
        "data_file": str(cfg["data"]),
        "data_sha256": sha256_file(data_path),
        "counts": {"toxic": int(labels.sum()), "non_toxic": int((~labels).sum())},
        "seed": int(ctx.seed),
        "config": {k: v for k, v in sorted(cfg.items()) if k not in intervention.apply_keys},
        "toxbench_version": _version(),
        **extra,
    }
