"""The autoencoder family's trainer: one network's optimisation over a training and a
validation matrix.

:class:`Trainer` owns the optimiser, the learning-rate schedule and the random streams
(user shuffling, dropout masks). :meth:`Trainer.train_epoch` makes one pass over the training
users in sparse batches; :meth:`Trainer.validate` scores held-out ratings.
:class:`aerec.train.autoencoder.AutoEncoderFamily` is what the run loop drives.
"""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from aerec.config import TrainConfig
from aerec.model.autoencoder import AutoEncoder
from aerec.model.item_autoencoder import ItemAutoEncoder
from aerec.model.sparse_rows import SparseRows
from aerec.train.batching import (
    batch_count,
    iter_rank_batches,
    iter_rating_batches,
    users_with_ratings,
)
from aerec.train.distributed import ALONE, Ranks, reduce_step
from aerec.train.errors import TrainingDiverged
from aerec.train.events import BatchFinished, Callback
from aerec.train.metrics_log import ErrorSums
from aerec.train.row_adam import RowAdam

#: Users per validation batch: only bounded ``(batch, width)`` activations are held.
VALIDATION_BATCH_SIZE = 1024


def seed_streams(seed: int) -> tuple[int, int, int]:
    """Independent seeds for (initialisation, user shuffling, dropout) derived from ``seed``."""
    init, shuffle, drop = np.random.SeedSequence(seed).generate_state(3, dtype=np.uint32)
    return int(init), int(shuffle), int(drop)


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (cuda when available) → a torch device."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch sees no CUDA GPU")
    return torch.device(name)


def build_model(
    config: TrainConfig,
    n_movies: int,
    n_users: int | None = None,
    clip: tuple[float, float] | None = None,
) -> AutoEncoder:
    """A freshly initialised autoencoder for ``config`` (weights drawn from its ``seed``).

    ``n_users`` is required for ``orientation = "item"`` (the network's width); ``clip`` is the
    rating scale's ``(min, max)``, used when ``config.clip_predictions``.
    """
    generator = torch.Generator().manual_seed(seed_streams(config.seed)[0])
    options = dict(
        code_dropout=config.code_dropout,
        input_dropout=config.input_dropout,
        input_noise=config.input_noise,
        tied=config.tied,
        centring=config.centring,
        bias_regularisation=config.bias_regularisation,
        clip=clip if config.clip_predictions else None,
        generator=generator,
    )
    if config.orientation == "item":
        if n_users is None:
            raise ValueError("an item-based model needs n_users")
        return ItemAutoEncoder(
            n_movies, n_users, config.layers, config.activation,
            config.resolved_output_activation, config.dropout, **options,
        )
    return AutoEncoder(
        n_movies,
        config.layers,
        config.activation,
        config.resolved_output_activation,
        config.dropout,
        **options,
    )


def oriented(matrix: sp.csr_matrix, orientation: str) -> sp.csr_matrix:
    """``matrix`` ``(n_users, n_movies)`` as the model's rows: itself for "user", the
    transposed CSR ``(n_movies, n_users)`` — each movie's (user, rating) list — for "item"."""
    if orientation == "user":
        return matrix
    out = sp.csr_matrix(matrix).T.tocsr()
    out.sort_indices()
    return out


def total_epochs(config: TrainConfig, batches_per_epoch: int) -> int:
    """Epochs to train: ``epochs``, or ``ceil(steps / batches_per_epoch)`` with a step budget."""
    if config.steps > 0:
        return max(1, -(-config.steps // max(batches_per_epoch, 1)))
    return config.epochs


def make_optimizer(
    config: TrainConfig, params, weight_decay: float | None = None
) -> torch.optim.Optimizer:
    """The configured optimiser over ``params``: adam / adamw (lr, weight_decay) or sgd.

    ``weight_decay`` overrides ``config.weight_decay`` (the trainer passes the effective one,
    see ``TrainConfig.l2``).

    Adam and AdamW are :class:`~aerec.train.row_adam.RowAdam`: PyTorch's fused Adam (one pass
    over the weights instead of about ten) that, when the trainer defers the big matrices'
    gradients (:meth:`Trainer._optimise`), fuses each row's gradient into its update instead
    of materialising it. Same algorithm, same hyper-parameters, same ``state_dict``.
    """
    decay = config.weight_decay if weight_decay is None else weight_decay
    if config.optimizer in ("adam", "adamw"):
        return RowAdam(
            params, lr=config.lr, weight_decay=decay,
            decoupled_weight_decay=config.optimizer == "adamw",
        )
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=decay,
        foreach=True,
    )


def make_scheduler(
    config: TrainConfig, optimizer: torch.optim.Optimizer, epochs: int | None = None
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """The configured per-epoch learning-rate schedule, or ``None``.

    ``epochs`` is the run's length (the cosine's period; default ``config.epochs``).
    """
    if config.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.lr_step_epochs, gamma=config.lr_gamma
        )
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=epochs or config.epochs, eta_min=config.lr_min
        )
    if config.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=min(config.lr_gamma, 1.0),
            patience=config.lr_step_epochs - 1, min_lr=config.lr_min,
        )
    return None


