"""Training the variants end to end: item orientation, refit, ranking head, ensembles, step
budgets, schedules, re-feeding — on the generated low-rank dataset.

Guards against: an item-based run whose checkpoint cannot score a new user; a refit that
touches the test split or is not what best.pt holds; ranking or fold-in choices made on
anything but the validation split; an ensemble that re-trains finished members on resume;
presets that do not run on a small dataset; a step budget or L2 that is not applied.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.checkpoint import load_checkpoint, read_payload
from aerec.config import PRESETS, TrainConfig
from aerec.data.splits import make_splits
from aerec.data.store import load_dataset
from aerec.evaluate import evaluate_run
from aerec.model import Ensemble, ItemAutoEncoder, RankedModel
from aerec.train import Trainer, build_model, train
from aerec.train.trainer import oriented, total_epochs

from .conftest import N_MOVIES, N_USERS, USER_MEMBER

ITEM = TrainConfig(
    orientation="item", layers=(32,), activation="sigmoid", output_activation="identity",
    dropout=0.0, lr=0.03, l2=5.0, batch_size=16, epochs=40, threads=1, seed=2,
    clip_predictions=True,
)


def test_item_run_with_refit_and_ranking_head(lowrank_dir, tmp_path):
    config = ITEM.replace(refit=True, ranking="ease")
    result = train(lowrank_dir, tmp_path / "run", config)
    assert result.best_val_rmse < 0.8 * result.baseline_val_rmse
    assert result.batches_per_epoch == 4  # 60 movies in batches of 16
    notes = result.notes
    assert notes["fold_in"]["scale"] in notes["fold_in"]["validation_rmse"]
    assert notes["refit"]["epochs"] == result.best_epoch
    ds = load_dataset(lowrank_dir)
    splits = make_splits(ds, "random", test_fraction=0.2, validation_fraction=0.1)
    assert notes["refit"]["train_ratings"] == splits.train.nnz + splits.validation.nnz
    assert {"ease_regularisation", "rating_weight"} <= set(notes["ranking"])

    best = load_checkpoint(result.best_checkpoint)
    assert isinstance(best.model, RankedModel) and isinstance(best.model.base, ItemAutoEncoder)
    assert best.stats.n_ratings == splits.train.nnz + splits.validation.nnz
    selected = load_checkpoint(result.selected_checkpoint)
    assert selected.kind == "selected" and isinstance(selected.model, ItemAutoEncoder)
    # a brand-new user is scored from ratings alone; predictions are on the scale
    cols, stars = np.array([0, 5, 9]), np.array([5.0, 1.0, 4.0], np.float32)
    scores = best.model.predict_dense(np.array([0, 3]), cols, stars)
    assert scores.shape == (1, N_MOVIES) and float(scores.min()) >= 1 and float(scores.max()) <= 5
    ranks = best.model.rank_dense(np.array([0, 3]), cols, stars)
    assert ranks.shape == (1, N_MOVIES) and torch.isfinite(ranks).all()

    report = evaluate_run(result.run_dir)
    model_row = report.result("autoencoder")
    assert model_row.rmse < report.result("global mean").rmse
    assert model_row.ndcg >= 0 and math.isfinite(model_row.recall)


def test_ensemble_of_two_members_and_resume_skips_finished_members(lowrank_dir, tmp_path):
    item = tmp_path / "item.toml"
    ITEM.replace(epochs=15).save_toml(item)
    user = tmp_path / "user.toml"
    USER_MEMBER.save_toml(user)
    config = TrainConfig(members=(str(item), str(user)), threads=1)
    result = train(lowrank_dir, tmp_path / "ens", config)
    ensemble = load_checkpoint(result.best_checkpoint).model
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 2
    member_dirs = sorted((tmp_path / "ens" / "members").iterdir())
    assert [d.name for d in member_dirs] == ["1-item", "2-user"]
    assert (tmp_path / "ens" / "members.csv").read_text().count("\n") == 3
    member_val = read_payload(result.best_checkpoint)["best"]["member_val_rmse"]
    # the average is at least as good as its worse member on validation
    assert result.best_val_rmse <= max(member_val) + 1e-9
    stamp = (member_dirs[0] / "last.pt").stat().st_mtime_ns
    again = train(lowrank_dir, tmp_path / "ens", resume=True)
    assert (member_dirs[0] / "last.pt").stat().st_mtime_ns == stamp  # not retrained
    assert again.best_val_rmse == pytest.approx(result.best_val_rmse)


#: ``auto``'s budget here: it plans (and trains) within it.
AUTO_SECONDS = 3.0


def shrunk(config: TrainConfig) -> TrainConfig:
    """A preset made to take a few seconds on the small dataset, its kind of model and its
    options kept: a few epochs (or sweeps); ``auto`` within a small time budget; an ensemble
    (``best``) as it is — its members are presets, each early-stopped on this data."""
    if config.model == "auto":
        return config.replace(threads=1, time_budget=AUTO_SECONDS)
    if config.members:
        return config.replace(threads=1)
    if config.model == "bayesian-mf":
        return config.replace(threads=1, epochs=8, burn_in=3, kept_samples=2, patience=0)
    return config.replace(threads=1, steps=0, epochs=2)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_runs_on_a_small_dataset(name, lowrank_dir, tmp_path):
    """Every preset (``--preset NAME``) must work on any dataset size."""
    result = train(lowrank_dir, tmp_path / name, shrunk(PRESETS[name]))
    assert math.isfinite(result.best_val_rmse)
    assert result.config.model != "auto"  # auto records the configuration it planned
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt.n_movies == N_MOVIES
    user = (np.array([0, 3]), np.array([0, 5, 9]), np.array([5.0, 1.0, 4.0], np.float32))
    training = ckpt.ratings.matrix()[:50]
    for scores in (ckpt.model.predict_dense(*user),
                   ckpt.model.predict_dense(training.indptr, training.indices, training.data)):
        assert bool(torch.isfinite(scores).all())
        if ckpt.config.clip_predictions:  # every preset but the published ``seed``
            assert float(scores.min()) >= ckpt.scale.minimum
            assert float(scores.max()) <= ckpt.scale.maximum
    if name == "best":  # the full recipe: an ensemble with a ranking head that learns
        assert result.best_val_rmse < result.baseline_val_rmse
        assert isinstance(ckpt.model, RankedModel) and isinstance(ckpt.model.base, Ensemble)


def test_deep_preset_options_train(lowrank_dir, tmp_path):
    """SELU, tied decoder, code dropout and dense re-feeding together (a few steps)."""
    config = PRESETS["deep"].replace(steps=0, epochs=2, layers=(16, 16, 32), threads=1)
    result = train(lowrank_dir, tmp_path / "deep", config)
    assert all(math.isfinite(m.val_rmse) for m in result.history)


def test_refeed_takes_an_extra_step_per_batch(lowrank_dir):
    ds = load_dataset(lowrank_dir)
    splits = make_splits(ds, "random")
    config = TrainConfig(layers=(8,), dropout=0.0, batch_size=64, epochs=1, threads=1, refeed=2)
    model = build_model(config, N_MOVIES)
    trainer = Trainer(model, config, splits.train, splits.validation)
    trainer.train_epoch()
    state = trainer.optimizer.state_dict()["state"]
    assert int(state[0]["step"]) == 3 * trainer.batches_per_epoch


def test_step_budget_l2_and_plateau_schedule(lowrank_dir):
    ds = load_dataset(lowrank_dir)
    splits = make_splits(ds, "random")
    config = TrainConfig(layers=(8,), batch_size=100, steps=7, l2=30.0, lr_schedule="plateau",
                         lr_step_epochs=1, lr_gamma=0.1, threads=1)
    trainer = Trainer(build_model(config, N_MOVIES), config, splits.train, splits.validation)
    assert trainer.batches_per_epoch == math.ceil(N_USERS / 100)
    assert trainer.total_epochs == total_epochs(config, 3) == 3  # ceil(7 / 3)
    assert trainer.weight_decay == pytest.approx(30.0 / splits.train.nnz)
    assert trainer.optimizer.param_groups[0]["weight_decay"] == pytest.approx(trainer.weight_decay)
    lr = trainer.lr
    trainer.end_epoch(1.0)
    trainer.end_epoch(1.0)  # no improvement for lr_step_epochs = 1 epoch: reduce
    assert trainer.lr == pytest.approx(lr * 0.1)


def test_item_trainer_rows_are_movies(lowrank_dir):
    ds = load_dataset(lowrank_dir)
    splits = make_splits(ds, "random")
    model = build_model(ITEM, N_MOVIES, N_USERS)
    trainer = Trainer(model, ITEM, splits.train, splits.validation)
    assert trainer.train_matrix.shape == (N_MOVIES, N_USERS)
    transposed = sp.csr_matrix(splits.train).T.tocsr()
    assert (trainer.train_matrix != transposed).nnz == 0
    assert np.array_equal(oriented(splits.train, "user").indptr, splits.train.indptr)
    with pytest.raises(ValueError, match="n_users"):
        build_model(ITEM, N_MOVIES)
