"""``toxbench leaderboard``: a thin Click layer over harness/leaderboard.py."""

from __future__ import annotations

from pathlib import Path

import click

from ..core.errors import UsageError
from ..report.frontier import positive_costs
from ..report.leaderboard import build_leaderboard, write_leaderboard
from ..report.markdown import compact_summary
from ..report.plots import write_html_beside, write_plots_beside
from ..spec.values import split_commas
from .base import ToxbenchCommand


def parse_costs(text: str) -> tuple[float, ...]:
    """``5,10,20`` -> (5.0, 10.0, 20.0); anything but positive numbers is a one-line error."""
    costs = positive_costs(split_commas(text))
    if costs is None:
        raise UsageError(f"--costs {text!r} is invalid: give positive perplexity costs in %, e.g. --costs 5,10,20")
    return costs


def warn_skipped(skipped: list[tuple[str, str]]) -> None:
    """One warning line per run dir a collection skipped (also used by `toxbench check`)."""
    for name, why in skipped:
        click.echo(f"warning: skipped run dir {name}: {why}", err=True)


@click.command("leaderboard", cls=ToxbenchCommand)
@click.argument("runs", nargs=-1, required=True, metavar="RUNS...")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write Markdown here (e.g. leaderboards/NAME.md) with plots/CSV/JSON beside it; default: stdout.")
@click.option("--csv", "csv_", is_flag=True, help="Also write NAME.csv (one row per metric cell) beside --out.")
@click.option("--json", "json_", is_flag=True, help="Also write NAME.json (cells + protocols) beside --out.")
@click.option("--plots/--no-plots", default=None,
              help="PNG plots beside --out: toxicity vs perplexity per model, RTP-LX per language [default: on].")
@click.option("--html/--no-html", default=None,
              help="NAME.html beside --out: one self-contained page (sortable tables, filter, CI bars, plots) "
                   "[default: on with --out]; without --out, --html writes FOLDER/leaderboard.html (+ plots) into "
                   "the folder of runs given.")
@click.option("--strict", is_flag=True, help="Refuse runs whose protocols differ instead of splitting tables.")
@click.option("--title", default="Leaderboard", show_default=True, help="Heading of the Markdown file.")
@click.option("--costs", default="5,10,20", show_default=True, metavar="P1,P2,...",
              help="Perplexity costs (% over `none`) at which the matched-cost tables read each method's curve.")
@click.option("--order", default="", metavar="A,B,...",
              help="Intervention rows in this order (e.g. none,preprompt,aura,dpo); the others follow.")
def leaderboard(runs: tuple[str, ...], out: str | None, csv_: bool, json_: bool, plots: bool | None, html: bool | None,
                strict: bool, title: str, costs: str, order: str) -> None:
    """Tabulate run directories (or folders of them): a row per (model, intervention), a column per metric.

    Δ and reduction factors (×) are against the same model's `none` row; runs measured under different
    protocols (scorer, k, sampling, limit, data...) never share a column.
    """
    if out is None and (csv_ or json_ or plots):
        flag = "--csv" if csv_ else "--json" if json_ else "--plots"
        raise UsageError(f"{flag} writes files beside the Markdown: add --out leaderboards/NAME.md")
    if out is None and html and not (len(runs) == 1 and Path(runs[0]).is_dir()):
        raise UsageError(f"--html without --out writes into one folder of runs; got {', '.join(runs)!s}: pass one "
                         "folder, or --out leaderboards/NAME.md")
    lb = build_leaderboard(runs, strict=strict, title=title, order=split_commas(order), warn=False,
                           costs=parse_costs(costs))
    warn_skipped(lb.collection.skipped)
    if out is None and html:
        md = Path(runs[0]) / "leaderboard.md"  # the name a suite gives its folder's board
        written = [write_html_beside(lb, md, write_plots_beside(lb, md) if plots is None else [])]
        click.echo(compact_summary(lb))
        click.echo(f"wrote {written[0]}", err=True)
        return
    if out is None:
        click.echo(lb.markdown(), nl=False)
        return
    written = write_leaderboard(lb, out, csv=csv_, json_=json_)
    pngs = write_plots_beside(lb, written[0]) if plots is None or plots else []
    written += pngs
    if html is None or html:
        written.append(write_html_beside(lb, written[0], pngs))
    click.echo(compact_summary(lb))
    for p in written:
        click.echo(f"wrote {p}", err=True)
