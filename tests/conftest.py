"""Shared fixtures: the real rating data in ``../shared/data`` (skipped when absent), a small
generated low-rank dataset written as a real prepared dataset, one torch thread for tiny-tensor
tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aerec.data.ratings import Ratings, RatingScale, Titles
from aerec.data.store import write_prepared

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

#: Shape of :func:`lowrank_ratings`.
N_USERS, N_MOVIES = 240, 60


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data {path} is absent (it lives beside the repository, not in it)")
    return path


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """``../shared/data/ml-100k`` (MovieLens 100K), skipped when absent."""
    return _shared("ml-100k")


@pytest.fixture(scope="session")
def ml_latest_small_dir() -> Path:
    """``../shared/data/ml-latest-small`` (MovieLens latest small), skipped when absent."""
    return _shared("ml-latest-small")


@pytest.fixture
def one_thread():
    """Tiny tensors: extra threads only add synchronisation (and results do not depend on it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
