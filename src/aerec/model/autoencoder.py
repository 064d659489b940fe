"""The user-based autoencoder: a user's rating row in, the same row reconstructed out.

Architecture (the published ``seed`` preset, ``layers=(512, 256, 64)``)::

    n_movies → 512 → 256 → 64 → 256 → 512 → n_movies
               act   act   act  act   act   act          (activation after EVERY layer)
               drop  drop       drop  drop               (dropout after each hidden layer
                                                          except the 64-unit code layer)

``layers`` lists the encoder widths; the decoder mirrors them without repeating the code
(narrowest, last) layer. Dropout is applied, in training only, to the activated output of every
hidden layer except the code layer — for the seed preset after the 512- and 256-unit layers of
the encoder and of the decoder. Missing ratings enter as 0 and the loss sees only observed
entries, so the network is evaluated sparsely:

* the first layer reads only the rated movies' weight rows (:func:`sparse_input_linear`);
* the last layer is computed only at the positions that are scored
  (:func:`sampled_output_linear`), or densely for a bounded batch (:meth:`predict_dense`).

Both give the same numbers as the straightforward dense network (tests/model/test_equivalence.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from aerec.model.sparse_ops import sampled_output_linear, sparse_input_linear
from aerec.model.sparse_rows import SparseRows

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "selu": F.selu,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}


def dropout(hidden: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout with an explicit random generator.

    A unit is zeroed where ``torch.rand(hidden.shape, generator=generator) < p`` and the
    survivors are scaled by ``1 / (1 - p)``. The generator makes masks reproducible and lets a
    reference implementation draw the very same masks.
    """
    if p <= 0.0:
        return hidden
    keep = torch.rand(hidden.shape, generator=generator, dtype=hidden.dtype, device=hidden.device)
    return hidden * (keep >= p).to(hidden.dtype) * (1.0 / (1.0 - p))


def hidden_widths(layers: Sequence[int]) -> list[int]:
    """Encoder widths mirrored into the decoder.

    ``(512, 256, 64)`` → ``[512, 256, 64, 256, 512]`` (the code layer is not repeated).
    """
    layers = list(layers)
    return layers + layers[-2::-1]


