"""Comparing numbers computed on this machine with committed ones: close, not byte-equal, since other CPUs'
kernels (AVX2 vs AVX-512, another BLAS) round differently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def assert_safetensors_close(a: Path, b: Path, rtol: float = 2e-3, atol: float = 1e-4) -> None:
    """Same tensor names, shapes, dtypes and metadata keys; values equal up to kernel and thread-count rounding
    (the defaults allow one float16 ulp). Byte-identity holds only on the same kernels and threads."""
    with safe_open(str(a), "np") as fa, safe_open(str(b), "np") as fb:
        assert sorted(fa.metadata() or {}) == sorted(fb.metadata() or {})
    ta, tb = load_file(str(a)), load_file(str(b))
    assert sorted(ta) == sorted(tb)
    for name in ta:
        assert ta[name].shape == tb[name].shape and ta[name].dtype == tb[name].dtype, name
        np.testing.assert_allclose(ta[name], tb[name], rtol=rtol, atol=atol, err_msg=name)
