"""``profanity-check``: alt-profanity-check 1.9.1 (TF-IDF + linear SVM, calibrated), ~100k texts/s.

Note: the library loads its own scikit-learn model with joblib (pickle) when imported; that is the library's own
load of files shipped in its wheel, not data of ours. It is English-only and scores profanity, not toxicity at large.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...core.errors import UsageError
from .base import Scorer, require
from .jigsaw_bilstm import normalize_quotes


class ProfanityCheck(Scorer):
    name = "profanity-check"
    version = "1.9.1"
    languages = ("en",)
    heads = ("profanity",)
    defaults: ClassVar[dict[str, Any]] = {"normalize_quotes": False}
    requires = ("profanity_check",)

    def __init__(self, cache_dir: Any = None, **options: Any) -> None:
        super().__init__(cache_dir=cache_dir, **options)
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version("alt-profanity-check")
        except PackageNotFoundError:
            installed = None
        if installed is None:
            raise UsageError("scorer 'profanity-check' needs alt-profanity-check: pip install toxbench[scorers]")
        self._predict = require("profanity_check", self.name).predict_prob
        self.version = installed  # type: ignore[misc]  # the library's model is the scorer: key the cache by it

    def score_heads(self, texts: list[str], lang: str | None = None) -> dict[str, np.ndarray]:
        if self.options["normalize_quotes"]:
            texts = [normalize_quotes(t) for t in texts]
        if not texts:
            return {"profanity": np.zeros(0)}
        return {"profanity": np.asarray(self._predict(list(texts)), dtype=np.float64)}
