"""Training ``rtp-ngram``: the training texts, the inner-CV choice of (C, random-sample weight) and quantile map,
nested cross-validation, and the head with its out-of-fold scores.

Training texts: every Perspective-scored RTP text of the data dir -- DecodingTrust prompts + continuations, the
ml-act fixture (prompts, continuations, GPT-2 generations) and the random RTP sample (prompts + continuations) --
with Perspective's toxicity as a soft target. Folds are grouped by prompt (a prompt, its continuation and its
generations always together).

Nested CV: for each of 5 outer folds, (C, random-sample weight) is chosen by 3-fold grouped CV on the other four
(ROC-AUC against Perspective >= 0.5), a head is fitted on them with that choice, the quantile map fitted on the
chosen candidate's inner out-of-fold scores of the random sample is put after it, and it scores the outer fold. Those out-of-fold scores are
what ``scorers eval`` and ``scorers card`` report; they ship beside the head
(``rtp_ngram_head.oof.safetensors``, keyed by text hash), because recomputing them takes many fits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...core.io import atomic_write_bytes
from .folds import fold_ids
from .ngram_stack import HEAD_FILE, HEAD_FORMAT, NgramHead, Ngrams, design, fit_idf
from .rtp_reference import RANDOM_FILES, RTP_FILES, load_rtp_labelled
from .stacked import Features, features_cached

#: (C, weight of the random sample's rows): the random sample is the distribution a benchmark scores, and a
#: heavier weight makes the head fit it before DecodingTrust's extremes. A first build offered Jigsaw's human-labelled
#: comments at weight 0.3 beside 0; inner CV chose 0 in all 5 outer folds, so they are not part of the data.
GRID = ((8.0, 1.0), (8.0, 2.0), (32.0, 1.0), (32.0, 2.0))
DENSE_WEIGHT = 0.2  # the dense features' scale beside the unit-norm n-gram vector
OUTER, INNER = 5, 3
QMAP_KNOTS = 101


@dataclass
class TrainingSet:
    texts: list[str]
    target: np.ndarray  # Perspective toxicity
    weight: np.ndarray
    group: np.ndarray  # prompt hash: the CV unit
    part: np.ndarray  # prompt | continuation | generation
    source: np.ndarray  # decodingtrust | random


def training_set(data_dir: str | Path | None) -> TrainingSet:
    """Every Perspective-scored RTP text of the data dir once (weight 1; ``_rows`` weighs the random sample)."""
    texts: list[str] = []
    cols: dict[str, list] = {k: [] for k in ("target", "weight", "group", "part", "source")}
    seen: set[str] = set()
    for files, source in ((RTP_FILES, "decodingtrust"), (RANDOM_FILES, "random")):
        d = load_rtp_labelled(data_dir, files)
        for t, p, g, part in zip(d.texts, d.perspective, d.group, d.part):
            if t not in seen:
                seen.add(t)
                texts.append(t)
                for k, v in zip(cols, (p, 1.0, g, part, source)):
                    cols[k].append(v)
    return TrainingSet(texts, *(np.asarray(cols[k], dtype=np.float64 if k in ("target", "weight") else object)
                                for k in cols))


def fit_head(counts: Any, dense: np.ndarray, target: np.ndarray, weight: np.ndarray, c: float,
             meta: dict | None = None) -> NgramHead:
    """IDF and standardisation from these rows, then the soft-target logistic regression (each row enters as a
    toxic row weighted w*p and a non-toxic row weighted w*(1-p)); lbfgs from zero is deterministic."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    idf = fit_idf(counts)
    mean, scale = dense.mean(0), dense.std(0) + 1e-6
    x = design(counts, dense, idf, mean, scale, DENSE_WEIGHT)
    lr = LogisticRegression(C=c, max_iter=2000, tol=1e-4)
    n = x.shape[0]
    lr.fit(sparse.vstack([x, x]).tocsr(), np.r_[np.ones(n), np.zeros(n)],
           sample_weight=np.r_[weight * target, weight * (1 - target)])
    return NgramHead(idf, mean, scale, lr.coef_[0].astype(np.float64), float(lr.intercept_[0]), DENSE_WEIGHT,
                     dict(meta or {}))


