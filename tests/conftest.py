"""Shared fixtures: the real rating data in ``../shared/data`` (skipped when absent), one torch
thread for tiny-tensor tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


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
