"""Training an ensemble: each member a complete run of its own, then their average.

A configuration with ``members = ["item", "user-centred", ...]`` (preset names or TOML files)
trains every member into ``RUN/members/<n>-<name>/`` — a normal run directory, with its own
early stopping on the validation split — using this configuration's split and execution
settings (and its ``refit``). The ensemble is the average of the members' ``best.pt`` models
(:class:`~aerec.model.ensemble.Ensemble`) — equally weighted, or (``ensemble_weights =
"fitted"``) weighted by non-negative least squares on the validation ratings (weights not
normalised, so their sum may also stretch the blend), in which case the
reported validation RMSE is cross-fitted (weights fitted on one half of the validation ratings
score the other, and vice versa), so it stays an honest estimate. Its validation RMSE is measured
with the members' *selected* models (trained on the training split only) through the
prediction API (item models with movie codes from training ratings only), so the figure is
honest even when members were refitted. Resuming an ensemble
resumes its unfinished members and skips the finished ones.
"""

from __future__ import annotations

import csv
import io
import math
import re
import time
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from aerec.config import PRESETS, ConfigError, TrainConfig, resolve_config, write_text_atomic
from aerec.model.ensemble import Ensemble
from aerec.train.batching import union_rows
from aerec.train.budget import BudgetReport, Deadline
from aerec.checkpoint import TrainingStats, build_payload, load_checkpoint, save_checkpoint
from aerec.train.events import Callback, MemberStarted, RunFinished, StageStarted
from aerec.train.finish import (
    budgeted_ranking,
    ranking_seconds,
    validation_predictions,
    with_ranking,
)
from aerec.train.metrics_log import EpochMetrics, plot_member_curves
from aerec.train.trainer import oriented

#: Settings an ensemble imposes on every member (the data split and how to run).
SHARED_FIELDS = (
    "split_protocol", "test_fraction", "validation_fraction", "holdout_fraction", "split_seed",
    "threads", "device", "refit",
)
MEMBERS_DIR = "members"
MEMBERS_FILE = "members.csv"


def member_config(name: str, parent: TrainConfig) -> TrainConfig:
    """The configuration of member ``name`` (a preset or a TOML file), with the parent's
    :data:`SHARED_FIELDS`."""
    if name in PRESETS:
        config = PRESETS[name]
    elif Path(name).is_file():
        config = resolve_config(path=name)
    else:
        raise ConfigError(
            f"ensemble member {name!r} is neither a preset ({', '.join(PRESETS)}) nor a file"
        )
    if config.members:
        raise ConfigError(f"ensemble member {name!r} is itself an ensemble")
    return config.replace(**{f: getattr(parent, f) for f in SHARED_FIELDS})


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name).stem if name.endswith(".toml") else name)


