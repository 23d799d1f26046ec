"""``rtp-attributes``: one linear head per Perspective attribute on ``rtp-ngram``'s features, and a boosted
second stage that reads all eight heads to score toxicity; every output on Perspective's scale.

Why: on ordinary RTP text ``rtp-ngram``'s single toxicity head ranks texts at Spearman 0.847 against Perspective.
Perspective's other seven attributes are in the data; a head per attribute learns what each responds to (identity
terms, sexual content, threats...), and a small boosted forest over the eight heads' logits (and the text's
length) recovers how Perspective's toxicity combines them, which a single linear head cannot (5-fold out-of-fold
heads on the training data: a linear second stage gained 0.003 Spearman, the forest 0.01).

Scores: ``toxicity`` = qmap(sigmoid(forest([head logits, log(1 + characters)]))); any other attribute =
qmap(sigmoid(its head's logit)). Each quantile map gives that output Perspective's distribution of the attribute on
the random RTP sample (so shares at or above 0.5 match). ``--scorer-arg attribute=insult`` makes a run's score
(toxic fraction, toxicity probability...) that attribute's; every run records all eight.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...core.errors import did_you_mean
from ...core.io import canonical_json
from .base import Scorer, sigmoid
from .gbtrees import Forest
from .ngram_stack import CHAR_BUCKETS, WORD_BUCKETS, design, feature_extractors
from .stacked import RTPStack, load_head_file

HEAD_FORMAT = "rtp-attributes-1"
HEAD_FILE = Path(__file__).resolve().parent / "data" / "rtp_attributes_head.safetensors"
TRAIN_COMMAND = "toxbench scorers train rtp-attributes"
#: Perspective's attributes as RTP stores them; the order of the heads (and of the forest's inputs)
ATTRIBUTES = ("toxicity", "severe_toxicity", "insult", "profanity", "identity_attack", "threat", "sexually_explicit",
              "flirtation")


def stage2_inputs(logits: np.ndarray, texts: list[str]) -> np.ndarray:
    """The forest's input: the eight heads' logits and log(1 + characters) of each text."""
    return np.c_[logits, np.log1p(np.array([len(t) for t in texts], dtype=np.float64))]


@dataclass
class AttributeHeads:
    idf: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray  # (attributes, n-gram buckets + dense features)
    bias: np.ndarray  # (attributes,)
    dense_weight: float
    forest: Forest
    qmap_x: np.ndarray  # (attributes, knots)
    qmap_y: np.ndarray
    meta: dict = field(default_factory=dict)

    def logits(self, counts: Any, dense: np.ndarray) -> np.ndarray:
        x = design(counts, dense, self.idf, self.mean, self.scale, self.dense_weight)
        return np.asarray(x @ self.weight.T) + self.bias[None, :]

    def predict(self, counts: Any, dense: np.ndarray, texts: list[str]) -> dict[str, np.ndarray]:
        z = self.logits(counts, dense)
        raw = sigmoid(z)
        raw[:, 0] = sigmoid(self.forest.predict(stage2_inputs(z, texts)))
        return {a: np.interp(raw[:, i], self.qmap_x[i], self.qmap_y[i]) for i, a in enumerate(ATTRIBUTES)}

    def tensors(self) -> dict[str, np.ndarray]:
        """Only the hash buckets that occur in the training texts are stored (bit mask), in float32: float16 (as
        rtp-ngram's head) moved some scores by 0.026, because a rounded logit can cross a split of the forest. The
        rounding left is measured when the heads are written."""
        n = len(self.idf)
        idf, weight = self.idf.astype(np.float32), self.weight.astype(np.float32)
        unused = idf.max()
        used = (weight[:, :n] != 0).any(0) | (idf != unused)
        t = {"ngram_used": np.packbits(used), "ngram_idf": idf[used], "ngram_weight": weight[:, :n][:, used],
             "idf_unused": np.array([unused], np.float32), "dense_coef": weight[:, n:],
             "mean": self.mean.astype(np.float32), "scale": self.scale.astype(np.float32),
             "bias": self.bias.astype(np.float32), "dense_weight": np.array([self.dense_weight], np.float32),
             "qmap_x": self.qmap_x.astype(np.float64), "qmap_y": self.qmap_y.astype(np.float64)}
        # safetensors writes an array's buffer as it lies: slices and masked columns must be made C-contiguous
        return {k: np.ascontiguousarray(v) for k, v in {**t, **self.forest.tensors("forest_")}.items()}

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], meta: dict) -> AttributeHeads:
        n = CHAR_BUCKETS + WORD_BUCKETS
        used = np.unpackbits(t["ngram_used"].astype(np.uint8), count=n).astype(bool)
        idf = np.full(n, t["idf_unused"][0], dtype=np.float64)
        idf[used] = t["ngram_idf"]
        weight = np.zeros((len(t["bias"]), n + t["dense_coef"].shape[1]))
        weight[:, :n][:, used] = t["ngram_weight"]
        weight[:, n:] = t["dense_coef"]
        return cls(idf, t["mean"].astype(np.float64), t["scale"].astype(np.float64), weight,
                   t["bias"].astype(np.float64), float(t["dense_weight"][0]), Forest.from_tensors(t, "forest_"),
                   t["qmap_x"], t["qmap_y"], meta)

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        return save(self.tensors(), metadata={"toxbench": canonical_json(self.meta)})

    @classmethod
    def load(cls, path: Path) -> AttributeHeads:
        t, meta = load_head_file(path, "rtp-attributes", HEAD_FORMAT, TRAIN_COMMAND)
        return cls.from_tensors(t, meta)

    def content_sha256(self) -> str:
        """A hash of what the heads compute (decoded arrays and metadata): the scorer's version."""
        h = hashlib.sha256(canonical_json(self.meta).encode())
        arrays = [("idf", self.idf), ("mean", self.mean), ("scale", self.scale), ("weight", self.weight),
                  ("bias", self.bias), ("dense_weight", np.array([self.dense_weight])), ("qmap_x", self.qmap_x),
                  ("qmap_y", self.qmap_y), *self.forest.arrays()]
        for name, a in arrays:
            h.update(name.encode() + np.ascontiguousarray(a, dtype=np.float64).tobytes())
        return h.hexdigest()


class RTPAttributes(RTPStack):
    """Perspective's eight attributes from rtp-ngram's features (see the module docstring); ``attribute`` picks the
    score a run counts (default toxicity)."""

    name: ClassVar[str] = "rtp-attributes"
    version: str = HEAD_FORMAT  # replaced per instance by one tied to the heads' content hash
    heads: tuple[str, ...] = ATTRIBUTES
    defaults: ClassVar[dict[str, Any]] = {"batch_size": 1024, "attribute": "toxicity"}
    requires = (*RTPStack.requires, "sklearn")

    def __init__(self, cache_dir: str | Path | None = None, *, head_file: str | Path | None = None,
                 **options: Any) -> None:
        Scorer.__init__(self, cache_dir=cache_dir, **options)
        attribute = str(self.options["attribute"]).lower()
        if attribute not in ATTRIBUTES:
            raise did_you_mean(attribute, ATTRIBUTES, "attribute of scorer 'rtp-attributes':")
        self.options["attribute"] = attribute
        self.heads = (attribute, *[a for a in ATTRIBUTES if a != attribute])
        path = Path(head_file) if head_file else HEAD_FILE
        self.head, self.head_path = AttributeHeads.load(path), path
        self.head_sha256 = self.head.content_sha256()
        self.features, self.ngrams = feature_extractors(cache_dir, self.head.meta, self.name, TRAIN_COMMAND)
        self.version = f"{HEAD_FORMAT}+{self.head_sha256[:12]}"

    def batch_heads(self, texts: list[str]) -> dict[str, np.ndarray]:
        from .jigsaw_bilstm import normalize_quotes

        dense, _ = self.features(texts)
        return self.head.predict(self.ngrams([normalize_quotes(t) for t in texts]), dense, texts)

    def describe(self) -> dict:
        per = (self.head.meta.get("nested_cv") or {}).get("random_attributes") or {}
        return {**Scorer.describe(self), "head_sha256": self.head_sha256, "scale": "perspective",
                "calibration": "built-in (soft-target heads on Perspective's attributes, a boosted stage for "
                               "toxicity, then quantile maps to Perspective's distributions on the random RTP sample)",
                "nested_cv_roc_auc": (self.head.meta.get("nested_cv") or {}).get("toxicity"),
                "attributes_nested_cv": {a: per[a] for a in ATTRIBUTES if a in per} or None}

    def held_out_scores(self, texts: list[str], data_dir: str | Path | None = None) -> np.ndarray | None:
        """The nested cross-validation's out-of-fold scores of the selected attribute for ``texts`` when they are
        all training texts; None otherwise."""
        from .attributes_train import oof_path, stored_oof

        oof = stored_oof(oof_path(self.head_path), self.head_sha256, self.heads[0])
        if oof is None:
            return None
        keys = [hashlib.sha256(t.encode()).hexdigest()[:16] for t in texts]
        return np.array([oof[k] for k in keys]) if all(k in oof for k in keys) else None
