"""Which method is better at the same cost: toxicity against perplexity cost along each method's sweep.

A *curve* is one method on one model measured at several values of its knob (AurA's ``strength``, Det0/Damp's
``k``, toxic vectors' ``scale``), every point under the same task protocols; the model's ``none`` run is the
curve's zero-cost point. At a target cost (+5%, +10%, +20% perplexity over ``none`` on the cost task, the AurA
paper's axis) the toxicity is read off the curve by piecewise-linear interpolation between the measured points,
walking the knob from the unmitigated end; a target beyond the strongest point measured is "out of range", never
extrapolated.

CIs are a paired bootstrap: the prompts of the toxicity task and the documents of the cost task are resampled
once per replicate and shared by every point of every curve of the model, so a difference between two methods at
the same cost is judged against the noise of the same prompts and sentences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..measure.metrics import LEVEL, N_BOOTSTRAP, RatioStat, percentile_ci, resample
from ..measure.schema import metric_label
from .cells import protocol_id, task_protocol
from .results import REFERENCE, Run
from .tables import markdown_table

#: The sweep knobs and which way is "stronger" (toxic vectors: scale 1 leaves the model as it is, 0 removes them).
KNOBS: dict[str, tuple[float, int]] = {"strength": (0.0, +1), "k": (0.0, +1), "scale": (1.0, -1)}
#: Default knob value of a run that does not name one (a sweep leaves a knob at its default out of the run's
#: arguments, so AurA or steer without ``strength`` is strength 1).
DEFAULT_KNOB = {"aura": ("strength", 1.0), "toxic-vectors": ("scale", 0.0), "linear-act": ("strength", 1.0),
                "mean-act": ("strength", 1.0), "steer": ("strength", 1.0), "dpo": ("strength", 1.0)}
TARGET_COSTS = (5.0, 10.0, 20.0)
TOX_METRIC = "toxic_fraction"
#: The toxicity metrics read off at matched cost (the AurA paper's two), the first headlined in a board's Summary.
FRONTIER_METRICS = {"toxic_fraction": "toxic fraction", "toxicity_probability": "toxicity probability"}


@dataclass
class Curve:
    model: str
    method: str  # the intervention with every setting but the knob, e.g. "aura" or "damp[damp_alpha=0.3]"
    knob: str
    points: list[tuple[float, Run]] = field(default_factory=list)  # (knob value, run), unmitigated end first

    @property
    def label(self) -> str:
        return f"{self.method} ({self.knob} " + ", ".join(_fmt_knob(k) for k, _ in self.points) + ")"


def _fmt_knob(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def interpolate_at(costs: Sequence[float], values: Sequence[float], target: float) -> float | None:
    """The value where the cost first reaches ``target``, linear between the two points around it; ``costs`` and
    ``values`` are in knob order from the unmitigated end (cost 0). None beyond the last point (no extrapolation)."""
    for i in range(len(costs) - 1):
        c0, c1 = costs[i], costs[i + 1]
        if c0 <= target <= c1 and c1 > c0:
            w = (target - c0) / (c1 - c0)
            return values[i] + w * (values[i + 1] - values[i])
        if c0 == target:
            return values[i]
    return values[-1] if costs and costs[-1] == target else None


def _knob(run: Run) -> tuple[str, str, float] | None:
    """(method without the knob, knob name, knob value) of a run, or None for runs that are not on a curve."""
    base = str(run.spec.get("intervention") or REFERENCE)
    args = dict(run.spec.get("intervention_args") or [])
    knob = next((k for k in KNOBS if k in args), None)
    if knob is None and base in DEFAULT_KNOB:
        knob, value = DEFAULT_KNOB[base]
    elif knob is None:
        return None
    else:
        value = float(args.pop(knob))
    rest = ",".join(f"{k}={v}" for k, v in sorted(args.items()))
    return (f"{base}[{rest}]" if rest else base), knob, float(value)


class JoinedRun(Run):
    """One setting measured on the toxicity task in one run dir and on the cost task in another (a suite splits
    tasks with different limits into runs of their own): the toxicity run, with the cost run's task beside it."""

    def __init__(self, tox: Run, cost: Run, cost_task: str) -> None:
        tasks = {**tox.results["tasks"], cost_task: cost.results["tasks"][cost_task]}
        super().__init__(tox.path, {**tox.results, "tasks": tasks}, max(tox.mtime, cost.mtime),
                         tox._samples, tox._stats)
        self.cost_run, self.cost_task = cost, cost_task

    def samples(self, task: str) -> list[dict]:
        return self.cost_run.samples(task) if task == self.cost_task else super().samples(task)

    def sample_stats(self, task: str) -> dict[str, RatioStat]:
        return self.cost_run.sample_stats(task) if task == self.cost_task else super().sample_stats(task)


