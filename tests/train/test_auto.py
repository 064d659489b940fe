"""The ``auto`` preset's plan: which recipe for which data shape and budget.

Guards against: ``auto`` picking the MovieLens-tuned ensemble for Netflix-sized data (it runs
for hours there), dropping the caller's split or budget, sizing the factorisation without
regard to the budget, building a Gram matrix that cannot fit, and ``auto`` leaking into a
trained run's configuration (a checkpoint must say what was actually trained).
"""

from __future__ import annotations

from aerec.config import DEFAULT_PRESET, PRESETS, resolve_config
from aerec.train import load_checkpoint, train
from aerec.train.auto import best_seconds, plan
from aerec.train.events import StageStarted

AUTO = PRESETS["auto"]


def test_auto_is_the_default_and_seed_is_unchanged():
    assert DEFAULT_PRESET == "auto" and resolve_config().model == "auto"
    seed = resolve_config("seed")
    assert (seed.layers, seed.dropout, seed.lr, seed.weight_decay, seed.batch_size,
            seed.epochs, seed.activation, seed.model, seed.time_budget) == (
        (512, 256, 64), 0.1, 1e-4, 1e-5, 128, 30, "relu", "autoencoder", 0.0)


def test_small_data_gets_the_best_ensemble():
    config = plan(AUTO, 943, 1682, 72_000, seconds=600)  # MovieLens 100K u1
    assert config.members == PRESETS["best"].members
    assert config.refit and config.ranking == "ease" and config.time_budget == 600
    assert best_seconds(943, 1682, 72_000) < 0.6 * 600


def test_netflix_shapes_get_the_factorisation_sized_by_the_budget():
    short = plan(AUTO, 100_000, 4_499, 3_672_000, seconds=60)
    assert short.model == "bayesian-mf" and not short.members
    assert short.noise_scales > 0 and short.refit and short.factors == 16
    # choosing EASE's λ would eat the short budget: a fixed λ, only the blend weight chosen
    assert short.ranking == "ease" and short.ease_regularisation > 0
    tiny = plan(AUTO.replace(time_budget=10), 100_000, 4_499, 3_672_000, seconds=10)
    assert tiny.ranking == "none"
    long = plan(AUTO.replace(time_budget=300), 100_000, 4_499, 3_672_000, seconds=300)
    assert long.ranking == "ease" and long.ease_regularisation == 0  # λ on validation
    hours = plan(AUTO.replace(time_budget=36_000), 100_000, 4_499, 3_672_000, seconds=36_000)
    assert hours.factors == 32
    netflix = plan(AUTO.replace(time_budget=3600), 480_189, 17_770, 72_000_000, seconds=3600)
    assert netflix.model == "bayesian-mf" and netflix.ranking == "none"  # 17,770² Gram


def test_plan_keeps_the_callers_split_and_execution_settings():
    mine = AUTO.replace(split_seed=7, test_fraction=0.3, threads=1, time_budget=90)
    for shape in ((943, 1682, 72_000), (100_000, 4_499, 3_672_000)):
        config = plan(mine, *shape, seconds=90)
        assert (config.split_seed, config.test_fraction, config.threads,
                config.time_budget) == (7, 0.3, 1, 90)
        assert config.model != "auto"


def test_an_auto_run_records_the_planned_configuration(lowrank_dir, tmp_path):
    stages = []
    config = AUTO.replace(time_budget=120.0, threads=1)  # ample: the tiny set takes seconds
    result = train(lowrank_dir, tmp_path / "auto", config,
                   callback=lambda e: stages.append(e) if isinstance(e, StageStarted) else None)
    assert stages[0].stage == "auto"
    saved = load_checkpoint(result.best_checkpoint)
    assert saved.config.model != "auto" and result.config.model != "auto"
    assert resolve_config(path=result.config_path).model == result.config.model
    assert result.best_val_rmse < result.baseline_val_rmse
