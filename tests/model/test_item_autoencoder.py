"""The item-based autoencoder: trains on movies' rating columns, scores users by fold-in.

Guards against: a fold-in that is not the ridge regression it claims (wrong penalty, intercept
or dual/primal mix-up), ``predict_at`` disagreeing with ``predict_dense``, an item model that
cannot rank a new user's planted taste, and codes computed from the wrong matrix orientation.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.config import TrainConfig
from aerec.model import ItemAutoEncoder, model_from_architecture
from aerec.model import item_autoencoder as item_module
from aerec.train.trainer import Trainer, build_model, oriented

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_model(n_movies=25, n_users=40, width=6, **options) -> tuple[ItemAutoEncoder, sp.csr_matrix]:
    rng = np.random.default_rng(0)
    mask = rng.random((n_users, n_movies)) < 0.4
    ratings = sp.csr_matrix(np.where(mask, rng.integers(1, 6, (n_users, n_movies)), 0).astype(float))
    model = ItemAutoEncoder(n_movies, n_users, (width,), "sigmoid", "identity",
                            generator=torch.Generator().manual_seed(1), dtype=torch.float64,
                            **options)
    model.fit_centring(oriented(ratings, "item"))
    model.prepare_inference(oriented(ratings, "item"), fold_in_l2=0.7)
    return model, ratings


def _exact_ridge(codes: np.ndarray, cols: np.ndarray, targets: np.ndarray, lam: float):
    a = np.hstack([codes[cols], np.ones((len(cols), 1))])
    return np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ targets)


@pytest.mark.parametrize("n_rated", [3, 15])  # fewer / more ratings than the code is wide
def test_fold_in_is_the_ridge_regression_on_movie_codes(n_rated):
    model, _ = _random_model(width=6)
    rng = np.random.default_rng(n_rated)
    cols = np.sort(rng.choice(25, n_rated, replace=False))
    stars = rng.integers(1, 6, n_rated).astype(float)
    predicted = model.predict_dense(np.array([0, n_rated]), cols, stars)[0].numpy()
    w = _exact_ridge(model.movie_codes.numpy(), cols, stars, 0.7)
    expected = np.hstack([model.movie_codes.numpy(), np.ones((25, 1))]) @ w
    np.testing.assert_allclose(predicted, expected, rtol=1e-8, atol=1e-8)


def test_fold_in_with_biases_centring_regresses_the_residual():
    model, ratings = _random_model(centring="biases", bias_regularisation=2.0)
    row = ratings[4]
    cols, stars = row.indices.astype(np.int64), row.data
    offsets = model.movie_offsets.numpy()
    b_user = np.sum(stars - offsets[cols]) / (2.0 + len(cols))
    w = _exact_ridge(model.movie_codes.numpy(), cols, stars - offsets[cols] - b_user, 0.7)
    expected = np.hstack([model.movie_codes.numpy(), np.ones((25, 1))]) @ w + offsets + b_user
    predicted = model.predict_dense(row.indptr, row.indices, row.data)[0].numpy()
    np.testing.assert_allclose(predicted, expected, rtol=1e-8, atol=1e-8)


def test_batches_chunks_and_predict_at_agree(monkeypatch):
    model, ratings = _random_model()
    dense = model.predict_dense(ratings.indptr, ratings.indices, ratings.data)
    monkeypatch.setattr(item_module, "FOLD_IN_BUDGET", 200)  # force many small chunks
    chunked = model.predict_dense(ratings.indptr, ratings.indices, ratings.data)
    torch.testing.assert_close(chunked, dense)
    one = ratings[7]
    torch.testing.assert_close(model.predict_dense(one.indptr, one.indices, one.data)[0], dense[7])
    rows, cols = np.array([3, 0, 3, 39]), np.array([24, 1, 1, 0])
    at = model.predict_at(ratings.indptr, ratings.indices, ratings.data, rows, cols)
    torch.testing.assert_close(at, dense[torch.as_tensor(rows), torch.as_tensor(cols)])
    empty = model.predict_dense(np.array([0, 0]), np.array([], np.int64), np.array([]))
    assert torch.all(empty == 0)  # no ratings: nothing to fold in (uncentred: output 0)


def test_non_identity_output_fold_in_reaches_a_stationary_point():
    model, ratings = _random_model(width=5)
    model.output_activation = "elu"
    row = ratings[2]
    inputs = model._inputs(row.indptr, row.indices, row.data)
    w, _ = model.fold_in(inputs)
    w = w[0].clone().requires_grad_(True)
    codes = torch.cat([model.movie_codes, torch.ones(25, 1, dtype=torch.float64)], 1)
    a = codes[torch.as_tensor(row.indices.astype(np.int64))]
    y = torch.as_tensor(row.data)
    objective = ((torch.nn.functional.elu(a @ w) - y) ** 2).sum() + 0.7 * (w**2).sum()
    (grad,) = torch.autograd.grad(objective, w)
    assert float(grad.abs().max()) < 1e-6


def test_architecture_round_trip_keeps_codes_and_penalty():
    model, ratings = _random_model(centring="biases")
    rebuilt = model_from_architecture(model.architecture(), dtype=torch.float64)
    rebuilt.load_state_dict(model.state_dict())
    assert isinstance(rebuilt, ItemAutoEncoder) and rebuilt.n_users == 40
    torch.testing.assert_close(
        rebuilt.predict_dense(ratings.indptr, ratings.indices, ratings.data),
        model.predict_dense(ratings.indptr, ratings.indices, ratings.data),
    )


def _planted(n_users: int = 120, n_movies: int = 40, seed: int = 0) -> sp.csr_matrix:
    """Two taste groups: group-g users love movies of group g (5★) and dislike the others
    (1–2★); each user rates about half the movies."""
    rng = np.random.default_rng(seed)
    user_group = np.arange(n_users) % 2
    movie_group = np.arange(n_movies) % 2
    likes = user_group[:, None] == movie_group[None, :]
    stars = np.where(likes, 5.0, rng.integers(1, 3, (n_users, n_movies)))
    observed = rng.random((n_users, n_movies)) < 0.5
    return sp.csr_matrix(np.where(observed, stars, 0.0))


def test_item_model_learns_and_ranks_a_new_users_planted_taste():
    ratings = _planted()
    config = TrainConfig(
        orientation="item", layers=(16,), activation="sigmoid", output_activation="identity",
        dropout=0.0, lr=0.02, l2=1.0, batch_size=64, epochs=60, seed=0, threads=1,
    )
    model = build_model(config, 40, 120)
    empty = sp.csr_matrix(ratings.shape)
    trainer = Trainer(model, config, ratings, empty)
    assert trainer.train_matrix.shape == (40, 120)  # rows are movies
    first, _ = trainer.train_epoch()
    for _ in range(59):
        loss, _ = trainer.train_epoch()
    assert loss < first / 5
    model.prepare_inference(oriented(ratings, "item"), fold_in_l2=1.0)
    # a new user: loves three odd movies, dislikes two even ones
    cols = np.array([1, 2, 3, 6, 7])
    stars = np.array([5.0, 1.0, 5.0, 2.0, 5.0])
    scores = model.predict_dense(np.array([0, 5]), cols, stars)[0].numpy()
    unrated = np.setdiff1d(np.arange(40), cols)
    top = unrated[np.argsort(-scores[unrated])][:10]
    assert np.all(top % 2 == 1), top  # every recommendation is from the liked (odd) group
    odd, even = scores[unrated[unrated % 2 == 1]], scores[unrated[unrated % 2 == 0]]
    assert odd.mean() > 4.0 and even.mean() < 2.5


def test_known_users_are_scored_by_their_trained_rows_others_by_fold_in():
    from aerec.model.sparse_rows import SparseRows

    model, ratings = _random_model(centring="biases")
    rows = oriented(ratings, "item")
    model.eval()
    with torch.no_grad():  # what training computes for (movie i, user u): the oriented forward
        full = model.reconstruct_dense(SparseRows.from_csr(rows, dtype=torch.float64)).t()
    users = np.array([3, 0, 39])
    given = ratings[users]
    known = model.predict_known(users, given.indptr, given.indices, given.data)
    torch.testing.assert_close(known, full[torch.as_tensor(users)])
    # a row the model does not know (out of range) falls back to fold-in from the ratings
    mixed = model.predict_known(np.array([3, 10_000]), ratings[[3, 5]].indptr,
                                ratings[[3, 5]].indices, ratings[[3, 5]].data)
    torch.testing.assert_close(mixed[0], full[3])
    one = ratings[5]
    torch.testing.assert_close(mixed[1], model.predict_dense(one.indptr, one.indices, one.data)[0])


def test_new_movie_codes_are_used_at_once():
    """Fold-in caches its float64 codes; new codes (prepare_inference, load_state_dict) must
    replace them, never be shadowed by the cache."""
    model, ratings = _random_model()
    cols, stars = np.array([1, 4, 9]), np.array([5.0, 2.0, 4.0])
    before = model.predict_dense(np.array([0, 3]), cols, stars)
    fewer = ratings.copy()
    fewer.data[::2] = 1.0  # other ratings: other codes
    model.prepare_inference(oriented(fewer, "item"))
    after = model.predict_dense(np.array([0, 3]), cols, stars)
    assert not torch.allclose(before, after)
    fresh, _ = _random_model()
    fresh.prepare_inference(oriented(fewer, "item"))
    torch.testing.assert_close(after, fresh.predict_dense(np.array([0, 3]), cols, stars))
    model.load_state_dict(_random_model()[0].state_dict())
    torch.testing.assert_close(model.predict_dense(np.array([0, 3]), cols, stars), before)