def train_ensemble(
    config: TrainConfig, ds, splits, dataset_info: dict, out_dir: Path, resume: bool,
    callback: Callback | None, start_time: float, deadline: Deadline | None = None,
):
    """Train every member, then write the ensemble's ``best.pt`` / ``last.pt`` (identical),
    ``config.toml``, ``members.csv`` and ``learning_curve.png`` (the members' validation
    curves). Returns a :class:`~aerec.train.run.TrainResult` whose validation figures are the
    ensemble's.

    Under a ``deadline`` each member gets an equal share of what is left when it starts
    (after the ranking head's expected cost is kept back); members that no longer fit are
    skipped and reported, and the ensemble is made of those that were trained."""
    from aerec.train.run import (
        BEST_FILE,
        CONFIG_FILE,
        CURVE_FILE,
        LAST_FILE,
        METRICS_FILE,
        TrainResult,
        train,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_toml(out_dir / CONFIG_FILE)
    scale = ds.scale
    clip = (scale.minimum, scale.maximum)
    deadline = deadline or Deadline()
    report = BudgetReport(config.time_budget) if deadline.limited else None
    # under a budget each member gets an equal share of what is left when it starts, after
    # the ensemble's own ranking head is kept back
    reserve = (ranking_seconds(int(splits.train.nnz), ds.n_movies, ds.n_users,
                                   choose_lambda=not config.ease_regularisation)
               if config.ranking == "ease" and deadline.limited else 0.0)
    results, names = [], []
    for number, name in enumerate(config.members, start=1):
        run_dir = out_dir / MEMBERS_DIR / f"{number}-{_slug(name)}"
        left = len(config.members) - number + 1
        if results and not deadline.allows(reserve + 1.0):
            report.skipped.append(f"member {name} (no time left)")
            continue
        if callback is not None:
            callback(MemberStarted(number, len(config.members), name, run_dir))
        result = train(
            ds, run_dir, member_config(name, config),
            resume=(run_dir / LAST_FILE).is_file(), callback=callback,
            deadline=deadline.share(1.0 / left, reserve),
        )
        results.append(result)
        names.append(name)
        if report is not None:
            budget = result.notes.get("budget", {})
            report.trained += [f"{name}: {t}" for t in budget.get("trained", [])]
            report.skipped += [f"{name}: {t}" for t in budget.get("skipped", [])]
    selected = [_rating_model(load_checkpoint(r.selected_checkpoint).model) for r in results]
    item_rows = None
    for model in selected:  # item models: movie codes from training ratings only (honest)
        if getattr(model, "orientation", "user") == "item":
            item_rows = oriented(splits.train, "item") if item_rows is None else item_rows
            model.prepare_inference(item_rows)
    has_validation = splits.validation.nnz > 0
    member_val, val_rmse = [math.nan] * len(selected), math.nan
    weights = np.full(len(selected), 1.0 / len(selected))
    fitted = config.ensemble_weights == "fitted" and has_validation
    notes: dict = {"members": [str(r.run_dir) for r in results]}
    if has_validation:
        if callback is not None:
            callback(StageStarted("weights", f"{len(selected)} members on validation ratings"))
        truth = splits.validation.data.astype(np.float64)
        predictions = np.stack([  # known users by their trained rows, as the test is scored
            validation_predictions(m, splits.train, splits.validation, known=True)
            for m in selected
        ], axis=1)
        member_val = [_rmse(p, truth, clip) for p in predictions.T]
        if fitted:
            weights, val_rmse, in_sample = fit_weights(
                predictions, truth, clip, seed=config.split_seed
            )
            notes["weights"] = {"fitted": [round(float(w), 4) for w in weights],
                                "validation_rmse_in_sample": round(in_sample, 6)}
        else:
            val_rmse = _rmse(predictions @ weights, truth, clip)
    selected_ensemble = Ensemble(selected, weights, normalise=not fitted)
    final = Ensemble(
        [_rating_model(load_checkpoint(r.best_checkpoint).model) for r in results], weights,
        normalise=not fitted,
    )
    refitted = config.refit and has_validation
    known = union_rows(splits.train, splits.validation)
    stats = TrainingStats.from_matrix(known if refitted else splits.train)
    ranking = budgeted_ranking(
        config, selected_ensemble, splits.train, splits.validation,
        scale.relevance_threshold(), n_users=ds.n_users, deadline=deadline, report=report,
        callback=callback,
    )
    if ranking is not None:
        lam, alpha, notes["ranking"] = ranking
        final = with_ranking(final, known, lam, alpha)
    seconds = time.perf_counter() - start_time
    if report is not None:
        report.seconds_used = seconds
        notes["budget"] = report.to_dict()
    metrics = EpochMetrics(1, math.nan, math.nan, val_rmse**2, val_rmse, seconds, math.nan)
    best = {**metrics.to_dict(), "bad_epochs": 0, "member_val_rmse": member_val,
            **_plain(notes)}
    payload = build_payload(
        kind="best", model=final, config=config, epoch=1, history=[metrics.to_dict()],
        best=best, dataset_info=dataset_info, user_ids=ds.user_ids, movie_ids=ds.movie_ids,
        titles=ds.titles, years=ds.years, scale=scale, stats=stats, split=splits.params,
    )
    save_checkpoint(payload, out_dir / BEST_FILE)
    save_checkpoint({**payload, "kind": "last"}, out_dir / LAST_FILE)
    # no metrics.csv of its own (an ensemble has no epochs): members.csv, each member's
    # metrics.csv, and one plot of the members' validation curves
    (out_dir / METRICS_FILE).unlink(missing_ok=True)
    _write_members(out_dir / MEMBERS_FILE, names, results, member_val, weights)
    plot_member_curves(out_dir / CURVE_FILE, {n: r.history for n, r in zip(names, results)},
                       title="members' validation RMSE")
    result = TrainResult(
        run_dir=out_dir, config=config, best_epoch=1, epochs_completed=1,
        best_train_loss=math.nan, best_train_rmse=math.nan, best_val_loss=val_rmse**2,
        best_val_rmse=val_rmse,
        baseline_val_rmse=min((r.baseline_val_rmse for r in results), default=math.nan),
        seconds=seconds, stopped_early=False,
        warnings=[w for r in results for w in r.warnings], history=[metrics],
        batches_per_epoch=0, config_path=out_dir / CONFIG_FILE,
        metrics_path=out_dir / MEMBERS_FILE, curve_path=out_dir / CURVE_FILE,
        best_checkpoint=out_dir / BEST_FILE, last_checkpoint=out_dir / LAST_FILE,
        selected_checkpoint=out_dir / BEST_FILE,
        notes={**notes, "member_summary": [
            {"name": n, "val_rmse": float(v), "weight": float(w), "best_epoch": r.best_epoch,
             "epochs": r.epochs_completed, "seconds": r.seconds}
            for n, r, v, w in zip(names, results, member_val, weights)
        ]},
    )
    if callback is not None:
        callback(RunFinished(result))
    return result


def fit_weights(
    predictions: np.ndarray, truth: np.ndarray, clip: tuple[float, float], seed: int = 0
) -> tuple[np.ndarray, float, float]:
    """Non-negative member weights that best fit ``truth`` from the members' ``predictions``
    ``(ratings, members)`` by least squares, not normalised: a sum a little above 1 also
    stretches the blend, which averaging shrinks towards the middle. Returns ``(weights,
    cross-fitted RMSE, in-sample RMSE)``: the cross-fitted figure scores each half of the
    ratings (a seeded random halving) with weights fitted on the other half."""
    n, k = predictions.shape

    def fit(rows: np.ndarray) -> np.ndarray:
        w, _ = nnls(predictions[rows], truth[rows])
        return w if w.sum() > 0 else np.full(k, 1.0 / k)

    weights = fit(np.arange(n))
    order = np.random.default_rng(seed).permutation(n)
    halves = (order[: n // 2], order[n // 2 :])
    crossed = np.empty(n)
    for fit_rows, score_rows in (halves, halves[::-1]):
        if len(fit_rows) and len(score_rows):
            crossed[score_rows] = predictions[score_rows] @ fit(fit_rows)
        else:
            crossed[score_rows] = predictions[score_rows] @ weights
    return weights, _rmse(crossed, truth, clip), _rmse(predictions @ weights, truth, clip)


def _rmse(predicted: np.ndarray, truth: np.ndarray, clip: tuple[float, float]) -> float:
    return float(np.sqrt(np.mean((np.clip(predicted, *clip) - truth) ** 2)))


def _rating_model(model):
    """A member's rating model (a member's own ranking head is not used by the ensemble)."""
    return getattr(model, "base", model) if hasattr(model, "rank_dense") else model


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _write_members(path: Path, names, results, member_val: list[float], weights) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["member", "run_dir", "best_epoch", "epochs", "val_rmse", "weight", "seconds"]
    )
    for name, r, val, w in zip(names, results, member_val, weights):
        writer.writerow([name, r.run_dir, r.best_epoch, r.epochs_completed, f"{val:.6f}",
                         f"{float(w):.4f}", f"{r.seconds:.1f}"])
    write_text_atomic(path, buffer.getvalue())
