"""``aerec train``: train the autoencoder on a prepared dataset, with live progress.

A thin layer over :func:`aerec.train.train`: it resolves the configuration (preset → file →
options), refuses options the resolved model would ignore, draws a progress bar within each
epoch and a table of epoch metrics (plain aligned lines with a header when the output is not a
terminal), and ends with the selected (best) epoch, the baseline and any warnings.
"""

from __future__ import annotations

import math
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from aerec.checkpoint import remove_stale_temporaries
from aerec.cli.common import UserError, console, err_console
from aerec.config import PRESETS, TrainConfig, explicit_epochs, resolve_config
from aerec.data.splits import PROTOCOLS
from aerec.data.store import PreparedDataset, load_dataset
from aerec.train import (
    BatchFinished,
    EpochFinished,
    EpochMetrics,
    MemberStarted,
    RunStarted,
    StageStarted,
    TrainEvent,
    TrainingDiverged,
    TrainResult,
    read_run_config,
    train,
)
from aerec.train.budget import format_duration, parse_duration
from aerec.train.ensemble import member_config
from aerec.train.loop import best_index
from aerec.train.memory import check_memory

#: What each preset is, for ``--help`` (one line each).
PRESET_DESCRIPTIONS = {
    "auto": "chosen from the data's shape and --time-budget (10m); the default",
    "seed": "the published user-based autoencoder, exactly",
    "item": "item-based AutoRec (I-AutoRec), 500 units",
    "item-denoising": "I-AutoRec trained as a denoiser",
    "item-denoising-300": "the same with 300 units (an ensemble member)",
    "user-centred": "user-based AutoRec on the residual of user and movie biases",
    "bayesian-mf": "Bayesian matrix factorisation (Gibbs sampling)",
    "robust-bayesian-mf": "the same with per-user and per-movie noise",
    "audience-bayesian-mf": "robust, with the audience prior",
    "deep": "DeepRecommender-style deep autoencoder",
    "best": "small-data ensemble: item autoencoders + audience Bayesian MF",
}
# typer keeps paragraphs (blank-line separated) as lines: one line per preset
PRESET_HELP = "Named configuration:\n\n" + "\n\n".join(
    f"{name}: {PRESET_DESCRIPTIONS.get(name, '')}" for name in PRESETS
)

#: What each split protocol is, for ``--help``.
SPLIT_HELP = (
    "How the test split is drawn: auto (the dataset's fixed --test split when it has one, "
    "else random), random (20 % of the ratings, the published protocol), user (new users: 20 "
    "% of the users are held out; --holdout-fraction of each one's ratings is scored, the rest "
    "given as their input), time (the latest 20 % of the ratings), fixed (the dataset's "
    "--test split), probe (the same, checked to come from Netflix's probe.txt). Validation "
    "ratings are always carved from the training ratings."
)

#: Options that apply to every plan (how to run and how to split): ``auto`` and an ensemble
#: pass them on to the models they train; ``auto`` also passes on ``seed``.
RUN_SETTINGS = frozenset({"threads", "device", "time_budget", "split_protocol",
                          "holdout_fraction"})

#: Epoch rows kept on screen in the live table (the best epoch is always shown).
TABLE_ROWS = 15

#: Columns of the per-epoch lines written when the output is not a terminal, with widths.
LOG_COLUMNS = (("epoch", 5), ("train_loss", 10), ("train_RMSE", 10), ("val_loss", 9),
               ("val_RMSE", 9), ("seconds", 8))

#: Marks the selected (best) epoch's row.
BEST_MARK = "★"


def _option(setting: str) -> str:
    """The command-line option of a configuration setting."""
    return {"split_protocol": "--split"}.get(setting, "--" + setting.replace("_", "-"))


def _num(value: float, digits: int = 4) -> str:
    return "—" if not math.isfinite(value) else f"{value:.{digits}f}"


