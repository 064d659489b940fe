"""``aerec demo``: the main job end to end on the embedded default (generated Netflix data)."""

from __future__ import annotations

from pathlib import Path

import typer

from aerec.cli.common import console


def _demo(
    out: Path = typer.Option(Path("work/demo"), "--out", "-o", help="Working folder for the demo."),
    preset: str = typer.Option("demo", "--preset", help="Synthetic data preset."),
    seed: int = typer.Option(0, "--seed", help="Random seed for data and training."),
) -> None:
    """Generate Netflix-format data, prepare it, and show its statistics (then train, evaluate
    and recommend, as those stages exist)."""
    from aerec.cli import data as data_cli

    raw, prepared = out / "raw", out / "dataset"
    console.rule("[bold]1. generate Netflix-format data")
    data_cli._synth(
        out=raw, preset=preset, users=None, movies=None, ratings=None, seed=seed, force=True
    )
    console.rule("[bold]2. prepare the sparse dataset")
    data_cli._prepare(
        paths=[raw / "combined_data_1.txt"],
        out=prepared,
        test=None,
        fmt=None,
        titles=None,
        scale=None,
        skip_bad_lines=False,
        force=True,
    )
    console.rule("[bold]3. dataset statistics")
    data_cli._info(dataset=prepared, as_json=False)


def register(app: typer.Typer) -> None:
    app.command("demo")(_demo)
