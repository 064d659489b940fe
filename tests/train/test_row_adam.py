"""RowAdam: Adam with the big matrices' gradients taken as row records, fused into the update.

Guards against: a fused update that drifts from PyTorch's Adam (bias correction, coupled vs
decoupled decay, rows nobody rated), gradients lost when a weight is used twice (tied decoder),
deferral leaking outside its block, and optimiser state that no longer loads as Adam's (resume
from older checkpoints).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.model import AutoEncoder, SparseRows
from aerec.model.sparse_ops import deferring_row_gradients
from aerec.train.row_adam import RowAdam

N_USERS, N_MOVIES = 40, 30

pytestmark = pytest.mark.usefixtures("one_thread")


def _batches() -> list[SparseRows]:
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((N_USERS, N_MOVIES)) < 0.3, rng.integers(1, 6, (N_USERS, N_MOVIES)), 0)
    dense[:, 0] = 0  # a movie nobody rated: still decayed
    matrix = sp.csr_matrix(dense.astype(np.float64))
    return [SparseRows.from_csr(matrix[lo : lo + 16], dtype=torch.float64) for lo in (0, 16, 32)]


def _model(**options) -> AutoEncoder:
    return AutoEncoder(
        N_MOVIES, (8, 4), "relu", dropout=0.0, generator=torch.Generator().manual_seed(2),
        dtype=torch.float64, **options,
    ).train()


def _train(model: AutoEncoder, optimiser: torch.optim.Optimizer, deferred: bool) -> None:
    for batch in _batches():
        loss = ((model(batch) - batch.values) ** 2).mean()
        optimiser.zero_grad()
        if deferred:
            with optimiser.deferring():
                loss.backward()
        else:
            loss.backward()
        optimiser.step()


@pytest.mark.parametrize("decoupled", [False, True], ids=["adam", "adamw"])
@pytest.mark.parametrize("options", [{}, {"tied": True}], ids=["untied", "tied"])
def test_row_gradients_give_pytorchs_adam_update(decoupled, options):
    reference, fused = _model(**options), _model(**options)
    settings = {"lr": 1e-2, "weight_decay": 1e-2, "decoupled_weight_decay": decoupled}
    _train(reference, torch.optim.Adam(reference.parameters(), **settings), deferred=False)
    optimiser = RowAdam(fused.parameters(), **settings)
    _train(fused, optimiser, deferred=True)
    for (name, want), got in zip(reference.named_parameters(), fused.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9, msg=name)
    # the unrated movie's rows moved (weight decay through Adam), as in the reference
    assert not torch.equal(fused.input_weight[0], _model(**options).input_weight[0])


def test_state_dict_is_adams_both_ways():
    """Checkpoints written before RowAdam (torch Adam) resume in it, and vice versa."""
    settings = {"lr": 1e-2, "weight_decay": 1e-5}
    fused = _model()
    optimiser = RowAdam(fused.parameters(), **settings)
    _train(fused, optimiser, deferred=True)
    state = copy.deepcopy(optimiser.state_dict())  # as a checkpoint round trip gives it
    for param_state in state["state"].values():
        assert set(param_state) == {"step", "exp_avg", "exp_avg_sq"}
        assert param_state["step"].dtype == torch.float32 and float(param_state["step"]) == 3
    # continue one copy with torch's Adam, the other with RowAdam: same parameters after
    twin = _model()
    twin.load_state_dict(fused.state_dict())
    plain = torch.optim.Adam(twin.parameters(), **settings)
    plain.load_state_dict(state)
    _train(twin, plain, deferred=False)
    _train(fused, optimiser, deferred=True)
    for want, got in zip(twin.parameters(), fused.parameters()):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)


def test_gradients_are_dense_outside_the_deferring_block():
    model = _model()
    optimiser = RowAdam(model.parameters(), lr=1e-2)
    batch = _batches()[0]
    with optimiser.deferring():
        ((model(batch) - batch.values) ** 2).mean().backward()
    assert model.input_weight.grad is None and model.hidden[0].weight.grad is not None
    optimiser.zero_grad()  # drops the records
    ((model(batch) - batch.values) ** 2).mean().backward()
    assert model.input_weight.grad.shape == model.input_weight.shape
    with pytest.raises(RuntimeError, match="already active"), deferring_row_gradients([]):
        with deferring_row_gradients([]):
            pass
