"""The active run's settings, for task hooks that lm-eval calls without our arguments.

lm-eval calls a task's ``process_results(doc, results)`` with no way to pass our scorer or data dir, so the
runner installs a RunContext for the duration of a run (``with use_context(ctx):``). Outside a toxbench run
(e.g. plain ``lm_eval --include_path tasks/``) the defaults from the environment apply.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from toxbench.harness.paths import DATA_ENV
from toxbench.harness.scorers import DEFAULT_SCORER

AUTO_DEFAULT = "auto"


@dataclass(frozen=True)
class RunContext:
    data_dir: Path | None = None
    cache_dir: Path | None = None
    scorer: str = AUTO_DEFAULT
    scorer_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 1234
    run_dir: Path | None = None
    #: Extra per-run settings for task hooks (e.g. reference model for conditional perplexity).
    extras: dict[str, Any] = field(default_factory=dict)
    #: Language of the task being summarised (from its YAML metadata); drives the "auto" scorer choice.
    lang: str | None = None

    def with_(self, **kw: Any) -> RunContext:
        return replace(self, **kw)


_current: RunContext = RunContext()
_scorers: dict[tuple, Any] = {}


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


def scorer(name: str | None = None, **options: Any):
    """The run's scorer (cached per process, wrapped with the on-disk score cache)."""
    from toxbench.harness.scorers import get_scorer

    ctx = current()
    name = name or resolve_scorer_name(ctx.scorer, ctx.lang)
    opts = {**ctx.scorer_options, **options} if name == ctx.scorer else options
    key = (name, tuple(sorted(opts.items())), str(ctx.cache_dir))
    if key not in _scorers:
        _scorers[key] = get_scorer(name, cache_dir=ctx.cache_dir, **opts)
    return _scorers[key]
