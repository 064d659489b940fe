"""A planted-structure dataset and a tiny trained model for the recommender tests.

Two taste groups: group A users love movies 0–19 (4–5★) and dislike 20–39 (1–2★); group B
the reverse. Raw ids are not 0-based on purpose (the id maps must carry them). A few titles are
chosen for the title-matching tests: an article at the end, an accent, a remake with another
year, a sequel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aerec.config import TrainConfig
from aerec.data.ratings import Ratings, RatingScale, Titles
from aerec.data.store import write_prepared

N_USERS, N_MOVIES, HALF = 200, 40, 20
USER_BASE = 5000
TEST_ONLY_USER = USER_BASE + N_USERS


def movie_id(col: int) -> int:
    """Raw id of movie column ``col``."""
    return 100 + 3 * col


SPECIAL_TITLES = {
    0: ("Toy Story", 1995),
    1: ("Matrix, The", 1999),
    2: ("Amélie", 2001),
    3: ("Game, The", 1997),
    4: ("Toy Story 2", 1999),
    21: ("Game, The", 1980),
    22: ("Star Wars: Episode IV - A New Hope", 1977),
}


def planted_titles() -> Titles:
    titles, years = [], []
    for col in range(N_MOVIES):
        title, year = SPECIAL_TITLES.get(
            col, (f"{'Alpha' if col < HALF else 'Beta'} Movie {col}", 1980 + col)
        )
        titles.append(title)
        years.append(year)
    return Titles(np.array([movie_id(c) for c in range(N_MOVIES)]), titles, np.array(years))


def planted_ratings(seed: int = 0) -> Ratings:
    rng = np.random.default_rng(seed)
    group_a = np.arange(N_USERS) < N_USERS // 2
    likes_a = np.arange(N_MOVIES) < HALF
    loves = group_a[:, None] == likes_a[None, :]
    stars = np.where(loves, rng.integers(4, 6, (N_USERS, N_MOVIES)),
                     rng.integers(1, 3, (N_USERS, N_MOVIES)))
    observed = rng.random((N_USERS, N_MOVIES)) < 0.5
    observed[:, -1] = False  # the last movie is never rated: no training ratings
    u, m = np.nonzero(observed)
    return Ratings(u + USER_BASE, np.array([movie_id(c) for c in m]), stars[u, m],
                   scale=RatingScale(1.0, 5.0, 1.0))


@pytest.fixture(scope="session")
def planted_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "planted"
    ratings = planted_ratings()
    # the never-rated movie must still be a column: give it one rating in a fixed test split;
    # user TEST_ONLY_USER has nothing but a test rating (a known id without training ratings)
    test = Ratings([USER_BASE, TEST_ONLY_USER], [movie_id(N_MOVIES - 1), movie_id(0)],
                   [3.0, 4.0], scale=RatingScale(1, 5, 1))
    write_prepared(out, ratings, titles=planted_titles(), test=test)
    return out


def tiny_config(**changes) -> TrainConfig:
    base = TrainConfig(
        layers=(32, 8), dropout=0.0, lr=1e-2, batch_size=32, epochs=12, threads=1,
        activation="selu", output_activation="identity", seed=0, split_protocol="fixed",
        validation_fraction=0.1,
    )
    return base.replace(**changes) if changes else base


@pytest.fixture(scope="session")
def planted_run(planted_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aerec.train import train

    run = tmp_path_factory.mktemp("run") / "run"
    train(planted_dir, run, tiny_config())
    return run


@pytest.fixture(scope="session")
def recommender(planted_run: Path):
    from aerec.recommend import Recommender

    return Recommender.load(planted_run)
