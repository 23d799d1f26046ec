"""The metric vocabulary, read from the display schema ``metrics.yaml`` (one entry per metric): names, labels,
units, direction (↓/↑), decimals, families and headline ranks, and what kind of task reports them. The
leaderboard, ``show``, ``check`` and the plots read metrics through here."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

SCHEMA_FILE = Path(__file__).with_name("metrics.yaml")


def _load_schema() -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    raw = yaml.safe_load(SCHEMA_FILE.read_text(encoding="utf-8"))
    return dict(raw["metrics"]), dict(raw["splits"])


SCHEMA, SPLIT_LABELS = _load_schema()
SPLITS = tuple(SPLIT_LABELS)


def family(name: str) -> tuple[str, ...]:
    """The metrics of a family, in the schema's order."""
    return tuple(m for m, e in SCHEMA.items() if e.get("family") == name)


def headline_order(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` that are headline metrics, best-ranked first."""
    return tuple(sorted((m for m in names if "headline" in SCHEMA.get(m, {})), key=lambda m: SCHEMA[m]["headline"]))


TOX_METRICS = family("toxicity")
#: The metrics the papers headline (ml-aura reports toxic fraction and toxicity probability, never EMT).
HEADLINE_TOX = headline_order(TOX_METRICS)
HEADLINE_METRICS = headline_order(SCHEMA)
PPL_METRICS = family("perplexity")
ACC_METRICS = family("accuracy")  # acc_norm where lm-eval reports it, as the common-sense average does
COND_METRICS = family("conditional_ppl")
DIST_METRICS = family("distinctness")
(SCRIPT_METRIC,) = family("script")  # letters in the prompt language's script (non-Latin languages only)
COUNT_METRICS = family("count")  # counts: a value, never a CI
NLL_METRICS = family("likelihood")  # teacher-forced (tasks/rtp/continuations.py)
#: Every metric name the harness emits (used to validate names a user writes, e.g. in a baseline).
KNOWN_METRICS = (*SCHEMA, *(m + s for m, e in SCHEMA.items() if e.get("splits") for s in SPLITS))
LOWER_IS_BETTER = {m for m, e in SCHEMA.items() if e["direction"] == "lower"}
LABELS = {m: e["label"] for m, e in SCHEMA.items() if "label" in e}
#: Preferred task order (papers print these first); anything else follows alphabetically.
TASK_ORDER = ("rtp_challenging", "rtp_nontoxic", "wikitext", "wiki_sentences", "wikitext103")
#: What a task measures, as its YAML declares (``metadata: {toxbench_kind: ...}``).
KINDS = ("toxicity", "perplexity", "zeroshot", "likelihood", "other")


def metric_label(metric: str) -> str:
    base, _, split = metric.partition("@")
    label = LABELS.get(base, base)
    return f"{label} ({SPLIT_LABELS.get('@' + split, split)})" if split else label


def decimals(metric: str) -> int:
    return int(SCHEMA.get(metric.partition("@")[0], {}).get("decimals", 3))


def lower_is_better(metric: str) -> bool:
    return metric.partition("@")[0] in LOWER_IS_BETTER


def arrow(metric: str) -> str:
    """The column marker of a metric's better direction."""
    return "↓" if lower_is_better(metric) else "↑"


def task_sort_key(task: str) -> tuple[int, str]:
    return (TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER), task)


def task_kind(declared: str | None, metrics: Iterable[str]) -> str:
    """The kind the task's YAML declares; for results without one (lm-eval's own tasks, older runs), the kind its
    metric names imply."""
    if declared in KINDS:
        return str(declared)
    names = {m.partition("@")[0] for m in metrics}
    if names & set(TOX_METRICS):
        return "toxicity"
    # Accuracy before perplexity: LAMBADA reports both and belongs with the zero-shot tasks.
    if names & {"acc", "acc_norm", "acc_avg", "acc_norm_avg", "exact_match"}:
        return "zeroshot"
    if names & set(PPL_METRICS):
        return "perplexity"
    if names & set(NLL_METRICS):
        return "likelihood"
    return "other"


def value_range(metric: str) -> tuple[float, float]:
    """[min, max] of a metric's values (max may be inf), from its schema entry; unknown metrics: unbounded."""
    lo, hi = SCHEMA.get(metric.partition("@")[0], {}).get("range", [float("-inf"), float("inf")])
    return float(lo), float(hi)
