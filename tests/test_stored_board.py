"""Issue 26 for boards whose run dirs are gone: `toxbench rerender` re-lays out a committed board from its own
Markdown (compact Summary, HTML twin), copying numbers as printed; and every committed board has both."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from toxbench.harness.cli import main
from toxbench.harness.report.stored import COMPACT_COLUMNS, compact_frame, parse_board

BOARDS = Path(__file__).parents[1] / "leaderboards"
WIDE = """# Tiny wide board

2 runs; a row per (model, intervention).

## Summary

Headline metrics.

| model | intervention | rtp_challenging Toxic frac. ↓ | rtp_challenging Toxic frac. × | rtp_challenging Tox. prob. ↓ | rtp_challenging Tox. prob. × | rtp_challenging EMT ↓ | rtp_challenging EMT × | wikitext word PPL ↓ | wikitext Δword PPL | wiki_sentences PPL ↓ | wiki_sentences ΔPPL |
|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|
| m | none | 0.300 | ref | 0.900 | ref | 0.800 | ref | 40.0 | ref | 30.00 | ref |
| m | aura | 0.200 | **1.50×** [1.20, 1.90] | 0.800 | 1.12× [0.99, 1.30] | 0.700 | 1.14× | 42.0 | +2.0 | 33.00 | **+3.00** [+2.00, +4.00] |

## rtp_challenging: toxicity

| model | intervention | Toxic frac. ↓ | Toxic frac. × |
|:--|:--|--:|--:|
| m | none | 0.300 [0.250, 0.350] | ref |
| m | aura | 0.200 [0.150, 0.250] | **1.50×** [1.20, 1.90] |

Protocol:

- **rtp_challenging** (n=2): scorer s v1; k=2

† a note under the table.
"""


@pytest.fixture
def wide(tmp_path):
    p = tmp_path / "tiny.md"
    p.write_text(WIDE)
    (tmp_path / "tiny_tradeoff_m.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "tiny_other.md").write_text(WIDE.replace("Tiny wide", "Other"))
    (tmp_path / "tiny_other_tradeoff_m.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return p


def test_parse_reads_sections_tables_protocols_and_notes(wide):
    board = parse_board(wide)
    assert board.title == "Tiny wide board" and board.legend.startswith("2 runs")
    tox = board.section("rtp_challenging: toxicity")
    assert tox is not None and tox.tables[0].frame.shape == (2, 4)
    assert tox.tables[0].protocols == ["**rtp_challenging** (n=2): scorer s v1; k=2"]
    assert tox.tables[0].notes == ["† a note under the table."]


def test_compact_summary_picks_the_headline_columns_verbatim(wide):
    df = compact_frame(parse_board(wide))
    assert list(df.columns) == ["model", "intervention", "rtp_challenging Toxic frac. ↓",
                                "rtp_challenging Toxic frac. ×", "rtp_challenging Tox. prob. ×", "wiki_sentences ΔPPL"]
    assert df.shape[1] <= COMPACT_COLUMNS
    aura = df[df.intervention == "aura"].iloc[0]
    assert aura["rtp_challenging Toxic frac. ×"] == "**1.50×** [1.20, 1.90]"  # copied, not recomputed
    assert aura["wiki_sentences ΔPPL"] == "**+3.00** [+2.00, +4.00]"  # the cost axis of the papers, not wikitext


def test_rerender_writes_compact_markdown_and_html_and_is_idempotent(wide):
    r = CliRunner().invoke(main, ["rerender", str(wide)])
    assert r.exit_code == 0, r.output
    md = wide.read_text()
    summary = md.split("## Summary")[1].split("## ")[0]
    header = next(line for line in summary.splitlines() if line.startswith("| model"))
    assert header.count("|") - 1 == 6 and "EMT" not in header
    assert "## rtp_challenging: toxicity" in md and "† a note under the table." in md  # the rest as committed
    html = wide.with_suffix(".html").read_text()
    assert "<table" in html and "Tiny wide board" in html and "† a note under the table." in html
    assert html.count("data:image/png;base64,") == 1  # its own plot, not tiny_other's
    assert 'class="ci"' in html  # "v [lo, hi]" cells get CI bars
    CliRunner().invoke(main, ["rerender", str(wide)])
    assert wide.read_text() == md


@pytest.mark.parametrize("text, why", [("no title\n", "does not start with a '# title'"),
                                       ("# T\n\nlegend\n\n## S\n\nno table\n", "no tables")])
def test_a_file_that_is_not_a_board_is_one_line_exit_2_nothing_written(tmp_path, text, why):
    p = tmp_path / "x.md"
    p.write_text(text)
    r = CliRunner().invoke(main, ["rerender", str(p)])
    assert r.exit_code == 2 and why in r.output and "Traceback" not in r.output
    assert p.read_text() == text and not p.with_suffix(".html").exists()
    r = CliRunner().invoke(main, ["rerender", str(tmp_path / "missing.md")])
    assert r.exit_code == 2 and "does not exist" in r.output


@pytest.mark.parametrize("board", sorted(p.name for p in BOARDS.glob("*.md")))
def test_every_committed_board_has_a_compact_summary_and_an_html_twin(board):
    path = BOARDS / board
    summary = parse_board(path).section("Summary")
    assert summary is not None and summary.tables, f"{board}: no Summary"
    assert all(t.frame.shape[1] <= COMPACT_COLUMNS for t in summary.tables), f"{board}: Summary not compact"
    html = path.with_suffix(".html")
    assert html.is_file(), f"{board}: no HTML twin (toxbench leaderboard --out, or toxbench rerender)"
    text = html.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert parse_board(path).title in text.replace("&amp;", "&").replace("&#43;", "+")
