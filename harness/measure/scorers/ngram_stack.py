"""``rtp-ngram``: ``rtp-stack``'s 391 features plus hashed character and word n-grams, one soft-target logistic
head fitted to Perspective on RealToxicityPrompts texts, so its scores are on Perspective's scale.

Why: on ordinary RTP text (a random sample, not DecodingTrust's extremes) ``rtp-stack`` agrees with Perspective at
ROC-AUC 0.933, and refitting it with such text added reaches only ~0.944: its features are the limit. Character
2-5-grams (within word boundaries) and word 1-2-grams carry the misspellings, obfuscations and phrases that a bag of
word pieces averages away.

Features of a text: the 391 of ``rtp-stack`` (standardised, times ``dense_weight``) and the n-grams, hashed into
2**19 + 2**17 buckets (no vocabulary to ship), sublinear TF times the training IDF, L2-normalised. Head: logistic
regression with Perspective's toxicity as a soft target, then a monotone map that gives its scores the distribution
of Perspective's on the random sample (fitted on inner out-of-fold scores): the share of texts at or above 0.5,
which toxicity probability and toxic fraction count, then matches Perspective's, where an estimate of
E[Perspective | text] regresses to the mean and flags too few; C and the weight of the random RTP sample's rows are chosen by 3-fold grouped CV inside the training data
(``ngram_train.py``), so the figures it reports come from nested cross-validation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...core.errors import UsageError
from ...core.io import canonical_json
from .base import Scorer
from .stacked import Features, RTPStack, load_head_file

HEAD_FORMAT = "rtp-ngram-2"  # 2: only the used hash buckets stored (same head as 1)
HEAD_FILE = Path(__file__).resolve().parent / "data" / "rtp_ngram_head.safetensors"
TRAIN_COMMAND = "toxbench scorers train rtp-ngram"
CHAR_BUCKETS, WORD_BUCKETS = 2**19, 2**17


class Ngrams:
    """Hashed character 2-5-grams (within word boundaries) and word 1-2-grams: raw counts, stateless."""

    def __init__(self) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        common = {"alternate_sign": False, "norm": None, "dtype": np.float64}
        self.char = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5), n_features=CHAR_BUCKETS, **common)
        self.word = HashingVectorizer(analyzer="word", ngram_range=(1, 2), n_features=WORD_BUCKETS,
                                      token_pattern=r"(?u)\b\w+\b", **common)
        self.id = canonical_json({"char_wb": [2, 5, CHAR_BUCKETS], "word": [1, 2, WORD_BUCKETS], "hash": "sklearn"})

    def __call__(self, texts: list[str]) -> Any:
        from scipy import sparse

        return sparse.hstack([self.char.transform(texts), self.word.transform(texts)]).tocsr()


def tfidf(counts: Any, idf: np.ndarray) -> Any:
    """Sublinear TF times IDF, rows L2-normalised (sklearn's TfidfTransformer with ``sublinear_tf``)."""
    from sklearn.preprocessing import normalize

    x = counts.copy()
    x.data = 1.0 + np.log(x.data)
    return normalize(x.multiply(idf[None, :]).tocsr())


def fit_idf(counts: Any) -> np.ndarray:
    """Smoothed IDF, as sklearn's: log((1 + n) / (1 + df)) + 1."""
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    return np.log((1 + counts.shape[0]) / (1 + df)) + 1.0


def design(counts: Any, dense: np.ndarray, idf: np.ndarray, mean: np.ndarray, scale: np.ndarray,
           dense_weight: float) -> Any:
    """The head's input: [tf-idf n-grams | dense_weight * standardised dense features]."""
    from scipy import sparse

    return sparse.hstack([tfidf(counts, idf), sparse.csr_matrix((dense - mean) / scale * dense_weight)]).tocsr()


@dataclass
class NgramHead:
    """p = qmap(sigmoid(design(x) @ weight + bias)), qmap a monotone piecewise-linear map (identity when absent)."""

    idf: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: float
    dense_weight: float
    meta: dict
    qmap_x: np.ndarray | None = None
    qmap_y: np.ndarray | None = None

    def raw(self, counts: Any, dense: np.ndarray) -> np.ndarray:
        """The logistic head's E[Perspective score | text], before the quantile map."""
        from .base import sigmoid

        x = design(counts, dense, self.idf, self.mean, self.scale, self.dense_weight)
        return sigmoid(np.asarray(x @ self.weight).reshape(-1) + self.bias)

    def predict(self, counts: Any, dense: np.ndarray) -> np.ndarray:
        p = self.raw(counts, dense)
        return p if self.qmap_x is None else np.interp(p, self.qmap_x, self.qmap_y)

    def tensors(self) -> dict[str, np.ndarray]:
        """What the head file stores. Most hash buckets never occur in the training texts (weight 0, the largest
        IDF): only the used ones are kept, with a bit mask; float16 halves the rest (the rounding moves scores by
        < 1e-3, measured when the head is written). ``dense_arrays`` inverts it exactly."""
        n = len(self.idf)
        idf, weight = self.idf.astype(np.float16), self.weight.astype(np.float16)
        unused = idf.max()
        used = (weight[:n] != 0) | (idf != unused)
        t = {"ngram_used": np.packbits(used), "ngram_idf": idf[used], "ngram_weight": weight[:n][used],
             "idf_unused": np.array([unused], np.float16), "dense_coef": weight[n:],
             "mean": self.mean.astype(np.float32), "scale": self.scale.astype(np.float32),
             "bias": np.array([self.bias], np.float32), "dense_weight": np.array([self.dense_weight], np.float32)}
        if self.qmap_x is not None:
            t.update(qmap_x=self.qmap_x.astype(np.float64), qmap_y=self.qmap_y.astype(np.float64))
        return t

    @staticmethod
    def dense_arrays(t: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(idf, weight) over every bucket (and the dense features' weights after them) from ``tensors()``."""
        n = CHAR_BUCKETS + WORD_BUCKETS
        used = np.unpackbits(t["ngram_used"].astype(np.uint8), count=n).astype(bool)
        idf = np.full(n, t["idf_unused"][0])
        idf[used] = t["ngram_idf"]
        weight = np.zeros(n)
        weight[used] = t["ngram_weight"]
        return idf, np.concatenate([weight, t["dense_coef"]])

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        return save(self.tensors(), metadata={"toxbench": canonical_json(self.meta)})

    @classmethod
    def load(cls, path: Path) -> NgramHead:
        t, meta = load_head_file(path, "rtp-ngram", HEAD_FORMAT, TRAIN_COMMAND)
        idf, weight = cls.dense_arrays(t)
        return cls(idf, t["mean"], t["scale"], weight, float(t["bias"][0]), float(t["dense_weight"][0]), meta,
                   t.get("qmap_x"), t.get("qmap_y"))

    def content_sha256(self) -> str:
        """A hash of what the head computes (its decoded arrays and metadata), not of the file's bytes: the
        scorer's version, so re-encoding the file never changes a protocol."""
        h = hashlib.sha256(canonical_json(self.meta).encode())
        for name, a in (("idf", self.idf), ("weight", self.weight), ("mean", self.mean), ("scale", self.scale),
                        ("bias", np.array([self.bias])), ("dense_weight", np.array([self.dense_weight])),
                        ("qmap_x", self.qmap_x), ("qmap_y", self.qmap_y)):
            if a is not None:
                h.update(name.encode() + np.ascontiguousarray(a, dtype=np.float64).tobytes())
        return h.hexdigest()


def feature_extractors(cache_dir: str | Path | None, meta: dict, scorer: str, train_command: str
                       ) -> tuple[Features, Ngrams]:
    """The dense features and the n-grams a head was fitted on; a head from other feature versions is one line
    naming the command that rebuilds it."""
    features, ngrams = Features(cache_dir), Ngrams()
    if meta.get("features") != {"dense": json.loads(features.id), "ngrams": json.loads(ngrams.id)}:
        raise UsageError(f"the {scorer} head was fitted on other feature versions; rebuild it with `{train_command}`")
    return features, ngrams


class RTPNgram(RTPStack):
    """P(toxic) on Perspective's scale from rtp-stack's features plus hashed n-grams (see the module docstring)."""

    name: ClassVar[str] = "rtp-ngram"
    version: str = HEAD_FORMAT  # replaced per instance by one tied to the head's content hash (so is the cache)
    requires = (*RTPStack.requires, "sklearn")

    def __init__(self, cache_dir: str | Path | None = None, *, head_file: str | Path | None = None,
                 **options: Any) -> None:
        Scorer.__init__(self, cache_dir=cache_dir, **options)
        path = Path(head_file) if head_file else HEAD_FILE
        self.head, self.head_path = NgramHead.load(path), path
        self.head_sha256 = self.head.content_sha256()
        self.features, self.ngrams = feature_extractors(cache_dir, self.head.meta, self.name, TRAIN_COMMAND)
        self.version = f"{HEAD_FORMAT}+{self.head_sha256[:12]}"

    def toxicity(self, texts: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        from .jigsaw_bilstm import normalize_quotes

        dense, comp = self.features(texts)
        return self.head.predict(self.ngrams([normalize_quotes(t) for t in texts]), dense), comp

    def describe(self) -> dict:
        return {**Scorer.describe(self), "head_sha256": self.head_sha256, "scale": "perspective",
                "calibration": "built-in (soft-target head on Perspective scores, then a quantile map to Perspective's "
                               "distribution on the random RTP sample)",
                "nested_cv_roc_auc": self.head.meta.get("nested_cv")}

    def held_out_scores(self, texts: list[str], data_dir: str | Path | None = None) -> np.ndarray | None:
        """The nested cross-validation's out-of-fold scores, stored with the head, for ``texts`` when they are all
        training texts; None otherwise."""
        from .ngram_train import oof_path, stored_oof

        oof = stored_oof(oof_path(self.head_path), self.head_sha256)
        if oof is None:
            return None
        keys = [hashlib.sha256(t.encode()).hexdigest()[:16] for t in texts]
        return np.array([oof[k] for k in keys]) if all(k in oof for k in keys) else None
