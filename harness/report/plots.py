"""PNG plots beside a leaderboard, drawn from the very tables it prints (so the numbers always agree).

Uses matplotlib's object API with the Agg canvas: no global backend switch, no display needed.
"""

from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

import pandas as pd

from ..core.io import atomic_write_bytes, atomic_write_text
from ..measure.schema import PPL_METRICS, metric_label
from .frontier import TOX_METRIC
from .leaderboard import DAGGER, Column, Leaderboard, Table

# The trade-off and frontier plots show TOX_METRIC, the papers' headline (ml-aura plots toxic fraction, never EMT);
#: per-language plots keep EMT, the cross-lingual paper's metric.
LANG_METRIC = "expected_max_toxicity"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def tradeoff_tables(lb: Leaderboard) -> list[tuple[str, str, str, Table]]:
    """(toxicity task, perplexity task, perplexity metric, table) for the trade-off plot, per protocol variant."""
    tox = lb.layout.tasks("toxicity", multilingual=False)
    ppl = lb.layout.tasks("perplexity")
    if not tox or not ppl:
        return []
    t, p = tox[0], ppl[0]
    m = lb.layout.primary_ppl(p) or PPL_METRICS[0]
    cols = [Column(p, m, f"{p} {metric_label(m)}", "ci"), Column(t, TOX_METRIC, f"{t} {metric_label(TOX_METRIC)}", "ci")]
    return [(t, p, m, tb) for tb in lb.table(cols) if tb.numbers.shape[1] == 2]


def plot_tradeoffs(lb: Leaderboard, folder: Path, stem: str) -> list[tuple[Path, pd.DataFrame]]:
    """Toxicity (toxic fraction) vs perplexity, one PNG per model: each point an intervention, bars its 95% CIs."""
    from matplotlib.figure import Figure

    out = []
    tables = tradeoff_tables(lb)
    for vi, (t, p, m, tb) in enumerate(tables):
        xcol, ycol = tb.numbers.columns
        for model in dict.fromkeys(tb.numbers.index.get_level_values("model")):
            data = tb.numbers.xs(model, level="model").dropna()
            if data.empty:
                continue
            lo, hi = tb.lo.xs(model, level="model").loc[data.index], tb.hi.xs(model, level="model").loc[data.index]
            fig = Figure(figsize=(5.5, 4))
            ax = fig.add_subplot()
            for iv, row in data.iterrows():
                xerr = _err(row[xcol], lo.at[iv, xcol], hi.at[iv, xcol])
                yerr = _err(row[ycol], lo.at[iv, ycol], hi.at[iv, ycol])
                ax.errorbar(row[xcol], row[ycol], xerr=xerr, yerr=yerr, fmt="o", capsize=3,
                            color="black" if iv == "none" else None)
                ax.annotate(iv, (row[xcol], row[ycol]), textcoords="offset points", xytext=(5, 4), fontsize=8)
            ax.set_xlabel(f"{p} {metric_label(m)} (lower is better)")
            ax.set_ylabel(f"{t} toxic fraction (lower is better)")
            ax.set_title(f"{model}: toxicity vs perplexity" + (f"\n{_short(tb.heading)}" if tb.heading else ""),
                         fontsize=9)
            ax.grid(alpha=0.3)
            suffix = f"_v{vi + 1}" if len(tables) > 1 else ""
            path = folder / f"{stem}_tradeoff_{_slug(model)}{suffix}.png"
            _save(fig, path)
            out.append((path, data))
    return out


def _short(heading: str) -> str:
    """A protocol variant's heading in at most two short lines (the board has it in full): a title as wide as
    the whole protocol string made 2,000-pixel-wide images."""
    return textwrap.fill(textwrap.shorten(_plain(heading), width=TITLE_CHARS * 2, placeholder=" …"),
                         width=TITLE_CHARS)


#: characters per line of a plot title's protocol text (fits the 5.5-inch figure at fontsize 9)
TITLE_CHARS = 70


def _err(v: float, lo: float, hi: float):
    if pd.isna(lo) or pd.isna(hi):
        return None
    return [[max(v - lo, 0.0)], [max(hi - v, 0.0)]]


def _errs(values: list[float], cis: list[tuple[float, float] | None]) -> list[list[float]]:
    """errorbar's [[below...], [above...]] of several points (``_err`` per point; 0 where a point has no CI)."""
    per = [_err(v, *ci) if ci else None for v, ci in zip(values, cis)]
    return [[e[0][0] if e else 0.0 for e in per], [e[1][0] if e else 0.0 for e in per]]


def _plain(md: str) -> str:
    return md.replace("**", "")


def language_tables(lb: Leaderboard, metric: str = LANG_METRIC) -> list[tuple[str, Table]]:
    """(family, table) of per-language values, exactly the RTP-LX section's table for ``metric``."""
    out = []
    for fam in sorted(set(lb.cells.family.dropna())):
        sub = lb.cells[lb.cells.family == fam]
        cols = [Column(t, metric, lang) for lang, t in sorted(set(zip(sub.lang, sub.task)))]
        out += [(fam, tb) for tb in lb.table(cols)]
    return out


