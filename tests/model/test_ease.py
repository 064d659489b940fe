"""EASE (the top-N baseline) and the ranking head built on it.

Guards against: a closed form that is not the constrained least-squares solution (a diagonal
left non-zero lets every movie predict itself), scores computed from stars instead of from
which movies were rated, a λ search that peeks beyond the validation split, a ranking head
that changes predicted ratings, ``predict_at`` disagreeing with ``predict_dense``, and a
fitted model that its checkpoint (architecture + state dict) does not rebuild.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.model import AutoEncoder, RankedModel, model_from_architecture
from aerec.model.base import csr_arrays
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
    b = model.weights.numpy().astype(np.float64)
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
    torch.testing.assert_close(model.predict_dense(*csr_arrays(row)),
                               model.predict_dense(*csr_arrays(doubled)))
    four = csr_arrays(x[:4])
    assert model.predict_dense(*four).shape == (4, 30)
    # a known user is scored from their ratings like anyone else
    torch.testing.assert_close(model.predict_known(np.arange(4), *four),
                               model.predict_dense(*four))
    assert (model.predicts_ratings, model.ranks_items) == (False, True)
    new = sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, 2])), shape=(1, 30))
    scores = model.predict_dense(*csr_arrays(new)).numpy()
    even, odd = scores[0, 4::2].mean(), scores[0, 5::2].mean()
    assert even > odd  # a user of the even group gets even movies
    # x B itself: the scores are sums of B's rows over the rated movies
    b = model.weights.numpy()
    np.testing.assert_allclose(scores[0], b[0] + b[2], rtol=1e-6)


def test_predict_at_equals_predict_dense_at_those_positions():
    x = _implicit(seed=2)
    model = EASE(10.0).fit(x)
    arrays = csr_arrays(x[[5, 6, 40]])
    dense = model.predict_dense(*arrays).numpy()
    rows, cols = np.array([0, 1, 2, 2, 0]), np.array([1, 2, 29, 0, 1])
    at = model.predict_at(*arrays, rows, cols)
    assert at.shape == (5,)
    np.testing.assert_allclose(at.numpy(), dense[rows, cols], rtol=1e-5, atol=1e-6)
    with pytest.raises(IndexError):
        model.predict_at(*arrays, np.array([3]), np.array([0]))  # batch row out of range
    with pytest.raises(IndexError):
        model.predict_at(*arrays, np.array([0]), np.array([30]))  # movie out of range


def test_state_dict_round_trip_rebuilds_the_fitted_model():
    x = _implicit(seed=3)
    model = EASE(30.0).fit(x)
    rebuilt = model_from_architecture(model.architecture())
    assert isinstance(rebuilt, EASE) and rebuilt.architecture() == model.architecture()
    rebuilt.load_state_dict(model.state_dict())
    arrays = csr_arrays(x[:7])
    assert torch.equal(rebuilt.predict_dense(*arrays), model.predict_dense(*arrays))
    rows, cols = np.array([0, 6, 3]), np.array([4, 0, 29])
    assert torch.equal(rebuilt.predict_at(*arrays, rows, cols),
                       model.predict_at(*arrays, rows, cols))


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
    expected = (ease.predict_dense(*args).numpy()
                + 0.5 * base.predict_dense(*args).numpy())
    np.testing.assert_allclose(ranked.rank_dense(*args).numpy(), expected, rtol=1e-5, atol=1e-5)
    # predictions the caller has already are used, not computed a second time
    given = ranked.rank_dense(*args, predictions=base.predict_dense(*args))
    torch.testing.assert_close(given, ranked.rank_dense(*args))
    rebuilt = model_from_architecture(ranked.architecture())
    rebuilt.load_state_dict(ranked.state_dict())
    torch.testing.assert_close(rebuilt.rank_dense(*args), ranked.rank_dense(*args))
