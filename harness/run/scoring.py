"""The scorer of each task of a run: ``--scorer auto`` resolved per language, built once and wrapped with the
on-disk score cache. The runner hands ``scorer_factory``'s result to each task's summary hook."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from ..core.io import canonical_json
from ..measure.scorers import DEFAULT_SCORER, get_scorer

AUTO = "auto"
MULTILINGUAL_SCORER = "multilingual"


def resolve_scorer_name(name: str, lang: str | None) -> str:
    """``auto``: the English default for English (or unknown-language) tasks, the multilingual scorer otherwise."""
    if name != AUTO:
        return name
    if lang is None or lang.split("-")[0].lower() == "en":
        return DEFAULT_SCORER
    return MULTILINGUAL_SCORER


ScorerFactory = Callable[[Optional[str]], Any]


@lru_cache(maxsize=4)  # bounded: a suite's runs share their scorers, a long-lived process holds at most four
def _built(name: str, options_json: str, cache_dir: str | None) -> Any:
    return get_scorer(name, cache_dir=Path(cache_dir) if cache_dir else None, **json.loads(options_json))


def scorer_factory(name: str, options: dict[str, Any], cache_dir: Path | None) -> ScorerFactory:
    """``lang -> scorer`` for a run: ``name`` resolved per language (``auto``), its options given to it only."""

    def for_lang(lang: str | None) -> Any:
        chosen = resolve_scorer_name(name, lang)
        opts = options if chosen == name else {}
        return _built(chosen, canonical_json(opts), str(cache_dir) if cache_dir else None)

    return for_lang