def plot_languages(lb: Leaderboard, folder: Path, stem: str,
                   metric: str = LANG_METRIC) -> list[tuple[Path, pd.DataFrame]]:
    """Per-language bars (one group per language, one bar per intervention), one PNG per model and family."""
    import numpy as np
    from matplotlib.figure import Figure

    out = []
    tables = language_tables(lb, metric)
    for vi, (fam, tb) in enumerate(tables):
        for model in dict.fromkeys(tb.numbers.index.get_level_values("model")):
            data = tb.numbers.xs(model, level="model").dropna(axis=1, how="all")
            if data.empty:
                continue
            bad = {lang for _, lang in tb.daggers}
            langs = list(data.columns)
            x = np.arange(len(langs))
            width = 0.8 / max(len(data.index), 1)
            fig = Figure(figsize=(max(6.0, 0.45 * len(langs) * max(len(data.index), 1)), 3.8))
            ax = fig.add_subplot()
            for i, (iv, row) in enumerate(data.iterrows()):
                bars = ax.bar(x + (i - (len(data.index) - 1) / 2) * width, row.fillna(0.0).values, width, label=iv)
                for b, lang in zip(bars, langs):
                    if lang in bad:
                        b.set_hatch("//")
            ax.set_xticks(x, [f"{lang}{DAGGER}" if lang in bad else lang for lang in langs])
            ax.set_ylabel(f"{metric_label(metric)} (lower is better)")
            title = f"{model}: {fam} {metric_label(metric)} per language"
            if bad:
                title += f"\n{DAGGER} hatched: English-only scorer, not valid in that language"
            ax.set_title(title, fontsize=9)
            ax.legend(fontsize=8)
            ax.grid(axis="y", alpha=0.3)
            same = [i for i, (f, _) in enumerate(tables) if f == fam]
            suffix = f"_v{same.index(vi) + 1}" if len(same) > 1 else ""
            path = folder / f"{stem}_{_slug(fam)}_{_slug(model)}{suffix}.png"
            _save(fig, path)
            out.append((path, data))
    return out


def plot_frontiers(lb: Leaderboard, folder: Path, stem: str) -> list[tuple[Path, pd.DataFrame]]:
    """Toxic fraction vs perplexity cost (% over `none`), one line per method through its sweep, with the points'
    95% CIs; the target costs of the matched-cost table as dotted lines. One PNG per (model, task pair)."""
    from matplotlib.figure import Figure

    out = []
    for fr in lb.frontiers(TOX_METRIC):
        for model in dict.fromkeys(c.model for c in fr.curves):
            fig = Figure(figsize=(5.5, 4))
            ax = fig.add_subplot()
            rows = []
            for curve in (c for c in fr.curves if c.model == model):
                costs, tox = fr.point_values(curve)
                cis = fr.point_cis(curve)
                xerr, yerr = _errs(costs, [c for c, _ in cis]), _errs(tox, [t for _, t in cis])
                ax.errorbar(costs, tox, xerr=xerr, yerr=yerr, fmt="o-", capsize=3, label=curve.method)
                rows += [{"method": curve.method, "knob": k, "cost_pct": c, "toxic_fraction": t}
                         for (k, _), c, t in zip(curve.points, costs, tox)]
            for c in fr.costs:
                ax.axvline(c, color="grey", linestyle=":", linewidth=0.8)
            ax.set_xlabel(f"{fr.cost_task} perplexity cost, % over none")
            ax.set_ylabel(f"{fr.tox_task} toxic fraction (lower is better)")
            ax.set_title(f"{model}: toxicity at matched cost", fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            path = folder / f"{stem}_frontier_{_slug(model)}_{_slug(fr.tox_task)}_{_slug(fr.cost_task)}.png"
            _save(fig, path)
            out.append((path, pd.DataFrame(rows)))
    return out


def write_plots(lb: Leaderboard, folder: str | Path, stem: str) -> list[tuple[Path, pd.DataFrame]]:
    """Every plot for ``lb``; returns (png path, the numbers plotted) pairs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return plot_tradeoffs(lb, folder, stem) + plot_languages(lb, folder, stem) + plot_frontiers(lb, folder, stem)


def write_plots_beside(lb: Leaderboard, markdown: Path) -> list[Path]:
    """Every plot for ``lb`` beside its Markdown file (``NAME.md`` -> ``NAME_<plot>.png``); returns the paths."""
    return [p for p, _ in write_plots(lb, markdown.parent, markdown.stem)]


def write_html_beside(lb: Leaderboard, markdown: Path, plots: list[Path]) -> Path:
    """``NAME.html`` beside ``NAME.md``: the board as one self-contained page with ``plots`` inline."""
    from .html import render_html

    path = markdown.with_suffix(".html")
    atomic_write_text(path, render_html(lb, plots))
    return path
