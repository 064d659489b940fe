"""The comparison with the baselines: its words, its record in the run directory, and the
warning read back from it (what ``aerec recommend`` prints)."""

from __future__ import annotations

import json
import os
import shutil
from types import SimpleNamespace

from aerec.model.baselines import BiasBaseline, Popularity
from aerec.quality import (
    BIAS_BASELINE,
    EVALUATION_FILE,
    POPULARITY,
    quality_warning,
    shortfalls,
    write_record,
)

BIAS = {"name": BIAS_BASELINE, "rmse": 0.96, "ndcg": 0.04}
POPULAR = {"name": POPULARITY, "rmse": None, "ndcg": 0.17}


def test_baseline_names_are_the_evaluators_row_names():
    """Guards a rename of a baseline silently switching every warning off."""
    assert BIAS_BASELINE == BiasBaseline.name
    assert POPULARITY == Popularity.name


def test_shortfalls_name_each_metric_a_model_loses_on():
    worse = shortfalls({"rmse": 1.049, "ndcg": 0.018}, BIAS, POPULAR, k=10)
    assert len(worse) == 2
    assert "1.0490" in worse[0] and "bias baseline's 0.9600" in worse[0]
    assert "NDCG@10 0.0180" in worse[1] and "popularity's 0.1700" in worse[1]
    assert shortfalls({"rmse": 0.91, "ndcg": 0.19}, BIAS, POPULAR, k=10) == []
    # a tie is no better; a missing metric or baseline is not compared
    assert len(shortfalls({"rmse": 0.96, "ndcg": 0.2}, BIAS, POPULAR, k=10)) == 1
    assert shortfalls({"rmse": None, "ndcg": float("nan")}, BIAS, POPULAR, k=10) == []
    assert shortfalls({"rmse": 2.0, "ndcg": 0.0}, None, None, k=10) == []


def _record(run, digest=None, model=None):
    checkpoint = run / "best.pt"
    return write_record(
        checkpoint, digest=digest, model=model or {"name": "seed", "rmse": 1.05, "ndcg": 0.02},
        baselines={BIAS_BASELINE: BIAS, POPULARITY: POPULAR}, k=10, test_ratings=100,
        split={"protocol": "random"},
    )


def test_the_recorded_shortfall_is_the_warning_for_that_checkpoint(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"weights")
    assert quality_warning(run) is None  # never evaluated
    assert _record(run) == run / EVALUATION_FILE
    warning = quality_warning(run)
    assert warning is not None and "bias baseline's 0.9600" in warning
    assert quality_warning(run / "best.pt") == warning  # a run directory or its file
    # a better model records no shortfall
    _record(run, model={"name": "auto", "rmse": 0.9, "ndcg": 0.2})
    assert quality_warning(run) is None
    # the entries of other checkpoints are kept
    (run / "last.pt").write_bytes(b"other")
    write_record(run / "last.pt", model={"rmse": 2.0, "ndcg": 0.0}, baselines={}, k=10,
                 test_ratings=1, split={})
    assert set(json.loads((run / EVALUATION_FILE).read_text())["checkpoints"]) == {
        "best.pt", "last.pt"}


def test_a_changed_checkpoint_makes_the_record_stale(tmp_path):
    """A resumed run rewrites best.pt: the old evaluation no longer speaks for it."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"weights")
    _record(run)
    stat = (run / "best.pt").stat()
    os.utime(run / "best.pt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert quality_warning(run) is None


def test_a_loaded_checkpoints_digest_survives_a_copied_run_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"weights")
    _record(run, digest="sha256:abc")
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, copy_function=shutil.copyfile)  # new modification times
    loaded = SimpleNamespace(path=copy / "best.pt", payload={"digest": "sha256:abc"})
    assert quality_warning(loaded) is not None
    other = SimpleNamespace(path=copy / "best.pt", payload={"digest": "sha256:def"})
    assert quality_warning(other) is None


def test_a_damaged_or_unwritable_record_is_only_a_missing_warning(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"weights")
    (run / EVALUATION_FILE).write_text("{not json")
    assert quality_warning(run) is None
    assert _record(tmp_path / "nowhere") is None  # no such checkpoint: nothing written
