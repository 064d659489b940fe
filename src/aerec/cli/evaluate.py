"""``aerec evaluate RUN``: the test-split table (model and baselines) for a training run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from aerec.cli.common import console, fmt_int


def _metric(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    if math.isnan(value):  # nothing to average over
        return "n/a"
    return f"{value:.{digits}f}"


def render_report(report: object) -> Table:
    """A rich table of an :class:`aerec.evaluate.EvaluationReport`: one row per model/baseline."""
    k = report.k  # type: ignore[attr-defined]
    table = Table(
        title=(
            f"test split: {fmt_int(report.test_ratings)} ratings, "  # type: ignore[attr-defined]
            f"{fmt_int(report.test_users)} users · relevant ≥ "  # type: ignore[attr-defined]
            f"{report.relevance_threshold:g}"  # type: ignore[attr-defined]
        ),
        title_justify="left",
    )
    table.add_column("model", style="bold")
    table.add_column("kind")
    for label in ("RMSE", "MAE", f"P@{k}", f"R@{k}", f"NDCG@{k}"):
        table.add_column(label, justify="right")
    for r in report.results:  # type: ignore[attr-defined]
        table.add_row(
            r.name,
            r.kind,
            _metric(r.rmse),
            _metric(r.mae),
            _metric(r.precision),
            _metric(r.recall),
            _metric(r.ndcg),
        )
    return table


def _evaluate(
    runs: Annotated[
        list[Path],
        typer.Argument(help="Run directories written by `aerec train` (several: one table; "
                       "they must share their dataset and split)."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    k: Annotated[
        int, typer.Option("--k", min=1, help="Length of the top-N list for P/R/NDCG.")
    ] = 10,
    checkpoint: Annotated[
        str, typer.Option("--checkpoint", help="Which checkpoint of the run: best or last.")
    ] = "best",
    dataset: Annotated[
        Path | None,
        typer.Option("--dataset", help="Prepared dataset, if it moved since training."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Users scored at a time.")
    ] = 512,
    names: Annotated[
        list[str] | None,
        typer.Option("--name", help="Table name of each run, in order (repeat per run)."),
    ] = None,
) -> None:
    """RMSE/MAE and Precision/Recall/NDCG@k on the test split, beside the baselines.

    Each test user's input is all of their non-test ratings.
    Movies a user already rated are never recommended.
    The bias baseline's regularisation is chosen on the validation split.
    A model no better than the bias baseline (RMSE) or popularity (NDCG@k) gets a warning,
    which is also kept in its run directory (evaluation.json) for `aerec recommend`.
    """
    from aerec.evaluate import evaluate_runs, quality_warnings

    if checkpoint not in ("best", "last"):
        raise ValueError(f"--checkpoint must be best or last, got {checkpoint!r}")
    options = {"k": k, "batch_size": batch_size, "checkpoint": checkpoint, "dataset": dataset,
               "names": names or None, "record": True}
    if as_json:
        report = evaluate_runs(runs, **options)
        print(json.dumps(report.to_dict(), indent=2))
        return
    where = runs[0] if len(runs) == 1 else f"{len(runs)} runs"
    with console.status(f"evaluating {where} on the test split …"):
        report = evaluate_runs(runs, **options)
    console.print(render_report(report))
    try:
        bias = report.result("bias baseline")
    except KeyError:
        bias = None
    if bias is not None and "regularisation" in bias.notes:
        console.print(
            f"bias baseline λ = {bias.notes['regularisation']:g} (chosen on the validation split)",
            highlight=False,
        )
    for warning in quality_warnings(report):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    evaluated = [str(r.notes["checkpoint"]) for r in report.results if r.kind == "model"]
    console.print(f"[dim]{', '.join(evaluated)} · {report.seconds:.1f} s[/]", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``aerec evaluate`` to the ``aerec`` app."""
    app.command("evaluate")(_evaluate)
