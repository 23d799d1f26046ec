"""``toxbench export-results``: runs in the formats other tools read (lm-eval, Every Eval Ever, the Hub)."""

from __future__ import annotations

from pathlib import Path

import click

from ..core.errors import UsageError, did_you_mean
from ..report.exports import FORMATS, export_eee, export_hub, export_lm_eval
from ..report.results import collect
from .base import ToxbenchCommand


@click.command("export-results", cls=ToxbenchCommand)
@click.argument("runs", nargs=-1, required=True, metavar="RUN_DIR...")
@click.option("--format", "fmt", required=True, metavar="FORMAT", help=f"One of {', '.join(FORMATS)}.")
@click.option("--out", "-o", "out", required=True, type=click.Path(file_okay=False),
              help="Folder to write into; with --format hub, the checkpoint dir (e.g. from `toxbench export`).")
def export_results(runs: tuple[str, ...], fmt: str, out: str) -> None:
    """Write each finished run in FORMAT: lm-eval (results_<date>.json + samples), eee (Every Eval Ever records),
    hub (.eval_results/*.yaml and a README section in a checkpoint dir; nothing is uploaded)."""
    if fmt not in FORMATS:
        raise did_you_mean(fmt, FORMATS, "export format")
    target = Path(out)
    if fmt == "hub" and not (target / "config.json").is_file():
        raise UsageError(f"--format hub writes into a checkpoint dir; {out!r} has no config.json "
                         "(make one with `toxbench export` or a DPO fit)")
    coll = collect(runs, warn=False)
    if not coll.runs:
        raise UsageError("no finished runs to export" + (f" ({coll.skipped[0][0]}: {coll.skipped[0][1]})"
                                                         if coll.skipped else ""))
    write = {"lm-eval": lambda r: export_lm_eval(r, target / r.run_id), "eee": lambda r: export_eee(r, target),
             "hub": lambda r: export_hub(r, target)}[fmt]
    for run in coll.runs:
        for p in write(run):
            click.echo(f"wrote {p}")