def join_tasks(runs: Sequence[Run], tox_task: str, cost_task: str) -> list[Run]:
    """Runs that measured both tasks: each run that has both, and each toxicity-only run joined with the cost-only
    run of the same model, intervention (state included) and seed."""
    def key(r: Run) -> tuple:
        return r.model_name, r.model_fingerprint, r.intervention_name, r.intervention_key, str(r.seed)

    def has(r: Run, task: str) -> bool:
        return task in r.results.get("tasks", {})

    both = [r for r in runs if has(r, tox_task) and has(r, cost_task)]
    cost_only = {key(r): r for r in runs if has(r, cost_task) and not has(r, tox_task)}
    joined = [JoinedRun(r, cost_only[key(r)], cost_task) for r in runs
              if has(r, tox_task) and not has(r, cost_task) and key(r) in cost_only]
    return both + joined


def build_curves(runs: Sequence[Run], tox_task: str, cost_task: str) -> tuple[dict[str, Run], list[Curve]]:
    """The ``none`` run per model and every curve (>= 2 points) over runs that measured both tasks under the same
    protocols as that ``none`` run."""
    def pids(r: Run) -> tuple[str, str]:
        return protocol_id(task_protocol(r, tox_task)), protocol_id(task_protocol(r, cost_task))

    have = join_tasks(runs, tox_task, cost_task)
    refs = {r.model_name: r for r in have if r.intervention_name == REFERENCE}
    curves: dict[tuple, Curve] = {}
    for r in have:
        ref = refs.get(r.model_name)
        found = _knob(r) if r.intervention_name != REFERENCE else None
        if ref is None or found is None or pids(r) != pids(ref):
            continue
        method, knob, value = found
        curves.setdefault((r.model_name, method, knob), Curve(r.model_name, method, knob)).points.append((value, r))
    out = []
    for c in curves.values():
        zero, sign = KNOBS[c.knob]
        c.points.sort(key=lambda p: sign * p[0])
        c.points.insert(0, (zero, refs[c.model]))
        if len(c.points) >= 3:  # none + at least two settings: a curve, not a point
            out.append(c)
    return refs, out


def _stat(run: Run, task: str, metric: str) -> RatioStat | None:
    return run.sample_stats(task).get(metric)


def _cost_metric(run: Run, task: str) -> str | None:
    metrics = run.results["tasks"][task].get("metrics", {})
    return next((m for m in ("perplexity", "word_perplexity") if m in metrics), None)


#: the matched cost a board's Summary headlines (the papers compare methods around +10% perplexity)
HEADLINE_COST = 10.0
#: the curve every other is also compared with in the Summary (the AurA paper's and ml-act's comparisons)
REFERENCE_METHOD = "aura"


