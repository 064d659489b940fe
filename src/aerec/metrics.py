"""Evaluation metrics as accumulators of sufficient statistics.

Metrics over many batches are computed from accumulated sums, never by averaging batch averages
(torchrec style): :class:`RatingErrorAccumulator` keeps the sum of squared errors, the sum of
absolute errors and the count; :class:`RankingAccumulator` keeps, over the users that have at
least one relevant held-out item, the sums of their Precision@k, Recall@k and NDCG@k. Both merge,
so per-batch or per-process accumulators combine into the one-shot value.

Everything works on whole batches at once (``(batch, k)`` arrays); nothing loops over ratings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from aerec.data.ratings import RatingScale

__all__ = [
    "RankingAccumulator",
    "RatingErrorAccumulator",
    "clipped_rmse",
    "hits_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "recall_at_k",
    "top_k_items",
]


def _as_numpy(values: object) -> np.ndarray:
    """A NumPy view of an array-like or a (CPU or device) torch tensor, as float64."""
    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(values, dtype=np.float64)


@dataclass
class RatingErrorAccumulator:
    """Sufficient statistics for rating-prediction error.

    With predictions ``p_j`` clipped to the rating scale (when ``scale`` is given) and true
    ratings ``r_j`` over all ``n`` accumulated pairs::

        RMSE = sqrt( Σ_j (p_j − r_j)² / n )
        MAE  =       Σ_j |p_j − r_j|  / n

    Both are ``nan`` while nothing has been accumulated.
    """

    scale: RatingScale | None = None
    sum_squared_error: float = 0.0
    sum_absolute_error: float = 0.0
    count: int = 0

    def update(self, predictions: object, truth: object) -> None:
        """Add one batch of predictions and true ratings (equal shapes, any layout).

        ``predictions`` and ``truth`` may be NumPy arrays or torch tensors; sums are kept in
        float64 so that millions of ratings accumulate without float32 drift.
        """
        pred = _as_numpy(predictions).ravel()
        true = _as_numpy(truth).ravel()
        if pred.shape != true.shape:
            raise ValueError(f"predictions {pred.shape} and truth {true.shape} differ in size")
        if self.scale is not None:
            pred = np.clip(pred, self.scale.minimum, self.scale.maximum)
        err = pred - true
        self.sum_squared_error += float(np.dot(err, err))
        self.sum_absolute_error += float(np.abs(err).sum())
        self.count += int(err.size)

    def merge(self, other: RatingErrorAccumulator) -> RatingErrorAccumulator:
        """Add another accumulator's sums into this one (in place); returns ``self``."""
        self.sum_squared_error += other.sum_squared_error
        self.sum_absolute_error += other.sum_absolute_error
        self.count += other.count
        return self

    @property
    def mse(self) -> float:
        """Mean squared error, ``Σ (p − r)² / n``."""
        return self.sum_squared_error / self.count if self.count else math.nan

    @property
    def rmse(self) -> float:
        """Root mean squared error, ``sqrt(Σ (p − r)² / n)``."""
        return math.sqrt(self.mse) if self.count else math.nan

    @property
    def mae(self) -> float:
        """Mean absolute error, ``Σ |p − r| / n``."""
        return self.sum_absolute_error / self.count if self.count else math.nan


def clipped_rmse(
    predicted: object, truth: object, clip: tuple[float, float] | None
) -> float:
    """RMSE of predictions clipped to the rating scale, in one shot::

        RMSE = sqrt( mean_j (clip(p_j, lo, hi) − r_j)² )          (no clipping when ``clip``
                                                                   is ``None``)

    ``predicted`` and ``truth`` are equal-sized arrays or tensors (computed in float64);
    ``nan`` when they are empty. Over many batches, accumulate a
    :class:`RatingErrorAccumulator` instead (the same value up to rounding).
    """
    pred = _as_numpy(predicted).ravel()
    true = _as_numpy(truth).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"predictions {pred.shape} and truth {true.shape} differ in size")
    if not pred.size:
        return math.nan
    if clip is not None:
        pred = np.clip(pred, *clip)
    return float(np.sqrt(np.mean((pred - true) ** 2)))


# --------------------------------------------------------------------------- ranking


