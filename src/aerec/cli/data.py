"""``aerec data prepare | info | synth``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table

from aerec.cli.common import UserError, console, fmt_int, renamed_option


@contextmanager
def _writing(out: Path) -> Iterator[None]:
    """An operating-system error while writing ``out`` (read-only file system, no permission,
    disk full, a parent that cannot hold folders …) becomes one line naming it instead of a
    traceback. Input errors are already one line (the readers raise DataFormatError, and
    FileNotFoundError for a missing input, which carries no ``filename``)."""
    try:
        yield
    except FileExistsError:
        raise
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and not exc.filename:
            raise
        at = Path(str(exc.filename)) if exc.filename else None
        where = f" ({at})" if at is not None and at.parent != out.parent and at != out else ""
        raise UserError(f"cannot write {out}: {exc.strerror or exc}{where}") from None


def _prepare(
    paths: list[Path] = typer.Argument(
        ...,
        help="Rating files or folders: combined_data_*.txt, training_set/, probe.txt, "
        "qualifying.txt, movie_titles.csv, u.data, ratings.dat, ratings.csv, or any "
        "user,item,rating CSV.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Prepared dataset directory to write."),
    test: Path | None = typer.Option(
        None, "--test", help="Fixed test split: a rating file (e.g. u1.test) or Netflix probe.txt."
    ),
    fmt: str | None = typer.Option(
        None,
        "--format",
        help="Force the rating format: netflix, netflix-training-set, ml-100k, "
        "ml-dat, ml-csv, generic.",
    ),
    titles: Path | None = typer.Option(None, "--titles", help="Titles file, if not beside."),
    scale: str | None = typer.Option(
        None,
        "--scale",
        help="Rating scale MIN:MAX[:STEP] (e.g. 0.5:5:0.5, 1:100); default: the "
        "format's own or inferred.",
    ),
    skip_bad_lines: bool = typer.Option(
        False,
        "--skip-bad-lines",
        help="Skip (and count) malformed lines and duplicate pairs "
        "instead of stopping at the first.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """Read raw rating files into a prepared, memory-mappable sparse dataset."""
    from aerec.data.prepare import prepare_paths

    with _writing(out), console.status(f"reading {', '.join(map(str, paths))} …"):
        report = prepare_paths(
            paths,
            out,
            test=test,
            fmt=fmt,
            titles=titles,
            scale=scale,
            skip_bad_lines=skip_bad_lines,
            overwrite=force,
        )
    console.print(
        f"[green]prepared[/] {report.path}: {fmt_int(report.users)} users, "
        f"{fmt_int(report.movies)} movies, {fmt_int(report.ratings)} ratings"
        + (
            f" ({fmt_int(report.test_ratings)} in the fixed test split)"
            if report.test_ratings
            else ""
        )
        + f" in {report.seconds:.1f} s"
    )
    if report.skipped_lines or report.duplicates_dropped:
        console.print(
            f"[yellow]skipped[/] {fmt_int(report.skipped_lines)} bad line(s) and "
            f"{fmt_int(report.duplicates_dropped)} duplicate pair(s)"
        )


def _info(
    dataset: Path = typer.Argument(..., help="Prepared dataset directory."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Users, movies, ratings, sparsity, rating histogram, per-user/movie counts, dates."""
    from aerec.data.info import dataset_stats
    from aerec.data.store import load_dataset

    stats = dataset_stats(load_dataset(dataset))
    if as_json:
        print(json.dumps(stats, indent=2))
        return
    t = Table(title=f"dataset {stats['path']}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("users", fmt_int(stats["users"]))
    t.add_row("movies", fmt_int(stats["movies"]))
    t.add_row("ratings", fmt_int(stats["ratings"]))
    t.add_row("sparsity (filled share)", f"{stats['sparsity']:.4f}")
    if stats["test_ratings"]:
        t.add_row(f"fixed test split ({stats['test_kind']})", fmt_int(stats["test_ratings"]))
    sc = stats["scale"]
    t.add_row("rating scale", f"{sc['min']:g}–{sc['max']:g} step {sc['step']:g}")
    t.add_row("mean rating", f"{stats['mean_rating']:.3f}")
    for key, label in (
        ("ratings_per_user", "ratings per user"),
        ("ratings_per_movie", "ratings per movie"),
    ):
        s = stats[key]
        t.add_row(label, f"min {s['min']:,} · median {s['median']:,g} · max {s['max']:,}")
    if stats["date_range"]:
        t.add_row("dates", " → ".join(stats["date_range"]))
    t.add_row("titles", fmt_int(stats["titles"]))
    console.print(t)
    h = Table(title="rating histogram", title_justify="left")
    h.add_column("rating", justify="right")
    h.add_column("count", justify="right")
    h.add_column("share", justify="right")
    h.add_column("")
    total = max(stats["ratings"], 1)
    top = max(stats["histogram"].values(), default=1) or 1
    for value, count in stats["histogram"].items():
        h.add_row(
            value, fmt_int(count), f"{100 * count / total:.1f} %", "█" * round(30 * count / top)
        )
    console.print(h)


def _synth(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the generated files."),
    shape_name: str | None = typer.Option(
        None, "--shape", help="Data shape: demo (the default), tiny, netflix-quarter."
    ),
    users: int | None = typer.Option(None, "--users", help="Distinct users (overrides --shape)."),
    movies: int | None = typer.Option(None, "--movies", help="Distinct movies."),
    ratings: int | None = typer.Option(None, "--ratings", help="Total ratings."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    preset: str | None = typer.Option(None, "--preset", hidden=True,
                                      help="Deprecated name of --shape."),
) -> None:
    """Generate Netflix-format files (combined_data_1.txt, movie_titles.csv) with known
    structure."""
    from aerec.data.synth import PRESETS, synthesize

    shape_name = synth_shape(shape_name, preset)
    if shape_name not in PRESETS:
        raise ValueError(f"unknown shape {shape_name!r}; choose one of {', '.join(PRESETS)}")
    shape = dict(PRESETS[shape_name])
    for key, value in (("users", users), ("movies", movies), ("ratings", ratings)):
        if value is not None:
            shape[key] = value
    with _writing(out), console.status(
        f"generating {fmt_int(shape['ratings'])} ratings by {fmt_int(shape['users'])} users on "
        f"{fmt_int(shape['movies'])} movies …"
    ):
        summary = synthesize(out, seed=seed, overwrite=force, **shape)
    console.print(
        f"[green]generated[/] {summary.out_dir}: {fmt_int(summary.users)} users, "
        f"{fmt_int(summary.movies)} movies, {fmt_int(summary.ratings)} ratings in "
        f"{summary.seconds:.1f} s (noise-floor RMSE {summary.noise_floor_rmse:.4f})"
    )


def synth_shape(shape_name: str | None, preset: str | None) -> str:
    """``--shape`` (default ``demo``), or its deprecated name ``--preset`` (``aerec data
    synth``, ``aerec demo``) — which in ``aerec train`` names a model."""
    return renamed_option("--shape", shape_name, "--preset", preset,
                          " (--preset names a model in `aerec train`)") or "demo"


def register(app: typer.Typer) -> None:
    data = typer.Typer(help="Prepare, inspect and generate rating data.", no_args_is_help=True)
    data.command("prepare")(_prepare)
    data.command("info")(_info)
    data.command("synth")(_synth)
    app.add_typer(data, name="data")
