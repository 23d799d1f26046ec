"""execute(RunSpec) -> run directory. Resumable: completed tasks are skipped, generation resumes per batch.

Metrics are computed here from the per-document samples (lm-eval's own aggregation functions, our seeded
bootstrap for CIs, then a task's ``toxbench_summary`` hook), so an unsharded run and merged shards go through
exactly the same code (see ``merge.py``).
"""

from __future__ import annotations

import importlib
import json
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
from ..core.io import canonical_json, sha256_file, sha256_text
from ..core.models import resolve_model_source
from ..core.paths import cache_dir as resolve_cache_dir
from ..core.paths import data_dir as resolve_data_dir
from ..measure.metrics import COUNT_METRICS, Metric, aggregation_stat, bootstrap_ci, bootstrap_generic, group_mean
from ..measure.scorers import SCORERS
from ..spec.lock import LOCK_NAME, run_lock
from ..spec.rundir import RunDir, library_versions
from ..spec.runspec import RunSpec
from .adapter import HookedLM
from .context import RunContext, ScorerFactory, scorer_factory, use_context
from .prepare import Setup, prepare
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


# -- task handling -------------------------------------------------------------------------------------------
def _leaves(task_dict: dict) -> list[tuple[str, Any]]:
    """(name, Task) for every leaf of an lm-eval task dict (groups flattened)."""
    out: list[tuple[str, Any]] = []
    for key, value in task_dict.items():
        if isinstance(value, dict):
            out.extend(_leaves(value))
        else:
            out.append((getattr(key, "group_name", key) if not isinstance(key, str) else key, value))
    return out


def _groups(task_dict: dict) -> list[tuple[Any, list[str]]]:
    out = []
    for key, value in task_dict.items():
        if isinstance(value, dict):
            out.append((key, [n for n, _ in _leaves(value)]))
            out.extend(_groups(value))
    return out


def apply_generation_overrides(task: Any, spec: RunSpec) -> None:
    """The spec's k / max tokens / sampling replace a generation task's defaults (None keeps the task's)."""
    if task.OUTPUT_TYPE != "generate_until":
        return
    g = spec.generation
    if g.k is not None:
        task.set_config("repeats", int(g.k))
    gk = dict(task.config.generation_kwargs or {})
    if g.max_new_tokens is not None:
        gk["max_gen_toks"] = int(g.max_new_tokens)
    for name in ("do_sample", "temperature", "top_p", "top_k"):
        if getattr(g, name) is not None:
            gk[name] = getattr(g, name)
    if gk.get("do_sample") is False:
        gk["temperature"] = 0.0
    task.set_config("generation_kwargs", gk)


def _doc_ids(task: Any, limit: int | None, shard: tuple[int, int] | None, lm: Any = None) -> list[int]:
    """The documents this run (or shard) evaluates. A generation shard on the HF backend takes whole batches of
    the unsharded run's generation plan (``lm`` given), so its samples equal the unsharded run's bitwise; other
    shards take every n-th document."""
    n = len(task.eval_docs)
    n = min(n, limit) if limit is not None else n
    ids = list(range(n))
    if shard is None:
        return ids
    i, k = shard
    if lm is not None and task.OUTPUT_TYPE == "generate_until" and isinstance(lm, HookedLM):
        return _generation_shard(task, ids, i, k, lm)
    return [d for d in ids if d % k == i]


def _generation_shard(task: Any, ids: list[int], i: int, k: int, lm: HookedLM) -> list[int]:
    from .generation import batch_plan

    task.build_all_requests(samples=ids, rank=0, world_size=1)
    contexts: dict[int, str] = {}
    for inst in task.instances:
        contexts.setdefault(inst.doc_id, inst.args[0])
    docs = sorted(contexts)
    wrapped = [lm.intervention.wrap_prompt(contexts[d], lm.tokenizer) for d in docs]
    max_new = int((task.config.generation_kwargs or {}).get("max_gen_toks") or lm.max_gen_toks)
    plan = batch_plan(lm.model, lm.tokenizer, wrapped, lm.gen_batch_size, max_new)
    return sorted(docs[j] for b, batch in enumerate(plan) if b % k == i for j in batch)


