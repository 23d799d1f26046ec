"""Combine shard run dirs (``--shard i/n``) into the run an unsharded spec would have produced.

Samples are concatenated by document id and pushed through the same ``evaluate.py`` the runner uses. A generation
shard decoded whole batches of the unsharded run's plan (``evaluate.doc_ids``), so the merged results.json equals
the unsharded run's, samples included, bitwise.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from ... import __version__
from ...tasks import load_task_dict
from ..core.errors import UsageError
from ..spec.rundir import RunDir
from .evaluate import apply_generation_overrides, doc_ids, evaluation_context, leaves, record_groups, record_task


def merge(shard_dirs: list[Path], output_dir: Path | None = None) -> Path:
    if not shard_dirs:
        raise UsageError("merge needs shard run directories (from `toxbench run --shard I/N`)")
    runs = [RunDir(Path(d)) for d in shard_dirs]
    specs = [r.load_spec() for r in runs]
    results = [r.load_results() for r in runs]
    for r, res in zip(runs, results):
        if not res.get("completed"):
            raise UsageError(f"shard {str(r.path)!r} is not complete; resume it with `toxbench run` first")
    base = dataclasses.replace(specs[0], shard=None)
    n = specs[0].shard[1] if specs[0].shard else None
    if n is None:
        raise UsageError(f"{str(runs[0].path)!r} is not a shard run (no --shard)")
    for r, s in zip(runs, specs):
        if dataclasses.replace(s, shard=None).fingerprint() != base.fingerprint():
            raise UsageError(f"shard {str(r.path)!r} was run with another spec than {str(runs[0].path)!r}")
    got = sorted(s.shard[0] for s in specs)
    if got != list(range(n)):
        missing = sorted(set(range(n)) - set(got))
        raise UsageError(f"shards {missing} of {n} are missing (got {got})")

    if output_dir is not None:
        base = dataclasses.replace(base, output_dir=str(output_dir))
    out = RunDir.for_spec(base)
    out.path.mkdir(parents=True, exist_ok=True)
    out.write_spec(base)
    metadata, scorers = evaluation_context(base)  # the data the shards read (`rtp --data FILE`: the user's file)
    merged: dict[str, Any] = {
        "toxbench_version": __version__, "run_id": out.path.name, "fingerprint": base.fingerprint(),
        "spec": base.to_dict(), "protocol": {**results[0]["protocol"], "shard": None, "merged_from": [str(r.path) for r in runs]},
        "tasks": {}, "groups": {}, "top_level_done": [],
    }
    t0 = time.time()
    for top in base.tasks:
        task_dict = load_task_dict([top], base.include_paths, metadata)
        for name, task in leaves(task_dict):
            apply_generation_overrides(task, base)
            rows = sorted((row for r in runs for row in r.read_samples(name)), key=lambda x: x["doc_id"])
            ids = doc_ids(task, base.limit, None)
            if [row["doc_id"] for row in rows] != ids:
                raise UsageError(f"task {name}: the shards' documents do not add up to the unsharded set")
            record_task(out, merged, name, task, rows, base, ids, scorers,
                        max_length=results[0]["tasks"][name]["protocol"].get("max_length"),
                        wall_s=sum(res["tasks"][name].get("wall_s", 0) for res in results))
        record_groups(merged, task_dict)
        merged["top_level_done"].append(top)
    merged["wall_s"] = round(sum(res.get("wall_s", 0) for res in results) + time.time() - t0, 2)
    merged["completed"] = True
    out.save_results(merged)
    return out.path
