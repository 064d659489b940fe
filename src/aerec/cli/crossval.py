"""``aerec cross-validate SOURCE``: train a preset on k folds and show every fold's RMSE, MAE and
NDCG@k beside the baselines, then their mean ± std — a thin layer over
:func:`aerec.crossval.cross_validate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from aerec.cli.common import console


def _metric(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:.4f}"


def render_folds(cv: object) -> Table:
    """Per fold, each row's RMSE, MAE and NDCG@k (and the model's training seconds)."""
    k = cv.k  # type: ignore[attr-defined]
    table = Table(title="per fold (test split of each)", title_justify="left")
    for name, justify in (("fold", "left"), ("model", "left"), ("RMSE", "right"),
                          ("MAE", "right"), (f"NDCG@{k}", "right"), ("train s", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for f in cv.folds:  # type: ignore[attr-defined]
        for i, r in enumerate(f.report.results):
            table.add_row(
                f.name if i == 0 else "", r.name, _metric(r.rmse), _metric(r.mae),
                _metric(r.ndcg), f"{f.train_seconds:.1f}" if r.kind == "model" else "",
                end_section=i == len(f.report.results) - 1,
            )
    return table


def render_summary(cv: object) -> Table:
    """Each row's mean ± std over the folds."""
    from aerec.crossval import mean_std

    k = cv.k  # type: ignore[attr-defined]
    n = len(cv.folds)  # type: ignore[attr-defined]
    table = Table(title=f"mean ± std over {n} folds", title_justify="left")
    for name, justify in (("model", "left"), ("kind", "left"), ("RMSE", "right"),
                          ("MAE", "right"), (f"NDCG@{k}", "right")):
        table.add_column(name, justify=justify, style="bold" if name == "model" else None)  # type: ignore[arg-type]
    for row in cv.summary():  # type: ignore[attr-defined]
        table.add_row(row["name"], row["kind"],
                      *(mean_std(row, m) for m in ("rmse", "mae", "ndcg")))
    return table


def _cross_validate(
    source: Annotated[
        Path,
        typer.Argument(help="MovieLens 100K folder (its u1 … u5 folds), a prepared dataset, or "
                       "rating files (a seeded k-fold split)."),
    ],
    preset: Annotated[str | None, typer.Option(help="Preset trained on every fold "
                                               "(default auto).")] = None,
    folds: Annotated[int, typer.Option("--folds", min=2, help="Number of folds.")] = 5,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Keep every fold's data and run here, with "
                     "crossval.json and crossval.csv (default: a temporary folder)."),
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML configuration file.")
    ] = None,
    time_budget: Annotated[
        str | None, typer.Option("--time-budget", help="Per fold, e.g. 90s, 10m (auto: 10m).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (a named preset only).")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (0 = all cores).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the k-fold shuffle.")] = 0,
    k: Annotated[int, typer.Option("--k", min=1, help="Length of the top-N list.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace runs already in --out.")] = False,
) -> None:
    """Cross-validate a preset: train it on each fold, score each fold's test split beside the
    baselines, and show per-fold and mean ± std RMSE, MAE and NDCG@k."""
    from aerec.crossval import cross_validate

    settings = {key: value for key, value in (("epochs", epochs), ("threads", threads))
                if value is not None}
    options = {"folds": folds, "out": out, "seed": seed, "k": k, "config": config_file,
               "time_budget": time_budget, "overwrite": force, **settings}
    if as_json:
        cv = cross_validate(source, preset, **options)
        print(json.dumps(cv.to_dict(), indent=2, ensure_ascii=False))
        return
    with console.status(f"cross-validating on {source} …") as status:
        cv = cross_validate(source, preset, progress=lambda line: (
            console.print(f"  {line}", highlight=False), status.update(line)), **options)
    console.print(render_folds(cv))
    console.print(render_summary(cv))
    for warning in cv.warnings():
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    where = f" · wrote {', '.join(cv.files)}" if cv.files else ""
    console.print(f"[dim]{cv.seconds:.1f} s{where}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``aerec cross-validate`` to the ``aerec`` app."""
    app.command("cross-validate")(_cross_validate)
