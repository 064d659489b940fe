"""``train()``: a whole training run into a run directory, resumable.

Run directory layout::

    config.toml          the resolved TrainConfig
    metrics.csv          epoch, train_loss, train_rmse, val_loss, val_rmse, seconds
    learning_curve.png   loss and RMSE against epoch
    best.pt              checkpoint of the epoch with the lowest validation RMSE — or, with
                         ``refit``, of that recipe retrained on training + validation ratings
    selected.pt          (``refit`` only) the selected epoch's model, trained on training only
    last.pt              checkpoint of the latest epoch, with optimiser and RNG states
    members/             (ensembles only) one run directory per member

An item-based model's checkpoints also hold the movie codes it scores users with, computed from
the training + validation ratings (never the test split); at the end of the run its fold-in
penalty is chosen on the validation split (:mod:`aerec.train.finish`).

Every file is written atomically (temporary file, then ``os.replace``) at the end of each epoch
(the plot at the end of the run), so a run killed mid-epoch loses only that epoch and
``train(..., resume=True)`` continues it bit-for-bit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aerec.checkpoint import (
    TrainingStats,
    build_payload,
    manifest_json,
    read_payload,
    save_checkpoint,
)
from aerec.config import TrainConfig
from aerec.data.splits import make_splits
from aerec.data.store import PreparedDataset, load_dataset
from aerec.system import available_cores
from aerec.train.batching import union_rows
from aerec.train.budget import BudgetReport, Deadline, EpochClock
from aerec.train.diagnostics import training_warnings
from aerec.train.errors import IncompatibleResume, TrainingDiverged
from aerec.train.events import Callback, EpochFinished, RunFinished, RunStarted, StageStarted
from aerec.train.finish import (
    base_fold_in_l2,
    budgeted_ranking,
    ranking_seconds,
    refit,
    select_fold_in_scale,
    with_ranking,
)
from aerec.train.memory import check_memory
from aerec.train.metrics_log import EpochMetrics, plot_learning_curve, write_metrics_csv
from aerec.train.trainer import Trainer, build_model, oriented, resolve_device

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.csv"
CURVE_FILE = "learning_curve.png"
BEST_FILE = "best.pt"
LAST_FILE = "last.pt"
SELECTED_FILE = "selected.pt"

#: Settings that may change when a run is resumed; all others must match the saved run.
RESUMABLE_FIELDS = frozenset({
    "epochs", "steps", "patience", "threads", "device", "divergence_factor", "refit",
    "fold_in_scale", "checkpoint_seconds", "time_budget",
})


@dataclass
class TrainResult:
    """What a run achieved and where its files are.

    ``best_*`` are the lowest values over all epochs of each metric (as the published README
    reports them); ``best_epoch`` is the epoch with the lowest validation RMSE (saved as
    ``best.pt``). Losses are masked MSE of raw outputs; RMSEs use outputs clipped to the scale.
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
    #: What the end of the run decided: ``fold_in`` (scale, validation RMSEs), ``refit``.
    notes: dict = field(default_factory=dict)


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The configuration saved in a run directory's ``last.pt`` (to resume with changes)."""
    path = Path(run_dir) / LAST_FILE
    return TrainConfig.from_dict(read_payload(path)["config"], source=str(path))


def _check_resumable(saved: TrainConfig, wanted: TrainConfig, path: Path) -> None:
    changed = [
        f"{k} ({saved_v!r} → {wanted.to_dict()[k]!r})"
        for k, saved_v in saved.to_dict().items()
        if k not in RESUMABLE_FIELDS and wanted.to_dict()[k] != saved_v
    ]
    if changed:
        raise IncompatibleResume(
            f"{path}: cannot resume with a different configuration: {', '.join(changed)}; only "
            f"{', '.join(sorted(RESUMABLE_FIELDS))} may change (start a new run for the rest)"
        )


def best_index(history: list[EpochMetrics]) -> int:
    """Index into ``history`` of the best epoch: lowest validation RMSE, or lowest training
    loss when there is no validation data."""
    key = "val_rmse" if any(math.isfinite(m.val_rmse) for m in history) else "train_loss"
    values = [getattr(m, key) for m in history]
    return int(np.nanargmin(values))