def _data_hash(task: Any, docs_ids: list[int]) -> dict[str, Any]:
    """Hash of the data file (when local) and of the exact documents evaluated."""
    out: dict[str, Any] = {}
    kw = task.config.dataset_kwargs or {}
    if kw.get("data_file"):
        p = Path(kw["data_file"])
        p = p if p.is_absolute() else resolve_data_dir() / p
        if p.is_file():
            out["file"] = str(kw["data_file"])
            out["file_sha256"] = sha256_file(p)
    elif task.config.dataset_path:
        out["hub"] = f"{task.config.dataset_path}/{task.config.dataset_name or ''}"
    docs = task.eval_docs
    out["docs_sha256"] = sha256_text(canonical_json([docs[i] for i in docs_ids if i < len(docs)]))[:16]
    return out


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str, ensure_ascii=False))


def sample_rows(logged: list[dict]) -> list[dict]:
    rows = []
    for s in sorted(logged, key=lambda r: r["doc_id"]):
        rows.append(_jsonable(s))
    return rows


def task_metrics(task: Any, rows: list[dict], seed: int) -> dict[str, dict]:
    """lm-eval's own aggregation of the per-document values, plus a seeded bootstrap 95% CI (harness/metrics.py)."""
    aggs = task.aggregation()
    hib = task.higher_is_better()
    out: dict[str, dict] = {}
    for metric, agg in aggs.items():
        values = [r[metric] for r in rows if metric in r]
        if not values:
            continue
        values = [tuple(v) if isinstance(v, list) else v for v in values]
        value = float(agg(values))
        stat = aggregation_stat(agg, values)
        if metric in COUNT_METRICS:
            ci = None
        else:
            ci = bootstrap_ci(stat, seed) if stat is not None else bootstrap_generic(values, agg, seed)
        out[metric] = Metric(value, ci, None, bool(hib.get(metric, True))).to_dict()
    return out


def task_protocol(task: Any, spec: RunSpec, doc_ids: list[int], max_length: int | None) -> dict[str, Any]:
    """Everything that changes a task's numbers (the README's protocol audit: task kind -> fields).
    ``max_length``: the model window the run used (the rolling-perplexity window, and where long contexts
    are cut for every other kind)."""
    cfg = task.config
    protocol: dict[str, Any] = {
        "task_version": (cfg.metadata or {}).get("version"),
        "output_type": task.OUTPUT_TYPE,
        "limit": spec.limit,
        "data_hash": _data_hash(task, doc_ids),
        "dtype": spec.resolved_dtype(),
        "max_length": max_length,
    }
    if task.OUTPUT_TYPE == "generate_until":
        gk = dict(cfg.generation_kwargs or {})
        protocol.update(
            k=int(cfg.repeats or 1),
            max_new_tokens=gk.get("max_gen_toks"),
            sampling={k: gk.get(k) for k in ("do_sample", "temperature", "top_p", "top_k")},
            seed=spec.seed,
            until=_jsonable(gk.get("until")),
        )
    elif task.OUTPUT_TYPE == "loglikelihood_rolling":
        protocol["rolling_context_len"] = ROLLING_CONTEXT_LEN
    else:  # loglikelihood, multiple_choice
        protocol["num_fewshot"] = int(cfg.num_fewshot or 0)
    return protocol


#: The protocol audit: per task kind, the fields beyond the common ones that change its numbers (README table).
COMMON_PROTOCOL_FIELDS = ("task_version", "data_hash", "limit", "dtype", "max_length")
PROTOCOL_FIELDS = {
    "generate_until": (*COMMON_PROTOCOL_FIELDS, "k", "max_new_tokens", "sampling", "seed", "until"),
    "loglikelihood_rolling": (*COMMON_PROTOCOL_FIELDS, "rolling_context_len"),
    "loglikelihood": (*COMMON_PROTOCOL_FIELDS, "num_fewshot"),
    "multiple_choice": (*COMMON_PROTOCOL_FIELDS, "num_fewshot"),
}