class AutoEncoder(nn.Module):
    """User-based autoencoder over ``n_movies`` movies.

    Parameters (``state_dict`` keys):

    * ``input_weight`` ``(n_movies, widths[0])``, ``input_bias`` ``(widths[0],)`` — first layer,
      stored movie-major so a user's rated movies select rows;
    * ``hidden.{i}.weight`` ``(widths[i+1], widths[i])`` and ``hidden.{i}.bias`` — the middle
      layers (``nn.Linear``);
    * ``output_weight`` ``(n_movies, widths[-1])``, ``output_bias`` ``(n_movies,)`` — last layer,
      one row per movie so scoring a movie gathers one row.

    Initialisation is PyTorch's ``nn.Linear`` default — weights and biases uniform in
    ``±1/sqrt(fan_in)`` — drawn from ``generator`` when given (reproducible without touching the
    global RNG).
    """

    def __init__(
        self,
        n_movies: int,
        layers: Sequence[int] = (512, 256, 64),
        activation: str = "relu",
        output_activation: str | None = None,
        dropout: float = 0.1,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if n_movies < 1 or not layers or any(int(w) < 1 for w in layers):
            raise ValueError(f"invalid architecture: n_movies={n_movies}, layers={list(layers)}")
        output_activation = output_activation or activation
        for name in (activation, output_activation):
            if name not in ACTIVATIONS:
                raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.n_movies = int(n_movies)
        self.layers = [int(w) for w in layers]
        self.activation = activation
        self.output_activation = output_activation
        self.dropout = float(dropout)
        widths = hidden_widths(self.layers)
        self.widths = widths
        #: Index (into ``widths``) of the code layer, the only hidden layer without dropout.
        self.code_layer = len(self.layers) - 1
        self.input_weight = nn.Parameter(torch.empty(n_movies, widths[0], dtype=dtype))
        self.input_bias = nn.Parameter(torch.empty(widths[0], dtype=dtype))
        self.hidden = nn.ModuleList(
            nn.Linear(w_in, w_out, dtype=dtype) for w_in, w_out in itertools.pairwise(widths)
        )
        self.output_weight = nn.Parameter(torch.empty(n_movies, widths[-1], dtype=dtype))
        self.output_bias = nn.Parameter(torch.empty(n_movies, dtype=dtype))
        self.reset_parameters(generator)

    # ------------------------------------------------------------------ construction
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Uniform ``±1/sqrt(fan_in)`` for every weight and bias, layer by layer, in order."""
        layers = [(self.input_weight, self.input_bias, self.n_movies)]
        layers += [(lin.weight, lin.bias, lin.in_features) for lin in self.hidden]
        layers.append((self.output_weight, self.output_bias, self.widths[-1]))
        with torch.no_grad():
            for weight, bias, fan_in in layers:
                bound = 1.0 / math.sqrt(fan_in)
                nn.init.uniform_(weight, -bound, bound, generator=generator)
                nn.init.uniform_(bias, -bound, bound, generator=generator)

    def architecture(self) -> dict:
        """Everything needed to rebuild this network, as plain types (:meth:`from_architecture`)."""
        return {
            "n_movies": self.n_movies,
            "layers": list(self.layers),
            "activation": self.activation,
            "output_activation": self.output_activation,
            "dropout": self.dropout,
        }

    @classmethod
    def from_architecture(cls, arch: dict, **kwargs: object) -> AutoEncoder:
        """Rebuild an (untrained) network from :meth:`architecture`'s dict."""
        return cls(
            int(arch["n_movies"]), [int(w) for w in arch["layers"]], str(arch["activation"]),
            str(arch["output_activation"]), float(arch["dropout"]), **kwargs,  # type: ignore[arg-type]
        )

    @property
    def device(self) -> torch.device:
        return self.output_bias.device

    @property
    def dtype(self) -> torch.dtype:
        return self.output_bias.dtype

    # ------------------------------------------------------------------ forward pieces
    def hidden_state(
        self, inputs: SparseRows, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Activations of the last hidden layer, ``(batch, widths[-1])``.

        ``inputs`` ``(batch, n_movies)`` sparse ratings. Dropout is applied when the module is
        in training mode, drawing masks from ``generator``.
        """
        act = ACTIVATIONS[self.activation]
        drop = self.training and self.dropout > 0.0
        h = act(sparse_input_linear(inputs, self.input_weight, self.input_bias))
        if drop and self.code_layer != 0:
            h = dropout(h, self.dropout, generator)
        for i, linear in enumerate(self.hidden, start=1):
            h = act(linear(h))
            if drop and i != self.code_layer:
                h = dropout(h, self.dropout, generator)
        return h

    def output_at(self, hidden: torch.Tensor, targets: SparseRows) -> torch.Tensor:
        """Network outputs at the positions of ``targets`` only, ``(targets.nnz,)``.

        ``hidden`` from :meth:`hidden_state`; ``targets`` has the same rows as the input batch
        and, per row, the movie columns to score (CSR order is kept).
        """
        z = sampled_output_linear(hidden, self.output_weight, self.output_bias, targets)
        return ACTIVATIONS[self.output_activation](z)

    def output_dense(self, hidden: torch.Tensor) -> torch.Tensor:
        """Network outputs for every movie, ``(batch, n_movies)`` — bounded batches only."""
        z = torch.addmm(self.output_bias, hidden, self.output_weight.t())
        return ACTIVATIONS[self.output_activation](z)

    def forward(
        self,
        inputs: SparseRows,
        targets: SparseRows | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Outputs at ``targets``' positions (default: the input's own positions), ``(nnz,)``.

        Training reconstructs the input, so ``targets=None``; validation feeds training ratings
        and scores held-out positions by passing them as ``targets``.
        """
        hidden = self.hidden_state(inputs, generator)
        return self.output_at(hidden, inputs if targets is None else targets)

    # ------------------------------------------------------------------ prediction API
    def _inputs(self, indptr: object, indices: object, values: object) -> SparseRows:
        return SparseRows.from_arrays(
            indptr, indices, values, self.n_movies, dtype=self.dtype, device=self.device
        )

    @torch.no_grad()
    def predict_dense(self, indptr: object, indices: object, values: object) -> torch.Tensor:
        """Predicted ratings of every movie for a bounded batch of users, ``(batch, n_movies)``.

        ``indptr`` ``(batch + 1,)``, ``indices`` ``(nnz,)`` movie indices and ``values``
        ``(nnz,)`` ratings are the CSR arrays of the users' known ratings (NumPy or torch, e.g.
        ``m.indptr, m.indices, m.data`` of a SciPy CSR slice). No dropout; raw network outputs
        (not clipped to the rating scale). Memory is ``batch × n_movies`` floats: slice large
        sets of users into batches.
        """
        hidden = self._eval_hidden(self._inputs(indptr, indices, values))
        return self.output_dense(hidden)

    @torch.no_grad()
    def predict_at(
        self, indptr: object, indices: object, values: object, rows: object, cols: object
    ) -> torch.Tensor:
        """Predicted ratings only at given (user row, movie) positions, ``(k,)``.

        The first three arguments are the batch's known ratings as in :meth:`predict_dense`;
        ``rows`` ``(k,)`` index users within the batch (0 … batch-1) and ``cols`` ``(k,)`` are
        movie indices, in any order (repeats allowed). Output ``j`` is the prediction for
        ``(rows[j], cols[j])``. Costs O(k × width), never ``batch × n_movies``.
        """
        inputs = self._inputs(indptr, indices, values)
        targets, order = SparseRows.from_positions(
            rows, cols, inputs.batch_size, self.n_movies, device=self.device
        )
        scored = self.output_at(self._eval_hidden(inputs), targets)
        out = torch.empty_like(scored)
        out[order] = scored
        return out

    def _eval_hidden(self, inputs: SparseRows) -> torch.Tensor:
        was_training = self.training
        self.eval()
        try:
            return self.hidden_state(inputs)
        finally:
            self.train(was_training)