def _min(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else math.nan


def train(
    dataset: str | Path | PreparedDataset,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    callback: Callback | None = None,
    deadline: Deadline | None = None,
) -> TrainResult:
    """Train an autoencoder on a prepared dataset and write the run directory ``out_dir``.

    ``config`` defaults to the ``seed`` preset (or, with ``resume``, to the saved run's config;
    a given config may then differ only in :data:`RESUMABLE_FIELDS`). The split is recreated
    from the config's split settings; training uses its ``train`` part, model selection and
    early stopping its ``validation`` part; the test part is not touched.

    Raises ``FileExistsError`` when ``out_dir`` already holds a run and ``resume`` is False,
    :class:`TrainingDiverged` when the loss blows up (the last good checkpoint is kept),
    :class:`IncompatibleResume` when resuming with another configuration or dataset.

    With ``config.time_budget`` (seconds) the whole call, loading the data included, is
    planned to end within it (:mod:`aerec.train.budget`); ``deadline`` is the caller's own
    limit (an ensemble's share for one member), which takes precedence. ``model = "auto"``
    is planned into a concrete configuration first (:mod:`aerec.train.auto`).
    """
    start_time = time.perf_counter()
    out_dir = Path(out_dir)
    last_path, best_path = out_dir / LAST_FILE, out_dir / BEST_FILE
    saved = None
    if resume:
        if not last_path.is_file():
            raise FileNotFoundError(
                f"{last_path}: nothing to resume (no completed epoch); run without --resume"
            )
        saved = read_payload(last_path)
        saved_config = TrainConfig.from_dict(saved["config"], source=str(last_path))
        if config is None:
            config = saved_config
        _check_resumable(saved_config, config, last_path)
    elif last_path.exists() or best_path.exists():
        raise FileExistsError(
            f"{out_dir}: already holds a training run; resume it (--resume) or choose another "
            "--out"
        )
    config = config or TrainConfig()
    if deadline is None:
        deadline = Deadline.after(config.time_budget, start=start_time)

    ds = dataset if isinstance(dataset, PreparedDataset) else load_dataset(dataset)
    splits = make_splits(
        ds,
        config.split_protocol,
        test_fraction=config.test_fraction,
        validation_fraction=config.validation_fraction,
        holdout_fraction=config.holdout_fraction,
        seed=config.split_seed,
    )
    dataset_info = {
        "path": str(Path(ds.path).resolve()),
        "n_users": int(ds.n_users),
        "n_movies": int(ds.n_movies),
        "train_ratings": int(splits.train.nnz),
        "validation_ratings": int(splits.validation.nnz),
        "test_ratings": int(splits.test.nnz),
        "manifest_json": manifest_json(ds.manifest),
    }
    if saved is not None:
        before = saved["dataset"]
        for key in ("n_users", "n_movies", "train_ratings", "validation_ratings"):
            if int(before[key]) != dataset_info[key]:
                raise IncompatibleResume(
                    f"{last_path}: the dataset differs from the saved run's ({key}: "
                    f"{before[key]} then, {dataset_info[key]} now)"
                )

    if config.model == "auto":
        from aerec.train.auto import describe, plan

        config = plan(config, ds.n_users, ds.n_movies, int(splits.train.nnz),
                      seconds=deadline.remaining())
        if callback is not None:
            callback(StageStarted("auto", describe(config)))
    # refuse a model that cannot fit before allocating it (layers = [1000000000], ...)
    check_memory(config, ds.n_users, ds.n_movies, int(splits.train.nnz))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads or available_cores())
    try:
        if config.members:
            from aerec.train.ensemble import train_ensemble

            return train_ensemble(
                config, ds, splits, dataset_info, out_dir, resume, callback, start_time,
                deadline,
            )
        if config.model == "bayesian-mf":
            from aerec.train.bayesian import train_bayesian

            return train_bayesian(
                config, ds, splits, dataset_info, out_dir, resume, callback, start_time,
                deadline,
            )
        return _run(
            config, ds, splits, dataset_info, out_dir, saved, callback, start_time, deadline
        )
    finally:
        torch.set_num_threads(previous_threads)


