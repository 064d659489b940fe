"""Cross-validation: the folds partition the ratings, every fold is scored beside the baselines,
the summary is the folds' mean and spread, and MovieLens 100K's canonical folds are used as
they are."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aerec.crossval import CrossValidation, cross_validate, movielens_folds
from aerec.data.store import load_dataset

#: A fast, deterministic model for tiny data (the published network, 1 epoch).
FAST = {"epochs": 1, "threads": 1}


@pytest.fixture(scope="module")
def tiny_cv(lowrank_dir, tmp_path_factory) -> tuple[CrossValidation, object]:
    out = tmp_path_factory.mktemp("cv")
    lines: list[str] = []
    cv = cross_validate(lowrank_dir, "seed", folds=3, out=out, seed=5, progress=lines.append,
                        **FAST)
    return cv, out, lines


def test_k_folds_partition_every_rating_into_one_test_split(tiny_cv, lowrank_dir):
    cv, out, _ = tiny_cv
    source = load_dataset(lowrank_dir)
    assert cv.protocol == "k-fold" and [f.name for f in cv.folds] == ["fold1", "fold2",
                                                                    "fold3"]
    tests = [load_dataset(f.dataset) for f in cv.folds]
    keys = []
    for ds in tests:
        assert ds.n_ratings == source.n_ratings  # each fold holds all ratings: train + test
        assert np.array_equal(ds.user_ids, source.user_ids)
        assert np.array_equal(ds.movie_ids, source.movie_ids)
        test = ds.test_matrix.tocoo()
        keys.append(set(zip(test.row.tolist(), test.col.tolist())))
    assert sum(len(k) for k in keys) == source.n_ratings
    assert len(set().union(*keys)) == source.n_ratings  # disjoint, and together all
    assert {abs(len(k) - source.n_ratings / 3) < 1 for k in keys} == {True}
    assert [f.report.test_ratings for f in cv.folds] == [len(k) for k in keys]


def test_the_summary_is_the_folds_mean_and_spread(tiny_cv):
    cv, _, _ = tiny_cv
    assert cv.names == ["seed", "global mean", "bias baseline", "popularity"]
    summary = {row["name"]: row for row in cv.summary()}
    rmses = [f.report.result("bias baseline").rmse for f in cv.folds]
    assert summary["bias baseline"]["rmse_mean"] == pytest.approx(np.mean(rmses))
    assert summary["bias baseline"]["rmse_std"] == pytest.approx(np.std(rmses))
    assert summary["popularity"]["rmse_mean"] is None  # it ranks, it does not rate
    assert summary["popularity"]["ndcg_mean"] > 0
    assert summary["seed"]["kind"] == "model"
    text = str(cv)
    assert "±" in text and "bias baseline" in text


def test_the_summary_files_and_the_progress_lines(tiny_cv):
    cv, out, lines = tiny_cv
    data = json.loads((out / "crossval.json").read_text())
    assert data == json.loads(json.dumps(cv.to_dict()))
    assert [f["fold"] for f in data["folds"]] == ["fold1", "fold2", "fold3"]
    assert data["config"]["epochs"] == 1
    csv_lines = (out / "crossval.csv").read_text().splitlines()
    assert csv_lines[0].startswith("fold,name,kind,rmse,mae")
    assert len(csv_lines) == 1 + 3 * 4 + 2 * 4  # per fold and row, then mean and std per row
    assert any(line.startswith("fold2: ") and "test RMSE" in line for line in lines)
    # every fold's run is kept, with its evaluation recorded for `aerec recommend`
    assert all((out / "runs" / name / "evaluation.json").is_file()
               for name in ("fold1", "fold2", "fold3"))


def test_an_out_folder_with_runs_is_not_overwritten_silently(tiny_cv, lowrank_dir):
    _, out, _ = tiny_cv
    with pytest.raises(FileExistsError, match="--force"):
        cross_validate(lowrank_dir, "seed", folds=2, out=out, **FAST)


def test_bad_requests_fail_before_any_training(lowrank_dir, tmp_path):
    with pytest.raises(ValueError, match="at least 2"):
        cross_validate(lowrank_dir, "seed", folds=1, **FAST)
    with pytest.raises(ValueError, match="auto chooses its models"):
        cross_validate(lowrank_dir, folds=2, epochs=3)
    fake = tmp_path / "ml-100k"
    fake.mkdir()
    for name in ("u1.base", "u1.test"):
        (fake / name).write_text("1\t1\t5\t881250949\n")
    assert [f[0] for f in movielens_folds(fake)] == ["u1"]
    with pytest.raises(ValueError, match="has 1 canonical folds"):
        cross_validate(fake, "seed", folds=2, **FAST)


def test_cli_cross_validate_prints_the_tables(lowrank_dir, tmp_path):
    from typer.testing import CliRunner

    from aerec.cli import app

    out = tmp_path / "cv"
    result = CliRunner().invoke(
        app, ["cross-validate", str(lowrank_dir), "--preset", "seed", "--folds", "2",
              "--epochs", "1", "--threads", "1", "--out", str(out)],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    for text in ("per fold", "fold1", "fold2", "mean ± std over 2 folds", "bias baseline",
                 "crossval.json"):
        assert text in result.output
    as_json = CliRunner().invoke(
        app, ["cross-validate", str(lowrank_dir), "--preset", "seed", "--folds", "2",
              "--epochs", "1", "--threads", "1", "--json"],
    )
    assert as_json.exit_code == 0, as_json.output
    assert len(json.loads(as_json.output)["folds"]) == 2


def test_movielens_100k_canonical_folds(ml100k_dir, tmp_path):
    """u1 and u2 as published (20,000 test ratings each); the published network for 2
    epochs keeps it fast."""
    cv = cross_validate(ml100k_dir, "seed", folds=2, out=tmp_path / "cv", epochs=2)
    assert cv.protocol == "movielens-100k"
    assert [f.name for f in cv.folds] == ["u1", "u2"]
    assert [f.report.test_ratings for f in cv.folds] == [20_000, 20_000]
    bias = {row["name"]: row for row in cv.summary()}["bias baseline"]
    assert 0.93 <= bias["rmse_mean"] <= 0.97  # published: 0.954 on u1, 0.944 on u2
    assert bias["rmse_std"] < 0.02
    # two epochs of the published network are far from the baselines: the summary says so
    assert any(w.startswith("seed (mean over 2 folds)") for w in cv.warnings())
