"""Checkpoints stand alone: they load with ``weights_only=True`` and carry everything needed.

Guards against: checkpoints that need pickled code (unsafe to load), lack id maps, titles,
layer sizes or the split (DeepRecommender's infer.py must re-read the data), or whose model
does not reproduce the metrics recorded at training time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aerec.checkpoint import TrainingStats, load_checkpoint
from aerec.data.splits import make_splits
from aerec.data.store import load_dataset
from aerec.train import train

from .conftest import N_MOVIES


@pytest.fixture(scope="module")
def trained_run(lowrank_dir, tmp_path_factory):
    from aerec.config import TrainConfig

    config = TrainConfig(layers=(16, 8, 4), lr=3e-3, batch_size=32, epochs=3, threads=1)
    return train(lowrank_dir, tmp_path_factory.mktemp("run") / "run", config)


def test_loads_with_weights_only_and_holds_all_metadata(trained_run, lowrank_dir):
    payload = torch.load(trained_run.best_checkpoint, weights_only=True)
    assert payload["format"] == "aerec-checkpoint" and payload["kind"] == "best"
    assert "trainer" not in payload  # best.pt carries no optimiser state
    last = torch.load(trained_run.last_checkpoint, weights_only=True)
    assert {"optimizer", "scheduler", "shuffle_rng", "dropout_rng"} <= set(last["trainer"])

    ds = load_dataset(lowrank_dir)
    ckpt = load_checkpoint(trained_run.best_checkpoint)
    assert not ckpt.model.training
    assert ckpt.architecture == {
        "n_movies": N_MOVIES, "layers": [16, 8, 4], "activation": "relu",
        "output_activation": "relu", "dropout": 0.1,
    }
    assert ckpt.config == trained_run.config
    np.testing.assert_array_equal(ckpt.user_ids, ds.user_ids)
    np.testing.assert_array_equal(ckpt.movie_ids, ds.movie_ids)
    assert ckpt.movie_ids.dtype == np.int64 and ckpt.movie_ids[1] == 17
    assert ckpt.titles == ds.titles and ckpt.titles[0] == "Movie 0"
    np.testing.assert_array_equal(ckpt.years, ds.years)
    assert ckpt.scale == ds.scale
    assert ckpt.epoch == trained_run.best_epoch
    assert ckpt.best["val_rmse"] == trained_run.best_val_rmse
    assert ckpt.dataset_path == str(lowrank_dir.resolve())
    assert set(ckpt.versions) == {"aerec", "torch", "numpy", "python"}
    assert ckpt.movie_index()[17] == 1

    splits = make_splits(ds, **ckpt.split)  # the exact split can be recreated
    expected = TrainingStats.from_matrix(splits.train)
    assert ckpt.stats.global_mean == pytest.approx(expected.global_mean)
    np.testing.assert_array_equal(ckpt.stats.movie_counts, expected.movie_counts)
    assert ckpt.stats.movie_counts.sum() == splits.train.nnz == ckpt.stats.n_ratings


def test_loaded_model_reproduces_the_recorded_validation_rmse(trained_run, lowrank_dir):
    ckpt = load_checkpoint(trained_run.best_checkpoint)
    splits = make_splits(load_dataset(lowrank_dir), **ckpt.split)
    train_m, val = splits.train, splits.validation
    rows = np.repeat(np.arange(val.shape[0]), np.diff(val.indptr))
    predictions = ckpt.model.predict_at(train_m.indptr, train_m.indices, train_m.data,
                                        rows, val.indices).numpy()
    clipped = np.clip(predictions, ckpt.scale.minimum, ckpt.scale.maximum)
    rmse = math.sqrt(np.mean((clipped.astype(np.float64) - val.data) ** 2))
    assert rmse == pytest.approx(ckpt.best["val_rmse"], rel=1e-5)


def test_refuses_files_that_are_not_safe_checkpoints(tmp_path):
    not_ours = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, not_ours)
    with pytest.raises(ValueError, match="not an aerec checkpoint"):
        load_checkpoint(not_ours)
    unsafe = tmp_path / "unsafe.pt"
    # a reference to a callable: weights_only loading refuses it instead of importing it
    torch.save({"format": "aerec-checkpoint", "hook": math.sqrt}, unsafe)
    with pytest.raises(ValueError, match="not a safe aerec checkpoint") as refused:
        load_checkpoint(unsafe)
    assert "weights_only" not in str(refused.value)  # never advise unsafe loading
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
