"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): the top-N baseline.

A linear item-item autoencoder on the *implicit* matrix ``X`` (1 where a user rated a movie):
the weights ``B`` ``(n_movies, n_movies)`` minimise ``‖X − XB‖² + λ‖B‖²`` subject to
``diag(B) = 0`` (no movie may predict itself), which has the closed form::

    P = (XᵀX + λI)⁻¹,    B = I − P · diag(1 / diag(P))      (so B_ij = −P_ij / P_jj, B_jj = 0)

A user's scores are ``x_u B`` — from the movies they rated, never their stars — so EASE ranks
(what will this user watch?) but does not predict ratings. It is a baseline of
:mod:`aerec.model.baselines` (``fit(train)``, then the :class:`~aerec.model.base.RatingModel`
contract, ``B`` a buffer); its one hyper-parameter λ is chosen on the validation split by
:meth:`EASE.select_regularisation`.

Memory and time are those of the dense ``n_movies × n_movies`` Gram matrix and its inverse:
fine up to a few tens of thousands of movies (Netflix's 17,770: 1.3 GB in float32).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import torch

from aerec.model.base import RatingModel, as_numpy, csr_arrays, register
from aerec.model.baselines import Baseline

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


@register("ease", summary="EASE, an item-item linear autoencoder of which movies users rated "
          "(a top-N baseline)")
class EASE(Baseline):
    """EASE top-N model: ``score(u, ·) = x_u B`` with the closed-form ``B`` above.

    ``regularisation`` is λ (added to the Gram diagonal). After :meth:`fit`, the buffer
    ``weights`` is ``B`` float32 ``(n_movies, n_movies)`` with a zero diagonal. A user —
    known or new — is scored from the movies they rated (``x_u``), so ``predict_known`` is
    ``predict_dense``.
    """

    name: ClassVar[str] = "EASE"
    predicts_ratings: ClassVar[bool] = False

    def __init__(self, regularisation: float = 300.0) -> None:
        if not regularisation > 0:
            raise ValueError(f"regularisation must be positive, got {regularisation}")
        super().__init__()
        self.regularisation = float(regularisation)
        self._allocate(0, 0)

    def _allocate(self, n_users: int, n_movies: int) -> None:
        self.n_users, self.n_movies = n_users, n_movies
        self.register_buffer("weights", torch.zeros(n_movies, n_movies, dtype=torch.float32))

    def architecture(self) -> dict:
        """``{"kind": "ease", "n_users", "n_movies", "regularisation"}``."""
        return {**self._shape_architecture(), "regularisation": self.regularisation}

    @classmethod
    def from_architecture(cls, arch: dict, **_: Any) -> EASE:
        model = cls(float(arch["regularisation"]))
        model._allocate(int(arch["n_users"]), int(arch["n_movies"]))
        return model

    def fit(self, train: sp.spmatrix, gram: np.ndarray | None = None) -> EASE:
        """Learn ``B`` from ``train`` ``(n_users, n_movies)`` (only which entries are stored
        matters); returns ``self``. ``gram`` is :func:`gram_matrix` of ``train`` when the
        caller has it already (fitting several λ on one matrix); it is not modified."""
        x = _binary(train)
        if x.nnz == 0:
            raise ValueError("cannot fit EASE on an empty training matrix")
        p = _spd_inverse(gram_matrix(x) if gram is None else gram, self.regularisation)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self.n_users, self.n_movies = x.shape
        self.weights = torch.from_numpy(b.astype(np.float32))
        return self

    def _rated(self, indptr: Any, indices: Any) -> sp.csr_matrix:
        """The implicit rows ``x`` of a batch given by CSR arrays: ``(batch, n_movies)``
        float32, 1 at every rated movie."""
        batch = self._batch_size(indptr, indices)
        columns = as_numpy(indices)
        return sp.csr_matrix(
            (np.ones(len(columns), dtype=np.float32), columns, as_numpy(indptr)),
            shape=(batch, self.n_movies),
        )

    def predict_dense(self, indptr: Any, indices: Any, values: Any) -> torch.Tensor:
        """Scores ``x B`` ``(batch, n_movies)`` float32 from the movies each user rated (the
        stars in ``values`` are not used)."""
        x = self._rated(indptr, indices)
        return torch.from_numpy(np.asarray(x @ self.weights.cpu().numpy())).to(
            self.weights.device
        )

    def predict_at(
        self, indptr: Any, indices: Any, values: Any, rows: Any, cols: Any
    ) -> torch.Tensor:
        """Scores ``(x B)[rows[j], cols[j]]`` (batch row, movie), ``(k,)`` float64; costs
        ``k × n_movies``, never ``batch × n_movies``."""
        rows, cols = self._positions(indptr, indices, rows, cols)
        x = self._rated(indptr, indices)[rows]
        weights = self.weights.cpu().numpy()
        out = np.asarray(x.multiply(weights[:, cols].T).sum(axis=1)).ravel().astype(np.float64)
        return torch.from_numpy(out).to(self.weights.device)

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
            scores[float(lam)] = ranking_ndcg(model, train, relevant, k)
        best = max(scores, key=lambda lam: (scores[lam], -lam))
        return best, scores


def ranking_ndcg(
    model: RatingModel,
    given: sp.csr_matrix,
    relevant: sp.csr_matrix,
    k: int = 10,
    batch_size: int = 1024,
) -> float:
    """Mean NDCG@k of ``model.rank_dense`` over the users with a relevant entry in
    ``relevant`` ``(n_users, n_movies)``, each user scored from their row of ``given`` (what
    they bring), the movies in it excluded from the ranking — as :mod:`aerec.evaluate`
    computes it."""
    from aerec.metrics import RankingAccumulator, top_k_items

    relevant = sp.csr_matrix(relevant)
    users = np.flatnonzero(np.diff(relevant.indptr))
    accumulator = RankingAccumulator(k=k)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        rows = given[batch]
        scores = model.rank_dense(*csr_arrays(rows))
        accumulator.update_from_items(top_k_items(scores, k, rows), relevant[batch])
    return accumulator.ndcg


def relevant_entries(ratings: sp.spmatrix, threshold: float | None) -> sp.csr_matrix:
    """The entries of ``ratings`` that count as relevant (≥ ``threshold``; all when ``None``),
    as a 0/1 CSR with the others dropped."""
    out = sp.csr_matrix(ratings, dtype=np.float64, copy=True)
    keep = np.ones(out.nnz, bool) if threshold is None else out.data >= threshold - 1e-9
    out.data = keep.astype(np.float64)
    out.eliminate_zeros()
    return out
