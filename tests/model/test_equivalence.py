"""The sparse training path computes exactly what the straightforward dense network computes.

Guards against: a sparse first layer or a gathered output layer that silently differs from the
dense masked-MSE autoencoder (wrong transpose, missing bias, dropout drawn at other positions,
gradients missing for movies absent from a batch, weight decay applied only to touched rows).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from aerec.config import TrainConfig
from aerec.model import ACTIVATIONS, AutoEncoder, SparseRows, keep_mask, keep_masks
from aerec.train.trainer import make_optimizer

N_USERS, N_MOVIES = 50, 40


pytestmark = pytest.mark.usefixtures("one_thread")
LAYERS = (12, 8, 4)


def _ratings(seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    mask = rng.random((N_USERS, N_MOVIES)) < 0.25
    mask[7] = False  # a user with no ratings at all
    values = rng.integers(1, 6, size=(N_USERS, N_MOVIES)).astype(np.float64)
    matrix = sp.csr_matrix(np.where(mask, values, 0.0))
    matrix.sort_indices()
    return matrix


class DenseReference(nn.Module):
    """The textbook version: dense input rows, nn.Linear layers, full output, masked MSE."""

    def __init__(self, model: AutoEncoder) -> None:
        super().__init__()
        widths = [model.n_movies, *model.widths, model.n_movies]
        self.linears = nn.ModuleList(
            nn.Linear(a, b, dtype=torch.float64) for a, b in itertools.pairwise(widths)
        )
        sources = [(model.input_weight.t(), model.input_bias)]
        sources += [(lin.weight, lin.bias) for lin in model.hidden]
        sources += [(model.output_weight, model.output_bias)]
        with torch.no_grad():
            for linear, (w, b) in zip(self.linears, sources):
                linear.weight.copy_(w)
                linear.bias.copy_(b)
        self.act = ACTIVATIONS[model.activation]
        self.p = model.dropout
        self.code_layer = model.code_layer

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        hidden = self.linears[:-1]
        masks = [None] * len(hidden)
        if self.training:  # one mask per hidden layer but the code layer, drawn at once
            shapes = [(x.shape[0], linear.out_features) for linear in hidden]
            ps = [0.0 if i == self.code_layer else self.p for i in range(len(hidden))]
            masks = keep_masks(shapes, ps, generator, x.dtype)
        h = x
        for i, linear in enumerate(self.linears):
            h = self.act(linear(h))
            if i < len(masks) and masks[i] is not None:
                h = h * masks[i]
        return h

    def sparse_layout(self) -> dict[str, torch.Tensor]:
        """Parameters named and laid out as in AutoEncoder.named_parameters()."""
        first, *middle, last = self.linears
        out = {"input_weight": first.weight.t(), "input_bias": first.bias}
        for i, linear in enumerate(middle):
            out[f"hidden.{i}.weight"] = linear.weight
            out[f"hidden.{i}.bias"] = linear.bias
        out["output_weight"] = last.weight
        out["output_bias"] = last.bias
        return out


def _settings(name: str) -> dict:
    lr = {"adam": 1e-2, "adamw": 1e-2, "sgd": 1e-1}[name]
    return {"lr": lr, "weight_decay": 1e-2 if name == "adamw" else 1e-5}


def _optimizer(name: str, params) -> torch.optim.Optimizer:
    """The optimiser exactly as training builds it (RowAdam for adam / adamw)."""
    config = TrainConfig(optimizer=name, momentum=0.9, **_settings(name))
    return make_optimizer(config, params)


def _textbook_optimizer(name: str, params) -> torch.optim.Optimizer:
    """PyTorch's own optimiser, default implementation: what the dense reference uses."""
    if name == "sgd":
        return torch.optim.SGD(params, momentum=0.9, **_settings(name))
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls(params, **_settings(name))


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = max(float(b.abs().max()), 1e-30)
    return float((a - b).abs().max()) / scale


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("activation", ["relu", "selu", "sigmoid", "identity"])
@pytest.mark.parametrize("p_dropout", [0.0, 0.3])
@pytest.mark.parametrize("deferred", [False, True], ids=["dense-grads", "row-grads"])
def test_sparse_step_equals_dense_masked_step(optimizer, activation, p_dropout, deferred):
    """One training step, sparse vs the textbook dense network with PyTorch's optimiser: the
    same loss and the same update of every parameter. ``row-grads``: as the trainer steps —
    the big matrices' gradients recorded as rows and fused into RowAdam's update."""
    matrix = _ratings()
    model = AutoEncoder(
        N_MOVIES, LAYERS, activation, dropout=p_dropout,
        generator=torch.Generator().manual_seed(1), dtype=torch.float64,
    )
    reference = DenseReference(model)
    model.train()
    reference.train()
    opt_sparse = _optimizer(optimizer, model.parameters())
    opt_dense = _textbook_optimizer(optimizer, reference.parameters())
    gen_sparse = torch.Generator().manual_seed(5)
    gen_dense = torch.Generator().manual_seed(5)

    # three steps (so optimiser state is used), the last batch partial: 16 + 16 + 18 users
    for rows in (np.arange(0, 16), np.arange(16, 32), np.arange(32, 50)):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        batch = matrix[rows]
        inputs = SparseRows.from_csr(batch, dtype=torch.float64)
        predictions = model(inputs, generator=gen_sparse)
        loss_sparse = ((predictions - inputs.values) ** 2).mean()

        x = torch.from_numpy(batch.toarray())
        observed = torch.from_numpy((batch != 0).toarray()).to(torch.float64)
        output = reference(x, gen_dense)
        loss_dense = (((output - x) ** 2) * observed).sum() / observed.sum()

        assert abs(loss_sparse.item() - loss_dense.item()) <= 1e-12 * loss_dense.item()
        opt_sparse.zero_grad()
        if deferred and hasattr(opt_sparse, "deferring"):
            with opt_sparse.deferring():
                loss_sparse.backward()
            assert model.input_weight.grad is None and model.output_weight.grad is None
        else:
            loss_sparse.backward()
        opt_sparse.step()
        opt_dense.zero_grad()
        loss_dense.backward()
        opt_dense.step()
        dense_params = reference.sparse_layout()
        assert set(dense_params) == set(before)
        for name, p_sparse in model.named_parameters():
            update_sparse = p_sparse.detach() - before[name]
            update_dense = dense_params[name].detach() - before[name]
            assert float(update_dense.abs().max()) > 0 or activation == "relu"
            assert _max_rel(update_sparse, update_dense) <= 1e-5


