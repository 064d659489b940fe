"""The similar-user index kept beside the checkpoint: read back instead of rebuilt, and never
used when it does not belong to the checkpoint and settings at hand.

Guards against: every ``aerec recommend`` re-encoding the whole neighbour pool (seconds to
minutes), a stale index after the checkpoint changes or the pool settings differ, a damaged or
doctored file being trusted, and a read-only run folder breaking recommendations.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from aerec.recommend import Recommender
from aerec.recommend import index_cache as index_cache_module
from aerec.recommend.explain import NeighbourIndex
from aerec.recommend.index_cache import IndexCache, cache_path

from .conftest import USER_BASE

RATINGS = {"toy story": 5, "The Matrix": 5, "Beta Movie 30": 1}


@pytest.fixture
def run(planted_run: Path, tmp_path: Path) -> Path:
    """A copy of the planted run (its own folder, so each test starts without a cache)."""
    out = tmp_path / "run"
    out.mkdir()
    for name in ("best.pt", "last.pt"):
        shutil.copy(planted_run / name, out / name)
    return out


def _count_builds(monkeypatch) -> list[int]:
    calls: list[int] = []
    build = NeighbourIndex.build.__func__

    def counting(cls, *args, **kwargs):
        calls.append(1)
        return build(cls, *args, **kwargs)

    monkeypatch.setattr(NeighbourIndex, "build", classmethod(counting))
    return calls


def test_built_once_then_read_back_with_the_same_answers(run, monkeypatch):
    builds = _count_builds(monkeypatch)
    first = Recommender.load(run).recommend(RATINGS)
    path = cache_path(run / "best.pt")
    assert path == run / "best.neighbours.npz" and path.is_file() and builds == [1]
    again = Recommender.load(run)
    second = again.recommend(RATINGS)
    assert builds == [1]  # read, not rebuilt
    assert second.to_dict() == first.to_dict()
    fresh = Recommender.load(run, cache_index=False).neighbour_index()
    cached = again.neighbour_index()
    np.testing.assert_array_equal(cached.rows, fresh.rows)
    np.testing.assert_array_equal(cached.codes.numpy(), fresh.codes.numpy())
    assert Recommender.load(run).recommend_for_user(USER_BASE + 4).neighbours == \
        Recommender.load(run, cache_index=False).recommend_for_user(USER_BASE + 4).neighbours


def test_a_changed_checkpoint_or_other_settings_rebuild_it(run, monkeypatch):
    builds = _count_builds(monkeypatch)
    Recommender.load(run).neighbour_index()
    shutil.copy(run / "last.pt", run / "best.pt")  # retrained: other contents, same name
    rec = Recommender.load(run)
    rec.neighbour_index()
    assert len(builds) == 2
    np.testing.assert_array_equal(
        rec.neighbour_index().codes.numpy(),
        Recommender.load(run, cache_index=False).neighbour_index().codes.numpy())
    Recommender.load(run, neighbour_pool=50).neighbour_index()
    assert len(builds) == 4  # the line above built it once without the cache, once with
    assert len(Recommender.load(run, neighbour_pool=50).neighbour_index()) == 50
    assert len(builds) == 4


def test_damaged_or_doctored_files_are_ignored(run, monkeypatch):
    builds = _count_builds(monkeypatch)
    rec = Recommender.load(run)
    expected = rec.recommend(RATINGS).to_dict()
    path = cache_path(run / "best.pt")
    path.write_bytes(b"not an index at all")
    assert Recommender.load(run).recommend(RATINGS).to_dict() == expected
    assert len(builds) == 2
    # the right key with codes that do not fit the stored users
    with np.load(path) as data:
        key = data["key"]
    np.savez(path.with_suffix(".tmp.npz"), key=key, rows=np.array([0, 10_000], np.int64),
             codes=np.ones((2, 3), np.float32), centre=np.zeros(3, np.float32))
    path.with_suffix(".tmp.npz").replace(path)
    assert Recommender.load(run).recommend(RATINGS).to_dict() == expected
    assert len(builds) == 3


def test_an_unwritable_folder_keeps_the_index_in_memory(run, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(index_cache_module, "atomic_write", refuse)
    rec = Recommender.load(run)
    assert rec.recommend(RATINGS).neighbours
    assert not cache_path(run / "best.pt").exists()


def test_a_recommender_built_from_a_checkpoint_object_writes_nothing(run, recommender):
    from aerec.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(run / "best.pt")
    Recommender(dataclasses.replace(checkpoint)).recommend(RATINGS)
    assert not cache_path(run / "best.pt").exists()


def test_cache_path_and_key():
    assert cache_path("runs/x/best.pt") == Path("runs/x/best.neighbours.npz")
    assert cache_path("model.ckpt") == Path("model.ckpt.neighbours.npz")
    a = IndexCache("x.npz", {"checkpoint": "sha256:1", "max_users": 5})
    b = IndexCache("x.npz", {"checkpoint": "sha256:2", "max_users": 5})
    assert a.key != b.key and a.key["format"] == "aerec-neighbour-index"
