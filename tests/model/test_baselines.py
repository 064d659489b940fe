"""Baselines on synthetic matrices with a known answer, and on MovieLens 100K's u1 split."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

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


def _rmse(model: object, test: sp.csr_matrix) -> float:
    rows, cols, values = sp.find(test)
    return float(np.sqrt(np.mean((model.predict_at(rows, cols) - values) ** 2)))


def test_bias_baseline_recovers_planted_biases() -> None:
    train, test, mu, user_bias, movie_bias = _planted()
    model = BiasBaseline(regularisation=1.0).fit(train)
    # μ and the biases are identified only up to a shift between them; compare centred values.
    centre = model.mean + model.user_bias.mean() + model.movie_bias.mean()
    assert centre == pytest.approx(mu, abs=0.05)
    assert np.corrcoef(model.user_bias, user_bias)[0, 1] > 0.97
    assert np.corrcoef(model.movie_bias, movie_bias)[0, 1] > 0.99
    movie_error = model.movie_bias - model.movie_bias.mean() - movie_bias
    assert np.sqrt(np.mean(movie_error**2)) < 0.06
    # Held-out error close to the planted noise (0.3), far below the global mean's.
    assert _rmse(model, test) < 0.33
    assert _rmse(GlobalMean().fit(train), test) > 0.8


def test_bias_baseline_sweeps_lower_the_objective() -> None:
    train, _, _, _, _ = _planted(seed=3)
    rows, cols, values = sp.find(train)

    def objective(model: BiasBaseline) -> float:
        err = values - model.predict_at(rows, cols)
        penalty = model.user_bias @ model.user_bias + model.movie_bias @ model.movie_bias
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


def test_unknown_users_and_movies_fall_back_to_the_mean() -> None:
    train, _, _, _, _ = _planted(n_users=20, n_movies=10)
    model = BiasBaseline().fit(train)
    pred = model.predict_at(np.array([25, 0]), np.array([3, 99]))
    assert pred[0] == pytest.approx(model.mean + model.movie_bias[3])
    assert pred[1] == pytest.approx(model.mean + model.user_bias[0])


def test_score_users_matches_predict_at() -> None:
    train, _, _, _, _ = _planted(n_users=30, n_movies=12)
    model = BiasBaseline().fit(train)
    users = np.array([4, 0, 29])
    scores = model.score_users(users)
    assert scores.shape == (3, 12)
    np.testing.assert_allclose(scores[1], model.predict_at(np.zeros(12, int), np.arange(12)))
    gm = GlobalMean().fit(train)
    assert gm.score_users(users).shape == (3, 12)
    assert not gm.ranks_items


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
    # movies 0 and 1 each have 2 ratings ≥ 4; movie 1 has 3 ratings overall, movie 0 has 2.
    order = np.argsort(-model.score_users(np.array([0]))[0], kind="stable")
    np.testing.assert_array_equal(order, [1, 0, 2, 3])
    counts = Popularity().fit(train).predict_at(np.zeros(4, int), np.arange(4))
    np.testing.assert_array_equal(counts, [2, 3, 3, 1])
    assert not Popularity.predicts_ratings


def test_unfitted_baseline_raises() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        BiasBaseline().predict_at(np.array([0]), np.array([0]))


def _ml100k_split(directory: Path, name: str) -> sp.csr_matrix:
    table = np.loadtxt(directory / name, dtype=np.int64)
    return sp.csr_matrix(
        (table[:, 2].astype(np.float32), (table[:, 0] - 1, table[:, 1] - 1)), shape=(943, 1682)
    )


def test_bias_baseline_on_ml100k_u1_matches_published_reference(ml100k_dir: Path) -> None:
    """Published: 0.960 for user + movie biases on u1; Surprise BaselineOnly 0.944 (5-fold)."""
    train = _ml100k_split(ml100k_dir, "u1.base")
    test = _ml100k_split(ml100k_dir, "u1.test")
    rows, cols, values = sp.find(test)
    model = BiasBaseline(regularisation=5.0).fit(train)
    rmse = float(np.sqrt(np.mean((np.clip(model.predict_at(rows, cols), 1, 5) - values) ** 2)))
    assert 0.94 <= rmse <= 0.97
    mean_rmse = _rmse(GlobalMean().fit(train), test)
    assert mean_rmse > rmse + 0.1
