"""Shared fixtures: the real rating data in ``../shared/data`` (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
