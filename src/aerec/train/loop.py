"""The one run loop: every model family trains through it.

:func:`run_family` owns what every run shares — the run directory, the epoch loop with early
stopping on the validation split and the time budget, checkpoints, resuming, and the end of the
run (the family's own choices, the EASE ranking head, the refit on training + validation
ratings) — and returns the :class:`TrainResult`. A family (:class:`Family`) supplies only its
mechanics: ``train_epoch`` / ``validate`` for one epoch (a pass of the optimiser, a Gibbs
sweep, …), ``snapshot`` / ``model`` for the state worth keeping and the model it makes,
``finalize`` for its end-of-run choices and ``refit``. Families are attached to their model
kinds in :mod:`aerec.train.families`; this module never asks which kind it is running.

Run directory layout::

    config.toml          the resolved TrainConfig
    metrics.csv          epoch, train_loss, train_rmse, val_loss, val_rmse, seconds
    learning_curve.png   loss and RMSE against epoch
    best.pt              checkpoint of the epoch with the lowest validation RMSE — or, with
                         ``refit``, of that recipe retrained on training + validation ratings
    selected.pt          (``refit`` or a ranking head) the selected model, training data only
    last.pt              checkpoint of the latest epoch, with the family's state (resumable
                         families) — else a copy of best.pt written when the run ends
    members/             (ensembles only) one run directory per member

Every file is written atomically (temporary file, then ``os.replace``). A resumable family's
files are written at the end of each epoch (the plot at the end of the run), so a run killed
mid-epoch loses only that epoch and ``train(..., resume=True)`` continues it bit-for-bit; the
others write their run directory when the run ends, so an interrupted run leaves nothing
half-written and starts over.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from aerec.checkpoint import TrainingStats, build_payload, read_payload, save_checkpoint
from aerec.config import TrainConfig
from aerec.data.store import PreparedDataset
from aerec.jsonable import plain as _plain_values
from aerec.model.base import RatingModel
from aerec.train.batching import union_rows
from aerec.train.budget import BudgetReport, Deadline, EpochClock
from aerec.train.distributed import ALONE, Ranks
from aerec.train.errors import TrainingDiverged
from aerec.train.events import Callback, EpochFinished, RunFinished, RunStarted, StageStarted
from aerec.train.finish import budgeted_ranking, ranking_seconds, with_ranking
from aerec.train.metrics_log import (
    EpochMetrics,
    plot_learning_curve,
    reference_rmse,
    write_metrics_csv,
)

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.csv"
CURVE_FILE = "learning_curve.png"
BEST_FILE = "best.pt"
LAST_FILE = "last.pt"
SELECTED_FILE = "selected.pt"


@dataclass
class TrainResult:
    """What a run achieved and where its files are.

    ``best_*`` are the lowest values of each metric over the epochs that could be selected
    (as the published README reports them; a Bayesian chain's burn-in sweeps cannot be);
    ``best_epoch`` is the epoch with the lowest validation RMSE (saved as ``best.pt``).
    Losses are masked MSE of raw outputs; RMSEs use outputs clipped to the scale.
    """

    run_dir: Path
    config: TrainConfig
    best_epoch: int
    epochs_completed: int
    best_train_loss: float
    best_train_rmse: float
    best_val_loss: float
    best_val_rmse: float
    #: Validation RMSE of predicting the training mean for everything (the floor to beat).
    baseline_val_rmse: float
    #: Wall time of this invocation (resumed epochs not included).
    seconds: float
    stopped_early: bool
    warnings: list[str]
    history: list[EpochMetrics]
    batches_per_epoch: int
    config_path: Path
    metrics_path: Path
    curve_path: Path
    best_checkpoint: Path
    last_checkpoint: Path
    #: With ``refit``: the selected (training-only) model; else the same as ``best_checkpoint``.
    selected_checkpoint: Path | None = None
    #: What the end of the run decided: ``fold_in`` (scale, validation RMSEs), ``refit``, …
    notes: dict = field(default_factory=dict)


@dataclass
class RunContext:
    """What one run works on: its configuration, data, split, directory and listeners."""

    config: TrainConfig
    dataset: PreparedDataset
    splits: Any
    dataset_info: dict
    out_dir: Path
    callback: Callback | None
    device: torch.device
    deadline: Deadline
    start_time: float
    #: ``train(dataset, out_dir, config, *, resume, callback, deadline)`` — a whole run, for
    #: families made of runs (an ensemble's members).
    train_run: Callable[..., TrainResult] | None = None
    #: This process's place in a data-parallel job (:mod:`aerec.train.distributed`): only
    #: the writer (rank 0) writes files; the others wait for it before reading them.
    ranks: Ranks = ALONE

    @property
    def writes(self) -> bool:
        return self.ranks.is_writer

    @property
    def clip(self) -> tuple[float, float]:
        scale = self.dataset.scale
        return (scale.minimum, scale.maximum)

    @property
    def has_validation(self) -> bool:
        return self.splits.validation.nnz > 0

    @cached_property
    def known(self) -> sp.csr_matrix:
        """Every non-test rating (training + validation): what a refit trains on, an item
        model's movie codes and the ranking head are computed from."""
        return union_rows(self.splits.train, self.splits.validation)

    @cached_property
    def stats(self) -> TrainingStats:
        return TrainingStats.from_matrix(self.splits.train)

    def path(self, name: str) -> Path:
        return self.out_dir / name

    def announce(self, event: Any) -> None:
        if self.callback is not None:
            self.callback(event)

    def payload(self, kind: str, model: RatingModel, *, epoch: int, history: list[dict],
                best: dict, stats: TrainingStats | None = None,
                trainer_state: dict | None = None) -> dict:
        """A checkpoint payload of ``model`` with this run's ids, titles, scale and split."""
        ds = self.dataset
        return build_payload(
            kind=kind, model=model, config=self.config, epoch=epoch, history=history,
            best=best, dataset_info=self.dataset_info, user_ids=ds.user_ids,
            movie_ids=ds.movie_ids, titles=ds.titles, years=ds.years, scale=ds.scale,
            stats=stats or self.stats, split=self.splits.params, trainer_state=trainer_state,
        )

    def ranking_reserve(self) -> float:
        """Seconds a time budget keeps back for the ranking head (0 without one)."""
        if self.config.ranking != "ease" or not self.has_validation or not self.deadline.limited:
            return 0.0
        return ranking_seconds(int(self.splits.train.nnz), self.dataset.n_movies,
                               self.dataset.n_users,
                               choose_lambda=not self.config.ease_regularisation)


@dataclass
class Refit:
    """What a family's refit produced."""

    model: RatingModel
    #: Epochs (sweeps) actually trained, and one line for the budget report.
    epochs: int
    summary: str
    out_of_time: bool = False


class Family:
    """A model family's trainer, as the run loop drives it, with the defaults of its hooks.

    Epoch-wise families (``epoch_wise = True``) are stepped by the loop: ``train_epoch`` then
    ``validate``; ``end_epoch`` says whether the epoch may be selected; ``snapshot`` keeps
    the selected epoch's state and ``model(snapshot)`` turns it into the model. A family that
    is not epoch-wise (an ensemble of complete runs) trains in ``train_all`` and hands the
    loop its history and selected state. Every family then goes through the same end of run
    (:func:`_finish`): ``finalize`` (its own choices on validation), the ranking head,
    ``prepare_serving`` and, with ``refit``, ``refit``.
    """

    #: Stepped epoch by epoch by the loop (else :meth:`train_all`).
    epoch_wise: bool = True
    #: Writes last.pt with its state after every epoch, so a killed run resumes bit-for-bit
    #: (else the run directory is written when the run ends and a finished run is reported as
    #: it stands when resumed).
    resumable: bool = True
    #: Every epoch can be selected: ``best_*`` are then the lowest values over all epochs
    #: (else the selected epoch's).
    selects_every_epoch: bool = True
    #: Has a refit of its own (else ``refit`` in the config means nothing to it).
    refits: bool = True
    #: Trains data-parallel across the ranks of a ``torchrun`` job.
    distributed: bool = False
    #: Epochs completed, epochs planned, steps per epoch, rows trained on, learning rate.
    epoch: int = 0
    total_epochs: int = 0
    batches_per_epoch: int = 1
    train_rows: int = 0
    lr: float = math.nan
    #: What an epoch is called in reports ("epochs", "sweeps").
    unit: str = "epochs"

    @staticmethod
    def estimate_memory(config: TrainConfig, n_users: int, n_movies: int,
                        n_ratings: int) -> Any:
        """The memory training ``config`` needs (a :class:`~aerec.train.memory.MemoryEstimate`),
        checked before anything is allocated."""
        raise NotImplementedError

    def always_finish(self, ctx: RunContext) -> bool:
        """Whether the end-of-run stage runs even without a refit or a ranking head."""
        return False

    # ------------------------------------------------------------------ epochs
    def train_epoch(self) -> tuple[float, float]:
        """One epoch: ``(train_loss, train_rmse)``."""
        raise NotImplementedError

    def validate(self) -> tuple[float, float]:
        """``(val_loss, val_rmse)`` of the current state (NaN without validation ratings)."""
        raise NotImplementedError

    def before_epoch(self, clock: EpochClock) -> None:
        """Called before each epoch with the run's clock (to plan from the time left)."""

    def end_epoch(self, metrics: EpochMetrics) -> bool:
        """After an epoch: True when it may be selected."""
        return True

    def select_without_validation(self, metrics: EpochMetrics,
                                  best: EpochMetrics | None) -> bool:
        """Without validation ratings: whether ``metrics`` replaces the selected ``best``."""
        return best is None or metrics.train_loss < best.train_loss

    def snapshot(self) -> Any:
        """What to keep of the current state if this epoch is selected."""
        raise NotImplementedError

    def model(self, snapshot: Any) -> RatingModel:
        """The model of a kept ``snapshot`` (training data only)."""
        raise NotImplementedError

    def current_model(self) -> RatingModel:
        """The model as it is now (for last.pt)."""
        raise NotImplementedError

    def model_from_payload(self, payload: dict) -> RatingModel:
        """The selected model back from its checkpoint payload (resumable families)."""
        raise NotImplementedError

    def checkpoint_model(self, model: RatingModel) -> RatingModel:
        """``model`` made ready to be saved (e.g. an item model's codes from all non-test
        ratings)."""
        return model

    def state_dict(self) -> dict:
        """The trainer's state for last.pt (resumable families)."""
        return {}

    def load_state_dict(self, payload: dict) -> None:
        """Restore a last.pt payload's model and trainer state (resumable families)."""

    def train_all(self, ctx: RunContext, report: BudgetReport | None) -> tuple[list, Any]:
        """Train everything (families that are not epoch-wise): ``(history, snapshot)``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ end of the run
    def finalize(self, selected: RatingModel) -> dict:
        """The family's own choices on the validation split for the selected model; notes."""
        return {}

    def prepare_serving(self, selected: RatingModel) -> None:
        """Ready the selected model to serve from all non-test ratings (after the choices
        that needed training-only state)."""

    def serving_model(self, selected: RatingModel) -> tuple[RatingModel, bool]:
        """The model to serve when there is no refit, and whether it was trained on every
        non-test rating (the selected model itself, trained on the training split, by
        default)."""
        return selected, False

    def refit_cost(self, epochs: int, history: list[EpochMetrics],
                   ranking_fit: float) -> tuple[float, str]:
        """Expected seconds of :meth:`refit`, and what the budget report says if skipped."""
        return 0.0, ""

    def refit_detail(self, epochs: int) -> str:
        return f"{epochs} {self.unit} on training + validation ratings"

    def refit(self, epochs: int, history: list[EpochMetrics], deadline: Deadline) -> Refit:
        raise NotImplementedError

    # ------------------------------------------------------------------ reporting
    def best_extras(self, history: list[EpochMetrics]) -> dict:
        """Extra entries of the checkpoint's ``best`` dict."""
        return {}

    def saved_history(self, saved: dict) -> list[dict]:
        """Every epoch's metrics from a finished run's last.pt."""
        return list(saved["history"])

    def trained_summary(self, history: list[EpochMetrics], out_of_time: bool) -> str:
        """One line for the budget report."""
        return (f"{self.epoch} of {self.total_epochs} {self.unit}"
                + (" (the budget ended training)" if out_of_time else ""))

    def warnings(self, history: list[EpochMetrics], baseline_val_rmse: float,
                 stopped_early: bool, patience: int) -> list[str]:
        return []

    def write_outputs(self, ctx: RunContext, history: list[EpochMetrics],
                      best_epoch: int | None = None) -> None:
        """Files written when the run ends (families that do not write them every epoch);
        ``best_epoch`` is the selected epoch."""
        if not (self.epoch_wise and self.resumable):
            write_metrics_csv(ctx.path(METRICS_FILE), history)
            plot_learning_curve(
                ctx.path(CURVE_FILE), history, title=ctx.config.describe(),
                best_epoch=best_epoch,
                baselines=reference_rmse(ctx.splits.train, ctx.splits.validation, ctx.clip),
            )

    def result(self, ctx: RunContext, result: TrainResult) -> TrainResult:
        """The run's result, as the family reports it (unchanged by default)."""
        return result


def best_index(history: list[EpochMetrics]) -> int:
    """Index into ``history`` of the best epoch: lowest validation RMSE, or lowest training
    loss when there is no validation data."""
    key = "val_rmse" if any(math.isfinite(m.val_rmse) for m in history) else "train_loss"
    values = [getattr(m, key) for m in history]
    return int(np.nanargmin(values))


def lowest(values: list[float]) -> float:
    """The smallest finite value, NaN when there is none."""
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else math.nan


def baseline_rmse(splits: Any, stats: TrainingStats) -> float:
    """Validation RMSE of predicting the training mean for every rating (NaN without any)."""
    val = splits.validation.data.astype(np.float64)
    return float(np.sqrt(np.mean((val - stats.global_mean) ** 2))) if len(val) else math.nan


@dataclass
class _Selection:
    """The loop's record of the selected epoch."""

    index: int | None = None
    snapshot: Any = None
    pending: dict | None = None  # a selected epoch not yet written (checkpoint_seconds > 0)
    bad_epochs: int = 0


def _checkpointed(family: Family) -> bool:
    """Whether the family writes best.pt / last.pt during its epochs."""
    return family.epoch_wise and family.resumable


def run_family(family: Family, ctx: RunContext, saved: dict | None = None) -> TrainResult:
    """Train ``family`` on ``ctx`` and write its run directory; see the module docstring.

    ``saved`` is the ``last.pt`` payload of the run being resumed (``None`` for a new run).
    """
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    if saved is not None and not family.resumable:  # a finished run: report it as it stands
        return _finished(family, ctx, saved)
    if ctx.writes:
        ctx.config.save_toml(ctx.path(CONFIG_FILE))
    report = BudgetReport(ctx.config.time_budget) if ctx.deadline.limited else None
    selection = _Selection()
    out_of_time = False
    if family.epoch_wise:
        history, out_of_time = _epochs(family, ctx, saved, selection, report)
    else:
        history, selection.snapshot = family.train_all(ctx, report)
        selection.index = len(history) - 1
    stopped_early = (family.epoch_wise and _patience_hit(ctx, selection)
                     and family.epoch < family.total_epochs)
    notes: dict = {}
    wanted = ctx.config.refit or ctx.config.ranking != "none"
    # a family that does not write checkpoints every epoch writes them here
    if history and (family.always_finish(ctx) or not _checkpointed(family)
                    or (wanted and ctx.has_validation)):
        notes = _finish(family, ctx, history, selection, report)
    if report is not None:
        report.seconds_used = time.perf_counter() - ctx.start_time
        notes["budget"] = report.to_dict()
    if ctx.writes:
        family.write_outputs(ctx, history, history[selection.index].epoch
                             if history and selection.index is not None else None)
    ctx.ranks.barrier()
    return _result(family, ctx, history, selection, stopped_early, notes)


def _patience_hit(ctx: RunContext, selection: _Selection) -> bool:
    patience = ctx.config.patience if ctx.has_validation else 0
    return patience > 0 and selection.bad_epochs >= patience


def _epochs(family: Family, ctx: RunContext, saved: dict | None, selection: _Selection,
            report: BudgetReport | None) -> tuple[list[EpochMetrics], bool]:
    """The epoch loop: train, validate, select, stop early, save; within the budget.
    Returns ``(history, out_of_time)``; ``selection`` is updated in place."""
    config = ctx.config
    history: list[EpochMetrics] = []
    if saved is not None:
        family.load_state_dict(saved)
        history = [EpochMetrics.from_dict(h) for h in saved["history"]]
        selection.bad_epochs = int(saved["best"].get("bad_epochs", 0))
        if history:  # the epoch the run had selected (only eligible epochs are)
            selected = int(saved["best"].get("epoch", 0))
            selection.index = (selected - 1 if 1 <= selected <= len(history)
                               else best_index(history))
    best_path, last_path = ctx.path(BEST_FILE), ctx.path(LAST_FILE)
    checkpointed = _checkpointed(family)
    # the in-memory selected model starts as the current one (a resumed run's best.pt is
    # already on disk and is rewritten only when a later epoch improves on it)
    if checkpointed:
        selection.snapshot = family.snapshot()
    ctx.announce(RunStarted(
        ctx.out_dir, config, family.epoch + 1, family.total_epochs, family.batches_per_epoch,
        family.train_rows, int(ctx.splits.train.nnz), int(ctx.splits.validation.nnz),
        tuple(history),
    ))

    def selected_epoch() -> int:
        return history[selection.index].epoch if selection.index is not None else family.epoch

    def best_dict() -> dict:
        i = selection.index if selection.index is not None else len(history) - 1
        return {**history[i].to_dict(), "bad_epochs": selection.bad_epochs}

    def write(kind: str, best: dict) -> None:
        if not ctx.writes:
            return
        if kind == "best":
            model = family.checkpoint_model(family.model(selection.snapshot))
            epoch, state = selected_epoch(), None
        else:
            model, epoch = family.checkpoint_model(family.current_model()), family.epoch
            state = family.state_dict()
        save_checkpoint(ctx.payload(
            kind, model, epoch=epoch, history=[m.to_dict() for m in history[:epoch]],
            best=best, trainer_state=state,
        ), best_path if kind == "best" else last_path)

    # under a budget: with a refit the selection run gets half of the time (the refit needs
    # about as long), and the ranking head's expected cost is kept back
    refitting = config.refit and ctx.has_validation and family.refits
    clock = EpochClock(ctx.deadline.share(0.5 if refitting else 1.0, ctx.ranking_reserve()))
    out_of_time = False
    last_saved = time.perf_counter()
    try:
        while family.epoch < family.total_epochs and not _patience_hit(ctx, selection):
            if not clock.next_fits():
                out_of_time = True
                break
            family.before_epoch(clock)
            epoch_start = time.perf_counter()
            lr = family.lr
            try:
                train_loss, train_rmse = family.train_epoch()
                val_loss, val_rmse = family.validate()
            except TrainingDiverged as exc:
                kept = read_payload(last_path)["epoch"] if last_path.is_file() else None
                raise exc.with_checkpoint(last_path if kept else None, kept) from None
            metrics = EpochMetrics(family.epoch, train_loss, train_rmse, val_loss, val_rmse,
                                   time.perf_counter() - epoch_start, lr)
            history.append(metrics)
            eligible = family.end_epoch(metrics)
            improved = eligible and _improves(family, ctx, metrics, history, selection)
            if improved:
                selection.index, selection.bad_epochs = len(history) - 1, 0
                selection.snapshot = family.snapshot()
                selection.pending = best_dict()
            elif eligible:
                selection.bad_epochs += 1
            if checkpointed:
                now = time.perf_counter()
                finished = family.epoch >= family.total_epochs or _patience_hit(ctx, selection)
                if finished or now - last_saved >= config.checkpoint_seconds:
                    # best.pt first: a crash in between leaves last.pt one save behind
                    if selection.pending is not None:
                        write("best", selection.pending)
                        selection.pending = None
                    write("last", best_dict())
                    if ctx.writes:
                        write_metrics_csv(ctx.path(METRICS_FILE), history)
                    last_saved = now
            clock.record(time.perf_counter() - epoch_start)
            ctx.announce(EpochFinished(metrics, selected_epoch(), improved))
    finally:
        if history and checkpointed and ctx.writes:
            plot_learning_curve(
                ctx.path(CURVE_FILE), history, title=ctx.config.describe(),
                best_epoch=(history[selection.index].epoch if selection.index is not None
                            else None),
                baselines=reference_rmse(ctx.splits.train, ctx.splits.validation, ctx.clip),
            )
    if selection.index is None and history:  # nothing could be selected: keep the last state
        selection.index, selection.snapshot = len(history) - 1, family.snapshot()
        if checkpointed:
            write("best", best_dict())
    if out_of_time and history and checkpointed:  # the budget ended it, perhaps between saves
        if selection.pending is not None:
            write("best", selection.pending)
        write("last", best_dict())
        if ctx.writes:
            write_metrics_csv(ctx.path(METRICS_FILE), history)
    if report is not None:
        report.trained.append(family.trained_summary(history, out_of_time))
    return history, out_of_time


def _improves(family: Family, ctx: RunContext, metrics: EpochMetrics,
              history: list[EpochMetrics], selection: _Selection) -> bool:
    """An eligible epoch improves on the selected one: a lower validation RMSE (ties keep the
    earlier epoch), or without validation ratings what the family selects by."""
    best = history[selection.index] if selection.index is not None else None
    if ctx.has_validation:
        if best is None:
            return not math.isnan(metrics.val_rmse)
        return metrics.val_rmse < best.val_rmse
    return family.select_without_validation(metrics, best)


def _finish(family: Family, ctx: RunContext, history: list[EpochMetrics],
            selection: _Selection, report: BudgetReport | None) -> dict:
    """The end of a run, every choice on the validation split: the family's own choices
    (``finalize``), the ranking head's λ and blend weight, then (``refit``) the selected recipe
    retrained on training + validation ratings. Writes ``best.pt`` (and ``selected.pt``; and
    ``last.pt`` for families that do not write it every epoch); returns notes on what was
    decided. Deterministic, so a resumed run repeats it identically."""
    config, deadline = ctx.config, ctx.deadline
    ctx.ranks.barrier()  # rank 0 has written the checkpoints the others read next
    if _checkpointed(family):  # the selected epoch's checkpoint is on disk
        best_path, selected_path = ctx.path(BEST_FILE), ctx.path(SELECTED_FILE)
        source = read_payload(best_path)
        if source["best"].get("finished") and selected_path.is_file():  # done before
            source = read_payload(selected_path)
        selected = family.model_from_payload(source)
        epoch, saved_history = int(source["epoch"]), list(source["history"])
        selected_best = {k: v for k, v in source["best"].items() if k != "finished"}
    else:
        selected = family.model(selection.snapshot)
        epoch = history[selection.index].epoch
        saved_history = [m.to_dict() for m in history[:epoch]]
        selected_best = {**history[selection.index].to_dict(),
                         "bad_epochs": selection.bad_epochs, **family.best_extras(history)}
    notes: dict = family.finalize(selected)
    ranking = budgeted_ranking(
        config, selected, ctx.splits.train, ctx.splits.validation,
        ctx.dataset.scale.relevance_threshold(), n_users=ctx.dataset.n_users,
        deadline=deadline, report=report, callback=ctx.callback,
    )
    if ranking is not None:
        *ranking, notes["ranking"] = ranking
    family.prepare_serving(selected)

    def save(kind: str, model: RatingModel, best: dict, stats: TrainingStats,
             name: str) -> dict:
        payload = ctx.payload(kind, model, epoch=epoch, history=saved_history, best=best,
                              stats=stats)
        if ctx.writes:
            save_checkpoint(payload, ctx.path(name))
        return payload

    selected_best.update(_plain(notes))
    stats = ctx.stats
    refitting = config.refit and ctx.has_validation and family.refits
    ranking_fit = ctx.ranking_reserve() * 0.25 if ranking is not None else 0.0
    if refitting:
        seconds, skipped = family.refit_cost(epoch, history, ranking_fit)
        if not deadline.allows(seconds):
            report.skipped.append(skipped)
            refitting = False
    if refitting or ranking is not None:
        save("selected", selected, selected_best, stats, SELECTED_FILE)
    if refitting:
        ctx.announce(StageStarted("refit", family.refit_detail(epoch)))
        done = family.refit(epoch, history, deadline.share(1.0, ranking_fit))
        final, stats = done.model, TrainingStats.from_matrix(ctx.known)
        notes["refit"] = {"epochs": done.epochs, "train_ratings": int(ctx.known.nnz)}
        if report is not None:
            report.trained.append(done.summary)
    else:
        final, on_known = family.serving_model(selected)
        if on_known:
            stats = TrainingStats.from_matrix(ctx.known)
    if ranking is not None:
        final = with_ranking(final, ctx.known, *ranking)
    if report is not None:
        report.seconds_used = time.perf_counter() - ctx.start_time
        notes["budget"] = report.to_dict()
    payload = save("best", final, {**selected_best, **_plain(notes), "finished": True}, stats,
                   BEST_FILE)
    if not _checkpointed(family) and ctx.writes:
        save_checkpoint({**payload, "kind": "last"}, ctx.path(LAST_FILE))
    return notes


def _finished(family: Family, ctx: RunContext, saved: dict) -> TrainResult:
    """The result of a run that already ended (families that are not resumable)."""
    history = [EpochMetrics.from_dict(h) for h in family.saved_history(saved)]
    selection = _Selection(index=int(saved["epoch"]) - 1,
                           bad_epochs=int(saved["best"].get("bad_epochs", 0)))
    family.epoch = len(history)
    notes = {k: v for k, v in saved["best"].items() if k in ("refit", "ranking", "budget")}
    return _result(family, ctx, history, selection, False, notes)


def _result(family: Family, ctx: RunContext, history: list[EpochMetrics],
            selection: _Selection, stopped_early: bool, notes: dict) -> TrainResult:
    best_i = selection.index if selection.index is not None else best_index(history)
    best = history[best_i]
    every = family.selects_every_epoch
    baseline = baseline_rmse(ctx.splits, ctx.stats)
    selected_path = ctx.path(SELECTED_FILE)
    result = family.result(ctx, TrainResult(
        run_dir=ctx.out_dir,
        config=ctx.config,
        best_epoch=best.epoch,
        epochs_completed=family.epoch,
        best_train_loss=lowest([m.train_loss for m in history]),
        best_train_rmse=lowest([m.train_rmse for m in history]),
        best_val_loss=lowest([m.val_loss for m in history]) if every else best.val_loss,
        best_val_rmse=lowest([m.val_rmse for m in history]) if every else best.val_rmse,
        baseline_val_rmse=baseline,
        seconds=time.perf_counter() - ctx.start_time,
        stopped_early=stopped_early,
        warnings=family.warnings(history, baseline, stopped_early, ctx.config.patience),
        history=history,
        batches_per_epoch=family.batches_per_epoch,
        config_path=ctx.path(CONFIG_FILE),
        metrics_path=ctx.path(METRICS_FILE),
        curve_path=ctx.path(CURVE_FILE),
        best_checkpoint=ctx.path(BEST_FILE),
        last_checkpoint=ctx.path(LAST_FILE),
        selected_checkpoint=(selected_path if selected_path.is_file()
                             else ctx.path(BEST_FILE)),
        notes=notes,
    ))
    ctx.announce(RunFinished(result))
    return result


def _plain(notes: dict) -> dict:
    """Notes as checkpoint-ready plain values (dict keys as strings; NaN kept)."""
    return _plain_values(notes, keep_non_finite=True)
