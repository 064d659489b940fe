"""Non-neural reference models every evaluation reports beside the autoencoder.

All work on a sparse users × movies CSR matrix (rows are users, columns movies, stored values
ratings) with NumPy/SciPy only, and share one small contract (:class:`Baseline`):

- ``fit(train)`` learns from a ``(n_users, n_movies)`` CSR of training ratings;
- ``predict_at(rows, cols)`` gives one prediction per (user row, movie column) pair;
- ``score_users(user_rows, inputs)`` gives ``(batch, n_movies)`` scores for ranking, where
  ``inputs`` is the ``(batch, n_movies)`` CSR of the ratings each user brings (unused by the
  models here, needed by item-item models such as EASE that score a user from its ratings).

``predicts_ratings`` says whether scores are ratings (so RMSE applies), ``ranks_items`` whether
the ranking means anything (a global mean ranks every movie alike). Users or movies unseen in
training get a zero bias (predictions fall back towards the mean) instead of an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

__all__ = [
    "DEFAULT_BIAS_REGULARISATION_GRID",
    "Baseline",
    "BiasBaseline",
    "GlobalMean",
    "Popularity",
]

#: λ values tried by :meth:`BiasBaseline.select_regularisation` (ratings per bias of shrinkage).
DEFAULT_BIAS_REGULARISATION_GRID: tuple[float, ...] = (0.0, 1.0, 3.0, 5.0, 10.0, 15.0, 25.0, 50.0)


def _entry_rows(csr: sp.csr_matrix) -> np.ndarray:
    """Row index of every stored entry of a CSR matrix, in storage order."""
    row_type = np.int32 if csr.shape[0] < np.iinfo(np.int32).max else np.int64
    return np.repeat(np.arange(csr.shape[0], dtype=row_type), np.diff(csr.indptr))


@dataclass(frozen=True)
class _BiasStatistics:
    """What the alternating bias solves need from a training matrix, computed once.

    ``pattern`` is the ``(n_users, n_movies)`` CSR with a 1 at every rating, so that
    ``pattern @ movie_bias`` sums a user's movie biases and ``pattern.T @ user_bias`` a movie's
    user biases: a sweep is two sparse matrix-vector products.
    """

    pattern: sp.csr_matrix
    mean: float
    user_residual_sum: np.ndarray  # Σ_i (r_ui − μ) per user, (n_users,)
    movie_residual_sum: np.ndarray  # Σ_u (r_ui − μ) per movie, (n_movies,)
    user_count: np.ndarray
    movie_count: np.ndarray

    @classmethod
    def of(cls, matrix: sp.spmatrix) -> _BiasStatistics:
        csr = sp.csr_matrix(matrix)
        if csr.nnz == 0:
            raise ValueError("cannot fit a baseline on an empty training matrix")
        n_users, n_movies = csr.shape
        values = csr.data.astype(np.float64)
        mean = float(values.mean())
        pattern = sp.csr_matrix(
            (np.ones(csr.nnz), csr.indices, csr.indptr), shape=csr.shape, copy=False
        )
        residual = values - mean
        return cls(
            pattern=pattern,
            mean=mean,
            user_residual_sum=np.bincount(_entry_rows(csr), residual, n_users),
            movie_residual_sum=np.bincount(csr.indices, residual, n_movies),
            user_count=np.diff(csr.indptr).astype(np.float64),
            movie_count=np.bincount(csr.indices, minlength=n_movies).astype(np.float64),
        )


class Baseline:
    """The contract shared by every baseline (and the EASE model to come)."""

    name: ClassVar[str] = "baseline"
    predicts_ratings: ClassVar[bool] = True
    ranks_items: ClassVar[bool] = True

    n_users: int = 0
    n_movies: int = 0

    def fit(self, train: sp.spmatrix) -> Baseline:
        """Learn from ``train``, a ``(n_users, n_movies)`` CSR of ratings; returns ``self``."""
        raise NotImplementedError

    def predict_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Predictions for pairs ``(rows[j], cols[j])``, shape ``(n,)`` float64."""
        raise NotImplementedError

    def score_users(self, user_rows: np.ndarray, inputs: sp.spmatrix | None = None) -> np.ndarray:
        """Scores of every movie for users ``user_rows``, shape ``(batch, n_movies)`` (float32
        for the models here: ranking needs no more, and it halves the memory traffic).

        ``inputs`` is the ``(batch, n_movies)`` CSR of each user's known ratings (row ``b`` for
        user ``user_rows[b]``); models that do not need it ignore it.
        """
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not self.n_movies:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(train) first")


