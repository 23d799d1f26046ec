"""The ``multilingual`` scorer's linear head: its features, its file format and how it is fit.

The head sees the sentence embedding, hashed character 2-5-grams (the lexical cue a pooled embedding dilutes) and a
per-language copy of the embedding (so each language may deviate from the shared toxic direction; the task's
language picks it at scoring time); it is a ridge regression of a graded toxicity target, Platt-scaled to a
probability and folded into one set of linear weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...core.errors import UsageError
from ...core.io import atomic_write_bytes, canonical_json
from .base import sigmoid
from .multilingual_encoder import MAX_CHARS

HEAD_FORMAT = "ml-head-2"
TRAIN_COMMAND = "toxbench scorers train multilingual"
#: the shipped head (package data): what the scorer loads on a fresh clone; `toxbench scorers train multilingual`
#: rebuilds it byte-identically from the data dir
SHIPPED_HEAD = Path(__file__).resolve().parent / "data" / "multilingual_head.safetensors"


def require_head(path: str | Path | None = None) -> Path:
    """The head file (default: the shipped one), or a one-line UsageError naming the command that trains it."""
    path = Path(path) if path is not None else SHIPPED_HEAD
    if not path.exists():
        raise UsageError(f"the multilingual scorer's head {str(path)!r} is missing; run `{TRAIN_COMMAND}`")
    return path


# Character n-grams (hashed, so nothing is fit or stored but weights) carry the lexical signal — slurs, profanity —
# that a mean-pooled sentence embedding dilutes; on RTP-LX the two are complementary (grouped CV: see README table).
CHAR_NGRAMS = {"analyzer": "char_wb", "ngram_range": (2, 5), "n_features": 2**18, "lowercase": True,
               "alternate_sign": False, "norm": "l2"}  # fmt: skip


def char_features(texts: Sequence[str]):
    """Sparse (n, 2**18) l2-normalised hashed character 2-5-gram counts (deterministic: murmurhash3)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(**CHAR_NGRAMS, dtype=np.float32).transform([t[:MAX_CHARS] for t in texts])


def language_key(lang: str | None, known: Sequence[str]) -> int | None:
    """Index of ``lang`` among the head's languages: exact code, then base code (de-DE -> de, no -> nb,
    zh -> zh-Hans); None when unknown (only the shared weights apply)."""
    if not lang:
        return None
    idx = {k.lower(): i for i, k in enumerate(known)}
    low = lang.lower()
    base = low.split("-")[0]
    for cand in (low, base, {"no": "nb", "zh": "zh-hans"}.get(base, "")):
        if cand in idx:
            return idx[cand]
    return None


def language_block(xs: np.ndarray, rows_lang: np.ndarray, n_langs: int):
    """Sparse (n, n_langs * d): row i holds ``xs[i]`` in the slot of its language (-1: no slot), so a linear model
    on it learns a per-language deviation of the embedding weights."""
    import scipy.sparse as sp

    n, d = xs.shape
    keep = rows_lang >= 0
    rows = np.repeat(np.flatnonzero(keep), d)
    cols = (rows_lang[keep][:, None] * d + np.arange(d)).ravel()
    return sp.csr_matrix((xs[keep].ravel(), (rows, cols)), shape=(n, max(n_langs, 1) * d))


@dataclass
class Head:
    """p = sigmoid(e @ (weight + lang_weight[lang]) + chars(text) @ char_weight + bias), e = (x - mean) / scale the
    standardised sentence embedding; ``lang_weight`` is the per-language deviation (zero for unknown languages)."""

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    char_weight: np.ndarray
    bias: float
    meta: dict
    lang_weight: np.ndarray | None = None  # (len(meta["languages"]), d)

    def logit(self, x: np.ndarray, texts: Sequence[str] | None = None, chars=None,
              langs: Sequence[str | None] | str | None = None) -> np.ndarray:
        """``chars``: precomputed ``char_features(texts)`` (CV reuses one matrix for every fold); ``langs``: one
        code for all rows or one per row."""
        e = (x - self.mean) / self.scale
        z = e @ self.weight + self.bias
        if self.lang_weight is not None and len(self.lang_weight) and langs is not None:
            known = self.meta.get("languages", [])
            per_row = [langs] * len(x) if isinstance(langs, str) else list(langs)
            keys: dict[str | None, int | None] = {}
            for i, lang in enumerate(per_row):
                if lang not in keys:
                    keys[lang] = language_key(lang, known)
                k = keys[lang]
                if k is not None:
                    z[i] += e[i] @ self.lang_weight[k]
        return z + (char_features(texts) if chars is None else chars) @ self.char_weight

    def predict(self, x: np.ndarray, texts: Sequence[str] | None = None, chars=None,
                langs: Sequence[str | None] | str | None = None) -> np.ndarray:
        return sigmoid(self.logit(x, texts, chars, langs))

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        lw = self.lang_weight if self.lang_weight is not None else np.zeros((0, len(self.weight)))
        tensors = {
            "mean": self.mean.astype(np.float32), "scale": self.scale.astype(np.float32),
            "weight": self.weight.astype(np.float32), "char_weight": self.char_weight.astype(np.float16),  # 2**18 weights: half precision keeps the file at 0.5 MB
            "bias": np.array([self.bias], np.float32), "lang_weight": lw.astype(np.float32),
        }  # fmt: skip
        # one metadata key holding canonical JSON: safetensors writes a metadata map in random order, and the
        # scorer's version is the file's hash, so the bytes must be reproducible
        return save(tensors, metadata={"toxbench": canonical_json(self.meta)})

    def save(self, path: Path) -> str:
        """Atomic write; returns the sha256 of the file (the scorer's version is tied to it)."""
        data = self.to_bytes()
        atomic_write_bytes(path, data)
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: Path) -> Head:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            raw = (f.metadata() or {}).get("toxbench", "{}")
            t = {k: f.get_tensor(k) for k in f.keys()}
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError:
            meta = {}
        if meta.get("format") != HEAD_FORMAT or "char_weight" not in t or "lang_weight" not in t:
            raise UsageError(
                f"{path} is not a {HEAD_FORMAT} head (format {meta.get('format')!r}); "
                f"retrain it with `{TRAIN_COMMAND}`"
            )
        return cls(t["mean"], t["scale"], t["weight"], t["char_weight"].astype(np.float32), float(t["bias"][0]), meta,
                   t["lang_weight"].astype(np.float64))


