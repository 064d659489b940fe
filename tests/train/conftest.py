"""A small generated low-rank rating dataset, written as a real prepared dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aerec.config import TrainConfig
from aerec.data.ratings import Ratings, RatingScale, Titles
from aerec.data.store import write_prepared

N_USERS, N_MOVIES = 240, 60


def lowrank_ratings(seed: int = 0, density: float = 0.3) -> Ratings:
    """1–5 star ratings from a rank-2 taste model plus noise: learnable, far from the mean."""
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(N_USERS, 2))
    movies = rng.normal(size=(N_MOVIES, 2))
    bias = rng.normal(scale=0.5, size=N_MOVIES)
    scores = 3.0 + 1.1 * users @ movies.T + bias + rng.normal(scale=0.3, size=(N_USERS, N_MOVIES))
    stars = np.clip(np.rint(scores), 1, 5)
    observed = rng.random((N_USERS, N_MOVIES)) < density
    u, m = np.nonzero(observed)
    # raw ids are not 0-based on purpose: the id maps must carry them
    return Ratings(u + 1000, m * 10 + 7, stars[u, m], scale=RatingScale(1.0, 5.0, 1.0))


@pytest.fixture(scope="session")
def lowrank_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Prepared dataset directory of :func:`lowrank_ratings` (with titles)."""
    out = tmp_path_factory.mktemp("data") / "lowrank"
    titles = Titles(
        np.arange(N_MOVIES) * 10 + 7,
        [f"Movie {i}" for i in range(N_MOVIES)],
        np.full(N_MOVIES, 1999, np.int32),
    )
    write_prepared(out, lowrank_ratings(), titles=titles)
    return out


@pytest.fixture
def small_config() -> TrainConfig:
    """A small, fast configuration that learns the low-rank data in a few epochs."""
    return TrainConfig(
        layers=(32, 16, 4), dropout=0.0, lr=3e-3, batch_size=32, epochs=4, threads=1,
        activation="selu", output_activation="identity", seed=3,
    )


#: A small user-based member for ensemble tests (centred by biases, learns in a few epochs).
USER_MEMBER = TrainConfig(
    layers=(16,), activation="sigmoid", output_activation="identity", dropout=0.0,
    centring="biases", lr=0.01, l2=5.0, batch_size=64, epochs=15, threads=1,
)
