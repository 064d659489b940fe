"""Every known user's top-k in bounded batches, and the file it is written to.

Guards against: batch lists that differ from one user's ``recommend_for_user`` (other order,
other ties, a rated movie slipping in), results that depend on the batch size, users without
stored ratings dropped instead of given the fallback, files that lose columns or rows on the way
to Parquet or CSV, and a half-written file left behind by an error.
"""

from __future__ import annotations

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from aerec.recommend import Recommender, UnknownUser
from aerec.recommend import batch as batch_module
from aerec.recommend.batch import COLUMNS, iter_recommendations, top_k_rows
from aerec.recommend.recommender import _top

from .conftest import TEST_ONLY_USER, USER_BASE


def _frame(batches) -> dict[str, np.ndarray]:
    batches = list(batches)
    return {
        "user_id": np.concatenate([b.user_ids for b in batches]),
        "rank": np.concatenate([b.rank for b in batches]),
        "movie_id": np.concatenate([b.movie_ids for b in batches]),
        "score": np.concatenate([b.scores for b in batches]),
    }


@pytest.fixture(scope="module")
def everyone(recommender: Recommender) -> dict[str, np.ndarray]:
    return _frame(recommender.recommend_all(k=10, batch_size=37))


def test_each_list_is_the_users_own_top_k(recommender, everyone):
    users = recommender.user_ids
    assert sorted(set(everyone["user_id"].tolist())) == sorted(users.tolist())
    for user in users.tolist():
        mine = everyone["user_id"] == user
        single = recommender.recommend_for_user(user, k=10, explain=False)
        assert everyone["movie_id"][mine].tolist() == single.movie_ids, user
        assert everyone["rank"][mine].tolist() == list(range(1, len(single.items) + 1))
        np.testing.assert_allclose(everyone["score"][mine],
                                   [r.predicted_rating for r in single.items], atol=2e-4)


def test_k_rows_per_user_and_never_a_rated_movie(recommender, everyone):
    for user in recommender.user_ids.tolist():
        mine = everyone["user_id"] == user
        assert mine.sum() == 10
        if user == TEST_ONLY_USER:  # no stored ratings: the popular fallback, as for one user
            assert everyone["movie_id"][mine].tolist() == recommender.popular(k=10).movie_ids
            continue
        rated = {r["movie_id"] for r in recommender.user_ratings(user)}
        assert not rated & set(everyone["movie_id"][mine].tolist())


def test_batch_size_filters_and_rankings_pass_through(recommender, everyone):
    one_batch = _frame(recommender.recommend_all(k=10, batch_size=10_000))
    for name in ("user_id", "rank", "movie_id", "score"):
        np.testing.assert_array_equal(one_batch[name], everyone[name])
    users = [USER_BASE + 3, USER_BASE + 150]
    filtered = _frame(recommender.recommend_all(k=5, users=users, ranking="lcb", year_min=1990,
                                                year_max=1999))
    for user in users:
        single = recommender.recommend_for_user(user, k=5, ranking="lcb", year_min=1990,
                                                year_max=1999, explain=False)
        assert filtered["movie_id"][filtered["user_id"] == user].tolist() == single.movie_ids
    with pytest.raises(UnknownUser):
        list(recommender.recommend_all(users=[12345678]))
    with pytest.raises(ValueError, match="batch_size"):
        list(iter_recommendations(recommender, batch_size=0))


@pytest.mark.parametrize("name", ["recs.parquet", "recs.csv"])
def test_file_round_trip(recommender, everyone, tmp_path, name):
    seen: list[int] = []
    summary = recommender.write_all(tmp_path / name, k=10, batch_size=64, progress=seen.append)
    assert summary.n_users == len(recommender.user_ids) == seen[-1]
    assert summary.n_rows == len(everyone["user_id"]) and seen == sorted(seen)
    path = tmp_path / name
    table = pq.read_table(path) if name.endswith("parquet") else pacsv.read_csv(path)
    assert table.column_names == list(COLUMNS)
    for column in ("user_id", "rank", "movie_id"):
        np.testing.assert_array_equal(table[column].to_numpy(), everyone[column])
    np.testing.assert_allclose(table["score"].to_numpy(), everyone["score"], atol=1e-6)
    titles = dict(zip(recommender.movie_ids.tolist(), recommender.titles))
    assert table["title"].to_pylist() == [titles[m] for m in everyone["movie_id"].tolist()]
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_an_error_leaves_no_partial_file(recommender, tmp_path, monkeypatch):
    real = batch_module.iter_recommendations

    def failing(*args, **kwargs):
        for i, batch in enumerate(real(*args, **kwargs)):
            if i == 2:
                raise RuntimeError("disk on fire")
            yield batch

    monkeypatch.setattr(batch_module, "iter_recommendations", failing)
    out = tmp_path / "recs.parquet"
    with pytest.raises(RuntimeError, match="disk on fire"):
        recommender.write_all(out, batch_size=16)
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"an earlier complete file")
    with pytest.raises(RuntimeError):
        recommender.write_all(out, batch_size=16)
    assert out.read_bytes() == b"an earlier complete file"
    assert [p.name for p in tmp_path.iterdir()] == ["recs.parquet"]
    with pytest.raises(ValueError, match=r"\.parquet or \.csv"):
        recommender.write_all(tmp_path / "recs.txt")


def test_top_k_rows_breaks_ties_by_column_and_skips_excluded():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, (40, 12)).astype(np.float32)  # many ties
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    scores[0, :] = -np.inf
    scores[1, 3] = np.nan
    for k in (1, 3, 12, 20):
        rows, cols = top_k_rows(scores, k)
        for r in range(len(scores)):
            expected = _top(scores[r], np.ones(12, bool), k)
            assert cols[rows == r].tolist() == expected.tolist(), (k, r)
