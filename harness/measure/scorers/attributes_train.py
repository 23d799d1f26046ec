"""Training ``rtp-attributes``: eight soft-target heads, the boosted toxicity stage and the quantile maps, with the
figures it reports from nested cross-validation.

Training texts: ``rtp-ngram``'s (every Perspective-scored RTP text of the data dir, folds grouped by prompt), each
with Perspective's eight attributes. Each head is ``rtp-ngram``'s logistic head (``ngram_train.fit_head``) on one
attribute; C = 8 and the random sample's weight 2 are carried over from ``rtp-ngram``, whose inner CV chose them in
3 of 5 outer folds, and not selected again (each candidate would cost another ~130 fits). The forest's settings
(``gbtrees.GB_PARAMS``) were fixed before the nested run.

Nested CV (5 outer folds): for outer fold k, the forest learns from the heads' inner out-of-fold logits of the other
four folds (for fold j: heads fitted without folds j and k), the quantile maps from the forest's cross-fitted scores
of those texts; heads fitted without fold k then score fold k. So neither stage ever sees the outer test fold. The
shipped model is the same construction one level up: the forest learns from the 5-fold out-of-fold logits, the heads
are fitted on every text. Heads fitted without a set of folds are cached (``cache_dir/scorers/rtp-attributes``), so
a killed training resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import UsageError
from ...core.io import atomic_write_bytes, canonical_json
from ...core.paths import data_file
from .attributes_head import ATTRIBUTES, HEAD_FILE, HEAD_FORMAT, AttributeHeads, stage2_inputs
from .base import sigmoid
from .folds import fold_ids
from .gbtrees import GB_PARAMS, fit_forest
from .ngram_stack import Ngrams, design
from .ngram_train import DENSE_WEIGHT, OUTER, TrainingSet, _auc, fit_head, quantile_map, training_set
from .rtp_reference import RANDOM_FILES, RTP_FILES
from .stacked import Features, features_cached

C, RANDOM_WEIGHT = 8.0, 2.0
TARGET_CLIP = 1e-3  # the forest regresses logit(Perspective toxicity) clipped to [1e-3, 1 - 1e-3]


def attribute_targets(data_dir: str | Path | None, texts: list[str]) -> np.ndarray:
    """Perspective's eight attributes of each training text, (texts, 8), first occurrence; NaN where absent."""
    found: dict[str, list[float]] = {}
    for rel in (*RTP_FILES, *RANDOM_FILES):
        with open(data_file(rel, data_dir), encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                for d in (rec["prompt"], rec["continuation"], *rec.get("generations", [])):
                    t = d.get("text")
                    if t and t not in found and d.get("toxicity") is not None:
                        found[t] = [np.nan if d.get(a) is None else float(d[a]) for a in ATTRIBUTES]
    out = np.array([found[t] for t in texts], dtype=np.float64).reshape(len(texts), len(ATTRIBUTES))
    for i, a in enumerate(ATTRIBUTES):
        if len(texts) and np.isnan(out[:, i]).all():
            raise UsageError(f"no training text has Perspective's {a!r} score; rtp-attributes needs all of "
                             f"{', '.join(ATTRIBUTES)} (RTP records carry them)")
    return out


class HeadFits:
    """The eight heads fitted without some outer folds, and their logits on those folds' rows (cached on disk)."""

    def __init__(self, counts: Any, dense: np.ndarray, targets: np.ndarray, weight: np.ndarray, fold: np.ndarray,
                 cache: Path | None, log=lambda m: None) -> None:
        self.counts, self.dense, self.targets, self.weight, self.fold = counts, dense, targets, weight, fold
        self.cache, self.log = cache, log

    def heads(self, rows: np.ndarray) -> list:
        """One ``NgramHead`` per attribute fitted on ``rows`` (rows without a value weigh 0)."""
        out = []
        for i in range(len(ATTRIBUTES)):
            y = self.targets[rows, i]
            missing = np.isnan(y)
            out.append(fit_head(self.counts[rows], self.dense[rows], np.where(missing, 0.0, y),
                                np.where(missing, 0.0, self.weight[rows]), C))
        return out

    def logits_without(self, excluded: tuple[int, ...]) -> np.ndarray:
        """(rows of the ``excluded`` folds, 8): logits of heads fitted on every other fold."""
        path = self.cache / f"without-{'-'.join(map(str, excluded))}.safetensors" if self.cache else None
        if path is not None and path.is_file():
            from safetensors.numpy import load_file

            return load_file(str(path))["logits"]
        held = np.isin(self.fold, excluded)
        self.log(f"[toxbench] fitting the {len(ATTRIBUTES)} heads without fold(s) {', '.join(map(str, excluded))}")
        z = np.stack([logits(h, self.counts[held], self.dense[held]) for h in self.heads(np.flatnonzero(~held))], 1)
        if path is not None:
            from safetensors.numpy import save

            atomic_write_bytes(path, save({"logits": z}))
        return z

    def inner_logits(self, folds: list[int], outer: int | None) -> np.ndarray:
        """Out-of-fold logits of the rows of ``folds`` (each fold's from heads fitted without it and ``outer``),
        in row order."""
        rows = np.flatnonzero(np.isin(self.fold, folds))
        z = np.empty((len(rows), len(ATTRIBUTES)))
        for j in folds:
            excluded = tuple(sorted({j} | ({outer} if outer is not None else set())))
            held = np.flatnonzero(np.isin(self.fold, excluded))
            z[np.isin(rows, held[self.fold[held] == j])] = self.logits_without(excluded)[self.fold[held] == j]
        return z


def logits(head: Any, counts: Any, dense: np.ndarray) -> np.ndarray:
    x = design(counts, dense, head.idf, head.mean, head.scale, head.dense_weight)
    return np.asarray(x @ head.weight).reshape(-1) + head.bias


def second_stage(z: np.ndarray, rows: np.ndarray, ts: TrainingSet, targets: np.ndarray, weight: np.ndarray,
                 seed: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """The forest on out-of-fold logits ``z`` of ``rows`` and the quantile maps of all eight outputs (toxicity's
    from the forest's 5-fold cross-fitted scores; the others' from their heads' logits), fitted on the random
    sample's rows."""
    x = stage2_inputs(z, [ts.texts[i] for i in rows])
    tox = np.clip(targets[rows, 0], TARGET_CLIP, 1 - TARGET_CLIP)
    y, w = np.log(tox / (1 - tox)), weight[rows]
    forest = fit_forest(x, y, w)
    folds = fold_ids(ts.group[rows], OUTER, seed, unit="prompts")
    crossed = np.zeros(len(rows))
    for k in range(OUTER):
        crossed[folds == k] = fit_forest(x[folds != k], y[folds != k], w[folds != k]).predict(x[folds == k])
    random = ts.source[rows] == "random"
    maps = []
    for i in range(len(ATTRIBUTES)):
        score = sigmoid(crossed if i == 0 else z[:, i])[random]
        target = targets[rows, i][random]
        ok = ~np.isnan(target)
        maps.append(quantile_map(score[ok], target[ok]))
    return forest, np.stack([m[0] for m in maps]), np.stack([m[1] for m in maps])


def outputs(forest: Any, qx: np.ndarray, qy: np.ndarray, z: np.ndarray, texts: list[str]) -> np.ndarray:
    """(texts, 8) scores on Perspective's scale from the heads' logits ``z`` (as ``AttributeHeads.predict``)."""
    raw = sigmoid(z)
    raw[:, 0] = sigmoid(forest.predict(stage2_inputs(z, texts)))
    return np.stack([np.interp(raw[:, i], qx[i], qy[i]) for i in range(len(ATTRIBUTES))], 1)


def nested_oof(fits: HeadFits, ts: TrainingSet, targets: np.ndarray, weight: np.ndarray, seed: int,
               log=lambda m: None) -> np.ndarray:
    """(texts, 8) out-of-fold scores: for each outer fold, both stages fitted without it."""
    oof = np.full((len(ts.texts), len(ATTRIBUTES)), np.nan)
    for k in range(OUTER):
        others = [j for j in range(OUTER) if j != k]
        train, test = np.flatnonzero(fits.fold != k), np.flatnonzero(fits.fold == k)
        forest, qx, qy = second_stage(fits.inner_logits(others, k), train, ts, targets, weight, seed + 1 + k)
        oof[test] = outputs(forest, qx, qy, fits.logits_without((k,)), [ts.texts[i] for i in test])
        log(f"[toxbench] outer fold {k + 1}/{OUTER}: toxicity ROC-AUC {_auc(oof[test, 0], targets[test, 0]):.4f}")
    return oof


def agreement(oof: np.ndarray, ts: TrainingSet, targets: np.ndarray) -> dict[str, Any]:
    """Nested-CV ROC-AUC (Perspective ≥ 0.5) per source and part, and each attribute's ROC-AUC and Spearman on
    the random sample."""
    from scipy.stats import spearmanr

    out: dict[str, Any] = {}
    for source in ("random", "decodingtrust"):
        for part in ("all", "prompt", "continuation", "generation"):
            m = (ts.source == source) & ((ts.part == part) if part != "all" else True)
            if m.sum():
                out[f"{source}/{part}"] = round(_auc(oof[m, 0], targets[m, 0]), 4)
    random = ts.source == "random"
    per = {}
    for i, a in enumerate(ATTRIBUTES):
        m = random & ~np.isnan(targets[:, i])
        per[a] = {"roc_auc": round(_auc(oof[m, i], targets[m, i]), 4),
                  "spearman": round(float(spearmanr(oof[m, i], targets[m, i])[0]), 4),
                  "flagged": round(float((oof[m, i] >= 0.5).mean()), 4),
                  "perspective_flagged": round(float((targets[m, i] >= 0.5).mean()), 4)}
    return {"toxicity": out, "random_attributes": per}


def train_heads(data_dir: str | Path | None = None, cache_dir: str | Path | None = None, out: Path = HEAD_FILE,
                seed: int = 0, log=lambda m: None) -> dict[str, Any]:
    """Nested CV (reported), then the shipped heads, forest and maps; writes the heads and their out-of-fold
    scores keyed by the heads' content hash."""
    from .jigsaw_bilstm import normalize_quotes

    ts = training_set(data_dir)
    targets = attribute_targets(data_dir, ts.texts)
    feats, ngrams = Features(cache_dir), Ngrams()
    dense = features_cached(feats, ts.texts, Path(cache_dir) if cache_dir else None)
    counts = ngrams([normalize_quotes(t) for t in ts.texts])
    weight = np.where(ts.source == "random", RANDOM_WEIGHT, ts.weight)
    data_hash = hashlib.sha256("\n".join(
        f"{g}\t{' '.join(f'{v:.8f}' for v in row)}\t{t}" for t, row, g in zip(ts.texts, targets, ts.group)
    ).encode()).hexdigest()
    fold = fold_ids(ts.group, OUTER, seed, unit="prompts")
    key = hashlib.sha256(canonical_json([data_hash, feats.id, ngrams.id, C, RANDOM_WEIGHT, DENSE_WEIGHT, seed,
                                         HEAD_FORMAT]).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / "scorers" / "rtp-attributes" / f"train-{key}" if cache_dir else None
    fits = HeadFits(counts, dense, targets, weight, fold, cache, log)
    oof = nested_oof(fits, ts, targets, weight, seed, log)
    forest, qx, qy = second_stage(fits.inner_logits(list(range(OUTER)), None), np.arange(len(ts.texts)), ts,
                                  targets, weight, seed)
    log("[toxbench] fitting the shipped heads on every training text")
    heads = fits.heads(np.arange(len(ts.texts)))
    meta = {"format": HEAD_FORMAT, "features": {"dense": json.loads(feats.id), "ngrams": json.loads(ngrams.id)},
            "attributes": list(ATTRIBUTES), "C": C, "random_weight": RANDOM_WEIGHT, "dense_weight": DENSE_WEIGHT,
            "stage2": {"model": "HistGradientBoostingRegressor", **GB_PARAMS,
                       "inputs": "8 head logits + log(1 + characters)", "target": "logit(Perspective toxicity)"},
            "seed": seed, "n_train": len(ts.texts),
            "counts": {s: int((ts.source == s).sum()) for s in ("decodingtrust", "random")},
            "files": [*RTP_FILES, *RANDOM_FILES], "data_hash": data_hash,
            "target": "Perspective's attributes (soft targets)", "nested_cv": agreement(oof, ts, targets)}
    h0 = heads[0]
    model = AttributeHeads(h0.idf, h0.mean, h0.scale, np.stack([h.weight for h in heads]),
                           np.array([h.bias for h in heads]), DENSE_WEIGHT, forest, qx, qy, meta)
    blob = model.to_bytes()
    atomic_write_bytes(Path(out), blob)
    stored = AttributeHeads.load(Path(out))
    rounding = float(np.abs(stored.predict(counts, dense, ts.texts)["toxicity"]
                            - model.predict(counts, dense, ts.texts)["toxicity"]).max())
    sha = stored.content_sha256()
    write_oof(oof_path(Path(out)), ts.texts, oof, sha)
    return {"path": str(out), "sha256": sha, "bytes": len(blob), "storage_rounding": rounding, **meta}


def oof_path(head: Path) -> Path:
    """Where the heads' out-of-fold scores lie: beside them, ``NAME.oof.safetensors``."""
    return Path(head).with_name(Path(head).stem + ".oof.safetensors")


def write_oof(path: Path, texts: list[str], oof: np.ndarray, head_sha: str) -> None:
    from safetensors.numpy import save

    keys = np.array([int(hashlib.sha256(t.encode()).hexdigest()[:16], 16) for t in texts], dtype=np.uint64)
    tensors = {"text_sha": keys, **{a: oof[:, i].astype(np.float32) for i, a in enumerate(ATTRIBUTES)}}
    atomic_write_bytes(path, save(tensors, metadata={"head_sha256": head_sha}))


def stored_oof(path: Path, head_sha: str, attribute: str = "toxicity") -> dict[str, float] | None:
    """``{text sha256[:16]: out-of-fold score of attribute}`` when ``path`` belongs to the heads ``head_sha``."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    with safe_open(str(path), framework="numpy") as f:
        if (f.metadata() or {}).get("head_sha256") != head_sha:
            return None
        keys, scores = f.get_tensor("text_sha"), f.get_tensor(attribute)
    return {f"{int(k):016x}": float(s) for k, s in zip(keys, scores)}
