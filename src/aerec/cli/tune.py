"""``aerec tune DATASET --out DIR --budget-minutes N``: search hyper-parameters on validation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from aerec.cli.common import console


def _tune(
    dataset: Annotated[
        Path, typer.Argument(help="Prepared dataset directory (aerec data prepare).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the search's files.")],
    budget_minutes: Annotated[
        float, typer.Option("--budget-minutes", min=0.01, help="Wall-time budget in minutes.")
    ],
    trials: Annotated[
        int | None, typer.Option("--trials", min=1, help="At most this many trials.")
    ] = None,
    space: Annotated[
        str, typer.Option("--space", help="Search space: item, user, deep or bayesian.")
    ] = "item",
    seed: Annotated[int, typer.Option(help="Seed of the random draws.")] = 0,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads per trial (0 = all cores).")
    ] = None,
) -> None:
    """Random search on the validation split (the test split is never read).

    The first trial is the space's base preset. Every trial is recorded in DIR/trials.csv
    (and trials.jsonl); the best configuration is written to DIR/best.toml, ready for
    `aerec train DATASET --config DIR/best.toml`.
    """
    from aerec.tune import SPACES, tune

    if space not in SPACES:
        raise ValueError(f"unknown search space {space!r}; choose one of {', '.join(SPACES)}")
    overrides = {"threads": threads} if threads is not None else None
    console.print(
        f"[bold]tuning[/] {dataset} → {out} · space {space} ({SPACES[space].description}) · "
        f"budget {budget_minutes:g} min" + (f" · at most {trials} trials" if trials else ""),
        highlight=False,
    )

    def show(trial) -> None:
        rmse = "diverged" if not math.isfinite(trial.val_rmse) else f"{trial.val_rmse:.4f}"
        changes = ", ".join(f"{k}={v}" for k, v in trial.changes.items()) or "(base preset)"
        console.print(
            f"  trial {trial.number:3d}  val RMSE {rmse}  epoch {trial.best_epoch}/"
            f"{trial.epochs}  {trial.seconds:6.1f} s  {changes}",
            highlight=False,
        )

    result = tune(dataset, out, budget_minutes=budget_minutes, trials=trials, space=space,
                  seed=seed, overrides=overrides, on_trial=show)
    table = Table(title=f"{len(result.trials)} trials in {result.seconds / 60:.1f} min",
                  title_justify="left")
    for column in ("trial", "val RMSE", "best epoch", "seconds", "changes"):
        table.add_column(column, justify="left" if column == "changes" else "right")
    for t in sorted(result.trials, key=lambda t: (not math.isfinite(t.val_rmse), t.val_rmse)):
        table.add_row(
            str(t.number), "—" if not math.isfinite(t.val_rmse) else f"{t.val_rmse:.4f}",
            str(t.best_epoch), f"{t.seconds:.1f}",
            ", ".join(f"{k}={v}" for k, v in t.changes.items()) or "(base preset)",
            style="bold green" if t is result.best else None,
        )
    console.print(table)
    console.print(
        f"best: trial {result.best.number}, validation RMSE {result.best.val_rmse:.4f} → "
        f"{result.best_config_path}  (train it: aerec train {dataset} --config "
        f"{result.best_config_path} --out RUN)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``aerec tune`` to the ``aerec`` app."""
    app.command("tune")(_tune)