class TrainDisplay:
    """Turns training events into a rich progress bar and an epoch table on a terminal, and
    into plain aligned lines under a header (once per run) when the output is a log."""

    def __init__(self) -> None:
        self.history: list[EpochMetrics] = []
        self.best_epoch = 0
        self.epochs = 0
        #: A run has started (until then nothing is drawn: a run that fails before its first
        #: epoch leaves no empty table or "epoch 0/0" bar behind).
        self.started = False
        self.terminal = console.is_terminal
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("batches · loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            auto_refresh=False,
        )
        self.task = self.progress.add_task("train", total=1, epoch=0, epochs=0, loss="—")
        self.live = Live(self, console=console, refresh_per_second=8, transient=False)

    def showing(self) -> Live | nullcontext:
        """The context to train in: the live display on a terminal, nothing for a log."""
        return self.live if self.terminal else nullcontext()

    def __rich__(self) -> Group:
        return Group(self.table(), self.progress) if self.started else Group()

    def table(self) -> Table:
        table = Table(title=None, show_edge=False, header_style="bold")
        for name in ("epoch", "train loss", "train RMSE", "val loss", "val RMSE", "seconds"):
            table.add_column(name, justify="right")
        table.add_column("", justify="left")  # the best epoch's mark
        rows = self.history[-TABLE_ROWS:]
        best = next((m for m in self.history if m.epoch == self.best_epoch), None)
        if best is not None and best not in rows:
            rows = [best, *rows[1:]]
        for m in rows:
            chosen = m.epoch == self.best_epoch
            table.add_row(*self.cells(m), BEST_MARK if chosen else "",
                          style="bold green" if chosen else None)
        shown = (f"last {TABLE_ROWS} of {len(self.history)} epochs · "
                 if len(self.history) > TABLE_ROWS else "")
        if self.history:
            table.caption = f"{shown}{BEST_MARK} best epoch so far (kept as best.pt)"
        return table

    @staticmethod
    def cells(m: EpochMetrics) -> list[str]:
        return [
            str(m.epoch), _num(m.train_loss), _num(m.train_rmse), _num(m.val_loss),
            _num(m.val_rmse), f"{m.seconds:.1f}",
        ]

    def __call__(self, event: TrainEvent) -> None:
        if isinstance(event, MemberStarted):
            console.print(
                f"\n[bold]member {event.number}/{event.members}: {event.name}[/] — "
                f"{_describe(member_config(event.name, TrainConfig()))} → {event.run_dir}",
                highlight=False, soft_wrap=True,
            )
            self.history, self.best_epoch, self.started = [], 0, False
        elif isinstance(event, StageStarted):
            console.print(
                f"  [bold]{event.stage}[/]" + (f": {event.detail}" if event.detail else ""),
                highlight=False, soft_wrap=True,
            )
        elif isinstance(event, RunStarted):
            self.started = True
            self.epochs = event.epochs
            self.history = list(event.history)
            if self.history:
                self.best_epoch = self.history[best_index(self.history)].epoch
            planned = _planned(event)
            if planned:
                console.print(f"  {planned}", highlight=False, soft_wrap=True)
            if not self.terminal:
                console.print(_log_line([name for name, _ in LOG_COLUMNS])
                              + f"  ({BEST_MARK} new best)", highlight=False, soft_wrap=True)
            self._new_epoch(event.start_epoch, event.batches_per_epoch)
        elif isinstance(event, BatchFinished):
            self.progress.update(self.task, completed=event.batch, loss=f"{event.loss:.4f}")
        elif isinstance(event, EpochFinished):
            self.history.append(event.metrics)
            self.best_epoch = event.best_epoch
            if not self.terminal:
                mark = f"  {BEST_MARK}" if event.best_epoch == event.metrics.epoch else ""
                console.print(_log_line(self.cells(event.metrics)) + mark, highlight=False,
                              soft_wrap=True)
            self._new_epoch(event.metrics.epoch + 1, int(self.progress.tasks[0].total or 1))
        if self.terminal:
            self.live.refresh()

    def _new_epoch(self, epoch: int, batches: int) -> None:
        if epoch > self.epochs:  # the run is over: leave the bar full
            self.progress.update(self.task, completed=batches)
            return
        self.progress.reset(self.task, total=batches, epoch=epoch, epochs=self.epochs, loss="—")


def _log_line(cells: list[str]) -> str:
    """One row of the plain per-epoch log, aligned under its header."""
    return "  ".join(f"{c:>{width}}" for c, (_, width) in zip(cells, LOG_COLUMNS))


def _planned(event: RunStarted) -> str:
    """What a step budget comes to on this data ("250 optimiser steps: 125 epochs of 2
    batches"), or "" when the epochs are the configuration's own."""
    steps = getattr(event.config, "steps", 0)
    if steps <= 0 or event.start_epoch > 1:
        return ""
    batches = event.batches_per_epoch
    return (f"{steps:,} optimiser steps: {event.epochs} epoch{'s' * (event.epochs != 1)} of "
            f"{batches} batch{'es' * (batches != 1)}")


def _describe(config: TrainConfig) -> str:
    """One line that says what ``config`` trains, and its time budget."""
    budget = (f", time budget {format_duration(config.time_budget)}"
              if config.time_budget else "")
    return config.describe() + budget


