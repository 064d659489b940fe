"""Baselines on synthetic matrices with a known answer, and on MovieLens 100K's u1 split.

Guards against: biases that do not recover planted ones; a sweep that raises the objective;
a new user's bias folded in by another formula than the one ``fit`` solves (their scores would
disagree with a training user's); known users scored from their ratings instead of their
fitted bias (``aerec evaluate`` numbers would move); a fitted baseline that a checkpoint
(architecture + state dict) does not rebuild.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.metrics import clipped_rmse
from aerec.model.base import csr_arrays, model_from_architecture
from aerec.model.baselines import BiasBaseline, GlobalMean, Popularity


def _planted(
    n_users: int = 400, n_movies: int = 150, density: float = 0.25, noise: float = 0.3, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix, float, np.ndarray, np.ndarray]:
    """Ratings ``μ + b_u + b_i + noise`` at random positions, split into train and held-out."""
    rng = np.random.default_rng(seed)
    mu = 3.5
    user_bias = rng.normal(0, 0.5, n_users)
    movie_bias = rng.normal(0, 0.7, n_movies)
    user_bias -= user_bias.mean()
    movie_bias -= movie_bias.mean()
    mask = rng.random((n_users, n_movies)) < density
    rows, cols = np.nonzero(mask)
    values = mu + user_bias[rows] + movie_bias[cols] + rng.normal(0, noise, rows.size)
    held = rng.random(rows.size) < 0.2
    shape = (n_users, n_movies)
    train = sp.csr_matrix((values[~held], (rows[~held], cols[~held])), shape=shape)
    test = sp.csr_matrix((values[held], (rows[held], cols[held])), shape=shape)
    return train, test, mu, user_bias, movie_bias


def _known_at(model: object, train: sp.csr_matrix, test: sp.csr_matrix) -> np.ndarray:
    """Predictions at the entries of ``test`` (CSR order) for training users, each given
    their row of ``train``."""
    users = np.flatnonzero(np.diff(test.indptr))
    known = model.predict_known(users, *csr_arrays(train[users])).numpy()
    held = test[users]
    rows = np.repeat(np.arange(len(users)), np.diff(held.indptr))
    return known[rows, held.indices].astype(np.float64)


def _rmse(model: object, train: sp.csr_matrix, test: sp.csr_matrix) -> float:
    values = sp.csr_matrix(test).data
    return float(np.sqrt(np.mean((_known_at(model, train, test) - values) ** 2)))


def test_bias_baseline_recovers_planted_biases() -> None:
    train, test, mu, user_bias, movie_bias = _planted()
    model = BiasBaseline(regularisation=1.0).fit(train)
    fitted_user, fitted_movie = model.user_bias.numpy(), model.movie_bias.numpy()
    # μ and the biases are identified only up to a shift between them; compare centred values.
    centre = float(model.mean) + fitted_user.mean() + fitted_movie.mean()
    assert centre == pytest.approx(mu, abs=0.05)
    assert np.corrcoef(fitted_user, user_bias)[0, 1] > 0.97
    assert np.corrcoef(fitted_movie, movie_bias)[0, 1] > 0.99
    movie_error = fitted_movie - fitted_movie.mean() - movie_bias
    assert np.sqrt(np.mean(movie_error**2)) < 0.06
    # Held-out error close to the planted noise (0.3), far below the global mean's.
    assert _rmse(model, train, test) < 0.33
    assert _rmse(GlobalMean().fit(train), train, test) > 0.8


def test_bias_baseline_sweeps_lower_the_objective() -> None:
    train, _, _, _, _ = _planted(seed=3)
    rows, cols, values = sp.find(train)

    def objective(model: BiasBaseline) -> float:
        user, movie = model.user_bias.numpy(), model.movie_bias.numpy()
        err = values - (float(model.mean) + user[rows] + movie[cols])
        penalty = user @ user + movie @ movie
        return float(err @ err + model.regularisation * penalty)

    costs = [objective(BiasBaseline(5.0, sweeps).fit(train)) for sweeps in (1, 2, 5, 20)]
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(costs))


def test_regularisation_is_chosen_on_validation() -> None:
    # Few ratings per user and lots of noise: some shrinkage must beat none.
    train, validation, *_ = _planted(n_users=300, n_movies=300, density=0.03, noise=1.0, seed=4)
    best, scores = BiasBaseline.select_regularisation(train, validation, grid=(0.0, 5.0, 25.0))
    assert set(scores) == {0.0, 5.0, 25.0}
    assert best == min(scores, key=scores.get)
    assert best > 0.0


def test_a_new_user_without_ratings_gets_the_movie_bias_and_bad_positions_are_refused():
    train, _, _, _, _ = _planted(n_users=20, n_movies=10)
    model = BiasBaseline().fit(train)
    nobody = (np.array([0, 0]), np.zeros(0, np.int64), np.zeros(0, np.float32))
    pred = model.predict_at(*nobody, np.array([0]), np.array([3])).numpy()
    assert pred[0] == pytest.approx(float(model.mean) + float(model.movie_bias[3]))
    with pytest.raises(IndexError):  # a movie the model does not have
        model.predict_at(*nobody, np.array([0]), np.array([99]))
    with pytest.raises(IndexError):  # a batch row that is not there
        model.predict_at(*nobody, np.array([1]), np.array([3]))


def test_fold_in_of_a_training_users_ratings_gives_their_fitted_bias():
    """``fit``'s last sweep solves each user's bias from the movie biases by the closed form
    the fold-in uses, so a training user's own ratings give back their fitted bias."""
    train, _, _, _, _ = _planted(n_users=60, n_movies=40, seed=5)
    model = BiasBaseline(regularisation=4.0, sweeps=50, tolerance=1e-10).fit(train)
    users = np.array([7, 0, 59, 31])
    given = train[users]
    arrays = csr_arrays(given)
    exact = (arrays[0], arrays[1], given.data)  # the float64 ratings fit saw, not float32
    np.testing.assert_allclose(model.fold_in(*exact), model.user_bias.numpy()[users],
                               rtol=0, atol=1e-12)
    # and so a training user's predictions are the same either way (float32 rounding apart)
    torch.testing.assert_close(model.predict_dense(*arrays), model.predict_known(users, *arrays))
    # the fold-in differs from the fitted bias for other ratings: it is not a lookup
    shifted = (arrays[0], arrays[1], arrays[2] + np.float32(1.0))
    assert np.all(model.fold_in(*shifted) > model.user_bias.numpy()[users] + 0.5)


