"""``aerec recommend``: a top-N list for a new user (``--rate`` / ``--ratings``) or a known user
(``--user``), from a run directory or checkpoint alone.

A thin layer over :class:`aerec.recommend.Recommender`: it gathers the ratings, calls
``recommend`` / ``recommend_for_user`` and prints a table (rank, title, year, predicted stars,
reason), the similar users with ``--explain``, or ``Recommendations.to_dict()`` with ``--json``.
Unknown or ambiguous titles and bad ratings end as one ``error:`` line (exit status 2).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from aerec.cli.common import console
from aerec.recommend import Recommendations, Recommender
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


def print_recommendations(result: Recommendations, *, explain: bool) -> None:
    """The rich table (and, with ``explain``, the evidence) for ``result``."""
    if result.note:
        console.print(f"[yellow]{result.note}[/]", highlight=False)
    if not result.items:
        return
    who = f"user {result.user_id}" if result.user_id is not None else "you"
    caption = (
        f"ranking: {result.ranking}" + (f" · from {len(result.used_ratings)} ratings"
                                        if result.used_ratings else "")
    )
    table = Table(title=f"Top {len(result.items)} for {who}", caption=caption,
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
    """Recommend movies for your ratings (--rate / --ratings) or for a known user (--user).

    With no ratings at all you get the documented fallback: well-rated popular movies.
    """
    if user is not None and (rate or ratings_file is not None):
        raise ValueError("give either --user or your own ratings (--rate / --ratings), not both")
    rec = Recommender.load(run)
    filters = {"min_ratings": min_ratings, "year_min": year_min, "year_max": year_max,
               "ranking": ranking}
    if user is not None:
        result = rec.recommend_for_user(user, k, **filters)
    else:
        result = rec.recommend(gather_ratings(rec, rate, ratings_file), k, **filters)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n")
        return
    print_recommendations(result, explain=explain)


def register(app: typer.Typer) -> None:
    """Add the ``recommend`` command to the main ``aerec`` app."""
    app.command("recommend")(_recommend)


__all__ = ["gather_ratings", "print_recommendations", "register"]
