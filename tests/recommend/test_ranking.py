"""Ranking modes: what each does to movies with few training ratings, and their parsing.

Guards against: a confidence-aware mode that still lets a once-rated movie win, untrained movies
(no training ratings) being ranked at all, and mode strings accepted silently when wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from aerec.checkpoint import StoredRatings
from aerec.data.ratings import RatingScale
from aerec.recommend.ranking import (
    DEFAULT_RANKING,
    RANKING_MODES,
    damped_means,
    parse_ranking,
)

# movie 0: predicted 4.9 from 1 rating; movie 1: 4.5 from 500; movie 2: 3.0 from 800; 3: unseen
PREDICTED = np.array([4.9, 4.5, 3.0, 5.0], dtype=np.float32)
COUNTS = np.array([1, 500, 800, 0])


def order(mode: str) -> list[int]:
    scores = parse_ranking(mode).scores(PREDICTED, COUNTS, 4.0)
    return [int(i) for i in np.argsort(-scores, kind="stable") if np.isfinite(scores[i])]


def test_predicted_lets_the_rarely_rated_movie_win_and_confidence_modes_do_not():
    assert order("predicted") == [0, 1, 2]
    for mode in ("damped", "lcb", "blend", DEFAULT_RANKING):
        assert order(mode)[0] == 1, mode


def test_movies_without_training_ratings_are_never_ranked():
    for mode in set(RANKING_MODES) - {"head"}:
        scores = parse_ranking(mode).scores(PREDICTED, COUNTS, 4.0)
        assert scores[3] == -np.inf


def test_modes_work_on_batches_row_by_row():
    batch = np.stack([PREDICTED, PREDICTED[::-1].copy()])
    for mode in set(RANKING_MODES) - {"head"}:
        ranking = parse_ranking(mode)
        both = ranking.scores(batch, COUNTS, 4.0)
        np.testing.assert_allclose(both[0], ranking.scores(batch[0], COUNTS, 4.0))
        np.testing.assert_allclose(both[1], ranking.scores(batch[1], COUNTS, 4.0))


def test_damped_with_many_ratings_is_close_to_predicted():
    scores = parse_ranking("damped:20").scores(PREDICTED, np.full(4, 10**6), 4.0)
    np.testing.assert_allclose(scores, PREDICTED, atol=1e-3)


def test_parsing():
    assert parse_ranking(None).name == DEFAULT_RANKING
    assert parse_ranking("Damped:50").label == "damped:50"
    assert parse_ranking("lcb").parameter == RANKING_MODES["lcb"]
    for bad in ("best", "predicted:3", "lcb:x", "lcb:-1", "damped:nan", "head:1"):
        with pytest.raises(ValueError):
            parse_ranking(bad)
    with pytest.raises(ValueError, match="rank_dense"):
        parse_ranking("head").scores(PREDICTED, COUNTS, 4.0)


def test_damped_means_pull_rare_movies_to_the_global_mean():
    means = damped_means(np.array([5.0, 4.5]), np.array([1, 1000]), 3.5, prior=25)
    assert means[0] < means[1] and abs(means[0] - 3.5) < 0.1


def test_stored_ratings_round_trip_for_fine_scales():
    scale = RatingScale(1.0, 100.0, 0.25)  # 397 levels: two-byte codes
    matrix = sp.csr_matrix(np.array([[1.0, 0, 100.0], [0, 55.25, 0]], dtype=np.float32))
    stored = StoredRatings.from_matrix(matrix, scale)
    assert stored.codes.dtype == np.uint16
    back = StoredRatings.from_payload(stored.to_payload(), scale)
    assert (back.matrix() != matrix).nnz == 0
    cols, ratings = back.row(1)
    assert cols.tolist() == [1] and ratings.tolist() == [55.25]
