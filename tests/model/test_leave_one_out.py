"""Leave-one-out predictions (what "because you rated …" is computed from): the exact rank-one
downdates of the item-based and Bayesian models equal folding every row in anew.

Guards against: a downdate formula that drifts from the model's own fold-in (wrong penalty,
offsets, bias column, sample average or clipping), an ensemble or ranking head that skips its
members' fast paths, and a fast path taken where it does not apply (non-identity outputs,
bias centring)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.model import BayesianMF, Ensemble, ItemAutoEncoder, ModelBase, RankedModel
from aerec.model.leave_one_out import by_rows, leave_one_out_at
from aerec.train.trainer import oriented

N_MOVIES, N_USERS = 30, 50


def _ratings():
    rng = np.random.default_rng(0)
    mask = rng.random((N_USERS, N_MOVIES)) < 0.4
    return sp.csr_matrix(np.where(mask, rng.integers(1, 6, (N_USERS, N_MOVIES)), 0).astype(float))


def _item(output="identity", centring="none", clip=None) -> ItemAutoEncoder:
    model = ItemAutoEncoder(N_MOVIES, N_USERS, (6,), "sigmoid", output,
                            generator=torch.Generator().manual_seed(1), dtype=torch.float64,
                            centring=centring, clip=clip)
    rows = oriented(_ratings(), "item")
    model.fit_centring(rows)
    model.prepare_inference(rows, fold_in_l2=0.7)
    return model


def _bayesian(clip=None, scales=False) -> BayesianMF:
    rng = np.random.default_rng(3)
    model = BayesianMF(N_MOVIES, 3, 4, clip=clip)
    a = rng.normal(size=(4, 3, 3))
    model.set_samples(rng.normal(size=(4, N_MOVIES, 3)), rng.normal(size=(4, 3)),
                      a @ a.transpose(0, 2, 1) + np.eye(3), 3.5, 2.0,
                      rng.gamma(2.0, 0.5, size=(4, N_MOVIES)) if scales else None)
    return model


def _user(n):
    rng = np.random.default_rng(n)
    columns = np.sort(rng.choice(N_MOVIES, n, replace=False))
    return columns, rng.integers(1, 6, n).astype(np.float32)


@pytest.mark.parametrize("n", [1, 4, 12])  # fewer and more ratings than the code is wide
@pytest.mark.parametrize("make", [
    lambda: _item(), lambda: _item(centring="mean"), lambda: _item(clip=(1.0, 5.0)),
    lambda: _bayesian(), lambda: _bayesian(clip=(1.0, 5.0)), lambda: _bayesian(scales=True),
])
def test_downdates_equal_folding_in_each_row(make, n):
    model = make()
    # the exact downdate is the model's own, not the generic one-row-per-rating path
    assert type(model).leave_one_out_at is not ModelBase.leave_one_out_at
    columns, ratings = _user(n)
    tested = np.arange(n)[::-1]
    targets = np.array([0, 7, 7, 29])
    fast = leave_one_out_at(model, columns, ratings, tested, targets)
    slow = by_rows(model, columns, ratings, tested, targets)
    assert fast.shape == (n + 1, 4)
    torch.testing.assert_close(fast.double(), slow.double(), rtol=1e-6, atol=1e-6)


def test_other_item_models_fold_each_row_in():
    for model in (_item(output="sigmoid"), _item(centring="biases")):
        columns, ratings = _user(5)
        got = leave_one_out_at(model, columns, ratings, np.arange(5), np.array([1, 2]))
        torch.testing.assert_close(
            got, by_rows(model, columns, ratings, np.arange(5), np.array([1, 2]))
        )


def test_ensemble_and_ranking_head_use_their_members_paths():
    ensemble = Ensemble([_item(), _bayesian(), _item(output="sigmoid")],
                        weights=[0.5, 0.4, 0.2], normalise=False)
    ranked = RankedModel(ensemble, torch.zeros(N_MOVIES, N_MOVIES), 1.0)
    columns, ratings = _user(8)
    tested, targets = np.array([2, 0, 5]), np.array([3, 4])
    expected = by_rows(ensemble, columns, ratings, tested, targets)
    for model in (ensemble, ranked):
        torch.testing.assert_close(
            leave_one_out_at(model, columns, ratings, tested, targets).double(),
            expected.double(), rtol=1e-6, atol=1e-6,
        )