def test_untouched_movies_still_get_weight_decay():
    """Movies absent from a batch must still be decayed, as in the dense network."""
    matrix = _ratings()
    model = AutoEncoder(N_MOVIES, LAYERS, dropout=0.0, dtype=torch.float64)
    absent = np.setdiff1d(np.arange(N_MOVIES), matrix[:3].indices)
    assert len(absent) > 0
    before = model.input_weight.detach()[absent].clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, weight_decay=0.1)
    inputs = SparseRows.from_csr(matrix[:3], dtype=torch.float64)
    loss = ((model(inputs) - inputs.values) ** 2).mean()
    loss.backward()
    opt.step()
    torch.testing.assert_close(model.input_weight.detach()[absent], before * (1 - 0.05))


def test_outputs_at_other_positions_match_dense_outputs():
    """Validation scores held-out positions: gathered outputs equal the dense output there."""
    matrix = _ratings()
    held_out = _ratings(seed=3)
    model = AutoEncoder(N_MOVIES, LAYERS, "selu", dtype=torch.float64).eval()
    inputs = SparseRows.from_csr(matrix, dtype=torch.float64)
    targets = SparseRows.from_csr(held_out, dtype=torch.float64)
    gathered = model(inputs, targets)
    dense = model.predict_dense(matrix.indptr, matrix.indices, matrix.data)
    assert dense.shape == (N_USERS, N_MOVIES)
    torch.testing.assert_close(gathered, dense[targets.rows, targets.indices])

    reference = DenseReference(model).eval()
    full = reference(torch.from_numpy(matrix.toarray()), torch.Generator())
    torch.testing.assert_close(dense, full)


def test_predict_at_any_order_and_repeats():
    matrix = _ratings()[:10]
    model = AutoEncoder(N_MOVIES, LAYERS, dtype=torch.float64)
    rows = np.array([9, 0, 3, 3, 0, 9])
    cols = np.array([1, 39, 5, 5, 0, 2])
    at = model.predict_at(matrix.indptr, matrix.indices, matrix.data, rows, cols)
    dense = model.predict_dense(matrix.indptr, matrix.indices, matrix.data)
    torch.testing.assert_close(at, dense[torch.from_numpy(rows), torch.from_numpy(cols)])
    assert model.training  # prediction does not leave the module in eval mode


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_keep_mask_drops_at_rate_p_and_replays_from_the_generator(p):
    shape = (256, 512)
    mask = keep_mask(shape, p, torch.Generator().manual_seed(9))
    assert mask.shape == shape and mask.dtype == torch.float32
    kept = mask != 0
    assert torch.allclose(mask[kept], torch.tensor(1 / (1 - p)))
    n = mask.numel()
    # binomial: the dropped share is within 5 standard deviations of p
    assert abs(float((~kept).float().mean()) - p) < 5 * (p * (1 - p) / n) ** 0.5
    again = keep_mask(shape, p, torch.Generator().manual_seed(9))
    other = keep_mask(shape, p, torch.Generator().manual_seed(10))
    assert torch.equal(mask, again)
    assert not torch.equal(mask, other)
    # consecutive masks from one generator differ (the generator advances)
    gen = torch.Generator().manual_seed(9)
    first, second = keep_mask(shape, p, gen), keep_mask(shape, p, gen)
    assert torch.equal(first, mask) and not torch.equal(first, second)
