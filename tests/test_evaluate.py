"""Evaluation: batching gives the one-shot answer, ranking excludes what users already rated,
baselines join the table, and a tiny trained run evaluates end to end."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.data.ratings import RatingScale
from aerec.evaluate import evaluate_models
from aerec.model.base import ModelBase
from aerec.model.baselines import BiasBaseline, GlobalMean, Popularity

SCALE = RatingScale(1.0, 5.0, 1.0)


class FixedScores(ModelBase):
    """A model whose known users get rows of a fixed ``(n_users, n_movies)`` float32 table
    (``predict_known``); with ``ranking``, a ranking head giving the rows ``ranking_users`` of
    another table (the one batch of test users the evaluator then asks for)."""

    def __init__(self, table: np.ndarray, label: str = "fixed",
                 ranking: np.ndarray | None = None,
                 ranking_users: np.ndarray | None = None) -> None:
        super().__init__()
        self.table = torch.as_tensor(np.asarray(table, dtype=np.float32))
        self.n_movies = self.table.shape[1]
        self.fixed_label = label
        self.has_ranking_head = ranking is not None
        if ranking is not None:
            self.ranking = torch.as_tensor(ranking, dtype=torch.float32)
            self.ranking_users = torch.as_tensor(ranking_users)

    @property
    def label(self) -> str:
        return self.fixed_label

    def predict_known(self, user_rows, indptr, indices, values) -> torch.Tensor:
        return self.table[torch.as_tensor(np.asarray(user_rows))]

    def predict_dense(self, indptr, indices, values) -> torch.Tensor:
        raise AssertionError("the evaluator scores known users by predict_known")

    def rank_dense(self, indptr, indices, values) -> torch.Tensor:
        assert len(indptr) - 1 == len(self.ranking_users), "one batch of every test user"
        return self.ranking[self.ranking_users]


def _random_problem(seed: int = 0, n_users: int = 60, n_movies: int = 40):
    rng = np.random.default_rng(seed)
    dense = rng.integers(1, 6, (n_users, n_movies)).astype(np.float32)
    dense[rng.random(dense.shape) < 0.6] = 0
    known = rng.random(dense.shape) < 0.7
    inputs = sp.csr_matrix(np.where(known, dense, 0))
    test = sp.csr_matrix(np.where(~known, dense, 0))
    scores = rng.normal(3, 1.5, dense.shape)
    return inputs, test, scores


def test_batching_does_not_change_the_answer() -> None:
    inputs, test, scores = _random_problem()
    scorer = FixedScores(scores)
    one = evaluate_models([scorer], test=test, inputs=inputs, scale=SCALE, k=5, batch_size=10_000)
    many = evaluate_models([scorer], test=test, inputs=inputs, scale=SCALE, k=5, batch_size=7)
    for field in ("rmse", "mae", "precision", "recall", "ndcg", "rated", "ranked_users"):
        assert getattr(many[0], field) == pytest.approx(getattr(one[0], field))
    # RMSE is over every test rating, with predictions clipped to 1..5.
    rows, cols, truth = sp.find(test)
    predicted = scores.astype(np.float32)[rows, cols]
    expected = np.sqrt(np.mean((np.clip(predicted, 1, 5) - truth) ** 2))
    assert one[0].rmse == pytest.approx(expected)
    assert one[0].rated == test.nnz


def test_ranking_excludes_movies_the_user_already_rated() -> None:
    """A scorer that puts already-rated movies first must not be credited for them.

    If training items were not excluded, the 'echo' scorer's top-2 would be the two input movies
    (which are also, in this construction, what the user likes) and it would score no hit; with
    exclusion its next choices are exactly the held-out relevant movies.
    """
    n_movies = 6
    inputs = sp.csr_matrix(np.array([[5, 5, 0, 0, 0, 0]], dtype=np.float32))
    test = sp.csr_matrix(np.array([[0, 0, 5, 4, 0, 1]], dtype=np.float32))
    # Highest scores on the input movies 0, 1, then the relevant test movies 2, 3.
    scores = np.array([[9.0, 8.0, 7.0, 6.0, 1.0, 0.5]])
    result = evaluate_models(
        [FixedScores(scores, "echo")], test=test, inputs=inputs, scale=SCALE, k=2
    )[0]
    assert result.precision == pytest.approx(1.0)
    assert result.recall == pytest.approx(1.0)
    assert result.ndcg == pytest.approx(1.0)
    # Without exclusion the same scorer would score zero: the check above is not vacuous.
    nothing = sp.csr_matrix((1, n_movies), dtype=np.float32)
    unfiltered = evaluate_models(
        [FixedScores(scores, "echo")], test=test, inputs=inputs, scale=SCALE, k=2, exclude=nothing
    )[0]
    assert unfiltered.precision == 0.0


def test_relevance_threshold_and_users_without_relevant_items() -> None:
    inputs = sp.csr_matrix(np.array([[5, 0, 0], [0, 3, 0]], dtype=np.float32))
    # user 0: held-out 4 (relevant); user 1: held-out 3 only (not relevant: threshold is 4)
    test = sp.csr_matrix(np.array([[0, 4, 0], [3, 0, 0]], dtype=np.float32))
    scores = np.array([[0.0, 4.0, 1.0], [3.0, 0.0, 0.0]])
    r = evaluate_models([FixedScores(scores)], test=test, inputs=inputs, scale=SCALE, k=1)[0]
    assert r.ranked_users == 1
    assert r.precision == pytest.approx(1.0)
    assert r.rated == 2


def test_baselines_plug_in_and_flags_are_respected() -> None:
    inputs, test, _ = _random_problem(seed=3)
    models = [GlobalMean().fit(inputs), BiasBaseline(5.0).fit(inputs), Popularity(4.0).fit(inputs)]
    gm, bias, pop = evaluate_models(models, test=test, inputs=inputs, scale=SCALE, k=5)
    assert [gm.name, bias.name, pop.name] == ["global mean", "bias baseline", "popularity"]
    assert gm.rmse is not None and gm.precision is None  # a constant ranks nothing
    assert bias.rmse is not None and bias.ndcg is not None
    assert pop.rmse is None and pop.recall is not None  # counts are not ratings
    # the bias baseline's known users are scored by their fitted bias
    rows, cols, truth = sp.find(test)
    fitted = models[1]
    predicted = (np.float32(float(fitted.mean) + fitted.user_bias.numpy()[rows])
                 + fitted.movie_bias.numpy().astype(np.float32)[cols])
    assert bias.rmse == pytest.approx(np.sqrt(np.mean((np.clip(predicted, 1, 5) - truth) ** 2)))


def test_a_ranking_head_orders_the_list_and_predictions_give_the_errors() -> None:
    """A model with a ranking head is ranked by ``rank_dense``, its errors come from
    ``predict_known``: swapping the two tables changes the top-N metrics, not the RMSE."""
    inputs, test, scores = _random_problem(seed=4)
    reverse = -scores
    users = np.flatnonzero(np.diff(sp.csr_matrix(test).indptr))
    plain = FixedScores(scores)
    headed = FixedScores(scores, "headed", ranking=reverse, ranking_users=users)
    flipped = FixedScores(reverse)
    r_plain, r_headed, r_flipped = evaluate_models(
        [plain, headed, flipped], test=test, inputs=inputs, scale=SCALE, k=5, batch_size=10_000
    )
    assert r_headed.rmse == pytest.approx(r_plain.rmse)
    assert r_headed.ndcg == pytest.approx(r_flipped.ndcg)
    assert r_headed.ndcg != pytest.approx(r_plain.ndcg)


def test_score_shape_mismatch_is_reported() -> None:
    inputs, test, scores = _random_problem()
    with pytest.raises(ValueError, match="bad: predict_known returned"):
        evaluate_models(
            [FixedScores(scores[:, :5], "bad")], test=test, inputs=inputs, scale=SCALE
        )


# ------------------------------------------------------------------ a trained run, end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """A tiny synthetic dataset and a 2-epoch seed-preset run on it."""
    from aerec.config import resolve_config
    from aerec.data.prepare import prepare_paths
    from aerec.data.synth import synthesize
    from aerec.train import train

    root = tmp_path_factory.mktemp("evaluate")
    synthesize(root / "synth", users=300, movies=120, ratings=8000, seed=1)
    prepare_paths([root / "synth"], root / "prepared")
    config = resolve_config("seed", overrides={"epochs": 2, "threads": 1})
    result = train(root / "prepared", root / "run", config)
    return result.run_dir


def _brute_force_autoencoder(run_dir, k: int) -> dict:
    """The autoencoder's test metrics computed the slow, obvious way (whole tiny matrices)."""
    from aerec.data.splits import make_splits
    from aerec.data.store import load_dataset
    from aerec.train import load_checkpoint

    ckpt = load_checkpoint(run_dir / "best.pt")
    ds = load_dataset(ckpt.dataset_path)
    splits = make_splits(ds, **ckpt.split)
    given = splits.train.toarray() + splits.validation.toarray()
    test = splits.test.toarray()
    inputs = sp.csr_matrix(given)
    pred = ckpt.model.predict_dense(inputs.indptr, inputs.indices, inputs.data).numpy()
    rated_test = splits.test.toarray() != 0
    err = np.clip(pred[rated_test], 1, 5) - test[rated_test]
    precisions, recalls, ndcgs = [], [], []
    for u in range(test.shape[0]):
        relevant = set(np.flatnonzero(test[u] >= 4))
        if not relevant:
            continue
        candidates = [m for m in np.argsort(-pred[u], kind="stable") if given[u, m] == 0][:k]
        hits = [m in relevant for m in candidates]
        dcg = sum(1 / np.log2(i + 2) for i, h in enumerate(hits) if h)
        idcg = sum(1 / np.log2(i + 2) for i in range(min(k, len(relevant))))
        precisions.append(sum(hits) / k)
        recalls.append(sum(hits) / len(relevant))
        ndcgs.append(dcg / idcg)
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        "precision": float(np.mean(precisions)),
        "recall": float(np.mean(recalls)),
        "ndcg": float(np.mean(ndcgs)),
        "ranked_users": len(precisions),
        "rated": int(rated_test.sum()),
    }


