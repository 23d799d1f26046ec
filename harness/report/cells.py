"""Leaderboard cells: every metric of every run as one long table (model, intervention, task, metric, value, CI),
each cell tagged with the id of the protocol it was measured under (tables never mix protocols)."""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from ..core.io import canonical_json, sha256_text
from ..measure.schema import COND_METRICS
from .protocol_text import DERIVED_FIELDS
from .results import Run


def protocol_id(proto: dict[str, Any]) -> str:
    return sha256_text(canonical_json(proto))[:10]


#: What a conditional perplexity is measured under (its counts, e.g. empty continuations, are outcomes).
COND_PPL_SETTINGS = ("reference_model", "method")


def task_protocol(run: Run, task: str, conditional_ppl: bool = False) -> dict[str, Any]:
    """The task's protocol plus the run's seed (sampling depends on it). The reference model of ``toxbench
    fluency`` belongs to the conditional-perplexity metrics only (``conditional_ppl=True``): whether and how a run's
    fluency was scored does not change what its toxicity measured."""
    raw = (run.results["tasks"][task] or {}).get("protocol") or {}
    proto = {k: v for k, v in raw.items() if k not in DERIVED_FIELDS and k != "conditional_ppl"}
    if conditional_ppl and isinstance(raw.get("conditional_ppl"), dict):
        proto["conditional_ppl"] = {k: v for k, v in raw["conditional_ppl"].items() if k in COND_PPL_SETTINGS}
    proto["seed"] = run.seed
    return proto


def _is_multilingual(task: str, proto: dict[str, Any]) -> tuple[str, str] | None:
    """(family, lang) for a per-language task such as ``rtp_lx_de``; None for single-language tasks."""
    lang = proto.get("lang")
    if isinstance(lang, str) and lang and task.endswith("_" + lang):
        return task[: -len(lang) - 1], lang
    m = re.fullmatch(r"(rtp_lx|translated_pairwise\w*)_([a-z]{2}(?:-[A-Za-z]+)?)", task)
    return (m.group(1), m.group(2)) if m else None


CELL_COLUMNS = ["model", "intervention", "task", "metric", "value", "ci_lo", "ci_hi", "higher_is_better",
                "protocol", "kind", "family", "lang", "lang_ok", "n", "run_id", "source"]


def _label_rows(runs: list[Run]) -> dict[int, tuple[str, str]]:
    """(model label, intervention label) per run; disambiguates same names with different identities."""
    fps: dict[str, set[str]] = {}
    for r in runs:
        fps.setdefault(r.model_name, set()).add(r.model_fingerprint)
    ivs: dict[tuple[str, str], set[str]] = {}
    for r in runs:
        ivs.setdefault((r.model_name, r.intervention_name), set()).add(r.intervention_key)
    out = {}
    for i, r in enumerate(runs):
        model = r.model_name
        if len(fps[model]) > 1:
            model += f"@{r.model_fingerprint[:8] or '?'}"
        interv = r.intervention_name
        if len(ivs[(r.model_name, interv)]) > 1:
            interv += f"#{r.intervention_key[:6]}"
        out[i] = (model, interv)
    return out


def build_cells(runs: list[Run]) -> tuple[pd.DataFrame, dict[str, dict[str, Any]], list[str]]:
    """Long table of every metric of every run, the protocols by id, and duplicate warnings."""
    # Order = the order the runs were given (folders expanded in sorted path order), never file mtimes, so a
    # fresh clone renders the same Markdown; a later duplicate (same model, intervention, task) overrides.
    runs = list(runs)
    labels = _label_rows(runs)
    table = _Cells()
    for i, run in enumerate(runs):
        task_pids = table.add_tasks(run, *labels[i])
        table.add_groups(run, *labels[i], task_pids)
    return pd.DataFrame(list(table.cells.values()), columns=CELL_COLUMNS), table.protos, table.notes


