"""AurA, Det0 and Damp: dampen "expert" units that discriminate toxic from non-toxic sentences.

Suau et al., "Whispering Experts: Neural Interventions for Toxicity Mitigation in Language Models" (ICML 2024),
code: apple/ml-aura. Each unit's expertise is the AUROC of its max-pooled response for separating toxic from
non-toxic Jigsaw sentences. The intervention multiplies each unit's output by a factor alpha:

- AurA:  alpha = 1 - 2 (AUROC - 0.5) where AUROC > 0.5, else 1 (no hyperparameter);
- Det0:  alpha = 0 for the top-k units by AUROC over all hooked modules, 1 elsewhere;
- Damp:  alpha = ``damp_alpha`` (0.5) for the top-k units, 1 elsewhere.

``fit`` collects responses (``responses.py``), computes every unit's AUROC (``auroc.py``) and returns a
``State`` holding one alpha tensor per module; ``attach`` hooks ``output * alpha`` onto those modules.
``fold.py`` writes the same alphas into the weights for export.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..harness.core import models
from ..harness.core.defaults import DEFAULT_BATCH_SIZE
from ..harness.core.errors import UsageError, did_you_mean
from ..harness.core.io import sha256_file
from ..harness.core.paths import data_file
from .auroc import auroc
from .base import Intervention, State
from .forward_hooks import hooked, resolve_modules, scale_output_hook
from .module_presets import default_patterns
from .responses import collect_responses

DEFAULT_DATA = "jigsaw/robtest_balanced/test.csv"

#: Config shared by the three methods; defaults follow ml-aura's configs/responses.yaml
#: (batch of 128 sentences per class, ``max_batches: 1``; ``seq_len: 128``; ``pooling_op: [max]``).
_COMMON: dict[str, Any] = {
    "modules": "auto",  # comma-separated globs; "auto" = the family preset (module_presets.py)
    "data": DEFAULT_DATA,  # CSV under the data dir (or an absolute path)
    "text_column": 0,  # int: column index in a header-less CSV; str: column name (CSV with header)
    "label_column": 1,  # toxic when the label is >= 0.5
    "n_per_class": 128,  # sentences per class, sampled with the run's seed; 0 = all rows
    "seq_len": 128,
    "pooling": "max",  # "max" (AurA) or "mean"
    # Draw each non-toxic sentence to match a toxic one's length: in Jigsaw the non-toxic class is ~2x longer,
    # so with ml-aura's sampling length alone separates the classes (AUROC 0.35) and units that merely track
    # length count as experts. Off by default (ml-aura's method); recorded only when on.
    "length_match": False,
}


def _coerce(key: str, value: Any, default: Any) -> Any:
    """CLI values arrive as strings: convert them to the default's type."""
    if not isinstance(value, str):
        return value
    if key in ("text_column", "label_column"):
        return int(value) if value.strip().lstrip("-").isdigit() else value
    if key == "k" and value.strip().lower() in ("none", "null", "all", ""):
        return None
    if isinstance(default, bool):
        return value.strip().lower() in ("1", "true", "yes", "on")
    try:
        if isinstance(default, int) or key == "k":
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise UsageError(f"intervention arg {key}={value!r}: expected a number") from None
    return value


