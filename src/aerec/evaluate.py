"""Honest evaluation of a trained run: rating error and top-N metrics on the test split, with
baselines in the same table.

:func:`evaluate_models` is the general routine: any number of models — a trained checkpoint's
and the fitted baselines alike, every one a :class:`~aerec.model.base.RatingModel` — are run
over the test users in bounded batches (at most a ``(batch, n_movies)`` score block exists at
any time, never users × movies) and accumulate

- RMSE / MAE at every held-out rating (predictions clipped to the rating scale), for models
  whose predictions are ratings (``predicts_ratings``);
- Precision@k, Recall@k and NDCG@k over users with at least one relevant held-out rating
  (rating ≥ ``scale.relevance_threshold()``), ranking only movies the user has not already rated
  in the model's input, for models whose ranking means something (``ranks_items``).

Each test user is given to a model as their row and their input ratings (``predict_known``:
a model that keeps per-user state uses it for users it was fitted on, and scores any other
user from their ratings); top-N lists sort by ``rank_dense`` when the model has a ranking
head (``has_ranking_head``), else by those same predictions.

:func:`evaluate_run` loads a run's checkpoint, recreates its exact split, fits the baselines
(the bias baseline's λ chosen on the validation split, then refitted on train ∪ validation) and
calls :func:`evaluate_models` on the test split; :func:`evaluate_runs` does the same for several
runs trained on the same data and split, in one table. :func:`quality_warnings` says which
models are no better than the bias baseline (RMSE) or popularity (NDCG@k)
(:mod:`aerec.quality`); with ``record=True`` that comparison is kept in each run directory for
``aerec recommend``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from aerec.data.ratings import RatingScale
from aerec.data.splits import make_splits, union_rows
from aerec.jsonable import plain
from aerec.metrics import RankingAccumulator, RatingErrorAccumulator, top_k_items
from aerec.model.base import RatingModel, csr_arrays
from aerec.model.baselines import Baseline, BiasBaseline, GlobalMean, Popularity
from aerec.quality import shortfalls, write_record

__all__ = [
    "EvaluationReport",
    "ModelResult",
    "evaluate_models",
    "evaluate_run",
    "evaluate_runs",
    "fit_baselines",
    "quality_warnings",
]

DEFAULT_BATCH_SIZE = 512


@dataclass
class ModelResult:
    """One row of the evaluation table. Metrics a model does not support are ``None``."""

    name: str
    kind: str  # "model" or "baseline"
    rmse: float | None = None
    mae: float | None = None
    precision: float | None = None
    recall: float | None = None
    ndcg: float | None = None
    rated: int = 0  # held-out ratings scored for RMSE/MAE
    ranked_users: int = 0  # users counted in the top-N metrics
    seconds: float = 0.0
    notes: dict = field(default_factory=dict)


@dataclass
class EvaluationReport:
    """Everything ``aerec evaluate`` shows: the table rows plus what they were computed on."""

    results: list[ModelResult]
    k: int
    relevance_threshold: float
    scale: RatingScale
    test_ratings: int
    test_users: int
    run_dir: str | None = None
    checkpoint: str | None = None
    dataset: str | None = None
    split: dict = field(default_factory=dict)
    seconds: float = 0.0

    def result(self, name: str) -> ModelResult:
        """The row named ``name`` (e.g. ``"bias baseline"``)."""
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no evaluation row named {name!r}")

    def to_dict(self) -> dict:
        """JSON-ready form (NaN becomes ``None``)."""
        return plain(
            {
                "run_dir": self.run_dir,
                "checkpoint": self.checkpoint,
                "dataset": self.dataset,
                "split": self.split,
                "k": self.k,
                "relevance_threshold": self.relevance_threshold,
                "scale": self.scale.to_dict(),
                "test_ratings": self.test_ratings,
                "test_users": self.test_users,
                "seconds": self.seconds,
                "results": [asdict(r) for r in self.results],
                "warnings": quality_warnings(self),
            }
        )

    def __str__(self) -> str:
        """The table as plain text (``print(report)``), with any quality warnings under it."""
        k = self.k
        header = ["model", "kind", "RMSE", "MAE", f"P@{k}", f"R@{k}", f"NDCG@{k}"]
        rows = [[r.name, r.kind, *(_cell(v) for v in (r.rmse, r.mae, r.precision, r.recall,
                                                          r.ndcg))] for r in self.results]
        widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
        lines = [f"test split: {self.test_ratings:,} ratings, {self.test_users:,} users"]
        for line in [header, *rows]:
            lines.append("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                                   for i, (cell, w) in enumerate(zip(line, widths))).rstrip())
        lines += [f"warning: {w}" for w in quality_warnings(self)]
        return "\n".join(lines)


def _cell(value: float | None) -> str:
    if value is None:
        return "—"
    return "n/a" if value != value else f"{value:.4f}"  # NaN: nothing to average over


def quality_warnings(report: EvaluationReport) -> list[str]:
    """One line per model of ``report`` that is no better than a baseline in the same table:
    test RMSE ≥ the bias baseline's, or NDCG@k ≤ popularity's (:func:`aerec.quality.shortfalls`).
    Empty when every model beats both, or when the baselines were not evaluated."""
    by_name = {r.name: asdict(r) for r in report.results if r.kind == "baseline"}
    bias, popular = by_name.get(BiasBaseline.name), by_name.get(Popularity.name)
    lines = []
    for r in report.results:
        if r.kind != "model":
            continue
        found = shortfalls(asdict(r), bias, popular, report.k)
        if found:
            lines.append(f"{r.name}: " + "; ".join(found))
    return lines


def _score_block(scores: Any, model: RatingModel, method: str, shape: tuple) -> np.ndarray:
    """A ``(batch, n_movies)`` block of a model's scores as float32 NumPy (what ranking and
    the rating errors have always been computed from), its shape checked."""
    block = scores.detach().float().cpu().numpy()
    if block.shape != shape:
        raise ValueError(f"{model.label}: {method} returned {block.shape}, expected {shape}")
    return block


def evaluate_models(
    models: Sequence[RatingModel],
    *,
    test: sp.csr_matrix,
    inputs: sp.csr_matrix,
    scale: RatingScale,
    k: int = 10,
    batch_size: int = DEFAULT_BATCH_SIZE,
    exclude: sp.csr_matrix | None = None,
    kinds: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
) -> list[ModelResult]:
    """Score ``test`` for every model, batched over the users that have test ratings.

    ``test``     ``(n_users, n_movies)`` CSR of held-out ratings;
    ``inputs``   ``(n_users, n_movies)`` CSR of what each user brings (for the random split all
                 non-test ratings, train ∪ validation); user ``u`` is given to the models as
                 row ``u`` and their row of ``inputs`` (``predict_known``);
    ``exclude``  movies never ranked for a user (default: ``inputs``, what the user already
                 rated);
    ``kinds``    a label per model for the table ("model"/"baseline"; default "model");
    ``names``    a name per model for the table (default: each model's ``label``).

    A held-out rating counts as relevant when ≥ ``scale.relevance_threshold()``. Memory is
    bounded by ``batch_size × n_movies`` scores per model.
    """
    test, inputs = sp.csr_matrix(test), sp.csr_matrix(inputs)
    exclude = inputs if exclude is None else sp.csr_matrix(exclude)
    if not (test.shape == inputs.shape == exclude.shape):
        raise ValueError(
            f"test {test.shape}, inputs {inputs.shape} and exclude {exclude.shape} differ"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    threshold = scale.relevance_threshold()
    kinds = list(kinds) if kinds is not None else ["model"] * len(models)
    names = list(names) if names is not None else [m.label for m in models]
    errors = [RatingErrorAccumulator(scale=scale) for _ in models]
    rankings = [RankingAccumulator(k=k) for _ in models]
    seconds = [0.0] * len(models)
    test_users = np.flatnonzero(np.diff(test.indptr))

    for start in range(0, len(test_users), batch_size):
        users = test_users[start : start + batch_size]
        test_rows = test[users]
        arrays = csr_arrays(inputs[users])
        exclude_rows = exclude[users]
        entry_rows = np.repeat(np.arange(len(users)), np.diff(test_rows.indptr))
        truth = test_rows.data
        relevant = sp.csr_matrix(
            (
                (truth >= threshold - 1e-9).astype(np.float32),
                test_rows.indices,
                test_rows.indptr,
            ),
            shape=test_rows.shape,
        )
        relevant = _keep_nonzero(relevant)
        for j, model in enumerate(models):
            began = time.perf_counter()
            ranks_by_head = model.ranks_items and model.has_ranking_head
            predicted = None
            if model.predicts_ratings or (model.ranks_items and not ranks_by_head):
                predicted = _score_block(model.predict_known(users, *arrays), model,
                                         "predict_known", test_rows.shape)
            if model.predicts_ratings:
                errors[j].update(predicted[entry_rows, test_rows.indices], truth)
            if model.ranks_items:
                order = predicted if not ranks_by_head else _score_block(
                    model.rank_dense(*arrays), model, "rank_dense", test_rows.shape
                )
                rankings[j].update_from_items(top_k_items(order, k, exclude_rows), relevant)
            seconds[j] += time.perf_counter() - began

    results = []
    for j, model in enumerate(models):
        err, rank = errors[j], rankings[j]
        results.append(
            ModelResult(
                name=names[j],
                kind=kinds[j],
                rmse=err.rmse if model.predicts_ratings else None,
                mae=err.mae if model.predicts_ratings else None,
                precision=rank.precision if model.ranks_items else None,
                recall=rank.recall if model.ranks_items else None,
                ndcg=rank.ndcg if model.ranks_items else None,
                rated=err.count,
                ranked_users=rank.users,
                seconds=seconds[j],
            )
        )
    return results


def _keep_nonzero(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Drop stored zeros (non-relevant entries) from a 0/1 CSR matrix."""
    keep = matrix.data != 0
    kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    return sp.csr_matrix(
        (matrix.data[keep], matrix.indices[keep], kept_before[matrix.indptr]), shape=matrix.shape
    )


# --------------------------------------------------------------------------- the run


def fit_baselines(
    train: sp.csr_matrix,
    validation: sp.csr_matrix,
    fit_on: sp.csr_matrix,
    scale: RatingScale,
) -> tuple[list[Baseline], dict]:
    """The standard baselines, fitted on ``fit_on`` (train ∪ validation).

    The bias baseline's λ is chosen by validation RMSE of a fit on ``train`` alone; the choice
    and the validation RMSEs are returned as notes.
    """
    notes: dict = {}
    if validation.nnz:
        lam, grid = BiasBaseline.select_regularisation(
            train, validation, clip=(scale.minimum, scale.maximum)
        )
        notes = {"regularisation": lam, "validation_rmse": grid}
    else:
        lam = BiasBaseline().regularisation
        notes = {"regularisation": lam, "validation_rmse": {}}
    baselines = [
        GlobalMean().fit(fit_on),
        BiasBaseline(regularisation=lam).fit(fit_on),
        Popularity(relevance_threshold=scale.relevance_threshold()).fit(fit_on),
    ]
    return baselines, notes


def evaluate_run(
    run_dir: str | Path,
    *,
    k: int = 10,
    batch_size: int = DEFAULT_BATCH_SIZE,
    checkpoint: str = "best",
    dataset: str | Path | None = None,
    baselines: bool = True,
    record: bool = False,
) -> EvaluationReport:
    """Evaluate a training run on its test split, with the baselines in the same table.

    Loads ``run_dir/{checkpoint}.pt`` (``best`` or ``last``, or a path to a checkpoint file),
    opens the dataset it was trained on (``dataset`` overrides the recorded path, e.g. after
    moving it) and recreates the exact split from the recorded split parameters. Each test user's
    input is all their non-test ratings (train ∪ validation); movies in it are excluded from the
    ranking. ``record``: keep the comparison with the baselines in ``run_dir/evaluation.json``
    (:mod:`aerec.quality`), where ``aerec recommend`` finds it.
    """
    return evaluate_runs([run_dir], k=k, batch_size=batch_size, checkpoint=checkpoint,
                         dataset=dataset, baselines=baselines, record=record)


def evaluate_runs(
    runs: Sequence[str | Path],
    *,
    k: int = 10,
    batch_size: int = DEFAULT_BATCH_SIZE,
    checkpoint: str = "best",
    dataset: str | Path | None = None,
    baselines: bool = True,
    names: Sequence[str] | None = None,
    record: bool = False,
) -> EvaluationReport:
    """Evaluate several training runs on one test split, in one table with the baselines.

    Every run's ``{checkpoint}.pt`` must come from the same dataset and the same split settings
    (as runs of one dataset with the default split do); the split is recreated once and the
    baselines fitted once, as :func:`evaluate_run` does for one run. ``names`` label the runs'
    rows (default: the model's label, followed by the run directory's name when there are
    several runs). ``record`` keeps each run's comparison in its ``evaluation.json``.
    """
    from aerec.checkpoint import load_checkpoint
    from aerec.data.store import load_dataset

    began = time.perf_counter()
    run_dirs = [Path(r) for r in runs]
    if not run_dirs:
        raise ValueError("no run to evaluate")
    if names is not None and len(names) != len(run_dirs):
        raise ValueError(f"{len(names)} names for {len(run_dirs)} runs")
    paths = [_checkpoint_path(r, checkpoint) for r in run_dirs]
    ckpts = [load_checkpoint(p) for p in paths]
    data_path, split_params = _dataset_and_split(ckpts[0])
    for path, ckpt in zip(paths[1:], ckpts[1:]):
        other_path, other_split = _dataset_and_split(ckpt)
        if other_split != split_params or (dataset is None and other_path != data_path):
            raise ValueError(
                f"{path} was trained on {other_path} with the split {other_split}, but "
                f"{paths[0]} on {data_path} with {split_params}; runs evaluated together must "
                "share their dataset and split (evaluate them one at a time)"
            )
    if dataset is not None:
        data_path = str(dataset)
    if data_path is None:
        raise ValueError(f"{paths[0]}: the checkpoint does not record its dataset; pass dataset=")
    ds = load_dataset(data_path)
    splits = make_splits(ds, **split_params)
    for path, ckpt in zip(paths, ckpts):
        if ds.n_movies != ckpt.model.n_movies:
            raise ValueError(
                f"{data_path}: has {ds.n_movies} movies but the checkpoint {path} was trained "
                f"on {ckpt.model.n_movies}; pass the dataset it was trained on"
            )
        recorded = ckpt.dataset.get("train_ratings")
        if recorded is not None and int(recorded) != splits.train.nnz:
            raise ValueError(
                f"{data_path}: recreating the split gives {splits.train.nnz} training ratings, "
                f"but the run {path.parent} trained on {recorded}; this is not the dataset the "
                "run was trained on"
            )
    if names is None:
        several = len(run_dirs) > 1
        dir_names = [r.resolve().name for r in run_dirs]
        unique = len(set(dir_names)) == len(dir_names)
        names = [
            f"{c.model.label} ({d if unique else r})" if several else c.model.label
            for c, d, r in zip(ckpts, dir_names, run_dirs)
        ]
    scale = ds.scale
    models: list[RatingModel] = [c.model for c in ckpts]
    kinds = ["model"] * len(models)
    all_names = list(names)
    bias_notes: dict = {}
    if baselines:
        fit_on = union_rows(splits.train, splits.validation, splits.test_input) if (
            splits.protocol == "user"
        ) else splits.test_input
        fitted, bias_notes = fit_baselines(splits.train, splits.validation, fit_on, scale)
        models += fitted
        kinds += ["baseline"] * len(fitted)
        all_names += [m.label for m in fitted]
    results = evaluate_models(
        models,
        test=splits.test,
        inputs=splits.test_input,
        scale=scale,
        k=k,
        batch_size=batch_size,
        kinds=kinds,
        names=all_names,
    )
    for r in results:
        if r.name == BiasBaseline.name and r.kind == "baseline":
            r.notes = bias_notes
    for r, run_dir, path in zip(results, run_dirs, paths):
        r.notes = {"run_dir": str(run_dir), "checkpoint": str(path)}
    report = EvaluationReport(
        results=results,
        k=k,
        relevance_threshold=scale.relevance_threshold(),
        scale=scale,
        test_ratings=int(splits.test.nnz),
        test_users=len(splits.test_users),
        run_dir=str(run_dirs[0]),
        checkpoint=str(paths[0]),
        dataset=str(data_path),
        split=dict(splits.params),
        seconds=time.perf_counter() - began,
    )
    if record:
        baseline_rows = {r.name: asdict(r) for r in results if r.kind == "baseline"}
        for r, path, ckpt in zip(results, paths, ckpts):
            write_record(path, digest=ckpt.payload.get("digest"), model=asdict(r),
                         baselines=baseline_rows, k=k, test_ratings=report.test_ratings,
                         split=report.split)
    return report


def _checkpoint_path(run_dir: Path, checkpoint: str) -> Path:
    candidate = Path(checkpoint)
    if candidate.suffix == ".pt" and candidate.is_file():
        return candidate
    path = run_dir / f"{checkpoint}.pt"
    if not path.is_file():
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: no such run directory")
        raise FileNotFoundError(f"{path}: no such checkpoint (expected best.pt or last.pt)")
    return path


def _dataset_and_split(ckpt: Any) -> tuple[str | None, dict]:
    """The dataset path and ``make_splits`` keyword arguments recorded in a checkpoint."""
    return (ckpt.dataset_path or None), dict(ckpt.split)
