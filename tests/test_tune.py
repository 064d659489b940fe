"""``aerec tune``: random search on the validation split within a budget, every trial recorded.

Guards against: trials that are not recorded (or recorded without their configuration), a
best.toml that is not the lowest-validation trial, a budget that is not respected, and a
search that silently overwrites an earlier one.
"""

from __future__ import annotations

import csv
import json

import pytest
from typer import Typer
from typer.testing import CliRunner

from aerec.config import resolve_config
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

    from .train.conftest import lowrank_ratings

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


def test_named_spaces_sample_valid_configurations():
    import numpy as np

    from aerec.config import PRESETS

    rng = np.random.default_rng(0)
    for space in SPACES.values():
        for _ in range(5):
            PRESETS[space.base].replace(**space.sample(rng))


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
