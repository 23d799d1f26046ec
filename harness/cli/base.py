"""Click commands, one module per command (``pairs.py`` defines ``toxbench pairs``); harness/cli.py mounts them.

Every command and group is built on the two classes below, so a user mistake (``UsageError``, raised anywhere in
the library) becomes one line on stderr and exit status 2 in one place: whichever command object is the top of
the command line (``toxbench`` itself, or a command or group invoked on its own, as tests do).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..core.errors import UsageError, did_you_mean


class ToxbenchCommand(click.Command):
    """A command whose UsageErrors print ``Error: <message>`` on one line and exit 2 (Click's own too)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        except UsageError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(2)


class ToxbenchGroup(ToxbenchCommand, click.Group):
    """A group of ToxbenchCommands (subgroups included) that suggests close names for an unknown command."""

    command_class = ToxbenchCommand
    group_class = type  # subgroups are ToxbenchGroups too

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            if args and args[0] not in self.commands:
                raise click.UsageError(str(did_you_mean(args[0], self.list_commands(ctx), "command"))) from None
            raise