@dataclass
class Frontier:
    """Matched-cost toxicity (``metric``) of every curve of one (toxicity task, cost task) pair."""

    tox_task: str
    cost_task: str
    curves: list[Curve]
    costs: tuple[float, ...] = TARGET_COSTS
    seed: int = 0
    n_bootstrap: int = N_BOOTSTRAP
    metric: str = TOX_METRIC

    @property
    def name(self) -> str:
        """The metric in words, for headings ("toxic fraction")."""
        return FRONTIER_METRICS.get(self.metric, self.metric)

    @property
    def short(self) -> str:
        """The metric as a column label starts ("toxic frac.")."""
        return metric_label(self.metric).lower()

    def __post_init__(self) -> None:
        self._replicates = self._bootstrap()
        self._interpolated: dict[tuple[int, float], np.ndarray | None] = {}  # (curve index, cost) -> replicates

    def point_values(self, curve: Curve) -> tuple[list[float], list[float]]:
        """(cost in % over none, toxicity) of each point of ``curve``."""
        none = curve.points[0][1]
        metric = _cost_metric(none, self.cost_task)
        base = none.results["tasks"][self.cost_task]["metrics"][metric]["value"]
        costs = [100.0 * (r.results["tasks"][self.cost_task]["metrics"][metric]["value"] / base - 1.0)
                 for _, r in curve.points]
        tox = [r.results["tasks"][self.tox_task]["metrics"][self.metric]["value"] for _, r in curve.points]
        costs[0] = 0.0
        return costs, tox

    def _bootstrap(self) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
        """Per run id: (cost %, toxicity) replicates, prompts and cost documents resampled jointly per model."""
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for model in dict.fromkeys(c.model for c in self.curves):
            runs = {r.run_id: r for c in self.curves if c.model == model for _, r in c.points}
            none = next(c.points[0][1] for c in self.curves if c.model == model)
            metric = _cost_metric(none, self.cost_task)
            tox = {i: _stat(r, self.tox_task, self.metric) for i, r in runs.items()}
            cost = {i: _stat(r, self.cost_task, metric) for i, r in runs.items()}
            if any(s is None for s in (*tox.values(), *cost.values())):
                return None
            if len({s.keys for s in tox.values()}) > 1 or len({s.keys for s in cost.values()}) > 1:
                return None  # not the same documents: no pairing
            finite = np.all([np.isfinite(s.a) for s in cost.values()], axis=0)  # texts too short to score (NaN)
            cost = {i: s.subset(finite) for i, s in cost.items()}
            rng = np.random.default_rng(self.seed)
            idx_t = resample(len(next(iter(tox.values()))), rng, self.n_bootstrap)
            idx_c = resample(len(next(iter(cost.values()))), rng, self.n_bootstrap)
            base = cost[none.run_id].replicates(idx_c)
            for i in runs:
                out[i] = (100.0 * (cost[i].replicates(idx_c) / base - 1.0), tox[i].replicates(idx_t))
        return out

    def _curve_replicates(self, curve: Curve, target: float) -> np.ndarray | None:
        """The curve's value at ``target`` in every bootstrap replicate (computed once per curve and cost: the
        table, its "vs best" column, the Markdown and the HTML all read them)."""
        key = (self.curves.index(curve), target)
        if key not in self._interpolated:
            self._interpolated[key] = self._interpolate_replicates(curve, target)
        return self._interpolated[key]

    def _interpolate_replicates(self, curve: Curve, target: float) -> np.ndarray | None:
        if self._replicates is None:
            return None
        ids = [r.run_id for _, r in curve.points]
        costs = np.stack([self._replicates[i][0] for i in ids], axis=1)
        tox = np.stack([self._replicates[i][1] for i in ids], axis=1)
        costs[:, 0] = 0.0
        vals = [interpolate_at(c.tolist(), t.tolist(), target) for c, t in zip(costs, tox)]
        return np.array([np.nan if v is None else v for v in vals])

    def at_cost(self, curve: Curve, target: float) -> tuple[float | None, tuple[float, float] | None]:
        costs, tox = self.point_values(curve)
        value = interpolate_at(costs, tox, target)
        reps = self._curve_replicates(curve, target) if value is not None else None
        return value, _ci(reps)

    def table(self) -> pd.DataFrame:
        """One row per curve: its points, and per target cost the metric's value [CI], the difference from the
        best method of the model at that cost and, where the model has an AurA curve, from AurA's (the method both
        papers compare against) [paired CIs] (bold: the CI excludes 0)."""
        refs = self._references()
        rows = []
        for curve in self.curves:
            row = {"model": curve.model, "method": curve.label}
            for target in self.costs:
                value, ci = self.at_cost(curve, target)
                row[f"{self.short} at +{target:g}% PPL"] = _cell(value, ci)
                row[f"vs best at +{target:g}%"] = self._versus_best(curve, target, value)
                if refs:
                    row[f"vs {REFERENCE_METHOD} at +{target:g}%"] = self._versus_reference(curve, refs, target)
            rows.append(row)
        return pd.DataFrame(rows)

    def _references(self) -> dict[str, Curve]:
        return {c.model: c for c in self.curves if c.method == REFERENCE_METHOD}

    def _versus_reference(self, curve: Curve, refs: dict[str, Curve], target: float) -> str:
        if curve.model not in refs:
            return ""
        return "ref" if refs[curve.model] is curve else self.versus(curve, refs[curve.model], target)

    def _versus_best(self, curve: Curve, target: float, value: float | None) -> str:
        if value is None:
            return ""
        scored = [(v, c) for c in self.curves if c.model == curve.model
                  for v in [interpolate_at(*self.point_values(c), target)] if v is not None]
        best = min(scored, key=lambda x: x[0])[1]
        return "best" if best is curve else self.versus(curve, best, target)

    def versus(self, curve: Curve, other: Curve, target: float) -> str:
        """``curve`` minus ``other`` at ``target`` % cost [paired CI], bold when the CI excludes 0; "" when either
        is out of range."""
        a_value, b_value = (interpolate_at(*self.point_values(c), target) for c in (curve, other))
        if a_value is None or b_value is None:
            return ""
        a, b = self._curve_replicates(curve, target), self._curve_replicates(other, target)
        ci = _ci(None if a is None or b is None else a - b)
        text = f"{a_value - b_value:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")
        return f"**{text}**" if ci and (ci[0] > 0 or ci[1] < 0) else text

    def point_cis(self, curve: Curve) -> list[tuple[tuple[float, float] | None, tuple[float, float] | None]]:
        """(cost % CI, toxicity CI) of each point, from the same paired replicates."""
        if self._replicates is None:
            return [(None, None)] * len(curve.points)
        return [(_ci(self._replicates[r.run_id][0]), _ci(self._replicates[r.run_id][1])) for _, r in curve.points]

    def headline(self, target: float = HEADLINE_COST) -> pd.DataFrame:
        """The Summary's matched-cost figure: per method, the metric at ``target`` % cost, its difference
        from the best method there and from AurA's curve (the method the papers compare against), each with its
        paired CI; the full table at every cost is the board's matched-cost section."""
        df = self.table()
        keep = ["model", "method", f"{self.short} at +{target:g}% PPL", f"vs best at +{target:g}%"]
        out = df[[c for c in keep if c in df.columns]].copy()
        out["method"] = [c.method for c in self.curves]
        refs = self._references()
        if refs:
            out[f"vs {REFERENCE_METHOD} at +{target:g}%"] = [self._versus_reference(c, refs, target)
                                                             for c in self.curves]
        return out

    def markdown(self, df: pd.DataFrame | None = None) -> str:
        return markdown_table(self.table() if df is None else df)


