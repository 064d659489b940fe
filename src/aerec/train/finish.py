"""After the epochs: turning the selected epoch into the model that is saved and served.

* :func:`choose_ranking` / :func:`with_ranking` — an optional ranking head for top-N lists
  (EASE blended with the predicted rating, :mod:`aerec.model.ranked`), its λ and blend weight
  chosen on validation.
* :func:`prediction_rmse` — RMSE of any model's prediction API on held-out entries.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from aerec.config import TrainConfig
from aerec.metrics import RankingAccumulator, clipped_rmse, top_k_items
from aerec.model.base import csr_arrays
from aerec.model.ease import DEFAULT_EASE_REGULARISATION_GRID, EASE, relevant_entries
from aerec.model.ranked import RankedModel
from aerec.train.batching import users_with_ratings
from aerec.train.budget import BudgetReport, Deadline
from aerec.train.events import Callback, StageStarted

#: Users per prediction batch in :func:`prediction_rmse`.
PREDICT_BATCH = 256


@torch.no_grad()
def validation_predictions(
    model: torch.nn.Module,
    inputs: sp.csr_matrix,
    targets: sp.csr_matrix,
    users: np.ndarray | None = None,
    *,
    known: bool = False,
) -> np.ndarray:
    """``model.predict_at`` at the entries of ``targets`` ``(n_users, n_movies)`` (CSR order,
    raw), each user's row of ``inputs`` being what the model is given; ``users`` restricts the
    rows (default all). With ``known``, users are also identified by their row
    (``model.predict_known``: an item model's trained rows). Returns float64 ``(entries,)``
    aligned with ``targets[users].data``."""
    users = np.arange(targets.shape[0]) if users is None else np.asarray(users, dtype=np.int64)
    users = users[np.diff(targets.indptr)[users] > 0]
    out = []
    for start in range(0, len(users), PREDICT_BATCH):
        batch = users[start : start + PREDICT_BATCH]
        given, wanted = inputs[batch], targets[batch]
        rows = np.repeat(np.arange(len(batch)), np.diff(wanted.indptr))
        arrays = (given.indptr.astype(np.int64), given.indices.astype(np.int64),
                  given.data.astype(np.float32))
        if known:
            dense = model.predict_known(batch, *arrays).double().cpu().numpy()
            out.append(dense[rows, wanted.indices])
        else:
            out.append(model.predict_at(
                *arrays, rows, wanted.indices.astype(np.int64)
            ).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def prediction_rmse(
    model: torch.nn.Module,
    inputs: sp.csr_matrix,
    targets: sp.csr_matrix,
    clip: tuple[float, float] | None,
    users: np.ndarray | None = None,
) -> float:
    """RMSE of ``model.predict_at`` at the entries of ``targets`` ``(n_users, n_movies)``, each
    user's row of ``inputs`` being what the model is given (clipped to ``clip``). ``users``
    restricts the rows scored (default: all with targets). NaN when nothing is scored."""
    predicted = validation_predictions(model, inputs, targets, users)
    if not len(predicted):
        return math.nan
    chosen = np.arange(targets.shape[0]) if users is None else np.asarray(users, np.int64)
    truth = targets[chosen].data.astype(np.float64)
    return clipped_rmse(predicted, truth, clip)


#: Blend weights α of the predicted rating tried in the ranking score.
RANKING_RATING_WEIGHTS: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)


#: Validation users the ranking head's λ and blend weight are chosen on (a seeded sample
#: when there are more).
RANKING_SELECTION_USERS = 10_000


def sample_user_rows(matrix: sp.csr_matrix, limit: int, seed: int) -> sp.csr_matrix:
    """``matrix`` with the rows of at most ``limit`` of its non-empty rows kept (a seeded
    sample), the others emptied; unchanged when it has no more than ``limit``."""
    users = np.flatnonzero(np.diff(matrix.indptr))
    if len(users) <= limit:
        return matrix
    keep = np.zeros(matrix.shape[0], dtype=bool)
    keep[np.random.default_rng(seed).choice(users, limit, replace=False)] = True
    return sp.csr_matrix(sp.diags(keep.astype(matrix.dtype)) @ matrix)


def ease_grid(train_ratings: int) -> tuple[float, ...]:
    """The EASE λ tried for a ranking head: the default grid, scaled up with the data above a
    million training ratings (the Gram matrix's entries grow with the number of users, so the
    λ that balances them does too: on the 100,000-user Netflix shape the unscaled grid's
    largest value won)."""
    factor = max(1.0, train_ratings / 1e6)
    return tuple(round(lam * factor) for lam in DEFAULT_EASE_REGULARISATION_GRID)


def ranking_seconds(train_ratings: int, n_movies: int, n_users: int,
                    choose_lambda: bool = True) -> float:
    """Expected seconds of :func:`choose_ranking` plus the head's final fit on 2 cores: a
    Gram matrix, then a Cholesky inverse (``n_movies³``) for each λ tried, and scoring the
    sampled validation users (their share of ``ratings × n_movies``). Constants measured on
    the generated Netflix shapes (docs/results.md); a time budget keeps this much back."""
    fits = (len(DEFAULT_EASE_REGULARISATION_GRID) if choose_lambda else 1) + 2
    sampled = min(1.0, RANKING_SELECTION_USERS / max(n_users, 1))
    return (fits * (3e-11 * float(n_movies) ** 3
                    + 3e-10 * sampled * train_ratings * n_movies)
            + 2e-8 * train_ratings * n_movies ** 0.5 + 1.0)


def budgeted_ranking(
    config: TrainConfig, selected: torch.nn.Module, train: sp.csr_matrix,
    validation: sp.csr_matrix, relevance_threshold: float, *, n_users: int,
    deadline: Deadline, report: BudgetReport | None, callback: Callback | None,
) -> tuple[float, float, dict] | None:
    """:func:`choose_ranking` when the config asks for a ranking head, there are validation
    ratings and the deadline leaves time for it (else ``None``, the skip said in ``report``);
    announces the stage to ``callback``."""
    if config.ranking != "ease" or validation.nnz == 0:
        return None
    cost = ranking_seconds(int(train.nnz), train.shape[1], n_users,
                           choose_lambda=not config.ease_regularisation)
    if not deadline.allows(cost * 0.5):
        report.skipped.append("the EASE ranking head (no time left to choose it)")
        return None
    if callback is not None:
        callback(StageStarted("ranking head", "EASE λ and blend weight on validation"))
    return choose_ranking(config, selected, train, validation, relevance_threshold)


def choose_ranking(
    config: TrainConfig,
    selected: torch.nn.Module,
    train: sp.csr_matrix,
    validation: sp.csr_matrix,
    relevance_threshold: float,
) -> tuple[float, float, dict]:
    """Choose the ranking head's EASE λ and blend weight α on the validation split.

    Models are fitted on ``train`` only and ``selected`` must predict from training data only
    (an item model prepared with training-only codes): EASE's λ by NDCG@10 of EASE alone
    (unless ``config.ease_regularisation``), then α by NDCG@10 of ``EASE + α · rating``
    (unless ``config.ranking_rating_weight ≥ 0``; every α scored in one pass over the users).
    On large data the choice is made on a seeded sample of :data:`RANKING_SELECTION_USERS`
    validation users (every user on MovieLens-sized data): NDCG@10 over thousands of users
    already separates the candidates, and scoring every user for each of them would cost more
    than training. Returns ``(λ, α, notes)``.
    """
    notes: dict = {}
    validation = sample_user_rows(validation, RANKING_SELECTION_USERS, seed=config.split_seed)
    relevant = relevant_entries(validation, relevance_threshold)
    lam = config.ease_regularisation
    if not lam:
        lam, grid = EASE.select_regularisation(
            train, validation, ease_grid(int(train.nnz)),
            relevance_threshold=relevance_threshold,
        )
        notes["ease_validation_ndcg"] = grid
    alpha = config.ranking_rating_weight
    if alpha < 0:
        ease = EASE(lam).fit(train)
        weights = RANKING_RATING_WEIGHTS
        accumulators = [RankingAccumulator(k=10) for _ in weights]
        users = users_with_ratings(relevant)
        for start in range(0, len(users), PREDICT_BATCH):
            batch = users[start : start + PREDICT_BATCH]
            given = train[batch]
            arrays = csr_arrays(given)
            implicit = ease.predict_dense(*arrays).numpy()
            ratings = selected.predict_dense(*arrays).float().cpu().numpy()
            for a, accumulator in zip(weights, accumulators):
                top = top_k_items(implicit + a * ratings if a else implicit, 10, given)
                accumulator.update_from_items(top, relevant[batch])
        scores = {a: acc.ndcg for a, acc in zip(weights, accumulators)}
        alpha = max(scores, key=lambda a: (scores[a], -a))
        notes["blend_validation_ndcg"] = scores
    notes.update({"ease_regularisation": lam, "rating_weight": alpha})
    return lam, alpha, notes


def with_ranking(
    model: torch.nn.Module, known: sp.csr_matrix, lam: float, alpha: float
) -> RankedModel:
    """``model`` with an EASE ranking head (λ) fitted on ``known`` ratings, blend weight α."""
    return RankedModel(model, EASE(lam).fit(known).weights, alpha)
