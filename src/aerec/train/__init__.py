"""Training: sparse user batches, the trainer, run directories, self-contained checkpoints.

Typical use::

    from aerec.config import resolve_config
    from aerec.train import train, load_checkpoint

    result = train("data/ml-100k", "runs/seed", resolve_config("seed", overrides={"epochs": 300}))
    ckpt = load_checkpoint(result.best_checkpoint)
    scores = ckpt.model.predict_dense(indptr, indices, ratings)   # (batch, n_movies)
"""

from aerec.checkpoint import Checkpoint, TrainingStats, load_checkpoint
from aerec.train.errors import IncompatibleResume, TrainingDiverged
from aerec.train.events import (
    BatchFinished,
    Callback,
    EpochFinished,
    MemberStarted,
    RunFinished,
    RunStarted,
    StageStarted,
    TrainEvent,
)
from aerec.train.loop import TrainResult
from aerec.train.metrics_log import EpochMetrics
from aerec.train.run import read_run_config, train
from aerec.train.trainer import Trainer, build_model, make_optimizer

__all__ = [
    "BatchFinished",
    "Callback",
    "Checkpoint",
    "EpochFinished",
    "EpochMetrics",
    "IncompatibleResume",
    "MemberStarted",
    "RunFinished",
    "RunStarted",
    "StageStarted",
    "TrainEvent",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "TrainingStats",
    "build_model",
    "load_checkpoint",
    "make_optimizer",
    "read_run_config",
    "train",
]
