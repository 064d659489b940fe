"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): the top-N baseline.

A linear item-item autoencoder on the *implicit* matrix ``X`` (1 where a user rated a movie):
the weights ``B`` ``(n_movies, n_movies)`` minimise ``‖X − XB‖² + λ‖B‖²`` subject to
``diag(B) = 0`` (no movie may predict itself), which has the closed form::

    P = (XᵀX + λI)⁻¹,    B = I − P · diag(1 / diag(P))      (so B_ij = −P_ij / P_jj, B_jj = 0)

A user's scores are ``x_u B`` — from the movies they rated, never their stars — so EASE ranks
(what will this user watch?) but does not predict ratings. It shares the baseline contract of
:mod:`aerec.model.baselines` (``fit`` / ``predict_at`` / ``score_users``); its one
hyper-parameter λ is chosen on the validation split by :meth:`EASE.select_regularisation`.

Memory and time are those of the dense ``n_movies × n_movies`` Gram matrix and its inverse:
fine up to a few tens of thousands of movies (Netflix's 17,770: 1.3 GB in float32).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp

__all__ = ["DEFAULT_EASE_REGULARISATION_GRID", "EASE", "ranking_ndcg", "relevant_entries"]

#: λ values tried by :meth:`EASE.select_regularisation`.
DEFAULT_EASE_REGULARISATION_GRID: tuple[float, ...] = (
    10.0, 30.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 3000.0,
)


#: Above this many movies the Gram matrix is inverted in float32 (half the time and memory).
FLOAT32_ABOVE = 2000


def _spd_inverse(gram: np.ndarray, ridge: float) -> np.ndarray:
    """``(gram + ridge·I)⁻¹`` of a symmetric positive semi-definite ``gram`` by Cholesky
    (LAPACK potrf/potri: about a quarter of the work of a general inverse)."""
    dtype = np.float32 if gram.shape[0] > FLOAT32_ABOVE else np.float64
    a = np.array(gram, dtype=dtype, order="F")
    a[np.diag_indices_from(a)] += ridge
    potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (a,))
    factor, info = potrf(a, lower=True, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"Gram matrix is not positive definite (potrf info {info})")
    inverse, info = potri(factor, lower=True, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverse failed (potri info {info})")
    lower = np.tril(inverse)
    return (lower + np.tril(inverse, -1).T).astype(np.float64, copy=False)


def gram_matrix(matrix: sp.spmatrix) -> np.ndarray:
    """``XᵀX`` of the binary rated/not-rated matrix ``X`` of ``matrix``: dense
    ``(n_movies, n_movies)`` co-rating counts."""
    x = _binary(matrix)
    return (x.T @ x).toarray()


def _binary(matrix: sp.spmatrix) -> sp.csr_matrix:
    """The implicit matrix: 1.0 at every stored entry (whatever the rating)."""
    csr = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    csr.data[:] = 1.0
    return csr


class EASE:
    """EASE top-N model: ``score(u, ·) = x_u B`` with the closed-form ``B`` above.

    ``regularisation`` is λ (added to the Gram diagonal). After :meth:`fit`, ``weights`` is
    ``B`` float32 ``(n_movies, n_movies)`` with a zero diagonal.
    """

    name: ClassVar[str] = "EASE"
    predicts_ratings: ClassVar[bool] = False
    ranks_items: ClassVar[bool] = True

    def __init__(self, regularisation: float = 300.0) -> None:
        if not regularisation > 0:
            raise ValueError(f"regularisation must be positive, got {regularisation}")
        self.regularisation = float(regularisation)
        self.weights = np.zeros((0, 0), dtype=np.float32)
        self.n_users = 0
        self.n_movies = 0
        self._train: sp.csr_matrix | None = None

    def fit(self, train: sp.spmatrix, gram: np.ndarray | None = None) -> EASE:
        """Learn ``B`` from ``train`` ``(n_users, n_movies)`` (only which entries are stored
        matters); returns ``self``. ``gram`` is :func:`gram_matrix` of ``train`` when the
        caller has it already (fitting several λ on one matrix); it is not modified."""
        x = _binary(train)
        if x.nnz == 0:
            raise ValueError("cannot fit EASE on an empty training matrix")
        self.n_users, self.n_movies = x.shape
        p = _spd_inverse(gram_matrix(x) if gram is None else gram, self.regularisation)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self.weights = b.astype(np.float32)
        self._train = x.astype(np.float32).tocsr()
        return self

    def _check_fitted(self) -> None:
        if not self.n_movies:
            raise RuntimeError("EASE is not fitted; call fit(train) first")

    def score_users(self, user_rows: np.ndarray, inputs: sp.spmatrix | None = None) -> np.ndarray:
        """Scores ``(batch, n_movies)`` float32: ``x_b B`` for each user's ``inputs`` row (the
        movies they rated; default their training row)."""
        self._check_fitted()
        if inputs is None:
            assert self._train is not None
            inputs = self._train[np.asarray(user_rows, dtype=np.int64)]
        x = _binary(inputs).astype(np.float32)
        if x.shape[1] != self.n_movies:
            raise ValueError(f"inputs have {x.shape[1]} movies, the model {self.n_movies}")
        return np.asarray(x @ self.weights)

    def predict_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Scores at ``(rows[j], cols[j])`` for training users (their training rows as input),
        ``(n,)`` float64."""
        self._check_fitted()
        assert self._train is not None
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        x = self._train[rows]
        return np.asarray(x.multiply(self.weights[:, cols].T).sum(axis=1)).ravel().astype(
            np.float64
        )

    @classmethod
    def select_regularisation(
        cls,
        train: sp.spmatrix,
        validation: sp.spmatrix,
        grid: Sequence[float] = DEFAULT_EASE_REGULARISATION_GRID,
        *,
        k: int = 10,
        relevance_threshold: float | None = None,
    ) -> tuple[float, dict[float, float]]:
        """Fit on ``train`` for each λ in ``grid``; score NDCG@k of the validation ratings
        (≥ ``relevance_threshold`` when given), ranking movies the user has not rated in
        ``train``. Returns ``(best λ, {λ: validation NDCG@k})``; ties go to the smaller λ."""
        train = sp.csr_matrix(train)
        relevant = relevant_entries(validation, relevance_threshold)
        if relevant.nnz == 0:
            raise ValueError("cannot choose λ: no relevant validation ratings")
        scores: dict[float, float] = {}
        gram = gram_matrix(train)
        for lam in grid:
            model = cls(lam).fit(train, gram)
            scores[float(lam)] = ranking_ndcg(model.score_users, train, relevant, k)
        best = max(scores, key=lambda lam: (scores[lam], -lam))
        return best, scores


def ranking_ndcg(
    score: Callable[[np.ndarray, sp.csr_matrix], np.ndarray],
    given: sp.csr_matrix,
    relevant: sp.csr_matrix,
    k: int = 10,
    batch_size: int = 1024,
) -> float:
    """Mean NDCG@k of ``score(user_rows, given_rows) → (batch, n_movies)`` over the users with
    a relevant entry in ``relevant`` ``(n_users, n_movies)``, the movies in ``given`` (what
    each user brings) excluded from the ranking — as :mod:`aerec.evaluate` computes it."""
    from aerec.metrics import RankingAccumulator, top_k_items

    relevant = sp.csr_matrix(relevant)
    users = np.flatnonzero(np.diff(relevant.indptr))
    accumulator = RankingAccumulator(k=k)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        rows = given[batch]
        accumulator.update_from_items(top_k_items(score(batch, rows), k, rows), relevant[batch])
    return accumulator.ndcg


def relevant_entries(ratings: sp.spmatrix, threshold: float | None) -> sp.csr_matrix:
    """The entries of ``ratings`` that count as relevant (≥ ``threshold``; all when ``None``),
    as a 0/1 CSR with the others dropped."""
    out = sp.csr_matrix(ratings, dtype=np.float64, copy=True)
    keep = np.ones(out.nnz, bool) if threshold is None else out.data >= threshold - 1e-9
    out.data = keep.astype(np.float64)
    out.eliminate_zeros()
    return out