#: lm-eval's rolling windows condition each window on 1 token of the previous one (its stride is the window).
ROLLING_CONTEXT_LEN = 1


def summarize_task(
    name: str, task: Any, rows: list[dict], spec: RunSpec, doc_ids: list[int], scorers: ScorerFactory,
    max_length: int | None = None,
) -> dict[str, Any]:
    """Metrics + protocol for one task from its sample rows (shared by execute and merge). A task's
    ``toxbench_summary`` hook gets the scorer for its language and the seed as arguments."""
    cfg = task.config
    protocol = task_protocol(task, spec, doc_ids, max_length)
    metrics = task_metrics(task, rows, spec.seed)
    meta = cfg.metadata or {}
    result: dict[str, Any] = {"n": len(rows), "kind": meta.get("toxbench_kind"), "metrics": metrics,
                              "protocol": protocol}
    hook = meta.get("toxbench_summary")
    if hook:
        mod, _, fn = hook.partition(":")
        summarize = getattr(importlib.import_module(mod), fn)
        extra = summarize(rows, name, cfg.to_dict(), scorer=scorers(meta.get("lang")), seed=spec.seed)
        result["metrics"].update(extra.get("metrics", {}))
        result["protocol"].update(extra.get("protocol", {}))
        custom = extra.get("samples")
        if custom is not None:
            # Keep lm-eval's per-document fields (so metrics can be recomputed, e.g. by `merge`) and add the hook's.
            if len(custom) == len(rows):
                result["samples"] = [{**r, **c} for r, c in zip(rows, custom)]
            else:
                result["samples"] = custom
    return result


def group_metrics(group_key: Any, leaves: list[str], tasks: dict[str, dict]) -> dict[str, dict]:
    """Group aggregate: the group's own ``toxbench_group_summary`` hook (e.g. RTP-LX: mean over languages with the
    members' metric semantics), else lm-eval's ``aggregate_metric_list`` (mean, optionally weighted by size)."""
    cfg = getattr(group_key, "config", None)
    cfg = cfg if isinstance(cfg, dict) else (vars(cfg) if cfg is not None else {})
    members = {leaf: tasks[leaf]["metrics"] for leaf in leaves if leaf in tasks}
    hook = (cfg.get("metadata") or {}).get("toxbench_group_summary")
    if hook:
        mod, _, fn = hook.partition(":")
        return getattr(importlib.import_module(mod), fn)(members).get("metrics", {})
    out: dict[str, dict] = {}
    for item in cfg.get("aggregate_metric_list") or []:
        item = item if isinstance(item, dict) else vars(item)
        weights = {leaf: tasks[leaf]["n"] for leaf in members} if item.get("weight_by_size") else None
        out.update(group_mean(members, [item.get("metric")], weights, suffix="_avg"))
    return out


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


#: what execute writes before computing anything; a new run dir holding only these is a stub
_STUB_FILES = {"run_spec.json", "env.json", LOCK_NAME}


def _remove_stub(path: Path) -> None:
    """A new run dir that failed before computing anything (e.g. the model would not load) is removed, so
    leaderboards and `toxbench show` never meet a stub; anything computed (generations, results) is kept."""
    try:
        files = list(path.iterdir())
    except OSError:
        return
    if files and all(f.is_file() and f.name in _STUB_FILES for f in files):
        for f in files:
            if f.name != LOCK_NAME:  # the lock goes with its release
                f.unlink(missing_ok=True)


