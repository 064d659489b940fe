"""Progress events a training run reports to its ``callback`` (the CLI draws them).

A callback is any ``Callable[[TrainEvent], None]``; it is called synchronously, so it should be
quick. Raising from it (e.g. ``KeyboardInterrupt``) stops the run; whatever the last completed
epoch checkpointed stays on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aerec.config import TrainConfig
from aerec.train.metrics_log import EpochMetrics


@dataclass(frozen=True)
class RunStarted:
    """Before the first epoch of this invocation (``start_epoch`` > 1 when resuming)."""

    run_dir: Path
    config: TrainConfig
    start_epoch: int
    epochs: int
    batches_per_epoch: int
    train_users: int
    train_ratings: int
    validation_ratings: int
    #: Metrics of epochs completed before a resume (empty for a fresh run).
    history: tuple[EpochMetrics, ...] = ()


@dataclass(frozen=True)
class MemberStarted:
    """An ensemble starts training member ``number`` of ``members`` (its own run follows:
    ``RunStarted`` … ``RunFinished``), named by its preset or file."""

    number: int
    members: int
    name: str
    run_dir: Path


@dataclass(frozen=True)
class StageStarted:
    """A run moves on to a later stage: ``"refit"``, ``"ranking head"``, ``"weights"``."""

    stage: str
    detail: str = ""


@dataclass(frozen=True)
class BatchFinished:
    """After each optimiser step; ``loss`` is the batch's masked MSE."""

    epoch: int
    batch: int
    batches: int
    loss: float


@dataclass(frozen=True)
class EpochFinished:
    """After an epoch is trained, validated and checkpointed."""

    metrics: EpochMetrics
    best_epoch: int
    improved: bool


@dataclass(frozen=True)
class RunFinished:
    """After the last epoch (or early stop); ``result`` is the :class:`TrainResult`."""

    result: object


TrainEvent = (
    RunStarted | MemberStarted | StageStarted | BatchFinished | EpochFinished | RunFinished
)
Callback = Callable[[TrainEvent], None]
