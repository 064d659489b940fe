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
import dataclasses
import io
import math
import re
import time
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from aerec.checkpoint import load_checkpoint
from aerec.config import PRESETS, ConfigError, TrainConfig, resolve_config, write_text_atomic
from aerec.metrics import clipped_rmse
from aerec.model.base import RatingModel
from aerec.model.ensemble import Ensemble
from aerec.train.budget import BudgetReport
from aerec.train.events import MemberStarted, StageStarted
from aerec.train.finish import validation_predictions
from aerec.train.loop import (
    BEST_FILE,
    CURVE_FILE,
    LAST_FILE,
    METRICS_FILE,
    Family,
    RunContext,
    TrainResult,
)
from aerec.train.memory import MemoryEstimate, estimate_memory
from aerec.train.metrics_log import EpochMetrics, plot_member_curves

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


class EnsembleFamily(Family):
    """An ensemble of complete member runs (``members = [...]``) for the run loop: not
    epoch-wise — :meth:`train_all` trains the members, then the weights are chosen on the
    validation split; the loop adds the ranking head and writes the run directory."""

    epoch_wise = False
    refits = False  # each member refits itself (``refit`` is shared with the members)
    batches_per_epoch = 0

    def __init__(self, ctx: RunContext) -> None:
        self.ctx, self.config = ctx, ctx.config
        self.results: list = []
        self.names: list[str] = []
        self.member_val: list[float] = []
        self.weights = np.zeros(0)
        self.fitted = False
        self.notes: dict = {}

    @staticmethod
    def estimate_memory(config: TrainConfig, n_users: int, n_movies: int,
                        n_ratings: int) -> MemoryEstimate:
        """The largest member's (members train one after another)."""
        estimates = [estimate_memory(member_config(name, config), n_users, n_movies, n_ratings)
                     for name in config.members]
        return max(estimates, key=lambda e: e.bytes)

    def always_finish(self, ctx: RunContext) -> bool:
        return True  # the ensemble's checkpoint is written at the end

    def train_all(self, ctx: RunContext, report: BudgetReport | None) -> tuple[list, list]:
        """Train every member (each gets an equal share of what is left under a budget),
        then fit the weights on the validation ratings. Returns ``([metrics], selected
        members)``: one row of metrics for the ensemble, and the members' selected models
        (training data only)."""
        config, splits, deadline = self.config, ctx.splits, ctx.deadline
        # under a budget each member gets an equal share of what is left when it starts,
        # after the ensemble's own ranking head is kept back
        reserve = ctx.ranking_reserve()
        for number, name in enumerate(config.members, start=1):
            run_dir = ctx.out_dir / MEMBERS_DIR / f"{number}-{_slug(name)}"
            left = len(config.members) - number + 1
            if self.results and not deadline.allows(reserve + 1.0):
                report.skipped.append(f"member {name} (no time left)")
                continue
            ctx.announce(MemberStarted(number, len(config.members), name, run_dir))
            result = ctx.train_run(
                ctx.dataset, run_dir, member_config(name, config),
                resume=(run_dir / LAST_FILE).is_file(), callback=ctx.callback,
                deadline=deadline.share(1.0 / left, reserve),
            )
            self.results.append(result)
            self.names.append(name)
            if report is not None:
                budget = result.notes.get("budget", {})
                report.trained += [f"{name}: {t}" for t in budget.get("trained", [])]
                report.skipped += [f"{name}: {t}" for t in budget.get("skipped", [])]
        selected = [load_checkpoint(r.selected_checkpoint).model.rating_model()
                    for r in self.results]
        for model in selected:  # item models: movie codes from training ratings only (honest)
            model.prepare_from_ratings(splits.train)
        self.notes = {"members": [str(r.run_dir) for r in self.results]}
        val_rmse = self._choose_weights(selected)
        seconds = time.perf_counter() - ctx.start_time
        return [EpochMetrics(1, math.nan, math.nan, val_rmse**2, val_rmse, seconds,
                             math.nan)], selected

    def _choose_weights(self, selected: list) -> float:
        """The members' weights (equal, or fitted on the validation ratings); the ensemble's
        validation RMSE (cross-fitted when fitted)."""
        config, splits, clip = self.config, self.ctx.splits, self.ctx.clip
        self.member_val = [math.nan] * len(selected)
        self.weights = np.full(len(selected), 1.0 / len(selected))
        self.fitted = config.ensemble_weights == "fitted" and self.ctx.has_validation
        if not self.ctx.has_validation:
            return math.nan
        self.ctx.announce(StageStarted("weights",
                                       f"{len(selected)} members on validation ratings"))
        truth = splits.validation.data.astype(np.float64)
        predictions = np.stack([  # known users by their trained rows, as the test is scored
            validation_predictions(m, splits.train, splits.validation, known=True)
            for m in selected
        ], axis=1)
        self.member_val = [clipped_rmse(p, truth, clip) for p in predictions.T]
        if not self.fitted:
            return clipped_rmse(predictions @ self.weights, truth, clip)
        self.weights, val_rmse, in_sample = fit_weights(
            predictions, truth, clip, seed=config.split_seed
        )
        self.notes["weights"] = {"fitted": [round(float(w), 4) for w in self.weights],
                                 "validation_rmse_in_sample": round(in_sample, 6)}
        return val_rmse

    def model(self, snapshot: list) -> RatingModel:
        return Ensemble(snapshot, self.weights, normalise=not self.fitted)

    def finalize(self, selected: RatingModel) -> dict:
        return dict(self.notes)

    def serving_model(self, selected: RatingModel) -> tuple[RatingModel, bool]:
        """The members' own final models (refitted when ``refit``), with the same weights."""
        final = Ensemble(
            [load_checkpoint(r.best_checkpoint).model.rating_model() for r in self.results],
            self.weights, normalise=not self.fitted,
        )
        return final, self.config.refit and self.ctx.has_validation

    def best_extras(self, history: list[EpochMetrics]) -> dict:
        return {"member_val_rmse": self.member_val}

    def write_outputs(self, ctx: RunContext, history: list[EpochMetrics],
                      best_epoch: int | None = None) -> None:
        # no metrics.csv of its own (an ensemble has no epochs): members.csv, each member's
        # metrics.csv, and one plot of the members' validation curves
        ctx.path(METRICS_FILE).unlink(missing_ok=True)
        _write_members(ctx.path(MEMBERS_FILE), self.names, self.results, self.member_val,
                       self.weights)
        plot_member_curves(ctx.path(CURVE_FILE),
                           {n: r.history for n, r in zip(self.names, self.results)},
                           title="members' validation RMSE")

    def result(self, ctx: RunContext, result: TrainResult) -> TrainResult:
        val_rmse = result.history[0].val_rmse
        return dataclasses.replace(
            result, best_epoch=1, epochs_completed=1, best_train_loss=math.nan,
            best_train_rmse=math.nan, best_val_loss=val_rmse**2, best_val_rmse=val_rmse,
            baseline_val_rmse=min((r.baseline_val_rmse for r in self.results),
                                  default=math.nan),
            stopped_early=False, warnings=[member_warning(n, w) for n, r in
                                           zip(self.names, self.results) for w in r.warnings],
            batches_per_epoch=0, metrics_path=ctx.path(MEMBERS_FILE),
            selected_checkpoint=ctx.path(BEST_FILE),
            notes={**result.notes, "member_summary": [
                {"name": n, "val_rmse": float(v), "weight": float(w), "best_epoch": r.best_epoch,
                 "epochs": r.epochs_completed, "seconds": r.seconds}
                for n, r, v, w in zip(self.names, self.results, self.member_val, self.weights)
            ]},
        )


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
    in_sample = clipped_rmse(predictions @ weights, truth, clip)
    return weights, clipped_rmse(crossed, truth, clip), in_sample


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


def member_warning(name: str, warning: str) -> str:
    """A member run's warning as the ensemble reports it: named, and with its ``--epochs N``
    advice made one the user can follow (an ensemble refuses ``--epochs``: each member keeps
    its preset's settings, so the advice is to train that member alone)."""
    advice = re.sub(r"--epochs (\d+)", rf"--preset {name} --epochs \1, trained alone", warning)
    return f"member {name}: {advice}"
