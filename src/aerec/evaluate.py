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
calls :func:`evaluate_models` on the test split.
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

__all__ = [
    "EvaluationReport",
    "ModelResult",
    "evaluate_models",
    "evaluate_run",
    "fit_baselines",
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
            }
        )


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
) -> EvaluationReport:
    """Evaluate a training run on its test split, with the baselines in the same table.

    Loads ``run_dir/{checkpoint}.pt`` (``best`` or ``last``, or a path to a checkpoint file),
    opens the dataset it was trained on (``dataset`` overrides the recorded path, e.g. after
    moving it) and recreates the exact split from the recorded split parameters. Each test user's
    input is all their non-test ratings (train ∪ validation); movies in it are excluded from the
    ranking.
    """
    from aerec.checkpoint import load_checkpoint
    from aerec.data.store import load_dataset

    began = time.perf_counter()
    run_dir = Path(run_dir)
    ckpt_path = _checkpoint_path(run_dir, checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    data_path, split_params = _dataset_and_split(ckpt)
    if dataset is not None:
        data_path = str(dataset)
    if data_path is None:
        raise ValueError(f"{ckpt_path}: the checkpoint does not record its dataset; pass dataset=")
    ds = load_dataset(data_path)
    if ds.n_movies != ckpt.model.n_movies:
        raise ValueError(
            f"{data_path}: has {ds.n_movies} movies but the checkpoint {ckpt_path} was trained "
            f"on {ckpt.model.n_movies}; pass the dataset it was trained on"
        )
    splits = make_splits(ds, **split_params)
    recorded = ckpt.dataset.get("train_ratings")
    if recorded is not None and int(recorded) != splits.train.nnz:
        raise ValueError(
            f"{data_path}: recreating the split gives {splits.train.nnz} training ratings, but "
            f"the run trained on {recorded}; this is not the dataset the run was trained on"
        )
    scale = ds.scale
    models: list[RatingModel] = [ckpt.model]
    kinds = ["model"]
    bias_notes: dict = {}
    if baselines:
        fit_on = union_rows(splits.train, splits.validation, splits.test_input) if (
            splits.protocol == "user"
        ) else splits.test_input
        fitted, bias_notes = fit_baselines(splits.train, splits.validation, fit_on, scale)
        models += fitted
        kinds += ["baseline"] * len(fitted)
    results = evaluate_models(
        models,
        test=splits.test,
        inputs=splits.test_input,
        scale=scale,
        k=k,
        batch_size=batch_size,
        kinds=kinds,
    )
    for r in results:
        if r.name == BiasBaseline.name:
            r.notes = bias_notes
    return EvaluationReport(
        results=results,
        k=k,
        relevance_threshold=scale.relevance_threshold(),
        scale=scale,
        test_ratings=int(splits.test.nnz),
        test_users=len(splits.test_users),
        run_dir=str(run_dir),
        checkpoint=str(ckpt_path),
        dataset=str(data_path),
        split=dict(splits.params),
        seconds=time.perf_counter() - began,
    )


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
