"""Task evaluation shared by the runner, merge and rescore: which documents a run (or shard) evaluates, the
protocol of a task (everything that changes its numbers), its metrics from the per-document rows (lm-eval's own
aggregation, a seeded bootstrap CI, then the task's ``toxbench_summary`` hook), and where each goes in a run's
``results.json``. An unsharded run and merged shards go through exactly this code.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from ..core.io import canonical_json, sha256_file, sha256_text
from ..core.paths import cache_dir as resolve_cache_dir
from ..core.paths import data_dir as resolve_data_dir
from ..measure.metrics import Metric, aggregation_stat, bootstrap_ci, bootstrap_generic, group_mean
from ..measure.schema import COUNT_METRICS
from ..spec.rundir import RunDir
from ..spec.runspec import RunSpec
from .adapter import HookedLM
from .scoring import ScorerFactory, scorer_factory


def evaluation_context(spec: RunSpec) -> tuple[dict[str, Any], ScorerFactory]:
    """What the task hooks of ``spec`` read: the task metadata lm-eval hands the data loaders (the data dir, a
    user's ``--data`` file, the evaluated model for tokenizer-dependent data) and the scorer per language."""
    cache = resolve_cache_dir(spec.cache_dir or None)
    metadata = {"toxbench_data_dir": str(resolve_data_dir(spec.data_dir or None)), "toxbench_model": spec.model,
                "toxbench_cache_dir": str(cache), **({"rtp_data": spec.data} if spec.data else {})}
    return metadata, scorer_factory(spec.scorer, dict(spec.scorer_args), cache)


def leaves(task_dict: dict) -> list[tuple[str, Any]]:
    """(name, Task) for every leaf of an lm-eval task dict (groups flattened)."""
    out: list[tuple[str, Any]] = []
    for key, value in task_dict.items():
        if isinstance(value, dict):
            out.extend(leaves(value))
        else:
            out.append((getattr(key, "group_name", key) if not isinstance(key, str) else key, value))
    return out


def groups(task_dict: dict) -> list[tuple[Any, list[str]]]:
    out = []
    for key, value in task_dict.items():
        if isinstance(value, dict):
            out.append((key, [n for n, _ in leaves(value)]))
            out.extend(groups(value))
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


def doc_ids(task: Any, limit: int | None, shard: tuple[int, int] | None, lm: Any = None) -> list[int]:
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


def data_hash(task: Any, docs_ids: list[int], data_root: Path) -> dict[str, Any]:
    """Hash of the data file (when local, under ``data_root``) and of the exact documents evaluated."""
    out: dict[str, Any] = {}
    kw = task.config.dataset_kwargs or {}
    if kw.get("data_file"):
        p = Path(kw["data_file"])
        p = p if p.is_absolute() else data_root / p
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
        "data_hash": data_hash(task, doc_ids, resolve_data_dir(spec.data_dir or None)),
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




def record_task(run: RunDir, results: dict[str, Any], name: str, task: Any, rows: list[dict], spec: RunSpec,
                ids: list[int], scorers: ScorerFactory, max_length: int | None, wall_s: float) -> None:
    """Summarize one task from its rows, write its samples and put its entry into ``results``."""
    summary = summarize_task(name, task, rows, spec, ids, scorers, max_length=max_length)
    run.write_samples(name, summary.pop("samples", None) or rows)
    summary["wall_s"] = wall_s
    results["tasks"][name] = summary


def record_groups(results: dict[str, Any], task_dict: dict) -> None:
    """The group aggregates of ``task_dict`` from the leaves already in ``results``."""
    for gkey, gleaves in groups(task_dict):
        gname = getattr(gkey, "group_name", str(gkey))
        results["groups"][gname] = {"tasks": gleaves, "metrics": group_metrics(gkey, gleaves, results["tasks"])}
