"""Scorers: text -> toxicity probability, behind one registry, wrapped by an on-disk score cache.

``get_scorer(name, cache_dir=None, **options)`` is what runs use: it validates the name (did-you-mean) and the
options, builds the scorer, wraps it with the sqlite score cache and, with ``calibrate="isotonic"|"platt"``, maps it
to Perspective's scale (see calibration.py). ``build_scorer`` gives the bare scorer (no cache), for timing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.paths import cache_dir as resolve_cache_dir
from ...core.registry import Registry
from .base import Scorer, check_options, language_check
from .cache import CachedScorer, ScoreCache
from .calibration import CalibratedScorer, load_or_fit

SCORERS: Registry[type[Scorer]] = Registry(
    "scorer", "toxbench.scorers", package=__name__, builtins={
        "jigsaw-bilstm": "jigsaw_bilstm:JigsawBiLSTM", "jigsaw-ensemble": "ensemble:JigsawEnsemble",
        "rtp-stack": "stacked:RTPStack", "rtp-ngram": "ngram_stack:RTPNgram",
        "rtp-attributes": "attributes_head:RTPAttributes", "detoxify": "detoxify_scorer:DetoxifyScorer",
        "evaluate-toxicity": "hf_evaluate:EvaluateToxicity", "perspective": "perspective:PerspectiveScorer",
        "profanity-check": "profanity:ProfanityCheck", "multilingual": "multilingual:MultilingualScorer"})

#: the offline default of runs (English tasks): against Perspective on a random RTP sample, by nested grouped CV,
#: ROC-AUC 0.955 (continuations 0.956), Spearman 0.859, 27.7% flagged at 0.5 where Perspective flags 27.8%;
#: ~1,900 texts/s on one busy core (``toxbench scorers card rtp-attributes``). rtp-ngram (the previous default) and
#: rtp-stack stay by name.
DEFAULT_SCORER = "rtp-attributes"
#: what ``toxbench scorers eval`` measures when no --scorer is given (offline ones; perspective is the reference)
EVAL_DEFAULTS = ("rtp-attributes", "rtp-ngram", "rtp-stack", "jigsaw-ensemble", "jigsaw-bilstm", "profanity-check", "detoxify",
                 "evaluate-toxicity")
SCORE_CACHE_FILE = "scores.sqlite"

__all__ = ["SCORERS", "DEFAULT_SCORER", "Scorer", "build_scorer", "get_scorer", "language_check"]


def build_scorer(name: str, cache_dir: str | Path | None = None, **options: Any) -> Scorer:
    """The bare scorer ``name`` (no score cache); unknown names/options are one-line UsageErrors."""
    cls = SCORERS.get(name)
    check_options(cls, options)
    return cls(cache_dir=cache_dir, **options)


def get_scorer(name: str, cache_dir: str | Path | None = None, *, calibrate: str | None = None,
               data_dir: str | Path | None = None, use_cache: bool = True, **options: Any) -> Scorer:
    """The scorer ``name`` behind the on-disk score cache, optionally calibrated to Perspective's scale.

    ``cache_dir`` defaults to ``paths.cache_dir()``; the cache file is ``<cache_dir>/scores.sqlite``.
    ``calibrate``: None, "isotonic" or "platt" (fitted once on the RTP prompts of ``data_dir``, then cached).
    """
    cdir = resolve_cache_dir(cache_dir)
    scorer = build_scorer(name, cache_dir=cdir, **options)
    if use_cache:
        scorer = CachedScorer(scorer, ScoreCache(cdir / SCORE_CACHE_FILE))
    if calibrate:
        scorer = CalibratedScorer(scorer, load_or_fit(scorer, calibrate, cdir, data_dir))
    return scorer
