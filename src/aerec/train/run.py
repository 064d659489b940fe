"""``train()``: a whole training run into a run directory, resumable.

It resolves what a run works on — the configuration (``model = "auto"`` planned into a concrete
one, :mod:`aerec.train.auto`), the prepared dataset and its split, the time budget, the memory
check and the thread count — then hands the run to the model family's trainer (looked up in the
registry, :mod:`aerec.train.families`) and the one run loop (:mod:`aerec.train.loop`), which
writes the run directory described there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from aerec.checkpoint import manifest_json, read_payload
from aerec.config import TrainConfig
from aerec.data.splits import make_splits
from aerec.data.store import PreparedDataset, load_dataset
from aerec.model.base import trainer_for
from aerec.system import available_cores
from aerec.train import distributed
from aerec.train.budget import Deadline
from aerec.train.errors import IncompatibleResume
from aerec.train.events import Callback, StageStarted
from aerec.train.families import family_kind
from aerec.train.loop import (
    BEST_FILE,
    CONFIG_FILE,
    CURVE_FILE,
    LAST_FILE,
    METRICS_FILE,
    SELECTED_FILE,
    RunContext,
    TrainResult,
    best_index,
    run_family,
)
from aerec.train.memory import check_memory
from aerec.train.trainer import resolve_device

__all__ = [
    "BEST_FILE", "CONFIG_FILE", "CURVE_FILE", "LAST_FILE", "METRICS_FILE", "SELECTED_FILE",
    "TrainResult", "best_index", "read_run_config", "train",
]

#: Settings that may change when a run is resumed; all others must match the saved run.
RESUMABLE_FIELDS = frozenset({
    "epochs", "steps", "patience", "threads", "device", "divergence_factor", "refit",
    "fold_in_scale", "checkpoint_seconds", "time_budget",
})


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The configuration saved in a run directory's ``last.pt`` (to resume with changes)."""
    path = Path(run_dir) / LAST_FILE
    return TrainConfig.from_dict(read_payload(path)["config"], source=str(path))


def _check_resumable(saved: TrainConfig, wanted: TrainConfig, path: Path) -> None:
    # the settings that apply to either (a checkpoint stores only its kind's)
    before, after = saved.to_dict(), wanted.to_dict()
    names = set(saved.stored()) | set(wanted.stored())
    changed = [
        f"{k} ({before[k]!r} → {after[k]!r})"
        for k in before
        if k in names and k not in RESUMABLE_FIELDS and after[k] != before[k]
    ]
    if changed:
        raise IncompatibleResume(
            f"{path}: cannot resume with a different configuration: {', '.join(changed)}; only "
            f"{', '.join(sorted(RESUMABLE_FIELDS))} may change (start a new run for the rest)"
        )


@distributed.leaves_job
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
    # a data-parallel job (torchrun): join the other ranks; only rank 0 reports and writes
    device = distributed.device_for(resolve_device(config.device))
    ranks = distributed.setup(device)
    ranks.barrier()  # every rank has looked at the run directory before rank 0 writes to it
    if not ranks.is_writer:
        callback = None

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
    make_family = trainer_for(family_kind(config))
    if ranks.active and not make_family.distributed:
        raise ValueError(
            f"{config.describe()}: trains on one machine; data-parallel training (torchrun) "
            "covers the user- and item-based autoencoders (docs/distributed.md says why one "
            "machine suffices for the factorisation)"
        )
    # refuse a model that cannot fit before allocating it (layers = [1000000000], ...)
    check_memory(config, ds.n_users, ds.n_movies, int(splits.train.nnz))
    previous_threads = torch.get_num_threads()
    # ranks sharing a machine share its cores
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if ranks.active else 1
    threads = config.threads or max(1, available_cores() // local_ranks)
    torch.set_num_threads(threads)
    if local_ranks > 1:
        distributed.share_cores(threads)
    try:
        ctx = RunContext(config, ds, splits, dataset_info, out_dir, callback, device, deadline,
                         start_time, train_run=train, ranks=ranks)
        return run_family(make_family(ctx), ctx, saved)
    finally:
        torch.set_num_threads(previous_threads)
