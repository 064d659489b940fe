"""MovieLens readers: ratings and titles of every published MovieLens release, and sniffers.

=============  ==========================================  =========================
release        ratings                                     titles
=============  ==========================================  =========================
100K           ``u.data`` / ``u1.base`` … (tab-separated)  ``u.item`` (+ ``u.genre``)
1M, 10M        ``ratings.dat`` (``::``-separated)           ``movies.dat``
20M … latest   ``ratings.csv`` (header line)               ``movies.csv``
=============  ==========================================  =========================

Rating files go through :func:`aerec.data.generic.read_checked` (pyarrow parses, NumPy checks,
bad lines are reported with their physical line number). Title files are small; they are read
columnar too, trying UTF-8 first and falling back to latin-1 (1M and 100K are latin-1).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from aerec.data import inputs
from aerec.data.errors import DataFormatError
from aerec.data.generic import (
    FieldSpec,
    ScaleRule,
    TableLayout,
    first_lines,
    has_header,
    no_ratings_reason,
    read_checked,
)
from aerec.data.ratings import Ratings, RatingScale, Titles

__all__ = [
    "looks_like_ml100k",
    "looks_like_ml_csv",
    "looks_like_ml_dat",
    "read_ml100k_items",
    "read_ml100k_ratings",
    "read_ml_csv_movies",
    "read_ml_csv_ratings",
    "read_ml_dat_movies",
    "read_ml_dat_ratings",
    "titles_path_for",
]

WHOLE_STARS = RatingScale(1.0, 5.0, 1.0)
HALF_STARS = RatingScale(0.5, 5.0, 0.5)

#: A trailing ``(1995)``, ``(2006–2007)`` or ``(2007-)`` — the year is the first four digits.
_TITLE_YEAR_RE = r"\((?P<year>\d{4})(?:\s*[–-]\s*\d{0,4})?\)\s*$"
_SNIFF_BYTES = 4096

_USER = FieldSpec("user", "id", "user id")
_MOVIE = FieldSpec("movie", "id", "movie id")
_RATING = FieldSpec("rating", "rating", "rating")
_SECONDS = FieldSpec("timestamp", "seconds", "timestamp")

_ML100K_LAYOUT = TableLayout(
    fields=(_USER, _MOVIE, _RATING, _SECONDS),
    delimiter="\t",
    description="4 tab-separated fields (user id, movie id, rating, timestamp)",
)
# ``::`` is split on ``:`` with the empty fields between the pairs checked to be empty.
_ML_DAT_LAYOUT = TableLayout(
    fields=(
        _USER,
        FieldSpec("gap1", "empty"),
        _MOVIE,
        FieldSpec("gap2", "empty"),
        _RATING,
        FieldSpec("gap3", "empty"),
        _SECONDS,
    ),
    delimiter=":",
    description="UserID::MovieID::Rating::Timestamp",
)
_ML_CSV_LAYOUT = TableLayout(
    fields=(_USER, _MOVIE, _RATING, _SECONDS),
    delimiter=",",
    description="4 comma-separated fields (userId, movieId, rating, timestamp)",
    quoted=True,
)


# ----------------------------------------------------------------------------- ratings


def _read_ratings(
    path: str | Path,
    layout: TableLayout,
    scale_rule: ScaleRule,
    skip_bad_lines: bool,
) -> Ratings:
    path = Path(path)
    if not first_lines(path, 1):
        raise DataFormatError(path, "empty file")
    table = read_checked(path, layout, skip_bad_lines=skip_bad_lines, scale_rule=scale_rule)
    if table.n_rows == 0:
        raise DataFormatError(path, no_ratings_reason(table.skipped_lines))
    return Ratings(
        table.columns["user"],
        table.columns["movie"],
        table.columns["rating"],
        table.columns["timestamp"],
        table.scale,
        [str(path)],
        table.skipped_lines,
    )


def _whole_stars(_: np.ndarray) -> RatingScale:
    return WHOLE_STARS


def _half_stars(_: np.ndarray) -> RatingScale:
    return HALF_STARS


def _half_stars_if_any(ratings: np.ndarray) -> RatingScale:
    """10M has half stars, 1M only whole ones: half stars as soon as one rating is a half."""
    return HALF_STARS if bool(np.any(ratings != np.round(ratings))) else WHOLE_STARS


def read_ml100k_ratings(path: str | Path, *, skip_bad_lines: bool = False) -> Ratings:
    """Read MovieLens 100K ``u.data`` (or ``u1.base``, ``ua.test`` …): tab-separated
    ``user item rating timestamp``, whole stars 1–5, unix seconds.

    Returns :class:`Ratings` with ``(n_ratings,)`` columns and ``days`` since 1970-01-01.
    Raises :class:`DataFormatError` naming the first bad line unless ``skip_bad_lines``.
    """
    return _read_ratings(path, _ML100K_LAYOUT, _whole_stars, skip_bad_lines)


def read_ml_dat_ratings(path: str | Path, *, skip_bad_lines: bool = False) -> Ratings:
    """Read MovieLens 1M/10M ``ratings.dat``: ``UserID::MovieID::Rating::Timestamp``.

    The scale is whole stars 1–5 (1M) unless some rating is a half star (10M: 0.5–5).
    Returns :class:`Ratings` with ``(n_ratings,)`` columns.
    """
    return _read_ratings(path, _ML_DAT_LAYOUT, _half_stars_if_any, skip_bad_lines)


def read_ml_csv_ratings(path: str | Path, *, skip_bad_lines: bool = False) -> Ratings:
    """Read MovieLens 20M/25M/32M/latest ``ratings.csv`` (``userId,movieId,rating,timestamp``
    header, half stars 0.5–5). Returns :class:`Ratings` with ``(n_ratings,)`` columns."""
    path = Path(path)
    lines = first_lines(path, 1)
    header = 1 if lines and lines[0][0] == 1 and has_header(lines[0][1], ",") else 0
    layout = TableLayout(
        fields=_ML_CSV_LAYOUT.fields,
        delimiter=",",
        description=_ML_CSV_LAYOUT.description,
        header_lines=header,
        quoted=True,
    )
    return _read_ratings(path, layout, _half_stars, skip_bad_lines)


# ----------------------------------------------------------------------------- titles


def _utf8_bytes(path: Path) -> bytes:
    """The file (decompressed when gzip) as UTF-8: as is when it decodes, else read as latin-1
    and re-encoded."""
    raw = inputs.read_bytes(path)
    try:
        raw.decode("utf-8")
        return raw
    except UnicodeDecodeError:
        return raw.decode("latin-1").encode("utf-8")


def _years(titles: pa.Array, fallback: pa.Array | None = None) -> np.ndarray:
    """Year from each title's trailing ``(YYYY)``; else from ``fallback``'s last four digits;
    else 0. Shape ``(n_titles,)`` int32."""
    years = pc.struct_field(pc.extract_regex(titles, _TITLE_YEAR_RE), [0])
    if fallback is not None:
        from_fallback = pc.struct_field(pc.extract_regex(fallback, r"(?P<y>\d{4})\s*$"), [0])
        years = pc.coalesce(years, from_fallback)
    return pc.fill_null(years.cast(pa.int32()), 0).to_numpy(zero_copy_only=False)


def _no_titles_check(path: Path, n_rows: int) -> None:
    if n_rows == 0:
        raise DataFormatError(path, "no titles in file")


def read_ml100k_items(path: str | Path) -> Titles:
    """Read MovieLens 100K ``u.item``: ``movie id | title | release date | video release date |
    IMDb URL | 19 genre flags``.

    Titles are kept as shown (``Toy Story (1995)``, trailing spaces removed); ``years`` come from
    the trailing ``(YYYY)``, else the release date, else 0. ``genres`` are the ``|``-joined genre
    names when ``u.genre`` lies beside the file, else None. Columns have shape ``(n_titles,)``.
    """
    path = Path(path)
    lines = first_lines(path, 1)
    if not lines:
        raise DataFormatError(path, "empty file")
    n_flags = lines[0][1].count("|") + 1 - 5
    if n_flags < 0:
        raise DataFormatError(
            path,
            "expected movie id|title|release date|video release date|IMDb URL|genre flags, "
            f"got {lines[0][1][:80]!r}",
            line=lines[0][0],
        )
    layout = TableLayout(
        fields=(
            _MOVIE,
            FieldSpec("title", "text"),
            FieldSpec("released", "text"),
            FieldSpec("video_released", "text"),
            FieldSpec("url", "text"),
            *(FieldSpec(f"genre{g}", "int", f"genre flag {g + 1}") for g in range(n_flags)),
        ),
        delimiter="|",
        description=f"{5 + n_flags} '|'-separated fields (movie id|title|release date|"
        f"video release date|IMDb URL|{n_flags} genre flags)",
    )
    table = read_checked(path, layout, data=_utf8_bytes(path))
    _no_titles_check(path, table.n_rows)
    titles = pc.utf8_trim_whitespace(table.columns["title"])
    years = _years(titles, fallback=pc.utf8_trim_whitespace(table.columns["released"]))
    genres = None
    genre_path = path.with_name("u.genre")
    if genre_path.is_file():
        names = _read_ml100k_genres(genre_path)
        if len(names) != n_flags:
            raise DataFormatError(
                genre_path, f"lists {len(names)} genres but {path.name} has {n_flags} genre flags"
            )
        flags = [table.columns[f"genre{g}"] for g in range(n_flags)]
        genres = _join_flagged(names, flags, table.n_rows)
    return Titles(table.columns["movie"], titles.to_pylist(), years, genres)


def _read_ml100k_genres(path: Path) -> list[str]:
    """``u.genre``: ``name|index`` lines → names ordered by index (a 19-line file)."""
    by_index: dict[int, str] = {}
    text = _utf8_bytes(path).decode("utf-8")
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        name, sep, index = line.rpartition("|")
        if not sep or not index.isdigit() or not name:
            raise DataFormatError(
                path, f"expected genre name|index, got {line[:80]!r}", line=number
            )
        by_index[int(index)] = name
    if sorted(by_index) != list(range(len(by_index))):
        raise DataFormatError(path, "genre indices are not 0, 1, 2, …")
    return [by_index[i] for i in range(len(by_index))]


def _join_flagged(names: list[str], flags: list[np.ndarray], n_movies: int) -> list[str]:
    """Per movie, the ``|``-joined names of the genres whose flag is set (one pass per genre)."""
    if not names:
        return [""] * n_movies
    parts = [
        pc.if_else(pa.array(flag != 0), pa.scalar(name + "|"), pa.scalar(""))
        for name, flag in zip(names, flags)
    ]
    joined = pc.binary_join_element_wise(*parts, "")
    return pc.utf8_rtrim(joined, characters="|").to_pylist()


def read_ml_dat_movies(path: str | Path) -> Titles:
    """Read MovieLens 1M/10M ``movies.dat``: ``MovieID::Title::Genres`` (UTF-8, else latin-1).

    Titles may contain ``:``; the id is before the first ``::`` and the genres after the last.
    Columns have shape ``(n_titles,)``; ``years`` from the trailing ``(YYYY)``, else 0.
    """
    path = Path(path)
    text = _utf8_bytes(path).decode("utf-8").removeprefix("\ufeff")
    pieces = text.split("\n")
    if pieces and pieces[-1] == "":
        pieces.pop()
    lines = pc.utf8_rtrim(pa.array(pieces, pa.string()), characters="\r")
    blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(lines)), 0).to_numpy(
        zero_copy_only=False
    )
    if blank.all():
        raise DataFormatError(path, "empty file")
    shaped = pc.greater_equal(pc.count_substring(lines, "::"), 2).to_numpy(zero_copy_only=False)
    safe = pc.if_else(pa.array(shaped), lines, pa.scalar("0::::"))
    movie_text, rest = _split2(safe, reverse=False)
    title, genres = _split2(rest, reverse=True)
    id_ok = pc.match_substring_regex(movie_text, r"^\s*\d{1,18}\s*$").to_numpy(zero_copy_only=False)
    wrong_shape = ~blank & ~shaped
    bad_id = ~blank & shaped & ~id_ok
    bad = wrong_shape | bad_id
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        shown = lines[row].as_py()[:80]
        reason = (
            f"expected MovieID::Title::Genres, got {shown!r}"
            if wrong_shape[row]
            else f"movie id {movie_text[row].as_py()!r} is not a non-negative integer id"
        )
        raise DataFormatError(path, reason, line=row + 1)
    keep = pa.array(~blank)
    titles = pc.utf8_trim_whitespace(title.filter(keep))
    movie_ids = pc.utf8_trim_whitespace(movie_text.filter(keep)).cast(pa.int64())
    return Titles(
        movie_ids.to_numpy(),
        titles.to_pylist(),
        _years(titles),
        pc.utf8_trim_whitespace(genres.filter(keep)).to_pylist(),
    )


def _split2(lines: pa.Array, *, reverse: bool) -> tuple[pa.Array, pa.Array]:
    """Split each string at its first (or last, ``reverse``) ``::`` into two columns."""
    parts = pc.split_pattern(lines, "::", max_splits=1, reverse=reverse)
    return pc.list_element(parts, 0), pc.list_element(parts, 1)


def read_ml_csv_movies(path: str | Path) -> Titles:
    """Read MovieLens 20M+ ``movies.csv``: ``movieId,title,genres`` with quoted titles.

    Titles are trimmed (some end in a space); ``years`` from the trailing ``(YYYY)`` or
    ``(YYYY–YYYY)``, 0 when absent. Columns have shape ``(n_titles,)``.
    """
    path = Path(path)
    lines = first_lines(path, 1)
    if not lines:
        raise DataFormatError(path, "empty file")
    header = 1 if lines[0][0] == 1 and has_header(lines[0][1], ",") else 0
    layout = TableLayout(
        fields=(_MOVIE, FieldSpec("title", "text"), FieldSpec("genres", "text")),
        delimiter=",",
        description="3 comma-separated fields (movieId, title, genres)",
        header_lines=header,
        quoted=True,
    )
    table = read_checked(path, layout, data=_utf8_bytes(path))
    _no_titles_check(path, table.n_rows)
    titles = pc.utf8_trim_whitespace(table.columns["title"])
    return Titles(
        table.columns["movie"],
        titles.to_pylist(),
        _years(titles),
        pc.utf8_trim_whitespace(table.columns["genres"]).to_pylist(),
    )


# ----------------------------------------------------------------------------- sniffers

_ML100K_LINE = re.compile(r"\d+\t\d+\t[0-9.]+\t\d+")
_ML_DAT_LINE = re.compile(r"\d+::\d+::\d+(\.\d+)?::\d+")
_ML_CSV_HEADERS = ("userid,movieid,rating,timestamp", "userid,movieid,rating")


def _sniff(path: str | Path, n: int = 5) -> list[str]:
    """The first ``n`` non-blank lines, stripped; none when the file cannot be read."""
    try:
        return [line.strip() for _, line in first_lines(path, n, _SNIFF_BYTES)]
    except (OSError, DataFormatError):
        return []


def looks_like_ml100k(path: str | Path) -> bool:
    """True when the file's first lines are ``user<TAB>item<TAB>rating<TAB>timestamp``
    (MovieLens 100K ``u.data``). Reads at most the first 4 KB."""
    lines = _sniff(path)
    return bool(lines) and all(_ML100K_LINE.fullmatch(line) for line in lines)


def looks_like_ml_dat(path: str | Path) -> bool:
    """True when the file's first lines are ``UserID::MovieID::Rating::Timestamp``
    (MovieLens 1M/10M ``ratings.dat``). Reads at most the first 4 KB."""
    lines = _sniff(path)
    return bool(lines) and all(_ML_DAT_LINE.fullmatch(line) for line in lines)


def looks_like_ml_csv(path: str | Path) -> bool:
    """True when the file starts with the ``userId,movieId,rating,timestamp`` header
    (MovieLens 20M+ ``ratings.csv``). Reads at most the first 4 KB."""
    lines = _sniff(path, 1)
    if not lines:
        return False
    header = lines[0].replace(" ", "").replace('"', "").lower()
    return header in _ML_CSV_HEADERS


_ML100K_RATINGS_NAME = re.compile(r"u[0-9a-z]?\.(data|base|test)", re.IGNORECASE)


def titles_path_for(ratings_path: str | Path) -> Path | None:
    """The titles file that MovieLens ships beside a ratings file: ``u.item`` beside ``u.data``
    / ``u1.base`` …, ``movies.dat`` beside ``ratings.dat``, ``movies.csv`` beside
    ``ratings.csv``. None when the format is not recognised or the titles file is absent."""
    path = Path(ratings_path)
    name = inputs.strip_gz(path.name)
    if _ML100K_RATINGS_NAME.fullmatch(name) or looks_like_ml100k(path):
        candidate = "u.item"
    elif name.lower().endswith(".dat") or looks_like_ml_dat(path):
        candidate = "movies.dat"
    elif looks_like_ml_csv(path):
        candidate = "movies.csv"
    else:
        return None
    titles = path.with_name(candidate)
    return titles if titles.is_file() and titles != path else None
