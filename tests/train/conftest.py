"""Training fixtures: a small fast configuration and an ensemble member (the low-rank dataset
they train on is ``lowrank_dir`` of tests/conftest.py)."""

from __future__ import annotations

import pytest

from aerec.config import TrainConfig
from tests.conftest import N_MOVIES, N_USERS, lowrank_ratings

# the dataset and its fixture (``lowrank_dir``) live in tests/conftest.py, shared with the
# tests of modules outside ``aerec.train``; re-exported here for ``from .conftest import ...``
__all__ = ["N_MOVIES", "N_USERS", "USER_MEMBER", "lowrank_ratings"]


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
