"""``aerec tune``: random search on the validation split within a budget, every trial recorded.

Guards against: trials that are not recorded (or recorded without their configuration), a
best.toml that is not the lowest-validation trial, a budget that is not respected, and a
search that silently overwrites an earlier one.
"""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
from typer import Typer
from typer.testing import CliRunner

from aerec.config import PRESETS, TrainConfig, resolve_config
from aerec.tune import SPACES, SearchSpace, tune

SPACE = SearchSpace(
    "item",
    {"layers": ((8,), (16,)), "lr": (0.01, 0.03), "batch_size": (16,), "epochs": (4, 6)},
    "tiny item-based space for tests",
)
SMALL = {"threads": 1, "steps": 0, "epochs": 4, "batch_size": 16, "layers": (8,), "lr": 0.03}


@pytest.fixture(scope="module")
def lowrank_dataset(tmp_path_factory):
    from aerec.data.store import write_prepared

    from .conftest import lowrank_ratings

    out = tmp_path_factory.mktemp("tune") / "data"
    write_prepared(out, lowrank_ratings())
    return out


def test_trials_are_recorded_and_the_best_config_is_written(lowrank_dataset, tmp_path):
    seen = []
    result = tune(lowrank_dataset, tmp_path / "t", budget_minutes=30, trials=3, space=SPACE,
                  overrides=SMALL, on_trial=seen.append)
    assert len(result.trials) == 3 == len(seen)
    assert result.trials[0].changes == {}  # the base preset comes first
    with open(result.trials_path) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["trial"]) for r in rows] == [1, 2, 3]
    assert all(float(r["val_rmse"]) > 0 and float(r["seconds"]) > 0 for r in rows)
    records = [json.loads(line) for line in (tmp_path / "t" / "trials.jsonl").read_text().split("\n") if line]
    assert all("config" in r and r["config"]["orientation"] == "item" for r in records)
    # each trial is the base preset with the overrides and its own draw from the space
    base = PRESETS[SPACE.base].replace(**SMALL)
    assert [TrainConfig.from_dict(r["config"]) for r in records] == [
        base.replace(**t.changes) for t in result.trials
    ] == [t.config for t in result.trials]
    for trial in result.trials[1:]:
        assert set(trial.changes) == set(SPACE.choices)
        assert all(value in SPACE.choices[key] for key, value in trial.changes.items())
    assert len({json.dumps(r["changes"], sort_keys=True) for r in records}) == 3  # no repeats
    best = min(result.trials, key=lambda t: t.val_rmse)
    assert result.best is best
    assert resolve_config(path=result.best_config_path) == best.config
    # only the best trial keeps its checkpoints
    kept = sorted(p.parent.name for p in (tmp_path / "t" / "trials").glob("*/best.pt"))
    assert kept == [f"{best.number:03d}"]
    with pytest.raises(FileExistsError):
        tune(lowrank_dataset, tmp_path / "t", budget_minutes=1, trials=1, space=SPACE,
             overrides=SMALL)


def test_budget_stops_the_search(lowrank_dataset, tmp_path):
    result = tune(lowrank_dataset, tmp_path / "t", budget_minutes=1e-4, space=SPACE,
                  overrides=SMALL)
    assert len(result.trials) == 1  # the first trial always runs, then the budget is spent
    assert result.best is result.trials[0] and result.best.changes == {}
    assert result.trials_path.read_text().count("\n") == 2  # header and the one trial


@pytest.mark.parametrize("name", sorted(SPACES))
def test_named_spaces_sample_valid_configurations(name):
    space = SPACES[name]
    base = PRESETS[space.base]
    draws = [space.sample(np.random.default_rng(seed)) for seed in range(20)]
    for changes in draws:
        assert set(changes) == set(space.choices)  # every setting of the space, nothing else
        for key, value in changes.items():
            assert value in space.choices[key], (key, value)
        config = base.replace(**changes)  # a valid configuration (or ConfigError)
        differs = {f.name for f in dataclasses.fields(TrainConfig)
                   if getattr(config, f.name) != getattr(base, f.name)}
        assert differs <= set(changes)  # the preset's other settings are kept
        assert all(getattr(config, key) == value for key, value in changes.items())
    # seeded: the same seed repeats its draws, other seeds give others
    assert space.sample(np.random.default_rng(3)) == draws[3]
    assert len({json.dumps(d, sort_keys=True) for d in draws}) > 1
    for key, values in space.choices.items():
        if len(set(values)) > 1:  # every setting that can vary does vary over 20 draws
            assert len({repr(d[key]) for d in draws}) > 1, key


def test_cli(lowrank_dataset, tmp_path):
    from aerec.cli.tune import register

    app = Typer()
    register(app)
    app.command("noop")(lambda: None)  # two commands: typer keeps the sub-command name
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, [
        "tune", str(lowrank_dataset), "--out", str(out), "--budget-minutes", "5",
        "--trials", "1", "--space", "item", "--threads", "1",
    ], catch_exceptions=False, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "best: trial 1" in result.output and (out / "best.toml").is_file()
    assert resolve_config(path=out / "best.toml") == PRESETS["item"].replace(threads=1)
    assert (out / "trials.csv").read_text().count("\n") == 2  # header and the one trial