@dataclass(frozen=True)
class HeadConfig:
    """How the head is fit; the defaults were chosen by prompt-grouped CV on RTP-LX (see the module docstring)."""

    #: ridge penalty
    alpha: float = 1.0
    #: multiplier of the standardised embedding block relative to the l2-normalised character block, so one penalty
    #: suits both (the embedding's effective penalty is alpha / embedding_scale**2)
    embedding_scale: float = 0.025
    #: share of the regression target taken from the mean rating of the same prompt over all RTP-LX languages (less
    #: rater noise than one language's three raters)
    consensus: float = 0.5
    #: weight of a Jigsaw row relative to an RTP-LX row
    jigsaw_weight: float = 0.5
    #: graded target of a toxic Jigsaw comment
    jigsaw_target: float = 0.75
    #: per-language deviations of the embedding weights, scaled like the shared block (1.0: same penalty); 0: off
    language_scale: float = 1.0

    def as_meta(self) -> dict:
        return {"alpha": self.alpha, "embedding_scale": self.embedding_scale, "consensus": self.consensus,
                "jigsaw_weight": self.jigsaw_weight, "jigsaw_target": self.jigsaw_target,
                "language_scale": self.language_scale, "char_ngrams": CHAR_NGRAMS}  # fmt: skip


def graded_target(df: pd.DataFrame, cfg: HeadConfig) -> np.ndarray:
    """Regression target in [0, 1]: RTP-LX (mean rating - 1) / 4, blended with the prompt's cross-language mean."""
    own = (df["toxicity"].to_numpy(dtype=np.float64) - 1.0) / 4.0
    rtp = df["source"].to_numpy() == "rtp_lx"
    cons = df[rtp].groupby("group")["toxicity"].mean()
    shared = (df["group"].map(cons).to_numpy(dtype=np.float64) - 1.0) / 4.0
    t = np.where(np.isnan(shared), own, (1 - cfg.consensus) * own + cfg.consensus * shared)
    jig = df["source"].to_numpy() == "jigsaw"
    t[jig] = df["label"].to_numpy()[jig] * cfg.jigsaw_target
    return t


def sample_weights(df: pd.DataFrame, cfg: HeadConfig) -> np.ndarray:
    return np.where(df["source"].to_numpy() == "jigsaw", cfg.jigsaw_weight, 1.0)


def fit_head(
    x: np.ndarray, texts: Sequence[str], y: np.ndarray, target: np.ndarray | None = None,
    weights: np.ndarray | None = None, cfg: HeadConfig = HeadConfig(), meta: dict | None = None, chars=None,
    langs: Sequence[str] | None = None,
) -> Head:  # fmt: skip
    """Ridge regression of the graded ``target`` (ranks texts; uses the raters' full 1-5 scale) on the embedding,
    per-language deviations of the embedding weights (``langs``, one code per row; the head's languages are their
    sorted set) and the character n-grams, then Platt scaling of its output against the binary label ``y`` so the
    score is a probability; all folded into one linear head."""
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression, Ridge

    mean = x.mean(0).astype(np.float64)
    scale = x.std(0).astype(np.float64) + 1e-6
    xs = (x - mean) / scale * cfg.embedding_scale
    known = sorted(set(langs)) if langs is not None and cfg.language_scale > 0 else []
    row_lang = np.array([known.index(g) for g in langs]) if known else np.full(len(x), -1)
    blocks = [sp.csr_matrix(xs), char_features(texts) if chars is None else chars]
    if known:
        blocks.append(language_block(xs * cfg.language_scale, row_lang, len(known)))
    feats = sp.hstack(blocks, format="csr")
    reg = Ridge(alpha=cfg.alpha, solver="sparse_cg", tol=1e-6, max_iter=2000)
    reg.fit(feats, y if target is None else target, sample_weight=weights)
    s = feats @ reg.coef_ + reg.intercept_
    platt = LogisticRegression(C=1e4, max_iter=1000).fit(s[:, None], y, sample_weight=weights)
    a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    d = x.shape[1]
    n_chars = feats.shape[1] - d - len(known) * d
    w_emb = a * reg.coef_[:d] * cfg.embedding_scale
    w_chars = a * reg.coef_[d:d + n_chars]
    w_lang = (a * reg.coef_[d + n_chars:] * cfg.embedding_scale * cfg.language_scale).reshape(len(known), d)
    return Head(mean, scale, w_emb, w_chars, a * float(reg.intercept_) + b, {**(meta or {}), "languages": known},
                w_lang)
