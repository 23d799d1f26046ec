"""execute(RunSpec) -> run directory. Resumable: completed tasks are skipped, generation resumes per batch.

lm-eval evaluates each top-level task; its per-document rows go through ``evaluate.py`` (metrics, protocol,
results entry), the same code ``merge.py`` and ``rescore.py`` use.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ... import __version__
from ...interventions import INTERVENTIONS, check_args, split_names
from ...tasks import load_task_dict, resolve_task_names
from ..core.errors import UsageError, did_you_mean
from ..core.hardware import kernel_set, resolve_device, set_threads
from ..core.models import resolve_model_source
from ..core.paths import cache_dir as resolve_cache_dir
from ..core.paths import data_dir as resolve_data_dir
from ..measure.scorers import SCORERS
from ..spec.lock import run_lock
from ..spec.rundir import RunDir, library_versions
from ..spec.runspec import RunSpec
from .adapter import HookedLM
from .evaluate import (
    apply_generation_overrides,
    doc_ids,
    evaluation_context,
    leaves,
    record_groups,
    record_task,
    sample_rows,
)
from .prepare import Setup, prepare
from .scoring import ScorerFactory
from .validation import check_run_dir, validate_inputs
from .vllm_backend import check_vllm_compatible, make_vllm_lm

Log = Callable[[str], None]


def _stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def validate(spec: RunSpec) -> None:
    """Check every name and path before anything heavy is loaded: bad input fails in milliseconds."""
    resolve_data_dir(spec.data_dir or None)
    resolve_model_source(spec.model)
    check_args(spec.intervention, spec.intervention_args)
    resolve_task_names(list(spec.tasks), spec.include_paths)
    if spec.scorer and spec.scorer != "auto" and spec.scorer not in SCORERS:
        raise did_you_mean(spec.scorer, SCORERS.names(), "scorer")
    if spec.backend not in BACKENDS:
        raise did_you_mean(spec.backend, BACKENDS, "backend")
    if spec.backend == "vllm":  # refuse hook interventions before any weights are loaded
        parts = [SimpleNamespace(name=n, kind=INTERVENTIONS.get(n).kind) for n in split_names(spec.intervention)]
        check_vllm_compatible(SimpleNamespace(parts=parts), spec.model)
    if spec.shard is not None:
        i, n = spec.shard
        if not (n >= 1 and 0 <= i < n):
            raise UsageError(f"shard {i}/{n} is invalid; use I/N with 0 <= I < N")
    validate_inputs(spec)  # setting ranges, --data, output dir, state file, scorer key/endpoint


BACKENDS = ("hf", "vllm")


# -- the run -------------------------------------------------------------------------------------------------
def execute(spec: RunSpec, force: bool = False, progress: bool = True, log: Log = _stderr_log,
            wait: bool = False) -> Path:
    """Run (or resume) ``spec``; returns its run directory.

    Validation comes first (no run dir before it passes); then the run dir's lock: a second process on the same
    spec refuses with the holder's name (``RunLocked``) or, with ``wait``, waits for it."""
    validate(spec)
    run = RunDir.for_spec(spec)
    existed = run.path.is_dir()
    # Under `accelerate launch` only rank 0 writes the run dir; the other ranks follow it and take no lock.
    writer = int(os.environ.get("RANK", "0")) == 0
    with run_lock(run.path, wait=wait, log=log, enabled=writer):
        check_run_dir(run, spec, force)
        if not force and run.results_file.is_file() and not run.spec_file.exists():
            run.write_spec(spec)  # a deleted (damaged) run_spec.json comes back from the spec
        try:
            return _execute_locked(spec, force=force, progress=progress, log=log)
        except BaseException:
            if writer and not existed:
                _remove_stub(run.path)
            raise


def _remove_stub(path: Path) -> None:
    """A new run dir that failed before computing anything (e.g. the model would not load) is removed, so
    leaderboards and `toxbench show` never meet a stub; anything computed (generations, results) is kept."""
    try:
        files = list(path.iterdir())
    except OSError:
        return
    if files and all(f.is_file() and f.name in RunDir.STUB_FILES for f in files):
        for f in files:
            if f.name != RunDir.LOCK:  # the lock goes with its release
                f.unlink(missing_ok=True)


