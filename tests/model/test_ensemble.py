"""An ensemble predicts the weighted average of its members, and rebuilds from its dict."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.model import AutoEncoder, Ensemble, ItemAutoEncoder, model_from_architecture
from aerec.train.trainer import oriented


def test_average_of_members_and_round_trip():
    rng = np.random.default_rng(0)
    ratings = sp.csr_matrix(
        np.where(rng.random((12, 9)) < 0.5, rng.integers(1, 6, (12, 9)), 0).astype(float)
    )
    user = AutoEncoder(9, (4,), "sigmoid", "identity", 0.0, generator=torch.Generator().manual_seed(0))
    item = ItemAutoEncoder(9, 12, (3,), generator=torch.Generator().manual_seed(1))
    item.prepare_inference(oriented(ratings, "item"), fold_in_l2=1.0)
    ensemble = Ensemble([user, item], weights=[3.0, 1.0])
    args = (ratings.indptr, ratings.indices, ratings.data.astype(np.float32))
    expected = 0.75 * user.predict_dense(*args) + 0.25 * item.predict_dense(*args)
    torch.testing.assert_close(ensemble.predict_dense(*args), expected)
    rows, cols = np.array([1, 5]), np.array([8, 0])
    torch.testing.assert_close(ensemble.predict_at(*args, rows, cols), expected[rows, cols])
    codes, predicted = ensemble.code_and_predict(*args)
    assert codes.shape == (12, 4 + 4)  # user code 4 wide, item code width + 1
    torch.testing.assert_close(predicted, expected)
    torch.testing.assert_close(ensemble.encode(*args), codes)  # the codes without predicting
    rebuilt = model_from_architecture(ensemble.architecture())
    rebuilt.load_state_dict(ensemble.state_dict())
    torch.testing.assert_close(rebuilt.predict_dense(*args), expected)
    with pytest.raises(ValueError, match="movies"):
        Ensemble([user, AutoEncoder(8, (4,))])


def test_weights_used_as_given_when_not_normalised():
    user = AutoEncoder(9, (4,), "sigmoid", "identity", 0.0, generator=torch.Generator().manual_seed(0))
    other = AutoEncoder(9, (3,), "sigmoid", "identity", 0.0,
                        generator=torch.Generator().manual_seed(2))
    ensemble = Ensemble([user, other], weights=[0.6, 0.5], normalise=False)
    args = (np.array([0, 2]), np.array([1, 4]), np.array([5.0, 2.0], np.float32))
    expected = 0.6 * user.predict_dense(*args) + 0.5 * other.predict_dense(*args)
    torch.testing.assert_close(ensemble.predict_dense(*args), expected)
    rebuilt = model_from_architecture(ensemble.architecture())
    rebuilt.load_state_dict(ensemble.state_dict())
    assert rebuilt.normalise is False
    torch.testing.assert_close(rebuilt.predict_dense(*args), expected)
    # dicts written before the option existed rebuild a normalised average
    old = {k: v for k, v in ensemble.architecture().items() if k != "normalise"}
    assert model_from_architecture(old).normalise is True
