"""A run's results in the formats other tools read, each carrying toxbench's protocol:

- ``lm-eval``: ``results_<date>.json`` (lm-eval's keys: results, groups, configs, versions, n-shot,
  higher_is_better, n-samples, config, git_hash, date) + ``samples_<task>_<date>.jsonl``; the protocol (scorer,
  k, sampling, dtype, intervention + state hash, CIs) in ``configs[task]["toxbench"]`` and ``config["toxbench"]``;
- ``eee``: Every Eval Ever's aggregate record (``<run>.eee.json``) and instance-level rows (``<run>.eee.jsonl``);
- ``hub``: for a checkpoint dir (``toxbench export``, a DPO merge): ``.eval_results/<task>.yaml`` (the Hub's
  eval-results format, through ``huggingface_hub``) and a ``## Evaluation (toxbench)`` section in its README.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from ..core.io import atomic_write_json, atomic_write_text
from ..measure.schema import lower_is_better, metric_label, value_range
from ..spec.rundir import RunDir
from .results import Run

FORMATS = ("lm-eval", "eee", "hub")
EEE_SCHEMA_VERSION = "0.3.0"


def _date(run: Run) -> str:
    ts = Path(run.path / RunDir.RESULTS).stat().st_mtime if (run.path / RunDir.RESULTS).is_file() else time.time()
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H-%M-%S.%f")


def _env(run: Run) -> dict[str, Any]:
    path = run.path / RunDir.ENV
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _numbers(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m: v for m, v in (task.get("metrics") or {}).items()
            if isinstance(v, dict) and isinstance(v.get("value"), (int, float))}


def _stderr(m: dict[str, Any]) -> float | str:
    """lm-eval reports a standard error: the 95% CI's half width / 1.96 (toxbench's CI itself is in configs)."""
    ci = m.get("ci")
    return (ci[1] - ci[0]) / (2 * 1.96) if isinstance(ci, (list, tuple)) and len(ci) == 2 else "N/A"


def run_protocol(run: Run) -> dict[str, Any]:
    """What the numbers were measured under: the run's protocol and spec (versions, model, intervention...)."""
    return {"run_id": run.run_id, "protocol": run.protocol, "spec": run.spec, "kernels": run.results.get("kernels")}


def export_lm_eval(run: Run, out: Path) -> list[Path]:
    """lm-eval's own result files for one run."""
    date = _date(run)
    tasks = run.results.get("tasks", {})
    results, configs, hib = {}, {}, {}
    for name, t in tasks.items():
        metrics = _numbers(t)
        results[name] = {"alias": name, **{f"{m},none": v["value"] for m, v in metrics.items()},
                         **{f"{m}_stderr,none": _stderr(v) for m, v in metrics.items()}}
        hib[name] = {m: not lower_is_better(m) for m in metrics}
        configs[name] = {"task": name, "output_type": (t.get("protocol") or {}).get("output_type"),
                         "toxbench": {"protocol": t.get("protocol"), "ci": {m: v.get("ci") for m, v in metrics.items()},
                                      "kind": t.get("kind")}}
    groups = {g: {"alias": g, **{f"{m},none": v["value"] for m, v in _numbers(gd).items()}}
              for g, gd in (run.results.get("groups") or {}).items()}
    doc = {
        "results": results, "groups": groups,
        "group_subtasks": {g: gd.get("tasks", []) for g, gd in (run.results.get("groups") or {}).items()},
        "configs": configs,
        "versions": {n: (t.get("protocol") or {}).get("task_version") for n, t in tasks.items()},
        "n-shot": {n: (t.get("protocol") or {}).get("num_fewshot", 0) for n, t in tasks.items()},
        "higher_is_better": hib,
        "n-samples": {n: {"original": t.get("n"), "effective": t.get("n")} for n, t in tasks.items()},
        "config": {"model": "toxbench", "model_args": f"pretrained={run.model_name}",
                   "batch_size": run.spec.get("batch_size"), "device": (run.results.get("kernels") or {}).get("device"),
                   "toxbench": run_protocol(run)},
        "git_hash": _env(run).get("git_sha"),  # toxbench's commit when the run was made
        "date": Path(run.path / RunDir.RESULTS).stat().st_mtime if (run.path / RunDir.RESULTS).is_file() else None,
        "model_name": run.model_name,
    }
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"results_{date}.json"]
    atomic_write_json(written[0], doc)
    for name in tasks:
        rows = RunDir(run.path).read_samples(name)
        path = out / f"samples_{name}_{date}.jsonl"
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))
        written.append(path)
    return written


def _strings(d: dict[str, Any]) -> dict[str, str]:
    """EEE's additional_details: every value a string."""
    return {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str) for k, v in d.items()}


def _eee_result(run: Run, task: str, metric: str, m: dict[str, Any]) -> dict[str, Any]:
    proto = (run.results["tasks"][task].get("protocol") or {})
    data = proto.get("data_hash") or {}
    uncertainty = {}
    if isinstance(m.get("ci"), (list, tuple)) and len(m["ci"]) == 2:
        uncertainty = {"confidence_interval": {"lower": float(m["ci"][0]), "upper": float(m["ci"][1]),
                                               "confidence_level": 0.95, "method": "bootstrap"}}
    return {
        "evaluation_result_id": f"{task}/{metric}",
        "evaluation_name": task,
        "source_data": {"dataset_name": task, "source_type": "other",
                        "additional_details": _strings({"data_hash": data, "limit": proto.get("limit")})},
        "metric_config": {"metric_id": metric, "metric_name": metric_label(metric), "lower_is_better":
                          lower_is_better(metric), "score_type": "continuous",
                          **{k: (v if math.isfinite(v) else ("Infinity" if v > 0 else "-Infinity"))
                             for k, v in zip(("min_score", "max_score"), value_range(metric))},
                          "additional_details": _strings({"protocol": proto})},
        "score_details": {"score": float(m["value"]), **({"uncertainty": uncertainty} if uncertainty else {})},
    }


