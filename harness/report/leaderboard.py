"""Leaderboards: run directories -> the tables a paper would print, honest about protocols.

Every number is a *cell* (model, intervention, task, metric) measured under a task *protocol* (scorer + version,
calibration, k, max tokens, sampling, data hash, limit, seed). Cells measured under different protocols never
share a column: a table whose tasks were run under several protocols is split into one table per protocol
variant, with a heading saying what differs (or, with ``strict=True``, refused with a one-line UsageError).
Δ and reduction factors are taken against the same model's ``none`` row *in the same table*, so they never mix
protocols either.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.errors import UsageError
from ..core.io import atomic_write_json, atomic_write_text, sha256_text
from ..measure.metrics import Paired, paired_ci, paired_mean_ci
from ..measure.schema import (
    COND_METRICS,
    decimals,
    lower_is_better,
    task_sort_key,
)
from .cells import as_number, build_cells
from .frontier import DEFAULT_KNOB, KNOBS, TARGET_COSTS, Frontier, frontiers
from .markdown import DAGGER, render_markdown
from .protocol_text import (
    flatten,
    fmt_value,
    protocol_differences,
)
from .results import REFERENCE, Collection, Run, collect
from .tables import markdown_table
from .sections import Column, Sections


# -- tables -----------------------------------------------------------------------------------------------------
@dataclass
class Table:
    heading: str  # "" for an unsplit table, else a Markdown line saying what this protocol variant is
    display: pd.DataFrame  # strings, as rendered
    numbers: pd.DataFrame  # (model, intervention) x header -> float (value columns only)
    protocols: list[tuple[str, str]]  # (task, protocol id) used by this table
    daggers: list[tuple[str, str]]  # (task, lang) cells shown with a dagger
    lo: pd.DataFrame | None = None  # 95% CI bounds, same shape as numbers (NaN where absent)
    hi: pd.DataFrame | None = None

    def markdown(self) -> str:
        return markdown_table(self.display)


def _row_order(rows: Iterable[tuple[str, str]], order: Sequence[str] = ()) -> list[tuple[str, str]]:
    def key(r: tuple[str, str]) -> tuple:
        model, iv = r
        base = iv.split("[")[0].split("#")[0]
        rank = 0 if iv == REFERENCE else (1 + list(order).index(base) if base in order else 1 + len(order))
        return (model, rank, base, _knob_value(iv, base), iv)

    return sorted(set(rows), key=key)


def _knob_value(iv: str, base: str) -> float:
    """A swept row's knob value (``aura[strength=0.5]`` -> 0.5; plain ``aura`` is its default, strength 1), so a
    sweep's rows read in knob order; other rows sort after them by name."""
    m = re.search(r"\b(" + "|".join(KNOBS) + r")=([0-9.eE+-]+)", iv)
    if m:
        return float(m.group(2))
    return DEFAULT_KNOB[base][1] if base in DEFAULT_KNOB and "[" not in iv else math.inf


def _fmt(v: float | None, d: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.{d}f}"


#: columns that compare a row with its `none` row (with a paired CI)
PAIRED_SHOWS = ("reduction", "delta", "delta_pct")


def _delta_pct(ref: float, v: float, paired: Paired | None) -> str:
    """this / none - 1 in %, its paired CI from the ratio's (none / this)."""
    text = f"{100 * (v / ref - 1):+.1f}%" if ref else ""
    if not text or paired is None or paired.ratio_ci is None or not all(paired.ratio_ci):
        return text
    lo, hi = (100 * (1 / r - 1) for r in paired.ratio_ci[::-1])
    return (f"**{text}**" if paired.ratio_significant else text) + f" [{lo:+.1f}, {hi:+.1f}]"


def _reduction(ref: float | None, v: float | None) -> str:
    if ref is None or v is None:
        return ""
    if v == 0:
        return "1.00×" if ref == 0 else "∞×"
    return f"{ref / v:.2f}×"  # two decimals: 1.25× and 1.29× are different findings


