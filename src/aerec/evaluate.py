"""Honest evaluation of a trained run: rating error and top-N metrics on the test split, with
baselines in the same table.

:func:`evaluate_scorers` is the general routine: any number of scorers (the autoencoder, the
baselines, later models) are run over the test users in bounded batches — at most a
``(batch, n_movies)`` score block exists at any time, never users × movies — and accumulate

- RMSE / MAE at every held-out rating (predictions clipped to the rating scale), for scorers
  whose scores are ratings;
- Precision@k, Recall@k and NDCG@k over users with at least one relevant held-out rating
  (rating ≥ ``scale.relevance_threshold()``), ranking only movies the user has not already rated
  in the model's input, for scorers whose ranking means something.

:func:`evaluate_run` loads a run's checkpoint, recreates its exact split, fits the baselines
(the bias baseline's λ chosen on the validation split, then refitted on train ∪ validation) and
calls :func:`evaluate_scorers` on the test split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from aerec.data.ratings import RatingScale
from aerec.metrics import RankingAccumulator, RatingErrorAccumulator, top_k_items
from aerec.model.baselines import BiasBaseline, GlobalMean, Popularity

__all__ = [
    "AutoencoderScorer",
    "EvaluationReport",
    "Scorer",
    "ScorerResult",
    "evaluate_run",
    "evaluate_scorers",
]

DEFAULT_BATCH_SIZE = 512


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores every movie for a batch of users.

    ``score_users(user_rows, inputs)`` returns ``(batch, n_movies)`` scores (NumPy or torch),
    where ``user_rows`` are the users' row indices and ``inputs`` the ``(batch, n_movies)`` CSR of
    the ratings each user brings. ``predicts_ratings``: the scores are ratings (RMSE/MAE apply).
    ``ranks_items``: the ordering is meaningful (top-N metrics apply). The baselines in
    :mod:`aerec.model.baselines` satisfy this protocol as they are.
    """

    name: str
    predicts_ratings: bool
    ranks_items: bool

    def score_users(self, user_rows: np.ndarray, inputs: sp.csr_matrix) -> Any: ...


