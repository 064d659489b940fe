"""EASE (the top-N baseline) and the ranking head built on it.

Guards against: a closed form that is not the constrained least-squares solution (a diagonal
left non-zero lets every movie predict itself), scores computed from stars instead of from
which movies were rated, a λ search that peeks beyond the validation split, and a ranking head
that changes predicted ratings.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.model import AutoEncoder, RankedModel, model_from_architecture
from aerec.model.ease import EASE


def _implicit(seed: int = 0, n_users: int = 200, n_movies: int = 30) -> sp.csr_matrix:
    """Two groups of movies, each watched together by its own group of users (+ noise)."""
    rng = np.random.default_rng(seed)
    group_u = np.arange(n_users) % 2
    group_m = np.arange(n_movies) % 2
    p = np.where(group_u[:, None] == group_m[None, :], 0.6, 0.05)
    watched = rng.random((n_users, n_movies)) < p
    stars = rng.integers(1, 6, (n_users, n_movies)).astype(float)
    return sp.csr_matrix(np.where(watched, stars, 0.0))


def test_closed_form_is_the_zero_diagonal_least_squares_solution():
    x = _implicit()
    lam = 5.0
    model = EASE(lam).fit(x)
    b = model.weights.astype(np.float64)
    assert np.all(np.diag(b) == 0)
    xb = (x != 0).astype(float).toarray()
    for j in (0, 7, 29):  # column j regresses movie j on all the other movies
        others = np.delete(np.arange(30), j)
        a = xb[:, others]
        expected = np.linalg.solve(a.T @ a + lam * np.eye(29), a.T @ xb[:, j])
        np.testing.assert_allclose(b[others, j], expected, rtol=1e-4, atol=1e-6)


def test_scores_use_which_movies_were_rated_not_the_stars():
    x = _implicit()
    model = EASE(10.0).fit(x)
    row = x[3]
    doubled = row.copy()
    doubled.data = doubled.data * 0 + 1.0
    np.testing.assert_allclose(model.score_users([3], row), model.score_users([3], doubled))
    assert model.score_users(np.arange(4)).shape == (4, 30)
    assert (model.predicts_ratings, model.ranks_items) == (False, True)
    scores = model.score_users([0], sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, 2])), shape=(1, 30)))
    even, odd = scores[0, 4::2].mean(), scores[0, 5::2].mean()
    assert even > odd  # a user of the even group gets even movies
    np.testing.assert_allclose(
        model.predict_at(np.array([5, 6]), np.array([1, 2])),
        model.score_users(np.array([5, 6]))[[0, 1], [1, 2]], rtol=1e-5,
    )


def test_regularisation_is_chosen_on_validation_ndcg():
    x = _implicit(seed=1)
    rng = np.random.default_rng(0)
    in_val = rng.random(x.nnz) < 0.2
    coo = x.tocoo()
    train = sp.csr_matrix((coo.data[~in_val], (coo.row[~in_val], coo.col[~in_val])), shape=x.shape)
    val = sp.csr_matrix((coo.data[in_val], (coo.row[in_val], coo.col[in_val])), shape=x.shape)
    lam, grid = EASE.select_regularisation(train, val, grid=(1.0, 30.0, 1e5), k=5)
    assert set(grid) == {1.0, 30.0, 1e5} and lam == max(grid, key=grid.get)
    assert all(0 <= v <= 1 for v in grid.values())
    with pytest.raises(ValueError):
        EASE(0.0)


def test_ranking_head_leaves_ratings_alone_and_ranks_by_the_blend():
    x = _implicit()
    base = AutoEncoder(30, (6,), "sigmoid", "identity", 0.0)
    ease = EASE(10.0).fit(x)
    ranked = RankedModel(base, ease.weights, 0.5)
    rows = x[:5]
    args = (rows.indptr, rows.indices, rows.data.astype(np.float32))
    torch.testing.assert_close(ranked.predict_dense(*args), base.predict_dense(*args))
    expected = ease.score_users(np.arange(5), rows) + 0.5 * base.predict_dense(*args).numpy()
    np.testing.assert_allclose(ranked.rank_dense(*args).numpy(), expected, rtol=1e-5, atol=1e-5)
    rebuilt = model_from_architecture(ranked.architecture())
    rebuilt.load_state_dict(ranked.state_dict())
    torch.testing.assert_close(rebuilt.rank_dense(*args), ranked.rank_dense(*args))
