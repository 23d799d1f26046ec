"""``toxbench leaderboard``, ``toxbench check`` and ``toxbench suite``: thin Click layers over
harness/leaderboard.py, harness/check.py and harness/suite.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from toxbench.harness.commands import one_line_errors as _one_line_errors
from toxbench.harness.errors import UsageError



def _warn_skipped(skipped: list[tuple[str, str]]) -> None:
    for name, why in skipped:
        click.echo(f"warning: skipped run dir {name}: {why}", err=True)


@click.command("leaderboard")
@click.argument("runs", nargs=-1, required=True, metavar="RUNS...")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write Markdown here (e.g. leaderboards/NAME.md) with plots/CSV/JSON beside it; default: stdout.")
@click.option("--csv", "csv_", is_flag=True, help="Also write NAME.csv (one row per metric cell) beside --out.")
@click.option("--json", "json_", is_flag=True, help="Also write NAME.json (cells + protocols) beside --out.")
@click.option("--plots/--no-plots", default=None,
              help="PNG plots beside --out: toxicity vs perplexity per model, RTP-LX per language [default: on].")
@click.option("--strict", is_flag=True, help="Refuse runs whose protocols differ instead of splitting tables.")
@click.option("--title", default="Leaderboard", show_default=True, help="Heading of the Markdown file.")
@_one_line_errors
def leaderboard(runs: tuple[str, ...], out: str | None, csv_: bool, json_: bool, plots: bool | None, strict: bool,
                title: str) -> None:
    """Tabulate run directories (or folders of them): a row per (model, intervention), a column per metric.

    Δ and reduction factors (×) are against the same model's `none` row; runs measured under different
    protocols (scorer, k, sampling, limit, data...) never share a column.
    """
    from toxbench.harness.leaderboard import build_leaderboard, write_leaderboard

    if out is None and (csv_ or json_ or plots):
        flag = "--csv" if csv_ else "--json" if json_ else "--plots"
        raise UsageError(f"{flag} writes files beside the Markdown: add --out leaderboards/NAME.md")
    lb = build_leaderboard(runs, strict=strict, title=title, warn=False)
    _warn_skipped(lb.collection.skipped)
    if out is None:
        click.echo(lb.markdown(), nl=False)
        return
    for p in write_leaderboard(lb, out, csv=csv_, json_=json_, plots=True if plots is None else plots):
        click.echo(f"wrote {p}")


@click.command("check")
@click.option("--baseline", "-b", type=click.Path(dir_okay=False), default="leaderboards/baseline.json",
              show_default=True, help="Baseline JSON (values, CIs, protocols and tolerances).")
@click.argument("runs", nargs=-1, required=True, metavar="RUNS...")
@click.option("--update", is_flag=True, help="Rewrite the baseline from RUNS (atomically; tolerances kept).")
@click.option("--all", "show_all", is_flag=True, help="Print every compared metric, not only the failures.")
@_one_line_errors
def check(baseline: str, runs: tuple[str, ...], update: bool, show_all: bool) -> None:
    """Compare RUNS with a baseline: exit 0 when every metric is within tolerance, 1 on a regression.

    A metric fails when it moves past its tolerance from the baseline file (default: 2% relative; per metric
    or per task:metric; "use_ci": true also accepts anything inside the baseline's 95% CI); a baseline metric
    missing from RUNS fails too. Exit 2: bad input, or RUNS measured under another protocol than the baseline.
    """
    from toxbench.harness.check import check as run_check

    report = run_check(baseline, list(runs), update=update)
    _warn_skipped(report.skipped)
    table = report.markdown(only_failures=not show_all)
    if table:
        click.echo(table)
    click.echo(report.summary())
    if report.exit_code:
        raise SystemExit(report.exit_code)


def _parse_set(items: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` (YAML value; ``generation.k=4`` for nested settings) -> settings overrides."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"--set {item!r} is not KEY=VALUE (e.g. limit=20 or generation.k=4)")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        head, dot, sub = key.partition(".")
        if dot:
            out.setdefault(head, {})[sub] = parsed
        else:
            out[key] = parsed
    return out


@click.command("suite")
@click.argument("suite_file", metavar="SUITE.yaml")
@click.option("--dry-run", is_flag=True, help="List the runs the grid expands to (and which are done); run nothing.")
@click.option("--force", is_flag=True, help="Recompute runs that are already complete.")
@click.option("--set", "set_", multiple=True, metavar="KEY=VALUE",
              help="Override a shared setting for every run (repeatable), e.g. --set limit=20 --set generation.k=5.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Leaderboard path (default: the suite's out).")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write PNG plots beside the leaderboard.")
@_one_line_errors
def suite(suite_file: str, dry_run: bool, force: bool, set_: tuple[str, ...], out: str | None, plots: bool) -> None:
    """Run a declared grid of models × interventions × tasks (skipping complete runs), then its leaderboard."""
    from toxbench.harness.suite import load_suite, run_suite

    s = load_suite(suite_file, overrides=_parse_set(set_))
    if out:
        s.out = Path(out)
    click.echo(f"suite {s.name}: {len(s.specs)} run(s) -> {s.out}", err=True)
    result = run_suite(s, force=force, dry_run=dry_run, plots=plots, log=lambda m: click.echo(m, err=True))
    for p in result.outputs:
        click.echo(f"wrote {p}")
