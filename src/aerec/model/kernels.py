"""Compiled CPU kernels (Numba) for the few loops that PyTorch operators cannot express in one
pass. Each kernel is compiled on first use (or loaded from Numba's on-disk cache) and runs on as
many threads as PyTorch is set to use.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch


def numba_threads() -> int:
    """Set Numba's thread count to PyTorch's (within Numba's pool) and return it."""
    import numba

    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    return threads


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A CPU tensor's data as a contiguous NumPy array (shared, not copied, when possible)."""
    return tensor.detach().contiguous().numpy()


@cache
def keep_mask_kernel():
    """``fill(out, seed, start, threshold, scale)``: ``out[i] = scale`` if the high 32 bits of
    SplitMix64 output number ``start + i + 1`` of the stream seeded with ``seed`` are
    ``>= threshold``, else 0 — a dropout keep-mask, each unit's bits computed independently
    (counter-based), so threads can fill any part of it."""
    import numba

    @numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
    def fill(out, seed, start, threshold, scale):  # pragma: no cover - compiled
        gamma = np.uint64(0x9E3779B97F4A7C15)
        m1 = np.uint64(0xBF58476D1CE4E5B9)
        m2 = np.uint64(0x94D049BB133111EB)
        zero = scale - scale
        for i in numba.prange(out.shape[0]):
            z = seed + gamma * np.uint64(start + i + 1)
            z = (z ^ (z >> np.uint64(30))) * m1
            z = (z ^ (z >> np.uint64(27))) * m2
            z = z ^ (z >> np.uint64(31))
            out[i] = scale if (z >> np.uint64(32)) >= threshold else zero

    return fill


@cache
def sampled_dot_kernel():
    """``dots(out, left, right, indptr, indices)``: ``out[k] = left[r] · right[indices[k]]`` for
    each entry ``k`` of row ``r`` (``indptr[r]:indptr[r+1]``) — the sampled product (SDDMM) of
    the last layer, rows split across threads."""
    import numba

    @numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
    def dots(out, left, right, indptr, indices):  # pragma: no cover - compiled
        width = left.shape[1]
        for r in numba.prange(left.shape[0]):
            for k in range(indptr[r], indptr[r + 1]):
                c = indices[k]
                total = left[r, 0] * right[c, 0]
                for i in range(1, width):
                    total += left[r, i] * right[c, i]
                out[k] = total

    return dots


@cache
def sparse_dense_kernel():
    """``product(out, indptr, indices, data, dense)``: ``out = A @ dense`` for a CSR matrix
    ``A`` (``indptr``, ``indices``, ``data``), rows split across threads. Each row adds its
    entries in stored order without fast-math reassociation, so the result is bit-identical
    to SciPy's single-threaded product."""
    import numba

    @numba.njit(parallel=True, cache=True, nogil=True)
    def product(out, indptr, indices, data, dense):  # pragma: no cover - compiled
        width = dense.shape[1]
        for r in numba.prange(out.shape[0]):
            for i in range(width):
                out[r, i] = 0.0
            for k in range(indptr[r], indptr[r + 1]):
                a = data[k]
                c = indices[k]
                for i in range(width):
                    out[r, i] += a * dense[c, i]

    return product


@cache
def row_adam_kernel():
    """``row_adam(param, exp_avg, exp_avg_sq, colptr, src_rows, coef, source, …)``: each row's
    gradient ``Σ coef[k] * source[src_rows[k]]`` over its entries ``colptr[j]:colptr[j+1]``,
    then PyTorch's Adam / AdamW update of that row, in place; rows split across threads in
    ``chunks`` (see :class:`aerec.train.row_adam.RowAdam`)."""
    import numba

    @numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
    def row_adam(  # pragma: no cover - compiled
        param, exp_avg, exp_avg_sq, colptr, src_rows, coef, source,
        one_minus_beta1, beta2, one_minus_beta2, eps, weight_decay, decay_factor,
        step_size, bias_correction2_sqrt, chunks,
    ):
        n_rows, width = param.shape
        for chunk in numba.prange(chunks):
            grad = np.empty(width, dtype=param.dtype)
            for j in range(chunk * n_rows // chunks, (chunk + 1) * n_rows // chunks):
                grad[:] = 0
                for k in range(colptr[j], colptr[j + 1]):
                    c = coef[k]
                    r = src_rows[k]
                    for i in range(width):
                        grad[i] += c * source[r, i]
                for i in range(width):
                    p = param[j, i] * decay_factor  # decoupled (AdamW) decay; 1 for Adam
                    g = grad[i] + weight_decay * p  # coupled L2 (Adam); 0 for AdamW
                    m = exp_avg[j, i] + one_minus_beta1 * (g - exp_avg[j, i])
                    v = beta2 * exp_avg_sq[j, i] + one_minus_beta2 * g * g
                    exp_avg[j, i] = m
                    exp_avg_sq[j, i] = v
                    param[j, i] = p - step_size * m / (math.sqrt(v) / bias_correction2_sqrt + eps)

    return row_adam


@cache
def gaussian_rows_kernel(parallel: bool = True):
    """``draw(out, indptr, indices, values, weights, other, precision, shift, alpha, noise)``:
    for each row ``r`` of a CSR matrix, the Gaussian conditional of a factorisation's row vector
    given the other side's vectors ``other`` — precision ``P = precision + alpha Σ w v vᵀ`` and
    ``P⁻¹ (shift[r] + alpha Σ w x v)`` its mean (``shift[r]`` is the prior's precision times
    the row's prior mean; a broadcast view when all rows share it), over the row's entries
    (``v = other[indices[k]]``,
    ``x = values[k]``, ``w = weights[k]``, each entry's noise-precision scale: all ones for one
    shared noise precision ``alpha``) — and writes ``mean + L⁻ᵀ noise[r]`` (``P = L Lᵀ``) to
    ``out[r]``: a draw when ``noise`` is standard normal, the mean when it is 0. The Cholesky
    factor is computed in place per row. With ``parallel`` the rows are split across Numba's
    threads (training); without, it runs on the calling thread only, so any number of threads
    may call it at once (prediction in a server's thread pool)."""
    import numba

    @numba.njit(parallel=parallel, fastmath=True, cache=True, nogil=True)
    def draw(  # pragma: no cover - compiled
        out, indptr, indices, values, weights, other, precision, shift, alpha, noise
    ):
        n_rows, d = out.shape
        for r in numba.prange(n_rows):
            p = precision.copy()
            b = shift[r].copy()
            for k in range(indptr[r], indptr[r + 1]):
                c = indices[k]
                w = alpha * weights[k]
                x = w * values[k]
                for i in range(d):
                    vi = w * other[c, i]
                    b[i] += x * other[c, i]
                    for j in range(i + 1):
                        p[i, j] += vi * other[c, j]
            for j in range(d):  # Cholesky, lower triangle, in place
                s = p[j, j]
                for k in range(j):
                    s -= p[j, k] * p[j, k]
                p[j, j] = math.sqrt(s)
                for i in range(j + 1, d):
                    s = p[i, j]
                    for k in range(j):
                        s -= p[i, k] * p[j, k]
                    p[i, j] = s / p[j, j]
            y = np.empty(d)
            for i in range(d):  # L y = b
                s = b[i]
                for k in range(i):
                    s -= p[i, k] * y[k]
                y[i] = s / p[i, i]
            for i in range(d):
                y[i] += noise[r, i]
            for i in range(d - 1, -1, -1):  # Lᵀ x = y + z
                s = y[i]
                for k in range(i + 1, d):
                    s -= p[k, i] * out[r, k]
                out[r, i] = s / p[i, i]

    return draw
