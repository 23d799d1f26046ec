"""A board as one self-contained HTML page (no CDN; works from ``file://``): the same tables as the Markdown, with
sortable columns, a row filter, 95% CIs drawn as bars, each table's protocol one click away and the PNG plots
inline. Rendered by Jinja2 from ``templates/board.html.j2``."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .frontier import TOX_METRIC
from .leaderboard import Leaderboard, Table
from .markdown import FRONTIER_NOTE, legend, matched_cost_lead, protocol_lines

TEMPLATES = Path(__file__).with_name("templates")
_NUMBER = re.compile(r"^[*]*([+-]?\d+(?:\.\d+)?)")


def _plain(text: str) -> str:
    """Markdown emphasis and code marks off (Jinja2 escapes the rest)."""
    return re.sub(r"[*`]", "", str(text))


def _sort_key(text: str) -> float | None:
    m = _NUMBER.match(str(text).strip())
    return float(m.group(1)) if m else None


def _bar_column(lo: pd.Series, hi: pd.Series) -> list[tuple[float, float] | None] | None:
    """Each row's CI as (left %, width %) of the column's whole CI range; None when no row has a CI."""
    ok = lo.notna() & hi.notna()
    if not ok.any():
        return None
    a, b = float(lo[ok].min()), float(hi[ok].max())
    span = (b - a) or 1.0
    return [(round(100 * (x - a) / span, 2), round(max(100 * (y - x) / span, 0.5), 2))
            if not (pd.isna(x) or pd.isna(y)) else None for x, y in zip(lo, hi)]


def _bars(tb: Table) -> dict[str, list[tuple[float, float] | None]]:
    """Per value column: each row's CI bar (``_bar_column``)."""
    if tb.lo is None or tb.hi is None:
        return {}
    return {col: bars for col in tb.numbers.columns if (bars := _bar_column(tb.lo[col], tb.hi[col])) is not None}


def _table_view(lb: Leaderboard, tb: Table, title: str) -> dict[str, Any]:
    bars = _bars(tb)
    rows = []
    for i, rec in enumerate(tb.display.itertuples(index=False)):
        cells = []
        for header, text in zip(tb.display.columns, rec):
            num = _sort_key(text) if header not in ("model", "intervention") else None
            bar = bars[header][i] if header in bars else None
            cells.append({"text": _plain(text), "strong": str(text).startswith("**"),
                          "num": None if num is None or math.isnan(num) else num, "bar": bar})
        rows.append({"cells": cells, "ref": rec[1] == "none"})
    lines = protocol_lines(lb, tb.protocols) if title != "Summary" else []
    return {"heading": _plain(tb.heading), "headers": list(tb.display.columns), "rows": rows,
            "protocols": [_plain(x.lstrip("- ")) for x in lines]}


def _frontier_table(df: pd.DataFrame) -> dict[str, Any]:
    rows = [{"cells": [{"text": _plain(v), "strong": str(v).startswith("**"), "num": _sort_key(v) if j > 1 else None,
                        "bar": None} for j, v in enumerate(rec)], "ref": False}
            for rec in df.itertuples(index=False)]
    return {"heading": "", "headers": list(df.columns), "rows": rows, "protocols": []}


def _frontier_view(fr: Any) -> dict[str, Any]:
    return {"title": f"Matched cost: {fr.tox_task} {fr.name} vs {fr.cost_task} perplexity cost",
            "intro": _plain(FRONTIER_NOTE), "tables": [_frontier_table(fr.table())]}


def render_page(title: str, legend_text: str, sections: list[dict[str, Any]], plots: Sequence[Path] = ()) -> str:
    """One HTML page from section views ({title, intro, tables: [{heading, headers, rows, protocols}]})."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]))
    images = [{"data": base64.b64encode(p.read_bytes()).decode("ascii"), "alt": p.stem.replace("_", " ")}
              for p in plots if p.suffix == ".png" and p.is_file()]
    return env.get_template("board.html.j2").render(title=title, legend=_plain(legend_text), sections=sections,
                                                     plots=images)


def render_html(lb: Leaderboard, plots: Sequence[Path] = ()) -> str:
    """The board as one HTML page, ``plots`` (PNG files) embedded."""
    sections = [{"title": title, "intro": _plain(intro), "tables": [_table_view(lb, tb, title) for tb in tables]}
                for title, intro, tables in lb.rendered() if tables]
    for s in sections[:1] if sections and sections[0]["title"] == "Summary" else []:
        s["tables"] += [{**_frontier_table(fr.headline()), "heading": _plain(matched_cost_lead(fr))}
                        for fr in lb.frontiers(TOX_METRIC)]
    sections += [_frontier_view(fr) for fr in lb.frontiers()]
    return render_page(lb.title, legend(len(lb.collection.runs)), sections, plots)


_VALUE_CI = re.compile(r"^([+-]?\d+(?:\.\d+)?)[†]? \[([+-]?\d+(?:\.\d+)?), ([+-]?\d+(?:\.\d+)?)\]$")


def _stored_table_view(frame: pd.DataFrame, heading: str, protocols: list[str], notes: list[str]) -> dict[str, Any]:
    """A committed board's table as printed; value cells "v [lo, hi]" get their CI bars, scaled per column."""
    bars = {}
    for col in frame.columns[2:]:
        cis = [(float(m.group(2)), float(m.group(3))) if (m := _VALUE_CI.match(str(v))) else (None, None)
               for v in frame[col]]
        column = _bar_column(*(pd.Series([c[i] for c in cis], dtype=float) for i in (0, 1)))
        if column is not None:
            bars[col] = column
    rows = []
    for i, rec in enumerate(frame.itertuples(index=False)):
        cells = [{"text": _plain(text), "strong": str(text).startswith("**"), "num": _sort_key(text) if j > 1 else None,
                  "bar": bars[header][i] if header in bars else None}
                 for j, (header, text) in enumerate(zip(frame.columns, rec))]
        rows.append({"cells": cells, "ref": rec[1] == "none"})
    return {"heading": _plain(heading), "headers": list(frame.columns), "rows": rows,
            "protocols": [_plain(x) for x in protocols], "notes": [_plain(x) for x in notes]}


def render_stored_html(board: Any, compact: pd.DataFrame | None, plots: Sequence[Path] = (), intro: str = "") -> str:
    """A committed board (``stored.StoredBoard``) as the same page, ``compact`` (under ``intro``) as its Summary
    when given."""
    sections = []
    if compact is not None:
        sections.append({"title": "Summary", "intro": _plain(intro), "tables": [_stored_table_view(compact, "", [], [])]})
    for s in board.sections:
        if s.tables and not (compact is not None and s.title == "Summary"):
            sections.append({"title": s.title, "intro": _plain(s.intro), "tables": [
                _stored_table_view(t.frame, t.heading, t.protocols, t.notes) for t in s.tables]})
    return render_page(board.title, board.legend, sections, plots)
