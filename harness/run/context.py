"""The active run's data settings, for task data hooks that lm-eval calls without our arguments; the run's scorer.

lm-eval loads a task's data (``custom_dataset``) and builds its requests (``doc_to_text``) with no way to pass our
data dir or the evaluated model, so the runner installs a RunContext while it loads tasks
(``with use_context(ctx):``). Outside a toxbench run (plain ``lm_eval --include_path tasks/``) the defaults from
the environment apply. Summary hooks need no context: the runner passes them the scorer (``scorer_factory``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..core.paths import DATA_ENV
from ..measure.scorers import DEFAULT_SCORER, get_scorer


@dataclass(frozen=True)
class RunContext:
    data_dir: Path | None = None
    cache_dir: Path | None = None
    #: Per-run settings for task data hooks (the evaluated model, for wiki_sentences' tokenizer; a user RTP file).
    extras: dict[str, Any] = field(default_factory=dict)


_current: RunContext = RunContext()


def current() -> RunContext:
    return _current


@contextlib.contextmanager
def use_context(ctx: RunContext) -> Iterator[RunContext]:
    """Install ``ctx`` (and its data dir in ``$TOXBENCH_DATA``, read by task data loaders) for the block."""
    global _current
    prev, prev_env = _current, os.environ.get(DATA_ENV)
    _current = ctx
    if ctx.data_dir is not None:
        os.environ[DATA_ENV] = str(ctx.data_dir)
    try:
        yield ctx
    finally:
        _current = prev
        if prev_env is None:
            os.environ.pop(DATA_ENV, None)
        else:
            os.environ[DATA_ENV] = prev_env


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
_scorers: dict[tuple, Any] = {}


def scorer_factory(name: str, options: dict[str, Any], cache_dir: Path | None) -> ScorerFactory:
    """``lang -> scorer`` for a run: ``name`` resolved per language (``auto``), built once per process and wrapped
    with the on-disk score cache. The runner passes the result to each task's summary hook."""

    def for_lang(lang: str | None) -> Any:
        chosen = resolve_scorer_name(name, lang)
        opts = options if chosen == name else {}
        key = (chosen, tuple(sorted(opts.items())), str(cache_dir))
        if key not in _scorers:
            _scorers[key] = get_scorer(chosen, cache_dir=cache_dir, **opts)
        return _scorers[key]

    return for_lang