def _summary(result: TrainResult) -> None:
    members = result.notes.get("member_summary")
    if members:
        console.print(f"\n[bold]ensemble of {len(members)}[/] · {result.seconds:.1f} s",
                      highlight=False, soft_wrap=True)
        table = Table(show_edge=False, header_style="bold")
        for name in ("member", "best epoch", "validation RMSE", "weight", "seconds"):
            table.add_column(name, justify="left" if name == "member" else "right")
        for m in members:
            table.add_row(m["name"], f"{m['best_epoch']} of {m['epochs']}",
                          _num(m["val_rmse"]), f"{m['weight']:.3f}", f"{m['seconds']:.1f}")
        console.print(table)
        console.print(
            f"  ensemble validation RMSE {_num(result.best_val_rmse)} (cross-fitted) · "
            f"predicting the training mean: {_num(result.baseline_val_rmse)}",
            highlight=False, soft_wrap=True,
        )
    else:
        _best_summary(result)
    budget = result.notes.get("budget")
    if budget:
        console.print(
            f"  time budget {format_duration(budget['seconds'])}: used "
            f"{format_duration(budget['seconds_used'])}",
            highlight=False, soft_wrap=True,
        )
        for line in budget["trained"]:
            console.print(f"    trained {line}", highlight=False, soft_wrap=True)
        for line in budget["skipped"]:
            console.print(f"    [yellow]skipped[/] {line}", highlight=False, soft_wrap=True)
    files = [p.name for p in (result.best_checkpoint, result.last_checkpoint,
                              result.metrics_path, result.curve_path) if p.is_file()]
    console.print(f"  run directory {result.run_dir}: {', '.join(files)}", highlight=False,
                  soft_wrap=True)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


def _best_summary(result: TrainResult) -> None:
    """The selected epoch and its metrics on a line of its own, then the baseline and the
    lowest training loss (often a later epoch's: said with its epoch)."""
    history = result.history
    best = next((m for m in history if m.epoch == result.best_epoch), None)
    if best is None:
        return
    by_validation = math.isfinite(best.val_rmse)
    stopped = " (stopped early)" if result.stopped_early else ""
    chosen_by = (f"validation RMSE {_num(best.val_rmse)}" if by_validation
                 else "no validation ratings: lowest training loss")
    console.print(
        f"\n[bold]best: epoch {best.epoch}[/] of {result.epochs_completed} ({chosen_by})"
        f"{stopped} · {result.seconds:.1f} s",
        highlight=False, soft_wrap=True,
    )
    console.print(
        f"  epoch {best.epoch}: training loss {_num(best.train_loss)} · RMSE "
        f"{_num(best.train_rmse)}; validation loss {_num(best.val_loss)} · RMSE "
        f"{_num(best.val_rmse)}",
        highlight=False, soft_wrap=True,
    )
    if math.isfinite(result.baseline_val_rmse):
        console.print(f"  predicting the training mean: validation RMSE "
                      f"{_num(result.baseline_val_rmse)}", highlight=False, soft_wrap=True)
    lowest = min((m for m in history if math.isfinite(m.train_loss)),
                 key=lambda m: m.train_loss, default=None)
    if lowest is not None and lowest.epoch != best.epoch:
        console.print(
            f"  lowest training loss {_num(lowest.train_loss)} · RMSE "
            f"{_num(lowest.train_rmse)} at epoch {lowest.epoch}",
            highlight=False, soft_wrap=True,
        )


def _check_memory(config: TrainConfig, ds: PreparedDataset) -> None:
    """Refuse (one line, with the estimate) a model that cannot fit in memory, before the
    run starts; :func:`aerec.train.train` checks again on the exact split."""
    test_share = 0.0 if ds.test_arrays is not None else config.test_fraction
    n_train = len(ds.arrays.indices) * (1 - test_share) * (1 - config.validation_fraction)
    check_memory(config, ds.n_users, ds.n_movies, int(n_train))


