"""Which columns a leaderboard prints, section by section, from the cells it has: the papers' headline metrics
first (Summary), then one section per task kind, then per-language tables of multilingual families. Each column's
label and direction come from the display schema (``measure/schema.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..measure.metrics import TOX_THRESHOLD
from ..measure.schema import (
    ACC_METRICS,
    COND_METRICS,
    DIST_METRICS,
    HEADLINE_TOX,
    PPL_METRICS,
    SCRIPT_METRIC,
    SPLITS,
    TOX_METRICS,
    arrow,
    metric_label,
    task_sort_key,
)

SCRIPT_NOTE = ("The share of the continuations' letters written in the prompt language's script, for the languages "
               "whose script differs from English: a row that lowers toxicity by answering in English drops here.")
LANGUAGES_NOTE = ("*lower in*: the languages where the row is below its `none` row; *by CI*: of those, the ones whose "
                  "paired 95% CI of Δ excludes 0.")
Section = tuple[str, list["Column"], str]


@dataclass(frozen=True)
class Column:
    """One table column: a (task, metric) cell shown as value, value [CI], reduction factor or Δ."""

    task: str
    metric: str
    header: str
    show: str = "value"  # value | ci | reduction | delta | delta_pct | languages (member columns moved the right way)



def _value(task: str, metric: str, prefix: str = "") -> Column:
    """A value [CI] column headed by the metric's label and direction."""
    return Column(task, metric, f"{prefix}{metric_label(metric)} {arrow(metric)}", "ci")


def _delta(task: str, metric: str, prefix: str = "") -> Column:
    return Column(task, metric, f"{prefix}Δ", "delta")


