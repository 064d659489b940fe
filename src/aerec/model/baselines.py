"""Non-neural reference models every evaluation reports beside the trained model.

Each is fitted in closed form on a sparse users × movies CSR matrix of training ratings (rows
are users, columns movies, stored values ratings) with ``fit(train)``, and is then a
:class:`~aerec.model.base.RatingModel` like every other kind (:class:`Baseline`):

- ``predict_dense(indptr, indices, values)`` scores a batch of users **from their ratings**
  (a new user is just a row of ratings) → ``(batch, n_movies)`` float32;
- ``predict_known(user_rows, indptr, indices, values)`` is the same for users the model was
  fitted on, also identified by their training row (the bias baseline uses their fitted bias);
- ``predict_at(indptr, indices, values, rows, cols)`` predicts at (batch row, movie)
  positions → ``(k,)`` float64;
- the fitted numbers are buffers, so ``architecture()`` and ``state_dict()`` rebuild a fitted
  baseline (:func:`aerec.model.base.model_from_architecture`).

``predicts_ratings`` says whether scores are ratings (so RMSE applies), ``ranks_items`` whether
the ranking means anything (a global mean ranks every movie alike). Movies without training
ratings get a zero bias (predictions fall back towards the mean) instead of an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from aerec.metrics import clipped_rmse
from aerec.model.base import ModelBase, as_numpy, register

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


class Baseline(ModelBase):
    """What every model fitted in closed form shares: ``fit(train)``, a table ``name`` (its
    ``label``), the fitted shape (``n_users``, ``n_movies``) and the checks on the contract's
    arguments. Subclasses keep their fitted numbers in buffers."""

    name: ClassVar[str] = "baseline"

    def __init__(self, clip: Sequence[float] | None = None) -> None:
        super().__init__()
        self.n_users = 0
        self.n_movies = 0
        #: ``(min, max)`` predicted ratings are clamped to, or ``None``.
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))

    @property
    def label(self) -> str:
        """The table name (``name``)."""
        return self.name

    def fit(self, train: sp.spmatrix) -> Baseline:
        """Learn from ``train``, a ``(n_users, n_movies)`` CSR of ratings; returns ``self``."""
        raise NotImplementedError

    def predict_dense(self, indptr: Any, indices: Any, values: Any) -> torch.Tensor:
        """Scores of every movie for a batch of users given by their ratings (CSR arrays),
        ``(batch, n_movies)`` float32."""
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not self.n_movies:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(train) first")

    def _batch_size(self, indptr: Any, indices: Any) -> int:
        """The number of users in CSR arrays, after checking their movies are the model's."""
        self._check_fitted()
        columns = as_numpy(indices)
        if columns.size and (int(columns.min()) < 0 or int(columns.max()) >= self.n_movies):
            raise IndexError(f"a rated movie index is out of range for {self.n_movies} movies")
        return len(as_numpy(indptr)) - 1

    def _positions(self, indptr: Any, indices: Any, rows: Any, cols: Any
                   ) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` (batch rows) and ``cols`` (movies) as int64, refused when out of range."""
        batch = self._batch_size(indptr, indices)
        rows = as_numpy(rows, np.int64).reshape(-1)
        cols = as_numpy(cols, np.int64).reshape(-1)
        if rows.shape != cols.shape:
            raise ValueError(f"{rows.size} rows but {cols.size} columns")
        if rows.size and (int(rows.min()) < 0 or int(rows.max()) >= batch):
            raise IndexError(f"row index out of range for a batch of {batch} rows")
        if cols.size and (int(cols.min()) < 0 or int(cols.max()) >= self.n_movies):
            raise IndexError(f"column index out of range for {self.n_movies} movies")
        return rows, cols

    def _clipped(self, predictions: np.ndarray) -> np.ndarray:
        """``predictions`` clamped to ``clip`` (in place; the dtype is kept)."""
        if self.clip is not None:
            np.clip(predictions, *self.clip, out=predictions)
        return predictions

    def _fitted_shape(self, train: sp.spmatrix) -> sp.csr_matrix:
        csr = sp.csr_matrix(train)
        if csr.nnz == 0:
            raise ValueError("cannot fit a baseline on an empty training matrix")
        self.n_users, self.n_movies = csr.shape
        return csr

    def _shape_architecture(self) -> dict:
        return {"kind": self.kind, "n_users": self.n_users, "n_movies": self.n_movies}


def _clip_of(arch: dict) -> tuple[float, float] | None:
    clip = arch.get("clip")
    return None if clip is None else (float(clip[0]), float(clip[1]))


@register("global-mean", summary="the mean training rating for everyone (a baseline)")
class GlobalMean(Baseline):
    """Predict the mean training rating μ for everyone: ``r̂_ui = μ`` (buffer ``mean``)."""

    name = "global mean"
    ranks_items = False

    def __init__(self, clip: Sequence[float] | None = None) -> None:
        super().__init__(clip)
        self.register_buffer("mean", torch.tensor(math.nan, dtype=torch.float64))

    def fit(self, train: sp.spmatrix) -> GlobalMean:
        values = self._fitted_shape(train).data
        self.mean = torch.tensor(float(values.astype(np.float64).mean()), dtype=torch.float64)
        return self

    def architecture(self) -> dict:
        """``{"kind": "global-mean", "n_users", "n_movies", "clip"}``."""
        return {**self._shape_architecture(),
                "clip": None if self.clip is None else list(self.clip)}

    @classmethod
    def from_architecture(cls, arch: dict, **_: Any) -> GlobalMean:
        model = cls(clip=_clip_of(arch))
        model.n_users, model.n_movies = int(arch["n_users"]), int(arch["n_movies"])
        return model

    def predict_dense(self, indptr: Any, indices: Any, values: Any) -> torch.Tensor:
        """μ for every movie, ``(batch, n_movies)`` float32 (the ratings are not used)."""
        batch = self._batch_size(indptr, indices)
        out = np.full((batch, self.n_movies), float(self.mean), dtype=np.float32)
        return torch.from_numpy(self._clipped(out)).to(self.mean.device)

    def predict_at(
        self, indptr: Any, indices: Any, values: Any, rows: Any, cols: Any
    ) -> torch.Tensor:
        """μ at every position, ``(k,)`` float64."""
        rows, _ = self._positions(indptr, indices, rows, cols)
        out = np.full(rows.shape, float(self.mean), dtype=np.float64)
        return torch.from_numpy(self._clipped(out)).to(self.mean.device)


@register("bias", summary="the mean plus regularised user and movie biases (a baseline)")
class BiasBaseline(Baseline):
    """Global mean plus regularised user and movie biases: ``r̂_ui = μ + b_u + b_i``.

    Minimises ``Σ_(u,i) (r_ui − μ − b_u − b_i)² + λ (Σ_u b_u² + Σ_i b_i²)`` by alternating exact
    ridge solves (each a closed form, vectorised with ``np.bincount``)::

        b_i = Σ_{u ∈ R(i)} (r_ui − μ − b_u) / (λ + |R(i)|)
        b_u = Σ_{i ∈ R(u)} (r_ui − μ − b_i) / (λ + |R(u)|)

    starting from zero biases, for at most ``sweeps`` rounds, stopping early once no bias moves
    by more than ``tolerance`` (coordinate descent on a convex objective, so each sweep lowers
    it). Users or movies absent from training keep bias 0.

    A user scored from their ratings (``predict_dense``, ``predict_at``, a row outside the
    training rows in ``predict_known``) gets the second solve with the fitted movie biases —
    their ``b_u`` exactly as the last sweep of ``fit`` computes a training user's. Buffers:
    ``mean`` (μ), ``user_bias`` ``(n_users,)``, ``movie_bias`` ``(n_movies,)``, float64.
    """

    name = "bias baseline"

    def __init__(
        self, regularisation: float = 10.0, sweeps: int = 10, tolerance: float = 1e-6,
        clip: Sequence[float] | None = None,
    ) -> None:
        if regularisation < 0:
            raise ValueError(f"regularisation must be non-negative, got {regularisation}")
        super().__init__(clip)
        self.regularisation = float(regularisation)
        self.sweeps = int(sweeps)
        self.tolerance = float(tolerance)
        self._allocate(0, 0)
        #: Sweeps the last fit ran.
        self.sweeps_run = 0

    def _allocate(self, n_users: int, n_movies: int) -> None:
        self.n_users, self.n_movies = n_users, n_movies
        f64 = torch.float64
        self.register_buffer("mean", torch.tensor(math.nan, dtype=f64))
        self.register_buffer("user_bias", torch.zeros(n_users, dtype=f64))
        self.register_buffer("movie_bias", torch.zeros(n_movies, dtype=f64))

    def architecture(self) -> dict:
        """``{"kind": "bias", "n_users", "n_movies", "regularisation", "sweeps",
        "tolerance", "clip"}``."""
        return {
            **self._shape_architecture(), "regularisation": self.regularisation,
            "sweeps": self.sweeps, "tolerance": self.tolerance,
            "clip": None if self.clip is None else list(self.clip),
        }

    @classmethod
    def from_architecture(cls, arch: dict, **_: Any) -> BiasBaseline:
        model = cls(float(arch["regularisation"]), int(arch["sweeps"]),
                    float(arch["tolerance"]), clip=_clip_of(arch))
        model._allocate(int(arch["n_users"]), int(arch["n_movies"]))
        return model

    # ------------------------------------------------------------------ fitting
    def fit(self, train: sp.spmatrix) -> BiasBaseline:
        return self._fit_statistics(_BiasStatistics.of(train))

    def _fit_statistics(self, stats: _BiasStatistics) -> BiasBaseline:
        self.n_users, self.n_movies = stats.pattern.shape
        lam = self.regularisation
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
        self.mean = torch.tensor(stats.mean, dtype=torch.float64)
        self.user_bias = torch.from_numpy(user_bias)
        self.movie_bias = torch.from_numpy(movie_bias)
        return self

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
        """Fit on ``train`` for each λ in ``grid``, score RMSE on ``validation`` (the users'
        fitted biases: they are training users); pick the best.

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
            pred = cls(lam, sweeps)._fit_statistics(stats)._known_at(v_rows, v_cols)
            scores[float(lam)] = clipped_rmse(pred, v_values, clip)
        best = min(scores, key=lambda lam: (scores[lam], lam))
        return best, scores

    # ------------------------------------------------------------------ predicting
    def _arrays(self) -> tuple[float, np.ndarray, np.ndarray]:
        """``(μ, user biases, movie biases)`` as NumPy (views of the CPU buffers)."""
        self._check_fitted()
        return (float(self.mean), self.user_bias.detach().cpu().numpy(),
                self.movie_bias.detach().cpu().numpy())

    def fold_in(self, indptr: Any, indices: Any, values: Any) -> np.ndarray:
        """The user bias of each user in a batch given by their ratings (CSR arrays),
        ``(batch,)`` float64: ``b_u = Σ_{i ∈ R(u)} (r_ui − μ − b_i) / (λ + |R(u)|)`` with the
        fitted μ and movie biases — the closed form ``fit`` solves for its users."""
        batch = self._batch_size(indptr, indices)
        mean, _, movie_bias = self._arrays()
        indptr = as_numpy(indptr, np.int64)
        columns = as_numpy(indices, np.int64)
        counts = np.diff(indptr)
        residual = as_numpy(values, np.float64) - mean - movie_bias[columns]
        sums = np.bincount(np.repeat(np.arange(batch), counts), residual, minlength=batch)
        return sums / np.maximum(counts + self.regularisation, 1e-12)

    def _dense(self, user_bias: np.ndarray) -> torch.Tensor:
        """``μ + b_u + b_i`` for every movie, ``(batch, n_movies)`` float32 (ranking needs
        no more, and it halves the memory traffic)."""
        mean, _, movie_bias = self._arrays()
        user_part = (mean + user_bias).astype(np.float32)
        out = user_part[:, None] + movie_bias.astype(np.float32)[None, :]
        return torch.from_numpy(self._clipped(out)).to(self.movie_bias.device)

    def predict_dense(self, indptr: Any, indices: Any, values: Any) -> torch.Tensor:
        """``μ + b_u + b_i`` for every movie, ``b_u`` folded in from the ratings
        (:meth:`fold_in`), ``(batch, n_movies)`` float32."""
        return self._dense(self.fold_in(indptr, indices, values))

    def predict_known(
        self, user_rows: Any, indptr: Any, indices: Any, values: Any
    ) -> torch.Tensor:
        """``μ + b_u + b_i`` for every movie, ``(batch, n_movies)`` float32, with the fitted
        ``b_u`` of users inside the training rows (``user_rows``; the ratings are then not
        used) and ``b_u`` folded in from the ratings for any other row."""
        _, fitted, _ = self._arrays()
        users = as_numpy(user_rows, np.int64).reshape(-1)
        inside = (users >= 0) & (users < self.n_users)
        user_bias = np.zeros(len(users))
        user_bias[inside] = fitted[users[inside]]
        if not inside.all():
            user_bias[~inside] = self.fold_in(indptr, indices, values)[~inside]
        return self._dense(user_bias)

    def predict_at(
        self, indptr: Any, indices: Any, values: Any, rows: Any, cols: Any
    ) -> torch.Tensor:
        """``μ + b_u + b_i`` at ``(rows[j], cols[j])`` (batch row, movie), ``b_u`` folded in,
        ``(k,)`` float64."""
        rows, cols = self._positions(indptr, indices, rows, cols)
        mean, _, movie_bias = self._arrays()
        user_bias = self.fold_in(indptr, indices, values)
        out = mean + user_bias[rows] + movie_bias[cols]
        return torch.from_numpy(self._clipped(out)).to(self.movie_bias.device)

    def _known_at(self, user_rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``μ + b_u + b_i`` float64 for training users ``user_rows`` (fitted biases; 0 for
        rows or movies outside the fit) at movies ``cols``, clamped to ``clip``."""
        mean, user_bias, movie_bias = self._arrays()
        users = np.asarray(user_rows, dtype=np.int64)
        movies = np.asarray(cols, dtype=np.int64)
        return self._clipped(mean + _lookup(user_bias, users) + _lookup(movie_bias, movies))


@register("popularity", summary="the same most-liked movies for everyone (a top-N baseline)")
class Popularity(Baseline):
    """Rank movies by how many training users liked them; the same list for everyone.

    ``movie_score[i]`` (what :meth:`predict_dense` and :meth:`predict_at` return) is the number
    of training ratings of movie ``i`` that are ``≥ relevance_threshold`` (all its ratings
    when the threshold is ``None``). The ranking orders by that count, ties going to the movie
    with more ratings overall, then to the lower index: :meth:`rank_dense` returns that order
    as float32 scores ``rank_score`` (``n_movies − rank``, higher is better) — a ranking head
    of its own. The scores are counts, not ratings, so no RMSE is reported for this model.
    """

    name = "popularity"
    predicts_ratings = False
    has_ranking_head = True

    def __init__(self, relevance_threshold: float | None = None) -> None:
        super().__init__()
        self.relevance_threshold = (
            None if relevance_threshold is None else float(relevance_threshold)
        )
        self._allocate(0, 0)

    def _allocate(self, n_users: int, n_movies: int) -> None:
        self.n_users, self.n_movies = n_users, n_movies
        self.register_buffer("movie_score", torch.zeros(n_movies, dtype=torch.float64))
        self.register_buffer("rank_score", torch.zeros(n_movies, dtype=torch.float32))

    def architecture(self) -> dict:
        """``{"kind": "popularity", "n_users", "n_movies", "relevance_threshold"}``."""
        return {**self._shape_architecture(), "relevance_threshold": self.relevance_threshold}

    @classmethod
    def from_architecture(cls, arch: dict, **_: Any) -> Popularity:
        model = cls(arch.get("relevance_threshold"))
        model._allocate(int(arch["n_users"]), int(arch["n_movies"]))
        return model

    def fit(self, train: sp.spmatrix) -> Popularity:
        csr = self._fitted_shape(train)
        total = np.bincount(csr.indices, minlength=self.n_movies)
        if self.relevance_threshold is None:
            liked = total
        else:
            liked = np.bincount(
                csr.indices[csr.data >= self.relevance_threshold], minlength=self.n_movies
            )
        order = np.lexsort((np.arange(self.n_movies), -total, -liked))  # best first
        rank_score = np.empty(self.n_movies, dtype=np.float32)
        rank_score[order] = np.arange(self.n_movies, 0, -1, dtype=np.float32)
        self.movie_score = torch.from_numpy(liked.astype(np.float64))
        self.rank_score = torch.from_numpy(rank_score)
        return self

    def predict_dense(self, indptr: Any, indices: Any, values: Any) -> torch.Tensor:
        """Each movie's count of liked ratings, ``(batch, n_movies)`` float32 (the same row
        for everyone: the ratings are not used)."""
        batch = self._batch_size(indptr, indices)
        return self.movie_score.float().expand(batch, -1).clone()

    def rank_dense(self, indptr: Any, indices: Any, values: Any) -> torch.Tensor:
        """The popularity order as scores (``rank_score``), ``(batch, n_movies)`` float32."""
        batch = self._batch_size(indptr, indices)
        return self.rank_score.expand(batch, -1).clone()

    def predict_at(
        self, indptr: Any, indices: Any, values: Any, rows: Any, cols: Any
    ) -> torch.Tensor:
        """The count of liked ratings of movie ``cols[j]``, ``(k,)`` float64."""
        _, cols = self._positions(indptr, indices, rows, cols)
        return self.movie_score[torch.from_numpy(cols).to(self.movie_score.device)]


def _lookup(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``table[index]`` with 0 for indices outside the table (users or movies unseen in fit)."""
    inside = (index >= 0) & (index < len(table))
    out = np.zeros(index.shape, dtype=np.float64)
    out[inside] = table[index[inside]]
    return out
