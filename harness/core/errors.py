"""One error type for user mistakes: the CLI prints its message on one line and exits 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UsageError(Exception):
    """A bad input from the user (unknown name, bad path, missing key...). Never a bug."""


def did_you_mean(value: str, valid: Iterable[str], what: str, n: int = 3) -> UsageError:
    """Build the one-line error for an unknown ``value``: close matches first, then the valid names."""
    valid = sorted(set(valid))
    close = difflib.get_close_matches(value, valid, n=n, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    shown = ", ".join(valid[:25]) + (", ..." if len(valid) > 25 else "")
    return UsageError(f"unknown {what} {value!r}.{hint} Valid: {shown}")
