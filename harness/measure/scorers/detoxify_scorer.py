"""``detoxify``: Unitary's Detoxify models (original / unbiased / multilingual), an optional extra.

Online, Detoxify downloads its checkpoint and tokenizer; offline, pass ``checkpoint=PATH`` (a local ``.ckpt``) with the
tokenizer in the local Hugging Face cache, or get a one-line error. (Detoxify loads checkpoints with torch.load:
that is the library's own loading of a file the user chose.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...core.errors import UsageError, did_you_mean
from .base import Scorer, require

MODELS = {
    "original": ("en",),
    "unbiased": ("en",),
    "multilingual": ("en", "fr", "es", "it", "pt", "tr", "ru"),
}


class DetoxifyScorer(Scorer):
    name = "detoxify"
    version = "1"
    languages: ClassVar[tuple[str, ...] | None] = ("en",)
    heads: ClassVar[tuple[str, ...]] = ("toxicity",)
    defaults: ClassVar[dict[str, Any]] = {"model": "original", "checkpoint": None, "device": "cpu",
                                          "batch_size": 64}
    runtime_options = ("device", "batch_size")
    requires = ("detoxify",)

    def __init__(self, cache_dir: Any = None, **options: Any) -> None:
        super().__init__(cache_dir=cache_dir, **options)
        model = self.options["model"]
        if model not in MODELS:
            raise did_you_mean(model, MODELS, "detoxify model")
        detoxify = require("detoxify", self.name)
        ckpt = self.options["checkpoint"]
        if ckpt is not None:
            if not Path(ckpt).is_file():
                raise UsageError(f"detoxify checkpoint {str(ckpt)!r} does not exist")
            self.options["checkpoint"] = str(Path(ckpt).resolve())
        self.languages = MODELS[model]  # type: ignore[misc]
        try:
            self.model = detoxify.Detoxify(model, checkpoint=self.options["checkpoint"], device=self.options["device"])
        except Exception as e:  # network errors come in many types (URLError, OSError, HF hub errors)
            raise UsageError(
                f"detoxify could not load the {model!r} model ({type(e).__name__}); offline, pass "
                "checkpoint=PATH to a local .ckpt (and have its tokenizer in the Hugging Face cache)") from None

    def score_heads(self, texts: list[str], lang: str | None = None) -> dict[str, np.ndarray]:
        out: dict[str, list[float]] = {}
        bs = int(self.options["batch_size"])
        for s in range(0, len(texts), bs):
            res = self.model.predict(list(texts[s:s + bs]))
            for k, v in res.items():
                out.setdefault(k, []).extend(np.atleast_1d(np.asarray(v, dtype=np.float64)).tolist())
        if not texts:
            return {"toxicity": np.zeros(0)}
        # "toxicity" first: it is the score
        return {k: np.asarray(out[k]) for k in sorted(out, key=lambda k: (k != "toxicity", k))}
