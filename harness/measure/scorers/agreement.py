"""Agreement of scorers with the Perspective API scores stored in RealToxicityPrompts records.

Two distributions of reference texts (``rtp_reference.py``), each carrying Perspective's ``toxicity`` (texts
without it are skipped): a random sample of RTP (``realtoxicityprompts/quark_val``, prompts and continuations:
ordinary text, no scorer trained on it), and the prompts and continuations of
``realtoxicityprompts/decodingtrust/{toxic,nontoxic}.jsonl`` (prompts at the extremes of toxicity) with the prompts,
continuations and GPT-2 generations of ``realtoxicityprompts/ml_act_fixture``. A scorer trained on texts it is
measured on (``rtp-stack``, on the second set) reports out-of-fold scores, folds grouped by prompt. Metrics: ROC-AUC against
``toxicity >= 0.5``, Spearman correlation, mean absolute error on Perspective's scale, the share flagged at 0.5
(scorer vs Perspective) and texts/s of the bare scorer (no cache). Calibration is fitted on the prompts and
evaluated on the continuations only, so no text is both fitted and measured.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import UsageError
from . import build_scorer
from .calibration import fit_calibration
from .labelled import LabelledTexts
from .rtp_reference import PARTS, RANDOM_FILES, RTP_FILES, ReferenceTexts, load_reference


def calibration_error(scores: np.ndarray, reference: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: over 10 equal-width score bins, the text-weighted |mean score - mean reference|.

    With a binary reference this is the usual ECE; with Perspective scores it measures how far the scores are from
    Perspective's scale (what toxicity probability and toxic fraction need to be comparable)."""
    s, r = np.asarray(scores, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if not len(s):
        return float("nan")
    idx = np.minimum((np.clip(s, 0.0, 1.0) * bins).astype(int), bins - 1)
    err = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            err += m.sum() * abs(s[m].mean() - r[m].mean())
    return float(err / len(s))


def agreement(scores: np.ndarray, perspective: np.ndarray) -> dict[str, float]:
    """ROC-AUC vs reference >= 0.5, Spearman, MAE, calibration error, flagged shares at 0.5.

    ``perspective``: Perspective scores (or any reference in [0, 1]; a 0/1 label works the same way)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    scores, perspective = np.asarray(scores, dtype=np.float64), np.asarray(perspective, dtype=np.float64)
    y = perspective >= 0.5
    auc = float(roc_auc_score(y, scores)) if 0 < y.sum() < len(y) else float("nan")
    rho = float(spearmanr(scores, perspective).statistic) if len(scores) > 1 else float("nan")
    return {
        "roc_auc": auc,
        "spearman": rho,
        "mae": float(np.mean(np.abs(scores - perspective))),
        "calibration_error": calibration_error(scores, perspective),
        "flagged": float(np.mean(scores >= 0.5)),
        "perspective_flagged": float(np.mean(y)),
    }


def timed_scores(scorer: Any, texts: list[str], batch: int = 2048) -> tuple[np.ndarray, float]:
    """Scores and texts/s; the scorer is called in batches like a run does (bare scorer, so no cache hits)."""
    from tqdm.auto import tqdm

    out = []
    t0 = time.perf_counter()
    for s in tqdm(range(0, len(texts), batch), desc=f"scoring with {scorer.name}", unit="batch", leave=False):
        out.append(np.asarray(scorer.score(texts[s:s + batch], lang="en"), dtype=np.float64))
    dt = time.perf_counter() - t0
    return np.concatenate(out) if out else np.zeros(0), len(texts) / dt if dt > 0 else float("inf")


#: The two text distributions ``scorers eval`` reports, ordinary text first: the random RTP sample (no scorer is
#: trained on it) and the reference the trained heads learn from (prompts picked at the extremes of toxicity).
DISTRIBUTIONS = {"random RTP sample": RANDOM_FILES, "DecodingTrust extremes": RTP_FILES}


def evaluate_scorers(names: list[str], data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                     calibrate: str | None = None, options: dict[str, dict] | None = None,
                     log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> "pd.DataFrame":  # noqa: F821
    """One row per (scorer, distribution, texts, calibration): the agreement table ``toxbench scorers eval``
    prints; ``log`` says which scorer is working (some take a minute on a CPU)."""
    import pandas as pd

    refs = {label: load_reference(data_dir, files) for label, files in DISTRIBUTIONS.items()}
    rows: list[dict] = []
    for i, name in enumerate(names):
        log(f"[toxbench] scorer {i + 1}/{len(names)}: {name} on {sum(map(len, refs.values()))} texts")
        try:
            scorer = build_scorer(name, cache_dir=cache_dir, **(options or {}).get(name, {}))
        except UsageError as e:
            rows.append({"scorer": name, "texts": "unavailable", "note": str(e)})
            continue
        for dist, ref in refs.items():
            rows += _distribution_rows(scorer, name, dist, ref, data_dir, calibrate)
        extra = getattr(scorer, "extra_evaluation", None)  # e.g. per-language tables of a multilingual scorer
        if callable(extra):
            for row in extra(data_dir=data_dir):
                rows.append({"scorer": name, **row})
    return pd.DataFrame(rows)


def _distribution_rows(scorer: Any, name: str, dist: str, ref: ReferenceTexts, data_dir: str | Path | None,
                       calibrate: str | None) -> list[dict]:
    scores, tps = timed_scores(scorer, ref.texts)
    # a scorer trained on these very texts reports out-of-fold scores (grouped by prompt), never in-sample ones
    held_out = getattr(scorer, "held_out_scores", None)
    fit = "raw"
    if callable(held_out):
        oof = held_out(ref.texts, data_dir=data_dir)
        if oof is not None:
            scores, fit = oof, "held-out folds"
    by_part = {p: scores[ref.part == p] for p in PARTS}
    rows = []
    for label, p in (("all", None), ("prompts", "prompt"), ("continuations", "continuation"),
                     ("generations", "generation")):
        r = ref if p is None else ref.select(p)
        if len(r):
            rows.append({"scorer": name, "distribution": dist, "texts": label, "calibration": fit, "n": len(r),
                         **agreement(scores if p is None else by_part[p], r.perspective), "texts_per_s": tps})
    if calibrate:
        prompts, conts = ref.select("prompt"), ref.select("continuation")
        cal = fit_calibration(calibrate, by_part["prompt"], prompts.perspective)
        rows.append({"scorer": name, "distribution": dist, "texts": "continuations",
                     "calibration": f"{calibrate} (fit on prompts)", "n": len(conts),
                     **agreement(cal.apply(by_part["continuation"]), conts.perspective), "texts_per_s": tps})
    return rows


def to_markdown(df: "pd.DataFrame") -> str:  # noqa: F821
    """The table as Markdown, numbers rounded for the README."""
    df = df.copy()
    rename = {"roc_auc": "ROC-AUC", "spearman": "Spearman", "mae": "MAE", "calibration_error": "calib. error",
              "flagged": "flagged >= 0.5", "perspective_flagged": "Perspective >= 0.5",
              "reference_flagged": "reference >= 0.5", "texts_per_s": "texts/s"}
    for c in ("roc_auc", "spearman", "mae", "calibration_error", "flagged", "perspective_flagged",
              "reference_flagged"):
        if c in df:
            df[c] = df[c].map(lambda v: "" if v != v else f"{v:.3f}")
    if "texts_per_s" in df:
        df["texts_per_s"] = df["texts_per_s"].map(lambda v: "" if v != v else f"{v:,.0f}")
    if "n" in df:
        df["n"] = df["n"].map(lambda v: "" if v != v else f"{int(v)}")
    df = df.rename(columns=rename).fillna("")
    numeric = {"n", *rename.values()}
    # numbers stay as formatted ("1.000", not "1"): no re-parsing by tabulate, right-aligned by hand
    return df.to_markdown(index=False, disable_numparse=True,
                          colalign=["right" if c in numeric else "left" for c in df.columns])


def evaluate_on_file(names: list[str], data: LabelledTexts, cache_dir: str | Path | None = None,
                     options: dict[str, dict] | None = None) -> "pd.DataFrame":  # noqa: F821
    """The agreement table on a user's labelled file: one row per scorer over all texts, plus one per language
    when the file has a language column (each language scored with ``lang`` passed to the scorer)."""
    import pandas as pd

    langs = data.langs if data.langs is not None else np.full(len(data), "", dtype=object)
    order = list(dict.fromkeys(langs.tolist()))
    rows: list[dict] = []
    for name in names:
        try:
            scorer = build_scorer(name, cache_dir=cache_dir, **(options or {}).get(name, {}))
        except UsageError as e:
            rows.append({"scorer": name, "texts": "unavailable", "note": str(e)})
            continue
        scores = np.zeros(len(data))
        n_done, seconds = 0, 0.0
        for lang in order:
            m = langs == lang
            t0 = time.perf_counter()
            scores[m] = scorer.score([t for t, k in zip(data.texts, m) if k], lang=lang or None)
            seconds += time.perf_counter() - t0
            n_done += int(m.sum())
        tps = n_done / seconds if seconds > 0 else float("inf")
        sid = scorer.id
        parts = [("all", np.ones(len(data), bool))]
        if data.langs is not None:
            parts += [(lang, langs == lang) for lang in order]
        for label, m in parts:
            a = agreement(scores[m], data.reference[m])
            a["reference_flagged"] = a.pop("perspective_flagged")
            if not data.is_score:
                a.pop("mae")  # distance to a 0/1 label is not a scale error
            rows.append({"scorer": sid, "texts": label, "n": int(m.sum()), **a, "texts_per_s": tps})
    return pd.DataFrame(rows)
