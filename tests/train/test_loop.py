"""The one run loop (:func:`aerec.train.loop.run_family`), driven by a scripted fake family.

:class:`ScriptedFamily` trains nothing: its validation RMSEs are a script, and the "model" of
epoch ``e`` is a :class:`~aerec.model.baselines.GlobalMean` fitted on the training split and
shifted by ``e / 1000`` stars, so every checkpoint says whose state it holds (:func:`tag_of`).
What the loop decides — the selected epoch, early stopping, what is written when, the end of
the run, the events — is then checked against the script, independent of any real family.

Guards against: selecting an epoch that is not the lowest validation RMSE (or a later epoch on
a tie); best.pt holding the latest state instead of the selected one; patience that ignores an
improvement, or counts epochs that could not be selected (a Bayesian burn-in); a non-resumable
family's run directory half-written mid-run; ``finalize`` skipped or repeated, its notes lost;
a refit that runs although the budget cannot afford it, or is skipped without saying so; events
out of order or with the wrong ``improved`` flags.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from aerec.checkpoint import manifest_json, read_payload
from aerec.config import TrainConfig, resolve_config
from aerec.data.splits import make_splits
from aerec.data.store import load_dataset
from aerec.model.base import model_from_architecture
from aerec.model.baselines import GlobalMean
from aerec.train import loop
from aerec.train.budget import Deadline
from aerec.train.events import EpochFinished, RunFinished, RunStarted, StageStarted
from aerec.train.loop import Family, Refit, RunContext, TrainResult, run_family
from aerec.train.metrics_log import CSV_COLUMNS, EpochMetrics, read_metrics_csv

pytestmark = pytest.mark.usefixtures("one_thread")

#: Stars a model's mean is shifted by per tag (its epoch; a refit's is REFIT_TAG + epochs).
TAG_STEP = 1e-3
REFIT_TAG = 100
RUN_FILES = ("best.pt", "last.pt", "metrics.csv", "learning_curve.png")


def tag_of(model_or_payload, train_mean: float) -> int:
    """The tag of a :class:`ScriptedFamily` model, or of the model in a checkpoint payload."""
    if isinstance(model_or_payload, dict):
        mean = float(model_or_payload["model_state"]["mean"])
    else:
        mean = float(model_or_payload.mean)
    return round((mean - train_mean) / TAG_STEP)


class ScriptedFamily(Family):
    """A family whose epochs follow a script: validation RMSE ``val_rmses[e - 1]`` at epoch
    ``e``, training loss ``2 / e``; epochs before ``eligible_from`` cannot be selected (a
    burn-in). Records the hooks the loop calls (``calls``) and which run files existed when
    each epoch began (``on_disk``)."""

    def __init__(self, ctx: RunContext, val_rmses: list[float], *, eligible_from: int = 1,
                 resumable: bool = True, finish: bool = False, refit_seconds: float = 0.0,
                 selects_every_epoch: bool = True) -> None:
        self.ctx = ctx
        self.val_rmses = list(val_rmses)
        self.eligible_from = eligible_from
        self.resumable = resumable
        self.selects_every_epoch = selects_every_epoch
        self.finish = finish
        self.refit_seconds = refit_seconds
        self.total_epochs = ctx.config.epochs
        self.epoch = 0
        self.train_rows = int(np.count_nonzero(np.diff(ctx.splits.train.indptr)))
        self.train_mean = float(ctx.splits.train.data.astype(np.float64).mean())
        self.calls: list[tuple] = []
        self.on_disk: list[dict[str, int | bool]] = []

    def _model(self, tag: int) -> GlobalMean:
        model = GlobalMean(clip=self.ctx.clip).fit(self.ctx.splits.train)
        model.mean = model.mean + tag * TAG_STEP
        return model

    def _run_files(self) -> dict[str, int | bool]:
        """Which run files exist; for a checkpoint, the epoch it was saved at."""
        seen: dict[str, int | bool] = {}
        for name in RUN_FILES:
            path = self.ctx.path(name)
            if path.suffix == ".pt" and path.is_file():
                seen[name] = int(read_payload(path)["epoch"])
            else:
                seen[name] = path.is_file()
        return seen

    def always_finish(self, ctx: RunContext) -> bool:
        return self.finish

    def train_epoch(self) -> tuple[float, float]:
        self.on_disk.append(self._run_files())
        self.epoch += 1
        self.calls.append(("train_epoch", self.epoch))
        loss = 2.0 / self.epoch
        return loss, math.sqrt(loss)

    def validate(self) -> tuple[float, float]:
        rmse = self.val_rmses[self.epoch - 1]
        return rmse * rmse, rmse

    def end_epoch(self, metrics: EpochMetrics) -> bool:
        return metrics.epoch >= self.eligible_from

    def snapshot(self) -> int:
        return self.epoch

    def model(self, snapshot: int) -> GlobalMean:
        return self._model(snapshot)

    def current_model(self) -> GlobalMean:
        return self._model(self.epoch)

    def model_from_payload(self, payload: dict) -> GlobalMean:
        model = model_from_architecture(payload["architecture"])
        model.load_state_dict(payload["model_state"])
        return model

    def state_dict(self) -> dict:
        return {"epoch": self.epoch}

    def load_state_dict(self, payload: dict) -> None:
        self.epoch = int(payload["trainer"]["epoch"])

    def finalize(self, selected: GlobalMean) -> dict:
        tag = tag_of(selected, self.train_mean)
        self.calls.append(("finalize", tag))
        return {"scripted": {"finalized": tag}}

    def refit_cost(self, epochs: int, history: list[EpochMetrics],
                   ranking_fit: float) -> tuple[float, str]:
        self.calls.append(("refit_cost", epochs))
        return self.refit_seconds, f"the scripted refit (needs {self.refit_seconds:g} s)"

    def refit(self, epochs: int, history: list[EpochMetrics], deadline: Deadline) -> Refit:
        self.calls.append(("refit", epochs, len(history)))
        return Refit(self._model(REFIT_TAG + epochs), epochs, f"refit: {epochs} scripted epochs")

    def hooks(self, *names: str) -> list[tuple]:
        """The recorded calls of the hooks ``names`` (all but ``train_epoch`` by default)."""
        return [c for c in self.calls
                if (c[0] in names if names else c[0] != "train_epoch")]


@pytest.fixture
def real_plot():
    """Requested by a test that looks at learning_curve.png itself (see ``quick_plot``)."""


@pytest.fixture(autouse=True)
def quick_plot(request, monkeypatch):
    """Drawing the learning curve takes most of a scripted run's time: unless a test asks for
    ``real_plot``, a stub writes the file in its place (when and whether it is written is
    still the loop's doing)."""
    if "real_plot" not in request.fixturenames:
        monkeypatch.setattr(loop, "plot_learning_curve",
                            lambda path, history, title="", **_: Path(path).write_bytes(b"stub"))


@pytest.fixture(scope="module")
def data(lowrank_dir):
    """The low-rank dataset and its split, as ``train()`` makes them for a default config."""
    ds = load_dataset(lowrank_dir)
    c = TrainConfig()
    splits = make_splits(ds, c.split_protocol, test_fraction=c.test_fraction,
                         validation_fraction=c.validation_fraction,
                         holdout_fraction=c.holdout_fraction, seed=c.split_seed)
    assert splits.validation.nnz > 0
    return ds, splits


def make_context(data, out_dir: Path, config: TrainConfig, *, callback=None,
                 deadline: Deadline | None = None) -> RunContext:
    """A :class:`RunContext` built the way ``train()`` builds one."""
    ds, splits = data
    dataset_info = {
        "path": str(Path(ds.path).resolve()),
        "n_users": int(ds.n_users),
        "n_movies": int(ds.n_movies),
        "train_ratings": int(splits.train.nnz),
        "validation_ratings": int(splits.validation.nnz),
        "test_ratings": int(splits.test.nnz),
        "manifest_json": manifest_json(ds.manifest),
    }
    return RunContext(config, ds, splits, dataset_info, out_dir, callback, torch.device("cpu"),
                      deadline or Deadline(), time.perf_counter())


def run(data, tmp_path: Path, val_rmses: list[float], *, epochs: int | None = None,
        patience: int = 0, refit: bool = False, time_budget: float = 0.0, callback=None,
        **family_options) -> tuple[TrainResult, ScriptedFamily]:
    """Run a :class:`ScriptedFamily` of the script ``val_rmses`` through the loop; with a
    ``time_budget``, under a :class:`Deadline` of that many seconds (as ``train()`` sets)."""
    config = TrainConfig(epochs=epochs or len(val_rmses), patience=patience, refit=refit,
                         time_budget=time_budget, threads=1)
    ctx = make_context(data, tmp_path / "run", config, callback=callback,
                       deadline=Deadline.after(time_budget))
    family = ScriptedFamily(ctx, val_rmses, **family_options)
    return run_family(family, ctx), family


def _without(payload: dict, *keys: str) -> dict:
    return {k: v for k, v in payload.items() if k not in keys}


def _same(a, b) -> bool:
    """Deep equality of checkpoint payloads (tensors compared by value, NaN equal to NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.dtype == b.dtype and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


# ------------------------------------------------------------------------------- selection
def test_selects_the_lowest_validation_rmse_and_writes_the_run_directory(data, tmp_path,
                                                                         real_plot):
    # epoch 4 ties epoch 3: the earlier epoch stays selected
    result, family = run(data, tmp_path, [1.0, 0.9, 0.8, 0.8, 0.85, 0.95])

    assert result.best_epoch == 3
    assert result.epochs_completed == 6 and len(result.history) == 6
    assert [m.epoch for m in result.history] == [1, 2, 3, 4, 5, 6]
    assert not result.stopped_early
    assert result.best_val_rmse == 0.8 and result.best_val_loss == pytest.approx(0.64)
    assert result.best_train_loss == pytest.approx(2.0 / 6)  # lowest over every epoch
    assert math.isfinite(result.baseline_val_rmse)
    assert result.notes == {}  # no end-of-run stage: no refit, no ranking head, no budget
    assert family.hooks() == []  # so finalize is not called either

    run_dir = tmp_path / "run"
    for path in (result.config_path, result.metrics_path, result.curve_path,
                 result.best_checkpoint, result.last_checkpoint):
        assert path.parent == run_dir and path.is_file() and path.stat().st_size > 0
    assert result.curve_path.read_bytes()[:4] == b"\x89PNG"
    assert not (run_dir / "selected.pt").exists()
    assert result.selected_checkpoint == result.best_checkpoint
    assert not list(run_dir.glob(".*"))  # no temporary files left behind
    assert resolve_config(path=result.config_path) == result.config
    rows = read_metrics_csv(result.metrics_path)
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["val_rmse"] for r in rows] == pytest.approx([1.0, 0.9, 0.8, 0.8, 0.85, 0.95])

    best, last = read_payload(result.best_checkpoint), read_payload(result.last_checkpoint)
    assert best["kind"] == "best" and best["epoch"] == 3
    assert tag_of(best, family.train_mean) == 3  # the selected epoch's state, not the last
    assert best["best"]["epoch"] == 3 and best["best"]["val_rmse"] == 0.8
    assert [h["epoch"] for h in best["history"]] == [1, 2, 3]
    assert last["kind"] == "last" and last["epoch"] == 6
    assert tag_of(last, family.train_mean) == 6 and last["trainer"] == {"epoch": 6}
    assert last["best"]["epoch"] == 3 and last["best"]["bad_epochs"] == 3
    assert len(last["history"]) == 6


def test_a_resumable_family_is_checkpointed_after_every_epoch(data, tmp_path):
    _, family = run(data, tmp_path, [1.0, 0.9, 0.8, 0.8, 0.85])
    # what existed when each epoch began: last.pt one epoch behind, best.pt at the selected
    # epoch (not rewritten on the tie at epoch 4), the plot only at the end
    assert family.on_disk[0] == {name: False for name in RUN_FILES}
    for began, selected in zip(range(2, 6), [1, 2, 3, 3]):
        seen = family.on_disk[began - 1]
        assert seen["last.pt"] == began - 1 and seen["best.pt"] == selected
        assert seen["metrics.csv"] is True and seen["learning_curve.png"] is False


def test_a_nan_first_validation_is_not_selected(data, tmp_path):
    result, family = run(data, tmp_path, [math.nan, 1.2, 1.1])
    assert result.best_epoch == 3
    assert tag_of(read_payload(result.best_checkpoint), family.train_mean) == 3


# ------------------------------------------------------------------------------- early stopping
@pytest.mark.parametrize(("epochs", "stopped_early"), [(12, True), (8, False)])
def test_stops_after_patience_epochs_without_improvement(data, tmp_path, epochs, stopped_early):
    # epochs 3-4 do not improve, epoch 5 does (the count starts over), 6-8 do not: patience 3
    # ends the run after epoch 8, before the much better epoch 9 is ever trained. Ending on
    # the last planned epoch is not stopping early.
    script = [1.0, 0.9, 0.95, 0.92, 0.85, 0.86, 0.87, 0.88, 0.1, 0.1, 0.1, 0.1]
    result, family = run(data, tmp_path, script[:epochs], patience=3)

    assert result.stopped_early is stopped_early
    assert result.epochs_completed == 8 and len(result.history) == 8
    assert family.hooks("train_epoch")[-1] == ("train_epoch", 8)
    assert result.best_epoch == 5 and result.best_val_rmse == 0.85
    last = read_payload(result.last_checkpoint)
    assert last["epoch"] == 8 and last["best"]["bad_epochs"] == 3
    assert len(read_metrics_csv(result.metrics_path)) == 8


def test_patience_zero_never_stops_early(data, tmp_path):
    result, _ = run(data, tmp_path, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0], patience=0)
    assert result.epochs_completed == 6 and not result.stopped_early and result.best_epoch == 1


# ------------------------------------------------------------------------------- eligibility
def test_ineligible_epochs_are_never_selected_nor_count_towards_patience(data, tmp_path):
    # a burn-in of 3 epochs with the lowest RMSEs of the run; patience 2 would stop at epoch 3
    # if the burn-in counted (2 epochs without improvement after epoch 1)
    events: list = []
    script = [0.5, 0.6, 0.7, 1.0, 1.1, 1.2, 0.2, 0.2]
    result, family = run(data, tmp_path, script, patience=2, eligible_from=4,
                         selects_every_epoch=False, callback=events.append)

    assert result.epochs_completed == 6 and result.stopped_early
    assert result.best_epoch == 4
    # best_* of a family that does not select every epoch are the selected epoch's
    assert result.best_val_rmse == 1.0
    best = read_payload(result.best_checkpoint)
    assert best["epoch"] == 4 and tag_of(best, family.train_mean) == 4
    finished = [e for e in events if isinstance(e, EpochFinished)]
    assert [e.improved for e in finished] == [False, False, False, True, False, False]
    assert [e.best_epoch for e in finished] == [1, 2, 3, 4, 4, 4]


@pytest.mark.parametrize("resumable", [
    False,
    pytest.param(True),
])
def test_with_no_eligible_epoch_the_last_state_is_kept(data, tmp_path, resumable):
    result, family = run(data, tmp_path, [0.9, 0.8, 0.7], eligible_from=10, finish=True,
                         resumable=resumable, selects_every_epoch=False)
    assert family.hooks() == [("finalize", 3)]
    assert result.best_epoch == 3 and result.best_val_rmse == 0.7
    best = read_payload(result.best_checkpoint)
    assert best["epoch"] == 3 and tag_of(best, family.train_mean) == 3


# ------------------------------------------------------------------------------- resuming
def _resume(data, tmp_path, script, first_epochs, **family_options):
    """A run of ``first_epochs`` epochs, then resumed from its last.pt to ``len(script)``."""
    first, _ = run(data, tmp_path, script, epochs=first_epochs, **family_options)
    saved = read_payload(first.last_checkpoint)
    events: list = []
    ctx = make_context(data, tmp_path / "run", first.config.replace(epochs=len(script)),
                       callback=events.append)
    family = ScriptedFamily(ctx, script, **family_options)
    return first, run_family(family, ctx, saved), family, events


def test_a_resumed_run_continues_from_its_last_epoch(data, tmp_path):
    first, result, family, events = _resume(data, tmp_path, [1.0, 0.8, 0.9, 0.7, 0.75], 3)
    assert first.best_epoch == 2
    assert family.hooks("train_epoch") == [("train_epoch", 4), ("train_epoch", 5)]
    assert events[0].start_epoch == 4 and len(events[0].history) == 3
    assert [m.epoch for m in result.history] == [1, 2, 3, 4, 5]
    assert result.best_epoch == 4
    assert read_payload(result.best_checkpoint)["epoch"] == 4


def test_a_resumed_run_never_selects_an_ineligible_epoch(data, tmp_path):
    first, result, family, _ = _resume(data, tmp_path, [0.5, 0.6, 0.9, 1.0, 0.95, 0.97], 4,
                                       eligible_from=3, selects_every_epoch=False)
    assert first.best_epoch == 3
    assert result.epochs_completed == 6
    assert read_payload(result.best_checkpoint)["epoch"] == 3  # not rewritten: no improvement
    assert result.best_epoch == 3  # never a burn-in epoch


# ------------------------------------------------------------------------------- non-resumable
def test_a_non_resumable_family_writes_its_run_directory_at_the_end(data, tmp_path):
    result, family = run(data, tmp_path, [1.0, 0.7, 0.9, 0.8], resumable=False, finish=True)

    # nothing but config.toml while training (an interrupted run leaves nothing half-written)
    assert family.on_disk == [{name: False for name in RUN_FILES}] * 4
    assert (tmp_path / "run" / "config.toml").is_file()
    for name in RUN_FILES:
        assert (tmp_path / "run" / name).is_file()
    assert result.best_epoch == 2 and result.epochs_completed == 4

    best, last = read_payload(result.best_checkpoint), read_payload(result.last_checkpoint)
    assert best["kind"] == "best" and last["kind"] == "last"
    assert _same(_without(best, "kind", "digest"), _without(last, "kind", "digest"))
    assert best["epoch"] == 2 and tag_of(best, family.train_mean) == 2
    assert best["best"]["finished"] is True and best["best"]["scripted"] == {"finalized": 2}
    assert "trainer" not in last  # nothing to resume from
    assert family.hooks() == [("finalize", 2)]
    assert result.notes == {"scripted": {"finalized": 2}}
    assert len(read_metrics_csv(result.metrics_path)) == 4


def test_a_non_resumable_family_without_an_end_stage_still_gets_its_checkpoints(data,
                                                                              tmp_path):
    # Family.resumable and the module docstring promise that such families "write their run
    # directory when the run ends"; nothing requires them to answer always_finish() = True.
    result, family = run(data, tmp_path, [1.0, 0.7, 0.9], resumable=False)
    assert result.best_epoch == 2
    assert result.best_checkpoint.is_file() and result.last_checkpoint.is_file()


# ------------------------------------------------------------------------------- end of the run
def test_finalize_runs_once_and_its_notes_are_kept(data, tmp_path):
    result, family = run(data, tmp_path, [1.0, 0.8, 0.9, 0.95], finish=True)
    # finalize sees the selected model, read back from best.pt (not the current epoch 4)
    assert family.hooks() == [("finalize", 2)]
    assert result.notes == {"scripted": {"finalized": 2}}
    best = read_payload(result.best_checkpoint)
    assert best["best"]["scripted"] == {"finalized": 2} and best["best"]["finished"] is True
    assert best["epoch"] == 2 and tag_of(best, family.train_mean) == 2
    last = read_payload(result.last_checkpoint)
    assert last["epoch"] == 4 and tag_of(last, family.train_mean) == 4  # left as it was


def test_refit_retrains_the_selected_recipe_on_training_and_validation(data, tmp_path):
    events: list = []
    result, family = run(data, tmp_path, [1.0, 0.9, 0.8, 0.85, 0.9], refit=True,
                         callback=events.append)
    _, splits = data
    known = splits.train.nnz + splits.validation.nnz

    assert family.hooks() == [("finalize", 3), ("refit_cost", 3), ("refit", 3, 5)]
    assert result.notes == {"scripted": {"finalized": 3},
                            "refit": {"epochs": 3, "train_ratings": known}}
    assert "budget" not in result.notes  # no time budget
    # best.pt: the refitted model, with the statistics of every non-test rating; selected.pt:
    # the selected epoch, training ratings only
    best = read_payload(result.best_checkpoint)
    assert tag_of(best, family.train_mean) == REFIT_TAG + 3
    assert best["stats"]["n_ratings"] == known and best["best"]["finished"] is True
    assert best["best"]["refit"] == {"epochs": 3, "train_ratings": known}
    assert result.selected_checkpoint == tmp_path / "run" / "selected.pt"
    selected = read_payload(result.selected_checkpoint)
    assert tag_of(selected, family.train_mean) == 3 and selected["epoch"] == 3
    assert selected["stats"]["n_ratings"] == splits.train.nnz
    stages = [e for e in events if isinstance(e, StageStarted)]
    assert [e.stage for e in stages] == ["refit"]
    assert events.index(stages[0]) == len(events) - 2  # after the epochs, before the end


@pytest.mark.parametrize("affordable", [True, False])
def test_a_refit_runs_only_when_the_budget_allows_its_cost(data, tmp_path, affordable):
    result, family = run(data, tmp_path, [1.0, 0.9, 0.8, 0.85], refit=True,
                         refit_seconds=0.001 if affordable else 1e6, time_budget=300)

    assert result.epochs_completed == 4  # the epochs fit in their half of the budget
    budget = result.notes["budget"]
    assert budget["seconds"] == 300 and 0 < budget["seconds_used"] < 300
    assert budget["trained"][0] == "4 of 4 epochs"
    best = read_payload(result.best_checkpoint)
    if affordable:
        assert family.hooks() == [("finalize", 3), ("refit_cost", 3), ("refit", 3, 4)]
        assert budget["skipped"] == []
        assert budget["trained"][1:] == ["refit: 3 scripted epochs"]
        assert result.notes["refit"]["epochs"] == 3
        assert tag_of(best, family.train_mean) == REFIT_TAG + 3
    else:
        assert family.hooks() == [("finalize", 3), ("refit_cost", 3)]
        assert budget["skipped"] == ["the scripted refit (needs 1e+06 s)"]
        assert budget["trained"] == ["4 of 4 epochs"]
        assert "refit" not in result.notes and "refit" not in best["best"]
        assert tag_of(best, family.train_mean) == 3  # the selected model, unrefitted
        assert not (tmp_path / "run" / "selected.pt").exists()
    assert best["best"]["budget"]["skipped"] == budget["skipped"]


# ------------------------------------------------------------------------------- events
def test_events_are_announced_in_order(data, tmp_path):
    events: list = []
    last_epoch_on_disk: list[int] = []

    def callback(event) -> None:
        events.append(event)
        if isinstance(event, EpochFinished):  # announced after the epoch is checkpointed
            last_epoch_on_disk.append(int(read_payload(tmp_path / "run" / "last.pt")["epoch"]))

    result, family = run(data, tmp_path, [1.0, 0.9, 0.95, 0.8, 0.8], callback=callback)
    _, splits = data

    assert [type(e) for e in events] == [RunStarted, *[EpochFinished] * 5, RunFinished]
    started = events[0]
    assert (started.start_epoch, started.epochs) == (1, 5)
    assert started.run_dir == tmp_path / "run" and started.history == ()
    assert started.train_users == family.train_rows
    assert started.train_ratings == splits.train.nnz
    assert started.validation_ratings == splits.validation.nnz
    finished = events[1:-1]
    assert [e.metrics.epoch for e in finished] == [1, 2, 3, 4, 5]
    assert [e.metrics.val_rmse for e in finished] == [1.0, 0.9, 0.95, 0.8, 0.8]
    assert [e.improved for e in finished] == [True, True, False, True, False]
    assert [e.best_epoch for e in finished] == [1, 2, 2, 4, 4]
    assert last_epoch_on_disk == [1, 2, 3, 4, 5]
    assert events[-1].result is result
