"""Reading run directories: the finished runs under some paths, their results, samples and per-document
statistics. The only code that reads run dirs for tables (leaderboard, check, suite, show); it reads through
``RunDir`` (harness/store.py), which also writes them."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from ..core.io import canonical_json, sha256_text
from ..measure.metrics import RatioStat, sample_stats
from ..measure.schema import task_kind
from ..spec.rundir import RunDir

REFERENCE = "none"


@dataclass
class Run:
    """One finished run directory (results.json with completed=true)."""

    path: Path
    results: dict[str, Any]
    mtime: float
    _samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    _stats: dict[str, dict[str, RatioStat]] = field(default_factory=dict, repr=False)

    @property
    def run_id(self) -> str:
        return str(self.results.get("run_id") or self.path.name)

    @property
    def spec(self) -> dict[str, Any]:
        return self.results.get("spec") or {}

    @property
    def protocol(self) -> dict[str, Any]:
        return self.results.get("protocol") or {}

    @property
    def model_name(self) -> str:
        return str((self.protocol.get("model") or {}).get("name") or self.spec.get("model") or "?")

    @property
    def model_fingerprint(self) -> str:
        return str((self.protocol.get("model") or {}).get("fingerprint") or "")

    @property
    def intervention_name(self) -> str:
        name = self.spec.get("intervention") or (self.protocol.get("intervention") or {}).get("name") or REFERENCE
        args = self.spec.get("intervention_args") or []
        if args:
            name += "[" + ",".join(f"{k}={v}" for k, v in args) + "]"
        return str(name)

    @property
    def intervention_key(self) -> str:
        return sha256_text(canonical_json(self.protocol.get("intervention")))[:8]

    @property
    def seed(self) -> Any:
        return self.protocol.get("seed", self.spec.get("seed"))

    def task_kind(self, task: str) -> str:
        """The kind the task declared when it ran (older results: implied by its metric names)."""
        t = self.results["tasks"].get(task) or self.results.get("groups", {}).get(task) or {}
        return task_kind(t.get("kind"), (t.get("metrics") or {}).keys())

    def samples(self, task: str) -> list[dict[str, Any]]:
        """The task's per-document rows (samples_<task>.jsonl), read once."""
        if task not in self._samples:
            self._samples[task] = RunDir(self.path).read_samples(task)
        return self._samples[task]

    def sample_stats(self, task: str) -> dict[str, RatioStat]:
        """Per-document statistics of the task's metrics, for paired comparisons (harness/metrics.py)."""
        if task not in self._stats:
            self._stats[task] = sample_stats(self.samples(task))
        return self._stats[task]


@dataclass
class Collection:
    runs: list[Run]
    #: (run dir name, reason) for every run dir left out.
    skipped: list[tuple[str, str]] = field(default_factory=list)


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Expand RUNS arguments: each is a run dir or a folder holding run dirs (searched recursively)."""
    found: dict[Path, None] = {}
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise UsageError(f"no such run dir or folder: {str(p)!r}")
        if not p.is_dir():
            raise UsageError(f"{str(p)!r} is not a directory; pass run dirs or folders of run dirs")
        if RunDir.is_run_dir(p):
            found[p] = None
            continue
        inner = RunDir.find_below(p)
        if not inner:
            raise UsageError(f"no run directories (results.json or run_spec.json) under {str(p)!r}")
        for d in inner:
            found[d] = None
    return list(found)


def load_run(path: Path) -> Run | str:
    """A finished Run, or the reason this dir is skipped."""
    rd = RunDir(path)
    if not rd.results_file.is_file():
        return "no results.json: not run yet, or still running"
    try:
        results = rd.load_results()
    except (OSError, UsageError) as e:
        return f"unreadable results.json: {str(e).split(';')[0]}"
    if not isinstance(results.get("tasks"), dict):
        return "results.json has no 'tasks'"
    if results.get("completed") is not True:
        return "completed=false: unfinished run"
    return Run(path, results, rd.results_file.stat().st_mtime)


def collect(paths: Iterable[str | Path], warn: bool = True) -> Collection:
    """Load every finished run under ``paths``; unfinished ones are skipped with a warning."""
    runs, skipped = [], []
    for d in find_run_dirs(paths):
        r = load_run(d)
        if isinstance(r, str):
            skipped.append((d.name, r))
            if warn:
                warnings.warn(f"skipped run dir {str(d)!r}: {r}", stacklevel=2)
        else:
            runs.append(r)
    return Collection(runs, skipped)
