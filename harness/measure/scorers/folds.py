"""Cross-validation folds grouped by a key (a prompt and all its variants share one fold), for the trained heads.

One seeded permutation of the sorted unique groups, dealt round-robin into the folds: ``rtp-stack`` and the
``multilingual`` head both use it, so their held-out figures come from the same kind of split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...core.errors import UsageError


def fold_ids(groups: Sequence[str] | np.ndarray, n_splits: int = 5, seed: int = 0, unit: str = "groups") -> np.ndarray:
    """Fold id per row; all rows of a group share it. ``unit`` names the groups in the error for too few of them."""
    groups = np.asarray(groups)
    uniq = np.unique(groups)
    if len(uniq) < n_splits:
        raise UsageError(f"only {len(uniq)} {unit} for {n_splits} folds")
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(uniq[rng.permutation(len(uniq))], np.arange(len(uniq)) % n_splits, strict=True))
    return np.array([fold_of[g] for g in groups])


def fold_test_rows(groups: Sequence[str] | np.ndarray, n_splits: int = 5, seed: int = 0) -> list[np.ndarray]:
    """For each fold, the row indices of its test rows (folds as ``fold_ids``)."""
    if n_splits < 2:
        raise UsageError(f"--folds must be at least 2, got {n_splits}")
    fold = fold_ids(groups, n_splits, seed)
    return [np.flatnonzero(fold == k) for k in range(n_splits)]
