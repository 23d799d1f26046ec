"""Score a finished run's continuations again with another scorer, without generating them again.

A run's identity includes its scorer, so another scorer means another run dir. The continuations do not depend
on the scorer: the generation cache (``generations_<task>.jsonl``) is keyed by the weights, the tokenizer and the
sampling settings, never by a path or a scorer. Copying it into the new run dir and executing the new spec
therefore resumes every prompt from the cache, and the finished tasks without continuations (perplexity, common
sense), which no scorer touches, are copied with their samples: only scoring costs time (a run of such tasks alone
is copied whole). The result is an ordinary run under its own protocol, so the leaderboard keeps it in its own table
and a finding can be checked with a scorer that played no part in it.

The same scorer again is refused, unless the installed scorer is another version than the one that scored the run
(a retrained or re-encoded head): then the run is scored again in place, under the same run id, from its
generations, so the protocol the board reads names the scorer in use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from ..core.io import atomic_write_bytes
from ..spec.rundir import RunDir
from .runner import execute, validate


def rescore(run_dir: str | Path, scorer: str, scorer_args: tuple[tuple[str, Any], ...] = (),
            output_dir: str | Path | None = None, execute_fn: Callable[..., Path] = execute,
            progress: bool = True) -> Path:
    """The run dir of ``run_dir``'s spec scored by ``scorer`` (created and executed unless already complete)."""
    source = RunDir(Path(run_dir))
    spec = source.load_spec()
    caches = source.generation_caches()
    if not caches and not _scores_nothing(source):
        raise UsageError(f"{str(run_dir)!r} has no cached continuations (generations_*.jsonl) to score again")
    new = dataclasses.replace(spec, scorer=scorer, scorer_args=tuple(scorer_args),
                              output_dir=str(output_dir) if output_dir is not None else spec.output_dir)
    if new.fingerprint() == spec.fingerprint():
        if not caches or not _scored_by_another_version(source, new):
            raise UsageError(f"{str(run_dir)!r} is already scored by {scorer!r} with these settings (and this "
                             "version of it)")
        _clear_scores(source)  # the generations and the spec stay: executing the spec scores them again
        return Path(execute_fn(new, progress=progress))
    validate(new)  # an unknown scorer or a missing key fails here, before a run dir exists
    target = RunDir.for_spec(new)
    target.path.mkdir(parents=True, exist_ok=True)
    for cache in caches:
        dest = target.path / cache.name
        if not dest.exists():  # a rerun after a kill keeps what the new run already appended
            atomic_write_bytes(dest, cache.read_bytes())
    if not caches:  # nothing to score: the same numbers under the new spec, no model loaded
        _copy_whole(source, target, new)
        return target.path
    _copy_unscored_tasks(source, target)
    return Path(execute_fn(new, progress=progress))


def _copy_whole(source: RunDir, target: RunDir, spec: Any) -> None:
    if target.results_file.is_file() and target.load_results().get("completed"):
        return
    results = source.load_results()
    for task in results.get("tasks", {}):
        target.write_samples(task, source.read_samples(task))
    env = source.path / RunDir.ENV
    if env.is_file():
        atomic_write_bytes(target.path / RunDir.ENV, env.read_bytes())
    target.write_spec(spec)
    results.update(run_id=target.path.name, fingerprint=spec.fingerprint(), spec=spec.to_dict(), completed=True)
    target.save_results(results)


def _scored_by_another_version(source: RunDir, spec: Any) -> bool:
    """Whether a task of ``source`` was scored by another version of its scorer than the installed one (or the run
    is unfinished: a rescore killed after ``_clear_scores`` resumes)."""
    from ..core.paths import cache_dir as resolve_cache_dir
    from .scoring import scorer_factory

    results = source.load_results() if source.results_file.is_file() else {}
    if not results.get("completed"):
        return True
    factory = scorer_factory(spec.scorer, dict(spec.scorer_args), resolve_cache_dir(spec.cache_dir or None))
    for task in results.get("tasks", {}).values():
        recorded = (task.get("protocol") or {}).get("scorer")
        if isinstance(recorded, dict) and recorded.get("version") != factory(task["protocol"].get("lang")).version:
            return True
    return False


def _clear_scores(source: RunDir) -> None:
    for f in [source.results_file, *source.path.glob("samples_*.jsonl")]:
        f.unlink(missing_ok=True)


def _scores_nothing(source: RunDir) -> bool:
    """A finished run none of whose tasks generates (perplexity only): its copy under another scorer is the same
    numbers under the protocol the other runs of a comparison now have."""
    if not source.results_file.is_file():
        return False
    tasks = source.load_results().get("tasks", {})
    return bool(tasks) and all(t.get("protocol", {}).get("output_type") != "generate_until" for t in tasks.values())


def _copy_unscored_tasks(source: RunDir, target: RunDir) -> None:
    """Seed the new run with the source's finished top-level tasks that generate nothing (every leaf a
    loglikelihood kind): the runner resumes past them, so rescoring a run with WikiText costs no forward pass."""
    if target.results_file.is_file():
        return  # a rerun after a kill resumes what is there
    prior = source.load_results()
    tasks, groups = prior.get("tasks", {}), prior.get("groups", {})
    copied: dict[str, Any] = {"tasks": {}, "groups": {}, "top_level_done": [], "completed": False}
    for top in prior.get("top_level_done", []):
        leaves = groups[top]["tasks"] if top in groups else [top]
        if not all(leaf in tasks and tasks[leaf].get("protocol", {}).get("output_type") != "generate_until"
                   for leaf in leaves):
            continue
        for leaf in leaves:
            copied["tasks"][leaf] = tasks[leaf]
            target.write_samples(leaf, source.read_samples(leaf))
        if top in groups:
            copied["groups"][top] = groups[top]
        copied["top_level_done"].append(top)
    if copied["top_level_done"]:
        target.save_results(copied)
