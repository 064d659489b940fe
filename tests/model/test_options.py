"""Options beyond the published network compute what they claim, on small exact problems.

Guards against: a tied decoder that silently keeps its own weights; centring that subtracts a
baseline at the input but forgets to add it back (or uses other biases than the fit); input
dropout that drops ratings from the loss instead of only from the input; code dropout leaking
into other layers; clipping applied to training outputs; architecture dicts that rebuild a
different network.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.model import ACTIVATIONS, AutoEncoder, SparseRows, model_from_architecture
from aerec.model.baselines import BiasBaseline

N_USERS, N_MOVIES = 30, 20


pytestmark = pytest.mark.usefixtures("one_thread")


def _ratings(seed: int = 0, density: float = 0.35) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    mask = rng.random((N_USERS, N_MOVIES)) < density
    mask[:, 0] = True  # every user rates something
    values = rng.integers(1, 6, size=(N_USERS, N_MOVIES)).astype(np.float64)
    matrix = sp.csr_matrix(np.where(mask, values, 0.0))
    matrix.sort_indices()
    return matrix


def _dense_forward(model: AutoEncoder, x: torch.Tensor) -> torch.Tensor:
    """Textbook dense evaluation (eval mode, no centring) using the model's own weights."""
    act = ACTIVATIONS[model.activation]
    h = act(x @ model.input_weight + model.input_bias)
    for weight, bias in model.middle_layers():
        h = act(h @ weight.t() + bias)
    return ACTIVATIONS[model.output_activation](h @ model.decoder_weight.t() + model.output_bias)


def test_tied_decoder_reuses_the_encoder_weights():
    matrix = _ratings()
    tied = AutoEncoder(N_MOVIES, (8, 4), "selu", "identity", 0.0, tied=True, dtype=torch.float64)
    untied = AutoEncoder(N_MOVIES, (8, 4), "selu", "identity", 0.0, dtype=torch.float64)
    assert "output_weight" not in dict(tied.named_parameters())
    assert sum(p.numel() for p in tied.parameters()) < sum(p.numel() for p in untied.parameters())
    assert tied.decoder_weight is tied.input_weight
    # the decoder's middle layer is the encoder's, transposed
    (w_enc, _), (w_dec, _) = list(tied.middle_layers())
    assert torch.equal(w_dec, w_enc.t())
    dense = torch.from_numpy(matrix.toarray())
    predicted = tied.predict_dense(matrix.indptr, matrix.indices, matrix.data)
    torch.testing.assert_close(predicted, _dense_forward(tied, dense))
    # a step changes the shared weight through both of its uses
    inputs = SparseRows.from_csr(matrix, dtype=torch.float64)
    ((tied(inputs) - inputs.values) ** 2).mean().backward()
    assert tied.input_weight.grad is not None and float(tied.input_weight.grad.abs().sum()) > 0


def test_biases_centring_adds_back_the_fitted_baseline():
    matrix = _ratings()
    model = AutoEncoder(N_MOVIES, (6,), "sigmoid", "identity", 0.0, centring="biases",
                        bias_regularisation=3.0, dtype=torch.float64)
    model.fit_centring(matrix)
    with torch.no_grad():  # a network that outputs exactly 0: predictions are the baseline
        model.output_weight.zero_()
        model.output_bias.zero_()
    reference = BiasBaseline(regularisation=3.0, sweeps=10).fit(matrix)
    predicted = model.predict_dense(matrix.indptr, matrix.indices, matrix.data).numpy()
    expected = reference.predict_known(np.arange(N_USERS), matrix.indptr, matrix.indices,
                                       matrix.data).numpy()
    np.testing.assert_allclose(predicted, expected, atol=1e-9)
    # the network's input is the residual: rating − (μ + b_u + b_i)
    net_input, offsets = model._network_input(SparseRows.from_csr(matrix, dtype=torch.float64))
    rows = np.repeat(np.arange(N_USERS), np.diff(matrix.indptr))
    residual = matrix.data - reference.predict_at(
        matrix.indptr, matrix.indices, matrix.data, rows, matrix.indices).numpy()
    np.testing.assert_allclose(net_input.values.numpy(), residual, atol=1e-9)


