"""The PyTorch row draws used on a GPU (``aerec.train.gibbs_torch``) against the compiled CPU
kernel.

Guards against: a GPU chain that samples a different distribution from the CPU chain (a wrong
precision, mean or noise transform), rows split across chunks losing or double-counting
ratings, and rows without ratings (their prior) being mishandled.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.model.kernels import gaussian_rows_kernel
from aerec.train import gibbs_torch
from aerec.train.bayesian import GibbsSampler
from aerec.train.gibbs_torch import TorchRows


def _problem(seed: int = 0, rows: int = 50, cols: int = 30, d: int = 4):
    rng = np.random.default_rng(seed)
    dense = rng.random((rows, cols)) < 0.3
    dense[3] = False  # a row without ratings: its draw comes from the prior alone
    matrix = sp.csr_matrix(np.where(dense, rng.integers(1, 6, (rows, cols)), 0).astype(float))
    arrays = (matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64),
              matrix.data - 3.0)
    other = rng.standard_normal((cols, d))
    a = rng.standard_normal((d, d))
    precision = a @ a.T + d * np.eye(d)
    shift = np.broadcast_to(rng.standard_normal(d), (rows, d))
    weights = rng.gamma(2.0, 0.5, matrix.nnz)
    noise = rng.standard_normal((rows, d))
    return arrays, other, precision, shift, weights, noise


@pytest.mark.parametrize("chunk", [7, 1 << 19])
def test_torch_draw_equals_the_compiled_kernel(monkeypatch, chunk):
    monkeypatch.setattr(gibbs_torch, "CHUNK_RATINGS", chunk)  # many chunks, or one
    arrays, other, precision, shift, weights, noise = _problem()
    expected = np.zeros((50, 4))
    gaussian_rows_kernel(parallel=False)(expected, *arrays, weights, other, precision, shift,
                                         2.0, noise)
    got = np.zeros((50, 4))
    TorchRows(*arrays, torch.device("cpu")).draw(got, weights, other, precision, shift, 2.0,
                                                 noise)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_chain_on_the_gpu_follows_the_cpu_chain():
    arrays, *_ = _problem(rows=300, cols=80)
    ratings = sp.csr_matrix((arrays[2] + 3.0, arrays[1], arrays[0]), shape=(300, 80))
    cpu = GibbsSampler(ratings, 4, 2.0, seed=3, noise_scales=2.0)
    gpu = GibbsSampler(ratings, 4, 2.0, seed=3, noise_scales=2.0, device="cuda")
    for _ in range(3):
        cpu.sweep()
        gpu.sweep()
    np.testing.assert_allclose(gpu.users, cpu.users, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gpu.movies, cpu.movies, rtol=1e-6, atol=1e-6)