def test_known_users_use_their_fitted_bias_and_others_are_folded_in():
    train, _, _, _, _ = _planted(n_users=30, n_movies=12)
    model = BiasBaseline(sweeps=2).fit(train)  # stopped early: fit and fold-in differ a little
    users = np.array([4, 0, 29])
    arrays = csr_arrays(train[users])
    known = model.predict_known(users, *arrays)
    assert known.shape == (3, 12) and known.dtype == torch.float32
    expected = (float(model.mean) + model.user_bias.numpy()[0]
                + model.movie_bias.numpy()).astype(np.float32)
    np.testing.assert_allclose(known[1].numpy(), expected, rtol=1e-6)
    # a row outside the training rows is a new user: scored from the ratings given
    stranger = model.predict_known(np.array([4, 1000, 29]), *arrays)
    torch.testing.assert_close(stranger[1], model.predict_dense(*arrays)[1])
    torch.testing.assert_close(stranger[[0, 2]], known[[0, 2]])
    gm = GlobalMean().fit(train)
    assert gm.predict_known(users, *arrays).shape == (3, 12)
    assert not gm.ranks_items


def test_clip_clamps_every_prediction():
    train, _, _, _, _ = _planted(n_users=30, n_movies=12)
    model = BiasBaseline(regularisation=0.0, clip=(3.0, 4.0)).fit(train)
    arrays = csr_arrays(train)
    for predictions in (model.predict_dense(*arrays),
                        model.predict_known(np.arange(30), *arrays),
                        model.predict_at(*arrays, np.arange(30), np.arange(30) % 12)):
        assert float(predictions.min()) >= 3.0 and float(predictions.max()) <= 4.0