def _check_writable(out: Path) -> None:
    """Fail with one line naming ``out`` unless a run directory can be written there (created
    if missing; probed with an anonymous temporary file, which leaves nothing behind)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a run directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        named = Path(exc.filename) if exc.filename else out
        where = "" if out in (named, named.parent) else f"{named}: "  # not the probe's name
        raise UserError(f"--out {out}: cannot write a run directory there ({where}{reason})"
                        ) from None


def _train(
    dataset: Annotated[
        Path, typer.Argument(help="Prepared dataset directory (aerec data prepare).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML configuration file.")
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help=PRESET_HELP)
    ] = None,
    time_budget: Annotated[
        str | None,
        typer.Option(
            "--time-budget",
            help="Wall-clock budget for the whole run, e.g. 90s, 10m, 1h (auto: 10m). Epochs, "
            "sweeps, members and refits are planned to fit; what did not fit is reported.",
        ),
    ] = None,
    split: Annotated[str | None, typer.Option("--split", help=SPLIT_HELP)] = None,
    holdout_fraction: Annotated[
        float | None,
        typer.Option(help="--split user: share of each held-out user's ratings that is scored "
                     "(the rest is their input; default 0.5)."),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(help="Passes over the training rows (sweeps for Bayesian MF); replaces a "
                     "preset's --steps."),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(help="Autoencoders: optimiser steps to train (the epochs follow from the "
                     "data's size); replaces the preset's epochs."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(help="Rows per optimiser step (users; movies for item-based models)."),
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for initialisation, shuffling and dropout.")
    ] = None,
    weight_decay: Annotated[float | None, typer.Option(help="L2 penalty.")] = None,
    dropout: Annotated[float | None, typer.Option(help="Dropout probability.")] = None,
    activation: Annotated[
        str | None, typer.Option(help="relu, selu, sigmoid or identity.")
    ] = None,
    layers: Annotated[
        str | None, typer.Option(help="Encoder widths, e.g. 512,256,64 (decoder mirrors).")
    ] = None,
    optimizer: Annotated[str | None, typer.Option(help="adam, adamw or sgd.")] = None,
    lr_schedule: Annotated[str | None, typer.Option(help="none, step or cosine.")] = None,
    patience: Annotated[
        int | None,
        typer.Option(help="Stop after N epochs without validation improvement (0 = off)."),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (0 = all cores).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
) -> None:
    """Train a model: `auto` (the default) chooses from the data's shape and the time budget;
    `--preset seed` is the published autoencoder."""
    try:
        budget_seconds = parse_duration(time_budget) if time_budget is not None else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--time-budget") from None
    if split is not None and split not in PROTOCOLS:
        raise typer.BadParameter(f"{split!r} is not one of {', '.join(PROTOCOLS)}",
                                 param_hint="--split")
    if epochs is not None and steps is not None:
        raise typer.BadParameter(
            f"--epochs {epochs} and --steps {steps} both say how long to train; give one "
            "(--steps counts optimiser steps, and its epochs follow from the data's size)",
            param_hint="--epochs",
        )
    overrides = {
        "epochs": epochs, "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
        "weight_decay": weight_decay, "dropout": dropout, "activation": activation,
        "layers": layers, "optimizer": optimizer, "lr_schedule": lr_schedule,
        "patience": patience, "threads": threads, "device": device,
        "time_budget": budget_seconds, "split_protocol": split,
        "holdout_fraction": holdout_fraction,
    }
    given = sorted(k for k, v in overrides.items() if v is not None)
    if resume and config_file is None and preset is None:
        config = read_run_config(out).replace(**explicit_epochs(overrides))
    else:
        config = resolve_config(preset, config_file, overrides)
    _refuse_ignored(config, given)
    started = time.time()
    ds = load_dataset(dataset)  # memory-mapped: cheap; train() reuses it
    _check_memory(config, ds)
    _check_writable(out)
    for stale in remove_stale_temporaries(out, started):
        console.print(f"[dim]removed {stale}, left by an interrupted write[/]", highlight=False,
                      soft_wrap=True)
    verb = "resuming" if resume else "training"
    console.print(f"[bold]{verb}[/] {dataset} → {out}", highlight=False, soft_wrap=True)
    console.print(f"  {_describe(config)}", highlight=False, soft_wrap=True)

    display = TrainDisplay()
    try:
        with display.showing():
            result = train(ds, out, config, resume=resume, callback=display)
    except TrainingDiverged as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        err_console.print(
            f"[yellow]interrupted; completed epochs are saved — continue with "
            f"`aerec train {dataset} --out {out} --resume`[/]",
            highlight=False,
        )
        raise
    _summary(result)


def _refuse_ignored(config: TrainConfig, given: list[str]) -> None:
    """Refuse (naming them) options the resolved ``config`` would silently ignore: model
    settings under ``auto`` (it plans its own models) or an ensemble (each member keeps its
    preset's), and settings of another model family (``--lr`` for Bayesian MF)."""
    if config.kind is None:  # auto
        ignored = [k for k in given if k not in RUN_SETTINGS | {"seed"}]
        why = ("the preset auto chooses its models itself; name the model, e.g. --preset seed "
               "(the published autoencoder)")
    elif config.members:
        ignored = [k for k in given if k not in RUN_SETTINGS]
        why = (f"an ensemble trains each member ({', '.join(config.members)}) with its own "
               f"settings; train a member alone, e.g. --preset {config.members[0]}")
    else:
        applies = set(config.stored())
        ignored = [k for k in given if k not in applies]
        why = f"{config.kind} does not use them ({config.describe()})"
    if ignored:
        raise typer.BadParameter(
            f"{', '.join(_option(k) for k in ignored)} set(s) a model's training, but {why}",
            param_hint="--preset",
        )
    if "holdout_fraction" in given and config.split_protocol != "user":
        raise typer.BadParameter(
            f"--holdout-fraction applies to --split user only (the split is "
            f"{config.split_protocol})", param_hint="--holdout-fraction",
        )


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to the main ``aerec`` app."""
    app.command("train")(_train)
