"""The `toxbench` command: a thin Click layer over the library (every command is callable from Python).

Each command lives in harness/commands/<command>.py; this module only assembles the group. User mistakes
(UsageError) print one line and exit 2, with no traceback (harness/commands/__init__.py).
"""

from __future__ import annotations

import sys

import click

from ... import __version__
from .analyze import analyze
from .base import ToxbenchGroup
from .check import check
from .export import export
from .export_results import export_results
from .fit import fit
from .fluency import fluency
from .leaderboard import leaderboard
from .list import list_
from .merge import merge
from .pairs import pairs
from .rerender import rerender
from .rescore import rescore
from .run import run
from .scorers import scorers
from .show import show
from .suite import suite
from .sweep import sweep


@click.group(cls=ToxbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="toxbench")
def main() -> None:
    """Benchmark toxicity interventions on causal LMs with one protocol (lm-eval underneath).

    \b
    toxbench run --model smollm2-135m --intervention aura --tasks rtp_challenging,wikitext --limit 50
    toxbench leaderboard runs/ --out leaderboards/demo.md
    """


for _command in (run, fit, show, list_, export, leaderboard, check, suite, scorers, fluency, pairs, analyze, merge,
                 rescore, sweep, export_results, rerender):
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
