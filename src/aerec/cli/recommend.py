"""``aerec recommend``: a top-N list for a new user (``--rate`` / ``--ratings``) or a known user
(``--user``), or every known user's list into a file (``--all-users --out FILE``), from a run
directory or checkpoint alone.

A thin layer over :class:`aerec.recommend.Recommender`: it gathers the ratings, calls
``recommend`` / ``recommend_for_user`` and prints how typed titles were read, a table (rank,
title, year, predicted stars, reason) with why it is in that order under it, the similar users
with ``--explain``, or ``Recommendations.to_dict()`` with ``--json``; ``--all-users`` calls
``write_all`` under a progress bar. Unknown or ambiguous titles and bad ratings end as one
``error:`` line (exit status 2).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from aerec.cli.common import console
from aerec.recommend import Recommendations, Recommender
from aerec.recommend.batch import DEFAULT_BATCH_SIZE, WriteSummary, output_format
from aerec.recommend.explain import stars
from aerec.recommend.inputs import parse_rate, read_ratings_file
from aerec.recommend.ranking import DEFAULT_RANKING, RANKING_MODES


def gather_ratings(
    rec: Recommender, rate: list[str] | None, ratings_file: Path | None
) -> list[tuple[object, object]]:
    """The ``(movie, rating)`` pairs of ``--ratings FILE`` followed by each ``--rate``."""
    pairs: list[tuple[object, object]] = []
    if ratings_file is not None:
        pairs.extend(read_ratings_file(ratings_file, recommender=rec))
    for text in rate or []:
        pairs.append(parse_rate(text))
    return pairs


def _year(value: int | None) -> str:
    return "" if value is None else str(value)


def _title(title: str, year: int | None) -> str:
    """The title without a trailing ``(year)`` (the year has its own column)."""
    suffix = f" ({year})"
    return title[: -len(suffix)] if year and title.endswith(suffix) else title


def print_resolved(result: Recommendations) -> None:
    """One line per title the person typed: ``star wars → Star Wars (1977) · id 50``."""
    for r in result.resolved:
        label = r["title"] if r["year"] is None or r["title"].endswith(f"({r['year']})") \
            else f"{r['title']} ({r['year']})"
        console.print(f"[dim]{r['query']} →[/] {label} [dim]· id {r['movie_id']}[/]",
                      highlight=False, markup=True)


def print_recommendations(result: Recommendations, *, explain: bool) -> None:
    """How titles were read, the rich table with why it is in that order under it (and, with
    ``explain``, the evidence) for ``result``."""
    print_resolved(result)
    if result.note:
        console.print(f"[yellow]{result.note}[/]", highlight=False)
    if not result.items:
        return
    who = f"user {result.user_id}" if result.user_id is not None else "you"
    based = f", from {len(result.used_ratings)} ratings" if result.used_ratings else ""
    table = Table(title=f"Top {len(result.items)} for {who}{based}",
                  caption=result.order_note or None, caption_justify="left",
                  header_style="bold", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("title", overflow="fold")
    table.add_column("year", justify="right")
    table.add_column("predicted", justify="right")
    table.add_column("reason", overflow="fold")
    for rank, item in enumerate(result.items, start=1):
        table.add_row(
            str(rank), _title(item.title, item.year), _year(item.year),
            stars(item.predicted_rating), item.reason,
        )
    console.print(table)
    if not explain:
        return
    for rank, item in enumerate(result.items, start=1):
        lines = []
        if item.pulled_up_by:
            lines.append("pulled up by: " + ", ".join(
                f"{_title(p['title'], p['year'])} {stars(p['rating'])} "
                f"(+{p['contribution']:.2f}★)" for p in item.pulled_up_by
            ))
        if item.similar_users:
            lines.append("similar users who liked it: " + ", ".join(
                f"user {u['user_id']} ({stars(u['rating'])}, similarity {u['similarity']:.2f})"
                for u in item.similar_users
            ))
        if lines:
            console.print(f"[bold]{rank}. {item.title}[/]", highlight=False)
            for line in lines:
                console.print(f"   {line}", highlight=False)
    if result.neighbours:
        table = Table(title="Your most similar users", header_style="bold")
        table.add_column("user", justify="right")
        table.add_column("similarity", justify="right")
        table.add_column("ratings", justify="right")
        table.add_column("liked most (among movies you have not rated)", overflow="fold")
        for n in result.neighbours:
            table.add_row(
                str(n["user_id"]), f"{n['similarity']:.3f}", f"{n['n_ratings']:,}",
                "; ".join(f"{m['title']} {stars(m['rating'])}" for m in n["liked"]),
            )
        console.print(table)


class UsersPerSecond(ProgressColumn):
    """The progress bar's rate, e.g. ``412 users/s``."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("— users/s" if speed is None else f"{speed:,.0f} users/s")


