"""The `toxbench` command: a thin Click layer over the library (every command is callable from Python).

Each command lives in harness/commands/<command>.py; this module only assembles the group. User mistakes
(UsageError) print one line and exit 2, with no traceback (harness/commands/__init__.py).
"""

from __future__ import annotations

import sys

import click

from toxbench import __version__
from toxbench.harness.commands import ToxbenchGroup
from toxbench.harness.commands.analyze import analyze
from toxbench.harness.commands.check import check
from toxbench.harness.commands.export import export
from toxbench.harness.commands.fit import fit
from toxbench.harness.commands.fluency import fluency
from toxbench.harness.commands.leaderboard import leaderboard
from toxbench.harness.commands.list import list_
from toxbench.harness.commands.merge import merge
from toxbench.harness.commands.pairs import pairs
from toxbench.harness.commands.rescore import rescore
from toxbench.harness.commands.run import run
from toxbench.harness.commands.scorers import scorers
from toxbench.harness.commands.show import show
from toxbench.harness.commands.suite import suite


@click.group(cls=ToxbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="toxbench")
def main() -> None:
    """Benchmark toxicity interventions on causal LMs with one protocol (lm-eval underneath).

    \b
    toxbench run --model smollm2-135m --intervention aura --tasks rtp_challenging,wikitext --limit 50
    toxbench leaderboard runs/ --out leaderboards/demo.md
    """


for _command in (run, fit, show, list_, export, leaderboard, check, suite, scorers, fluency, pairs, analyze, merge,
                 rescore):
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
