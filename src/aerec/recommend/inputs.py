"""A request's input: a user's ratings (from the command line, a small file or a call), a
known user's id, and how many movies to list.

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

* :class:`RatingParser`: ratings in any accepted form → model columns and checked ratings.
* :class:`KnownUsers`: a training user's raw id → their row of the checkpoint's stored ratings.
* :func:`check_k`: the length of a top-N list.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aerec.data.errors import DataFormatError
from aerec.data.ratings import RatingScale
from aerec.recommend.errors import InvalidRating, RecommendError, UnknownUser
from aerec.recommend.explain import stars

if TYPE_CHECKING:
    from aerec.checkpoint import StoredRatings
    from aerec.recommend.catalogue import Catalogue

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
        for number, pair in entries:
            try:
                recommender.parse_ratings([pair])
            except RecommendError as exc:
                if is_json:
                    raise DataFormatError(path, f"entry {number}: {exc}") from None
                raise DataFormatError(path, str(exc), line=number) from None
    return [pair for _number, pair in entries]


class RatingParser:
    """A user's ratings → ``(movie columns int64 (n,), ratings float32 (n,))`` of one model.

    Movies are resolved through the :class:`Catalogue` (raw ids or titles) and ratings checked
    against the model's :class:`RatingScale`.
    """

    def __init__(self, catalogue: Catalogue, scale: RatingScale) -> None:
        self.catalogue = catalogue
        self.scale = scale

    def parse(
        self, ratings: Mapping[int | str, float] | Sequence[Any] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`aerec.recommend.Recommender.parse_ratings`."""
        cols, vals, _resolved = self.resolve(ratings)
        return cols, vals

    def resolve(
        self, ratings: Mapping[int | str, float] | Sequence[Any] | None
    ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        """:meth:`parse`, plus how each movie given as a title was resolved: ``{"query",
        "movie_id", "title", "year"}`` per title, in the order given (so the person sees
        which film "star wars" became)."""
        resolved: list[dict] = []
        if ratings is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), resolved
        if isinstance(ratings, Mapping):
            pairs: Iterable[Any] = ratings.items()
        elif isinstance(ratings, (str, bytes)):
            raise InvalidRating("ratings must be movie → rating pairs, not a string")
        else:
            pairs = ratings
        chosen: dict[int, float] = {}
        for pair in pairs:
            ref, value = self._pair(pair)
            col = self.catalogue.resolve_column(ref)
            if isinstance(ref, str) and not self.catalogue.is_id(ref):
                resolved.append({"query": ref.strip(), **self.catalogue.describe(col)})
            rating = self._rating(value, col)
            if col in chosen and chosen[col] != rating:
                raise InvalidRating(
                    f"{self.catalogue.label(col)} is rated twice ({stars(chosen[col])} and "
                    f"{stars(rating)}); give one rating per movie"
                )
            chosen[col] = rating
        cols = np.fromiter(chosen.keys(), dtype=np.int64, count=len(chosen))
        vals = np.fromiter(chosen.values(), dtype=np.float32, count=len(chosen))
        return cols, vals, resolved

    @staticmethod
    def _pair(pair: Any) -> tuple[Any, Any]:
        """``(movie, rating)`` of one entry: a mapping or a 2-sequence."""
        if isinstance(pair, Mapping):
            ref = next((pair[k] for k in ("movie_id", "movie", "id", "title") if k in pair), None)
            if ref is None or "rating" not in pair:
                raise InvalidRating(
                    f"{dict(pair)!r}: a rating needs a movie (movie_id or title) and a rating"
                )
            return ref, pair["rating"]
        if isinstance(pair, (tuple, list)) and len(pair) == 2:
            return pair[0], pair[1]
        raise InvalidRating(f"{pair!r} is not a (movie, rating) pair")

    def _rating(self, value: Any, col: int) -> float:
        """``value`` as a finite rating within the scale (for the movie in column ``col``)."""
        scale = self.scale
        where = f"{self.catalogue.label(col)} (id {int(self.catalogue.movie_ids[col])})"
        span = f"{scale.minimum:g}–{scale.maximum:g}"
        if isinstance(value, bool):
            raise InvalidRating(f"rating {value!r} for {where} is not a number; use {span}")
        try:
            rating = float(value)
        except (TypeError, ValueError):
            raise InvalidRating(
                f"rating {value!r} for {where} is not a number; use {span}"
            ) from None
        if not math.isfinite(rating):
            raise InvalidRating(f"rating {value!r} for {where} is not a finite number; use {span}")
        if rating < scale.minimum - 1e-9 or rating > scale.maximum + 1e-9:
            raise InvalidRating(
                f"rating {rating:g} for {where} is outside this model's scale {span} "
                f"(step {scale.step:g})"
            )
        return rating


class KnownUsers:
    """The training users of a checkpoint: raw ids ``user_ids`` int64 ``(n_users,)``, row by
    row of ``stored`` (their training ratings; ``None`` when the checkpoint holds none).
    ``source`` names the checkpoint in messages."""

    def __init__(
        self, user_ids: np.ndarray, stored: StoredRatings | None, source: str
    ) -> None:
        self.user_ids = np.asarray(user_ids, dtype=np.int64)
        self.stored = stored
        self.source = source
        self._sorted = bool(np.all(np.diff(self.user_ids) > 0))
        self._row_of: dict[int, int] | None = None

    def row_of(self, user_id: int | str) -> int:
        """Row of the stored ratings of raw id ``user_id``; raises :class:`UnknownUser`."""
        if isinstance(user_id, bool) or not isinstance(user_id, (numbers.Integral, str)):
            raise UnknownUser(f"{user_id!r} is not a user id")
        try:
            uid = int(user_id)
        except ValueError:
            raise UnknownUser(f"{user_id!r} is not a user id") from None
        if self._sorted:
            row = int(np.searchsorted(self.user_ids, uid))
            found = row < len(self.user_ids) and int(self.user_ids[row]) == uid
        else:
            if self._row_of is None:
                self._row_of = {int(u): i for i, u in enumerate(self.user_ids.tolist())}
            row = self._row_of.get(uid, -1)
            found = row >= 0
        if not found:
            raise UnknownUser(
                f"user {uid} is not in this model's training data "
                f"({len(self.user_ids):,} users); rate some movies instead"
            )
        if self.stored is None:
            raise UnknownUser(
                f"this checkpoint ({self.source}) stores no training ratings, so user {uid} "
                "cannot be looked up; retrain with this version of aerec, or pass their ratings"
            )
        return row

    def ratings(self, user_id: int | str) -> tuple[int, np.ndarray, np.ndarray]:
        """``(row, movie columns (n,), ratings (n,))`` of a known user's training ratings."""
        row = self.row_of(user_id)
        cols, vals = self.stored.row(row)  # type: ignore[union-attr]
        return row, cols, vals


def check_k(k: int) -> int:
    """``k`` (how many movies to list) as an ``int`` ≥ 1; raises ``ValueError``."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k must be a positive whole number, got {k!r}")
    return int(k)


__all__ = ["KnownUsers", "RatingParser", "check_k", "parse_rate", "read_ratings_file"]