def write_all_users(
    rec: Recommender, out: Path, k: int, batch_size: int, filters: dict
) -> WriteSummary:
    """``--all-users``: every known user's top-``k`` into ``out`` under a progress bar."""
    progress = Progress(
        TextColumn("[bold]recommending"), BarColumn(), MofNCompleteColumn(),
        TextColumn("users"), UsersPerSecond(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=not console.is_terminal,
    )
    with progress:
        task = progress.add_task("users", total=rec.n_users)
        summary = rec.write_all(
            out, k, batch_size=batch_size,
            progress=lambda done: progress.update(task, completed=done), **filters,
        )
    console.print(
        f"wrote {summary.n_rows:,} recommendations for {summary.n_users:,} users to "
        f"{summary.path} ({summary.format}) in {summary.seconds:.1f} s "
        f"({summary.users_per_second:,.0f} users/s)", highlight=False,
    )
    return summary


def _recommend(
    run: Annotated[
        Path, typer.Argument(help="Run directory (uses best.pt) or a checkpoint .pt file.")
    ],
    rate: Annotated[
        list[str] | None,
        typer.Option("--rate", "-r", help='A rating, MOVIE=STARS: --rate "Toy Story=5" '
                     "--rate 1234=4 (repeatable; MOVIE is an id or a title)."),
    ] = None,
    ratings_file: Annotated[
        Path | None,
        typer.Option("--ratings", help="CSV (movie,rating) or JSON file of your ratings."),
    ] = None,
    user: Annotated[
        int | None, typer.Option("--user", "-u", help="A known user's id (training data).")
    ] = None,
    all_users: Annotated[
        bool, typer.Option("--all-users", help="Every known user's top-k into --out FILE.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="With --all-users: the file to write, .parquet or "
                     ".csv (columns user_id, rank, movie_id, title, score)."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="With --all-users: users scored per batch (bounds memory).")
    ] = DEFAULT_BATCH_SIZE,
    threads: Annotated[
        int, typer.Option(min=0, help="With --all-users: CPU threads (0 = all cores; 1 is "
                          "faster on cores busy with other work).")
    ] = 0,
    k: Annotated[int, typer.Option("--k", "-k", help="How many movies to recommend.")] = 10,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON.")
    ] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Also show the similar users and the evidence.")
    ] = False,
    min_ratings: Annotated[
        int | None, typer.Option(help="Only movies with at least this many training ratings.")
    ] = None,
    year_min: Annotated[int | None, typer.Option(help="Only movies from this year on.")] = None,
    year_max: Annotated[int | None, typer.Option(help="Only movies up to this year.")] = None,
    ranking: Annotated[
        str | None,
        typer.Option(help=f"Ranking mode: {', '.join(RANKING_MODES)} (optionally MODE:PARAM); "
                     f"default: head if the model has a ranking head, else {DEFAULT_RANKING}."),
    ] = None,
) -> None:
    """Recommend movies for your ratings (--rate / --ratings), for a known user (--user), or
    for every known user into a file (--all-users --out recs.parquet).

    With no ratings at all you get the documented fallback: well-rated popular movies.
    """
    own = bool(rate) or ratings_file is not None
    if user is not None and own:
        raise ValueError("give either --user or your own ratings (--rate / --ratings), not both")
    if all_users and (user is not None or own):
        raise ValueError("--all-users recommends for every known user; drop --user / --rate / "
                         "--ratings")
    if all_users and out is None:
        raise ValueError("--all-users needs --out FILE (.parquet or .csv)")
    if out is not None and not all_users:
        raise ValueError("--out writes every known user's list: add --all-users")
    if all_users:
        output_format(out)  # a wrong extension fails before the model loads
    rec = Recommender.load(run)
    filters = {"min_ratings": min_ratings, "year_min": year_min, "year_max": year_max,
               "ranking": ranking}
    if all_users:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads or previous)
        try:
            write_all_users(rec, out, k, batch_size, filters)  # type: ignore[arg-type]
        finally:
            torch.set_num_threads(previous)
        return
    pairs = [] if user is not None else gather_ratings(rec, rate, ratings_file)
    if user is not None or pairs:
        rec.neighbour_index()  # built on all cores the first time, then read from beside the run
    # One person's list is a chain of small operations, where handing work between threads
    # costs more than it saves (a 20x slower request measured on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if user is not None:
            result = rec.recommend_for_user(user, k, **filters)
        else:
            result = rec.recommend(pairs, k, **filters)
    finally:
        torch.set_num_threads(threads)
    from aerec.cli.common import err_console
    from aerec.quality import quality_warning

    if (warning := quality_warning(rec.checkpoint)) is not None:  # what `aerec evaluate` found
        (err_console if as_json else console).print(f"[yellow]warning:[/] {warning}",
                                                    highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n")
        return
    print_recommendations(result, explain=explain)


def register(app: typer.Typer) -> None:
    """Add the ``recommend`` command to the main ``aerec`` app."""
    app.command("recommend")(_recommend)


__all__ = ["gather_ratings", "print_recommendations", "print_resolved", "register",
           "write_all_users"]
