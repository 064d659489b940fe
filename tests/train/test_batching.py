"""User batching: every user once per epoch, the partial batch kept, seeded shuffles.

Guards against: silently dropping the last partial batch (DeepRecommender-style), batches that
repeat or skip users, shuffles that are not reproducible or never change between epochs.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from aerec.train.batching import batch_count, iter_user_batches, rows_batch, users_with_ratings


def _matrix() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((50, 40)) < 0.3, rng.integers(1, 6, (50, 40)), 0).astype(np.float32)
    dense[[4, 9]] = 0  # two users without ratings
    return sp.csr_matrix(dense)


def test_last_partial_batch_is_kept():
    users = np.arange(50)
    batches = list(iter_user_batches(users, 16, np.random.default_rng(1)))
    assert [len(b) for b in batches] == [16, 16, 16, 2]
    assert batch_count(50, 16) == 4
    assert sorted(np.concatenate(batches).tolist()) == list(range(50))


def test_shuffle_is_seeded_and_changes_each_epoch():
    users = np.arange(50)
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    epoch1_a = np.concatenate(list(iter_user_batches(users, 16, rng_a)))
    epoch1_b = np.concatenate(list(iter_user_batches(users, 16, rng_b)))
    epoch2_a = np.concatenate(list(iter_user_batches(users, 16, rng_a)))
    np.testing.assert_array_equal(epoch1_a, epoch1_b)
    assert not np.array_equal(epoch1_a, epoch2_a)
    assert not np.array_equal(epoch1_a, users)


def test_users_without_ratings_are_not_batched():
    matrix = _matrix()
    users = users_with_ratings(matrix)
    assert 4 not in users and 9 not in users and len(users) == 48


def test_rows_batch_is_the_csr_slice_in_the_given_order():
    matrix = _matrix()
    rows = np.array([7, 0, 31])
    batch = rows_batch(matrix, rows)
    assert batch.batch_size == 3 and batch.n_columns == 40
    dense = batch.to_dense().numpy()
    np.testing.assert_array_equal(dense, matrix[rows].toarray())
    assert batch.indices.dtype == torch.int64 and batch.values.dtype == torch.float32


def test_row_batches_are_the_user_batches_with_their_csr_slices(monkeypatch):
    import aerec.train.batching as batching

    monkeypatch.setattr(batching, "GATHER_BATCHES", 2)  # several gathered blocks
    matrix = _matrix()
    users = users_with_ratings(matrix)
    expected = list(iter_user_batches(users, 5, np.random.default_rng(3)))
    got = list(batching.iter_rating_batches(matrix, users, 5, np.random.default_rng(3)))
    assert len(got) == len(expected) == 10  # 48 users: nine of 5, the partial one of 3 kept
    for want_rows, (rows, batch) in zip(expected, got):
        np.testing.assert_array_equal(rows, want_rows)
        reference = rows_batch(matrix, want_rows)
        for name in ("indptr", "indices", "values"):
            assert torch.equal(getattr(batch, name), getattr(reference, name)), name
        assert batch.indices.dtype == torch.int64 and batch.values.dtype == torch.float32