class Leaderboard:
    """Cells + protocols of a set of runs, and the Markdown sections built from them."""

    def __init__(self, collection: Collection, strict: bool = False, title: str = "Leaderboard",
                 order: Sequence[str] = (), costs: Sequence[float] = TARGET_COSTS) -> None:
        self.collection = collection
        self.costs = tuple(costs)
        self.runs_by_id: dict[str, Run] = {r.run_id: r for r in collection.runs}
        self.title = title
        self.order = tuple(order)
        self.cells, self.protocols, self.notes = build_cells(collection.runs)
        self.layout = Sections(self.cells)
        if self.cells.empty:
            raise UsageError("no finished runs to tabulate" + (
                f" ({len(collection.skipped)} skipped: {', '.join(n for n, _ in collection.skipped[:5])})"
                if collection.skipped else ""))
        if strict:
            self.check_strict()

    # -- protocol handling --------------------------------------------------------------------------------------
    # A task's conditional perplexity has its own protocol (the reference model of `toxbench fluency`), so
    # protocols are compared per *key*: (task, whether the metric is a conditional perplexity).
    @staticmethod
    def _keys(cells: pd.DataFrame) -> pd.Series:
        return pd.Series([(t, m in COND_METRICS) for t, m in zip(cells.task, cells.metric)], index=cells.index,
                         dtype=object)

    @staticmethod
    def _key_label(key: tuple[str, bool]) -> str:
        return f"{key[0]} cond. PPL" if key[1] else key[0]

    def describe_difference(self, task: str, pids: Sequence[str]) -> str:
        protos = [self.protocols[p] for p in pids]
        diffs = protocol_differences(protos)
        parts = []
        for k in diffs:
            vals = [fmt_value(flatten(p).get(k)) for p in protos]
            parts.append(f"{k} {' vs '.join(dict.fromkeys(vals))}")
        return f"{task}: " + "; ".join(parts)

    def check_strict(self) -> None:
        keys = self._keys(self.cells)
        for key in sorted(set(keys), key=lambda k: (task_sort_key(k[0]), k[1])):
            pids = list(dict.fromkeys(self.cells.protocol[[k == key for k in keys]]))
            if len(pids) > 1:
                raise UsageError(f"runs differ in protocol: {self.describe_difference(self._key_label(key), pids)} "
                                 "(without --strict they go in separate tables)")

    def _table_cells(self, columns: Sequence[Column]) -> pd.DataFrame:
        """The cells of ``columns``' (task, metric) pairs, with their protocol key."""
        pairs = {(c.task, c.metric) for c in columns}
        sub = self.cells[[(t, m) in pairs for t, m in zip(self.cells.task, self.cells.metric)]]
        return sub.assign(key=self._keys(sub))

    def _variants(self, sub: pd.DataFrame) -> list[tuple[str, dict[tuple, str | None], list[tuple[str, str]]]]:
        """Split rows so that every protocol key of a table has one protocol: [(heading, {key: pid}, rows)]."""
        keys = list(dict.fromkeys(sub.key))
        conflicting = [k for k in keys if len(set(sub.loc[sub.key == k, "protocol"])) > 1]
        rows = _row_order(zip(sub.model, sub.intervention), self.order)
        groups: dict[tuple, list[tuple[str, str]]] = {}
        for row in rows:
            mine = sub[(sub.model == row[0]) & (sub.intervention == row[1])]
            options = [list(dict.fromkeys(mine.loc[mine.key == k, "protocol"])) or [None] for k in conflicting]
            for sig in itertools.product(*options):
                groups.setdefault(sig, []).append(row)
        out = []
        for sig, grows in groups.items():
            parts, missing = [], []
            for k, pid in zip(conflicting, sig):
                if pid is None:
                    missing.append(self._key_label(k))
                    continue
                allp = list(dict.fromkeys(sub.loc[sub.key == k, "protocol"]))
                protos = [self.protocols[p] for p in allp]
                vals = flatten(self.protocols[pid])
                shown = ", ".join(f"{d}={fmt_value(vals.get(d))}" for d in protocol_differences(protos))
                parts.append(f"{self._key_label(k)} with {shown}")
            if parts:
                heading = "**Protocol variant:** " + "; ".join(parts)
                heading += f" (rows without {', '.join(missing)})" if missing else ""
            else:
                heading = f"**Rows without {', '.join(missing)}**" if missing else ""
            out.append((heading, dict(zip(conflicting, sig)), grows))
        return out

    def table(self, columns: Sequence[Column]) -> list[Table]:
        """Render ``columns`` for every row, one Table per protocol variant; empty columns are dropped."""
        sub = self._table_cells(columns)
        if sub.empty:
            return []
        tables = []
        for heading, sig, rows in self._variants(sub):
            # Conflicting keys keep only this variant's protocol (the `none` reference included).
            wanted = sub.key.map(lambda k: sig.get(k))
            keep = sub[wanted.isna() | (wanted == sub.protocol)]
            lookup = {(r.model, r.intervention, r.task, r.metric): r for r in keep.itertuples()}
            disp: dict[str, list[str]] = {"model": [r[0] for r in rows], "intervention": [r[1] for r in rows]}
            nums: dict[str, list[float | None]] = {}
            los: dict[str, list[float | None]] = {}
            his: dict[str, list[float | None]] = {}
            used: dict[tuple[str, str], None] = {}
            daggers: dict[tuple[str, str], None] = {}
            for col in columns:
                vals, numcol, locol, hicol = [], [], [], []
                for model, iv in rows:
                    cell = lookup.get((model, iv, col.task, col.metric))
                    ref = lookup.get((model, REFERENCE, col.task, col.metric))
                    numcol.append(cell.value if cell is not None else None)
                    locol.append(as_number(cell.ci_lo) if cell is not None else None)
                    hicol.append(as_number(cell.ci_hi) if cell is not None else None)
                    if cell is not None:
                        used[(col.task, cell.protocol)] = None
                    if col.show == "languages":
                        vals.append(self._languages_text(col, columns, lookup, model, iv))
                        continue
                    paired = self.paired(cell, ref) if col.show in PAIRED_SHOWS else None  # only × and Δ
                    vals.append(self._cell_text(col, cell, ref, iv, daggers, paired))
                if col.show in ("value", "ci"):
                    nums[col.header], los[col.header], his[col.header] = numcol, locol, hicol
                disp[col.header] = vals
            display = pd.DataFrame(disp)
            # Drop empty value columns and the Δ / × columns that hang off them.
            empty = {c.header for c in columns if c.show in ("value", "ci") and not any(display[c.header])}
            empty |= {c.header for c in columns if c.show in (*PAIRED_SHOWS, "languages")
                      and not any(v not in ("", "ref") for v in display[c.header])}
            display = display.drop(columns=sorted(empty))
            if display.shape[1] <= 2:
                continue
            index = pd.MultiIndex.from_tuples(rows, names=["model", "intervention"])
            frames = [pd.DataFrame(x, index=index, dtype=float) for x in (nums, los, his)]
            numbers, lo, hi = (f.drop(columns=[c for c in f.columns if c in empty]) for f in frames)
            tables.append(Table(heading, display, numbers, list(used), list(daggers), lo, hi))
        return tables

    def paired(self, cell: Any, ref: Any) -> Paired | None:
        """The cell against its reference row, documents resampled jointly (both runs' samples files), or None
        when either has no per-document statistic for this metric (group means, older runs) or they share no
        documents."""
        if cell is None or ref is None or cell.run_id == ref.run_id or cell.source not in ("task", "group"):
            return None
        a, b = self.runs_by_id.get(ref.run_id), self.runs_by_id.get(cell.run_id)
        if a is None or b is None:
            return None
        seed = int(sha256_text(f"{cell.task}|{cell.metric}|{cell.intervention}")[:8], 16)
        if cell.source == "group":
            return self._paired_group(a, b, cell.task, cell.metric, seed)
        sa, sb = a.sample_stats(cell.task).get(cell.metric), b.sample_stats(cell.task).get(cell.metric)
        if sa is None or sb is None:
            return None
        return paired_ci(sa, sb, seed)

    def _paired_group(self, a: Run, b: Run, group: str, metric: str, seed: int) -> Paired | None:
        """A group mean over its member tasks (RTP-LX languages: the same metric in each; the common-sense
        ``acc_avg``: each member's acc_norm where it has one, else acc) against the reference, stratified by member
        task; None when the members' per-document values do not reproduce both runs' group values (then the
        pairing would test something else, e.g. a size-weighted group)."""
        members = ((a.results.get("groups") or {}).get(group) or {}).get("tasks") or []
        pairs, used = [], []
        for t in members:
            m = self.layout.acc_metric(t) if metric in ("acc_avg", "acc_norm_avg") else metric
            sa, sb = a.sample_stats(t).get(m or ""), b.sample_stats(t).get(m or "")
            if sa is None or sb is None:
                return None
            pairs.append((sa, sb))
            used.append((a.results["tasks"][t]["metrics"][m]["value"], b.results["tasks"][t]["metrics"][m]["value"]))
            if any(not isinstance(v, (int, float)) for v in used[-1]):
                return None
        if not pairs:
            return None
        for run, col in ((a, 0), (b, 1)):
            group_value = ((run.results["groups"][group].get("metrics") or {}).get(metric) or {}).get("value")
            if group_value is None or abs(sum(u[col] for u in used) / len(used) - group_value) > 1e-9:
                return None
        return paired_mean_ci(pairs, seed)

    def _languages_text(self, col: Column, columns: Sequence[Column], lookup: dict, model: str, iv: str) -> str:
        """"12/17; 5 by CI": in how many of the table's per-language columns the row beats its `none` row, and in
        how many of those the paired 95% CI of Δ excludes 0 (the cross-lingual claim is per language)."""
        if iv == REFERENCE:
            return "ref"
        better = by_ci = unpaired = n = 0
        for c in columns:
            if c.show != "value" or c.metric != col.metric or c.task == col.task:
                continue
            cell, ref = lookup.get((model, iv, c.task, c.metric)), lookup.get((model, REFERENCE, c.task, c.metric))
            if cell is None or ref is None or cell.value is None or ref.value is None:
                continue
            n += 1
            if (cell.value < ref.value) if lower_is_better(c.metric) else (cell.value > ref.value):
                better += 1
                paired = self.paired(cell, ref)
                unpaired += paired is None
                by_ci += bool(paired is not None and paired.delta_significant)
        if not n:
            return ""
        return f"{better}/{n}" + ("" if unpaired else f"; {by_ci} by CI")  # no CI claim without per-prompt values

    @staticmethod
    def _cell_text(col: Column, cell: Any, ref: Any, iv: str, daggers: dict, paired: Paired | None = None) -> str:
        if cell is None:
            return ""
        d = decimals(col.metric)
        if col.show in PAIRED_SHOWS:
            if iv == REFERENCE:
                return "ref"
            if ref is None:
                return ""
            if col.show == "delta_pct":
                return _delta_pct(ref.value, cell.value, paired)
            if col.show == "reduction":
                text = _reduction(ref.value, cell.value)
                if paired is None or paired.ratio_ci is None:
                    return text
                lo, hi = paired.ratio_ci
                return (f"**{text}**" if paired.ratio_significant else text) + f" [{lo:.2f}, {hi:.2f}]"
            text = f"{cell.value - ref.value:+.{d}f}"
            if paired is None or paired.delta_ci is None:
                return text
            lo, hi = paired.delta_ci
            return (f"**{text}**" if paired.delta_significant else text) + f" [{lo:+.{d}f}, {hi:+.{d}f}]"
        text = _fmt(cell.value, d)
        lo, hi = as_number(cell.ci_lo), as_number(cell.ci_hi)
        if col.show == "ci" and lo is not None and hi is not None:
            text += f" [{_fmt(lo, d)}, {_fmt(hi, d)}]"
        if cell.lang_ok is False:
            text += DAGGER
            daggers[(cell.task, cell.lang if isinstance(cell.lang, str) else cell.task)] = None
        return text

    # -- sections -----------------------------------------------------------------------------------------------
    def sections(self) -> list[tuple[str, list[Column], str]]:
        """(title, columns, intro) of every section, in print order (``sections.py``)."""
        return self.layout.all()

    def rendered(self) -> list[tuple[str, str, list[Table]]]:
        return [(title, intro, self.table(cols)) for title, cols, intro in self.sections()]

    def frontiers(self, metric: str | None = None) -> list[Frontier]:
        """Matched-cost tables of every (toxicity task, cost task) pair on which some method was swept, one per
        toxicity metric (only ``metric``'s when given: the Summary and the plots headline the toxic fraction)."""
        if not hasattr(self, "_frontiers"):
            self._frontiers = frontiers(self.collection.runs, self.layout.tasks("toxicity", multilingual=False),
                                        self.layout.tasks("perplexity"), costs=self.costs)
        return [fr for fr in self._frontiers if metric is None or fr.metric == metric]

    def markdown(self) -> str:
        """The whole board as Markdown (``markdown.py``)."""
        return render_markdown(self)

    # -- exports ------------------------------------------------------------------------------------------------
    def long_table(self) -> pd.DataFrame:
        return self.cells.sort_values(["model", "intervention", "task", "metric"], kind="stable").reset_index(drop=True)

    def to_json(self) -> dict[str, Any]:
        cells = self.long_table().astype(object).where(self.long_table().notna(), None)
        return {"title": self.title, "cells": cells.to_dict(orient="records"),
                "protocols": {k: self.protocols[k] for k in sorted(self.protocols)},
                "skipped": [{"run": n, "reason": r} for n, r in self.collection.skipped]}


def build_leaderboard(runs: Iterable[str | Path], strict: bool = False, title: str = "Leaderboard",
                      order: Sequence[str] = (), warn: bool = True, costs: Sequence[float] = TARGET_COSTS
                      ) -> Leaderboard:
    """Collect run dirs (or folders of them) and tabulate them; see ``Leaderboard.markdown``."""
    return Leaderboard(collect(runs, warn=warn), strict=strict, title=title, order=order, costs=costs)


def write_leaderboard(lb: Leaderboard, out: str | Path, csv: bool = False, json_: bool = False) -> list[Path]:
    """Write ``out`` (Markdown) and, beside it, the CSV / JSON exports; returns the paths, the Markdown first.
    Plots are the caller's (harness/plots.py), so tables never depend on drawing."""
    out = Path(out)
    if not out.suffix:
        out = out.with_suffix(".md")
    written = [out]
    atomic_write_text(out, lb.markdown())
    if csv:
        p = out.with_suffix(".csv")
        atomic_write_text(p, lb.long_table().to_csv(index=False))
        written.append(p)
    if json_:
        p = out.with_suffix(".json")
        atomic_write_json(p, lb.to_json())
        written.append(p)
    return written