class GlobalMean(Baseline):
    """Predict the mean training rating μ for everyone: ``r̂_ui = μ``."""

    name = "global mean"
    ranks_items = False

    def __init__(self) -> None:
        self.mean = math.nan

    def fit(self, train: sp.spmatrix) -> GlobalMean:
        values = sp.csr_matrix(train).data
        if values.size == 0:
            raise ValueError("cannot fit a baseline on an empty training matrix")
        self.n_users, self.n_movies = train.shape
        self.mean = float(values.astype(np.float64).mean())
        return self

    def predict_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return np.full(np.shape(rows), self.mean, dtype=np.float64)

    def score_users(self, user_rows: np.ndarray, inputs: sp.spmatrix | None = None) -> np.ndarray:
        self._check_fitted()
        return np.full((len(user_rows), self.n_movies), self.mean, dtype=np.float32)


class BiasBaseline(Baseline):
    """Global mean plus regularised user and movie biases: ``r̂_ui = μ + b_u + b_i``.

    Minimises ``Σ_(u,i) (r_ui − μ − b_u − b_i)² + λ (Σ_u b_u² + Σ_i b_i²)`` by alternating exact
    ridge solves (each a closed form, vectorised with ``np.bincount``)::

        b_i = Σ_{u ∈ R(i)} (r_ui − μ − b_u) / (λ + |R(i)|)
        b_u = Σ_{i ∈ R(u)} (r_ui − μ − b_i) / (λ + |R(u)|)

    starting from zero biases, for at most ``sweeps`` rounds, stopping early once no bias moves
    by more than ``tolerance`` (coordinate descent on a convex objective, so each sweep lowers
    it). Users or movies absent from training keep bias 0.
    """

    name = "bias baseline"

    def __init__(
        self, regularisation: float = 10.0, sweeps: int = 10, tolerance: float = 1e-6
    ) -> None:
        if regularisation < 0:
            raise ValueError(f"regularisation must be non-negative, got {regularisation}")
        self.regularisation = float(regularisation)
        self.sweeps = int(sweeps)
        self.tolerance = float(tolerance)
        self.mean = math.nan
        self.user_bias = np.zeros(0)
        self.movie_bias = np.zeros(0)
        #: Sweeps the last fit ran.
        self.sweeps_run = 0

    def fit(self, train: sp.spmatrix) -> BiasBaseline:
        return self._fit_statistics(_BiasStatistics.of(train))

    def _fit_statistics(self, stats: _BiasStatistics) -> BiasBaseline:
        self.n_users, self.n_movies = stats.pattern.shape
        lam = self.regularisation
        self.mean = stats.mean
        # λ = 0 with an unseen user/movie would divide 0 by 0; such biases stay 0.
        user_denom = np.maximum(stats.user_count + lam, 1e-12)
        movie_denom = np.maximum(stats.movie_count + lam, 1e-12)
        pattern, pattern_t = stats.pattern, stats.pattern.T
        user_bias = np.zeros(self.n_users)
        movie_bias = np.zeros(self.n_movies)
        self.sweeps_run = 0
        for _ in range(max(self.sweeps, 1)):
            new_movie = (stats.movie_residual_sum - pattern_t @ user_bias) / movie_denom
            new_user = (stats.user_residual_sum - pattern @ new_movie) / user_denom
            change = max(
                float(np.abs(new_movie - movie_bias).max(initial=0.0)),
                float(np.abs(new_user - user_bias).max(initial=0.0)),
            )
            movie_bias, user_bias = new_movie, new_user
            self.sweeps_run += 1
            if change <= self.tolerance:
                break
        self.user_bias, self.movie_bias = user_bias, movie_bias
        return self

    def predict_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        self._check_fitted()
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        return self.mean + _lookup(self.user_bias, rows) + _lookup(self.movie_bias, cols)

    def score_users(self, user_rows: np.ndarray, inputs: sp.spmatrix | None = None) -> np.ndarray:
        """``μ + b_u + b_i`` for every movie, ``(batch, n_movies)`` float32."""
        self._check_fitted()
        user_part = self.mean + _lookup(self.user_bias, np.asarray(user_rows, dtype=np.int64))
        return user_part.astype(np.float32)[:, None] + self.movie_bias.astype(np.float32)[None, :]

    @classmethod
    def select_regularisation(
        cls,
        train: sp.spmatrix,
        validation: sp.spmatrix,
        grid: Sequence[float] = DEFAULT_BIAS_REGULARISATION_GRID,
        *,
        sweeps: int = 10,
        clip: tuple[float, float] | None = None,
    ) -> tuple[float, dict[float, float]]:
        """Fit on ``train`` for each λ in ``grid``, score RMSE on ``validation``; pick the best.

        ``clip`` = ``(min, max)`` clips predictions to the rating scale before scoring, as the
        evaluation does. Returns ``(best λ, {λ: validation RMSE})``; ties go to the smaller λ.
        """
        held = sp.csr_matrix(validation)
        if held.nnz == 0:
            raise ValueError("cannot choose the regularisation on an empty validation matrix")
        v_rows, v_cols, v_values = _entry_rows(held), held.indices, held.data.astype(np.float64)
        stats = _BiasStatistics.of(train)  # once for the whole grid
        scores: dict[float, float] = {}
        for lam in grid:
            pred = cls(lam, sweeps)._fit_statistics(stats).predict_at(v_rows, v_cols)
            if clip is not None:
                pred = np.clip(pred, *clip)
            scores[float(lam)] = float(np.sqrt(np.mean((pred - v_values) ** 2)))
        best = min(scores, key=lambda lam: (scores[lam], lam))
        return best, scores


