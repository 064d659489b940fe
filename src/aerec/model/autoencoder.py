"""The autoencoder: a sparse rating row in, the same row reconstructed out.

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

Options beyond the published network (all off by default, so the defaults are the published
network bit for bit):

* ``code_dropout`` — dropout on the code layer too (DeepRecommender drops 80 % there);
* ``input_dropout`` / ``input_noise`` — training-time corruption of the *input* ratings (a
  share of each row's ratings hidden, Gaussian noise on the rest); the loss still scores every
  observed rating, so the network learns to predict ratings it was not shown (denoising);
* ``tied`` — the decoder reuses the encoder's weights, transposed (half the parameters);
* ``centring`` — the network models the residual of a baseline: ``"mean"`` subtracts the
  training mean μ, ``"biases"`` subtracts ``μ + b_row + b_column`` (regularised biases, see
  :meth:`fit_centring`); predictions add the baseline back;
* ``clip`` — the prediction API clamps ratings to the scale (training losses stay raw).

This module holds the row-oriented network (rows are users: the published *user-based*
model). The *item-based* model (rows are movies) in :mod:`aerec.model.item_autoencoder`
subclasses it and adds how a user is scored from their ratings.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from aerec.model.base import ModelBase, register
from aerec.model.kernels import keep_mask_kernel, numba_threads
from aerec.model.sparse_ops import sampled_output_linear, sparse_input_linear
from aerec.model.sparse_rows import SparseRows

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "selu": F.selu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "elu": F.elu,
    "identity": lambda x: x,
}

#: What the network models: raw ratings, ratings minus the mean, or minus mean and biases.
CENTRING_NAMES = ("none", "mean", "biases")

#: Rows encoded at a time by the helpers that sweep a whole matrix (bounded memory).
ENCODE_BATCH = 4096

#: Names of the settings the autoencoder family accepts (validated in
#: :meth:`AutoEncoderConfig.problems`).
ACTIVATION_NAMES = tuple(ACTIVATIONS)
OPTIMIZER_NAMES = ("adam", "sgd", "adamw")
LR_SCHEDULE_NAMES = ("none", "step", "cosine", "plateau")
ORIENTATION_NAMES = ("user", "item")


@dataclass(frozen=True)
class AutoEncoderConfig:
    """The autoencoder family's settings (``model = "autoencoder"``): the network and how it
    is optimised. Part of the flat :class:`aerec.config.TrainConfig` (TOML keys are these field
    names); defaults are the published ``seed`` network."""

    #: What a row of the network is. "user" (published, U-AutoRec): a user's vector of movie
    #: ratings in, reconstructed out; batches are users. "item" (I-AutoRec): a movie's vector
    #: of user ratings in and out; batches are movies (the transposed CSR), and a user is
    #: scored from their ratings by fold-in (see ``aerec.model.item_autoencoder``).
    orientation: str = "user"
    #: Encoder widths; the decoder mirrors them: (512, 256, 64) → n→512→256→64→256→512→n.
    #: One width, e.g. (500,), is the single-hidden-layer AutoRec network n→500→n.
    layers: tuple[int, ...] = (512, 256, 64)
    #: Activation after every hidden layer: relu, selu, sigmoid, tanh, elu or identity.
    activation: str = "relu"
    #: Activation of the output layer; "same" uses ``activation`` (the published network).
    output_activation: str = "same"
    #: Dropout probability after each hidden layer except the code (narrowest) layer.
    dropout: float = 0.1
    #: Dropout probability after the code layer (DeepRecommender drops 0.8 there).
    code_dropout: float = 0.0
    #: Training only: share of each input row's ratings hidden from the input; the loss still
    #: scores all of them (denoising), so the network learns to predict unseen ratings.
    input_dropout: float = 0.0
    #: Training only: standard deviation of Gaussian noise added to the input ratings.
    input_noise: float = 0.0
    #: Decoder weights tied to the encoder's (transposed): half the parameters.
    tied: bool = False
    #: What the network models: "none" raw ratings (published); "mean" ratings minus the
    #: training mean; "biases" ratings minus μ + b_user + b_movie (regularised biases fitted on
    #: the training split); the baseline is added back to every prediction.
    centring: str = "none"
    #: Regularisation λ of the centring biases (ratings' worth of shrinkage towards 0).
    bias_regularisation: float = 10.0
    #: Dense re-feeding (DeepRecommender): after each step, the batch's dense reconstruction is
    #: fed back as an input and reconstructed this many times (each an extra optimiser step).
    #: Costs a dense ``batch × row width`` block per step.
    refeed: int = 0
    #: Item-based fold-in penalty λ_f as a multiple of the one training implies
    #: (``N · weight_decay / 2``); 0 = choose the multiple on the validation split.
    fold_in_scale: float = 0.0
    #: Optimiser: adam, adamw or sgd.
    optimizer: str = "adam"
    #: Learning rate (the initial one when a schedule is used).
    lr: float = 1e-4
    #: L2 penalty as the optimiser's ``weight_decay`` (decoupled for adamw).
    weight_decay: float = 1e-5
    #: L2 penalty λ of the *summed* objective ``Σ squared errors + λ/2 ‖θ‖²`` (AutoRec's λ);
    #: > 0 replaces ``weight_decay`` by ``λ / N`` for N training ratings, so one λ shrinks each
    #: user's or movie's weights alike on a dataset of any size.
    l2: float = 0.0
    #: SGD momentum (sgd only).
    momentum: float = 0.9
    #: Learning-rate schedule, stepped once per epoch: none, step, cosine, or plateau
    #: (multiply by ``lr_gamma`` after ``lr_step_epochs`` epochs without a better validation
    #: RMSE).
    lr_schedule: str = "none"
    #: step schedule: multiply the rate by ``lr_gamma`` every ``lr_step_epochs`` epochs;
    #: plateau schedule: the epochs without improvement that trigger a reduction.
    lr_step_epochs: int = 10
    #: step / plateau schedule: the factor applied to the rate.
    lr_gamma: float = 0.5
    #: cosine schedule: the rate reached at the last epoch.
    lr_min: float = 0.0
    #: Rows per optimiser step — users, or movies when ``orientation = "item"``; the last,
    #: partial batch of an epoch is kept.
    batch_size: int = 128
    #: Optimiser-step budget; > 0 replaces ``epochs`` by ``ceil(steps / batches per epoch)``,
    #: so a preset trains small and large datasets alike to convergence (with ``patience``).
    steps: int = 0
    #: A batch loss above ``divergence_factor × max|rating|²`` (or not finite) stops the run.
    divergence_factor: float = 100.0

    @staticmethod
    def describe(c: Any) -> str:
        """One line that says what the flat config ``c`` trains."""
        layers = "-".join(str(w) for w in c.layers)
        return (
            f"layers {layers}, {c.activation}, dropout {c.dropout:g}, "
            f"{c.optimizer} lr {c.lr:g} (weight decay {c.weight_decay:g}), "
            f"batch {c.batch_size}, "
            + (f"{c.steps} optimiser steps" if c.steps > 0 else f"{c.epochs} epochs")
            + f", seed {c.seed}"
            + (f", {c.orientation}-based" if c.orientation != "user" else "")
        )

    @staticmethod
    def problems(c: Any) -> Iterator[str]:
        """What is wrong with the autoencoder settings of the flat config ``c``."""
        if not c.layers or any(w < 1 for w in c.layers):
            yield f"layers must be positive widths, got {list(c.layers)}"
        if c.activation not in ACTIVATION_NAMES:
            yield f"activation {c.activation!r} is not one of {', '.join(ACTIVATION_NAMES)}"
        if c.output_activation not in (*ACTIVATION_NAMES, "same"):
            yield f"output_activation {c.output_activation!r} is not 'same' or an activation"
        if c.orientation not in ORIENTATION_NAMES:
            yield f"orientation {c.orientation!r} is not one of {', '.join(ORIENTATION_NAMES)}"
        for name in ("dropout", "code_dropout", "input_dropout"):
            value = getattr(c, name)
            if not 0.0 <= value < 1.0:
                yield f"{name} must be in [0, 1), got {value}"
        if not c.input_noise >= 0:
            yield f"input_noise must be ≥ 0, got {c.input_noise}"
        if c.centring not in CENTRING_NAMES:
            yield f"centring {c.centring!r} is not one of {', '.join(CENTRING_NAMES)}"
        if not c.bias_regularisation >= 0:
            yield f"bias_regularisation must be ≥ 0, got {c.bias_regularisation}"
        if c.refeed < 0:
            yield f"refeed must be ≥ 0, got {c.refeed}"
        if not c.fold_in_scale >= 0:
            yield f"fold_in_scale must be ≥ 0 (0 = choose on validation), got {c.fold_in_scale}"
        if c.steps < 0:
            yield f"steps must be ≥ 0 (0 = use epochs), got {c.steps}"
        if c.optimizer not in OPTIMIZER_NAMES:
            yield f"optimizer {c.optimizer!r} is not one of {', '.join(OPTIMIZER_NAMES)}"
        if not (c.lr > 0 and math.isfinite(c.lr)):
            yield f"lr must be a positive number, got {c.lr}"
        if not c.weight_decay >= 0:
            yield f"weight_decay must be ≥ 0, got {c.weight_decay}"
        if not c.l2 >= 0:
            yield f"l2 must be ≥ 0 (0 = use weight_decay), got {c.l2}"
        if not 0 <= c.momentum < 1:
            yield f"momentum must be in [0, 1), got {c.momentum}"
        if c.lr_schedule not in LR_SCHEDULE_NAMES:
            yield f"lr_schedule {c.lr_schedule!r} is not one of {', '.join(LR_SCHEDULE_NAMES)}"
        if c.lr_step_epochs < 1:
            yield f"lr_step_epochs must be ≥ 1, got {c.lr_step_epochs}"
        if not c.lr_gamma > 0:
            yield f"lr_gamma must be > 0, got {c.lr_gamma}"
        if not 0 <= c.lr_min <= c.lr:
            yield f"lr_min must be in [0, lr], got {c.lr_min}"
        if c.batch_size < 1:
            yield f"batch_size must be ≥ 1, got {c.batch_size}"
        if not c.divergence_factor > 0:
            yield f"divergence_factor must be > 0, got {c.divergence_factor}"



def keep_masks(
    shapes: Sequence[Sequence[int]], ps: Sequence[float], generator: torch.Generator | None,
    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
) -> list[torch.Tensor | None]:
    """Scaled dropout keep-masks, one per ``(shape, p)``: ``1 / (1 - p)`` where a unit is kept,
    ``0`` where it is dropped; ``None`` where ``p`` is 0.

    Each unit is dropped with probability ``p`` (to 2⁻³² — finer than a float32 uniform draw).
    The masks are consecutive stretches of one SplitMix64 stream seeded by a single 63-bit draw
    from ``generator`` (the global torch generator when ``None``), so the torch generator's
    state alone determines every mask (checkpoints and resumed runs replay them). The bits are
    computed and compared in one compiled pass (:func:`~aerec.model.kernels.keep_mask_kernel`):
    the four masks of a ``seed`` training step (batch 128) take ~0.1 ms, against ~0.85 ms with
    ``torch.rand`` and comparisons.
    """
    counts = [math.prod(shape) if p > 0 else 0 for shape, p in zip(shapes, ps, strict=True)]
    total = sum(counts)
    if total == 0:
        return [None] * len(counts)
    # the draw happens on the generator's own device (a CUDA run's generator lives on the GPU)
    seed = np.uint64(int(torch.randint(
        0, 2**63 - 1, (), generator=generator,
        device=generator.device if generator is not None else None,
    )))
    work_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    block = torch.empty(total, dtype=work_dtype)
    values = block.numpy()
    scalar = values.dtype.type
    numba_threads()
    fill = keep_mask_kernel()
    masks: list[torch.Tensor | None] = []
    start = 0
    for shape, p, count in zip(shapes, ps, counts, strict=True):
        if count == 0:
            masks.append(None)
            continue
        threshold = np.uint64(min(round(p * 2**32), 2**32 - 1))
        fill(values[start : start + count], seed, np.int64(start), threshold,
             scalar(1.0 / (1.0 - p)))
        mask = block[start : start + count].view(tuple(shape))
        masks.append(mask.to(device=device, dtype=dtype))
        start += count
    return masks


def keep_mask(
    shape: Sequence[int], p: float, generator: torch.Generator | None,
    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
) -> torch.Tensor:
    """One scaled keep-mask (:func:`keep_masks`); all ones, nothing drawn, when ``p`` is 0."""
    mask = keep_masks([shape], [p], generator, dtype, device)[0]
    return torch.ones(tuple(shape), dtype=dtype, device=device) if mask is None else mask


def hidden_widths(layers: Sequence[int]) -> list[int]:
    """Encoder widths mirrored into the decoder.

    ``(512, 256, 64)`` → ``[512, 256, 64, 256, 512]`` (the code layer is not repeated).
    """
    layers = list(layers)
    return layers + layers[-2::-1]


def row_biases(
    inputs: SparseRows, weights: torch.Tensor, global_mean: torch.Tensor,
    column_bias: torch.Tensor, regularisation: float,
) -> torch.Tensor:
    """Each row's regularised bias given fixed column biases, ``(batch,)``.

    ``b_row = Σ_j w_j (r_j − μ − b_j) / (λ + Σ_j w_j)`` over the row's ratings (``weights``
    ``(nnz,)`` is 1 for a counted rating, 0 for one hidden by input dropout) — the closed-form
    ridge solve of the bias model with the column biases held fixed, i.e. the last half-sweep of
    the alternating fit, so a training row gets exactly the bias the fit gave it.
    """
    residual = inputs.values - global_mean - column_bias.index_select(0, inputs.indices)
    sums = torch.zeros(inputs.batch_size, dtype=residual.dtype, device=residual.device)
    counts = torch.zeros_like(sums)
    sums.index_add_(0, inputs.rows, residual * weights)
    counts.index_add_(0, inputs.rows, weights)
    return sums / (counts + regularisation).clamp_min(1e-12)


@register("autoencoder", config=AutoEncoderConfig, model="autoencoder",
          summary="the user-based autoencoder (U-AutoRec; the published network)")
class AutoEncoder(ModelBase):
    """Row-oriented autoencoder over ``n_columns`` inputs (the user-based model: rows are
    users, columns the ``n_movies`` movies).

    Parameters (``state_dict`` keys):

    * ``input_weight`` ``(n_columns, widths[0])``, ``input_bias`` ``(widths[0],)`` — first layer,
      stored column-major so a row's rated columns select rows of the weight;
    * ``hidden.{i}.weight`` ``(widths[i+1], widths[i])`` and ``hidden.{i}.bias`` — the middle
      layers (``nn.Linear``); with ``tied`` only the encoder's, plus ``decoder_bias.{i}``;
    * ``output_weight`` ``(n_columns, widths[-1])`` (absent when ``tied``: the input weight is
      reused), ``output_bias`` ``(n_columns,)`` — last layer, one row per column;
    * with centring, buffers ``global_mean`` ``()`` and ``column_bias`` ``(n_columns,)``.

    Initialisation is PyTorch's ``nn.Linear`` default — weights and biases uniform in
    ``±1/sqrt(fan_in)`` — drawn from ``generator`` when given (reproducible without touching the
    global RNG).
    """

    #: ``"user"``: a row is a user's ratings of movies.
    orientation = "user"
    #: The name in result tables, for the user- and the item-based network alike.
    label = "autoencoder"

    def __init__(
        self,
        n_movies: int,
        layers: Sequence[int] = (512, 256, 64),
        activation: str = "relu",
        output_activation: str | None = None,
        dropout: float = 0.1,
        *,
        code_dropout: float = 0.0,
        input_dropout: float = 0.0,
        input_noise: float = 0.0,
        tied: bool = False,
        centring: str = "none",
        bias_regularisation: float = 10.0,
        clip: Sequence[float] | None = None,
        n_columns: int | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        n_columns = int(n_movies if n_columns is None else n_columns)
        if n_movies < 1 or n_columns < 1 or not layers or any(int(w) < 1 for w in layers):
            raise ValueError(f"invalid architecture: n_movies={n_movies}, layers={list(layers)}")
        output_activation = output_activation or activation
        for name in (activation, output_activation):
            if name not in ACTIVATIONS:
                raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
        for name, p in (("dropout", dropout), ("code_dropout", code_dropout),
                        ("input_dropout", input_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        if centring not in CENTRING_NAMES:
            raise ValueError(f"centring {centring!r} is not one of {CENTRING_NAMES}")
        self.n_movies = int(n_movies)
        #: Width of a row: ``n_movies`` for the user-based model, ``n_users`` item-based.
        self.n_columns = n_columns
        self.layers = [int(w) for w in layers]
        self.activation = activation
        self.output_activation = output_activation
        self.dropout = float(dropout)
        self.code_dropout = float(code_dropout)
        self.input_dropout = float(input_dropout)
        self.input_noise = float(input_noise)
        self.tied = bool(tied)
        self.centring = centring
        self.bias_regularisation = float(bias_regularisation)
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))
        widths = hidden_widths(self.layers)
        self.widths = widths
        #: Index (into ``widths``) of the code layer, the only hidden layer without ``dropout``.
        self.code_layer = len(self.layers) - 1
        self.input_weight = nn.Parameter(torch.empty(n_columns, widths[0], dtype=dtype))
        self.input_bias = nn.Parameter(torch.empty(widths[0], dtype=dtype))
        pairs = list(itertools.pairwise(widths))
        encoder_pairs = pairs[: self.code_layer] if self.tied else pairs
        self.hidden = nn.ModuleList(nn.Linear(a, b, dtype=dtype) for a, b in encoder_pairs)
        if self.tied:  # decoder layers reuse the mirrored encoder weights; own biases only
            self.decoder_bias = nn.ParameterList(
                nn.Parameter(torch.empty(b, dtype=dtype)) for _, b in pairs[self.code_layer :]
            )
        else:
            self.output_weight = nn.Parameter(torch.empty(n_columns, widths[-1], dtype=dtype))
        self.output_bias = nn.Parameter(torch.empty(n_columns, dtype=dtype))
        if centring != "none":
            self.register_buffer("global_mean", torch.zeros((), dtype=dtype))
            self.register_buffer("column_bias", torch.zeros(n_columns, dtype=dtype))
        self.reset_parameters(generator)

    # ------------------------------------------------------------------ construction
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Uniform ``±1/sqrt(fan_in)`` for every weight and bias, layer by layer, in order."""
        layers: list[tuple[torch.Tensor | None, torch.Tensor, int]] = [
            (self.input_weight, self.input_bias, self.n_columns)
        ]
        layers += [(lin.weight, lin.bias, lin.in_features) for lin in self.hidden]
        if self.tied:
            fans = self.widths[self.code_layer:-1]
            layers += [(None, bias, fan) for bias, fan in zip(self.decoder_bias, fans)]
            layers.append((None, self.output_bias, self.widths[-1]))
        else:
            layers.append((self.output_weight, self.output_bias, self.widths[-1]))
        with torch.no_grad():
            for weight, bias, fan_in in layers:
                bound = 1.0 / math.sqrt(fan_in)
                if weight is not None:
                    nn.init.uniform_(weight, -bound, bound, generator=generator)
                nn.init.uniform_(bias, -bound, bound, generator=generator)

    def architecture(self) -> dict:
        """Everything needed to rebuild this network, as plain types (:meth:`from_architecture`).

        The published network's five keys (``n_movies``, ``layers``, ``activation``,
        ``output_activation``, ``dropout``) always; the options only where they differ from
        their defaults, so a ``seed`` checkpoint reads as before the options existed.
        """
        arch: dict = {
            "n_movies": self.n_movies,
            "layers": list(self.layers),
            "activation": self.activation,
            "output_activation": self.output_activation,
            "dropout": self.dropout,
        }
        options = {
            "orientation": self.orientation,
            "n_columns": self.n_columns,
            "code_dropout": self.code_dropout,
            "input_dropout": self.input_dropout,
            "input_noise": self.input_noise,
            "tied": self.tied,
            "centring": self.centring,
            "bias_regularisation": self.bias_regularisation,
            "clip": None if self.clip is None else list(self.clip),
        }
        defaults = {
            "orientation": "user", "n_columns": self.n_movies, "code_dropout": 0.0,
            "input_dropout": 0.0, "input_noise": 0.0, "tied": False, "centring": "none",
            "bias_regularisation": 10.0, "clip": None,
        }
        arch.update({k: v for k, v in options.items() if v != defaults[k]})
        return arch

    @classmethod
    def from_architecture(cls, arch: dict, **kwargs: object) -> AutoEncoder:
        """Rebuild an (untrained) network from an ``architecture()`` dict; dicts written before
        the options existed rebuild the published network. (Any kind:
        :func:`aerec.model.base.model_from_architecture`.)"""
        return cls(int(arch["n_movies"]), **cls._common(arch), **kwargs)  # type: ignore[arg-type]

    @classmethod
    def _common(cls, arch: dict) -> dict:
        """Keyword arguments of every orientation's constructor, from an architecture dict."""
        return dict(
            layers=[int(w) for w in arch["layers"]],
            activation=str(arch["activation"]),
            output_activation=str(arch["output_activation"]),
            dropout=float(arch["dropout"]),
            **cls._options(arch),
        )

    @classmethod
    def _options(cls, arch: dict) -> dict:
        """Keyword arguments shared by every orientation, from an architecture dict."""
        clip = arch.get("clip")
        return {
            "code_dropout": float(arch.get("code_dropout", 0.0)),
            "input_dropout": float(arch.get("input_dropout", 0.0)),
            "input_noise": float(arch.get("input_noise", 0.0)),
            "tied": bool(arch.get("tied", False)),
            "centring": str(arch.get("centring", "none")),
            "bias_regularisation": float(arch.get("bias_regularisation", 10.0)),
            "clip": None if clip is None else (float(clip[0]), float(clip[1])),
        }

    @property
    def device(self) -> torch.device:
        return self.output_bias.device

    @property
    def dtype(self) -> torch.dtype:
        return self.output_bias.dtype

    @property
    def decoder_weight(self) -> torch.Tensor:
        """The last layer's weight ``(n_columns, widths[-1])`` (the input weight when tied)."""
        return self.input_weight if self.tied else self.output_weight

    @property
    def row_weights(self) -> list[torch.Tensor]:
        """The ``(n_columns, width)`` matrices read and written row by row (first and last
        layer; one when tied): their gradients can travel as row records."""
        return [self.input_weight] if self.tied else [self.input_weight, self.output_weight]

    def middle_layers(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(weight (out, in), bias (out,))`` of each middle layer, in order (tied decoder
        layers use the mirrored encoder weight, transposed)."""
        n_middle = len(self.widths) - 1
        for i in range(n_middle):
            if not self.tied or i < self.code_layer:
                linear = self.hidden[i]
                yield linear.weight, linear.bias
            else:
                mirror = self.hidden[n_middle - 1 - i]
                yield mirror.weight.t(), self.decoder_bias[i - self.code_layer]

    # ------------------------------------------------------------------ centring
    @torch.no_grad()
    def fit_centring(self, rows: sp.csr_matrix, sweeps: int = 10) -> None:
        """Fit the centring baseline on training ratings ``rows`` ``(n_rows, n_columns)``.

        ``"mean"``: μ = mean rating. ``"biases"``: μ plus biases minimising
        ``Σ (r − μ − b_row − b_col)² + λ (Σ b_row² + Σ b_col²)`` by alternating closed-form
        ridge solves (``λ`` = ``bias_regularisation``), column biases first, ending with the
        row biases so that :func:`row_biases` reproduces a training row's bias exactly.
        Only the column biases are stored; a row's bias is always recomputed from its input.
        """
        if self.centring == "none":
            return
        rows = sp.csr_matrix(rows)
        if rows.shape[1] != self.n_columns:
            raise ValueError(f"centring data has {rows.shape[1]} columns, model {self.n_columns}")
        data = rows.data.astype(np.float64)
        mean = float(data.mean()) if len(data) else 0.0
        column_bias = np.zeros(self.n_columns)
        if self.centring == "biases" and len(data):
            lam = self.bias_regularisation
            row_of = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
            cols = rows.indices.astype(np.int64)
            resid = data - mean
            row_denom = np.maximum(np.bincount(row_of, minlength=rows.shape[0]) + lam, 1e-12)
            col_denom = np.maximum(np.bincount(cols, minlength=self.n_columns) + lam, 1e-12)
            row_bias = np.zeros(rows.shape[0])
            n_rows = rows.shape[0]
            for _ in range(max(sweeps, 1)):
                column_bias = np.bincount(cols, resid - row_bias[row_of], self.n_columns)
                column_bias /= col_denom
                row_bias = np.bincount(row_of, resid - column_bias[cols], n_rows) / row_denom
        self.global_mean.fill_(mean)
        self.column_bias.copy_(torch.as_tensor(column_bias, dtype=self.dtype))

    # ------------------------------------------------------------------ forward pieces
    def encode_rows(
        self, inputs: SparseRows, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(last hidden layer (batch, widths[-1]), row offsets (batch,) or None)``.

        ``inputs`` ``(batch, n_columns)`` sparse ratings. In training mode the input is
        corrupted (``input_dropout``, ``input_noise``) and dropout applied, drawing from
        ``generator``. The row offsets (``μ + b_row`` under centring) are what
        :meth:`output_at` adds back.
        """
        network_input, offsets = self._network_input(inputs, generator)
        return self._layers(network_input, generator)[0], offsets

    def _network_input(
        self, inputs: SparseRows, generator: torch.Generator | None = None
    ) -> tuple[SparseRows, torch.Tensor | None]:
        """The first layer's input — ratings minus the baseline, corrupted in training — and
        the row offsets ``μ + b_row`` (``None`` without centring)."""
        if inputs.values is None:
            raise ValueError("the input batch needs values (ratings)")
        corrupt = self.training and (self.input_dropout > 0 or self.input_noise > 0)
        if self.centring == "none" and not corrupt:
            return inputs, None  # the published path: ratings in as they are
        values = inputs.values.to(self.dtype)
        keep = None
        if corrupt and self.input_dropout > 0:
            draw = torch.rand(values.shape, generator=generator, dtype=values.dtype,
                              device=values.device)
            keep = (draw >= self.input_dropout).to(values.dtype)
        offsets = None
        if self.centring != "none":
            if self.centring == "mean":
                offsets = self.global_mean.expand(inputs.batch_size)
            else:
                counted = torch.ones_like(values) if keep is None else keep
                offsets = self.global_mean + row_biases(
                    inputs, counted, self.global_mean, self.column_bias, self.bias_regularisation
                )
            values = values - offsets.index_select(0, inputs.rows)
            if self.centring == "biases":
                values = values - self.column_bias.index_select(0, inputs.indices)
        if corrupt and self.input_noise > 0:
            noise = torch.randn(values.shape, generator=generator, dtype=values.dtype,
                                device=values.device)
            values = values + self.input_noise * noise
        if keep is not None:
            values = values * keep * (1.0 / (1.0 - self.input_dropout))
        return inputs.with_values(values), offsets

    def _layers(
        self, inputs: SparseRows, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(last hidden layer, code layer)`` activations for a network input batch.

        In training mode each hidden layer's activation is multiplied by its dropout mask
        (:meth:`dropout_masks`, all drawn at once)."""
        act = ACTIVATIONS[self.activation]
        masks = (
            self.dropout_masks(inputs.batch_size, generator) if self.training
            else [None] * len(self.widths)
        )
        h = act(sparse_input_linear(inputs, self.input_weight, self.input_bias))
        if masks[0] is not None:
            h = h * masks[0]
        code = h
        for i, (weight, bias) in enumerate(self.middle_layers(), start=1):
            h = act(F.linear(h, weight, bias))
            if masks[i] is not None:
                h = h * masks[i]
            if i == self.code_layer:
                code = h
        return h, code

    def dropout_masks(
        self, batch_size: int, generator: torch.Generator | None
    ) -> list[torch.Tensor | None]:
        """The training-time keep-masks of one forward pass, one per hidden layer (``None``
        for a layer without dropout): ``dropout`` after every hidden layer, ``code_dropout``
        after the code layer (:func:`keep_masks`)."""
        ps = [
            self.code_dropout if i == self.code_layer else self.dropout
            for i in range(len(self.widths))
        ]
        shapes = [(batch_size, width) for width in self.widths]
        return keep_masks(shapes, ps, generator, self.dtype, self.device)

    def hidden_state(
        self, inputs: SparseRows, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Activations of the last hidden layer, ``(batch, widths[-1])``.

        ``inputs`` ``(batch, n_columns)`` sparse ratings. Dropout is applied when the module is
        in training mode, drawing masks from ``generator``.
        """
        return self.encode_rows(inputs, generator)[0]

    def _column_offsets(self, columns: torch.Tensor) -> torch.Tensor | None:
        if self.centring != "biases":
            return None
        return self.column_bias.index_select(0, columns)

    def output_at(
        self, hidden: torch.Tensor, targets: SparseRows, offsets: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Outputs at the positions of ``targets`` only, ``(targets.nnz,)``.

        ``hidden`` from :meth:`hidden_state`; ``targets`` has the same rows as the input batch
        and, per row, the columns to score (CSR order is kept). ``offsets`` are the row offsets
        from :meth:`encode_rows` (centring); the column biases are added here.
        """
        z = sampled_output_linear(hidden, self.decoder_weight, self.output_bias, targets)
        out = ACTIVATIONS[self.output_activation](z)
        if offsets is not None:
            out = out + offsets.index_select(0, targets.rows)
        column = self._column_offsets(targets.indices)
        return out if column is None else out + column

    def output_dense(
        self, hidden: torch.Tensor, offsets: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Outputs for every column, ``(batch, n_columns)`` — bounded batches only."""
        z = torch.addmm(self.output_bias, hidden, self.decoder_weight.t())
        out = ACTIVATIONS[self.output_activation](z)
        if offsets is not None:
            out = out + offsets[:, None]
        if self.centring == "biases":
            out = out + self.column_bias
        return out

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
        hidden, offsets = self.encode_rows(inputs, generator)
        return self.output_at(hidden, inputs if targets is None else targets, offsets)

    def reconstruct_dense(
        self, inputs: SparseRows, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Outputs for every column of a bounded batch, ``(batch, n_columns)``, in the current
        mode (dropout in training) — what dense re-feeding feeds back."""
        hidden, offsets = self.encode_rows(inputs, generator)
        return self.output_dense(hidden, offsets)

    # ------------------------------------------------------------------ prediction API
    def _inputs(self, indptr: object, indices: object, values: object) -> SparseRows:
        return SparseRows.from_arrays(
            indptr, indices, values, self.n_movies, dtype=self.dtype, device=self.device
        )

    def _clip(self, predictions: torch.Tensor) -> torch.Tensor:
        return predictions if self.clip is None else predictions.clamp(*self.clip)

    @torch.no_grad()
    def predict_dense(self, indptr: object, indices: object, values: object) -> torch.Tensor:
        """Predicted ratings of every movie for a bounded batch of users, ``(batch, n_movies)``.

        ``indptr`` ``(batch + 1,)``, ``indices`` ``(nnz,)`` movie indices and ``values``
        ``(nnz,)`` ratings are the CSR arrays of the users' known ratings (NumPy or torch, e.g.
        ``m.indptr, m.indices, m.data`` of a SciPy CSR slice). No dropout; the baseline is added
        back under centring; clamped to the scale only when the model was built with ``clip``.
        Memory is ``batch × n_movies`` floats: slice large sets of users into batches.
        """
        return self.code_and_predict(indptr, indices, values)[1]

    @torch.no_grad()
    def code_and_predict(
        self, indptr: object, indices: object, values: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(codes (batch, code_width), predictions (batch, n_movies))`` in one pass.

        ``codes`` describe each user for similarity search (here the code layer's activations,
        ``layers[-1]`` wide); ``predictions`` equal :meth:`predict_dense`. Arguments as there.
        """
        inputs = self._inputs(indptr, indices, values)
        with _eval_mode(self):
            network_input, offsets = self._network_input(inputs)
            hidden, code = self._layers(network_input, None)
            return code, self._clip(self.output_dense(hidden, offsets))

    def predict_known(
        self, user_rows: object, indptr: object, indices: object, values: object
    ) -> torch.Tensor:
        """:meth:`predict_dense` for users also identified by their training row
        (``user_rows``): the user-based model needs only their ratings, so the rows are
        ignored; item-based models use them (see ``ItemAutoEncoder.predict_known``)."""
        return self.predict_dense(indptr, indices, values)

    @torch.no_grad()
    def encode(self, indptr: object, indices: object, values: object) -> torch.Tensor:
        """Codes of a batch of users, ``(batch, code_width)`` (see :meth:`code_and_predict`)."""
        return self.code_and_predict(indptr, indices, values)[0]

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
        with _eval_mode(self):
            hidden, offsets = self.encode_rows(inputs)
            scored = self._clip(self.output_at(hidden, targets, offsets))
        out = torch.empty_like(scored)
        out[order] = scored
        return out

    def _eval_hidden(self, inputs: SparseRows) -> torch.Tensor:
        with _eval_mode(self):
            return self.hidden_state(inputs)

    # ------------------------------------------------------------------ training hooks
    def prepare_inference(self, rows: sp.csr_matrix, **_: object) -> None:
        """Store what predicting needs from the training data ``rows`` (in this model's
        orientation). Nothing for the user-based model: a user's ratings are its input."""


class _eval_mode:
    """Context manager: the module in eval mode inside, its previous mode restored after.

    A module already in eval mode (a loaded model: every served request) is left alone —
    switching walks every submodule, 0.25 ms of a 4 ms recommendation."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.was_training = module.training

    def __enter__(self) -> nn.Module:
        if self.was_training:
            self.module.eval()
        return self.module

    def __exit__(self, *exc: object) -> None:
        if self.was_training:
            self.module.train(True)


def iter_row_batches(
    matrix: sp.csr_matrix, batch_size: int = ENCODE_BATCH
) -> Iterator[tuple[int, sp.csr_matrix]]:
    """``(first row, CSR slice)`` of consecutive row blocks of ``matrix``."""
    for start in range(0, matrix.shape[0], batch_size):
        yield start, matrix[start : start + batch_size]
