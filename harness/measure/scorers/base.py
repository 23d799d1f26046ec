"""The Scorer protocol: texts -> toxicity probabilities, batched, versioned, language-aware."""

from __future__ import annotations

import hashlib
import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...core.errors import UsageError, did_you_mean
from ...core.io import canonical_json

#: probabilities are clipped to [PROB_EPS, 1 - PROB_EPS] before a logit, so every logit is finite (|z| < 13.9)
PROB_EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of probabilities clipped to [PROB_EPS, 1 - PROB_EPS], in float64."""
    p = np.clip(np.asarray(p, dtype=np.float64), PROB_EPS, 1 - PROB_EPS)
    return np.log(p / (1 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)), with z clipped to [-50, 50] so exp never overflows (the result is 0/1 to 1e-21 there)."""
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


class Scorer(ABC):
    """A toxicity classifier. ``score`` returns P(toxic) in [0, 1] for each text.

    ``name`` + ``version`` identify the scorer in results and in the score cache, so bump ``version`` whenever
    outputs can change. ``languages`` is None for "any language", else the ISO codes the scorer was trained on.
    ``defaults`` lists the options a user may pass (``get_scorer(name, **options)``) with their default values;
    ``runtime_options`` are those that cannot change an output (batch size, QPS...), left out of the cache key.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    languages: ClassVar[tuple[str, ...] | None] = ("en",)
    heads: ClassVar[tuple[str, ...]] = ("toxicity",)
    defaults: ClassVar[dict[str, Any]] = {}
    runtime_options: ClassVar[tuple[str, ...]] = ()
    #: importable modules the scorer needs (``toxbench scorers list`` shows which are missing)
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cache_dir: str | Path | None = None, **options: Any) -> None:
        for k in options:
            if k not in self.defaults:
                raise did_you_mean(k, self.defaults, f"option of scorer {self.name!r}")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.options: dict[str, Any] = {**self.defaults, **options}

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def output_options(self) -> dict[str, Any]:
        """The options that can change scores (they key the score cache)."""
        return {k: v for k, v in getattr(self, "options", {}).items() if k not in self.runtime_options}

    @property
    def options_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.output_options).encode()).hexdigest()[:16]

    def supports(self, lang: str | None) -> bool:
        return lang is None or self.languages is None or lang.split("-")[0].lower() in self.languages

    @abstractmethod
    def score_heads(self, texts: list[str], lang: str | None = None) -> dict[str, np.ndarray]:
        """Every head's probabilities, ``{head: array(len(texts))}``; ``heads[0]`` is the toxicity score."""

    def score(self, texts: list[str], lang: str | None = None) -> np.ndarray:
        return self.score_heads(texts, lang)[self.heads[0]]

    def preflight(self) -> None:
        """A cheap check, run before any generation, that scoring can work (credentials, endpoint); raises a
        one-line UsageError. Local scorers have nothing to check."""

    def describe(self) -> dict:
        """What results record about the scorer (protocol field)."""
        return {"name": self.name, "version": self.version, "languages": self.languages,
                "options": self.output_options, "calibration": None}


def check_options(cls: type[Scorer], options: dict[str, Any]) -> None:
    """Unknown option names are a one-line UsageError before anything heavy loads."""
    for k in options:
        if k not in cls.defaults:
            raise did_you_mean(k, cls.defaults, f"option of scorer {getattr(cls, 'name', cls.__name__)!r}")


def language_check(scorer: Scorer, lang: str | None) -> tuple[bool, str]:
    """(ok, message) for scoring ``lang`` texts with ``scorer``; the runner warns and records ok=False."""
    if scorer.supports(lang):
        return True, ""
    langs = ", ".join(scorer.languages or ())
    return False, (f"scorer {scorer.name!r} was trained on {langs} only; its scores of {lang!r} texts are not "
                   "comparable (use --scorer multilingual or perspective for non-English tasks)")


def require(module: str, scorer: str, extra: str = "scorers") -> Any:
    """Import an optional dependency, or a one-line UsageError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"scorer {scorer!r} needs the package {module!r}: pip install toxbench[{extra}]") from None


class WrappedScorer(Scorer):
    """A scorer that wraps another (cache, calibration): identity and options are the inner scorer's unless the
    wrapper overrides them (a calibrated scorer has its own id)."""

    inner: Scorer

    name = property(lambda self: self.inner.name)  # type: ignore[assignment]
    version = property(lambda self: self.inner.version)  # type: ignore[assignment]
    languages = property(lambda self: self.inner.languages)  # type: ignore[assignment]
    heads = property(lambda self: self.inner.heads)  # type: ignore[assignment]
    options = property(lambda self: self.inner.options)  # type: ignore[assignment]
    id = property(lambda self: self.inner.id)  # type: ignore[assignment]
    output_options = property(lambda self: self.inner.output_options)  # type: ignore[assignment]
    options_hash = property(lambda self: self.inner.options_hash)  # type: ignore[assignment]

    def preflight(self) -> None:
        self.inner.preflight()