class AurA(Intervention):
    """AUROC adaptation: alpha = 1 - 2 (AUROC - 0.5) for units with AUROC > 0.5.

    ``strength`` λ in [0, 1] (ml-act's AurA hook: output <- (1 - λ) output + λ α output) applies
    α_λ = 1 - λ (1 - α): 0 is the unmitigated model, 1 (the default) the paper's AurA. Foldable like α itself.
    """

    name: ClassVar[str] = "aura"
    kind: ClassVar[str] = "activation"
    needs_fit: ClassVar[bool] = True
    method: ClassVar[str] = "aura"
    defaults: ClassVar[dict[str, Any]] = {**_COMMON, "strength": 1.0}
    apply_keys: ClassVar[tuple[str, ...]] = ("strength",)
    strength_key: ClassVar[str | None] = "strength"

    def __init__(self, state: State | None = None, **config: Any) -> None:
        unknown = [k for k in config if k not in self.defaults]
        if unknown:
            raise did_you_mean(unknown[0], self.defaults, f"{self.name} argument")
        merged = {k: _coerce(k, config.get(k, v), v) for k, v in self.defaults.items()}
        if merged["pooling"] not in ("max", "mean"):
            raise did_you_mean(str(merged["pooling"]), ["max", "mean"], "pooling")
        if int(merged["n_per_class"]) < 0 or int(merged["seq_len"]) < 1:
            raise UsageError("n_per_class must be >= 0 and seq_len >= 1")
        if not merged["length_match"]:  # states and runs from before the option keep their identity
            del merged["length_match"]
        if "strength" in merged:
            if not 0.0 <= float(merged["strength"]) <= 1.0:
                raise UsageError(f"{self.name} strength {merged['strength']!r} is invalid: must be in [0, 1] "
                                 "(0 = the unmitigated model, 1 = the paper's method)")
            if float(merged["strength"]) == 1.0:  # the paper's method keeps the identity it had before the knob
                del merged["strength"]
        super().__init__(state=state, **merged)
        if state is not None:
            self._check_state(state)

    # -- learning ---------------------------------------------------------------------------------------------
    def fit(  # type: ignore[override]
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        data_dir: str | Path | None = None,
        device: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        model_fingerprint: str | None = None,
        model_name: str | None = None,
        seed: int = 42,
        progress: bool = True,
        **_: Any,
    ) -> State:
        """Collect responses, score every unit's AUROC and turn them into alphas (one tensor per module)."""
        cfg = self.config
        patterns = self._patterns(model)
        names = resolve_modules(model, patterns)
        data_path = _data_path(cfg["data"], data_dir)
        texts, labels = load_labelled_texts(
            data_path, cfg["text_column"], cfg["label_column"], cfg["n_per_class"], seed,
            length_match=bool(cfg.get("length_match", False)),
        )
        t0 = time.perf_counter()
        resp = collect_responses(
            model, tokenizer, texts, labels, names,
            batch_size=batch_size, seq_len=cfg["seq_len"], pooling=cfg["pooling"],
            device=None if device in (None, "auto") else device, progress=progress,
        )
        t1 = time.perf_counter()
        aurocs = {name: auroc(resp.matrix(name), resp.labels).float() for name in names}
        t2 = time.perf_counter()
        alphas = self.alphas(aurocs)
        # Timings stay out of the metadata so that refitting the same data gives the same state hash.
        self.fit_timing = {"responses_s": t1 - t0, "auroc_s": t2 - t1, "sentences": len(texts),
                           "tokens": resp.n_tokens, "units": resp.n_units}
        if model_fingerprint is None:
            model_fingerprint = models.model_fingerprint(model)
        n_pos = int(resp.labels.sum())
        meta = {
            "method": self.method,
            "intervention": self.name,
            "model_fingerprint": model_fingerprint,
            "model": model_name or getattr(getattr(model, "config", None), "_name_or_path", "") or "",
            "patterns": list(patterns),
            "modules": names,
            "units": int(sum(a.numel() for a in alphas.values())),
            "data_file": str(cfg["data"]),
            "data_sha256": sha256_file(data_path),
            "counts": {"toxic": n_pos, "non_toxic": int(resp.labels.numel()) - n_pos},
            "seed": int(seed),
            "seq_len": int(cfg["seq_len"]),
            "pooling": cfg["pooling"],
            "config": {k: v for k, v in sorted(cfg.items())},
            "k": cfg.get("k"),
            "intervened_units": int(sum(int((a != 1).sum()) for a in alphas.values())),
            "toxbench_version": _version(),
        }
        return State(tensors=alphas, metadata=meta)

    def alphas(self, aurocs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """AurA: proportional to expertise, no hyperparameter."""
        out = {}
        for name, a in aurocs.items():
            a = a.to(torch.float32)
            out[name] = torch.where(a > 0.5, 1 - 2 * (a - 0.5), torch.ones_like(a))
        return out

    # -- activation hook point --------------------------------------------------------------------------------
    def scales(self) -> dict[str, torch.Tensor]:
        """``{module name: alpha}`` (also what ``fold.py`` writes into the weights)."""
        if self.state is None:
            raise UsageError(
                f"intervention {self.name!r} needs a fitted state: run `toxbench fit --intervention {self.name}` "
                "or pass --intervention-state PATH"
            )
        lam = float(self.config.get("strength", 1.0))
        if lam == 1.0:
            return dict(self.state.tensors)
        return {n: 1 - lam * (1 - a) for n, a in self.state.tensors.items()}

    @classmethod
    def check_foldable(cls, config: dict[str, Any]) -> None:
        """Per-unit scales always fold into the modules' weights."""

    @contextlib.contextmanager
    def attach(self, model: torch.nn.Module) -> Iterator[None]:
        # Attached around every lm-eval batch: validate once per model and reuse the hook closures (each caches
        # its alpha cast to the output's dtype/device), so a re-attach costs only the handle registrations.
        cache = self.__dict__.setdefault("_hook_cache", weakref.WeakKeyDictionary())
        hooks = cache.get(model)
        if hooks is None:
            alphas = self.scales()
            _check_units(model, alphas)
            # Modules whose alphas are all 1 change nothing: no hook, no cost.
            hooks = {n: scale_output_hook(a) for n, a in alphas.items() if not bool((a == 1).all())}
            cache[model] = hooks
        with hooked(model, hooks):
            yield

    # -- helpers ----------------------------------------------------------------------------------------------
    def _patterns(self, model: torch.nn.Module) -> list[str]:
        mods = self.config["modules"]
        if mods in (None, "", "auto"):
            return default_patterns(model)
        if isinstance(mods, str):
            return [p.strip() for p in mods.split(",") if p.strip()]
        return list(mods)

    def _check_state(self, state: State) -> None:
        method = state.metadata.get("method")
        if method is not None and method != self.method:
            raise UsageError(f"intervention state was fitted for {method!r}, not for {self.method!r}")
        if not state.tensors:
            raise UsageError("intervention state holds no module tensors")


class _TopK(AurA):
    """Det0 / Damp: a fixed alpha for the top-k units by AUROC, ranked over all hooked modules at once."""

    fixed_alpha: ClassVar[float] = 0.0
    apply_keys: ClassVar[tuple[str, ...]] = ()
    strength_key: ClassVar[str | None] = None  # k is the knob, and it is part of the fit (the top-k units)

    def alphas(self, aurocs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names = list(aurocs)
        flat = torch.cat([aurocs[n].to(torch.float64).reshape(-1) for n in names])
        k = self.config.get("k")
        value = float(self.config.get("damp_alpha", self.fixed_alpha))
        if k is None:
            # ml-aura's --num-experts default (None): every unit with AUROC > 0.5.
            selected = flat > 0.5
        else:
            k = int(k)
            if not 0 <= k <= flat.numel():
                raise UsageError(f"k={k} but the hooked modules have {flat.numel()} units")
            # Exactly k units: highest AUROC first, ties broken by unit order (stable sort), deterministic.
            order = torch.sort(-flat, stable=True).indices[:k]
            selected = torch.zeros_like(flat, dtype=torch.bool)
            selected[order] = True
        alpha = torch.where(selected, torch.full_like(flat, value), torch.ones_like(flat)).to(torch.float32)
        out, start = {}, 0
        for n in names:
            size = aurocs[n].numel()
            out[n] = alpha[start : start + size].reshape(aurocs[n].shape).clone()
            start += size
        return out


class Det0(_TopK):
    """Set the top-k expert units to zero (Suau et al. 2022/2024 baseline)."""

    name: ClassVar[str] = "det0"
    method: ClassVar[str] = "det0"
    fixed_alpha: ClassVar[float] = 0.0
    defaults: ClassVar[dict[str, Any]] = {**_COMMON, "k": None}


class Damp(_TopK):
    """Multiply the top-k expert units by a fixed ``damp_alpha`` (0.5 as ml-aura's --damp-alpha)."""

    name: ClassVar[str] = "damp"
    method: ClassVar[str] = "damp"
    fixed_alpha: ClassVar[float] = 0.5
    defaults: ClassVar[dict[str, Any]] = {**_COMMON, "k": None, "damp_alpha": 0.5}


# -- data ---------------------------------------------------------------------------------------------------------
def _data_path(data: str, data_dir: str | Path | None) -> Path:
    p = Path(str(data)).expanduser()
    if p.is_absolute():
        if not p.is_file():
            raise UsageError(f"data file {str(p)!r} not found")
        return p
    return data_file(p, data_dir)


def load_labelled_texts(
    path: str | Path, text_column: int | str, label_column: int | str, n_per_class: int, seed: int,
    length_match: bool = False,
) -> tuple[list[str], list[int]]:
    """Texts and 0/1 labels from a CSV; ``n_per_class`` of each class drawn with ``seed`` (0 = all rows).

    Integer columns mean a header-less file (as ``jigsaw/robtest_balanced/test.csv``), names a file with a header.
    ``length_match``: each non-toxic sentence is the unused one closest in word count to a toxic one (toxic
    sentences drawn as usual), so the two classes have the same length distribution.
    """
    import pandas as pd

    header = None if isinstance(text_column, int) and isinstance(label_column, int) else 0
    try:
        df = pd.read_csv(path, header=header, keep_default_na=False, dtype=str)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {str(path)!r} as CSV: {e}") from None
    for col in (text_column, label_column):
        if col not in df.columns:
            raise did_you_mean(str(col), [str(c) for c in df.columns], f"column of {Path(path).name}")
    labels = pd.to_numeric(df[label_column], errors="coerce")
    keep = labels.notna() & (df[text_column].str.strip() != "")
    texts = df[text_column][keep].tolist()
    y = (labels[keep].to_numpy(dtype=float) >= 0.5).astype(int)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    if length_match:
        toxic = _draw(np.flatnonzero(y == 1), n_per_class, rng, Path(path).name, "toxic")
        words = np.array([len(t.split()) for t in texts])
        chosen = [*toxic, *_length_matched(toxic, np.flatnonzero(y == 0), words, rng, Path(path).name)]
        chosen = [chosen[i] for i in rng.permutation(len(chosen))]
        return [texts[i] for i in chosen], [int(y[i]) for i in chosen]
    for cls, cls_name in ((1, "toxic"), (0, "non-toxic")):
        idx = np.flatnonzero(y == cls)
        if n_per_class:
            if len(idx) < n_per_class:
                raise UsageError(
                    f"{Path(path).name} has {len(idx)} {cls_name} rows, fewer than n_per_class={n_per_class}"
                )
            idx = rng.choice(idx, size=n_per_class, replace=False)
        if len(idx) == 0:
            raise UsageError(f"{Path(path).name} has no {cls_name} rows")
        chosen.extend(int(i) for i in idx)
    chosen = [chosen[i] for i in rng.permutation(len(chosen))]  # mixed classes, "arrival order"
    return [texts[i] for i in chosen], [int(y[i]) for i in chosen]


def _draw(idx: np.ndarray, n: int, rng: np.random.Generator, name: str, cls_name: str) -> list[int]:
    if n and len(idx) < n:
        raise UsageError(f"{name} has {len(idx)} {cls_name} rows, fewer than n_per_class={n}")
    if len(idx) == 0:
        raise UsageError(f"{name} has no {cls_name} rows")
    return [int(i) for i in (rng.choice(idx, size=n, replace=False) if n else idx)]


def _length_matched(toxic: list[int], pool: np.ndarray, words: np.ndarray, rng: np.random.Generator,
                    name: str) -> list[int]:
    """For each toxic sentence (in random order), the unused non-toxic one closest in word count (ties at random)."""
    if len(pool) < len(toxic):
        raise UsageError(f"{name} has {len(pool)} non-toxic rows, fewer than the {len(toxic)} to length-match")
    pool = pool[rng.permutation(len(pool))]  # random tie-breaking
    free = np.ones(len(pool), dtype=bool)
    out = []
    for i in rng.permutation(toxic):
        gap = np.where(free, np.abs(words[pool] - words[i]), np.iinfo(np.int64).max)
        j = int(gap.argmin())
        free[j] = False
        out.append(int(pool[j]))
    return out


# -- small helpers ------------------------------------------------------------------------------------------------
def _check_units(model: torch.nn.Module, alphas: dict[str, torch.Tensor]) -> None:
    """Each alpha must match its module's output width (a state from another architecture fails here)."""
    modules = dict(model.named_modules())
    for name, a in alphas.items():
        mod = modules.get(name)
        if mod is None:
            raise did_you_mean(name, [n for n in modules if n], "module in intervention state")
        width = getattr(mod, "out_features", None) or getattr(mod, "nf", None)
        if width is not None and a.numel() != width:
            raise UsageError(
                f"intervention state has {a.numel()} units for {name!r} but the module outputs {width}; "
                "the state was fitted on another model"
            )


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("toxbench")
    except Exception:  # noqa: BLE001 - version is informative only
        return "0+unknown"
