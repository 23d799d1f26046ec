"""The Scorer protocol: texts -> toxicity probabilities, batched, versioned, language-aware."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np


class Scorer(ABC):
    """A toxicity classifier. ``score`` returns P(toxic) in [0, 1] for each text.

    ``name`` + ``version`` identify the scorer in results and in the score cache, so bump ``version`` whenever
    outputs can change. ``languages`` is None for "any language", else the ISO codes the scorer was trained on.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    languages: ClassVar[tuple[str, ...] | None] = ("en",)
    heads: ClassVar[tuple[str, ...]] = ("toxicity",)

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def supports(self, lang: str | None) -> bool:
        return lang is None or self.languages is None or lang.split("-")[0].lower() in self.languages

    @abstractmethod
    def score_heads(self, texts: list[str], lang: str | None = None) -> dict[str, np.ndarray]:
        """Every head's probabilities, ``{head: array(len(texts))}``; ``heads[0]`` is the toxicity score."""

    def score(self, texts: list[str], lang: str | None = None) -> np.ndarray:
        return self.score_heads(texts, lang)[self.heads[0]]

    def describe(self) -> dict:
        """What results record about the scorer (protocol field)."""
        return {"name": self.name, "version": self.version, "languages": self.languages}
