"""``aerec demo``: the main job end to end — the published network and the default model in one
evaluation table beside the baselines, what that table shows in words, and recommendations
from the default model."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from aerec.cli import app
from aerec.cli.demo import what_the_table_shows
from aerec.quality import BIAS_BASELINE, POPULARITY, write_record


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo on the tiny shape, with 1 epoch and a 5-second budget to keep it fast."""
    out = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(
        app, ["demo", "--out", str(out), "--shape", "tiny", "--epochs", "1",
              "--time-budget", "5s"],
        env={"COLUMNS": "300"},
    )
    return out, result


def test_the_demo_runs_every_step(demo):
    out, result = demo
    assert result.exit_code == 0, result.output
    for step in ("1. generate", "4. train the published autoencoder", "5. train the default model",
                 "6. evaluate both", "7. what the table shows", "8. top-10 for a new user"):
        assert step in result.output
    assert f"$ aerec evaluate {out / 'run'} {out / 'auto'} --name seed --name auto" in (
        result.output)
    assert f"$ aerec recommend {out / 'auto'}" in result.output
    table = result.output.split("6. evaluate both", 1)[1].split("7. what the table", 1)[0]
    for row in ("seed", "auto", "global mean", "bias baseline", "popularity"):
        assert f"│ {row} " in table
    assert "Top 10 for you" in result.output
    for run in ("run", "auto"):
        assert (out / run / "evaluation.json").is_file()


def test_a_model_below_a_baseline_is_said_so_in_evaluate_and_recommend(demo):
    """One epoch of the published network is far below the baselines: the table gets a warning,
    and so do the words."""
    _, result = demo
    table = result.output.split("6. evaluate both", 1)[1].split("7. what the table", 1)[0]
    assert "warning: seed: test RMSE" in table
    words = result.output.split("7. what the table shows", 1)[1].split("8. top-10", 1)[0]
    assert "The published network (seed) is below the baselines" in words


def _record(run, model, k=10):
    write_record(run / "best.pt", model=model, k=k, test_ratings=100, split={},
                 baselines={BIAS_BASELINE: {"rmse": 0.954, "ndcg": 0.064},
                            POPULARITY: {"rmse": None, "ndcg": 0.222}})


def test_the_words_name_the_winner_and_the_published_networks_shortfall(demo):
    out, _ = demo
    _record(out / "run", {"name": "seed", "rmse": 0.994, "ndcg": 0.038})
    _record(out / "auto", {"name": "auto", "rmse": 0.888, "ndcg": 0.276})
    lines = what_the_table_shows(out / "run", out / "auto", out / "raw")
    assert lines[0].startswith("Lowest rating error: auto (RMSE 0.8880), 0.0660 below the bias "
                               "baseline's 0.9540; no model can go below about")
    assert lines[1] == "Best top-10 lists: auto (NDCG@10 0.2760 against popularity's 0.2220)."
    assert lines[2].startswith("The published network (seed) is below the baselines: RMSE "
                               "0.9940 against the bias baseline's 0.9540 and NDCG@10 0.0380")
    assert "optimiser steps" in lines[2]
    assert len(lines) == 3  # the default model beats both: nothing more to say
    # a published network that wins is said to win
    _record(out / "run", {"name": "seed", "rmse": 0.90, "ndcg": 0.25})
    assert "beats both baselines" in what_the_table_shows(out / "run", out / "auto")[2]