def _discounts(k: int) -> np.ndarray:
    """``1 / log2(i + 1)`` for ranks ``i = 1..k``, shape ``(k,)``."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def hits_at_k(top_items: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Which recommended items are relevant, shape ``(batch, k)`` bool.

    ``top_items`` is ``(batch, k)`` movie indices, best first (``-1`` marks an empty slot, which
    never hits); ``relevant`` is a ``(batch, n_movies)`` CSR matrix whose stored entries
    (whatever their value) are row ``b``'s relevant movies. Vectorised: each (row, movie) pair
    becomes one int64 key, looked up among the relevant keys with one sorted search.
    """
    top = np.asarray(top_items, dtype=np.int64)
    if top.ndim != 2 or top.shape[0] != relevant.shape[0]:
        raise ValueError(f"top_items {top.shape} does not match relevant {relevant.shape}")
    rel = relevant.tocsr()
    n_cols = np.int64(max(rel.shape[1], 1))
    rel_rows = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr))
    rel_keys = np.sort(rel_rows * n_cols + rel.indices.astype(np.int64))
    keys = np.arange(top.shape[0], dtype=np.int64)[:, None] * n_cols + top
    if rel_keys.size == 0:
        return np.zeros(top.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(rel_keys, keys), rel_keys.size - 1)
    return (rel_keys[pos] == keys) & (top >= 0)


def precision_at_k(hits: np.ndarray) -> np.ndarray:
    """Per-user Precision@k, ``hits_u / k``, from ``hits`` ``(batch, k)``; → ``(batch,)``."""
    hits = np.asarray(hits, dtype=bool)
    return hits.sum(axis=1) / float(hits.shape[1])


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """Per-user Recall@k, ``hits_u / n_relevant_u`` → ``(batch,)``; ``nan`` without relevant items.

    ``hits`` is ``(batch, k)`` bool, ``n_relevant`` the number of relevant held-out items per user.
    """
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_rel > 0, np.asarray(hits, dtype=bool).sum(axis=1) / n_rel, np.nan)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """Per-user NDCG@k with binary relevance → ``(batch,)``; ``nan`` where nothing is relevant.

    ::

        DCG@k  = Σ_{i=1..k}            rel_i / log2(i + 1)
        IDCG@k = Σ_{i=1..min(k, n_rel)}    1 / log2(i + 1)
        NDCG@k = DCG@k / IDCG@k

    where ``rel_i`` is 1 when the item at rank ``i`` is relevant.
    """
    hits = np.asarray(hits, dtype=bool)
    k = hits.shape[1]
    disc = _discounts(k)
    dcg = hits @ disc
    ideal_prefix = np.concatenate([[0.0], np.cumsum(disc)])
    n_rel = np.asarray(n_relevant, dtype=np.int64)
    idcg = ideal_prefix[np.clip(n_rel, 0, k)]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n_rel > 0, dcg / idcg, np.nan)


