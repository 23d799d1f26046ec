"""Fluency and diversity of generated continuations, computed afterwards from a run's samples (no regeneration).

Conditional perplexity follows DExperts (alisawuffles/DExperts ``scripts/evaluation/evaluate_generations.py``,
``conditional_perplexity``): for every continuation ``g`` of prompt ``p`` under a reference model,

    ppl = exp( (NLL(enc(p + g)) - NLL(enc(p))) / (len(enc(p + g)) - len(enc(p))) )

where ``NLL(ids)`` sums the token losses of ``ids[1:]`` given their prefix and ``enc`` is the tokenizer's default
``encode`` (special tokens as the tokenizer adds them). Continuations with ppl >= 1e4 are dropped "for sanity" as
there; the mean is DExperts' ``nanmean`` over all kept continuations, and we add the median. Differences: batched
(padding is masked, so values equal the unbatched ones up to float rounding); a one-token prompt contributes an
NLL of 0 (DExperts' ``loss * 0`` gives NaN and drops the continuation); an empty continuation is skipped.

The seeds scored RTP-LX with mT5-XL; here the reference is any causal LM, by default the run's own model without
its intervention (the unmitigated base model), so numbers compare across interventions on the same base model.

dist-n uses ``toxbench.harness.measure.toxicity.distinct_n`` (the toxicity tasks' definition): per prompt, distinct
n-grams of its k continuations divided by their total token count (DExperts' ``distinctness``: the denominator is
the number of words for every n), averaged over prompts; tokens are whitespace words, with CJK/Thai characters
as single tokens (DExperts splits on single spaces only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core import models  # models.load_model looked up per call: tests stand in for it
from ..core.defaults import DEFAULT_BATCH_SIZE
from ..core.errors import UsageError, did_you_mean
from ..spec.rundir import RunDir
from .metrics import Metric, group_mean
from .schema import COND_METRICS, DIST_METRICS
from .toxicity import distinct_n, script_share

PPL_CEILING = 1e4  # DExperts: `if ppl < 1e4:  # for sanity`


def _seq_nll(model: Any, seqs: list[list[int]], batch_size: int, device: str, pad_id: int, desc: str,
             progress: bool) -> list[float]:
    """Summed NLL of ``ids[1:]`` given their prefix, per sequence; batched by length (right padding, masked)."""
    import torch
    from tqdm.auto import tqdm

    out = [0.0] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]), reverse=True)
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    for idx in tqdm(batches, desc=desc, disable=not progress, unit="batch"):
        todo = [i for i in idx if len(seqs[i]) > 1]
        if not todo:
            continue
        width = max(len(seqs[i]) for i in todo)
        ids = torch.full((len(todo), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(todo), width), dtype=torch.long)
        for r, i in enumerate(todo):
            ids[r, : len(seqs[i])] = torch.tensor(seqs[i])
            mask[r, : len(seqs[i])] = 1
        ids, mask = ids.to(device), mask.to(device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16/fp16 -> fp32; fp64 stays
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        sums = (nll * mask[:, 1:]).sum(-1).double().cpu().tolist()
        for r, i in enumerate(todo):
            out[i] = float(sums[r])
    return out


def conditional_perplexities(
    prompts: Sequence[str],
    continuations: Sequence[Sequence[str]],
    model: Any,
    tokenizer: Any,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | None = None,
    progress: bool = True,
) -> list[list[float]]:
    """Per prompt, the conditional perplexity of each continuation (NaN for an empty one), DExperts' formula."""
    if len(prompts) != len(continuations):
        raise ValueError("prompts and continuations differ in length")
    device = device or str(next(model.parameters()).device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    p_ids = [tokenizer.encode(p) for p in prompts]
    f_ids = [[tokenizer.encode(p + c) for c in cs] for p, cs in zip(prompts, continuations)]
    flat = [ids for fs in f_ids for ids in fs]
    p_nll = _seq_nll(model, p_ids, batch_size, device, pad, "prompt NLL", progress)
    f_nll = _seq_nll(model, flat, batch_size, device, pad, "continuation NLL", progress)
    out: list[list[float]] = []
    k = 0
    for i, fs in enumerate(f_ids):
        row = []
        for ids in fs:
            n = len(ids) - len(p_ids[i])
            row.append(math.exp((f_nll[k] - p_nll[i]) / n) if n > 0 else float("nan"))
            k += 1
        out.append(row)
    return out


def summarize_ppl(per_prompt: Sequence[Sequence[float]]) -> tuple[dict[str, dict], dict[str, Any]]:
    """conditional_ppl_mean / _median over all continuations kept (finite, < 1e4), plus counts for the protocol."""
    flat = np.asarray([v for row in per_prompt for v in row], dtype=np.float64)
    finite = flat[np.isfinite(flat)]
    kept = finite[finite < PPL_CEILING]
    std = float(kept.std()) if kept.size else None

    values = {"conditional_ppl_mean": float(kept.mean()) if kept.size else float("nan"),
              "conditional_ppl_median": float(np.median(kept)) if kept.size else float("nan")}
    metrics = {name: Metric.of(name, v, std=std).to_dict() for name, v in values.items()}
    counts = {"n_continuations": int(flat.size), "n_kept": int(kept.size),
              "n_empty": int(flat.size - finite.size), "n_dropped_ge_1e4": int(finite.size - kept.size)}
    return metrics, counts


def distinctness(continuations: Sequence[Sequence[str]]) -> dict[str, dict]:
    """dist-1/2/3 (see the module doc)."""
    return distinct_n(continuations)


# ---------------------------------------------------------------------------------------------- run directories
def generation_tasks(run_dir: Path, results: dict[str, Any]) -> dict[str, list[dict]]:
    """{task: sample rows} for the run's tasks whose samples carry continuations (RTP, RTP-LX...)."""
    out: dict[str, list[dict]] = {}
    for task in results.get("tasks", {}):
        rows = RunDir(run_dir).read_samples(task)
        if rows and all(isinstance(r.get("continuations"), list) and isinstance(r.get("prompt"), str) for r in rows):
            out[task] = rows
    return out


def reference_name(results: dict[str, Any]) -> str:
    """The run's base model (its name in the spec: a weight-space intervention's weights are not used)."""
    name = (results.get("spec") or {}).get("model") or ((results.get("protocol") or {}).get("model") or {}).get("name")
    if not name:
        raise UsageError("results.json names no model; pass --reference-model")
    return str(name)


def _chosen_tasks(run: RunDir, results: dict[str, Any], tasks: Sequence[str] | None) -> dict[str, list[dict]]:
    found = generation_tasks(run.path, results)
    if tasks:
        missing = [t for t in tasks if t not in found]
        if missing:
            raise did_you_mean(missing[0], found, "generation task of this run")
        found = {t: found[t] for t in tasks}
    if not found:
        raise UsageError(f"run {run.path.name!r} has no generation samples (samples_<task>.jsonl with continuations)")
    return found


def _update_groups(results: dict[str, Any]) -> None:
    """Groups whose every member now has the new metrics get their unweighted mean (``group_mean``)."""
    for group in results.get("groups", {}).values():
        members = group.get("tasks") or []
        if not members or not all(m in results["tasks"] for m in members):
            continue
        per_task = {m: results["tasks"][m].get("metrics", {}) for m in members}
        names = [n for n in (*COND_METRICS[::-1], *DIST_METRICS)
                 if all(isinstance(per_task[m].get(n, {}).get("value"), (int, float)) for m in members)]
        group.setdefault("metrics", {}).update(group_mean(per_task, names))


def add_fluency(
    run_dir: str | Path,
    reference_model: str | None = None,
    tasks: Sequence[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: str | None = None,
    loaded: Any = None,
    progress: bool = True,
    perplexity: bool = True,
) -> dict[str, dict]:
    """Add conditional_ppl_mean/median, dist-1/2/3 and script_share (non-Latin-script languages) to each generation
    task of ``run_dir``'s results.json.

    ``perplexity=False`` adds only the text statistics (seconds, no model; conditional perplexity already there is
    kept). ``loaded`` (a LoadedModel-like object with .model/.tokenizer/.name/.fingerprint) skips model loading
    (tests).
    Returns ``{task: added metrics}``; results.json is rewritten atomically once, at the end.
    """
    run = RunDir(Path(run_dir))
    results = run.read_results()
    found = _chosen_tasks(run, results, tasks)

    if perplexity:
        if loaded is None:
            loaded = models.load_model(reference_model or reference_name(results), dtype=dtype, device=device,
                                       cache_dir=cache_dir)
        loaded.model.eval()
        ref = {"name": getattr(loaded, "name", reference_model), "fingerprint": getattr(loaded, "fingerprint", None),
               "default": reference_model is None}

    added: dict[str, dict] = {}
    for task, rows in found.items():
        prompts = [r["prompt"] for r in rows]
        conts = [[str(c) for c in r["continuations"]] for r in rows]
        entry = results["tasks"][task]
        metrics: dict[str, dict] = {}
        if perplexity:
            ppl = conditional_perplexities(prompts, conts, loaded.model, loaded.tokenizer, batch_size=batch_size,
                                           progress=progress)
            metrics, counts = summarize_ppl(ppl)
            entry.setdefault("protocol", {})["conditional_ppl"] = {
                "reference_model": ref, "method": "DExperts conditional_perplexity, ppl < 1e4 kept"}
            entry["conditional_ppl_counts"] = counts  # outcomes (empty or dropped continuations), not settings
        metrics.update(distinctness(conts))
        metrics.update(script_share(conts, (entry.get("protocol") or {}).get("lang") or rows[0].get("lang")))
        entry.setdefault("metrics", {}).update(metrics)
        added[task] = metrics

    _update_groups(results)
    run.save_results(results)
    return added
