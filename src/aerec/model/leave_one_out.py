"""Predictions with each of a user's ratings left out in turn — what explanations ("because you
rated …") are made of.

:func:`leave_one_out_at` returns, for ``m`` tested ratings of one user, the predictions at
``targets`` with all ratings (row 0) and with all but rating ``tested[i]`` (row ``1 + i``). Any
model can answer it with one ``predict_at`` call over the ``m + 1`` rating rows (the generic
path). Models that fold a user in by a linear solve answer it directly (``model.leave_one_out_at``):
one solve with every rating, then a rank-one (Sherman–Morrison) downdate per left-out rating,
which is exact and costs ``O(width²)`` per rating instead of a new ``O(ratings × width²)`` solve.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def leave_one_out_at(
    model: nn.Module, columns: np.ndarray, ratings: np.ndarray, tested: np.ndarray,
    targets: np.ndarray,
) -> torch.Tensor:
    """``(m + 1, k)`` predictions at ``targets`` (movie columns): row 0 with every rating of
    ``columns`` / ``ratings``, row ``1 + i`` without rating ``tested[i]`` (an index into them).
    Every model answers it (the contract of :mod:`aerec.model.base`): with an exact downdate
    of its own, or by :func:`by_rows`."""
    return model.leave_one_out_at(columns, ratings, tested, targets)


def by_rows(
    model: nn.Module, columns: np.ndarray, ratings: np.ndarray, tested: np.ndarray,
    targets: np.ndarray,
) -> torch.Tensor:
    """The generic path: one ``predict_at`` over the ``m + 1`` rating rows."""
    columns = np.asarray(columns, dtype=np.int64)
    ratings = np.asarray(ratings, dtype=np.float32)
    tested = np.asarray(tested, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    n, m, k = len(columns), len(tested), len(targets)
    keep = np.ones((m, n), dtype=bool)
    keep[np.arange(m), tested] = False
    row_cols = np.concatenate([columns, np.broadcast_to(columns, (m, n))[keep]])
    row_vals = np.concatenate([ratings, np.broadcast_to(ratings, (m, n))[keep]])
    indptr = np.concatenate([[0, n], n + (n - 1) * np.arange(1, m + 1)]).astype(np.int64)
    rows = np.repeat(np.arange(m + 1, dtype=np.int64), k)
    cols = np.tile(targets, m + 1)
    return model.predict_at(indptr, row_cols, row_vals, rows, cols).reshape(m + 1, k)


def as_index(values: object, device: torch.device) -> torch.Tensor:
    """An int64 tensor of indices from any array-like (always a copy: NumPy strides may be
    negative)."""
    return torch.as_tensor(np.array(values, dtype=np.int64), device=device)


def downdated(
    design: torch.Tensor, response: torch.Tensor, factor: torch.Tensor, solution: torch.Tensor,
    tested: torch.Tensor, scores: torch.Tensor,
) -> torch.Tensor:
    """Leave-one-out for a ridge-type solve ``P w = Aᵀ y + c`` with ``P = Aᵀ A + R``.

    Batched over a leading dimension ``s``: ``design`` ``A`` ``(s, n, d)``, ``response`` ``y``
    ``(s, n)``, ``factor`` the Cholesky factor of ``P`` ``(s, d, d)``, ``solution`` ``w``
    ``(s, d)``, ``tested`` ``(m,)`` row indices, ``scores`` ``(s, k, d)`` (the vectors whose
    products with ``w`` are the predictions). Without row ``j`` (Sherman–Morrison):
    ``w_j = w + u (aᵀ w − y_j) / (1 − aᵀ u)``, ``u = P⁻¹ a``, ``a = A[j]``. Returns the
    ``(s, m + 1, k)`` products ``scores · w`` (row 0) and ``scores · w_j`` (rows 1 …).
    """
    a = design[:, tested]  # (s, m, d)
    u = torch.cholesky_solve(a.transpose(1, 2), factor).transpose(1, 2)  # (s, m, d)
    residual = (a * solution[:, None]).sum(-1) - response[:, tested]  # (s, m)
    leverage = (a * u).sum(-1)  # (s, m), < 1 when R is positive definite
    full = torch.einsum("skd,sd->sk", scores, solution)  # (s, k)
    change = torch.einsum("skd,smd->smk", scores, u) * (residual / (1 - leverage))[..., None]
    return torch.cat([full[:, None], full[:, None] + change], dim=1)