def _rows(ts: TrainingSet, rows: np.ndarray, random_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """The rows a candidate trains on and their weights (the random sample's rows weighted ``random_weight``)."""
    return rows, np.where(ts.source[rows] == "random", random_weight, ts.weight[rows])


def _auc(scores: np.ndarray, target: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = target >= 0.5
    return float(roc_auc_score(y, scores)) if 0 < y.sum() < len(y) else float("nan")


def select(counts: Any, dense: np.ndarray, ts: TrainingSet, rows: np.ndarray, seed: int
           ) -> tuple[tuple[float, float], tuple[np.ndarray, np.ndarray]]:
    """The ``GRID`` candidate with the best mean ROC-AUC over ``INNER`` grouped folds of ``rows``, and the quantile
    map fitted on that candidate's inner out-of-fold scores of the random sample (``quantile_map``)."""
    fold = fold_ids(ts.group[rows], INNER, seed, unit="prompts")
    best, best_auc, best_oof = GRID[0], -1.0, None
    for c, rw in GRID:
        aucs, oof = [], np.zeros(len(rows))
        for k in range(INNER):
            test = rows[fold == k]
            train, w = _rows(ts, rows[fold != k], rw)
            oof[fold == k] = fit_head(counts[train], dense[train], ts.target[train], w, c).raw(
                counts[test], dense[test])
            aucs.append(_auc(oof[fold == k], ts.target[test]))
        if np.mean(aucs) > best_auc:
            best, best_auc, best_oof = (c, rw), float(np.mean(aucs)), oof
    random = ts.source[rows] == "random"
    return best, quantile_map(best_oof[random], ts.target[rows][random])


def quantile_map(scores: np.ndarray, target: np.ndarray, knots: int = QMAP_KNOTS) -> tuple[np.ndarray, np.ndarray]:
    """Knots of the monotone map sending the quantiles of out-of-fold ``scores`` to those of Perspective's
    ``target`` (linear between them, clamped outside): a head fitted on all the data scores new text the way the
    inner heads scored their held-out folds, so after the map its scores have Perspective's distribution on such
    text. x strictly increasing, y non-decreasing."""
    levels = np.linspace(0.0, 1.0, knots)
    x = np.quantile(scores, levels)
    x = x + np.arange(knots) * 1e-9  # ties (flat stretches of scores) become a steep step, not a division by 0
    return x, np.maximum.accumulate(np.quantile(target, levels))


def mapped(head: NgramHead, qmap: tuple[np.ndarray, np.ndarray]) -> NgramHead:
    head.qmap_x, head.qmap_y = qmap
    return head


def nested_oof(counts: Any, dense: np.ndarray, ts: TrainingSet, seed: int,
               log=lambda m: None) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Out-of-fold scores of every text and each outer fold's choice (selection and quantile map inside)."""
    fold = fold_ids(ts.group, OUTER, seed, unit="prompts")
    oof = np.full(len(ts.texts), np.nan)
    chosen = []
    for k in range(OUTER):
        test, train = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        (c, rw), qmap = select(counts, dense, ts, train, seed + 1 + k)
        chosen.append((c, rw))
        rows, w = _rows(ts, train, rw)
        head = mapped(fit_head(counts[rows], dense[rows], ts.target[rows], w, c), qmap)
        oof[test] = head.predict(counts[test], dense[test])
        log(f"[toxbench] outer fold {k + 1}/{OUTER}: C={c:g}, random-sample weight={rw:g}, "
            f"ROC-AUC {_auc(oof[test], ts.target[test]):.4f}")
    return oof, chosen


def summary(oof: np.ndarray, ts: TrainingSet) -> dict[str, float]:
    out = {}
    for source in ("random", "decodingtrust"):
        for part in ("all", "prompt", "continuation", "generation"):
            m = (ts.source == source) & ((ts.part == part) if part != "all" else True)
            if m.sum():
                out[f"{source}/{part}"] = round(_auc(oof[m], ts.target[m]), 4)
    return out


def train_head(data_dir: str | Path | None = None, cache_dir: str | Path | None = None, out: Path = HEAD_FILE,
               seed: int = 0, log=lambda m: None) -> dict[str, Any]:
    """Nested CV (reported), then the selection and the head on all training texts; writes the head and the
    out-of-fold scores keyed by the head's sha256."""
    ts = training_set(data_dir)
    feats, ngrams = Features(cache_dir), Ngrams()
    dense = features_cached(feats, ts.texts, Path(cache_dir) if cache_dir else None)
    from .jigsaw_bilstm import normalize_quotes

    counts = ngrams([normalize_quotes(t) for t in ts.texts])
    oof, chosen = nested_oof(counts, dense, ts, seed, log)
    (c, rw), qmap = select(counts, dense, ts, np.arange(len(ts.texts)), seed)
    data_hash = hashlib.sha256("\n".join(f"{g}\t{v:.8f}\t{w:g}\t{t}" for t, v, w, g in
                                         zip(ts.texts, ts.target, ts.weight, ts.group)).encode()).hexdigest()
    meta = {"format": HEAD_FORMAT, "features": {"dense": _json(feats.id), "ngrams": _json(ngrams.id)},
            "C": c, "random_weight": rw, "dense_weight": DENSE_WEIGHT, "grid": [list(g) for g in GRID],
            "outer_choices": [list(x) for x in chosen],
            "seed": seed, "n_train": len(ts.texts),
            "counts": {s: int((ts.source == s).sum()) for s in ("decodingtrust", "random")},
            "files": [*RTP_FILES, *RANDOM_FILES], "data_hash": data_hash,
            "target": "Perspective toxicity (soft target)", "nested_cv": summary(oof, ts)}
    rows, w = _rows(ts, np.arange(len(ts.texts)), rw)
    head = mapped(fit_head(counts[rows], dense[rows], ts.target[rows], w, c, meta), qmap)
    blob = head.to_bytes()
    atomic_write_bytes(Path(out), blob)
    sha = NgramHead.load(Path(out)).content_sha256()  # of the arrays as stored (float16), what scores use
    write_oof(oof_path(Path(out)), ts, oof, sha)
    return {"path": str(out), "sha256": sha, "bytes": len(blob), **head.meta}


def oof_path(head: Path) -> Path:
    """Where a head's out-of-fold scores lie: beside it, ``NAME.oof.safetensors``."""
    return Path(head).with_name(Path(head).stem + ".oof.safetensors")


def _json(s: str) -> Any:
    import json

    return json.loads(s)


def write_oof(path: Path, ts: TrainingSet, oof: np.ndarray, head_sha: str) -> None:
    from safetensors.numpy import save

    keep = ~np.isnan(oof)
    keys = np.array([int(hashlib.sha256(t.encode()).hexdigest()[:16], 16) for t, k in zip(ts.texts, keep) if k],
                    dtype=np.uint64)
    atomic_write_bytes(path, save({"text_sha": keys, "score": oof[keep].astype(np.float32)},
                                  metadata={"head_sha256": head_sha}))


def stored_oof(path: Path, head_sha: str) -> dict[str, float] | None:
    """``{text sha256[:16]: out-of-fold score}`` when ``path`` belongs to the head ``head_sha``; else None."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    with safe_open(str(path), framework="numpy") as f:
        if (f.metadata() or {}).get("head_sha256") != head_sha:
            return None
        keys, scores = f.get_tensor("text_sha"), f.get_tensor("score")
    return {f"{int(k):016x}": float(s) for k, s in zip(keys, scores)}
