"""``aerec demo``: the main job end to end on the embedded default (generated Netflix data).

Each step is the same ``aerec`` command a user would type, printed before it runs, so the
demo doubles as a walkthrough: generate, prepare, train the published network (``seed``) and
the default model (``auto``, within a time budget), evaluate both in one table beside the
baselines, say in words what that table shows (:func:`what_the_table_shows`), and recommend
from the default model.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from aerec.cli.common import console
from aerec.cli.data import synth_shape

#: The default model's time budget in the demo: the whole demo takes about two minutes on 2
#: cores (generation and preparation take seconds, the published network's 30 epochs about
#: 40 s, evaluation and recommendation a few seconds each).
DEFAULT_BUDGET = "60s"


def _step(title: str, argv: list[str]) -> None:
    from aerec.cli import app

    console.rule(f"[bold]{title}")
    console.print(f"[dim]$ aerec {shlex.join(argv)}[/]", highlight=False)
    app(args=argv, prog_name="aerec", standalone_mode=False)


def _demo(
    out: Path = typer.Option(Path("work/demo"), "--out", "-o", help="Working folder for the demo."),
    shape: str | None = typer.Option(
        None, "--shape", help="Shape of the generated data: demo (the default), tiny, "
        "netflix-quarter."
    ),
    epochs: int = typer.Option(30, "--epochs", help="Training epochs (the published run: 30)."),
    time_budget: str = typer.Option(
        DEFAULT_BUDGET, "--time-budget", help="Time budget of the default model (preset auto)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed for data and training."),
    preset: str | None = typer.Option(None, "--preset", hidden=True,
                                      help="Deprecated name of --shape."),
) -> None:
    """Run the main job end to end: generate, prepare, train the published network and the
    default model, evaluate both beside the baselines, recommend."""
    shape = synth_shape(shape, preset)
    raw, dataset = out / "raw", out / "dataset"
    run, auto = out / "run", out / "auto"  # the published network, the default model
    _step(
        "1. generate Netflix-format data",
        ["data", "synth", "--out", str(raw), "--shape", shape, "--seed", str(seed), "--force"],
    )
    _step(
        "2. prepare the sparse dataset",
        ["data", "prepare", str(raw / "combined_data_1.txt"), "--out", str(dataset), "--force"],
    )
    _step("3. dataset statistics", ["data", "info", str(dataset)])
    for old in (run, auto):  # an earlier demo's runs (train refuses to overwrite a run)
        if (old / "last.pt").exists() or (old / "best.pt").exists():
            import shutil

            shutil.rmtree(old)
    _step(
        "4. train the published autoencoder (preset seed, exactly as published)",
        ["train", str(dataset), "--out", str(run), "--preset", "seed", "--epochs", str(epochs),
         "--seed", str(seed)],
    )
    _step(
        f"5. train the default model (preset auto, time budget {time_budget})",
        ["train", str(dataset), "--out", str(auto), "--time-budget", time_budget,
         "--seed", str(seed)],
    )
    _step(
        "6. evaluate both on the same test split, beside the baselines",
        ["evaluate", str(run), str(auto), "--name", "seed", "--name", "auto"],
    )
    console.rule("[bold]7. what the table shows")
    for line in what_the_table_shows(run, auto, raw):
        console.print(f"• {line}", highlight=False)
    _step(
        "8. top-10 for a new user who rated five movies (the default model)",
        ["recommend", str(auto), *_sample_new_user(dataset, seed)],
    )


def what_the_table_shows(run: Path, auto: Path, raw: Path | None = None) -> list[str]:
    """The evaluation of the published network (``run``) and the default model (``auto``) in
    words, from what ``aerec evaluate`` recorded in their run directories: which model wins
    on rating error and on top-N lists, and where a model is below a baseline (and why, for the
    published network). ``raw``'s ``synth.json`` adds the generator's noise floor."""
    import json
    import math

    from aerec.checkpoint import load_checkpoint
    from aerec.quality import BIAS_BASELINE, POPULARITY, read_record

    entries = {name: read_record(path)["checkpoints"].get("best.pt")
               for name, path in (("seed", run), ("auto", auto))}
    if any(e is None for e in entries.values()):
        return ["no evaluation was recorded (aerec evaluate writes RUN/evaluation.json)"]

    def metrics(row: dict) -> dict:  # a metric a row lacks (None) never wins nor beats
        rmse, ndcg = row.get("rmse"), row.get("ndcg")
        return {"rmse": math.inf if rmse is None else rmse,
                "ndcg": -math.inf if ndcg is None else ndcg}

    rows = {name: metrics(e["model"]) for name, e in entries.items()}
    baselines = entries["auto"]["baselines"]
    bias, popular = metrics(baselines[BIAS_BASELINE]), metrics(baselines[POPULARITY])
    k = entries["auto"]["k"]
    lines = []

    best = min(rows, key=lambda name: rows[name]["rmse"])
    floor = ""
    synth = raw / "synth.json" if raw is not None else None
    if synth is not None and synth.is_file():
        noise = json.loads(synth.read_text()).get("noise_floor_rmse")
        if noise is not None and math.isfinite(noise):
            floor = (f"; no model can go below about {noise:.3f} on this data (the generator's "
                     "noise floor: the RMSE of its own noise-free expected ratings)")
    if rows[best]["rmse"] < bias["rmse"]:
        lines.append(
            f"Lowest rating error: {best} (RMSE {rows[best]['rmse']:.4f}), "
            f"{bias['rmse'] - rows[best]['rmse']:.4f} below the bias baseline's "
            f"{bias['rmse']:.4f}{floor}."
        )
    else:
        lines.append(f"No model beats the bias baseline's RMSE {bias['rmse']:.4f} here{floor}.")
    top = max(rows, key=lambda name: rows[name]["ndcg"])
    if rows[top]["ndcg"] > popular["ndcg"]:
        lines.append(f"Best top-{k} lists: {top} (NDCG@{k} {rows[top]['ndcg']:.4f} against "
                     f"popularity's {popular['ndcg']:.4f}).")
    else:
        lines.append(f"No model's top-{k} lists beat popularity's (NDCG@{k} "
                     f"{popular['ndcg']:.4f}) here.")

    seed_row = rows["seed"]
    below = []
    if seed_row["rmse"] >= bias["rmse"]:
        below.append(f"RMSE {seed_row['rmse']:.4f} against the bias baseline's "
                     f"{bias['rmse']:.4f}")
    if seed_row["ndcg"] <= popular["ndcg"]:
        below.append(f"NDCG@{k} {seed_row['ndcg']:.4f} against popularity's "
                     f"{popular['ndcg']:.4f}")
    if below:
        ckpt = load_checkpoint(run / "best.pt")
        batch, epochs = ckpt.config.batch_size, ckpt.config.epochs
        steps = -(-ckpt.stats.n_users // batch) * epochs
        lines.append(
            "The published network (seed) is below the baselines: " + " and ".join(below)
            + f". Its recipe (Adam at learning rate {ckpt.config.lr:g}, batches of {batch} "
            f"users, {epochs} epochs) makes only {steps:,} optimiser steps on these "
            f"{ckpt.stats.n_users:,} training users — too few to learn much more than the "
            "average rating; it was published for Netflix's 480,000 users. It stays exactly as "
            "published (--preset seed); auto is the default."
        )
    else:
        lines.append(f"The published network (seed) beats both baselines (RMSE "
                     f"{seed_row['rmse']:.4f}, NDCG@{k} {seed_row['ndcg']:.4f}).")
    if rows["auto"]["rmse"] >= bias["rmse"] or rows["auto"]["ndcg"] <= popular["ndcg"]:
        lines.append("The default model (auto) is below a baseline too: give it more time "
                     "(--time-budget).")
    return lines


def _sample_new_user(dataset: Path, seed: int) -> list[str]:
    """``--rate`` options for a plausible new user: three movies a real user of the generated
    data loved and two they disliked, named by title where ``aerec recommend``'s forgiving title
    match finds exactly that movie (else by id: "Iron Journey" also matches "The Iron
    Journey")."""
    import numpy as np

    from aerec.data.store import load_dataset
    from aerec.recommend.catalogue import Catalogue

    ds = load_dataset(dataset)
    m = ds.matrix
    counts = np.diff(m.indptr)
    rng = np.random.default_rng(seed)
    user = int(rng.choice(np.flatnonzero((counts >= 15) & (counts <= 60))))
    cols = m.indices[m.indptr[user] : m.indptr[user + 1]]
    stars = m.data[m.indptr[user] : m.indptr[user + 1]]
    order = np.argsort(-stars, kind="stable")
    picked = [*order[:3], *order[-2:]]
    n_movies = len(ds.movie_ids)
    catalogue = Catalogue(ds.movie_ids, ds.titles, ds.years,
                          np.bincount(m.indices, minlength=n_movies), np.zeros(n_movies))
    args = []
    for i in picked:
        col = int(cols[i])
        name = str(int(ds.movie_ids[col]))
        title = ds.titles[col]
        try:
            if title and catalogue.resolve_column(title) == col:
                name = title
        except ValueError:  # an ambiguous title (or none): the id it is
            pass
        args += ["--rate", f"{name}={stars[i]:g}"]
    return args


def register(app: typer.Typer) -> None:
    app.command("demo")(_demo)
