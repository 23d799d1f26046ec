"""Vectorized AUROC equals sklearn's roc_auc_score per unit, ties and constant units included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from toxbench.harness.core.errors import UsageError
from toxbench.interventions.auroc import _rank_sums_torch, auroc, auroc_sklearn_reference


def reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.array([roc_auc_score(y, x[:, j]) for j in range(x.shape[1])])


def data(seed: int = 0, n: int = 90, units: int = 300):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    x = rng.standard_normal((n, units)).astype(np.float32)
    x[:, :100] = np.round(x[:, :100] * 2) / 2  # heavy ties
    x[:, 100] = 3.0  # constant unit -> 0.5
    x[:, 101] = y  # perfect -> 1.0
    x[:, 102] = -y.astype(np.float32)  # perfectly inverted -> 0.0
    x[:, 103] = np.where(y, 1.0, 0.0) + (rng.random(n) < 0.1)  # ties across classes
    x[:, 104:110] += y[:, None] * 0.7  # some signal
    return x, y


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_sklearn_with_ties_and_constants(seed):
    x, y = data(seed)
    ours = auroc(torch.from_numpy(x), torch.from_numpy(y), chunk_size=37).numpy()
    ref = reference(x, y)
    assert np.abs(ours - ref).max() <= 1e-6
    assert ours[100] == 0.5 and ours[101] == 1.0 and ours[102] == 0.0


def test_layouts_dtypes_and_chunks_agree():
    x, y = data(2)
    ref = reference(x, y)
    unit_major = torch.from_numpy(np.ascontiguousarray(x.T)).T  # as collect_responses stores them
    for r in (unit_major, torch.from_numpy(x).double(), torch.from_numpy(x).to(torch.bfloat16)):
        got = auroc(r, y, chunk_size=1000).numpy()
        tol = 1e-6 if r.dtype != torch.bfloat16 else 1.0  # bf16 rounds the inputs, not the method
        assert np.abs(got - ref).max() <= tol
    bf = torch.from_numpy(x).to(torch.bfloat16)
    assert np.abs(auroc(bf, y).numpy() - reference(bf.float().numpy(), y)).max() <= 1e-6
    assert np.abs(auroc(x, y.astype(int), chunk_size=1).numpy() - ref).max() <= 1e-6  # numpy in, int labels


def test_torch_kernel_matches_numpy_kernel():
    # The GPU path (torch.sort + cummax) run on CPU tensors must give the same rank sums.
    x, y = data(3)
    got = _rank_sums_torch(torch.from_numpy(np.ascontiguousarray(x.T)), torch.from_numpy(y))
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    a = (got.double() / 2 + n_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    assert np.abs(a.numpy() - reference(x, y)).max() <= 1e-6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_sklearn():
    x, y = data(4)
    got = auroc(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()).numpy()
    assert np.abs(got - reference(x, y)).max() <= 1e-6


def test_large_n_is_exact():
    # rank sums beyond float32's exact integers (n = 6000): kept as int64
    rng = np.random.default_rng(5)
    y = rng.random(6000) < 0.5
    x = (rng.standard_normal((6000, 3)) + y[:, None] * 0.3).astype(np.float32)
    assert np.abs(auroc(x, y).numpy() - reference(x, y)).max() <= 1e-9


def test_sklearn_reference_matches():
    x, y = data(6, units=125)
    assert np.abs(auroc_sklearn_reference(x, y, processes=1) - reference(x, y)).max() <= 1e-12


def test_errors():
    with pytest.raises(UsageError):
        auroc(np.zeros((4, 2)), np.ones(4))  # one class only
    with pytest.raises(UsageError):
        auroc(np.zeros((4, 2)), np.array([0, 1, 0]))
    with pytest.raises(UsageError):
        auroc(np.array([[np.nan], [1.0]]), np.array([0, 1]))
