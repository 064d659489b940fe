"""User batches: which users go together into one optimiser step, and their CSR slices.

A batch is a set of user rows; its ratings are the CSR slice ``matrix[rows]`` (vectorised in
SciPy), never a dense block. Every user with at least one rating is visited exactly once per
epoch, in an order shuffled by a seeded generator; the last, partial batch is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

# re-exported for the training modules that import it from here; its home is the data layer
from aerec.data.splits import union_rows as union_rows
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
    part: Any = None,
) -> Iterator[tuple[np.ndarray, SparseRows]]:
    """Yield ``(rows, batch)``: the rows of :func:`iter_user_batches` (same order, same draw
    from ``rng``) with their ratings as :func:`rows_batch` would give them.

    The CSR rows of :data:`GATHER_BATCHES` batches are gathered at once (one SciPy fancy
    index) and each batch is then a zero-copy slice of that block: about 60 µs per batch of
    128 Netflix users instead of 300 µs for one gather per batch, with memory bounded by the
    block (never a copy of the whole matrix).

    ``part`` (:class:`aerec.train.distributed.Ranks` of a data-parallel job): the same global
    batches, in the same order, of which this rank gets its share (every ``world``-th row) —
    only those rows are read from ``matrix``.
    """
    n_columns = matrix.shape[1]
    if part is not None and part.active:
        for rows, batch, _ in iter_rank_batches(matrix, users, batch_size, rng, part,
                                                dtype=dtype, device=device):
            yield rows, batch
        return
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


def iter_rank_batches(
    matrix: sp.csr_matrix, users: np.ndarray, batch_size: int,
    rng: np.random.Generator | None, part: Any, *, dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Iterator[tuple[np.ndarray, SparseRows, int]]:
    """:func:`iter_rating_batches` for one rank of a data-parallel job: ``(rows, batch,
    global ratings)`` — this rank's share of every global batch (one gather per block of
    batches, like the one-process path) and the number of ratings in the whole global batch
    (known to every rank from the CSR offsets, without communication)."""
    n_columns = matrix.shape[1]
    counts = np.diff(matrix.indptr)
    for block_order in iter_user_batches(users, batch_size * GATHER_BATCHES, rng):
        batches = [block_order[start : start + batch_size]
                   for start in range(0, len(block_order), batch_size)]
        totals = [int(counts[b].sum()) for b in batches]
        shares = [part.shard(b) for b in batches]
        mine = np.concatenate(shares)
        block = matrix[mine]
        indptr = block.indptr.astype(np.int64, copy=False)
        start = 0
        for share, total in zip(shares, totals):
            stop = start + len(share)
            lo, hi = int(indptr[start]), int(indptr[stop])
            yield share, SparseRows.from_arrays(
                indptr[start : stop + 1] - lo, block.indices[lo:hi], block.data[lo:hi],
                n_columns, dtype=dtype, device=device,
            ), total
            start = stop
