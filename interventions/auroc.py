"""AUROC of every unit at once: rank-based Mann–Whitney U with averaged ties, vectorized over units.

For unit ``u`` with responses ``x[:, u]`` and binary labels ``y``::

    AUROC_u = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)

where ``R_pos`` is the sum of the (tie-averaged, 1-based) ranks of the positive samples. This equals
``sklearn.metrics.roc_auc_score(y, x[:, u])`` exactly, ties and constant units (0.5) included.

Why it is fast: each chunk of units is laid out unit-major (one contiguous row of ``n`` responses per unit) and
argsorted once along rows; on CPU that argsort is NumPy's (AVX-512/AVX2 vectorized) instead of ``torch.sort``,
which is ~10x slower on short rows, and chunks are sorted on torch's threads at once (NumPy releases the GIL).
Rank sums are a matrix-vector product of sorted labels with ``1..n``; tie-averaging runs only on the rows that
contain ties (all rows at once when most do: on SmolLM2's MLP responses 55% of the rows have ties). Rank sums are
held as exact integers (int64), so the result does not depend on float precision for any ``n``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..harness.core.errors import UsageError

__all__ = ["auroc", "auroc_sklearn_reference"]


def auroc(
    responses: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    chunk_size: int = 8192,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """AUROC of each column of ``responses`` (``[n_samples, n_units]``) for binary ``labels`` (``[n_samples]``).

    Returns a float64 tensor ``[n_units]`` on the CPU. ``device`` (default: where ``responses`` lives) picks
    where the work runs; chunks of ``chunk_size`` units bound the memory to O(chunk_size x n_samples).
    """
    x = torch.as_tensor(responses)
    y = torch.as_tensor(labels).reshape(-1)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise UsageError(f"auroc: responses {tuple(x.shape)} and labels {tuple(y.shape)} do not align")
    y = y.to(torch.bool) if y.dtype != torch.bool else y
    n = int(y.numel())
    n_pos = int(y.sum())
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        raise UsageError(f"auroc needs both classes; got {n_pos} positive and {n_neg} negative samples")
    if torch.isnan(x).any():
        raise UsageError("auroc: responses contain NaN")
    dev = torch.device(device) if device is not None else x.device
    out = torch.empty(x.shape[1], dtype=torch.float64)
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()  # fp16/bf16 responses: float32 holds them exactly
    starts = range(0, x.shape[1], chunk_size)
    if dev.type == "cpu":
        xs, ys = x.cpu().numpy(), y.cpu().numpy()
        # NumPy's sorts release the GIL: chunks run on torch's thread budget (--threads), like its own kernels.
        with ThreadPoolExecutor(max(1, torch.get_num_threads())) as pool:
            sums = list(pool.map(lambda s: _rank_sums_cpu(xs[:, s : s + chunk_size].T, ys), starts))
        rank_sums = [torch.from_numpy(r) for r in sums]
    else:
        rank_sums = [_rank_sums_torch(x[:, s : s + chunk_size].T.to(dev).contiguous(), y.to(dev)).cpu()
                     for s in starts]
    for start, rank_sum2 in zip(starts, rank_sums):
        # rank_sum2 = 2 * (sum of 0-based tie-averaged ranks of positives): exact integers.
        u_stat = rank_sum2.to(torch.float64) / 2 + n_pos - n_pos * (n_pos + 1) / 2
        out[start : start + chunk_size] = u_stat / (n_pos * n_neg)
    return out


def _rank_sums_cpu(block: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``2 x`` the sum of 0-based averaged ranks of positives, per row of ``block`` ([units, n])."""
    block = np.ascontiguousarray(block)  # free when responses were collected unit-major
    order = np.argsort(block, axis=1, kind="quicksort")  # SIMD argsort; ties are averaged below
    lab = np.take(y.astype(np.int64), order)  # labels in sorted order
    vals = np.sort(block, axis=1)  # a second SIMD sort is cheaper than gathering values through `order`
    tied = vals[:, 1:] == vals[:, :-1]
    rows = np.flatnonzero(tied.any(axis=1))
    if rows.size > block.shape[0] // 2:  # mostly tied (pooled maxima often are): all rows, no row copies
        return _tie_averaged(vals, lab, tied)
    n = block.shape[1]
    sums = lab @ np.arange(0, 2 * n, 2, dtype=np.int64)  # 2 * rank (0-based), exact integers
    if rows.size:
        sums[rows] = _tie_averaged(vals[rows], lab[rows], tied[rows])
    return sums


def _tie_averaged(vals: np.ndarray, lab: np.ndarray, tied: np.ndarray) -> np.ndarray:
    """Rows with ties: every member of a tie group (first position f, size g) gets 2 x rank = 2f + g - 1.

    Works on the flattened rows with one pass of ``reduceat`` over the groups (no per-row Python work).
    """
    u, n = vals.shape
    starts = np.ones((u, n), dtype=bool)
    starts[:, 1:] = ~tied
    gs = np.flatnonzero(starts.ravel())  # group starts; every row starts a group
    size = np.diff(np.append(gs, u * n))
    pos_in_group = np.add.reduceat(lab.ravel(), gs)
    contrib = pos_in_group * (2 * (gs % n) + size - 1)
    row_first_group = np.searchsorted(gs, np.arange(u, dtype=np.int64) * n)
    return np.add.reduceat(contrib, row_first_group)


def _rank_sums_torch(block: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Same as ``_rank_sums_cpu`` with torch ops (GPU path)."""
    vals, order = torch.sort(block, dim=1)
    lab = y.to(torch.int64)[order]
    u, n = block.shape
    idx = torch.arange(n, device=block.device, dtype=torch.int64).expand(u, n)
    tied = vals[:, 1:] == vals[:, :-1]
    starts = torch.ones((u, n), dtype=torch.bool, device=block.device)
    starts[:, 1:] = ~tied
    ends = torch.ones((u, n), dtype=torch.bool, device=block.device)
    ends[:, :-1] = ~tied
    first = torch.where(starts, idx, 0).cummax(dim=1).values
    last = torch.where(ends, idx, n).flip(1).cummin(dim=1).values.flip(1)
    return ((first + last) * lab).sum(dim=1)


def auroc_sklearn_reference(
    responses: np.ndarray, labels: np.ndarray, chunk_size: int = 10, processes: int = 2
) -> np.ndarray:
    """ml-aura's way (``src/utils/auroc.py``): sklearn ``roc_auc_score`` on chunks of 10 units over a Pool.

    Kept as the baseline of ``benchmarks/bench_aura.py`` and as the reference in tests.
    """
    import multiprocessing

    responses = np.asarray(responses)
    labels = np.asarray(labels)
    chunks = [responses[:, s : s + chunk_size] for s in range(0, responses.shape[1], chunk_size)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        ret = pool.starmap(_sklearn_chunk, [(c, labels) for c in chunks])
    return np.concatenate(ret, 0)


def _sklearn_chunk(chunk: np.ndarray, labels: np.ndarray) -> np.ndarray:
    from sklearn.metrics import roc_auc_score

    return np.asarray(roc_auc_score(labels[:, None].repeat(chunk.shape[1], 1), chunk, average=None))
