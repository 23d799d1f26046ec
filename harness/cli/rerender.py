"""``toxbench rerender``: a thin Click layer over harness/report/stored.py."""

from __future__ import annotations

from pathlib import Path

import click

from ..report.stored import compact_frame, parse_board
from ..report.stored import rerender as rerender_board
from ..report.tables import markdown_table
from .base import ToxbenchCommand


@click.command("rerender", cls=ToxbenchCommand)
@click.argument("boards", nargs=-1, required=True, metavar="BOARD.md...")
def rerender(boards: tuple[str, ...]) -> None:
    """Re-lay out committed boards whose run dirs are gone: a compact Summary (the headline columns of the board's
    own tables) and NAME.html beside each. Numbers are copied as printed; a board whose runs exist is rebuilt with
    `toxbench leaderboard` instead.
    """
    parsed = [parse_board(Path(b)) for b in boards]  # every board checked before any is written
    for b, board in zip(boards, parsed):
        click.echo(f"{board.title}\n\n{markdown_table(compact_frame(board))}\n")
        for p in rerender_board(b):
            click.echo(f"wrote {p}", err=True)
