"""A board's tables as Markdown: model and intervention left-aligned, every other column right-aligned, cells kept
exactly as formatted (no re-parsing of "0.250" into "0.25")."""

from __future__ import annotations

import pandas as pd


def markdown_table(df: pd.DataFrame) -> str:
    align = ["left", "left"] + ["right"] * (df.shape[1] - 2)
    return df.to_markdown(index=False, disable_numparse=True, colalign=align)