def test_evaluate_run_matches_a_brute_force_computation(tiny_run) -> None:
    from aerec.evaluate import evaluate_run

    report = evaluate_run(tiny_run, k=10, batch_size=37)  # uneven batches on purpose
    assert [r.name for r in report.results] == [
        "autoencoder", "global mean", "bias baseline", "popularity",
    ]
    ae = report.result("autoencoder")
    expected = _brute_force_autoencoder(tiny_run, k=10)
    for key, value in expected.items():
        assert getattr(ae, key) == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert report.test_ratings == ae.rated
    assert report.split["protocol"] == "random"
    bias = report.result("bias baseline")
    assert bias.rmse < report.result("global mean").rmse
    assert bias.notes["regularisation"] in bias.notes["validation_rmse"]
    assert report.result("popularity").rmse is None


def test_evaluation_report_to_dict_is_json(tiny_run) -> None:
    import json

    from aerec.evaluate import evaluate_run

    data = json.loads(json.dumps(evaluate_run(tiny_run, k=5).to_dict()))
    assert data["k"] == 5
    assert {r["name"] for r in data["results"]} >= {"autoencoder", "bias baseline"}
    assert data["results"][1]["precision"] is None  # global mean ranks nothing


def test_cli_evaluate_table_and_json(tiny_run) -> None:
    import json

    from typer.testing import CliRunner

    from aerec.cli import app

    runner = CliRunner()
    table = runner.invoke(app, ["evaluate", str(tiny_run), "--k", "10"])
    assert table.exit_code == 0, table.output
    for label in ("autoencoder", "bias baseline", "popularity", "RMSE", "NDCG@10"):
        assert label in table.output
    as_json = runner.invoke(app, ["evaluate", str(tiny_run), "--json", "--checkpoint", "last"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["checkpoint"].endswith("last.pt")
    assert data["results"][0]["name"] == "autoencoder"


def test_evaluate_run_missing_checkpoint_is_a_clear_error(tmp_path) -> None:
    from aerec.evaluate import evaluate_run

    with pytest.raises(FileNotFoundError, match="no such run directory"):
        evaluate_run(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="best.pt"):
        evaluate_run(tmp_path)


# ------------------------------------------------------------------ real data (baselines only)


def test_baselines_on_ml100k_u1(ml100k_dir, tmp_path) -> None:
    """Through the data layer: prepare u1.base with u1.test as the fixed test split."""
    from aerec.data.prepare import prepare_paths
    from aerec.data.splits import make_splits
    from aerec.data.store import load_dataset
    from aerec.evaluate import fit_baselines

    prepare_paths([ml100k_dir / "u1.base"], tmp_path / "u1", test=ml100k_dir / "u1.test")
    ds = load_dataset(tmp_path / "u1")
    splits = make_splits(ds, "fixed", validation_fraction=0.1, seed=0)
    models, notes = fit_baselines(splits.train, splits.validation, splits.test_input, ds.scale)
    results = {
        r.name: r
        for r in evaluate_models(
            models, test=splits.test, inputs=splits.test_input, scale=ds.scale, k=10
        )
    }
    assert results["bias baseline"].rated == 20_000
    # Published: 0.960 for user + movie biases on u1; Surprise BaselineOnly ~0.944 (5-fold).
    assert 0.94 <= results["bias baseline"].rmse <= 0.97
    assert results["global mean"].rmse > 1.1
    assert notes["regularisation"] in notes["validation_rmse"]
    # Popularity is a strong top-N baseline on MovieLens; the bias baseline ranks obscure
    # movies with few high ratings, so it does worse (a sanity check of the ranking path).
    assert results["popularity"].precision > 0.1
    assert results["popularity"].ndcg > results["bias baseline"].ndcg


# ------------------------------------------------------------------ several runs, quality warnings


def _row(name, kind, rmse=None, ndcg=None):
    from aerec.evaluate import ModelResult

    return ModelResult(name=name, kind=kind, rmse=rmse, ndcg=ndcg)


def test_quality_warnings_name_the_models_below_a_baseline() -> None:
    from aerec.evaluate import EvaluationReport, quality_warnings

    report = EvaluationReport(
        results=[_row("seed", "model", 1.049, 0.018), _row("auto", "model", 0.91, 0.19),
                 _row("global mean", "baseline", 1.09), _row("bias baseline", "baseline",
                                                             0.96, 0.04),
                 _row("popularity", "baseline", None, 0.169)],
        k=10, relevance_threshold=4.0, scale=SCALE, test_ratings=10, test_users=2,
    )
    warnings = quality_warnings(report)
    assert len(warnings) == 1 and warnings[0].startswith("seed: test RMSE 1.0490")
    assert "NDCG@10 0.0180" in warnings[0]
    assert report.to_dict()["warnings"] == warnings
    text = str(report)  # print(report): the table, then the warning
    assert "bias baseline" in text and "0.9600" in text and text.endswith(warnings[0])


def test_evaluate_runs_scores_several_runs_in_one_table(tiny_run, tmp_path) -> None:
    import shutil

    from aerec.evaluate import evaluate_run, evaluate_runs

    copy = tmp_path / "again"
    shutil.copytree(tiny_run, copy)
    one = evaluate_run(tiny_run)
    both = evaluate_runs([tiny_run, copy])
    assert [r.name for r in both.results] == [
        f"autoencoder ({tiny_run.name})", "autoencoder (again)", "global mean",
        "bias baseline", "popularity",
    ]
    assert both.results[0].rmse == pytest.approx(one.results[0].rmse)
    assert both.results[1].rmse == pytest.approx(one.results[0].rmse)
    assert both.result("bias baseline").rmse == pytest.approx(one.result("bias baseline").rmse)
    assert both.results[1].notes["run_dir"] == str(copy)
    named = evaluate_runs([tiny_run, copy], names=["seed", "copy"])
    assert [r.name for r in named.results[:2]] == ["seed", "copy"]
    with pytest.raises(ValueError, match="2 names for 1 runs"):
        evaluate_runs([tiny_run], names=["a", "b"])


def test_runs_with_different_splits_are_refused_together(tiny_run, tmp_path) -> None:
    from aerec.checkpoint import read_payload, save_checkpoint
    from aerec.evaluate import evaluate_runs

    other = tmp_path / "other"
    other.mkdir()
    payload = read_payload(tiny_run / "best.pt")
    payload["split"] = {**payload["split"], "seed": 7}
    payload.pop("digest", None)
    save_checkpoint(payload, other / "best.pt")
    with pytest.raises(ValueError, match="must share their dataset and split"):
        evaluate_runs([tiny_run, other])


def test_cli_evaluate_warns_under_the_table_and_records_it_for_recommend(tiny_run) -> None:
    import json

    from typer.testing import CliRunner

    from aerec.cli import app
    from aerec.evaluate import evaluate_run, quality_warnings
    from aerec.quality import EVALUATION_FILE, quality_warning

    expected = quality_warnings(evaluate_run(tiny_run))
    result = CliRunner().invoke(app, ["evaluate", str(tiny_run)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert (tiny_run / EVALUATION_FILE).is_file()
    table_end = result.output.index("popularity")
    for line in expected:
        assert f"warning: {line}" in result.output[table_end:]
    recorded = quality_warning(tiny_run)
    assert expected, "a 2-epoch seed run on 300 users is below the bias baseline"
    assert recorded is not None and expected[0].split(": ", 1)[1] in recorded
    # aerec recommend repeats it: above the table, or on stderr beside --json's pure stdout
    table = CliRunner().invoke(app, ["recommend", str(tiny_run), "--rate", "1=5"],
                               env={"COLUMNS": "400"})
    assert table.exit_code == 0, table.output
    assert f"warning: {recorded}" in table.stdout
    as_json = CliRunner().invoke(app, ["recommend", str(tiny_run), "--rate", "1=5", "--json"],
                                 env={"COLUMNS": "400"})
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["items"]
    assert "warning: this model was worse" in " ".join(as_json.stderr.split())
