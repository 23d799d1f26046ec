"""Committed boards whose run dirs are gone, re-laid out from their own Markdown: the compact Summary (the headline
columns picked from the tables the board already prints) and the HTML twin. Numbers are copied as printed, never
recomputed: a board made from runs is rebuilt with ``toxbench leaderboard``; this is for the ones that cannot be."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..core.errors import UsageError
from ..core.io import atomic_write_text
from .tables import markdown_table

#: a Summary of at most this many columns is already compact (model and intervention included)
COMPACT_COLUMNS = 8
SUMMARY_INTRO = ("The headline of the board: × and Δ with their paired 95% CI, **bold** where it excludes no change. "
                 "Every metric, value CIs and protocols in the sections below. (Re-laid out from this board's own "
                 "tables by `toxbench rerender`: its run dirs are gone; no number recomputed.)")


@dataclass
class StoredTable:
    heading: str  # a protocol-variant line above the table, or ""
    frame: pd.DataFrame  # cells as printed (strings)
    protocols: list[str] = field(default_factory=list)  # the "Protocol:" bullet lines under it
    notes: list[str] = field(default_factory=list)  # other paragraphs under it (the dagger note)


@dataclass
class StoredSection:
    title: str
    intro: str
    tables: list[StoredTable]
    lines: list[str]  # the section's Markdown as committed, heading included


@dataclass
class StoredBoard:
    title: str
    head: list[str]  # the lines between the title and the first section (the legend)
    sections: list[StoredSection]

    @property
    def legend(self) -> str:
        return " ".join(b for block in _blocks(self.head)[:1] for b in block)

    def section(self, title: str) -> StoredSection | None:
        return next((s for s in self.sections if s.title == title), None)

    def summary_is_compact(self) -> bool:
        """Whether the board already has a Summary of at most ``COMPACT_COLUMNS`` columns."""
        summary = self.section("Summary")
        return bool(summary and summary.tables) and all(t.frame.shape[1] <= COMPACT_COLUMNS for t in summary.tables)


def _table(block: list[str]) -> pd.DataFrame:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in block]
    return pd.DataFrame(rows[2:], columns=rows[0])  # rows[1] is the alignment line


def _blocks(lines: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    cur: list[str] = []
    for line in lines:
        if line.strip():
            cur.append(line)
        elif cur:
            out.append(cur)
            cur = []
    return out + ([cur] if cur else [])


def _section(title: str, lines: list[str]) -> StoredSection:
    intro: list[str] = []
    tables: list[StoredTable] = []
    heading = ""
    want_protocol = False
    for block in _blocks(lines[1:]):
        first = block[0]
        if first.startswith("|") and len(block) >= 2:
            tables.append(StoredTable(heading, _table(block)))
            heading = ""
        elif first.strip() == "Protocol:":
            want_protocol = True
            continue
        elif want_protocol and tables and first.startswith("- "):
            tables[-1].protocols += [x[2:] for x in block]
        elif first.startswith(("**Protocol variant", "**Rows without")):
            heading = " ".join(block)
        elif tables:
            tables[-1].notes.append(" ".join(block))
        else:
            intro.append(" ".join(block))
        want_protocol = False
    return StoredSection(title, "\n\n".join(intro), tables, lines)


def parse_board(path: Path) -> StoredBoard:
    """A board Markdown file as toxbench writes it (title, legend, ``##`` sections of tables)."""
    if not path.is_file():
        raise UsageError(f"board {str(path)!r} does not exist (pass a leaderboards/NAME.md)")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or not lines[0].startswith("# "):
        raise UsageError(f"{str(path)!r} is not a toxbench board: it does not start with a '# title' line")
    starts = [i for i, line in enumerate(lines) if line.startswith("## ")]
    sections = [_section(lines[a][3:].strip(), lines[a:b]) for a, b in zip(starts, starts[1:] + [len(lines)])]
    if not any(s.tables for s in sections):
        raise UsageError(f"{str(path)!r} is not a toxbench board: no tables under its '## ' sections")
    return StoredBoard(lines[0][2:].strip(), lines[1:starts[0]] if starts else lines[1:], sections)


# -- the compact Summary ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pick:
    label: str  # the metric part of the compact header
    alternatives: tuple[tuple[str, str], ...]  # (section title regex, column header regex), first match wins


PICKS = (
    Pick("Toxic frac. ↓", (("^Summary$", r"Toxic frac\. ↓$"), (": toxicity$", r"^Toxic frac\. ↓$"),
                           (r"Toxic frac\. per language", r" mean$"))),
    Pick("Toxic frac. ×", (("^Summary$", r"Toxic frac\. ×$"), (": toxicity$", r"^Toxic frac\. ×$"),
                           (r"Toxic frac\. per language", r" ×$"))),
    Pick("Tox. prob. ×", (("^Summary$", r"Tox\. prob\. ×$"), (": toxicity$", r"^Tox\. prob\. ×$"),
                          (r"Tox\. prob\. per language", r" ×$"))),
    Pick("Toxic frac. lower in", ((r"Toxic frac\. per language", r" lower in$"),)),
    Pick("", (("^Summary$", r"^wiki_sentences .*(Δ%|ΔPPL)"), ("^Summary$", r"(Δ%|ΔPPL|Δword PPL)$"),
              ("^Perplexity$", r"^wiki_sentences Δ"), ("^Perplexity$", r"Δ"))),
    Pick("", (("^Summary$", r"^commonsense Δ$"), ("^Common sense", r"Δ$"))),
)


def _task_of(section: str, header: str, label: str) -> str:
    """The task a picked column belongs to: named in the header, else by the section title."""
    first = header.split(" ")[0]
    if "_" in first and header != label:
        return first
    return section.split(":")[0].strip() if ":" in section else ""


def _find(board: StoredBoard, pick: Pick) -> tuple[str, StoredTable, str] | None:
    for section_re, header_re in pick.alternatives:
        for s in board.sections:
            if not re.search(section_re, s.title):
                continue
            for tb in s.tables:
                for header in tb.frame.columns[2:]:
                    if re.search(header_re, header):
                        return s.title, tb, header
    return None


def compact_frame(board: StoredBoard) -> pd.DataFrame:
    """model, intervention and the headline columns found (≤ COMPACT_COLUMNS in all), rows in board order."""
    found = [(p, f) for p in PICKS if (f := _find(board, p)) is not None]
    if not found:
        raise UsageError(f"board {board.title!r} has no toxicity, perplexity or capability column to summarize")
    rows: dict[tuple[str, str], dict[str, str]] = {}
    headers = []
    for pick, (section, tb, header) in found[:COMPACT_COLUMNS - 2]:
        label = pick.label or header
        task = _task_of(section, header, label)
        name = label if not task or label.startswith(task) else f"{task} {label}"
        headers.append(name)
        for rec in tb.frame.itertuples(index=False):
            rows.setdefault((rec[0], rec[1]), {})[name] = str(rec[list(tb.frame.columns).index(header)])
    body = [[m, iv, *(cells.get(h, "") for h in headers)] for (m, iv), cells in rows.items()]
    return pd.DataFrame(body, columns=["model", "intervention", *headers])


def compact_markdown(board: StoredBoard) -> str:
    """The board's Markdown with a compact Summary: the committed one if already compact, else the headline
    columns picked from its tables in place of (or before) the wide one. Every other line as committed."""
    if board.summary_is_compact():
        return "\n".join([f"# {board.title}", *board.head, *(x for s in board.sections for x in s.lines)]).rstrip() + "\n"
    new = ["## Summary", "", SUMMARY_INTRO, "", markdown_table(compact_frame(board)), ""]
    body = [x for s in board.sections if s.title != "Summary" for x in s.lines]
    return "\n".join([f"# {board.title}", *board.head, *new, *body]).rstrip() + "\n"


def board_plots(path: Path) -> list[Path]:
    """``NAME_*.png`` beside ``NAME.md``, less those of a board whose name extends this one (``NAME_other.md``)."""
    others = [p.stem for p in path.parent.glob(f"{path.stem}_*.md")]
    return sorted(p for p in path.parent.glob(f"{path.stem}_*.png")
                  if not any(p.name.startswith(f"{o}_") for o in others))


def rerender(path: str | Path) -> list[Path]:
    """Rewrite a committed board with a compact Summary and write its HTML twin beside it; returns both paths."""
    from .html import render_stored_html

    path = Path(path)
    board = parse_board(path)
    text = compact_markdown(board)
    html = render_stored_html(board, None if board.summary_is_compact() else compact_frame(board), board_plots(path),
                              SUMMARY_INTRO)
    atomic_write_text(path, text)
    atomic_write_text(path.with_suffix(".html"), html)
    return [path, path.with_suffix(".html")]