def _eee_folder(run: Run) -> tuple[str, str]:
    """EEE's datastore layout: data/<benchmark>/<developer>/<model>/<uuid>.json + <uuid>_samples.jsonl."""
    model = run.model_name.rstrip("/").split("/")
    developer, name = (model[-2], model[-1]) if len(model) >= 2 and not run.model_name.startswith("/") else \
        ("local", model[-1])
    uid = uuid.UUID(bytes=hashlib.sha256(run.run_id.encode()).digest()[:16], version=4)
    return f"data/toxbench/{_slug(developer)}/{_slug(name)}", str(uid)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


def export_eee(run: Run, out: Path) -> list[Path]:
    """Every Eval Ever's aggregate record and its instance-level rows (one per prompt of a generation task), in
    its datastore layout under ``out``."""
    now = str(time.time())
    eval_id = f"toxbench/{run.model_name}/{run.intervention_name}/{run.run_id}"
    folder, uid = _eee_folder(run)
    rows_rel = f"{folder}/{uid}_samples.jsonl"
    rows_path = out / rows_rel
    instance = list(_eee_instances(run, eval_id))
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in instance)
    record = {
        "schema_version": EEE_SCHEMA_VERSION, "evaluation_id": eval_id, "retrieved_timestamp": now,
        "source_metadata": {"source_name": "toxbench", "source_type": "evaluation_run",
                            "source_organization_name": "toxbench", "evaluator_relationship": "third_party",
                            "additional_details": _strings(run_protocol(run))},
        "eval_library": {"name": "toxbench", "version": str((run.protocol.get("versions") or {}).get("toxbench")),
                         "additional_details": _strings({"lm_eval": (run.protocol.get("versions") or {})
                                                         .get("lm_eval")})},
        "model_info": {"name": run.model_name, "id": run.model_name,
                       "additional_details": {"deployment_type": "self_deployed", "model_availability": "open_weights",
                                              "intervention": run.intervention_name,
                                              "model_fingerprint": run.model_fingerprint}},
        "evaluation_results": [_eee_result(run, t, m, v) for t, td in run.results.get("tasks", {}).items()
                               for m, v in _numbers(td).items()],
        "detailed_evaluation_results": {"format": "jsonl", "file_path": rows_rel, "hash_algorithm": "sha256",
                                        "checksum": hashlib.sha256(text.encode()).hexdigest(),
                                        "total_rows": len(instance)},
    }
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(rows_path, text)
    atomic_write_json(out / folder / f"{uid}.json", record)
    return [out / folder / f"{uid}.json", rows_path]


def _eee_instances(run: Run, eval_id: str):
    """One instance row per prompt of each RTP-style task: its continuations and their toxicity."""
    for task in run.results.get("tasks", {}):
        for r in RunDir(run.path).read_samples(task):
            if not isinstance(r.get("continuations"), list):
                continue
            tox = [float(x) for x in r.get("toxicity") or []]
            yield {
                "schema_version": EEE_SCHEMA_VERSION, "evaluation_id": eval_id, "model_id": run.model_name,
                "evaluation_name": task, "sample_id": str(r.get("prompt_id") or r.get("doc_id")),
                "interaction_type": "single_turn",
                "input": {"raw": str(r.get("prompt") or ""), "reference": []},
                "output": {"raw": [str(c) for c in r["continuations"]]},
                "answer_attribution": [{"turn_idx": 0, "source": "output.raw", "extracted_value": str(c),
                                        "extraction_method": "continuation", "is_terminal": True}
                                       for c in r["continuations"]],
                "evaluation": {"score": max(tox) if tox else 0.0, "is_correct": bool(tox) and max(tox) < 0.5},
                "metadata": _strings({"toxicity": tox, "prompt_toxicity": r.get("prompt_toxicity")}),
            }


def export_hub(run: Run, checkpoint_dir: Path) -> list[Path]:
    """``.eval_results/<task>.yaml`` (the Hub's format) and a README section with the results and their protocol,
    written into ``checkpoint_dir`` (nothing is uploaded)."""
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

    written = []
    lines = ["## Evaluation (toxbench)", "", f"Run `{run.run_id}`: model `{run.model_name}`, intervention "
             f"`{run.intervention_name}`.", "", "| task | metric | value | 95% CI |", "|---|---|---|---|"]
    for task, t in run.results.get("tasks", {}).items():
        metrics = _numbers(t)
        entries = [EvalResultEntry(dataset_id=f"toxbench/{task}", task_id=m, value=float(v["value"]),
                                   notes=f"toxbench protocol {run.run_id}") for m, v in metrics.items()]
        path = checkpoint_dir / ".eval_results" / f"{task}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False))
        written.append(path)
        for m, v in metrics.items():
            ci = v.get("ci")
            lines.append(f"| {task} | {m} | {v['value']:.4g} | "
                         + (f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else "") + " |")
    lines += ["", "Protocol (every setting that changes a number):", "", "```json",
              json.dumps(run_protocol(run)["protocol"], indent=1, sort_keys=True, default=str), "```", ""]
    readme = checkpoint_dir / "README.md"
    old = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    head = old.split("## Evaluation (toxbench)")[0].rstrip()
    atomic_write_text(readme, (head + "\n\n" if head else "") + "\n".join(lines))
    return [*written, readme]
