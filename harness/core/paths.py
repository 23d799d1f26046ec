"""Where data, caches and runs live: option > environment variable > default."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UsageError

DATA_ENV = "TOXBENCH_DATA"
CACHE_ENV = "TOXBENCH_CACHE"
REPO_ROOT = Path(__file__).resolve().parents[2]  # harness/core/paths.py -> the repo


def data_dir(option: str | os.PathLike | None = None, must_exist: bool = True) -> Path:
    """The shared data dir: ``--data-dir`` > ``$TOXBENCH_DATA`` > ``../shared/data`` (next to the repo)."""
    raw = option or os.environ.get(DATA_ENV)
    path = Path(raw).expanduser() if raw else (REPO_ROOT.parent / "shared" / "data")
    path = path.resolve()
    if must_exist and not path.is_dir():
        raise UsageError(
            f"data dir {str(path)!r} does not exist; pass --data-dir DIR or set ${DATA_ENV} "
            "to a folder laid out like ../shared/data"
        )
    return path


def data_file(relative: str | os.PathLike, data_root: str | os.PathLike | None = None) -> Path:
    """A file under the data dir, with a one-line error naming it when it is missing."""
    root = data_dir(data_root)
    path = root / relative
    if not path.exists():
        raise UsageError(f"data file {str(relative)!r} not found under the data dir {str(root)!r}")
    return path


def cache_dir(option: str | os.PathLike | None = None) -> Path:
    """Model, state and score caches: ``--cache-dir`` > ``$TOXBENCH_CACHE`` > ``~/.cache/toxbench``."""
    raw = option or os.environ.get(CACHE_ENV)
    path = Path(raw).expanduser() if raw else Path.home() / ".cache" / "toxbench"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()