@dataclass
class RankingAccumulator:
    """Top-k ranking metrics summed over users with at least one relevant held-out item.

    For each such user ``u`` with ``hits_u`` relevant items among its top ``k`` and ``n_u``
    relevant held-out items::

        Precision@k = (1/U) Σ_u hits_u / k
        Recall@k    = (1/U) Σ_u hits_u / n_u
        NDCG@k      = (1/U) Σ_u DCG_u@k / IDCG_u@k     (see :func:`ndcg_at_k`)

    ``U`` is the number of users counted. Users with no relevant held-out item are skipped (they
    have no defined recall or NDCG). Metrics are ``nan`` while ``U`` is 0.
    """

    k: int = 10
    sum_precision: float = 0.0
    sum_recall: float = 0.0
    sum_ndcg: float = 0.0
    users: int = 0
    _disc: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        self._disc = _discounts(self.k)

    def update(self, hits: np.ndarray, n_relevant: np.ndarray) -> None:
        """Add a batch: ``hits`` ``(batch, k)`` bool, ``n_relevant`` ``(batch,)`` counts.

        Rows with ``n_relevant == 0`` are ignored.
        """
        hits = np.asarray(hits, dtype=bool)
        if hits.ndim != 2 or hits.shape[1] != self.k:
            raise ValueError(f"hits must have shape (batch, {self.k}), got {hits.shape}")
        n_rel = np.asarray(n_relevant, dtype=np.int64)
        keep = n_rel > 0
        hits, n_rel = hits[keep], n_rel[keep]
        if not len(n_rel):
            return
        self.sum_precision += float(precision_at_k(hits).sum())
        self.sum_recall += float(recall_at_k(hits, n_rel).sum())
        self.sum_ndcg += float(ndcg_at_k(hits, n_rel).sum())
        self.users += len(n_rel)

    def update_from_items(self, top_items: np.ndarray, relevant: sp.csr_matrix) -> None:
        """Add a batch from ranked ``top_items`` ``(batch, k)`` and a ``(batch, n_movies)`` CSR
        of relevant held-out items (see :func:`hits_at_k`)."""
        self.update(hits_at_k(top_items, relevant), np.diff(relevant.tocsr().indptr))

    def merge(self, other: RankingAccumulator) -> RankingAccumulator:
        """Add another accumulator's sums into this one (in place); returns ``self``."""
        if other.k != self.k:
            raise ValueError(f"cannot merge metrics at k={other.k} into k={self.k}")
        self.sum_precision += other.sum_precision
        self.sum_recall += other.sum_recall
        self.sum_ndcg += other.sum_ndcg
        self.users += other.users
        return self

    @property
    def precision(self) -> float:
        """Precision@k averaged over counted users."""
        return self.sum_precision / self.users if self.users else math.nan

    @property
    def recall(self) -> float:
        """Recall@k averaged over counted users."""
        return self.sum_recall / self.users if self.users else math.nan

    @property
    def ndcg(self) -> float:
        """NDCG@k averaged over counted users."""
        return self.sum_ndcg / self.users if self.users else math.nan


def top_k_items(
    scores: object, k: int, exclude: sp.csr_matrix | None = None
) -> np.ndarray:
    """The ``k`` best-scored movies per row, best first, shape ``(batch, k)`` int64.

    ``scores`` is ``(batch, n_movies)`` (NumPy or torch). Movies stored in ``exclude`` (a
    ``(batch, n_movies)`` CSR, e.g. what each user already rated) are never returned; slots left
    when a row has fewer than ``k`` eligible movies hold ``-1``. Ties are broken towards the lower
    movie index, so results are reproducible.
    """
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().numpy()  # type: ignore[union-attr]
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be (batch, n_movies), got shape {s.shape}")
    # One working copy (excluded movies are overwritten); float32 scores stay float32.
    s = np.array(s, dtype=np.result_type(s.dtype, np.float32), copy=True)
    s[np.isnan(s)] = -np.inf
    batch, n_movies = s.shape
    if exclude is not None:
        ex = exclude.tocsr()
        if ex.shape != s.shape:
            raise ValueError(f"exclude {ex.shape} does not match scores {s.shape}")
        rows = np.repeat(np.arange(batch), np.diff(ex.indptr))
        s[rows, ex.indices] = -np.inf
    kk = min(k, n_movies)
    if kk == 0 or batch == 0:
        return np.full((batch, k), -1, dtype=np.int64)
    # The k-th best score per row (a values-only partition: no index arrays), then every movie
    # scoring at least that is a candidate — more than k when scores tie — and only the
    # candidates are sorted by (row, -score, movie index), so ties go to the lower index
    # deterministically without sorting whole rows.
    if kk < n_movies:
        kth = np.partition(s, n_movies - kk, axis=1)[:, n_movies - kk : n_movies - kk + 1]
    else:
        kth = np.full((batch, 1), -np.inf, dtype=s.dtype)
    cand_rows, cand_cols = np.nonzero(s >= kth)
    cand_scores = s[cand_rows, cand_cols]
    order = np.lexsort((cand_cols, -cand_scores, cand_rows))
    cand_rows, cand_cols = cand_rows[order], cand_cols[order]
    row_start = np.concatenate([[0], np.cumsum(np.bincount(cand_rows, minlength=batch))[:-1]])
    rank_in_row = np.arange(len(cand_rows)) - row_start[cand_rows]
    top = cand_cols[rank_in_row < kk].reshape(batch, kk)
    top_scores = np.take_along_axis(s, top, axis=1)
    top = np.where(np.isneginf(top_scores), -1, top).astype(np.int64)
    if kk < k:
        top = np.concatenate([top, np.full((batch, k - kk), -1, dtype=np.int64)], axis=1)
    return top