def _execute_locked(spec: RunSpec, force: bool, progress: bool, log: Log) -> Path:
    """The run itself; ``execute`` validated ``spec`` and holds the run dir's lock."""
    data_root = resolve_data_dir(spec.data_dir or None)
    cache = resolve_cache_dir(spec.cache_dir or None)
    run = RunDir.for_spec(spec)
    prior = run.load_results() if run.exists() and not force else {}
    if force and run.path.exists():
        for f in run.path.glob("*"):
            if f.is_file() and f.name != LOCK_NAME:  # the lock this process holds stays
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

    ctx = RunContext(data_dir=data_root, cache_dir=cache,
                     extras={"model": spec.model, **({"rtp_data": spec.data} if spec.data else {})})
    scorers = scorer_factory(spec.scorer, dict(spec.scorer_args), cache)
    results: dict[str, Any] = prior or {}
    results.update(
        toxbench_version=__version__, run_id=run.path.name, fingerprint=spec.fingerprint(), spec=spec.to_dict(),
        protocol={"model": model_desc, "intervention": intervention.spec(), "versions": library_versions(),
                  "seed": spec.seed, "limit": spec.limit, "shard": list(spec.shard) if spec.shard else None,
                  "backend": spec.backend},
        kernels=kernel_set(device),  # not protocol: `check` names it when numbers moved across machines
    )
    results.setdefault("tasks", {})
    results.setdefault("groups", {})
    results.setdefault("top_level_done", [])
    results["completed"] = False

    for top in todo:
        t0 = time.time()
        with use_context(ctx):
            _evaluate_top(top, spec, lm, scorers, run, results, done, rank, log, t0)
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


def _evaluate_top(top: str, spec: RunSpec, lm: Any, scorers: ScorerFactory, run: RunDir, results: dict[str, Any],
                  done: set[str], rank: int, log: Log, t0: float) -> None:
    """Evaluate the leaves of one top-level task (or group) not yet ``done``, in the run context; rank 0 writes
    each finished leaf's samples and results, then the group aggregates."""
    from lm_eval.evaluator import evaluate

    task_dict = load_task_dict([top], spec.include_paths)
    leaves = _leaves(task_dict)
    samples_sel: dict[str, list[int]] = {}
    for name, task in leaves:
        apply_generation_overrides(task, spec)
        samples_sel[name] = _doc_ids(task, spec.limit, spec.shard, lm)
    pending = [(n, t) for n, t in leaves if n not in done]
    if pending:
        log(f"[toxbench] {top}: evaluating {', '.join(n for n, _ in pending)}")
        seed_everything(spec.seed)
        sub = {k: v for k, v in task_dict.items()}
        out = evaluate(lm, sub, samples={n: samples_sel[n] for n, _ in leaves}, log_samples=True,
                       bootstrap_iters=0, verbosity="WARNING")
        if rank != 0:  # lm-eval gathered every rank's samples on rank 0, which writes the run dir
            return
        logged = (out or {}).get("samples", {})
        for name, task in pending:
            rows = sample_rows(logged.get(name, []))
            summary = summarize_task(name, task, rows, spec, samples_sel[name], scorers,
                                     max_length=getattr(lm, "max_length", spec.max_length))
            run.write_samples(name, summary.pop("samples", None) or rows)
            summary["wall_s"] = round(time.time() - t0, 2)
            results["tasks"][name] = summary
            done.add(name)
            run.save_results(results)
    for gkey, gleaves in _groups(task_dict):
        gname = getattr(gkey, "group_name", str(gkey))
        results["groups"][gname] = {"tasks": gleaves, "metrics": group_metrics(gkey, gleaves, results["tasks"])}


def make_lm(spec: RunSpec, loaded: Any, intervention: Any, run_path: Path, progress: bool = True) -> Any:
    if spec.backend == "vllm":
        return make_vllm_lm(spec, loaded, intervention, run_path)
    return HookedLM(loaded.model, tokenizer=loaded.tokenizer, intervention=intervention,
                    generation_cache=run_path, seed=spec.seed, batch_size=spec.batch_size, max_length=spec.max_length,
                    progress=progress)
