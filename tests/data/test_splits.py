"""Splits: exact shares, disjointness, reproducibility, and each protocol's meaning."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from aerec.data.ratings import Ratings, RatingScale
from aerec.data.splits import make_splits, union_rows
from aerec.data.store import load_dataset, write_prepared


@pytest.fixture
def ds(tmp_path):
    rng = np.random.default_rng(3)
    users, movies, n = 200, 80, 4000
    keys = rng.choice(users * movies, size=n, replace=False)
    r = Ratings(keys // movies, keys % movies, rng.integers(1, 6, n), rng.integers(0, 1000, n),
                RatingScale(1, 5, 1))
    write_prepared(tmp_path / "ds", r)
    return load_dataset(tmp_path / "ds")


def _pairs(m):
    c = m.tocoo()
    return set(zip(c.row.tolist(), c.col.tolist()))


def test_random_split_is_exact_disjoint_and_complete(ds):
    s = make_splits(ds, "random", test_fraction=0.2, validation_fraction=0.1, seed=1)
    assert s.test.nnz == 800
    assert s.validation.nnz == round(3200 * 0.1) and s.train.nnz == 3200 - 320
    parts = [_pairs(s.train), _pairs(s.validation), _pairs(s.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert parts[0] | parts[1] | parts[2] == _pairs(ds.matrix)
    assert _pairs(s.test_input) == parts[0] | parts[1]
    # values travel with their positions
    np.testing.assert_array_equal(s.test.toarray()[s.test.nonzero()],
                                  ds.matrix.toarray()[s.test.nonzero()])


def test_same_seed_same_split_other_seed_differs(ds):
    a, b = make_splits(ds, seed=5), make_splits(ds, seed=5)
    assert _pairs(a.test) == _pairs(b.test) and _pairs(a.validation) == _pairs(b.validation)
    assert _pairs(make_splits(ds, seed=6).test) != _pairs(a.test)


def test_changing_validation_share_keeps_test(ds):
    a = make_splits(ds, seed=2, validation_fraction=0.1)
    b = make_splits(ds, seed=2, validation_fraction=0.2)
    assert _pairs(a.test) == _pairs(b.test)


def test_user_protocol_keeps_test_users_out_of_training(ds):
    s = make_splits(ds, "user", test_fraction=0.25, holdout_fraction=0.5, seed=0)
    test_users = set(s.test_users.tolist())
    assert len(test_users) == pytest.approx(0.25 * 200, abs=2)
    train_users = set(np.flatnonzero(np.diff(s.train.indptr)).tolist())
    val_users = set(np.flatnonzero(np.diff(s.validation.indptr)).tolist())
    assert not (test_users & train_users) and not (test_users & val_users)
    given_users = set(np.flatnonzero(np.diff(s.test_input.indptr)).tolist())
    assert given_users == test_users, "every test user has given ratings to fold in"
    assert not (_pairs(s.test) & _pairs(s.test_input))
    assert _pairs(s.test) | _pairs(s.test_input) | _pairs(s.train) | _pairs(s.validation) == \
        _pairs(ds.matrix)


def test_time_protocol_tests_on_latest_ratings(ds):
    s = make_splits(ds, "time", test_fraction=0.2, seed=0)
    assert s.test.nnz == 800
    days = ds.matrix.copy()
    days.data = np.asarray(ds.days).astype(np.float32)
    test_days = days.multiply(s.test.astype(bool)).data
    rest_days = days.multiply(s.test_input.astype(bool)).data
    assert test_days.min() >= rest_days.max()


def test_fixed_protocol_needs_stored_test(ds):
    assert make_splits(ds).protocol == "random"
    with pytest.raises(ValueError, match="--test"):
        make_splits(ds, "fixed")
    with pytest.raises(ValueError, match="unknown split protocol"):
        make_splits(ds, "bogus")


def test_union_rows_keeps_zero_ratings_and_sorts_rows():
    """``a + b`` would drop a stored 0 (scales starting at 0); the union keeps every entry,
    sorted within each row, with the matrices' dtype."""
    a = sp.csr_matrix((np.array([0.0, 2.0], np.float32), ([0, 1], [1, 0])), shape=(2, 3))
    b = sp.csr_matrix((np.array([7.0, 1.0], np.float32), ([0, 0], [2, 0])), shape=(2, 3))
    u = union_rows(a, b)
    assert u.nnz == 4 and u.dtype == np.float32
    np.testing.assert_array_equal(u.toarray(), [[1, 0, 7], [2, 0, 0]])
    np.testing.assert_array_equal(u.indices, [0, 1, 2, 0])  # row 0 sorted: 0, 1 (the 0), 2
    assert u.has_sorted_indices
    with pytest.raises(ValueError, match="shapes"):
        union_rows(a, sp.csr_matrix((3, 3)))


def test_union_rows_of_a_split_gives_back_the_whole_matrix(ds):
    splits = make_splits(ds, "random", test_fraction=0.2, validation_fraction=0.1, seed=3)
    whole = union_rows(splits.train, splits.validation, splits.test)
    expected = ds.matrix.copy()
    expected.sort_indices()
    np.testing.assert_array_equal(whole.indptr, expected.indptr)
    np.testing.assert_array_equal(whole.indices, expected.indices)
    np.testing.assert_array_equal(whole.data, expected.data)
