"""The CI regression check: current runs vs a committed baseline.json, exit 1 when a metric moves too far.

baseline.json::

    {"toxbench_baseline": 1,
     "tolerances": {"default": {"rel": 0.02, "abs": 0.001},      # band = value ± max(rel·|value|, abs)
                    "use_ci": false,                              # true: ... widened to the baseline's 95% CI
                    "metrics": {"word_perplexity": {"rel": 0.005},       # per metric (any task) ...
                                "rtp_challenging:toxic_fraction": {"abs": 0.05}}},  # ... or per task:metric
     "kernels": [{"cpu", "aten", "native_bf16", ...}],               # where the baseline was made
     "entries": [{"model", "intervention", "task", "protocol": {...}, "metrics": {NAME: {"value", "ci", ...}}}]}

A per-metric tolerance replaces the default and the CI. A metric passes when its current value lies inside its
band, in either direction: in CI a sudden "improvement" is as suspicious as a regression.

Tolerances come from measurement, not guesses: `benchmarks/gate_spread.py` shows how far each metric moves across
kernel sets (AVX-512, AVX2-only, no SIMD) beside the effect the gate must catch. Teacher-forced metrics move ~1e-5
and carry the gate; greedy text can flip a prompt on other kernels and gets a band of a few prompts. ``use_ci`` is
off by default: with a few prompts the 95% CI is far too wide to catch anything (switching AurA off would pass).
A baseline entry with no current counterpart fails too (a task silently dropped). Runs are only compared under the
protocol the baseline was made with; anything else is a UsageError (exit 2), not a pass or a fail. A failure names
both kernel sets when they differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.errors import UsageError, did_you_mean
from ..core.io import atomic_write_json, canonical_json
from ..measure.schema import KNOWN_METRICS, decimals
from .cells import as_number, build_cells
from .protocol_text import flatten, fmt_value, protocol_differences
from .results import collect

FORMAT = 1
DEFAULT_TOLERANCES: dict[str, Any] = {"default": {"rel": 0.02, "abs": 0.001}, "use_ci": False, "metrics": {}}
TOLERANCE_KEYS = ("rel", "abs")


@dataclass
class CheckRow:
    model: str
    intervention: str
    task: str
    metric: str
    baseline: float | None
    current: float | None
    lo: float | None
    hi: float | None
    rule: str
    status: str  # ok | FAIL | missing | new

    @property
    def failed(self) -> bool:
        return self.status in ("FAIL", "missing")


@dataclass
class CheckReport:
    baseline_path: Path
    rows: list[CheckRow] = field(default_factory=list)
    updated: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Kernel sets (harness/hardware.py) the baseline was made with and the current runs used.
    baseline_kernels: list[dict[str, Any]] = field(default_factory=list)
    current_kernels: list[dict[str, Any]] = field(default_factory=list)

    def kernel_note(self) -> str:
        """Names a change of machine, so a failure caused by other kernels is reported as such."""
        if not self.baseline_kernels or not self.current_kernels:
            return ""
        if canonical_json(self.baseline_kernels) == canonical_json(self.current_kernels):
            return ""
        return (f" (baseline made with kernels {describe_kernels(self.baseline_kernels)}; these runs used "
                f"{describe_kernels(self.current_kernels)})")

    @property
    def failures(self) -> list[CheckRow]:
        return [r for r in self.rows if r.failed]

    @property
    def ok(self) -> bool:
        return self.updated or not self.failures

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def table(self, only_failures: bool = False) -> pd.DataFrame:
        rows = self.failures if only_failures else self.rows
        recs = []
        for r in rows:
            d = decimals(r.metric) + 1  # one more digit than the leaderboard: small moves must show
            fmt = (lambda v: "" if v is None else f"{v:.{d}f}")  # noqa: E731
            delta = "" if r.baseline is None or r.current is None else f"{r.current - r.baseline:+.{d}f}"
            band = "" if r.lo is None or r.hi is None else f"[{fmt(r.lo)}, {fmt(r.hi)}]"
            recs.append({"model": r.model, "intervention": r.intervention, "task": r.task, "metric": r.metric,
                         "baseline": fmt(r.baseline), "current": fmt(r.current), "Δ": delta, "allowed": band,
                         "rule": r.rule, "status": r.status})
        return pd.DataFrame(recs, columns=["model", "intervention", "task", "metric", "baseline", "current", "Δ",
                                           "allowed", "rule", "status"])

    def markdown(self, only_failures: bool = False) -> str:
        df = self.table(only_failures)
        if df.empty:
            return ""
        return df.to_markdown(index=False, disable_numparse=True)

    def summary(self) -> str:
        n = len([r for r in self.rows if r.status != "new"])
        new = len([r for r in self.rows if r.status == "new"])
        extra = f"; {new} new metric(s) not in the baseline" if new else ""
        if self.updated:
            return f"baseline {self.baseline_path} updated ({n} metric(s) compared before the rewrite){extra}"
        if self.failures:
            return (f"REGRESSION: {len(self.failures)} of {n} metric(s) outside tolerance vs "
                    f"{self.baseline_path}{extra}{self.kernel_note()}")
        return f"ok: {n} metric(s) within tolerance of {self.baseline_path}{extra}"


def describe_kernels(kernels: list[dict[str, Any]]) -> str:
    return " / ".join(", ".join(f"{k}={v}" for k, v in sorted(ks.items())) for ks in kernels)


def run_kernels(runs: list[Any]) -> list[dict[str, Any]]:
    """The distinct kernel sets of ``runs`` (older results record none)."""
    seen: dict[str, dict[str, Any]] = {}
    for r in runs:
        ks = r.results.get("kernels")
        if isinstance(ks, dict):
            seen.setdefault(canonical_json(ks), ks)
    return [seen[k] for k in sorted(seen)]


# -- baseline file ----------------------------------------------------------------------------------------------
def load_baseline(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"baseline {str(path)!r} not found; create it with `toxbench check --baseline {path} "
                         "RUNS... --update`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UsageError(f"baseline {str(path)!r} is not valid JSON: {e.msg} (line {e.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise UsageError(f"baseline {str(path)!r} has no 'entries' list; regenerate it with --update")
    if data.get("toxbench_baseline", FORMAT) != FORMAT:
        raise UsageError(f"baseline {str(path)!r} has format {data.get('toxbench_baseline')!r}; "
                         f"this toxbench reads format {FORMAT}")
    for i, e in enumerate(data["entries"]):
        if not isinstance(e, dict) or not all(k in e for k in ("model", "intervention", "task", "metrics")):
            raise UsageError(f"baseline {str(path)!r}: entry {i} lacks model/intervention/task/metrics")
    validate_tolerances(data.get("tolerances") or {}, data["entries"], path)
    return data


def validate_tolerances(tol: dict[str, Any], entries: list[dict], path: Path) -> None:
    """Unknown metric names or keys in the tolerances are user mistakes: fail loudly, with a suggestion."""
    if not isinstance(tol, dict):
        raise UsageError(f"baseline {str(path)!r}: 'tolerances' must be an object")
    for k in tol:
        if k not in DEFAULT_TOLERANCES:
            raise did_you_mean(k, DEFAULT_TOLERANCES, f"key in the tolerances of baseline {str(path)!r}:")
    if not isinstance(tol.get("use_ci", False), bool):
        raise UsageError(f"baseline {str(path)!r}: tolerances.use_ci must be true or false")
    metrics = set(KNOWN_METRICS) | {m for e in entries for m in e.get("metrics", {})}
    tasks = {e["task"] for e in entries}
    specs = [("default", tol["default"])] if "default" in tol else []
    for name, spec in (tol.get("metrics") or {}).items():
        task, _, metric = name.rpartition(":")
        if metric not in metrics:
            raise did_you_mean(metric, metrics, f"metric in the tolerances of baseline {str(path)!r}:")
        if task and task not in tasks:
            raise did_you_mean(task, tasks, f"task in the tolerances of baseline {str(path)!r}:")
        specs.append((name, spec))
    for name, spec in specs:
        if not isinstance(spec, dict) or not spec:
            raise UsageError(f"baseline {str(path)!r}: tolerance {name!r} must be an object like {{\"rel\": 0.05}}")
        for k, v in spec.items():
            if k not in TOLERANCE_KEYS:
                raise did_you_mean(k, TOLERANCE_KEYS, f"tolerance key (in {name!r})")
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise UsageError(f"baseline {str(path)!r}: tolerance {name}.{k} must be a number >= 0, not {v!r}")


def entries_from_cells(cells: pd.DataFrame, protocols: dict[str, dict]) -> list[dict[str, Any]]:
    out = []
    keys = ["model", "intervention", "task", "protocol"]
    for (model, iv, task, pid), grp in cells.groupby(keys, sort=True):
        metrics = {}
        for r in grp.sort_values("metric").itertuples():
            lo, hi = as_number(r.ci_lo), as_number(r.ci_hi)
            metrics[r.metric] = {"value": r.value, "ci": None if lo is None or hi is None else [lo, hi],
                                 "higher_is_better": None if pd.isna(r.higher_is_better) else bool(r.higher_is_better)}
        out.append({"model": model, "intervention": iv, "task": task, "protocol": protocols[pid], "metrics": metrics})
    return out


# -- comparison -------------------------------------------------------------------------------------------------
def _band(value: float, ci: Any, metric: str, task: str, tol: dict[str, Any]) -> tuple[float, float, str]:
    per = tol.get("metrics") or {}
    spec = per.get(f"{task}:{metric}") or per.get(metric)
    explicit = spec is not None
    spec = spec if explicit else tol.get("default", DEFAULT_TOLERANCES["default"])
    width = max(float(spec.get("rel", 0.0)) * abs(value), float(spec.get("abs", 0.0)))
    lo, hi = value - width, value + width
    rule = ", ".join(f"{k} {spec[k]}" for k in TOLERANCE_KEYS if k in spec)
    if not explicit and tol.get("use_ci", False) and isinstance(ci, (list, tuple)) and len(ci) == 2 \
            and as_number(ci[0]) is not None and as_number(ci[1]) is not None:
        lo, hi = min(lo, float(ci[0])), max(hi, float(ci[1]))
        rule = f"95% CI or {rule}"
    return lo, hi, rule


def _describe(entry: dict[str, Any]) -> str:
    return f"{entry['task']} ({entry['model']} / {entry['intervention']})"


def _match(entry: dict, candidates: list[dict], update: bool) -> dict | None:
    """The current entry measured under the baseline entry's protocol; another protocol is a one-line error
    naming what differs (unless the baseline is being replaced)."""
    match = next((c for c in candidates if canonical_json(c["protocol"]) == canonical_json(entry.get("protocol"))),
                 None)
    if match is None and candidates and not update:
        other = candidates[0]["protocol"]
        diffs = protocol_differences([entry.get("protocol") or {}, other])
        shown = "; ".join(f"{k} {fmt_value(flatten(entry.get('protocol') or {}).get(k))} in the baseline vs "
                          f"{fmt_value(flatten(other).get(k))} now" for k in diffs) or "protocol differs"
        raise UsageError(f"not comparable with the baseline: {_describe(entry)}: {shown}; rerun with the "
                         "baseline's settings, or --update to replace it")
    return match


def _entry_rows(entry: dict, match: dict | None, baseline_path: Path, tol: dict) -> list[CheckRow]:
    """One row per metric of a baseline entry (ok / FAIL / missing), then the metrics only measured now."""
    key = (entry["model"], entry["intervention"], entry["task"])
    rows = []
    for metric, m in sorted(entry["metrics"].items()):
        bval = as_number((m or {}).get("value"))
        cur = as_number(((match or {}).get("metrics", {}).get(metric) or {}).get("value")) if match else None
        if bval is None:
            raise UsageError(f"baseline {str(baseline_path)!r}: {_describe(entry)} {metric} has no numeric value")
        lo, hi, rule = _band(bval, (m or {}).get("ci"), metric, entry["task"], tol)
        status = "missing" if cur is None else ("ok" if lo - 1e-12 <= cur <= hi + 1e-12 else "FAIL")
        rows.append(CheckRow(*key, metric, bval, cur, lo, hi, rule, status))
    if match is not None:
        for metric in sorted(set(match["metrics"]) - set(entry["metrics"])):
            rows.append(CheckRow(*key, metric, None, as_number(match["metrics"][metric]["value"]), None, None, "",
                                 "new"))
    return rows


def check(baseline_path: str | Path, run_dirs: list[str | Path], update: bool = False) -> CheckReport:
    """Compare the runs under ``run_dirs`` with the baseline; ``update`` rewrites it (atomically) from them."""
    baseline_path = Path(baseline_path)
    coll = collect(run_dirs, warn=False)
    if not coll.runs:
        raise UsageError("no finished runs to check" + (
            f" ({len(coll.skipped)} skipped: {', '.join(f'{n} ({w})' for n, w in coll.skipped[:3])})"
            if coll.skipped else ""))
    cells, protocols, _ = build_cells(coll.runs)
    current = entries_from_cells(cells, protocols)
    by_key: dict[tuple, list[dict]] = {}
    for e in current:
        by_key.setdefault((e["model"], e["intervention"], e["task"]), []).append(e)

    if update and not baseline_path.is_file():
        base = {"toxbench_baseline": FORMAT, "tolerances": DEFAULT_TOLERANCES, "entries": []}
    else:
        base = load_baseline(baseline_path)
    tol = {**DEFAULT_TOLERANCES, **(base.get("tolerances") or {})}

    report = CheckReport(baseline_path, skipped=coll.skipped, baseline_kernels=list(base.get("kernels") or []),
                         current_kernels=run_kernels(coll.runs))
    seen: set[int] = set()
    for entry in base["entries"]:
        key = (entry["model"], entry["intervention"], entry["task"])
        match = _match(entry, by_key.get(key, []), update)
        if match is not None:
            seen.add(id(match))
        report.rows += _entry_rows(entry, match, baseline_path, tol)
    for e in current:
        if id(e) not in seen:
            for metric, m in sorted(e["metrics"].items()):
                report.rows.append(CheckRow(e["model"], e["intervention"], e["task"], metric, None,
                                            as_number(m["value"]), None, None, "", "new"))

    if update:
        atomic_write_json(baseline_path, {"toxbench_baseline": FORMAT, "tolerances": tol,
                                          "kernels": report.current_kernels, "entries": current})
        report.updated = True
    return report
