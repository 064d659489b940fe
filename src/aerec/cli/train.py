"""``aerec train``: train the autoencoder on a prepared dataset, with live progress.

A thin layer over :func:`aerec.train.train`: it resolves the configuration (preset → file →
options), draws a progress bar within each epoch and a table of epoch metrics, and ends with
the best training and validation loss/RMSE and any warnings.
"""

from __future__ import annotations

import math
import tempfile
import time
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
from aerec.config import PRESETS, TrainConfig, resolve_config
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

#: What each preset is, for ``--help``.
PRESET_DESCRIPTIONS = {
    "auto": "default: chosen from the data's shape and --time-budget (10m)",
    "seed": "the published user-based autoencoder, exactly",
    "item": "item-based AutoRec (I-AutoRec)",
    "item-denoising": "I-AutoRec trained as a denoiser",
    "item-denoising-300": "the same with 300 units (an ensemble member)",
    "user-centred": "user-based AutoRec on the residual of user and movie biases",
    "bayesian-mf": "Bayesian matrix factorisation (Gibbs sampling)",
    "robust-bayesian-mf": "the same with per-user and per-movie noise",
    "audience-bayesian-mf": "robust, with the audience prior",
    "deep": "DeepRecommender-style deep autoencoder",
    "best": "small-data ensemble: item autoencoders + audience Bayesian MF",
}
PRESET_HELP = "Named configuration: " + "; ".join(
    f"{name} ({PRESET_DESCRIPTIONS.get(name, '')})" for name in PRESETS
) + "."

#: Epoch rows kept on screen in the live table (the best epoch is always shown).
TABLE_ROWS = 15


def _num(value: float, digits: int = 4) -> str:
    return "—" if not math.isfinite(value) else f"{value:.{digits}f}"


class TrainDisplay:
    """Turns training events into a rich progress bar and an epoch table."""

    def __init__(self) -> None:
        self.history: list[EpochMetrics] = []
        self.best_epoch = 0
        self.epochs = 0
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

    def __rich__(self) -> Group:
        return Group(self.table(), self.progress)

    def table(self) -> Table:
        table = Table(title=None, show_edge=False, header_style="bold")
        for name in ("epoch", "train loss", "train RMSE", "val loss", "val RMSE", "seconds"):
            table.add_column(name, justify="right")
        rows = self.history[-TABLE_ROWS:]
        best = next((m for m in self.history if m.epoch == self.best_epoch), None)
        if best is not None and best not in rows:
            rows = [best, *rows[1:]]
        for m in rows:
            style = "bold green" if m.epoch == self.best_epoch else None
            table.add_row(*self.cells(m), style=style)
        if len(self.history) > TABLE_ROWS:
            table.caption = f"last {TABLE_ROWS} of {len(self.history)} epochs; best in green"
        return table

    @staticmethod
    def cells(m: EpochMetrics) -> list[str]:
        return [
            str(m.epoch), _num(m.train_loss), _num(m.train_rmse), _num(m.val_loss),
            _num(m.val_rmse), f"{m.seconds:.1f}",
        ]

    def __call__(self, event: TrainEvent) -> None:
        if isinstance(event, MemberStarted):
            self.live.console.print(
                f"\n[bold]member {event.number}/{event.members}: {event.name}[/] — "
                f"{_describe(member_config(event.name, TrainConfig()))} → {event.run_dir}",
                highlight=False,
            )
            self.history, self.best_epoch = [], 0
        elif isinstance(event, StageStarted):
            self.live.console.print(
                f"  [bold]{event.stage}[/]" + (f": {event.detail}" if event.detail else ""),
                highlight=False,
            )
        elif isinstance(event, RunStarted):
            self.epochs = event.epochs
            self.history = list(event.history)
            if self.history:
                self.best_epoch = self.history[best_index(self.history)].epoch
            self._new_epoch(event.start_epoch, event.batches_per_epoch)
        elif isinstance(event, BatchFinished):
            self.progress.update(self.task, completed=event.batch, loss=f"{event.loss:.4f}")
        elif isinstance(event, EpochFinished):
            self.history.append(event.metrics)
            self.best_epoch = event.best_epoch
            if not console.is_terminal:
                console.print("epoch " + "  ".join(self.cells(event.metrics)), highlight=False)
            self._new_epoch(event.metrics.epoch + 1, int(self.progress.tasks[0].total or 1))
        self.live.refresh()

    def header(self) -> None:
        """The table's column names, once, for logs that are not a terminal."""
        if not console.is_terminal:
            console.print("epoch  train_loss  train_RMSE  val_loss  val_RMSE  seconds",
                          highlight=False)

    def _new_epoch(self, epoch: int, batches: int) -> None:
        if epoch > self.epochs:  # the run is over: leave the bar full
            self.progress.update(self.task, completed=batches)
            return
        self.progress.reset(self.task, total=batches, epoch=epoch, epochs=self.epochs, loss="—")


