"""Training and validation of the ``multilingual`` scorer's head: grouped CV, per-language ROC-AUC, entry points.

The data are in ``multilingual_data.py``, the encoder and its embedding cache in ``multilingual_encoder.py``, the
head in ``multilingual_head.py``. Validation never leaks a prompt: folds are grouped by RTP-LX ``Index``, so the same
prompt in any language (and its translations) sits wholly in train or wholly in test, and the cross-language target
is recomputed from the training fold only. English DecodingTrust texts are never trained on and measure agreement
with Perspective (label toxicity >= 0.5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...core.errors import UsageError
from .folds import fold_test_rows
from .multilingual_data import (
    PAPER_LANGS,
    RTP_LX_LOCALES,
    TOXIC_THRESHOLD,
    data_hash,
    load_decodingtrust,
    load_training_data,
)
from .multilingual_encoder import Encoder, default_encoder, embed, embedding_cache_path
from .multilingual_head import (
    HEAD_FORMAT,
    SHIPPED_HEAD,
    TRAIN_COMMAND,
    Head,
    HeadConfig,
    char_features,
    fit_head,
    graded_target,
    require_head,
    sample_weights,
)

DEFAULT_SEED = 0
DEFAULT_FOLDS = 5
GOAL_MEAN_AUC = 0.85
GOAL_MIN_AUC = 0.80


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y)
    if y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, p))


def cross_validated_scores(
    df: pd.DataFrame, x: np.ndarray, n_splits: int = DEFAULT_FOLDS, seed: int = DEFAULT_SEED,
    cfg: HeadConfig = HeadConfig(), progress: bool = True,
) -> np.ndarray:  # fmt: skip
    """Out-of-fold P(toxic) for every row, with folds grouped by ``df.group`` (targets recomputed per fold, so the
    cross-language consensus of a test prompt never reaches training)."""
    from tqdm.auto import tqdm

    oof = np.full(len(df), np.nan)
    y = df["label"].to_numpy()
    w = sample_weights(df, cfg)
    folds = fold_test_rows(df["group"].to_numpy(), n_splits, seed)
    chars = char_features(df["text"].tolist())
    for test in tqdm(folds, desc="cross-validation", disable=not progress):
        train = np.setdiff1d(np.arange(len(df)), test)
        part = df.iloc[train]
        head = fit_head(x[train], part["text"].tolist(), y[train], graded_target(part, cfg), w[train], cfg,
                        chars=chars[train], langs=part["lang"].tolist())  # fmt: skip
        oof[test] = head.predict(x[test], chars=chars[test], langs=df["lang"].to_numpy()[test].tolist())
    return oof


def per_language_table(df: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """ROC-AUC of ``scores`` against the human label for each RTP-LX locale (rows with source == rtp_lx)."""
    rows = []
    mask = (df["source"] == "rtp_lx").to_numpy()
    for locale, lang in RTP_LX_LOCALES.items():
        m = mask & (df["locale"] == locale).to_numpy()
        y = df["label"].to_numpy()[m]
        rows.append(
            {"lang": lang, "locale": locale, "paper": lang in PAPER_LANGS, "n": int(m.sum()), "n_toxic": int(y.sum()),
             "roc_auc": roc_auc(y, scores[m]), "reference": "RTP-LX human (mean >= 3), grouped CV"}
        )  # fmt: skip
    return pd.DataFrame(rows)


def summarize(table: pd.DataFrame) -> dict:
    paper = table[table["paper"] & table["reference"].str.startswith("RTP-LX")]
    allrtp = table[table["reference"].str.startswith("RTP-LX")]
    mean17, min17 = float(paper["roc_auc"].mean()), float(paper["roc_auc"].min())
    return {
        "mean_auc_paper17": mean17, "min_auc_paper17": min17, "mean_auc_all26": float(allrtp["roc_auc"].mean()),
        "min_auc_all26": float(allrtp["roc_auc"].min()), "goal_met": bool(mean17 >= GOAL_MEAN_AUC and min17 >= GOAL_MIN_AUC),
    }  # fmt: skip


def train_head(
    data_dir: Path, cache_dir: Path, seed: int = DEFAULT_SEED, encoder: Encoder | None = None, progress: bool = True,
    cfg: HeadConfig = HeadConfig(), out: Path | None = None,
) -> dict:  # fmt: skip
    """Embed the training data (cached under ``cache_dir``), fit the head on all of it, save it to ``out``
    (default: the shipped head). Returns a summary dict."""
    encoder = encoder or default_encoder()
    df = load_training_data(data_dir)
    x = embed(encoder, df["text"].tolist(), embedding_cache_path(cache_dir, encoder), progress=progress,
              desc="embedding training texts")  # fmt: skip
    meta = {"format": HEAD_FORMAT, "encoder": encoder.id, "seed": seed, **cfg.as_meta(), "data_hash": data_hash(df),
            "n_train": len(df), "toxic_threshold": TOXIC_THRESHOLD}  # fmt: skip
    head = fit_head(x, df["text"].tolist(), df["label"].to_numpy(), graded_target(df, cfg), sample_weights(df, cfg),
                    cfg, meta=meta, langs=df["lang"].tolist())  # fmt: skip
    path = Path(out) if out is not None else SHIPPED_HEAD
    sha = head.save(path)
    return {"head": str(path), "sha256": sha, "bytes": path.stat().st_size, **meta,
            "counts": df.groupby("source").size().to_dict()}  # fmt: skip


def evaluate_multilingual(
    data_dir: Path, cache_dir: Path, seed: int = DEFAULT_SEED, n_splits: int = DEFAULT_FOLDS,
    encoder: Encoder | None = None, progress: bool = True, cfg: HeadConfig = HeadConfig(),
    head_file: Path | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Per-language ROC-AUC table.

    RTP-LX rows: out-of-fold scores from heads trained like the saved one on folds grouped by prompt ``Index``,
    against the human label. Final row: the saved head (which never saw DecodingTrust) on English DecodingTrust
    prompts + continuations against Perspective toxicity >= 0.5; DecodingTrust texts that are also RTP-LX training
    texts are dropped.
    """
    hp = require_head(head_file)
    encoder = encoder or default_encoder()
    head = Head.load(hp)
    if head.meta.get("encoder") != encoder.id:
        raise UsageError(
            f"the trained head was fit on encoder {head.meta.get('encoder')!r}, not {encoder.id!r}; "
            f"retrain it with `{TRAIN_COMMAND}`"
        )
    df = load_training_data(data_dir)
    cache = embedding_cache_path(cache_dir, encoder)
    x = embed(encoder, df["text"].tolist(), cache, progress=progress, desc="embedding training texts")
    oof = cross_validated_scores(df, x, n_splits, seed, cfg, progress=progress)
    table = per_language_table(df, oof)
    dt = load_decodingtrust(data_dir, exclude=set(df["text"]))
    xd = embed(encoder, dt["text"].tolist(), cache, progress=progress, desc="embedding DecodingTrust texts")
    table.loc[len(table)] = {
        "lang": "en", "locale": "DecodingTrust", "paper": False, "n": len(dt), "n_toxic": int(dt["label"].sum()),
        "roc_auc": roc_auc(dt["label"].to_numpy(), head.predict(xd, dt["text"].tolist(), langs="en")),
        "reference": "Perspective toxicity >= 0.5 (held out)",
    }  # fmt: skip
    return table


def format_table(table: pd.DataFrame) -> str:
    """Markdown table plus the goal line, as printed by the eval command and shown in the README."""
    show = table.assign(
        paper=table["paper"].map({True: "yes", False: ""}), roc_auc=table["roc_auc"].map(lambda v: f"{v:.3f}")
    )[["lang", "locale", "paper", "n", "n_toxic", "roc_auc", "reference"]]
    s = summarize(table)
    lines = [show.to_markdown(index=False, disable_numparse=True)]
    lines.append("")
    lines.append(
        f"mean ROC-AUC over the 17 paper languages: {s['mean_auc_paper17']:.3f} (goal >= {GOAL_MEAN_AUC}); "
        f"min: {s['min_auc_paper17']:.3f} (goal >= {GOAL_MIN_AUC}); mean over all 26: {s['mean_auc_all26']:.3f}; "
        f"goal {'met' if s['goal_met'] else 'NOT met'}"
    )
    return "\n".join(lines)
