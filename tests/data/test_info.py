"""Dataset statistics: counts, sparsity, histogram, per-user/movie summaries, dates."""

from __future__ import annotations

import numpy as np

from aerec.data.info import dataset_stats
from aerec.data.ratings import NO_DATE, Ratings, RatingScale
from aerec.data.store import load_dataset, write_prepared


def test_stats_on_a_hand_made_dataset(tmp_path):
    # user 10 rates 3 movies, user 20 rates 1; movie 7 appears in the test split only.
    train = Ratings([10, 10, 10, 20], [1, 2, 3, 1], [5, 4, 4, 1], [0, 1, NO_DATE, 365],
                    RatingScale(1, 5, 1), ["a"])
    test = Ratings([20], [7], [3], [400], RatingScale(1, 5, 1), ["b"])
    write_prepared(tmp_path / "ds", train, test=test)
    s = dataset_stats(load_dataset(tmp_path / "ds"))
    assert (s["users"], s["movies"], s["ratings"]) == (2, 4, 5)
    assert s["sparsity"] == 5 / 8
    assert s["histogram"] == {"1": 1, "2": 0, "3": 1, "4": 2, "5": 1}
    assert s["ratings_per_user"] == {"min": 2, "median": 2.5, "max": 3, "mean": 2.5}
    assert s["ratings_per_movie"]["max"] == 2 and s["movies_without_ratings"] == 0
    assert s["date_range"] == ["1970-01-01", "1971-02-05"]
    assert s["test_ratings"] == 1 and s["train_ratings"] == 4
    assert abs(s["mean_rating"] - 17 / 5) < 1e-9


def test_sparsity_matches_published_definition(tmp_path):
    rng = np.random.default_rng(0)
    keys = rng.choice(100 * 50, 500, replace=False)
    write_prepared(tmp_path / "ds", Ratings(keys // 50, keys % 50, rng.integers(1, 6, 500)))
    s = dataset_stats(load_dataset(tmp_path / "ds"))
    assert s["sparsity"] == s["ratings"] / (s["users"] * s["movies"])
    assert s["date_range"] is None
