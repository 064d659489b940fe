"""The compiled kernels compute what the PyTorch expressions they replace compute.

Guards against: a sampled product reading the wrong row or column, float64 inputs silently
computed in float32, and keep-masks whose drop rate or scale is off.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aerec.model.kernels import keep_mask_kernel, sampled_dot_kernel


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sampled_dots_equal_the_dense_product_at_the_positions(dtype):
    rng = np.random.default_rng(0)
    left = rng.standard_normal((7, 33)).astype(dtype)
    right = rng.standard_normal((50, 33)).astype(dtype)
    counts = np.array([0, 3, 5, 1, 0, 8, 2])  # empty rows too
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    indices = np.concatenate([rng.choice(50, c, replace=False) for c in counts]).astype(np.int64)
    out = np.empty(len(indices), dtype=dtype)
    sampled_dot_kernel()(out, left, right, indptr, indices)
    rows = np.repeat(np.arange(7), counts)
    want = (left @ right.T)[rows, indices]
    np.testing.assert_allclose(out, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_keep_mask_kernel_is_counter_based():
    """Any stretch of the stream can be filled on its own: filling [0, n) at once equals
    filling [0, k) and [k, n) separately — what lets several masks share one seed."""
    fill = keep_mask_kernel()
    whole = np.empty(1000, dtype=np.float32)
    fill(whole, np.uint64(42), np.int64(0), np.uint64(2**31), np.float32(2.0))
    head, tail = np.empty(300, dtype=np.float32), np.empty(700, dtype=np.float32)
    fill(head, np.uint64(42), np.int64(0), np.uint64(2**31), np.float32(2.0))
    fill(tail, np.uint64(42), np.int64(300), np.uint64(2**31), np.float32(2.0))
    np.testing.assert_array_equal(whole, np.concatenate([head, tail]))
    assert set(np.unique(whole)) == {0.0, 2.0}
    assert 400 < int((whole == 0).sum()) < 600  # p = 1/2


def test_compiled_and_pytorch_sampled_products_agree():
    from aerec.model.sparse_ops import _sampled_product
    from aerec.model.sparse_rows import SparseRows

    rng = np.random.default_rng(1)
    batch = SparseRows.from_arrays([0, 2, 2, 5], [1, 4, 0, 2, 3], None, 6)
    hidden = torch.from_numpy(rng.standard_normal((3, 8)).astype(np.float32))
    weight = torch.from_numpy(rng.standard_normal((6, 8)).astype(np.float32))
    torch.testing.assert_close(
        _sampled_product(hidden, weight, batch, compiled=True),
        _sampled_product(hidden, weight, batch, compiled=False),
    )
