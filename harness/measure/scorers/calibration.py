"""Map any scorer onto Perspective's scale (isotonic or Platt), fitted on texts kept apart from those evaluated.

Fitted on the Perspective-scored RTP *prompts* (never the continuations, which the runs' metrics resemble and the
agreement table measures). The target is Perspective's continuous toxicity, so the calibrated score estimates
E[Perspective toxicity | raw score] and thresholds at 0.5 become comparable with Perspective-scored papers.
A calibration is a few numbers stored as JSON in the cache; its hash enters the scorer id and the results.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import UsageError, did_you_mean
from ...core.io import atomic_write_json, canonical_json
from .base import Scorer, WrappedScorer, logit, sigmoid
from .rtp_reference import RTP_FILES, load_reference

METHODS = ("isotonic", "platt")


@dataclass(frozen=True)
class Calibration:
    method: str
    params: dict[str, list[float] | float]
    fitted_on: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        return hashlib.sha256(canonical_json({"method": self.method, "params": self.params}).encode()).hexdigest()[:12]

    @property
    def tag(self) -> str:
        return f"{self.method}@{self.hash}"

    def apply(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(s, self.params["x"], self.params["y"])  # clipped at both ends like sklearn's
        return sigmoid(self.params["a"] * logit(s) + self.params["b"])

    def to_json(self) -> dict:
        return {"method": self.method, "params": self.params, "fitted_on": self.fitted_on, "hash": self.hash}

    @classmethod
    def from_json(cls, d: dict) -> Calibration:
        cal = cls(d["method"], d["params"], d.get("fitted_on", {}))
        if d.get("hash") not in (None, cal.hash):
            raise UsageError("calibration file is corrupt (hash mismatch); delete it to refit")
        return cal


def fit_calibration(method: str, scores: np.ndarray, target: np.ndarray, **fitted_on: Any) -> Calibration:
    """Fit ``target ~ f(scores)`` with f isotonic (non-decreasing) or Platt (sigmoid of a*logit(s)+b)."""
    if method not in METHODS:
        raise did_you_mean(method, METHODS, "calibration method")
    x, y = np.asarray(scores, dtype=np.float64), np.asarray(target, dtype=np.float64)
    meta = {"n": int(len(x)), **fitted_on}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
        return Calibration("isotonic", {"x": [float(v) for v in iso.X_thresholds_],
                                        "y": [float(v) for v in iso.y_thresholds_]}, meta)
    from scipy.optimize import minimize

    z = logit(x)

    def loss(p: np.ndarray) -> tuple[float, np.ndarray]:  # cross-entropy with soft targets, and its gradient
        q = np.clip(sigmoid(p[0] * z + p[1]), 1e-12, 1 - 1e-12)
        r = q - y
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))), np.array([np.mean(r * z), np.mean(r)])

    res = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return Calibration("platt", {"a": float(res.x[0]), "b": float(res.x[1])}, meta)


class CalibratedScorer(WrappedScorer):
    """``inner`` with its first head mapped by ``calibration``; the raw value is kept as ``<head>_raw``."""

    def __init__(self, inner: Scorer, calibration: Calibration) -> None:  # noqa: D107
        self.inner, self.calibration = inner, calibration
        self.cache_dir = getattr(inner, "cache_dir", None)


    @property
    def heads(self) -> tuple[str, ...]:  # type: ignore[override]
        h = tuple(self.inner.heads)
        return (*h, f"{h[0]}_raw")

    @property
    def id(self) -> str:  # type: ignore[override]
        return f"{self.inner.name}+{self.calibration.tag}"

    def supports(self, lang: str | None) -> bool:
        return self.inner.supports(lang)

    def describe(self) -> dict:
        return {**self.inner.describe(), "calibration": self.calibration.tag,
                "calibration_fitted_on": self.calibration.fitted_on}

    def score_heads(self, texts: list[str], lang: str | None = None) -> dict[str, np.ndarray]:
        out = dict(self.inner.score_heads(texts, lang))
        first = self.inner.heads[0]
        out[f"{first}_raw"] = out[first]
        out[first] = self.calibration.apply(out[first])
        return out


def calibration_path(cache_dir: Path, scorer: Scorer, method: str) -> Path:
    return cache_dir / "scorers" / "calibration" / f"{scorer.name}@{scorer.version}-{scorer.options_hash}-{method}.json"


def load_or_fit(scorer: Scorer, method: str, cache_dir: Path, data_dir: str | Path | None = None) -> Calibration:
    """The stored calibration of ``scorer`` (raw, options included), fitting it on the RTP prompts if missing."""
    if method not in METHODS:
        raise did_you_mean(method, METHODS, "calibration method")
    path = calibration_path(cache_dir, scorer, method)
    if path.is_file():
        return Calibration.from_json(json.loads(path.read_text(encoding="utf-8")))
    prompts = load_reference(data_dir).select("prompt")
    scores = scorer.score(prompts.texts, lang="en")
    cal = fit_calibration(method, scores, prompts.perspective, texts="prompts of " + " + ".join(RTP_FILES),
                          scorer=scorer.id, options=scorer.output_options)
    atomic_write_json(path, cal.to_json())
    return cal
