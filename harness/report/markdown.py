"""A leaderboard as Markdown: the legend, each section's tables, one protocol footnote per table (tasks with the
same settings merged), the dagger note for scores outside a scorer's languages, notes and skipped runs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..core.io import canonical_json
from ..measure.schema import task_sort_key
from .frontier import HEADLINE_COST, TOX_METRIC, Frontier
from .protocol_text import describe_data_hash, describe_protocol, describe_scorer

if TYPE_CHECKING:
    from .leaderboard import Leaderboard, Table

DAGGER = "†"
def compact_summary(lb: Leaderboard) -> str:
    """The board's Summary tables as Markdown (what a terminal shows when files are written)."""
    for title, _, tables in lb.rendered():
        if title == "Summary":
            return "\n\n".join([tb.markdown() for tb in tables] + matched_cost_summary(lb)).rstrip()
    first = next((tables for _, _, tables in lb.rendered() if tables), [])
    return "\n\n".join(([first[0].markdown()] if first else []) + matched_cost_summary(lb)).rstrip()


def matched_cost_lead(fr: Frontier) -> str:
    return (f"At matched cost: {fr.tox_task} {fr.name} at +{HEADLINE_COST:g}% {fr.cost_task} perplexity, per "
            "method (every cost, and each method's points, in the matched-cost section below).")


def matched_cost_summary(lb: Leaderboard) -> list[str]:
    """The Summary's matched-cost figure of each frontier: a lead line and the per-method table at +10%."""
    out = []
    for fr in lb.frontiers(TOX_METRIC):
        out += [matched_cost_lead(fr), fr.markdown(fr.headline())]
    return out


def legend(nruns: int) -> str:
    """The line under a board's title (Markdown and HTML)."""
    return (f"{nruns} run{'s' if nruns != 1 else ''}; a row per (model, intervention). ↓ lower is better, "
            "↑ higher is better. × = reduction factor against the same model's `none` row (none ÷ this); "
            "Δ = this − none; `ref` marks the `none` row. Brackets: 95% CI; beside × and Δ, the *paired* CI "
            "(prompts resampled jointly for the variant and `none`), **bold** when it excludes no change. "
            "Tables never mix protocols: when runs differ, each protocol variant gets its own table.")


FRONTIER_NOTE = ("Each method swept over its knob (in brackets), read off at the same perplexity cost over `none` by "
                 "linear interpolation between its measured points, never beyond the strongest one (*out of range*). "
                 "CIs: paired bootstrap, prompts and cost documents resampled jointly for every point of every curve; "
                 "*vs best*: the difference from the lowest method at that cost, *vs aura*: from AurA's curve (the "
                 "papers' reference), each **bold** when its CI excludes 0.")


def protocol_lines(lb: Leaderboard, used: Sequence[tuple[str, str]]) -> list[str]:
    """One line per protocol, tasks with the same settings (bar the data) merged."""
    merged: dict[str, list[tuple[str, str]]] = {}
    for task, pid in sorted(set(used), key=lambda x: task_sort_key(x[0])):
        proto = lb.protocols[pid]
        if "group" in proto:
            continue
        shared = {k: v for k, v in proto.items() if k not in ("data_hash", "lang", "scorer_language_ok")}
        merged.setdefault(canonical_json(shared), []).append((task, pid))
    lines = []
    for items in merged.values():
        tasks = [t for t, _ in items]
        proto = lb.protocols[items[0][1]]
        ns = sorted({int(n) for t, p in items for n in lb.cells.loc[(lb.cells.task == t)
                     & (lb.cells.protocol == p), "n"].dropna()})
        name = f"**{tasks[0]}**" if len(tasks) == 1 else f"**{', '.join(tasks)}** ({len(tasks)} tasks)"
        n = "" if not ns else (f" (n={ns[0]})" if len(ns) == 1 else f" (n={ns[0]}–{ns[-1]})")
        parts = [describe_protocol(proto)]
        hashes = [(t, lb.protocols[p].get("data_hash")) for t, p in items if lb.protocols[p].get("data_hash")]
        if len(hashes) == 1:
            parts.append(f"data {describe_data_hash(hashes[0][1], 12)}")
        elif hashes:
            parts.append("data " + ", ".join(f"{t} {describe_data_hash(h, 8)}" for t, h in hashes))
        lines.append(f"- {name}{n}: " + "; ".join(p for p in parts if p))
    return lines

def render_markdown(lb: Leaderboard) -> str:
    """Title, legend, every section's tables with their protocol footnotes, notes and skipped runs."""
    out = [f"# {lb.title}", ""]
    nruns = len(lb.collection.runs)
    out.append(legend(nruns))
    out.append("")
    for title, intro, tables in lb.rendered():
        if not tables:
            continue
        out += [f"## {title}", ""]
        if intro:
            out += [intro, ""]
        for tb in tables:
            if tb.heading:
                out += [tb.heading, ""]
            out += [tb.markdown(), ""]
            if title == "Summary" and tb is tables[-1]:
                out += [x + "\n" for x in matched_cost_summary(lb)]
            if title != "Summary":
                lines = protocol_lines(lb, tb.protocols)
                if lines:
                    out += ["Protocol:", "", *lines, ""]
            if tb.daggers:
                out += [dagger_note(lb, tb), ""]
    for fr in lb.frontiers():
        out += [f"## Matched cost: {fr.tox_task} {fr.name} at +{', +'.join(f'{c:g}' for c in fr.costs)}% "
                f"{fr.cost_task} perplexity", "", FRONTIER_NOTE, "", fr.markdown(), ""]
    if lb.notes:
        out += ["## Notes", "", *[f"- {n}" for n in lb.notes], ""]
    if lb.collection.skipped:
        out += ["Skipped: " + "; ".join(f"`{n}` ({why})" for n, why in lb.collection.skipped) + ".", ""]
    return "\n".join(out).rstrip() + "\n"

def _expand(lb: Leaderboard, pids: Iterable[str]) -> list[str]:
    """Protocol ids with each group protocol replaced by its members'."""
    out = []
    for p in pids:
        proto = lb.protocols[p]
        out += list(proto["members"].values()) if "group" in proto else [p]
    return list(dict.fromkeys(out))

def dagger_note(lb: Leaderboard, tb: Table) -> str:
    bad = [p for p in _expand(lb, (p for _, p in tb.protocols))
           if lb.protocols[p].get("scorer_language_ok") is False]
    scorers = "; ".join(sorted({describe_scorer(lb.protocols[p].get("scorer")) for p in bad}))
    langs = [lang for t, lang in tb.daggers if lang != t]
    groups = [t for t, lang in tb.daggers if lang == t]
    if not langs:  # only means are shown: name the languages they average over
        langs = sorted({str(lb.protocols[p].get("lang")) for p in bad})
        return (f"{DAGGER} {', '.join(groups)} include(s) {', '.join(langs)}, scored by an English-only scorer "
                f"({scorers}), where it is not a valid toxicity measurement.")
    tail = f", and the means over them ({', '.join(groups)})" if groups else ""
    return (f"{DAGGER} scored by an English-only scorer ({scorers}) in {', '.join(langs)}{tail}: "
            "not a valid toxicity measurement in these languages.")
