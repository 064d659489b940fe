"""The Gibbs sampler's row draws in PyTorch, for ``--device cuda``.

The same draw as the compiled CPU kernel (:func:`aerec.model.kernels.gaussian_rows_kernel`),
written with batched tensor operations so it runs on a GPU: for each row ``r`` of a CSR matrix

    P_r = precision + α Σ_k w_k v_k v_kᵀ          (v_k = other[indices[k]])
    b_r = shift_r  + α Σ_k w_k x_k v_k
    out_r = L⁻ᵀ (L⁻¹ b_r + z_r),   P_r = L Lᵀ      (z_r = noise[r]; z = 0 gives the mean)

The per-rating outer products are summed into the rows' precision matrices a chunk of rows at a
time (at most :data:`CHUNK_RATINGS` ratings, so ``CHUNK_RATINGS × d²`` doubles of scratch), then
every row of the chunk is factorised and solved in one batched call. Given the same noise it
computes what the CPU kernel does, up to floating-point summation order (a test checks this).
"""

from __future__ import annotations

import numpy as np
import torch

#: Ratings whose outer products are materialised at once (32 factors: 0.5 GB of float64).
CHUNK_RATINGS = 1 << 19


class TorchRows:
    """One side's CSR arrays on ``device``, ready for repeated :meth:`draw` calls."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
                 device: torch.device) -> None:
        self.device = device
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = torch.as_tensor(indices, dtype=torch.int64, device=device)
        self.values = torch.as_tensor(values, dtype=torch.float64, device=device)
        counts = np.diff(self.indptr)
        self.row_of = torch.as_tensor(np.repeat(np.arange(len(counts)), counts),
                                      dtype=torch.int64, device=device)
        # chunk boundaries (in rows) holding at most CHUNK_RATINGS ratings each
        bounds, start = [0], 0
        while start < len(counts):
            end = int(np.searchsorted(self.indptr, self.indptr[start] + CHUNK_RATINGS, "right"))
            end = max(end - 1, start + 1)
            bounds.append(min(end, len(counts)))
            start = bounds[-1]
        self.bounds = bounds

    def draw(self, out: np.ndarray, weights: np.ndarray, other: np.ndarray,
             precision: np.ndarray, shift: np.ndarray, alpha: float, noise: np.ndarray) -> None:
        """Write each row's draw into ``out`` ``(n_rows, d)`` (NumPy, float64)."""
        dev, f64 = self.device, torch.float64
        other_t = torch.as_tensor(other, dtype=f64, device=dev)
        weights_t = torch.as_tensor(np.array(np.broadcast_to(weights, self.values.shape)),
                                    dtype=f64, device=dev)
        precision_t = torch.as_tensor(precision, dtype=f64, device=dev)
        shift_t = torch.as_tensor(np.ascontiguousarray(shift), dtype=f64, device=dev)
        noise_t = torch.as_tensor(noise, dtype=f64, device=dev)
        d = other.shape[1]
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:]):
            a, b = int(self.indptr[lo]), int(self.indptr[hi])
            v = other_t[self.indices[a:b]]  # (ratings, d)
            w = alpha * weights_t[a:b]
            rows = self.row_of[a:b] - lo
            p = precision_t.expand(hi - lo, d, d).clone()
            p.index_add_(0, rows, (w[:, None, None] * v[:, :, None]) * v[:, None, :])
            rhs = shift_t[lo:hi].clone()
            rhs.index_add_(0, rows, (w * self.values[a:b])[:, None] * v)
            factor = torch.linalg.cholesky(p)
            y = torch.linalg.solve_triangular(factor, rhs[:, :, None], upper=False)
            y = y + noise_t[lo:hi, :, None]
            x = torch.linalg.solve_triangular(factor.mT, y, upper=True)
            out[lo:hi] = x[:, :, 0].cpu().numpy()


__all__ = ["CHUNK_RATINGS", "TorchRows"]