def _ci(reps: np.ndarray | None) -> tuple[float, float] | None:
    if reps is None:
        return None
    ok = reps[np.isfinite(reps)]
    if len(ok) < 0.9 * len(reps):  # the target was out of range in too many replicates to trust a CI
        return None
    return percentile_ci(ok, LEVEL)


def _cell(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "out of range"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def positive_costs(items: Sequence[Any]) -> tuple[float, ...] | None:
    """Matched costs (% perplexity) from numbers or numeric strings; None unless all are positive numbers."""
    if any(isinstance(x, bool) for x in items):
        return None
    try:
        costs = tuple(float(x) for x in items)
    except (TypeError, ValueError):
        return None
    return costs if costs and all(c > 0 for c in costs) else None


def frontiers(runs: Sequence[Run], tox_tasks: Sequence[str], cost_tasks: Sequence[str], seed: int = 0,
              costs: Sequence[float] = TARGET_COSTS) -> list[Frontier]:
    """Every (toxicity task, cost task) pair with at least one curve, read off at ``costs`` (% perplexity): one
    Frontier per metric of ``FRONTIER_METRICS`` that every point of every curve measured, toxic fraction first."""
    out = []
    for t in tox_tasks:
        for c in cost_tasks:
            _, curves = build_curves(runs, t, c)
            points = [r for curve in curves for _, r in curve.points]
            out += [Frontier(t, c, curves, costs=tuple(costs), seed=seed, metric=m) for m in FRONTIER_METRICS
                    if curves and all(m in r.results["tasks"][t].get("metrics", {}) for r in points)]
    return out