class Popularity(Baseline):
    """Rank movies by how many training users liked them; the same list for everyone.

    ``movie_score[i]`` (what :meth:`predict_at` returns) is the number of training ratings of
    movie ``i`` that are ``≥ relevance_threshold`` (all its ratings when the threshold is
    ``None``). The ranking orders by that count, ties going to the movie with more ratings
    overall, then to the lower index; :meth:`score_users` returns that order as float32 scores
    (``n_movies − rank``, higher is better). The scores are counts, not ratings, so no RMSE is
    reported for this model.
    """

    name = "popularity"
    predicts_ratings = False

    def __init__(self, relevance_threshold: float | None = None) -> None:
        self.relevance_threshold = relevance_threshold
        self.movie_score = np.zeros(0)
        self.rank_score = np.zeros(0, dtype=np.float32)

    def fit(self, train: sp.spmatrix) -> Popularity:
        csr = sp.csr_matrix(train)
        self.n_users, self.n_movies = csr.shape
        total = np.bincount(csr.indices, minlength=self.n_movies)
        if self.relevance_threshold is None:
            liked = total
        else:
            liked = np.bincount(
                csr.indices[csr.data >= self.relevance_threshold], minlength=self.n_movies
            )
        self.movie_score = liked.astype(np.float64)
        order = np.lexsort((np.arange(self.n_movies), -total, -liked))  # best first
        self.rank_score = np.empty(self.n_movies, dtype=np.float32)
        self.rank_score[order] = np.arange(self.n_movies, 0, -1, dtype=np.float32)
        return self

    def predict_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return _lookup(self.movie_score, np.asarray(cols, dtype=np.int64))

    def score_users(self, user_rows: np.ndarray, inputs: sp.spmatrix | None = None) -> np.ndarray:
        self._check_fitted()
        return np.broadcast_to(self.rank_score, (len(user_rows), self.n_movies)).copy()


def _lookup(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``table[index]`` with 0 for indices outside the table (users or movies unseen in fit)."""
    inside = (index >= 0) & (index < len(table))
    out = np.zeros(index.shape, dtype=np.float64)
    out[inside] = table[index[inside]]
    return out