def _execute_locked(spec: RunSpec, force: bool, progress: bool, log: Log) -> Path:
    """The run itself; ``execute`` validated ``spec`` and holds the run dir's lock."""
    data_root = resolve_data_dir(spec.data_dir or None)
    cache = resolve_cache_dir(spec.cache_dir or None)
    run = RunDir.for_spec(spec)
    prior = run.load_results() if run.exists() and not force else {}
    if force and run.path.exists():
        for f in run.path.glob("*"):
            if f.is_file() and f.name != RunDir.LOCK:  # the lock this process holds stays
                f.unlink()
    done = {t for t, r in prior.get("tasks", {}).items() if r.get("complete", True)}
    done_top = set(prior.get("top_level_done", []))
    todo = [t for t in spec.tasks if t not in done_top]
    if not todo:
        log(f"[toxbench] {run.path}: all tasks already complete (use --force to recompute)")
        return run.path

    t_start = time.time()
    run.path.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("RANK", "0")) == 0:
        run.write_spec(spec)
    device = resolve_device(spec.device)
    rank = int(os.environ.get("RANK", "0"))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and device == "cuda":
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"  # data parallel under `accelerate launch`
    set_threads(spec.threads)
    run.write_env(device)  # after set_threads: env.json records the threads actually used
    seed_everything(spec.seed)
    prepared = prepare(Setup.of(spec, dtype=spec.resolved_dtype(), device=device, cache_dir=cache,
                                data_dir=data_root), log=log)
    intervention, model_desc = prepared.intervention, prepared.describe()
    lm = make_lm(spec, prepared.loaded, intervention, run.path, progress=progress)

    metadata, scorers = evaluation_context(spec)
    results = _results_header(prior, spec, run, model_desc, intervention.spec(), device)

    for top in todo:
        t0 = time.time()
        _evaluate_top(top, spec, lm, metadata, scorers, run, results, done, rank, log, t0)
        if rank != 0:
            continue
        results["top_level_done"].append(top)
        results["wall_s"] = round(results.get("wall_s", 0) + time.time() - t0, 2)
        run.save_results(results)
    if rank != 0:
        return run.path
    results["completed"] = True
    run.save_results(results)
    log(f"[toxbench] wrote {run.results_file} in {time.time() - t_start:.1f}s")
    return run.path


def _results_header(prior: dict[str, Any], spec: RunSpec, run: RunDir, model_desc: dict[str, Any],
                    intervention: dict[str, Any], device: str) -> dict[str, Any]:
    """results.json before this pass's tasks: the run's identity and protocol over what a killed run finished."""
    results: dict[str, Any] = prior or {}
    results.update(
        toxbench_version=__version__, run_id=run.path.name, fingerprint=spec.fingerprint(), spec=spec.to_dict(),
        protocol={"model": model_desc, "intervention": intervention, "versions": library_versions(),
                  "seed": spec.seed, "limit": spec.limit, "shard": list(spec.shard) if spec.shard else None,
                  "backend": spec.backend},
        kernels=kernel_set(device),  # not protocol: `check` names it when numbers moved across machines
    )
    for key, empty in (("tasks", {}), ("groups", {}), ("top_level_done", [])):
        results.setdefault(key, empty)
    results["completed"] = False
    return results


def _evaluate_top(top: str, spec: RunSpec, lm: Any, metadata: dict[str, Any], scorers: ScorerFactory, run: RunDir,
                  results: dict[str, Any], done: set[str], rank: int, log: Log, t0: float) -> None:
    """Evaluate the leaves of one top-level task (or group) not yet ``done`` (their data loaders get the run's
    ``metadata``); rank 0 writes each finished leaf's samples and results, then the group aggregates."""
    from lm_eval.evaluator import evaluate

    task_dict = load_task_dict([top], spec.include_paths, metadata)
    all_leaves = leaves(task_dict)
    samples_sel: dict[str, list[int]] = {}
    for name, task in all_leaves:
        apply_generation_overrides(task, spec)
        samples_sel[name] = doc_ids(task, spec.limit, spec.shard, lm)
    pending = [(n, t) for n, t in all_leaves if n not in done]
    if pending:
        log(f"[toxbench] {top}: evaluating {', '.join(n for n, _ in pending)}")
        seed_everything(spec.seed)
        out = evaluate(lm, dict(task_dict), samples={n: samples_sel[n] for n, _ in all_leaves}, log_samples=True,
                       bootstrap_iters=0, verbosity="WARNING")
        if rank != 0:  # lm-eval gathered every rank's samples on rank 0, which writes the run dir
            return
        logged = (out or {}).get("samples", {})
        for name, task in pending:
            record_task(run, results, name, task, sample_rows(logged.get(name, [])), spec, samples_sel[name],
                        scorers, getattr(lm, "max_length", spec.max_length), round(time.time() - t0, 2))
            done.add(name)
            run.save_results(results)
    record_groups(results, task_dict)


def make_lm(spec: RunSpec, loaded: Any, intervention: Any, run_path: Path, progress: bool = True) -> Any:
    if spec.backend == "vllm":
        return make_vllm_lm(spec, loaded, intervention, run_path)
    return HookedLM(loaded.model, tokenizer=loaded.tokenizer, intervention=intervention,
                    generation_cache=run_path, seed=spec.seed, batch_size=spec.batch_size, max_length=spec.max_length,
                    progress=progress)