def test_mean_centring_subtracts_the_training_mean():
    matrix = _ratings()
    model = AutoEncoder(N_MOVIES, (6,), "sigmoid", "identity", 0.0, centring="mean",
                        dtype=torch.float64)
    model.fit_centring(matrix)
    assert float(model.global_mean) == pytest.approx(matrix.data.mean())
    with torch.no_grad():
        model.output_weight.zero_()
        model.output_bias.zero_()
    out = model.predict_dense(matrix.indptr, matrix.indices, matrix.data)
    assert torch.allclose(out, torch.full_like(out, matrix.data.mean()))


def test_input_dropout_hides_ratings_from_the_input_but_scores_all_of_them():
    matrix = _ratings()
    model = AutoEncoder(N_MOVIES, (6,), "sigmoid", "identity", 0.0, input_dropout=0.5,
                        dtype=torch.float64).train()
    inputs = SparseRows.from_csr(matrix, dtype=torch.float64)
    out = model(inputs, generator=torch.Generator().manual_seed(3))
    assert out.shape == (matrix.nnz,)  # every observed rating is scored
    draw = torch.rand(matrix.nnz, generator=torch.Generator().manual_seed(3),
                      dtype=torch.float64)
    keep = (draw >= 0.5).to(torch.float64)
    assert 0 < float(keep.sum()) < matrix.nnz
    kept = inputs.with_values(inputs.values * keep * 2.0)
    model.eval()
    expected = model(kept, inputs)  # eval mode: no corruption, same weights
    torch.testing.assert_close(out, expected)
    # evaluation never corrupts
    a, b = model(inputs), model(inputs)
    torch.testing.assert_close(a, b)


def test_code_dropout_drops_only_the_code_layer():
    model = AutoEncoder(N_MOVIES, (8, 4), "relu", "identity", dropout=0.0, code_dropout=0.5,
                        dtype=torch.float64).train()
    # widths (8, 4, 8): only the code layer (index 1) gets a mask
    masks = model.dropout_masks(50, torch.Generator().manual_seed(0))
    assert masks[0] is None and masks[2] is None
    assert masks[1].shape == (50, 4)
    assert set(masks[1].unique().tolist()) == {0.0, 2.0}
    assert 0.3 < float((masks[1] == 0).double().mean()) < 0.7


def test_clip_applies_to_predictions_not_to_training_outputs():
    matrix = _ratings()
    model = AutoEncoder(N_MOVIES, (6,), "identity", "identity", 0.0, clip=(1.0, 5.0),
                        dtype=torch.float64)
    with torch.no_grad():
        model.output_bias.fill_(100.0)
    assert float(model.predict_dense(matrix.indptr, matrix.indices, matrix.data).max()) == 5.0
    rows, cols = np.array([0, 1]), np.array([2, 3])
    assert model.predict_at(matrix.indptr, matrix.indices, matrix.data, rows, cols).max() == 5.0
    raw = model(SparseRows.from_csr(matrix, dtype=torch.float64))
    assert float(raw.detach().min()) > 50  # the training path is not clipped


@pytest.mark.parametrize("options", [
    {},
    {"tied": True, "centring": "biases", "clip": (1.0, 5.0)},
    {"code_dropout": 0.3, "input_dropout": 0.2, "input_noise": 0.1, "centring": "mean"},
])
def test_architecture_round_trip(options):
    matrix = _ratings()
    model = AutoEncoder(N_MOVIES, (8, 4), "selu", "identity", 0.1, dtype=torch.float64,
                        **options)
    model.fit_centring(matrix)
    rebuilt = model_from_architecture(model.architecture(), dtype=torch.float64)
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.architecture() == model.architecture()
    torch.testing.assert_close(
        rebuilt.predict_dense(matrix.indptr, matrix.indices, matrix.data),
        model.predict_dense(matrix.indptr, matrix.indices, matrix.data),
    )


def test_published_architecture_dict_is_unchanged():
    """A seed checkpoint's architecture reads exactly as before the options existed."""
    arch = AutoEncoder(N_MOVIES).architecture()
    assert arch == {"n_movies": N_MOVIES, "layers": [512, 256, 64], "activation": "relu",
                    "output_activation": "relu", "dropout": 0.1}


def test_code_and_predict_matches_predict_dense():
    matrix = _ratings()
    model = AutoEncoder(N_MOVIES, (8, 3), "selu", "identity", 0.0, centring="biases",
                        dtype=torch.float64)
    model.fit_centring(matrix)
    codes, predicted = model.code_and_predict(matrix.indptr, matrix.indices, matrix.data)
    assert codes.shape == (N_USERS, 3)
    torch.testing.assert_close(
        predicted, model.predict_dense(matrix.indptr, matrix.indices, matrix.data)
    )
