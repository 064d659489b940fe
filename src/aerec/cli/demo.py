"""``aerec demo``: the main job end to end on the embedded default (generated Netflix data).

Each step is the same ``aerec`` command a user would type, printed before it runs, so the
demo doubles as a walkthrough.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from aerec.cli.common import console


def _step(title: str, argv: list[str]) -> None:
    from aerec.cli import app

    console.rule(f"[bold]{title}")
    console.print(f"[dim]$ aerec {shlex.join(argv)}[/]", highlight=False)
    app(args=argv, prog_name="aerec", standalone_mode=False)


def _demo(
    out: Path = typer.Option(Path("work/demo"), "--out", "-o", help="Working folder for the demo."),
    preset: str = typer.Option("demo", "--preset", help="Synthetic data preset."),
    epochs: int = typer.Option(30, "--epochs", help="Training epochs (the published run: 30)."),
    seed: int = typer.Option(0, "--seed", help="Random seed for data and training."),
) -> None:
    """Run the main job end to end: generate, prepare, train, evaluate, recommend."""
    raw, dataset, run = out / "raw", out / "dataset", out / "run"
    _step(
        "1. generate Netflix-format data",
        ["data", "synth", "--out", str(raw), "--preset", preset, "--seed", str(seed), "--force"],
    )
    _step(
        "2. prepare the sparse dataset",
        ["data", "prepare", str(raw / "combined_data_1.txt"), "--out", str(dataset), "--force"],
    )
    _step("3. dataset statistics", ["data", "info", str(dataset)])
    run_args = ["--epochs", str(epochs), "--seed", str(seed)]
    if (run / "last.pt").exists():
        import shutil

        shutil.rmtree(run)
    _step(
        "4. train the published autoencoder (preset seed, 80/20 split)",
        ["train", str(dataset), "--out", str(run), "--preset", "seed", *run_args],
    )
    _step("5. evaluate on the test split, beside baselines", ["evaluate", str(run)])
    _step(
        "6. top-10 for a new user who rated five movies",
        ["recommend", str(run), *_sample_new_user(dataset, seed)],
    )


def _sample_new_user(dataset: Path, seed: int) -> list[str]:
    """``--rate`` options for a plausible new user: three movies a real user of the generated
    data loved and two they disliked, named by title where the title is unique."""
    from collections import Counter

    import numpy as np

    from aerec.data.store import load_dataset

    ds = load_dataset(dataset)
    m = ds.matrix
    counts = np.diff(m.indptr)
    rng = np.random.default_rng(seed)
    user = int(rng.choice(np.flatnonzero((counts >= 15) & (counts <= 60))))
    cols = m.indices[m.indptr[user] : m.indptr[user + 1]]
    stars = m.data[m.indptr[user] : m.indptr[user + 1]]
    order = np.argsort(-stars, kind="stable")
    picked = [*order[:3], *order[-2:]]
    title_counts = Counter(ds.titles)
    args = []
    for i in picked:
        col = int(cols[i])
        title = ds.titles[col]
        name = title if title and title_counts[title] == 1 else str(int(ds.movie_ids[col]))
        args += ["--rate", f"{name}={stars[i]:g}"]
    return args


def register(app: typer.Typer) -> None:
    app.command("demo")(_demo)