class _Cells:
    def __init__(self) -> None:
        self.protos: dict[str, dict[str, Any]] = {}
        self.cells: dict[tuple, dict[str, Any]] = {}
        self.notes: list[str] = []

    def add(self, row: dict[str, Any]) -> None:
        key = (row["model"], row["intervention"], row["task"], row["metric"], row["protocol"])
        if key in self.cells and self.cells[key]["run_id"] != row["run_id"]:
            note = (f"{row['model']} / {row['intervention']} / {row['task']}: measured twice under the same "
                    f"protocol; using {row['run_id']} over {self.cells[key]['run_id']}")
            if note not in self.notes:
                self.notes.append(note)
        self.cells[key] = row

    def add_tasks(self, run: Run, model: str, interv: str) -> dict[str, tuple[str, str, str, bool]]:
        """The run's task cells; returns task -> (pid, conditional-ppl pid, kind, scorer language ok)."""
        task_pids: dict[str, tuple[str, str, str, bool]] = {}
        for task, tdata in run.results["tasks"].items():
            tdata = tdata or {}
            proto, cond_proto = task_protocol(run, task), task_protocol(run, task, conditional_ppl=True)
            pid, cond_pid = protocol_id(proto), protocol_id(cond_proto)
            self.protos[pid], self.protos[cond_pid] = proto, cond_proto
            kind = run.task_kind(task)
            ml = _is_multilingual(task, proto) if kind == "toxicity" else None
            lang_ok = proto.get("scorer_language_ok") is not False
            task_pids[task] = (pid, cond_pid, kind, lang_ok)
            for metric, m in (tdata.get("metrics") or {}).items():
                if (row := _metric_row(m)) is not None:
                    self.add({"model": model, "intervention": interv, "task": task, "metric": metric, **row,
                              "protocol": cond_pid if metric in COND_METRICS else pid, "kind": kind,
                              "family": ml[0] if ml else None, "lang": ml[1] if ml else proto.get("lang"),
                              "lang_ok": lang_ok, "n": tdata.get("n"), "run_id": run.run_id, "source": "task"})
        return task_pids

    def add_groups(self, run: Run, model: str, interv: str, task_pids: dict[str, tuple[str, str, str, bool]]) -> None:
        """The run's group cells, under a protocol naming their members' protocols."""
        for group, gdata in (run.results.get("groups") or {}).items():
            gdata = gdata or {}
            kind = run.task_kind(group)
            members = gdata.get("tasks") or [t for t, (_, _, k, _) in task_pids.items() if k == kind]
            members = [t for t in members if t in task_pids]
            group_pids = []
            for which in (0, 1):  # the group's protocol, and its conditional-perplexity protocol
                proto = {"group": group, "members": {t: task_pids[t][which] for t in sorted(members)},
                         "seed": run.seed, **(gdata.get("protocol") or {})}
                group_pids.append(protocol_id(proto))
                self.protos[group_pids[-1]] = proto
            lang_ok = all(task_pids[t][3] for t in members)
            for metric, m in (gdata.get("metrics") or {}).items():
                if (row := _metric_row(m)) is not None:
                    self.add({"model": model, "intervention": interv, "task": group, "metric": metric, **row,
                              "protocol": group_pids[metric in COND_METRICS], "kind": kind, "family": None,
                              "lang": None, "lang_ok": lang_ok, "n": None, "run_id": run.run_id, "source": "group"})


def _metric_row(m: Any) -> dict[str, Any] | None:
    if isinstance(m, (int, float)) and not isinstance(m, bool):
        m = {"value": m}
    if not isinstance(m, dict) or not isinstance(m.get("value"), (int, float)) or isinstance(m.get("value"), bool):
        return None
    ci = m.get("ci") if isinstance(m.get("ci"), (list, tuple)) and len(m["ci"]) == 2 else (None, None)
    return {"value": float(m["value"]), "ci_lo": None if ci[0] is None else float(ci[0]),
            "ci_hi": None if ci[1] is None else float(ci[1]), "higher_is_better": m.get("higher_is_better")}


def as_number(v: Any) -> float | None:
    """A float, or None for missing values (pandas turns None into NaN)."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f