def _run(
    config, ds, splits, dataset_info, out_dir, saved, callback, start_time, deadline=None,
) -> TrainResult:
    device = resolve_device(config.device)
    scale = ds.scale
    clip = (scale.minimum, scale.maximum)
    stats = TrainingStats.from_matrix(splits.train)
    model = build_model(config, ds.n_movies, ds.n_users, clip)
    trainer = Trainer(
        model, config, splits.train, splits.validation,
        clip=clip, device=device, callback=callback,
    )
    item_based = config.orientation == "item"
    # what an item model's movie codes are computed from: all non-test ratings
    finishing = item_based or config.refit or config.ranking != "none"
    known = union_rows(splits.train, splits.validation) if finishing else None
    known_rows = oriented(known, "item") if item_based else None
    fold_in_l2 = base_fold_in_l2(config, int(splits.train.nnz)) * (config.fold_in_scale or 1.0)
    history: list[EpochMetrics] = []
    bad_epochs = 0
    if saved is not None:
        model.load_state_dict(saved["model_state"])
        trainer.load_state_dict(saved["trainer"])
        history = [EpochMetrics.from_dict(h) for h in saved["history"]]
        bad_epochs = int(saved["best"].get("bad_epochs", 0))

    val = splits.validation.data.astype(np.float64)
    baseline_val_rmse = (
        float(np.sqrt(np.mean((val - stats.global_mean) ** 2))) if len(val) else math.nan
    )
    has_validation = splits.validation.nnz > 0
    patience = config.patience if has_validation else 0
    paths = {name: out_dir / name for name in (CONFIG_FILE, METRICS_FILE, CURVE_FILE)}
    best_path, last_path = out_dir / BEST_FILE, out_dir / LAST_FILE
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_toml(paths[CONFIG_FILE])

    best_model = build_model(config, ds.n_movies, ds.n_users, clip).to(device)
    best_model.load_state_dict(model.state_dict())
    best_epoch = trainer.epoch

    def payload(kind: str, best: dict, with_state: bool) -> dict:
        net, epoch = (model, trainer.epoch) if kind == "last" else (best_model, best_epoch)
        if item_based:
            net.prepare_inference(known_rows, fold_in_l2=fold_in_l2)
        return build_payload(
            kind=kind, model=net, config=config, epoch=epoch,
            history=[m.to_dict() for m in history[:epoch]], best=best,
            dataset_info=dataset_info,
            user_ids=ds.user_ids, movie_ids=ds.movie_ids, titles=ds.titles, years=ds.years,
            scale=scale, stats=stats, split=splits.params,
            trainer_state=trainer.state_dict() if with_state else None,
        )

    if callback is not None:
        callback(RunStarted(
            out_dir, config, trainer.epoch + 1, trainer.total_epochs, trainer.batches_per_epoch,
            len(trainer.train_users), int(splits.train.nnz), int(splits.validation.nnz),
            tuple(history),
        ))

    def stop_early() -> bool:
        return patience > 0 and bad_epochs >= patience

    best_pending: dict | None = None  # best epoch not yet written (checkpoint_seconds > 0)
    last_saved = time.perf_counter()
    # under a budget: with a refit the selection run gets half of the time (the refit needs
    # about as long), and the ranking head's expected cost is kept back
    deadline = deadline or Deadline()
    report = BudgetReport(config.time_budget) if deadline.limited else None
    reserve = (ranking_seconds(int(splits.train.nnz), ds.n_movies, ds.n_users,
                                   choose_lambda=not config.ease_regularisation)
               if config.ranking == "ease" and deadline.limited else 0.0)
    clock = EpochClock(deadline.share(0.5 if config.refit and has_validation else 1.0, reserve))
    out_of_time = False

    try:
        while trainer.epoch < trainer.total_epochs and not stop_early():
            if not clock.next_fits():
                out_of_time = True
                break
            epoch_start = time.perf_counter()
            lr = trainer.lr
            try:
                train_loss, train_rmse = trainer.train_epoch()
            except TrainingDiverged as exc:
                kept = read_payload(last_path)["epoch"] if last_path.is_file() else None
                raise exc.with_checkpoint(last_path if kept else None, kept) from None
            val_loss, val_rmse = trainer.validate()
            if not trainer.parameters_finite():
                raise TrainingDiverged(
                    trainer.epoch, trainer.batches_per_epoch, trainer.batches_per_epoch,
                    math.inf, trainer.loss_limit, lr,
                    last_path if last_path.is_file() else None,
                    trainer.epoch - 1 if last_path.is_file() else None,
                )
            metrics = EpochMetrics(
                trainer.epoch, train_loss, train_rmse, val_loss, val_rmse,
                time.perf_counter() - epoch_start, lr,
            )
            history.append(metrics)
            trainer.end_epoch(val_rmse)
            best_i = best_index(history)
            improved = best_i == len(history) - 1
            bad_epochs = 0 if improved else bad_epochs + 1
            best = {**history[best_i].to_dict(), "bad_epochs": bad_epochs}
            if improved:
                best_model.load_state_dict(model.state_dict())
                best_epoch, best_pending = trainer.epoch, best
            now = time.perf_counter()
            finished = trainer.epoch >= trainer.total_epochs or stop_early()
            if finished or now - last_saved >= config.checkpoint_seconds:
                # best.pt first: a crash in between leaves last.pt one save behind, never ahead
                if best_pending is not None:
                    save_checkpoint(payload("best", best_pending, with_state=False), best_path)
                    best_pending = None
                save_checkpoint(payload("last", best, with_state=True), last_path)
                write_metrics_csv(paths[METRICS_FILE], history)
                last_saved = now
            clock.record(time.perf_counter() - epoch_start)
            if callback is not None:
                callback(EpochFinished(metrics, history[best_i].epoch, improved))
    finally:
        if history:
            plot_learning_curve(paths[CURVE_FILE], history, title=f"{out_dir.name}")

    best_i = best_index(history)
    stopped_early = stop_early() and trainer.epoch < trainer.total_epochs
    if out_of_time and history:  # the budget ended the loop, perhaps between two saves
        if best_pending is not None:
            save_checkpoint(payload("best", best_pending, with_state=False), best_path)
        save_checkpoint(payload("last", {**history[best_i].to_dict(), "bad_epochs": bad_epochs},
                                with_state=True), last_path)
        write_metrics_csv(paths[METRICS_FILE], history)
    if report is not None:
        report.trained.append(
            f"{trainer.epoch} of {trainer.total_epochs} epochs"
            + (" (the budget ended training)" if out_of_time else "")
        )
    notes: dict = {}
    selected_path = out_dir / SELECTED_FILE
    if finishing and has_validation and history:
        notes = _finish(
            config, ds, splits, history, best_i, known, out_dir, device, payload_args={
                "dataset_info": dataset_info, "stats": stats, "scale": scale,
            }, deadline=deadline, report=report, callback=callback,
        )
    if report is not None:
        report.seconds_used = time.perf_counter() - start_time
        notes["budget"] = report.to_dict()
    result = TrainResult(
        run_dir=out_dir,
        config=config,
        best_epoch=history[best_i].epoch,
        epochs_completed=trainer.epoch,
        best_train_loss=_min([m.train_loss for m in history]),
        best_train_rmse=_min([m.train_rmse for m in history]),
        best_val_loss=_min([m.val_loss for m in history]),
        best_val_rmse=_min([m.val_rmse for m in history]),
        baseline_val_rmse=baseline_val_rmse,
        seconds=time.perf_counter() - start_time,
        stopped_early=stopped_early,
        warnings=training_warnings(
            history, trainer.batches_per_epoch, baseline_val_rmse=baseline_val_rmse,
            stopped_early=stopped_early, patience=config.patience,
        ),
        history=history,
        batches_per_epoch=trainer.batches_per_epoch,
        config_path=paths[CONFIG_FILE],
        metrics_path=paths[METRICS_FILE],
        curve_path=paths[CURVE_FILE],
        best_checkpoint=best_path,
        last_checkpoint=last_path,
        selected_checkpoint=selected_path if selected_path.is_file() else best_path,
        notes=notes,
    )
    if callback is not None:
        callback(RunFinished(result))
    return result


