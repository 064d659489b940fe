"""The autoencoder family for the run loop: the user- and item-based networks.

:class:`AutoEncoderFamily` drives a :class:`~aerec.train.trainer.Trainer` epoch by epoch for the
run loop (:mod:`aerec.train.loop`) and ends an autoencoder run:

* :func:`select_fold_in_scale` — an item-based model scores a user by folding their ratings
  in (a ridge regression on the movie codes, see :mod:`aerec.model.item_autoencoder`); its
  penalty is ``scale × N · weight_decay / 2``, the scale chosen by validation RMSE (ratings of
  validation users predicted from their training ratings through the prediction API).
* :func:`refit` — the same configuration retrained from scratch on training + validation
  ratings for the selected number of epochs, with the learning rate of each epoch replayed
  from the selection run. The selection (epoch count, every hyper-parameter) came from the
  validation split; the refit only gives the chosen recipe 1/9 more data.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from aerec.config import TrainConfig
from aerec.model.base import RatingModel
from aerec.train.batching import users_with_ratings
from aerec.train.budget import Deadline
from aerec.train.diagnostics import training_warnings
from aerec.train.distributed import ALONE, Ranks
from aerec.train.errors import TrainingDiverged
from aerec.train.finish import prediction_rmse
from aerec.train.loop import Family, Refit, RunContext
from aerec.train.memory import autoencoder_memory
from aerec.train.metrics_log import EpochMetrics
from aerec.train.trainer import Trainer, build_model, oriented

#: Multiples of the training-implied fold-in penalty tried on the validation split.
FOLD_IN_SCALES: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
#: At most this many validation users score the fold-in scales (bounds the cost).
MAX_FOLD_IN_USERS = 3000


def base_fold_in_l2(config: TrainConfig, n_ratings: int) -> float:
    """The penalty one decoder row carries in the training objective: ``N · weight_decay / 2``.

    Training minimises the mean squared error over N ratings plus ``weight_decay / 2 · ‖θ‖²``;
    multiplied by N, a user's row sees ``Σ (error²) + (N · weight_decay / 2) ‖row‖²``.
    With ``config.l2`` this is ``l2 / 2`` on any dataset. Falls back to 1 without weight decay
    (a ridge needs some penalty).
    """
    value = n_ratings * config.effective_weight_decay(n_ratings) / 2.0
    return value if value > 0 else 1.0


def select_fold_in_scale(
    model: torch.nn.Module,
    train: sp.csr_matrix,
    validation: sp.csr_matrix,
    base_l2: float,
    clip: tuple[float, float] | None,
    *,
    scales: tuple[float, ...] = FOLD_IN_SCALES,
    seed: int = 0,
) -> tuple[float, dict[float, float]]:
    """Choose the fold-in penalty multiple of an item-based ``model`` on the validation split.

    The movie codes come from ``train`` only (the model is left prepared that way); each
    validation user's training ratings are folded in and their validation ratings predicted.
    At most :data:`MAX_FOLD_IN_USERS` users (a seeded sample) are scored. Returns ``(best
    scale, {scale: validation RMSE})``; ties go to the smaller scale.
    """
    model.prepare_inference(oriented(train, "item"), fold_in_l2=base_l2)
    users = users_with_ratings(validation)
    if len(users) > MAX_FOLD_IN_USERS:
        rng = np.random.default_rng(seed)
        users = np.sort(rng.choice(users, MAX_FOLD_IN_USERS, replace=False))
    scores: dict[float, float] = {}
    for scale in scales:
        model.set_fold_in_l2(scale * base_l2)
        scores[float(scale)] = prediction_rmse(model, train, validation, clip, users)
    finite = {s: v for s, v in scores.items() if math.isfinite(v)}
    best = min(finite, key=lambda s: (finite[s], s)) if finite else 1.0
    return best, scores


def refit(
    config: TrainConfig,
    known: sp.csr_matrix,
    history: list[EpochMetrics],
    epochs: int,
    *,
    n_movies: int,
    n_users: int,
    clip: tuple[float, float] | None,
    device: torch.device,
    ranks: Ranks = ALONE,
) -> torch.nn.Module:
    """Train ``config`` from scratch on ``known`` (training + validation ratings) for
    ``epochs`` epochs, epoch ``e`` at the learning rate the selection run used (``history``),
    with the same seed. Raises :class:`TrainingDiverged` if it blows up."""
    model = build_model(config, n_movies, n_users, clip)
    replay = config.replace(lr_schedule="none", patience=0)
    empty = sp.csr_matrix(known.shape, dtype=np.float32)
    trainer = Trainer(model, replay, known, empty, clip=clip, device=device, ranks=ranks)
    for metrics in history[:epochs]:
        lr = metrics.lr if math.isfinite(metrics.lr) else config.lr
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr
        trainer.train_epoch()
    if not trainer.parameters_finite():
        raise TrainingDiverged(
            trainer.epoch, trainer.batches_per_epoch, trainer.batches_per_epoch,
            math.inf, trainer.loss_limit, config.lr,
        )
    return model


class AutoEncoderFamily(Family):
    """The user- and item-based autoencoders (``model = "autoencoder"``), for the run loop."""

    def __init__(self, ctx: RunContext) -> None:
        config, ds, splits = ctx.config, ctx.dataset, ctx.splits
        self.ctx, self.config = ctx, config
        self.model_ = build_model(config, ds.n_movies, ds.n_users, ctx.clip)
        self.trainer = Trainer(self.model_, config, splits.train, splits.validation,
                               clip=ctx.clip, device=ctx.device, callback=ctx.callback,
                               ranks=ctx.ranks)
        self.item_based = config.orientation == "item"
        self.fold_in_multiple = config.fold_in_scale or 1.0
        self.batches_per_epoch = self.trainer.batches_per_epoch
        self.total_epochs = self.trainer.total_epochs
        self.train_rows = len(self.trainer.train_users)
        self._best = build_model(config, ds.n_movies, ds.n_users, ctx.clip).to(ctx.device)

    @property
    def epoch(self) -> int:  # type: ignore[override]
        return self.trainer.epoch

    @property
    def lr(self) -> float:  # type: ignore[override]
        return self.trainer.lr

    estimate_memory = staticmethod(autoencoder_memory)
    distributed = True

    def always_finish(self, ctx: RunContext) -> bool:
        # an item model's fold-in penalty is chosen on the validation split
        return self.item_based and ctx.has_validation

    # ------------------------------------------------------------------ epochs
    def train_epoch(self) -> tuple[float, float]:
        return self.trainer.train_epoch()

    def validate(self) -> tuple[float, float]:
        val_loss, val_rmse = self.trainer.validate()
        if not self.trainer.parameters_finite():
            raise TrainingDiverged(
                self.trainer.epoch, self.batches_per_epoch, self.batches_per_epoch, math.inf,
                self.trainer.loss_limit, self.trainer.lr,
            )
        return val_loss, val_rmse

    def end_epoch(self, metrics: EpochMetrics) -> bool:
        self.trainer.end_epoch(metrics.val_rmse)
        return True

    def snapshot(self) -> RatingModel:
        self._best.load_state_dict(self.model_.state_dict())
        return self._best

    def model(self, snapshot: RatingModel) -> RatingModel:
        return snapshot

    def current_model(self) -> RatingModel:
        return self.model_

    def checkpoint_model(self, model: RatingModel) -> RatingModel:
        if self.item_based:  # movie codes from every non-test rating
            fold_in = base_fold_in_l2(self.config, int(self.ctx.splits.train.nnz))
            model.prepare_inference(oriented(self.ctx.known, "item"),
                                    fold_in_l2=fold_in * self.fold_in_multiple)
        return model

    def model_from_payload(self, payload: dict) -> RatingModel:
        ds = self.ctx.dataset
        model = build_model(self.config, ds.n_movies, ds.n_users, self.ctx.clip)
        model = model.to(self.ctx.device)
        model.load_state_dict(payload["model_state"])
        return model

    def state_dict(self) -> dict:
        return self.trainer.state_dict()

    def load_state_dict(self, payload: dict) -> None:
        self.model_.load_state_dict(payload["model_state"])
        self.trainer.load_state_dict(payload["trainer"])

    # ------------------------------------------------------------------ end of the run
    def finalize(self, selected: RatingModel) -> dict:
        """An item model's fold-in penalty, chosen on the validation split (the model is left
        prepared from training ratings only, for the choices that follow)."""
        if not self.item_based:
            return {}
        splits = self.ctx.splits
        base = base_fold_in_l2(self.config, int(splits.train.nnz))
        if self.config.fold_in_scale:
            selected.prepare_inference(oriented(splits.train, "item"),
                                       fold_in_l2=self.fold_in_multiple * base)
            return {}
        self.fold_in_multiple, grid = select_fold_in_scale(
            selected, splits.train, splits.validation, base, self.ctx.clip,
            seed=self.config.split_seed,
        )
        selected.set_fold_in_l2(self.fold_in_multiple * base)
        return {"fold_in": {"scale": self.fold_in_multiple, "validation_rmse": grid}}

    def prepare_serving(self, selected: RatingModel) -> None:
        self.checkpoint_model(selected)

    def refit_cost(self, epochs: int, history: list[EpochMetrics],
                   ranking_fit: float) -> tuple[float, str]:
        known, train = self.ctx.known, self.ctx.splits.train
        seconds = sum(m.seconds for m in history[:epochs]) * known.nnz / max(train.nnz, 1)
        return seconds, (
            f"the refit on training + validation ratings (needs ~{seconds:.0f} s for "
            f"{epochs} epochs; {self.ctx.deadline.remaining():.0f} s left)"
        )

    def refit(self, epochs: int, history: list[EpochMetrics], deadline: Deadline) -> Refit:
        ds, known = self.ctx.dataset, self.ctx.known
        model = refit(self.config, known, history, epochs, n_movies=ds.n_movies,
                      n_users=ds.n_users, clip=self.ctx.clip, device=self.ctx.device,
                      ranks=self.ctx.ranks)
        if self.item_based:
            model.prepare_inference(
                oriented(known, "item"),
                fold_in_l2=self.fold_in_multiple * base_fold_in_l2(self.config, int(known.nnz)),
            )
        return Refit(model, epochs, f"refit: {epochs} epochs on training + validation ratings")

    def warnings(self, history: list[EpochMetrics], baseline_val_rmse: float,
                 stopped_early: bool, patience: int) -> list[str]:
        return training_warnings(
            history, self.batches_per_epoch, baseline_val_rmse=baseline_val_rmse,
            stopped_early=stopped_early, patience=patience,
        )
