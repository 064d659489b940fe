"""Reading a user's ratings from the command line or a small file.

* ``--rate "Toy Story=5"`` / ``--rate 1234=4``: :func:`parse_rate` (the last ``=`` splits, so
  titles may contain ``=``).
* A ratings file (:func:`read_ratings_file`):

  - CSV ``movie,rating`` (header optional; ``movie`` is an id or a title; an unquoted title with
    commas such as ``Matrix, The,5`` works because the rating is the last field; blank lines and
    ``#`` comments are skipped);
  - JSON: ``[{"movie_id": 1, "rating": 5}, {"title": "Babe", "rating": 4}]``,
    ``[["Toy Story", 5], [50, 4]]`` or ``{"1": 5, "Babe": 4}``.

Bad files raise :class:`aerec.data.errors.DataFormatError` naming the file, the line (CSV) or
entry (JSON) and the reason. With a ``recommender``, each entry is also checked against the
model (unknown or ambiguous titles, ratings off the scale), so the message carries the line.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from aerec.data.errors import DataFormatError

Pair = tuple[Any, Any]
_RATING_HEADERS = ("rating", "ratings", "stars", "score")
_MOVIE_HEADERS = ("movie", "movie_id", "movieid", "title", "id", "item", "film")


def parse_rate(text: str) -> Pair:
    """``"Toy Story=5"`` → ``("Toy Story", "5")``; ``"1234=4"`` → ``("1234", "4")``."""
    movie, sep, rating = str(text).rpartition("=")
    if not sep or not movie.strip() or not rating.strip():
        raise ValueError(
            f"--rate {text!r}: expected MOVIE=RATING, e.g. --rate \"Toy Story=5\" or --rate 1=4"
        )
    return movie.strip(), rating.strip()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: Path, text: str) -> list[tuple[int, Pair]]:
    """``(line number, (movie, rating))`` per data line of a ``movie,rating`` CSV."""
    out: list[tuple[int, Pair]] = []
    first_data_line = True
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        delimiter = "\t" if "\t" in stripped and "," not in stripped else ","
        reader = csv.reader(io.StringIO(stripped), delimiter=delimiter, skipinitialspace=True)
        fields = [f.strip() for f in next(reader)]
        if len(fields) < 2:
            raise DataFormatError(
                path, f"expected movie,rating but found {stripped!r}", line=number
            )
        movie, rating = delimiter.join(fields[:-1]).strip(), fields[-1]
        if first_data_line and not _is_number(rating):
            first_data_line = False
            if rating.lower() in _RATING_HEADERS or movie.lower() in _MOVIE_HEADERS:
                continue  # a header line
        first_data_line = False
        if not movie:
            raise DataFormatError(path, "missing movie (id or title)", line=number)
        if not _is_number(rating):
            raise DataFormatError(path, f"rating {rating!r} is not a number", line=number)
        out.append((number, (movie, rating)))
    return out


def _read_json(path: Path, text: str) -> list[tuple[int, Pair]]:
    """``(entry number, (movie, rating))`` per entry of a JSON ratings file (1-based)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
    if isinstance(data, dict) and isinstance(data.get("ratings"), (list, dict)):
        data = data["ratings"]
    if isinstance(data, dict):
        return [(i, (k, v)) for i, (k, v) in enumerate(data.items(), start=1)]
    if not isinstance(data, list):
        raise DataFormatError(path, "expected a JSON list of ratings or a {movie: rating} object")
    out: list[tuple[int, Pair]] = []
    for i, entry in enumerate(data, start=1):
        if isinstance(entry, dict):
            movie = next(
                (entry[k] for k in ("movie_id", "movie", "id", "title") if k in entry), None
            )
            if movie is None or "rating" not in entry:
                raise DataFormatError(
                    path, f"entry {i}: needs \"movie_id\" or \"title\" and \"rating\", "
                    f"got {json.dumps(entry)[:80]}"
                )
            out.append((i, (movie, entry["rating"])))
        elif isinstance(entry, (list, tuple)) and len(entry) == 2:
            out.append((i, (entry[0], entry[1])))
        else:
            raise DataFormatError(
                path, f"entry {i}: expected {{\"movie_id\"|\"title\", \"rating\"}} or "
                f"[movie, rating], got {json.dumps(entry)[:80]}"
            )
    return out


def read_ratings_file(path: str | Path, recommender: Any = None) -> list[Pair]:
    """A ratings file (CSV or JSON, see the module docstring) → ``(movie, rating)`` pairs.

    The format follows the extension (``.json``; anything else is CSV unless its first
    character is ``[`` or ``{``). With ``recommender`` (a :class:`~aerec.recommend.Recommender`)
    every entry is checked and errors name the line or entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ratings file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    is_json = path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{")
    entries = _read_json(path, text) if is_json else _read_csv(path, text)
    if recommender is not None:
        from aerec.recommend.errors import RecommendError

        for number, pair in entries:
            try:
                recommender.parse_ratings([pair])
            except RecommendError as exc:
                if is_json:
                    raise DataFormatError(path, f"entry {number}: {exc}") from None
                raise DataFormatError(path, str(exc), line=number) from None
    return [pair for _number, pair in entries]


__all__ = ["parse_rate", "read_ratings_file"]
