"""Click commands contributed per feature; harness/cli.py mounts them.

Shared here: the one rule every command follows — a UsageError is one line on stderr and exit status 2, also
when a command object runs on its own (tests, other CLIs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from toxbench.harness.errors import UsageError


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for a command callback: UsageError -> ``Error: ...`` on stderr, exit 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UsageError as e:
            click.echo(f"Error: {e}", err=True)
            raise SystemExit(2) from None

    return wrapper


class OneLineErrorGroup(click.Group):
    """A group whose subcommands' UsageErrors become one line and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(2)