def _describe(config: TrainConfig) -> str:
    """One line that says what ``config`` trains, and its time budget."""
    budget = (f", time budget {format_duration(config.time_budget)}"
              if config.time_budget else "")
    return config.describe() + budget


def _summary(result: TrainResult) -> None:
    members = result.notes.get("member_summary")
    if members:
        console.print(f"\n[bold]ensemble of {len(members)}[/] · {result.seconds:.1f} s",
                      highlight=False)
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
            highlight=False,
        )
    else:
        console.print(
            f"\n[bold]best epoch {result.best_epoch}[/] of {result.epochs_completed}"
            + (" (stopped early)" if result.stopped_early else "")
            + f" · {result.seconds:.1f} s",
            highlight=False,
        )
        console.print(
            f"  best training loss   {_num(result.best_train_loss)} · RMSE "
            f"{_num(result.best_train_rmse)}",
            highlight=False,
        )
        console.print(
            f"  best validation loss {_num(result.best_val_loss)} · RMSE "
            f"{_num(result.best_val_rmse)}   (predicting the training mean: "
            f"{_num(result.baseline_val_rmse)})",
            highlight=False,
        )
    budget = result.notes.get("budget")
    if budget:
        console.print(
            f"  time budget {format_duration(budget['seconds'])}: used "
            f"{format_duration(budget['seconds_used'])}",
            highlight=False,
        )
        for line in budget["trained"]:
            console.print(f"    trained {line}", highlight=False)
        for line in budget["skipped"]:
            console.print(f"    [yellow]skipped[/] {line}", highlight=False)
    files = [p.name for p in (result.best_checkpoint, result.last_checkpoint,
                              result.metrics_path, result.curve_path) if p.is_file()]
    console.print(f"  run directory {result.run_dir}: {', '.join(files)}", highlight=False)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


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
    epochs: Annotated[int | None, typer.Option(help="Passes over the training users.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Users per optimiser step.")] = None,
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
    overrides = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
        "weight_decay": weight_decay, "dropout": dropout, "activation": activation,
        "layers": layers, "optimizer": optimizer, "lr_schedule": lr_schedule,
        "patience": patience, "threads": threads, "device": device,
        "time_budget": budget_seconds,
    }
    if resume and config_file is None and preset is None:
        config = read_run_config(out).replace(**overrides)
    else:
        config = resolve_config(preset, config_file, overrides)
        model_options = sorted(
            k for k, v in overrides.items()
            if v is not None and k not in ("threads", "device", "seed", "time_budget")
        )
        if config.model == "auto" and model_options:
            # auto plans its own models: a model setting would be silently ignored
            raise typer.BadParameter(
                f"{', '.join('--' + k.replace('_', '-') for k in model_options)} set(s) a "
                "model's training, but the preset auto chooses its models itself; name the "
                "model, e.g. --preset seed (the published autoencoder)",
                param_hint="--preset",
            )
    started = time.time()
    ds = load_dataset(dataset)  # memory-mapped: cheap; train() reuses it
    _check_memory(config, ds)
    _check_writable(out)
    for stale in remove_stale_temporaries(out, started):
        console.print(f"[dim]removed {stale}, left by an interrupted write[/]", highlight=False,
                      soft_wrap=True)
    verb = "resuming" if resume else "training"
    console.print(f"[bold]{verb}[/] {dataset} → {out}", highlight=False)
    console.print(f"  {_describe(config)}", highlight=False)

    display = TrainDisplay()
    display.header()
    try:
        with display.live:
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


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to the main ``aerec`` app."""
    app.command("train")(_train)