def _finish(
    config: TrainConfig, ds: PreparedDataset, splits, history: list[EpochMetrics], best_i: int,
    known, out_dir: Path, device: torch.device, payload_args: dict,
    deadline: Deadline | None = None, report: BudgetReport | None = None,
    callback: Callback | None = None,
) -> dict:
    """End of a run, all choices on the validation split: an item model's fold-in penalty;
    the ranking head's λ and blend weight; then (``refit``) the selected recipe retrained on
    training + validation ratings. Rewrites ``best.pt`` (and writes ``selected.pt``); returns
    notes on what was decided. Deterministic, so a resumed run repeats it identically."""
    best_path, selected_path = out_dir / BEST_FILE, out_dir / SELECTED_FILE
    source = read_payload(best_path)
    if source["best"].get("finished") and selected_path.is_file():  # done before: start over
        source = read_payload(selected_path)
    scale = payload_args["scale"]
    clip = (scale.minimum, scale.maximum)
    item_based = config.orientation == "item"
    model = build_model(config, ds.n_movies, ds.n_users, clip).to(device)
    model.load_state_dict(source["model_state"])
    notes: dict = {}
    multiple = config.fold_in_scale or 1.0
    if item_based:
        base = base_fold_in_l2(config, int(splits.train.nnz))
        if config.fold_in_scale:
            model.prepare_inference(oriented(splits.train, "item"), fold_in_l2=multiple * base)
        else:  # leaves the model prepared from training ratings only
            multiple, grid = select_fold_in_scale(
                model, splits.train, splits.validation, base, clip, seed=config.split_seed
            )
            model.set_fold_in_l2(multiple * base)
            notes["fold_in"] = {"scale": multiple, "validation_rmse": grid}
    deadline = deadline or Deadline()
    ranking = budgeted_ranking(
        config, model, splits.train, splits.validation, scale.relevance_threshold(),
        n_users=ds.n_users, deadline=deadline, report=report, callback=callback,
    )
    if ranking is not None:
        *ranking, notes["ranking"] = ranking
    if item_based:
        model.prepare_inference(oriented(known, "item"), fold_in_l2=multiple * base)

    def save(kind: str, net: torch.nn.Module, best: dict, stats, path: Path) -> None:
        save_checkpoint(build_payload(
            kind=kind, model=net, config=config, epoch=int(source["epoch"]),
            history=list(source["history"]), best=best,
            dataset_info=payload_args["dataset_info"], user_ids=ds.user_ids,
            movie_ids=ds.movie_ids, titles=ds.titles, years=ds.years, scale=scale, stats=stats,
            split=splits.params,
        ), path)

    selected_best = {k: v for k, v in source["best"].items() if k != "finished"}
    selected_best.update(_plain(notes))
    stats = payload_args["stats"]
    final = model
    epochs = history[best_i].epoch
    refit_seconds = sum(m.seconds for m in history[:epochs]) * known.nnz / max(
        splits.train.nnz, 1)
    refitting = config.refit
    if refitting and not deadline.allows(refit_seconds):
        report.skipped.append(
            f"the refit on training + validation ratings (needs ~{refit_seconds:.0f} s for "
            f"{epochs} epochs; {deadline.remaining():.0f} s left)"
        )
        refitting = False
    if refitting:
        save("selected", model, selected_best, stats, selected_path)
        if callback is not None:
            callback(StageStarted("refit", f"{epochs} epochs on training + validation ratings"))
        final = refit(
            config, known, history, epochs, n_movies=ds.n_movies, n_users=ds.n_users,
            clip=clip, device=device,
        )
        if item_based:
            final.prepare_inference(
                oriented(known, "item"),
                fold_in_l2=multiple * base_fold_in_l2(config, int(known.nnz)),
            )
        notes["refit"] = {"epochs": epochs, "train_ratings": int(known.nnz)}
        if report is not None:
            report.trained.append(f"refit: {epochs} epochs on training + validation ratings")
        stats = TrainingStats.from_matrix(known)
    elif ranking is not None:
        save("selected", model, selected_best, stats, selected_path)
    if ranking is not None:
        final = with_ranking(final, known, *ranking)
    save("best", final, {**selected_best, **_plain(notes), "finished": True}, stats, best_path)
    return notes


def _plain(notes: dict) -> dict:
    """Notes with float dict keys turned into strings (checkpoint dicts are JSON-like)."""
    if isinstance(notes, dict):
        return {str(k): _plain(v) for k, v in notes.items()}
    return notes
