"""``evaluate-toxicity``: Hugging Face ``evaluate``'s toxicity measurement, an optional extra.

It loads the measurement script and the classifier (default: facebook/roberta-hate-speech-dynabench-r4-target)
from the Hub, so it needs the network on first use; offline it fails with a one-line error.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ...core.errors import UsageError
from .base import Scorer, require

DEFAULT_MODEL = "facebook/roberta-hate-speech-dynabench-r4-target"


class EvaluateToxicity(Scorer):
    name = "evaluate-toxicity"
    version = "1"
    languages = ("en",)
    heads = ("toxicity",)
    defaults: ClassVar[dict[str, Any]] = {"model": DEFAULT_MODEL, "toxic_label": "hate", "batch_size": 64}
    runtime_options = ("batch_size",)
    requires = ("evaluate",)

    def __init__(self, cache_dir: Any = None, **options: Any) -> None:
        super().__init__(cache_dir=cache_dir, **options)
        evaluate = require("evaluate", self.name)
        try:
            self.measure = evaluate.load("toxicity", module_type="measurement", config_name=self.options["model"])
        except Exception as e:  # offline: hub errors, ConnectionError, FileNotFoundError...
            raise UsageError(f"evaluate-toxicity could not load the toxicity measurement with model "
                             f"{self.options['model']!r} ({type(e).__name__}); it needs the Hugging Face Hub "
                             "(or a local model path and the measurement in the evaluate cache)") from None

    def score_heads(self, texts: list[str], lang: str | None = None) -> dict[str, np.ndarray]:
        out: list[float] = []
        bs = int(self.options["batch_size"])
        for s in range(0, len(texts), bs):
            res = self.measure.compute(predictions=list(texts[s:s + bs]), toxic_label=self.options["toxic_label"])
            out.extend(float(v) for v in res["toxicity"])
        return {"toxicity": np.asarray(out, dtype=np.float64)}
