"""``toxbench merge SHARD_DIRS...``"""

from __future__ import annotations

from pathlib import Path

import click

from ..core.errors import UsageError
from ..run.merge import merge as merge_shards
from .base import ToxbenchCommand
from .show import show_results


@click.command("merge", cls=ToxbenchCommand)
@click.argument("shard_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--output-dir", "-o", default=None, type=click.Path(),
              help="Where the merged run dir goes (default: the spec's).")
def merge(shard_dirs: tuple[str, ...], output_dir: str | None) -> None:
    """Combine the run dirs of `toxbench run --shard I/N` into one unsharded run dir."""
    for d in shard_dirs:
        if not Path(d).is_dir():
            raise UsageError(f"shard run directory {d!r} does not exist")
    show_results(merge_shards([Path(d) for d in shard_dirs], Path(output_dir) if output_dir else None))
