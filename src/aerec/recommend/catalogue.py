"""The :class:`Catalogue`: the movies a checkpoint knows, by model column.

Raw ids, titles, release years and the training statistics (ratings per movie and their mean)
in column order; a movie is found by raw id or by title (forgivingly, through a
:class:`~aerec.recommend.titles.TitleIndex` built on first use), described as a
:class:`~aerec.recommend.results.MovieInfo`, and filtered by training ratings and year.
"""

from __future__ import annotations

import numbers
import threading

import numpy as np

from aerec.checkpoint import Checkpoint
from aerec.recommend.errors import UnknownMovie
from aerec.recommend.results import MovieInfo
from aerec.recommend.titles import TitleIndex, display_title, split_year


class Catalogue:
    """The movies of one model, column by column (arrays are ``(n_movies,)``).

    ``years`` are 0 where unknown; a year in the title text fills an unknown one (MovieLens
    titles carry "(1995)"). ``counts`` and ``means`` are over the training ratings. Safe to
    share between threads (the title index is built under a lock).
    """

    def __init__(
        self,
        movie_ids: np.ndarray,
        titles: list[str],
        years: np.ndarray,
        counts: np.ndarray,
        means: np.ndarray,
        n_movies: int | None = None,
    ) -> None:
        self.movie_ids = np.asarray(movie_ids, dtype=np.int64)
        self.titles: list[str] = list(titles)
        self.years = np.asarray(years, dtype=np.int64)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.means = np.asarray(means, dtype=np.float32)
        self.n_movies = len(self.movie_ids) if n_movies is None else int(n_movies)
        self._column_of = {int(m): i for i, m in enumerate(self.movie_ids.tolist())}
        self._titles: TitleIndex | None = None
        self._lock = threading.Lock()
        missing = np.flatnonzero(self.years <= 0)
        if len(missing):
            self.years = self.years.copy()  # never write into the checkpoint's array
            for col in missing.tolist():
                year = split_year(self.titles[col])[1]
                if year is not None:
                    self.years[col] = year

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> Catalogue:
        """The catalogue stored in ``checkpoint`` (id map, titles, years, training stats)."""
        stats = checkpoint.stats
        return cls(
            checkpoint.movie_ids, checkpoint.titles, checkpoint.years, stats.movie_counts,
            stats.movie_means, n_movies=int(checkpoint.model.n_movies),
        )

    def title_index(self) -> TitleIndex:
        """The :class:`TitleIndex` over these movies (built on first use)."""
        if self._titles is None:
            with self._lock:
                if self._titles is None:
                    self._titles = TitleIndex(
                        self.titles, self.years, self.movie_ids, self.counts
                    )
        return self._titles

    # -------------------------------------------------------------------- one movie
    def column(self, movie_id: int) -> int:
        """Column of raw id ``movie_id``; raises :class:`UnknownMovie`."""
        col = self._column_of.get(int(movie_id))
        if col is None:
            lo, hi = int(self.movie_ids.min()), int(self.movie_ids.max())
            raise UnknownMovie(
                f"movie id {movie_id} is not in this model (it knows {self.n_movies:,} movies, "
                f"ids {lo}–{hi})"
            )
        return col

    def year(self, col: int) -> int | None:
        """Release year of column ``col``, ``None`` when unknown."""
        year = int(self.years[col])
        return year if year > 0 else None

    def label(self, col: int) -> str:
        """Title with the year, e.g. ``"Toy Story (1995)"``."""
        return display_title(self.titles[col], self.year(col))

    def describe(self, col: int) -> dict:
        """``{"movie_id", "title", "year"}`` of column ``col``."""
        return {"movie_id": int(self.movie_ids[col]), "title": self.titles[col],
                "year": self.year(col)}

    def is_id(self, ref: str) -> bool:
        """True when the text ``ref`` is read as a raw movie id (all digits and a known id),
        not as a title."""
        text = ref.strip()
        return text.isdigit() and int(text) in self._column_of

    def info(self, col: int) -> MovieInfo:
        """Column ``col`` as a :class:`MovieInfo` (mean rounded to 4 places)."""
        n = int(self.counts[col])
        return MovieInfo(
            movie_id=int(self.movie_ids[col]),
            title=self.titles[col],
            year=self.year(col),
            n_ratings=n,
            mean_rating=round(float(self.means[col]), 4) if n > 0 else None,
        )

    def movie(self, movie_id: int) -> MovieInfo:
        """The movie with raw id ``movie_id``; raises :class:`UnknownMovie`."""
        return self.info(self.column(movie_id))

    def resolve_column(self, ref: int | str) -> int:
        """Column of ``ref``: an int (or an all-digit string) is a raw id; any other string a
        title (see :meth:`aerec.recommend.Recommender.resolve_movie`)."""
        if isinstance(ref, bool):
            raise UnknownMovie(f"{ref!r} is not a movie id or title")
        if isinstance(ref, numbers.Integral):
            return self.column(int(ref))
        if isinstance(ref, float) and ref.is_integer():
            return self.column(int(ref))
        if not isinstance(ref, str):
            raise UnknownMovie(f"{ref!r} is not a movie id or title")
        text = ref.strip()
        if text.isdigit():
            col = self._column_of.get(int(text))
            if col is not None:
                return col
            try:
                return self.title_index().match(text)
            except UnknownMovie:
                raise UnknownMovie(
                    f"movie id {int(text)} is not in this model, and no title matches {text!r}"
                ) from None
        return self.title_index().match(text)

    def search_titles(self, query: str, limit: int = 10) -> list[MovieInfo]:
        """Movies for an incremental search box (:meth:`TitleIndex.search`)."""
        return [self.info(c) for c in self.title_index().search(query, limit)]

    def rated(self, cols: np.ndarray, ratings: np.ndarray) -> list[dict]:
        """Ratings of columns ``cols`` as ``{"movie_id", "title", "year", "rating"}`` dicts."""
        return [
            {
                "movie_id": int(self.movie_ids[c]),
                "title": self.titles[c],
                "year": self.year(c),
                "rating": float(r),
            }
            for c, r in zip(cols.tolist(), ratings.tolist())
        ]

    # -------------------------------------------------------------------- many movies
    def eligible(
        self, min_ratings: int | None, year_min: int | None, year_max: int | None
    ) -> np.ndarray:
        """Bool ``(n_movies,)``: movies with at least ``min_ratings`` training ratings
        released in ``year_min``–``year_max`` (a year filter drops movies of unknown year)."""
        ok = np.ones(self.n_movies, dtype=bool)
        if min_ratings is not None:
            if int(min_ratings) < 0:
                raise ValueError(f"min_ratings must be ≥ 0, got {min_ratings}")
            ok &= self.counts >= int(min_ratings)
        if year_min is not None and year_max is not None and int(year_min) > int(year_max):
            raise ValueError(f"year_min {year_min} is after year_max {year_max}")
        if year_min is not None:
            ok &= self.years >= int(year_min)
        if year_max is not None:
            ok &= (self.years <= int(year_max)) & (self.years > 0)
        return ok

    def popular_min_ratings(self) -> int:
        """Default least training ratings for the popular fallback: the median over rated
        movies."""
        rated = self.counts[self.counts > 0]
        return max(1, int(np.median(rated))) if len(rated) else 1


__all__ = ["Catalogue"]
