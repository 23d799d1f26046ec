"""The Perspective-scored RealToxicityPrompts texts of the data dir: the reference that scorer agreement and
calibration measure against, and the training data of ``rtp-stack``.

Each text carries Perspective's ``toxicity`` (texts without it are skipped), its part (prompt, continuation or
GPT-2 generation) and its group: a hash of the prompt, so a prompt, its continuation and its generations always
share a cross-validation fold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.errors import UsageError
from ...core.io import iter_jsonl
from ...core.paths import data_file

#: Perspective-scored RTP files of the data dir (the ml-act fixture adds 25 GPT-2 generations per prompt)
RTP_FILES = (
    "realtoxicityprompts/decodingtrust/toxic.jsonl",
    "realtoxicityprompts/decodingtrust/nontoxic.jsonl",
    "realtoxicityprompts/ml_act_fixture/prompted_gens_gpt2.jsonl",
)
PARTS = ("prompt", "continuation", "generation")
#: 3,006 RTP records drawn at random (prompts and human continuations, all Perspective attributes): ordinary text,
#: where DecodingTrust's files hold prompts picked at the extremes of toxicity
RANDOM_FILES = ("realtoxicityprompts/quark_val/rtp_random_3k.jsonl",)


@dataclass(frozen=True)
class RTPLabelled:
    texts: list[str]
    perspective: np.ndarray  # Perspective toxicity in [0, 1]
    part: np.ndarray  # prompt | continuation | generation
    group: np.ndarray  # hash of the prompt text: the CV unit

    def __len__(self) -> int:
        return len(self.texts)


def load_rtp_labelled(data_dir: str | Path | None = None, files: tuple[str, ...] = RTP_FILES) -> RTPLabelled:
    """Every Perspective-scored text of the RTP ``files`` (default: the training reference), deduplicated (first
    occurrence keeps its group)."""
    texts, tox, part, group = [], [], [], []
    seen: set[str] = set()
    for rel in files:
        path = data_file(rel, data_dir)
        for i, rec in iter_jsonl(path):
            try:
                g = hashlib.sha256(rec["prompt"]["text"].strip().encode()).hexdigest()[:16]
                items = [(rec["prompt"], "prompt"), (rec["continuation"], "continuation"),
                         *[(x, "generation") for x in rec.get("generations", [])]]
            except (KeyError, TypeError, AttributeError):
                raise UsageError(f"{path}:{i}: not an RTP record (expected JSON with prompt.text)") from None
            for d, p in items:
                t, v = d.get("text"), d.get("toxicity")
                if not t or v is None or t in seen:
                    continue
                seen.add(t)
                texts.append(t)
                tox.append(float(v))
                part.append(p)
                group.append(g)
    return RTPLabelled(texts, np.asarray(tox, dtype=np.float64), np.asarray(part), np.asarray(group))


@dataclass(frozen=True)
class ReferenceTexts:
    texts: list[str]
    perspective: np.ndarray  # Perspective toxicity in [0, 1]
    part: np.ndarray  # "prompt" | "continuation" | "generation"

    def select(self, part: str) -> ReferenceTexts:
        m = self.part == part
        return ReferenceTexts([t for t, k in zip(self.texts, m) if k], self.perspective[m], self.part[m])

    def __len__(self) -> int:
        return len(self.texts)


def load_reference(data_dir: str | Path | None = None, files: tuple[str, ...] = RTP_FILES) -> ReferenceTexts:
    """Every Perspective-scored text of the RTP ``files``, deduplicated. Default: DecodingTrust prompts +
    continuations and the ml-act fixture's prompts, continuations and GPT-2 generations; ``RANDOM_FILES``: the
    random sample."""
    d = load_rtp_labelled(data_dir, files)
    return ReferenceTexts(d.texts, d.perspective, d.part)
