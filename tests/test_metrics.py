"""Metrics against hand-computed values; accumulators across batches equal one-shot values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.data.ratings import RatingScale
from aerec.metrics import (
    RankingAccumulator,
    RatingErrorAccumulator,
    clipped_rmse,
    hits_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    top_k_items,
)

SCALE = RatingScale(1.0, 5.0, 1.0)


def test_clipped_rmse_hand_computed_and_equal_to_the_accumulator() -> None:
    predicted = np.array([0.0, 4.5, 6.0, 2.0], np.float32)
    truth = np.array([1.0, 4.0, 5.0, 4.0])
    # clipped to 1..5: 1, 4.5, 5, 2 → errors 0, 0.5, 0, -2 → mean square (0.25 + 4) / 4
    assert clipped_rmse(predicted, truth, (1.0, 5.0)) == pytest.approx(math.sqrt(4.25 / 4))
    # without clipping: errors -1, 0.5, 1, -2 → (1 + 0.25 + 1 + 4) / 4
    assert clipped_rmse(predicted, truth, None) == pytest.approx(math.sqrt(6.25 / 4))
    assert clipped_rmse(torch.tensor(predicted), truth, (1.0, 5.0)) == pytest.approx(
        math.sqrt(4.25 / 4))
    acc = RatingErrorAccumulator(scale=SCALE)
    acc.update(predicted, truth)
    assert clipped_rmse(predicted, truth, (1.0, 5.0)) == pytest.approx(acc.rmse, rel=1e-12)
    assert math.isnan(clipped_rmse(np.zeros(0), np.zeros(0), (1.0, 5.0)))
    with pytest.raises(ValueError):
        clipped_rmse(np.zeros(3), np.zeros(2), None)


def test_rmse_mae_hand_computed() -> None:
    acc = RatingErrorAccumulator()
    acc.update(np.array([3.0, 4.0, 2.0]), np.array([4.0, 4.0, 5.0]))
    # errors -1, 0, -3: squared 1 + 0 + 9 = 10, absolute 4
    assert acc.count == 3
    assert acc.rmse == pytest.approx(math.sqrt(10 / 3))
    assert acc.mae == pytest.approx(4 / 3)


def test_predictions_are_clipped_to_the_scale() -> None:
    acc = RatingErrorAccumulator(scale=SCALE)
    acc.update(np.array([6.5, 0.0, 3.0]), np.array([5.0, 1.0, 4.0]))
    # clipped to 5, 1, 3: errors 0, 0, -1
    assert acc.rmse == pytest.approx(math.sqrt(1 / 3))
    assert acc.mae == pytest.approx(1 / 3)


def test_empty_accumulator_is_nan() -> None:
    acc = RatingErrorAccumulator()
    assert math.isnan(acc.rmse) and math.isnan(acc.mae)


def test_accumulator_over_uneven_batches_equals_one_shot() -> None:
    """Guards against averaging batch RMSEs (wrong when batches differ in size)."""
    rng = np.random.default_rng(0)
    pred = rng.uniform(0, 6, 1000)
    true = rng.integers(1, 6, 1000).astype(np.float64)
    one_shot = RatingErrorAccumulator(scale=SCALE)
    one_shot.update(pred, true)
    cuts = [0, 3, 10, 400, 401, 999, 1000]
    parts = []
    for a, b in itertools.pairwise(cuts):
        part = RatingErrorAccumulator(scale=SCALE)
        part.update(torch.tensor(pred[a:b]), true[a:b])  # torch input accepted too
        parts.append(part)
    merged = RatingErrorAccumulator(scale=SCALE)
    for part in parts:
        merged.merge(part)
    assert merged.count == 1000
    assert merged.rmse == pytest.approx(one_shot.rmse, rel=1e-12)
    assert merged.mae == pytest.approx(one_shot.mae, rel=1e-12)
    naive = np.mean([p.rmse for p in parts])
    assert abs(naive - one_shot.rmse) > 1e-3  # the mistake this accumulator avoids


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        RatingErrorAccumulator().update(np.zeros(3), np.zeros(4))


# ------------------------------------------------------------------ ranking


def test_ranking_metrics_hand_computed() -> None:
    # user 0: hits at ranks 1 and 3 of k=3, 4 relevant items overall
    # user 1: hit at rank 2, 1 relevant item
    hits = np.array([[True, False, True], [False, True, False]])
    n_rel = np.array([4, 1])
    np.testing.assert_allclose(precision_at_k(hits), [2 / 3, 1 / 3])
    np.testing.assert_allclose(recall_at_k(hits, n_rel), [2 / 4, 1 / 1])
    d = [1.0, 1 / math.log2(3), 1 / math.log2(4)]
    ndcg0 = (d[0] + d[2]) / (d[0] + d[1] + d[2])  # ideal over min(3, 4) = 3 ranks
    ndcg1 = d[1] / d[0]  # ideal over min(3, 1) = 1 rank
    np.testing.assert_allclose(ndcg_at_k(hits, n_rel), [ndcg0, ndcg1])


def test_perfect_ranking_has_ndcg_one() -> None:
    hits = np.array([[True, True, False, False]])
    assert ndcg_at_k(hits, np.array([2]))[0] == pytest.approx(1.0)
    assert recall_at_k(hits, np.array([2]))[0] == pytest.approx(1.0)


def test_ranking_accumulator_skips_users_without_relevant_items() -> None:
    acc = RankingAccumulator(k=2)
    acc.update(np.array([[True, False], [False, False]]), np.array([1, 0]))
    assert acc.users == 1
    assert acc.precision == pytest.approx(0.5)
    assert acc.recall == pytest.approx(1.0)
    assert acc.ndcg == pytest.approx(1.0)


def test_ranking_accumulator_over_uneven_batches_equals_one_shot() -> None:
    rng = np.random.default_rng(1)
    hits = rng.random((57, 5)) < 0.3
    n_rel = rng.integers(0, 8, 57)
    n_rel = np.maximum(n_rel, np.where(hits.any(axis=1), hits.sum(axis=1), 0))
    one = RankingAccumulator(k=5)
    one.update(hits, n_rel)
    merged = RankingAccumulator(k=5)
    for a, b in [(0, 1), (1, 20), (20, 21), (21, 57)]:
        part = RankingAccumulator(k=5)
        part.update(hits[a:b], n_rel[a:b])
        merged.merge(part)
    assert merged.users == one.users == int((n_rel > 0).sum())
    assert merged.precision == pytest.approx(one.precision)
    assert merged.recall == pytest.approx(one.recall)
    assert merged.ndcg == pytest.approx(one.ndcg)


def test_hits_from_items_and_relevant_csr() -> None:
    relevant = sp.csr_matrix(np.array([[0, 1, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=np.float32))
    top = np.array([[3, 0, 1], [2, -1, 4]])
    np.testing.assert_array_equal(
        hits_at_k(top, relevant), [[True, False, True], [False, False, False]]
    )
    acc = RankingAccumulator(k=3)
    acc.update_from_items(top, relevant)
    assert acc.users == 2
    assert acc.precision == pytest.approx((2 / 3 + 0) / 2)


def test_top_k_excludes_and_breaks_ties_by_index() -> None:
    scores = np.array([[0.5, 0.9, 0.9, 0.1, 0.9], [1.0, 2.0, 3.0, 4.0, 5.0]])
    np.testing.assert_array_equal(top_k_items(scores, 2), [[1, 2], [4, 3]])
    exclude = sp.csr_matrix(np.array([[0, 1, 0, 0, 0], [0, 0, 0, 1, 1]], dtype=np.float32))
    np.testing.assert_array_equal(top_k_items(scores, 3, exclude), [[2, 4, 0], [2, 1, 0]])


def test_top_k_pads_when_too_few_eligible_movies() -> None:
    scores = torch.tensor([[1.0, 2.0, 3.0]])
    exclude = sp.csr_matrix(np.array([[1, 0, 1]], dtype=np.float32))
    np.testing.assert_array_equal(top_k_items(scores, 4, exclude), [[1, -1, -1, -1]])


def test_top_k_matches_full_sort_on_random_scores() -> None:
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 20, (30, 200)).astype(np.float32)  # many ties
    top = top_k_items(scores, 10)
    expected = np.lexsort((np.broadcast_to(np.arange(200), scores.shape), -scores), axis=1)[:, :10]
    np.testing.assert_array_equal(top, expected)
