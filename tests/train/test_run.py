"""Whole training runs on a generated low-rank dataset: learning, files, determinism, resume,
divergence, early stopping and warnings.

Guards against: a trainer that does not learn (validation RMSE no better than the mean), a
resumed run that drifts from the uninterrupted one (lost optimiser/RNG/schedule state),
nondeterminism for a fixed seed and thread count, a divergence that overwrites the last good
checkpoint or is reported as a bare NaN, and silent under-training.
"""

from __future__ import annotations

import math

import pytest
import torch

from aerec.config import TrainConfig, resolve_config
from aerec.train import (
    BatchFinished,
    EpochFinished,
    IncompatibleResume,
    RunStarted,
    TrainingDiverged,
    load_checkpoint,
    train,
)
from aerec.train.metrics_log import CSV_COLUMNS, read_metrics_csv


def _metrics(result) -> list[tuple]:
    """Everything an epoch measured, except its wall time."""
    return [(m.epoch, m.train_loss, m.train_rmse, m.val_loss, m.val_rmse, m.lr)
            for m in result.history]


def test_learns_low_rank_data_and_writes_the_run_directory(lowrank_dir, tmp_path):
    config = TrainConfig(
        layers=(64, 16, 2), activation="selu", output_activation="identity", dropout=0.0,
        lr=1e-2, batch_size=16, epochs=40, threads=1, seed=3,
    )
    events: list = []
    result = train(lowrank_dir, tmp_path / "run", config, callback=events.append)

    # validation RMSE falls clearly below predicting the training mean for everything
    assert result.best_val_rmse < 0.7 * result.baseline_val_rmse
    assert result.history[-1].train_loss < result.history[0].train_loss / 4
    assert result.epochs_completed == 40 and len(result.history) == 40
    best = result.history[result.best_epoch - 1]
    assert best.val_rmse == result.best_val_rmse

    for path in (result.config_path, result.metrics_path, result.curve_path,
                 result.best_checkpoint, result.last_checkpoint):
        assert path.is_file() and path.stat().st_size > 0
    assert not list(result.run_dir.glob(".*"))  # no temporary files left behind
    assert resolve_config(path=result.config_path) == config
    rows = read_metrics_csv(result.metrics_path)
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 40
    assert rows[-1]["val_rmse"] == pytest.approx(result.history[-1].val_rmse, abs=1e-6)
    assert result.curve_path.read_bytes()[:4] == b"\x89PNG"

    kinds = [type(e) for e in events]
    assert kinds[0] is RunStarted
    assert kinds.count(EpochFinished) == 40
    started = events[0]
    assert kinds.count(BatchFinished) == 40 * started.batches_per_epoch
    # 240 users (all rate something) in batches of 16: 15 batches per epoch
    assert started.batches_per_epoch == 15


@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_and_threads_give_identical_metrics(lowrank_dir, tmp_path, small_config, threads):
    config = small_config.replace(dropout=0.2, epochs=3, threads=threads)
    first = train(lowrank_dir, tmp_path / "a", config)
    second = train(lowrank_dir, tmp_path / "b", config)
    assert _metrics(first) == _metrics(second)
    other_seed = train(lowrank_dir, tmp_path / "c", config.replace(seed=4))
    assert _metrics(other_seed) != _metrics(first)


class _Interrupt(KeyboardInterrupt):
    pass


def test_interrupted_then_resumed_run_matches_uninterrupted(lowrank_dir, tmp_path, small_config):
    config = small_config.replace(dropout=0.2, epochs=5, lr_schedule="cosine", lr_min=1e-4)
    uninterrupted = train(lowrank_dir, tmp_path / "whole", config)

    def kill_mid_epoch_4(event):
        if isinstance(event, BatchFinished) and event.epoch == 4 and event.batch == 3:
            raise _Interrupt

    run = tmp_path / "killed"
    with pytest.raises(_Interrupt):
        train(lowrank_dir, run, config, callback=kill_mid_epoch_4)
    assert load_checkpoint(run / "last.pt").epoch == 3  # only the unfinished epoch is lost
    assert len(read_metrics_csv(run / "metrics.csv")) == 3

    with pytest.raises(FileExistsError, match="resume"):
        train(lowrank_dir, run, config)
    with pytest.raises(IncompatibleResume, match="lr"):
        train(lowrank_dir, run, config.replace(lr=1e-3), resume=True)

    resumed = train(lowrank_dir, run, resume=True)  # config comes from last.pt
    assert _metrics(resumed) == _metrics(uninterrupted)
    assert resumed.epochs_completed == 5

    longer = train(lowrank_dir, run, config.replace(epochs=6), resume=True)
    assert longer.epochs_completed == 6 and _metrics(longer)[:5] == _metrics(uninterrupted)


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
    lowrank_dir, tmp_path, small_config
):
    # lr jumps from 1e-3 to 1e4 at epoch 3
    config = small_config.replace(
        lr=1e-3, lr_schedule="step", lr_step_epochs=2, lr_gamma=1e7, epochs=5
    )
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as info:
        train(lowrank_dir, run, config)
    err = info.value
    assert err.epoch == 3
    assert "training diverged at epoch 3" in str(err)
    assert "last.pt (epoch 2)" in str(err) and "--lr" in str(err)
    kept = load_checkpoint(run / "last.pt")
    assert kept.epoch == 2
    assert all(torch.isfinite(p).all() for p in kept.model.parameters())
    assert len(read_metrics_csv(run / "metrics.csv")) == 2
    assert (run / "learning_curve.png").is_file()


def test_divergence_in_the_first_epoch(lowrank_dir, tmp_path, small_config):
    with pytest.raises(TrainingDiverged, match="no epoch completed") as info:
        train(lowrank_dir, tmp_path / "run", small_config.replace(lr=1e3))
    assert info.value.checkpoint is None
    assert not (tmp_path / "run" / "last.pt").exists()


def test_early_stopping_on_validation_rmse(lowrank_dir, tmp_path, small_config):
    # after epoch 1 the learning rate is ~0: weights and validation RMSE stop changing
    config = small_config.replace(
        lr_schedule="step", lr_step_epochs=1, lr_gamma=1e-12, patience=2, epochs=10,
        optimizer="sgd", lr=1e-2,
    )
    result = train(lowrank_dir, tmp_path / "run", config)
    assert result.stopped_early
    assert result.epochs_completed == 3 and result.best_epoch == 1
    assert load_checkpoint(result.best_checkpoint).epoch == 1
    assert not any("falling" in w for w in result.warnings)


def test_under_training_is_reported_in_plain_words(lowrank_dir, tmp_path, small_config):
    result = train(lowrank_dir, tmp_path / "run", small_config.replace(lr=3e-3, epochs=4))
    assert all(
        a.val_rmse > b.val_rmse for a, b in zip(result.history, result.history[1:])
    ), "precondition: validation RMSE still falling"
    text = " ".join(result.warnings)
    assert "only 32 optimiser steps (8 batches/epoch × 4 epochs)" in text
    assert "still falling" in text and "try --epochs" in text
    assert math.isfinite(result.baseline_val_rmse)