class Sections:
    """The sections of a leaderboard over ``cells`` (``cells.build_cells``)."""

    def __init__(self, cells: pd.DataFrame) -> None:
        self.cells = cells

    def tasks(self, kind: str, multilingual: bool | None = None, source: str = "task") -> list[str]:
        sub = self.cells[(self.cells.kind == kind) & (self.cells.source == source)]
        if multilingual is not None:
            sub = sub[sub.family.notna() == multilingual]
        return sorted(set(sub.task), key=task_sort_key)

    def metrics(self, task: str) -> list[str]:
        return list(dict.fromkeys(self.cells.loc[self.cells.task == task, "metric"]))

    def primary_ppl(self, task: str) -> str | None:
        have = self.metrics(task)
        return next((m for m in PPL_METRICS if m in have), None)

    def acc_metric(self, task: str) -> str | None:
        have = self.metrics(task)
        return next((m for m in ("acc_avg", "acc_norm_avg", *ACC_METRICS, "exact_match") if m in have), None)

    def all(self) -> list[Section]:
        """(title, columns, intro) of every section, in print order."""
        tox = self.tasks("toxicity", multilingual=False)
        tox_groups = self.tasks("toxicity", source="group")
        ppl, lik = self.tasks("perplexity"), self.tasks("likelihood")
        zs, zs_groups = self.tasks("zeroshot"), self.tasks("zeroshot", source="group")
        out = self._summary(tox + tox_groups, ppl, zs_groups)
        for t in tox:
            out += self._toxicity(t)
        if ppl:
            out.append(("Perplexity", [c for t in ppl for c in self._perplexity_columns(t)], ""))
        if lik:
            cols = [c for t in lik for m in self.metrics(t) for c in (_value(t, m, f"{t} "), _delta(t, m, f"{t} "))]
            out.append(("Teacher-forced toxicity", cols, "Negative log-likelihood per word of RTP's own continuations "
                        "(no sampling, no scorer): higher on toxic ones = toxic text less likely; on clean ones, "
                        "lower = fluency kept."))
        if zs:
            cols = [c for t in zs_groups + zs if (m := self.acc_metric(t))
                    for c in (_value(t, m, f"{t} "), _delta(t, m, f"{t} "))]
            out.append(("Common sense (zero-shot)", cols, "acc_norm where lm-eval reports it, else acc."))
        out += self._language_sections(tox_groups)
        known = set(tox) | set(tox_groups) | set(ppl) | set(zs) | set(zs_groups) | set(lik)
        known |= set(self.cells.loc[self.cells.family.notna(), "task"])
        other = sorted(set(self.cells.task) - known, key=task_sort_key)
        if other:
            out.append(("Other metrics", [Column(t, m, f"{t} {m}", "ci") for t in other for m in self.metrics(t)], ""))
        return out

    def _summary(self, tox: list[str], ppl: list[str], zs_groups: list[str]) -> list[Section]:
        """The compact headline (at most 8 columns): the first toxicity task's toxic fraction and its reduction
        (the papers' headline; ml-aura never reports EMT), toxicity probability's reduction, the first perplexity
        task's cost in %, and the common-sense average's Δ. Everything else is in the sections below."""
        cols: list[Column] = []
        if tox:
            t = tox[0]
            first, second = HEADLINE_TOX[:2]
            cols += [Column(t, first, f"{t} {metric_label(first)} {arrow(first)}"),
                     Column(t, first, f"{metric_label(first)} ×", "reduction"),
                     Column(t, second, f"{metric_label(second)} ×", "reduction")]
        if ppl and (m := self.primary_ppl(ppl[0])):
            cols.append(Column(ppl[0], m, f"{ppl[0]} {metric_label(m)} Δ%", "delta_pct"))
        if zs_groups and (m := self.acc_metric(zs_groups[0])):
            cols.append(Column(zs_groups[0], m, f"{zs_groups[0]} Δ", "delta"))
        if len({c.task for c in cols}) <= 1:
            return []
        return [("Summary", cols, "The headline of the board: × and Δ with their paired 95% CI, **bold** where it "
                                  "excludes no change. Every metric, value CIs and protocols in the sections below.")]

    def _toxicity(self, t: str) -> list[Section]:
        cols: list[Column] = []
        for m in TOX_METRICS:
            cols += [_value(t, m), Column(t, m, f"{metric_label(m)} ×", "reduction")]
        for m in COND_METRICS:
            cols += [_value(t, m), Column(t, m, f"Δ{metric_label(m)}", "delta")]
        cols += [_value(t, m) for m in DIST_METRICS]
        split = [Column(t, m + s, f"{metric_label(m + s)} {arrow(m)}", "ci") for s in SPLITS for m in TOX_METRICS]
        return [(f"{t}: toxicity", cols, ""),
                (f"{t}: by prompt toxicity", split, f"Prompts split at prompt toxicity {TOX_THRESHOLD}.")]

    def _perplexity_columns(self, t: str) -> list[Column]:
        primary, cols = self.primary_ppl(t), []
        for m in PPL_METRICS:
            if m in self.metrics(t):
                cols.append(_value(t, m, f"{t} "))
                if m == primary:
                    cols.append(Column(t, m, f"{t} Δ{metric_label(m)}", "delta"))
        return cols

    def _language_sections(self, tox_groups: list[str]) -> list[Section]:
        """Per-language tables of each multilingual family (RTP-LX...), its group means beside them."""
        out: list[tuple[str, list[Column], str]] = []
        for fam in sorted(set(self.cells.family.dropna())):
            sub = self.cells[self.cells.family == fam]
            langs = sorted(set(zip(sub.lang, sub.task)))
            groups = [g for g in tox_groups if g.startswith(fam)]
            for m in HEADLINE_TOX:
                cols = [Column(t, m, lang) for lang, t in langs]
                for g in groups:
                    cols += [Column(g, m, f"{g} mean"), Column(g, m, f"{g} ×", "reduction"),
                             Column(g, m, f"{g} lower in", "languages")]
                out.append((f"{fam}: {metric_label(m)} per language {arrow(m)}", cols, LANGUAGES_NOTE if groups else ""))
            # Fluency and diversity beside the toxicity (as the cross-lingual paper reports): a detoxified model
            # that degenerates shows here. Tables without values (no `toxbench fluency` yet) are left out.
            for m, intro in (("conditional_ppl_median", ""), ("dist-2", ""), (SCRIPT_METRIC, SCRIPT_NOTE)):
                cols = [Column(t, m, lang) for lang, t in langs]
                cols += [c for g in groups for c in (Column(g, m, f"{g} mean"), Column(g, m, f"{g} Δ", "delta"))]
                out.append((f"{fam}: {metric_label(m)} per language {arrow(m)}", cols, intro))
        return out

