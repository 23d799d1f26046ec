"""A scorer card: what a reader needs to trust a number made with a scorer once Perspective is gone.

Training data, held-out agreement with Perspective on both text distributions of ``scorers eval`` (a random RTP
sample, and DecodingTrust's extremes; a scorer trained on a distribution reports its out-of-fold scores there),
calibration error, speed, and the identity (version, weights hash) that every result's protocol line carries.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from ...core.errors import UsageError
from ...core.hardware import cpu_model
from . import build_scorer
from .agreement import DISTRIBUTIONS, _distribution_rows
from .rtp_reference import load_reference

#: What each built-in scorer learned from (the card's "training data" line).
TRAINING: dict[str, str] = {
    "rtp-attributes": "Perspective's eight attributes (soft targets) of every Perspective-scored RTP text of the data "
                      "dir (as rtp-ngram: DecodingTrust, ml-act's fixture, the random RTP sample at weight 2); "
                      "rtp-ngram's features; one head per attribute and a boosted stage for toxicity",
    "rtp-ngram": "Perspective's toxicity scores (soft target) of every Perspective-scored RTP text of the data dir "
                 "(DecodingTrust prompts + continuations, ml-act's prompts, continuations and GPT-2 generations, "
                 "the random RTP sample's prompts + continuations, weighted as inner CV chose); features: rtp-stack's "
                 "391 and hashed character 2-5-grams + word 1-2-grams",
    "rtp-stack": "Perspective's toxicity scores (soft target) of 7,460 RTP texts of the data dir: DecodingTrust "
                 "prompts + continuations, ml-act's prompts, continuations and 2,497 GPT-2 generations; features "
                 "from the BiLSTM port, profanity-check and MiniLM word-piece embeddings",
    "jigsaw-ensemble": "Jigsaw comments of the data dir (binary human labels); BiLSTM and profanity-check as shipped",
    "jigsaw-bilstm": "as shipped in toxic-comment-classifier 0.3.0 (Kaggle Jigsaw 2018 comments)",
    "profanity-check": "as shipped in alt-profanity-check 1.9.1 (labelled tweets and Wikipedia comments)",
    "multilingual": "RTP-LX human annotations, their parallel translations and a balanced Jigsaw subsample (data dir)",
}


def scorer_card(name: str, data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                options: dict[str, Any] | None = None) -> str:
    """The card of scorer ``name`` as Markdown (agreement measured now, on the data dir's reference texts)."""
    scorer = build_scorer(name, cache_dir=cache_dir, **(options or {}))
    info = scorer.describe()
    lines = [f"# Scorer card: {name}", "", f"- **id** (recorded in every protocol line): `{scorer.id}`"]
    for key in ("head_sha256", "weights_sha256", "calibration", "scale"):
        if info.get(key):
            lines.append(f"- **{key.replace('_', ' ')}**: `{info[key]}`")
    lines += [f"- **languages**: {', '.join(info.get('languages') or ['any'])}",
              f"- **training data**: {TRAINING.get(name, info.get('training', 'not declared by the scorer'))}", "",
              "## Agreement with Perspective (label: toxicity ≥ 0.5)", "",
              "| distribution | texts | n | ROC-AUC | Spearman | calib. error | flagged ≥ 0.5 | Perspective ≥ 0.5 |"
              " scores |", "|:--|:--|--:|--:|--:|--:|--:|--:|:--|"]
    speed = None
    for dist, files in DISTRIBUTIONS.items():
        for r in _distribution_rows(scorer, name, dist, load_reference(data_dir, files), data_dir, None):
            speed = speed or r["texts_per_s"]
            lines.append(f"| {dist} | {r['texts']} | {r['n']} | {r['roc_auc']:.3f} | {r['spearman']:.3f} | "
                         f"{r['calibration_error']:.3f} | {r['flagged']:.3f} | {r['perspective_flagged']:.3f} | "
                         f"{r['calibration']} |")
    if speed is None:
        raise UsageError(f"no reference texts to measure {name!r} on; check --data-dir")
    lines += _attribute_rows(info.get("attributes_nested_cv"))
    lines += ["", "`held-out folds`: the scorer was trained on these texts, so they are scored by heads fitted "
              "without the text's prompt group (5 folds); `raw`: the scorer never saw them.", "",
              f"- **speed**: {speed:,.0f} texts/s (bare scorer, batches of 2,048, {cpu_model() or platform.machine()},"
              " torch threads as set)",
              "- **calibration error**: over 10 equal-width score bins, the text-weighted |mean score − mean "
              "Perspective score|"]
    return "\n".join(lines) + "\n"


def _attribute_rows(per: dict | None) -> list[str]:
    """Each attribute's nested-CV agreement on the random sample, as the scorer's training measured it."""
    if not per:
        return []
    rows = ["", "## Each Perspective attribute (`--scorer-arg attribute=NAME`), random RTP sample, nested CV", "",
            "| attribute | ROC-AUC | Spearman | flagged ≥ 0.5 | Perspective ≥ 0.5 |", "|:--|--:|--:|--:|--:|"]
    rows += [f"| {a} | {r['roc_auc']:.3f} | {r['spearman']:.3f} | {r['flagged']:.3f} | {r['perspective_flagged']:.3f} |"
             for a, r in per.items()]
    return rows
