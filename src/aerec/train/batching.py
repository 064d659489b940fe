"""User batches: which users go together into one optimiser step, and their CSR slices.

A batch is a set of user rows; its ratings are the CSR slice ``matrix[rows]`` (vectorised in
SciPy), never a dense block. Every user with at least one rating is visited exactly once per
epoch, in an order shuffled by a seeded generator; the last, partial batch is kept.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from aerec.model.sparse_rows import SparseRows


def users_with_ratings(matrix: sp.csr_matrix) -> np.ndarray:
    """Row indices (int64) of users with at least one stored rating in ``matrix``."""
    return np.flatnonzero(np.diff(matrix.indptr)).astype(np.int64)


def batch_count(n_users: int, batch_size: int) -> int:
    """Batches per epoch: ``ceil(n_users / batch_size)`` — the partial batch counts."""
    return -(-n_users // batch_size)


def iter_user_batches(
    users: np.ndarray, batch_size: int, rng: np.random.Generator | None = None
) -> Iterator[np.ndarray]:
    """Yield arrays of user rows, ``batch_size`` at a time (the last may be shorter).

    With ``rng`` the order is a fresh permutation drawn from it (one draw per epoch); without,
    users come in the given order (validation, prediction).
    """
    order = users if rng is None else users[rng.permutation(len(users))]
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def rows_batch(
    matrix: sp.csr_matrix,
    rows: np.ndarray,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> SparseRows:
    """The ratings of users ``rows`` (in that order) as a :class:`SparseRows` batch."""
    return SparseRows.from_csr(matrix[rows], dtype=dtype, device=device)


#: Batches gathered from the CSR matrix in one vectorised slice by :func:`iter_rating_batches`.
GATHER_BATCHES = 256


def iter_rating_batches(
    matrix: sp.csr_matrix,
    users: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Iterator[tuple[np.ndarray, SparseRows]]:
    """Yield ``(rows, batch)``: the rows of :func:`iter_user_batches` (same order, same draw
    from ``rng``) with their ratings as :func:`rows_batch` would give them.

    The CSR rows of :data:`GATHER_BATCHES` batches are gathered at once (one SciPy fancy
    index) and each batch is then a zero-copy slice of that block: about 60 µs per batch of
    128 Netflix users instead of 300 µs for one gather per batch, with memory bounded by the
    block (never a copy of the whole matrix).
    """
    n_columns = matrix.shape[1]
    for block_order in iter_user_batches(users, batch_size * GATHER_BATCHES, rng):
        block = matrix[block_order]
        indptr = block.indptr.astype(np.int64, copy=False)
        for start in range(0, len(block_order), batch_size):
            stop = min(start + batch_size, len(block_order))
            lo, hi = int(indptr[start]), int(indptr[stop])
            yield block_order[start:stop], SparseRows.from_arrays(
                indptr[start : stop + 1] - lo, block.indices[lo:hi], block.data[lo:hi],
                n_columns, dtype=dtype, device=device,
            )


def union_rows(*matrices: sp.csr_matrix) -> sp.csr_matrix:
    """Entry-wise union of disjoint CSR rating matrices of one shape (e.g. train ∪ validation),
    sorted within rows. Stored ratings equal to 0 (scales starting at 0) are kept."""
    shape = matrices[0].shape
    parts = [sp.csr_matrix(m) for m in matrices]
    if any(m.shape != shape for m in parts):
        raise ValueError(f"cannot join matrices of shapes {[m.shape for m in parts]}")
    rows = np.concatenate(
        [np.repeat(np.arange(shape[0], dtype=np.int64), np.diff(m.indptr)) for m in parts]
    )
    cols = np.concatenate([m.indices.astype(np.int64) for m in parts])
    data = np.concatenate([m.data for m in parts])
    order = np.lexsort((cols, rows))
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    out = sp.csr_matrix((data[order], cols[order].astype(np.int32), indptr), shape=shape)
    out.has_sorted_indices = True
    return out