class Trainer:
    """Trains ``model`` on ``train`` ratings, validates on ``validation`` ratings.

    ``train`` and ``validation`` are float32 CSR matrices ``(n_users, n_movies)`` of the same
    shape (disjoint entries). The trainer works on the model's rows (:func:`oriented`): users
    for the user-based model, movies — the transposed CSR — for the item-based one. Training
    reconstructs each row's training ratings; validation feeds a row's training ratings in and
    scores that row's validation ratings. ``clip`` = ``(min, max)`` of the rating scale for the
    reported RMSE. ``callback`` receives a :class:`~aerec.train.events.BatchFinished` after
    every optimiser step. A centring model's baseline is fitted on ``train`` here.
    """

    def __init__(
        self,
        model: AutoEncoder,
        config: TrainConfig,
        train: sp.csr_matrix,
        validation: sp.csr_matrix,
        *,
        clip: tuple[float, float] | None = None,
        device: torch.device | str = "cpu",
        callback: Callback | None = None,
        ranks: Ranks = ALONE,
    ) -> None:
        orientation = model.orientation
        expected = (model.n_columns, model.n_movies) if orientation == "item" else (
            None, model.n_movies
        )
        if train.shape != validation.shape or train.shape[1] != expected[1] or (
            expected[0] is not None and train.shape[0] != expected[0]
        ):
            raise ValueError(
                f"shapes disagree: train {train.shape}, validation {validation.shape}, "
                f"model over {model.n_movies} movies"
            )
        self.config = config
        # Weights of units that stopped firing decay (weight decay) into the denormal range,
        # where x86 float arithmetic is ~100× slower: a quarter-Netflix epoch's batches slowed
        # from 10 to 20 ms as they accumulated. Flushing them to zero (FTZ/DAZ, process-wide)
        # changes values below 1.2e-38 only.
        torch.set_flush_denormal(True)
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.orientation = orientation
        #: The training / validation ratings as the model's rows (see :func:`oriented`).
        self.train_matrix = oriented(train.tocsr(), orientation)
        self.validation_matrix = oriented(validation.tocsr(), orientation)
        self.clip = clip
        self.callback = callback
        #: Rows (users, or movies for the item-based model) with training ratings.
        self.train_users = users_with_ratings(self.train_matrix)
        #: A data-parallel job's ranks (:mod:`aerec.train.distributed`): every rank walks the
        #: same global batches and trains its share of each; validation rows are split.
        self.ranks = ranks
        self.validation_users = ranks.shard(users_with_ratings(self.validation_matrix))
        self.model.fit_centring(self.train_matrix)
        #: The optimiser's weight decay (``config.l2 / N`` when ``l2`` is set).
        self.weight_decay = config.effective_weight_decay(self.train_matrix.nnz)
        self.optimizer = make_optimizer(config, self.model.parameters(), self.weight_decay)
        self.scheduler = make_scheduler(config, self.optimizer, self.total_epochs)
        #: Weights whose gradients a data-parallel step exchanges as row records: the big
        #: matrices when :class:`RowAdam` takes them so (on the CPU); else all go dense.
        self._row_weights = self.model.row_weights if (
            isinstance(self.optimizer, RowAdam) and self.device.type == "cpu") else []
        _, shuffle_seed, dropout_seed = seed_streams(config.seed)
        self.shuffle_rng = np.random.default_rng(shuffle_seed)
        if ranks.active:  # each rank's rows get masks of their own
            dropout_seed = int(
                np.random.SeedSequence([dropout_seed, ranks.rank]).generate_state(1)[0])
        self.dropout_generator = torch.Generator(device=self.device).manual_seed(dropout_seed)
        largest = max(abs(clip[0]), abs(clip[1])) if clip else _max_abs(self.train_matrix)
        #: A batch loss above this (or not finite) means the run has diverged.
        self.loss_limit = config.divergence_factor * max(largest, 1.0) ** 2
        #: Epochs completed so far.
        self.epoch = 0

    @property
    def batches_per_epoch(self) -> int:
        return batch_count(len(self.train_users), self.config.batch_size)

    @property
    def total_epochs(self) -> int:
        """Epochs the run lasts: ``config.epochs``, or the step budget in epochs."""
        return total_epochs(self.config, self.batches_per_epoch)

    @property
    def lr(self) -> float:
        """The learning rate the next epoch will use."""
        return float(self.optimizer.param_groups[0]["lr"])

    def train_epoch(self) -> tuple[float, float]:
        """One pass over every training row; returns ``(train_loss, train_rmse)``.

        ``train_loss`` is the masked MSE over all ratings of the epoch (as seen during training,
        dropout active); ``train_rmse`` the same predictions clipped to the scale. Raises
        :class:`TrainingDiverged` (before applying the offending step) when a batch loss is not
        finite or exceeds :attr:`loss_limit`.
        """
        self.model.train()
        epoch, lr, batches = self.epoch + 1, self.lr, self.batches_per_epoch
        dtype = self.model.dtype
        sums = ErrorSums(self.clip)
        if self.ranks.active:  # this rank's share of each global batch, and its rating count
            batch_iter = iter_rank_batches(
                self.train_matrix, self.train_users, self.config.batch_size,
                self.shuffle_rng, self.ranks, dtype=dtype, device=self.device,
            )
        else:
            batch_iter = ((rows, inputs, inputs.nnz) for rows, inputs in iter_rating_batches(
                self.train_matrix, self.train_users, self.config.batch_size,
                self.shuffle_rng, dtype=dtype, device=self.device,
            ))
        for number, (_, inputs, total) in enumerate(batch_iter, start=1):
            if self.ranks.active:
                predictions = (self.model(inputs, generator=self.dropout_generator)
                               if inputs.nnz else None)
                loss_value, local_mse = self._shared_step(predictions, inputs, total)
                if not math.isfinite(loss_value) or loss_value > self.loss_limit:
                    raise TrainingDiverged(epoch, number, batches, loss_value,
                                           self.loss_limit, lr)
                self.optimizer.step()
            else:
                predictions = self.model(inputs, generator=self.dropout_generator)
                loss = F.mse_loss(predictions, inputs.values)
                loss_value = local_mse = loss.item()
                if not math.isfinite(loss_value) or loss_value > self.loss_limit:
                    raise TrainingDiverged(epoch, number, batches, loss_value,
                                           self.loss_limit, lr)
                self._optimise(loss)
            if inputs.nnz:
                sums.add(predictions, inputs.values, local_mse)
            for _ in range(self.config.refeed):
                self._refeed_step(inputs)
            if self.callback is not None:
                self.callback(BatchFinished(epoch, number, batches, loss_value))
        if self.scheduler is not None and not isinstance(
            self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau
        ):
            self.scheduler.step()
        self.epoch = epoch
        self._reduce(sums)
        return sums.loss, sums.rmse

    def _shared_step(self, predictions: torch.Tensor | None, inputs: SparseRows,
                     total: int) -> tuple[float, float]:
        """A data-parallel step up to the update: this rank's squared errors over the global
        batch's rating count ``total`` (so the gradients summed over the ranks are the
        one-process gradient of the global batch), backward, and the exchange of the
        gradients with the squared-error sum riding along. Returns ``(the global batch's MSE,
        this rank's MSE)``; the caller checks the former before stepping."""
        sse = 0.0
        loss = None
        if predictions is not None:
            squared = torch.sum((predictions - inputs.values) ** 2)
            loss = squared / max(total, 1)
            sse = float(squared.detach())
        total_sse = self._exchange(loss, sse)
        local = sse / inputs.nnz if inputs.nnz else math.nan
        return total_sse / max(total, 1), local

    def _exchange(self, loss: torch.Tensor | None, extra: float = 0.0) -> float:
        """Backward of this rank's ``loss`` (none: an empty share) — the big matrices'
        gradients as :class:`RowAdam` row records when the optimiser is one — and, in a
        data-parallel job, the gradients' exchange between the ranks (:func:`reduce_step`);
        returns ``extra`` summed over the ranks."""
        self.optimizer.zero_grad(set_to_none=True)
        deferring = getattr(self.optimizer, "deferring", contextlib.nullcontext)
        if loss is not None:
            with deferring():
                loss.backward()
        if not self.ranks.active:
            return extra
        return reduce_step(self.ranks, [p for p in self.model.parameters() if p.requires_grad],
                           getattr(self.optimizer, "row_gradients", None), extra,
                           row_weights=self._row_weights)

    def _reduce(self, sums: ErrorSums) -> None:
        """Sum a pass's error sums over the ranks (a data-parallel job's figures are the whole
        data's)."""
        if self.ranks.active:
            sums.squared_error, sums.clipped_squared_error, count = self.ranks.sum_floats(
                sums.squared_error, sums.clipped_squared_error, float(sums.count))
            sums.count = int(count)

    def _refeed_step(self, inputs: SparseRows) -> None:
        """Dense re-feeding (Kuchaiev & Ginsburg 2017): the batch's dense reconstruction
        ``f(x)`` (no gradient) is an input whose every entry is a target — ``f(f(x)) ≈ f(x)``
        — one more optimiser step on a bounded ``(batch, row width)`` block."""
        with torch.no_grad():
            dense = self.model.reconstruct_dense(inputs, self.dropout_generator)
        refed = SparseRows.dense(dense)
        predictions = self.model(refed, generator=self.dropout_generator)
        loss = torch.mean((predictions - refed.values) ** 2)
        if not math.isfinite(loss.item()):
            loss = loss * 0  # a diverging re-feed is caught by the next regular step
        # data-parallel: the ranks' re-feed losses are averaged (each over its own block)
        self._optimise(loss / self.ranks.world)

    def _optimise(self, loss: torch.Tensor) -> None:
        """One optimiser step on ``loss``. The backward runs inside :class:`RowAdam`'s
        ``deferring()`` (when the optimiser is one), so the big matrices' gradients reach its
        update as row records instead of dense tensors."""
        self._exchange(loss)  # data-parallel: every rank's gradients
        self.optimizer.step()

    def end_epoch(self, val_rmse: float) -> None:
        """Tell a plateau schedule the epoch's validation RMSE (no-op for other schedules)."""
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and (
            math.isfinite(val_rmse)
        ):
            self.scheduler.step(val_rmse)

    @torch.no_grad()
    def validate(self) -> tuple[float, float]:
        """``(val_loss, val_rmse)`` over every validation rating (NaN when there are none)."""
        self.model.eval()
        dtype = self.model.dtype
        sums = ErrorSums(self.clip)
        batches = zip(
            iter_rating_batches(self.train_matrix, self.validation_users, VALIDATION_BATCH_SIZE,
                             dtype=dtype, device=self.device),
            iter_rating_batches(self.validation_matrix, self.validation_users,
                             VALIDATION_BATCH_SIZE, dtype=dtype, device=self.device),
        )
        for (_, inputs), (_, targets) in batches:
            sums.add(self.model(inputs, targets), targets.values)
        self._reduce(sums)
        return sums.loss, sums.rmse

    @torch.no_grad()
    def parameters_finite(self) -> bool:
        """True when no weight is NaN or infinite (one sum per tensor: NaN and ±inf
        propagate into it, and no temporary mask the size of the weights is made)."""
        return all(
            math.isfinite(float(p.sum(dtype=torch.float64))) for p in self.model.parameters()
        )

    # ------------------------------------------------------------------ resume support
    def state_dict(self) -> dict:
        """Optimiser, schedule, random streams and epoch (plain types and tensors only)."""
        return {
            "epoch": self.epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "shuffle_rng": json.dumps(self.shuffle_rng.bit_generator.state),
            "dropout_rng": self.dropout_generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; the model's weights are restored separately."""
        self.epoch = int(state["epoch"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
            if isinstance(self.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
                # a resumed run may have been given more epochs: aim the cosine at the new end
                self.scheduler.T_max = self.total_epochs
        self.shuffle_rng.bit_generator.state = json.loads(state["shuffle_rng"])
        self.dropout_generator.set_state(state["dropout_rng"].cpu())
        if self.ranks.rank:  # rank 0's saved stream: the others draw their own again
            self.dropout_generator.manual_seed(int(np.random.SeedSequence(
                [self.dropout_generator.initial_seed(), self.ranks.rank, self.epoch]
            ).generate_state(1)[0]))


def _max_abs(matrix: sp.csr_matrix) -> float:
    return float(np.abs(matrix.data).max()) if matrix.nnz else 1.0