@pytest.mark.parametrize("make", [
    lambda: GlobalMean(clip=(1.0, 5.0)), lambda: BiasBaseline(5.0, clip=(1.0, 5.0)),
    lambda: Popularity(4.0), lambda: Popularity(),
])
def test_state_dict_round_trip_rebuilds_the_fitted_baseline(make):
    train, _, _, _, _ = _planted(n_users=30, n_movies=12, seed=2)
    model = make().fit(train)
    rebuilt = model_from_architecture(model.architecture())
    assert type(rebuilt) is type(model) and rebuilt.architecture() == model.architecture()
    rebuilt.load_state_dict(model.state_dict())
    users = np.array([3, 0, 17])
    arrays = csr_arrays(train[users])
    for method in ("predict_dense", "rank_dense"):
        assert torch.equal(getattr(rebuilt, method)(*arrays), getattr(model, method)(*arrays))
    assert torch.equal(rebuilt.predict_known(users, *arrays), model.predict_known(users, *arrays))
    rows, cols = np.array([0, 2, 1]), np.array([11, 0, 5])
    assert torch.equal(rebuilt.predict_at(*arrays, rows, cols), model.predict_at(*arrays, rows, cols))


def test_popularity_counts_liked_ratings_and_breaks_ties_by_count() -> None:
    dense = np.array(
        [
            [5, 4, 1, 0],
            [4, 2, 2, 0],
            [0, 5, 1, 2],
        ],
        dtype=np.float32,
    )
    train = sp.csr_matrix(dense)
    model = Popularity(relevance_threshold=4.0).fit(train)
    arrays = csr_arrays(train[:1])
    # movies 0 and 1 each have 2 ratings ≥ 4; movie 1 has 3 ratings overall, movie 0 has 2.
    order = np.argsort(-model.rank_dense(*arrays)[0].numpy(), kind="stable")
    np.testing.assert_array_equal(order, [1, 0, 2, 3])
    assert model.has_ranking_head  # the tie-broken order is not the counts
    np.testing.assert_array_equal(model.predict_dense(*arrays)[0].numpy(), [2, 2, 0, 0])
    counts = Popularity().fit(train).predict_at(*arrays, np.zeros(4, int), np.arange(4))
    np.testing.assert_array_equal(counts.numpy(), [2, 3, 3, 1])
    assert not Popularity.predicts_ratings


def test_unfitted_baseline_raises() -> None:
    nobody = (np.array([0, 0]), np.zeros(0, np.int64), np.zeros(0, np.float32))
    with pytest.raises(RuntimeError, match="not fitted"):
        BiasBaseline().predict_at(*nobody, np.array([0]), np.array([0]))


def _ml100k_split(directory: Path, name: str) -> sp.csr_matrix:
    table = np.loadtxt(directory / name, dtype=np.int64)
    return sp.csr_matrix(
        (table[:, 2].astype(np.float32), (table[:, 0] - 1, table[:, 1] - 1)), shape=(943, 1682)
    )


def test_bias_baseline_on_ml100k_u1_matches_published_reference(ml100k_dir: Path) -> None:
    """Published: 0.960 for user + movie biases on u1; Surprise BaselineOnly 0.944 (5-fold)."""
    train = _ml100k_split(ml100k_dir, "u1.base")
    test = _ml100k_split(ml100k_dir, "u1.test")
    model = BiasBaseline(regularisation=5.0).fit(train)
    rmse = clipped_rmse(_known_at(model, train, test), test.data, (1.0, 5.0))
    assert 0.94 <= rmse <= 0.97
    mean_rmse = _rmse(GlobalMean().fit(train), train, test)
    assert mean_rmse > rmse + 0.1