@dataclass
class ScorerResult:
    """One row of the evaluation table. Metrics a scorer does not support are ``None``."""

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

    results: list[ScorerResult]
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

    def result(self, name: str) -> ScorerResult:
        """The row named ``name`` (e.g. ``"bias baseline"``)."""
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no evaluation row named {name!r}")

    def to_dict(self) -> dict:
        """JSON-ready form (NaN becomes ``None``)."""
        return _json_ready(
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


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _to_numpy(scores: Any) -> np.ndarray:
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().numpy()
    return np.asarray(scores)


def evaluate_scorers(
    scorers: Sequence[Scorer],
    *,
    test: sp.csr_matrix,
    inputs: sp.csr_matrix,
    scale: RatingScale,
    k: int = 10,
    batch_size: int = DEFAULT_BATCH_SIZE,
    exclude: sp.csr_matrix | None = None,
    kinds: Sequence[str] | None = None,
) -> list[ScorerResult]:
    """Score ``test`` for every scorer, batched over the users that have test ratings.

    ``test``     ``(n_users, n_movies)`` CSR of held-out ratings;
    ``inputs``   ``(n_users, n_movies)`` CSR of what each user brings (for the random split all
                 non-test ratings, train ∪ validation); row ``u`` is passed to the scorers for
                 user ``u``;
    ``exclude``  movies never ranked for a user (default: ``inputs``, what the user already
                 rated);
    ``kinds``    a label per scorer for the table ("model"/"baseline"; default "model").

    A held-out rating counts as relevant when ≥ ``scale.relevance_threshold()``. Memory is
    bounded by ``batch_size × n_movies`` scores per scorer.
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
    kinds = list(kinds) if kinds is not None else ["model"] * len(scorers)
    errors = [RatingErrorAccumulator(scale=scale) for _ in scorers]
    rankings = [RankingAccumulator(k=k) for _ in scorers]
    seconds = [0.0] * len(scorers)
    test_users = np.flatnonzero(np.diff(test.indptr))

    for start in range(0, len(test_users), batch_size):
        users = test_users[start : start + batch_size]
        test_rows = test[users]
        input_rows = inputs[users]
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
        for j, scorer in enumerate(scorers):
            began = time.perf_counter()
            scores = _to_numpy(scorer.score_users(users, input_rows))
            if scores.shape != test_rows.shape:
                raise ValueError(
                    f"{scorer.name}: score_users returned {scores.shape}, "
                    f"expected {test_rows.shape}"
                )
            if scorer.predicts_ratings:
                errors[j].update(scores[entry_rows, test_rows.indices], truth)
            if scorer.ranks_items:
                ranker = getattr(scorer, "rank_users", None)  # a separate ranking score
                order = scores if ranker is None else _to_numpy(ranker(users, input_rows))
                rankings[j].update_from_items(top_k_items(order, k, exclude_rows), relevant)
            seconds[j] += time.perf_counter() - began

    results = []
    for j, scorer in enumerate(scorers):
        err, rank = errors[j], rankings[j]
        results.append(
            ScorerResult(
                name=scorer.name,
                kind=kinds[j],
                rmse=err.rmse if scorer.predicts_ratings else None,
                mae=err.mae if scorer.predicts_ratings else None,
                precision=rank.precision if scorer.ranks_items else None,
                recall=rank.recall if scorer.ranks_items else None,
                ndcg=rank.ndcg if scorer.ranks_items else None,
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


def union(*matrices: sp.csr_matrix) -> sp.csr_matrix:
    """Entry-wise union of disjoint CSR rating matrices of one shape.

    Unlike ``a + b`` this keeps stored ratings equal to 0 (scales that start at 0).
    """
    shape = matrices[0].shape
    rows, cols, data = [], [], []
    for m in matrices:
        m = sp.csr_matrix(m)
        if m.shape != shape:
            raise ValueError(f"cannot join matrices of shapes {shape} and {m.shape}")
        rows.append(np.repeat(np.arange(shape[0], dtype=np.int64), np.diff(m.indptr)))
        cols.append(m.indices)
        data.append(m.data)
    out = sp.coo_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=shape
    ).tocsr()
    out.sort_indices()
    return out


# --------------------------------------------------------------------------- the run


def model_label(config: Any) -> str:
    """A short name for what a run trained, for result tables: ``ensemble (3)``,
    ``Bayesian MF``, ``autoencoder``."""
    if getattr(config, "members", ()):
        return f"ensemble ({len(config.members)})"
    if getattr(config, "model", "") == "bayesian-mf":
        return "Bayesian MF"
    return "autoencoder"


class AutoencoderScorer:
    """Adapts a trained autoencoder to the :class:`Scorer` protocol.

    The model's ``predict_dense(indptr, indices, values)`` maps a batch of users' ratings (CSR
    arrays) to predicted ratings for every movie, ``(batch, n_movies)``.
    """

    predicts_ratings = True
    ranks_items = True

    def __init__(self, model: Any, name: str = "autoencoder") -> None:
        self.model = model
        self.name = name

    def score_users(self, user_rows: np.ndarray, inputs: sp.csr_matrix) -> np.ndarray:
        """Predicted ratings ``(batch, n_movies)`` from each user's ``inputs`` row (no dropout)."""
        inputs = sp.csr_matrix(inputs)
        arrays = (
            inputs.indptr.astype(np.int64),
            inputs.indices.astype(np.int64),
            inputs.data.astype(np.float32),
        )
        if hasattr(self.model, "predict_known"):
            # item-based models score users they were trained on by their trained output row
            # (aerec.model.item_autoencoder); others are identical to predict_dense
            out = self.model.predict_known(np.asarray(user_rows, dtype=np.int64), *arrays)
        else:
            out = self.model.predict_dense(*arrays)
        return out.detach().float().cpu().numpy()

    def __getattr__(self, name: str) -> Any:
        # Models with a ranking head (``rank_dense``, e.g. aerec.model.ranked.RankedModel)
        # rank top-N lists by it; their predicted ratings still come from predict_dense.
        if name == "rank_users" and hasattr(self.__dict__.get("model"), "rank_dense"):
            return self._rank_users
        raise AttributeError(name)

    def _rank_users(self, user_rows: np.ndarray, inputs: sp.csr_matrix) -> np.ndarray:
        """Ranking scores ``(batch, n_movies)`` from the model's ``rank_dense``."""
        inputs = sp.csr_matrix(inputs)
        out = self.model.rank_dense(
            inputs.indptr.astype(np.int64),
            inputs.indices.astype(np.int64),
            inputs.data.astype(np.float32),
        )
        return out.detach().float().cpu().numpy()


def baseline_scorers(
    train: sp.csr_matrix,
    validation: sp.csr_matrix,
    fit_on: sp.csr_matrix,
    scale: RatingScale,
) -> tuple[list[Any], dict]:
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
    scorers = [
        GlobalMean().fit(fit_on),
        BiasBaseline(regularisation=lam).fit(fit_on),
        Popularity(relevance_threshold=scale.relevance_threshold()).fit(fit_on),
    ]
    return scorers, notes


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
    from aerec.data.splits import make_splits
    from aerec.data.store import load_dataset
    from aerec.checkpoint import load_checkpoint

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
    recorded = getattr(ckpt, "dataset", {}).get("train_ratings")
    if recorded is not None and int(recorded) != splits.train.nnz:
        raise ValueError(
            f"{data_path}: recreating the split gives {splits.train.nnz} training ratings, but "
            f"the run trained on {recorded}; this is not the dataset the run was trained on"
        )
    scale = ds.scale
    ae = AutoencoderScorer(ckpt.model, name=model_label(ckpt.config))
    scorers: list[Any] = [ae]
    kinds = ["model"]
    bias_notes: dict = {}
    if baselines:
        fit_on = union(splits.train, splits.validation, splits.test_input) if (
            splits.protocol == "user"
        ) else splits.test_input
        base, bias_notes = baseline_scorers(splits.train, splits.validation, fit_on, scale)
        scorers += base
        kinds += ["baseline"] * len(base)
    results = evaluate_scorers(
        scorers,
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
