"""The :class:`Recommender`: a loaded checkpoint → explained top-N lists for anyone.

Everything comes from the checkpoint alone (``Recommender.load("runs/seed")``): the network,
id maps, titles, rating scale, training statistics and the training users' ratings.

* A **new user** is *folded in*: their ratings go straight through the trained autoencoder (no
  retraining) and the outputs score every movie. Movies they rated are never recommended.
* A **known user** (``recommend_for_user``) is folded in from all their stored training
  ratings — exactly the same call as passing those ratings to ``recommend``.
* **No usable ratings** (empty input) gets the documented fallback, :meth:`Recommender.popular`:
  well-rated popular movies, ranked by damped (Bayesian) mean rating among movies with at least
  the median number of training ratings, flagged ``fallback=True`` with a ``note``.

Each recommendation carries evidence (``explain=True``, the default): the most similar stored
users in the autoencoder's code space who rated the movie highly, and which of the user's own
ratings pulled it up (leave-one-out, in stars), summed up in one ``reason`` sentence.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aerec.data.ratings import RatingScale
from aerec.recommend.errors import InvalidRating, UnknownMovie, UnknownUser
from aerec.recommend.explain import (
    NeighbourIndex,
    gather_rows,
    leave_one_out,
    loo_count,
    reason_sentence,
    score_user,
    stars,
)
from aerec.recommend.ranking import (
    DEFAULT_RANKING,
    HEAD,
    POPULAR_PRIOR,
    Ranking,
    damped_means,
    parse_ranking,
)
from aerec.recommend.titles import TitleIndex, display_title
from aerec.checkpoint import Checkpoint, load_checkpoint

#: Similar users consulted per request (the "20 most similar users" of a reason).
DEFAULT_NEIGHBOURS = 20
#: Stored users need this many ratings to join the neighbour pool.
NEIGHBOUR_MIN_RATINGS = 5
#: At most this many stored users (the most active) form the neighbour pool.
NEIGHBOUR_POOL = 50_000
#: Similar users listed per recommendation, and ratings listed in ``pulled_up_by``.
LISTED = 5
#: A rating must lift a prediction by at least this many stars to be named in a reason.
MIN_CONTRIBUTION = 0.01
#: Best-ranked candidates whose average lift is the baseline of a rating's relative lift.
REFERENCE_MOVIES = 50
#: Best-liked movies shown per neighbour in ``Recommendations.neighbours``.
NEIGHBOUR_LIKED = 3

FilterValue = int | None


# ------------------------------------------------------------------------------ results


@dataclass
class MovieInfo:
    """One movie as the model knows it.

    ``n_ratings`` and ``mean_rating`` are over the training ratings (``mean_rating`` is
    ``None`` for a movie with none); ``year`` is ``None`` when unknown.
    """

    movie_id: int
    title: str
    year: int | None
    n_ratings: int
    mean_rating: float | None

    @property
    def label(self) -> str:
        """Title with the year, e.g. ``"Toy Story (1995)"``."""
        return display_title(self.title, self.year)

    def to_dict(self) -> dict:
        return {
            "movie_id": self.movie_id, "title": self.title, "year": self.year,
            "n_ratings": self.n_ratings, "mean_rating": _finite(self.mean_rating),
            "label": self.label,
        }


@dataclass
class Recommendation:
    """One recommended movie.

    ``predicted_rating`` is the model's rating clipped to the scale; ``score`` the value the
    list is ordered by (depends on the ranking mode). ``similar_users``: up to 5 of the most
    similar users who rated it highly, ``{"user_id", "similarity", "rating"}``;
    ``pulled_up_by``: the user's ratings that lift its prediction most, ``{"movie_id",
    "title", "year", "rating", "contribution", "relative"}`` — ``contribution``: how much
    the prediction drops without that rating, in stars; ``relative``: that drop minus the
    rating's average drop over the best candidates (ordered by it, largest first).
    """

    movie_id: int
    title: str
    year: int | None
    predicted_rating: float
    score: float
    reason: str
    similar_users: list[dict] = field(default_factory=list)
    pulled_up_by: list[dict] = field(default_factory=list)
    #: Training ratings of this movie.
    n_ratings: int = 0
    #: How many of the consulted similar users rated it, and rated it highly.
    neighbours_rated: int = 0
    neighbours_liked: int = 0

    @property
    def label(self) -> str:
        return display_title(self.title, self.year)

    def to_dict(self) -> dict:
        """JSON-ready dict (plain types; the evidence lists are copied)."""
        return {
            "movie_id": self.movie_id, "title": self.title, "year": self.year,
            "predicted_rating": _finite(self.predicted_rating), "score": _finite(self.score),
            "reason": self.reason,
            "similar_users": [dict(d) for d in self.similar_users],
            "pulled_up_by": [dict(d) for d in self.pulled_up_by],
            "n_ratings": self.n_ratings, "neighbours_rated": self.neighbours_rated,
            "neighbours_liked": self.neighbours_liked, "label": self.label,
        }


@dataclass
class Recommendations:
    """A top-N list and how it was made.

    ``fallback``: True when the list is the popular-movies fallback (``note`` says why).
    ``neighbours``: the most similar users consulted, ``{"user_id", "similarity",
    "n_ratings", "liked": [movies they rated highest]}``. ``used_ratings``: the ratings the
    list was computed from, ``{"movie_id", "title", "year", "rating"}``.
    """

    items: list[Recommendation]
    fallback: bool = False
    note: str | None = None
    neighbours: list[dict] = field(default_factory=list)
    used_ratings: list[dict] = field(default_factory=list)
    #: The ranking mode used, e.g. ``"damped:20"`` (``"popular"`` for the fallback).
    ranking: str = ""
    #: The known user's raw id (``recommend_for_user``), else ``None``.
    user_id: int | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    @property
    def movie_ids(self) -> list[int]:
        """Raw ids of the recommended movies, best first."""
        return [r.movie_id for r in self.items]

    def to_dict(self) -> dict:
        """JSON-ready dict (plain types only; NaN → ``None``). The results are built from
        plain Python values, so this is a shallow copy — no recursive conversion (which cost
        1.6 ms per explained top-10)."""
        return {
            "items": [r.to_dict() for r in self.items],
            "fallback": self.fallback,
            "note": self.note,
            "neighbours": [
                {**d, "liked": [dict(m) for m in d.get("liked", ())]} for d in self.neighbours
            ],
            "used_ratings": [dict(d) for d in self.used_ratings],
            "ranking": self.ranking,
            "user_id": self.user_id,
        }


def _finite(value: float | None) -> float | None:
    """``value`` as a float, ``None`` when missing or not finite (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------------------ recommender


class Recommender:
    """Top-N recommendations from one checkpoint (see the module docstring).

    Safe to share between threads (lazy indexes are built under a lock; inference is
    read-only). ``n_neighbours`` similar users are consulted per request, from a pool of at most
    ``neighbour_pool`` stored users with ≥ ``neighbour_min_ratings`` ratings.
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        n_neighbours: int = DEFAULT_NEIGHBOURS,
        neighbour_min_ratings: int = NEIGHBOUR_MIN_RATINGS,
        neighbour_pool: int = NEIGHBOUR_POOL,
    ) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model.eval()
        self.scale: RatingScale = checkpoint.scale
        self.n_movies: int = int(checkpoint.model.n_movies)
        self.movie_ids = np.asarray(checkpoint.movie_ids, dtype=np.int64)
        self.titles: list[str] = list(checkpoint.titles)
        self.years = np.asarray(checkpoint.years, dtype=np.int64)
        stats = checkpoint.stats
        self.counts = np.asarray(stats.movie_counts, dtype=np.int64)
        self.movie_means = np.asarray(stats.movie_means, dtype=np.float32)
        self.global_mean = float(stats.global_mean)
        self.user_ids = np.asarray(checkpoint.user_ids, dtype=np.int64)
        self.stored = checkpoint.ratings
        self.n_neighbours = int(n_neighbours)
        self.neighbour_min_ratings = int(neighbour_min_ratings)
        self.neighbour_pool = int(neighbour_pool)
        self.threshold = float(self.scale.relevance_threshold())
        #: The model has its own ranking head (``rank_dense``, :mod:`aerec.model.ranked`).
        self.has_head = callable(getattr(self.model, "rank_dense", None))
        #: The ranking used when none is asked for: the head if there is one, else
        #: :data:`~aerec.recommend.ranking.DEFAULT_RANKING` (docs/ranking.md).
        self.default_ranking = HEAD if self.has_head else DEFAULT_RANKING
        self._movie_col = {int(m): i for i, m in enumerate(self.movie_ids.tolist())}
        self._users_sorted = bool(np.all(np.diff(self.user_ids) > 0))
        self._user_row: dict[int, int] | None = None
        self._titles: TitleIndex | None = None
        self._neighbours: NeighbourIndex | None = None
        self._lock = threading.Lock()
        # a year in the title text fills an unknown year (MovieLens titles carry "(1995)")
        missing = np.flatnonzero(self.years <= 0)
        if len(missing):
            from aerec.recommend.titles import split_year

            for col in missing.tolist():
                year = split_year(self.titles[col])[1]
                if year is not None:
                    self.years[col] = year

    # -------------------------------------------------------------------- construction
    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        warm: bool = False,
        **options: Any,
    ) -> Recommender:
        """Load from a run directory (its ``best.pt``, else ``last.pt``) or a ``.pt`` file.

        Needs nothing but the checkpoint. ``warm=True`` builds the title and neighbour indexes
        now instead of on first use (a server should, to keep first requests fast).
        ``options`` go to the constructor (``n_neighbours``, ``neighbour_min_ratings``,
        ``neighbour_pool``).
        """
        path = Path(path)
        if path.is_dir():
            for name in ("best.pt", "last.pt"):
                if (path / name).is_file():
                    path = path / name
                    break
            else:
                raise FileNotFoundError(
                    f"{path}: no best.pt or last.pt in this folder; pass a run directory or a "
                    "checkpoint file"
                )
        elif not path.exists():
            raise FileNotFoundError(f"{path}: no such run directory or checkpoint")
        recommender = cls(load_checkpoint(path, device=device), **options)
        if warm:
            recommender.warm()
        return recommender

    def warm(self) -> Recommender:
        """Build the lazily built indexes (titles, similar-user codes) now."""
        self.title_index()
        self.neighbour_index()
        return self

    @property
    def path(self) -> Path:
        return Path(self.checkpoint.path)

    @property
    def n_users(self) -> int:
        """Stored users (0 when the checkpoint holds no training ratings)."""
        return 0 if self.stored is None else self.stored.n_users

    def title_index(self) -> TitleIndex:
        """The :class:`TitleIndex` over this model's movies (built on first use)."""
        if self._titles is None:
            with self._lock:
                if self._titles is None:
                    self._titles = TitleIndex(
                        self.titles, self.years, self.movie_ids, self.counts
                    )
        return self._titles

    def neighbour_index(self) -> NeighbourIndex | None:
        """Codes of the stored users for similar-user search (built on first use), or
        ``None`` when the checkpoint holds no training ratings."""
        if self.stored is None:
            return None
        if self._neighbours is None:
            with self._lock:
                if self._neighbours is None:
                    self._neighbours = NeighbourIndex.build(
                        self.model, self.stored, min_ratings=self.neighbour_min_ratings,
                        max_users=self.neighbour_pool,
                    )
        return self._neighbours

    # -------------------------------------------------------------------- movies
    def _column(self, movie_id: int) -> int:
        col = self._movie_col.get(int(movie_id))
        if col is None:
            lo, hi = int(self.movie_ids.min()), int(self.movie_ids.max())
            raise UnknownMovie(
                f"movie id {movie_id} is not in this model (it knows {self.n_movies:,} movies, "
                f"ids {lo}–{hi})"
            )
        return col

    def _year(self, col: int) -> int | None:
        year = int(self.years[col])
        return year if year > 0 else None

    def _label(self, col: int) -> str:
        return display_title(self.titles[col], self._year(col))

    def _info(self, col: int) -> MovieInfo:
        n = int(self.counts[col])
        return MovieInfo(
            movie_id=int(self.movie_ids[col]),
            title=self.titles[col],
            year=self._year(col),
            n_ratings=n,
            mean_rating=round(float(self.movie_means[col]), 4) if n > 0 else None,
        )

    def movie(self, movie_id: int) -> MovieInfo:
        """The movie with raw id ``movie_id``; raises :class:`UnknownMovie`."""
        return self._info(self._column(movie_id))

    def resolve_movie(self, ref: int | str) -> int:
        """Raw movie id of ``ref``: an int (or an all-digit string) is an id; any other string
        is a title, matched forgivingly (:mod:`aerec.recommend.titles`). An all-digit string
        that is no known id is tried as a title (e.g. "1984").

        Raises :class:`UnknownMovie` (with ``suggestions``) or :class:`AmbiguousTitle` (with
        ``candidates``).
        """
        return int(self.movie_ids[self._resolve_column(ref)])

    def _resolve_column(self, ref: int | str) -> int:
        if isinstance(ref, bool):
            raise UnknownMovie(f"{ref!r} is not a movie id or title")
        if isinstance(ref, numbers.Integral):
            return self._column(int(ref))
        if isinstance(ref, float) and ref.is_integer():
            return self._column(int(ref))
        if not isinstance(ref, str):
            raise UnknownMovie(f"{ref!r} is not a movie id or title")
        text = ref.strip()
        if text.isdigit():
            col = self._movie_col.get(int(text))
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
        """Movies for an incremental search box: exact, prefix and substring title matches
        (most-rated first), then typo-tolerant matches."""
        return [self._info(c) for c in self.title_index().search(query, limit)]

    # -------------------------------------------------------------------- users
    def _user_row_of(self, user_id: int) -> int:
        if isinstance(user_id, bool) or not isinstance(user_id, (numbers.Integral, str)):
            raise UnknownUser(f"{user_id!r} is not a user id")
        try:
            uid = int(user_id)
        except ValueError:
            raise UnknownUser(f"{user_id!r} is not a user id") from None
        if self._users_sorted:
            row = int(np.searchsorted(self.user_ids, uid))
            found = row < len(self.user_ids) and int(self.user_ids[row]) == uid
        else:
            if self._user_row is None:
                self._user_row = {int(u): i for i, u in enumerate(self.user_ids.tolist())}
            row = self._user_row.get(uid, -1)
            found = row >= 0
        if not found:
            raise UnknownUser(
                f"user {uid} is not in this model's training data "
                f"({len(self.user_ids):,} users); rate some movies instead"
            )
        if self.stored is None:
            raise UnknownUser(
                f"this checkpoint ({self.path.name}) stores no training ratings, so user {uid} "
                "cannot be looked up; retrain with this version of aerec, or pass their ratings"
            )
        return row

    def user_ratings(self, user_id: int) -> list[dict]:
        """A known user's stored training ratings, ``{"movie_id", "title", "year", "rating"}``."""
        row = self._user_row_of(user_id)
        cols, ratings = self.stored.row(row)  # type: ignore[union-attr]
        return self._used(cols, ratings)

    # -------------------------------------------------------------------- ratings input
    def parse_ratings(
        self, ratings: Mapping[int | str, float] | Sequence[Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A user's ratings → ``(movie columns int64 (n,), ratings float32 (n,))``.

        Accepts a mapping ``{movie: rating}``, a sequence of ``(movie, rating)`` pairs, or a
        sequence of dicts ``{"movie_id" | "title" | "movie": ..., "rating": ...}``; a movie is a
        raw id or a title. Raises :class:`InvalidRating` for ratings that are not finite
        numbers within the scale, or for one movie rated twice with different ratings.
        """
        if ratings is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if isinstance(ratings, Mapping):
            pairs: Iterable[Any] = ratings.items()
        elif isinstance(ratings, (str, bytes)):
            raise InvalidRating("ratings must be movie → rating pairs, not a string")
        else:
            pairs = ratings
        chosen: dict[int, float] = {}
        for pair in pairs:
            ref, value = self._pair(pair)
            col = self._resolve_column(ref)
            rating = self._rating(value, col)
            if col in chosen and chosen[col] != rating:
                raise InvalidRating(
                    f"{self._label(col)} is rated twice ({stars(chosen[col])} and "
                    f"{stars(rating)}); give one rating per movie"
                )
            chosen[col] = rating
        cols = np.fromiter(chosen.keys(), dtype=np.int64, count=len(chosen))
        vals = np.fromiter(chosen.values(), dtype=np.float32, count=len(chosen))
        return cols, vals

    @staticmethod
    def _pair(pair: Any) -> tuple[Any, Any]:
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
        scale = self.scale
        where = f"{self._label(col)} (id {int(self.movie_ids[col])})"
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

    def _used(self, cols: np.ndarray, ratings: np.ndarray) -> list[dict]:
        return [
            {
                "movie_id": int(self.movie_ids[c]),
                "title": self.titles[c],
                "year": self._year(c),
                "rating": float(r),
            }
            for c, r in zip(cols.tolist(), ratings.tolist())
        ]

    # -------------------------------------------------------------------- filters
    def _eligible(
        self, min_ratings: FilterValue, year_min: FilterValue, year_max: FilterValue
    ) -> np.ndarray:
        """Bool ``(n_movies,)``: movies passing the filters."""
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

    @staticmethod
    def _check_k(k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"k must be a positive whole number, got {k!r}")
        return int(k)

    @staticmethod
    def _top(scores: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
        """Columns of the ``k`` best eligible scores, best first (ties → lower column);
        ``-inf`` and NaN scores are never chosen."""
        cand = np.flatnonzero(eligible & (scores > -np.inf))
        if len(cand) == 0:
            return cand
        s = scores[cand]
        if len(cand) > k:
            part = np.argpartition(-s, k - 1)[:k]
            # include every candidate tied with the k-th score so ties break by column
            kth = s[part].min()
            part = np.flatnonzero(s >= kth)
            cand, s = cand[part], s[part]
        order = np.lexsort((cand, -s))[:k]
        return cand[order]

    # -------------------------------------------------------------------- recommending
    def ranking_mode(self, ranking: str | None = None) -> Ranking:
        """The parsed ranking mode (``None``: :attr:`default_ranking`); ``"head"`` needs a
        model with a ranking head."""
        mode = parse_ranking(self.default_ranking if ranking is None else ranking)
        if mode.name == HEAD and not self.has_head:
            raise ValueError(
                "this model has no ranking head (train with ranking = \"ease\" for one); "
                "choose predicted, damped, lcb or blend"
            )
        return mode

    def recommend(
        self,
        ratings: Mapping[int | str, float] | Sequence[tuple[int | str, float]],
        k: int = 10,
        *,
        min_ratings: int | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        ranking: str | None = None,
        explain: bool = True,
    ) -> Recommendations:
        """Top-``k`` movies for a user who gives ``ratings`` (movie id or title → rating).

        Movies in ``ratings`` are never recommended. Filters: ``min_ratings`` (training
        ratings per movie), ``year_min``/``year_max`` (release year; movies of unknown year are
        dropped by a year filter). ``ranking``: a mode of :mod:`aerec.recommend.ranking`
        (default :attr:`default_ranking`: the model's ranking head if it has one, else
        :data:`~aerec.recommend.ranking.DEFAULT_RANKING`). Empty ``ratings`` → the
        :meth:`popular` fallback. ``explain=False`` skips similar users and attribution.
        """
        k = self._check_k(k)
        mode = self.ranking_mode(ranking)
        eligible = self._eligible(min_ratings, year_min, year_max)
        cols, vals = self.parse_ratings(ratings)
        if len(cols) == 0:
            return self._popular(
                k, eligible, np.zeros(0, np.int64), explain=explain,
                note=(
                    "No ratings given, so these are the fallback: well-rated popular movies "
                    "(damped mean rating among movies with enough ratings), not personal "
                    "recommendations. Rate a few movies to get your own."
                ),
            )
        return self._recommend_columns(cols, vals, k, eligible, mode, explain)

    def recommend_for_user(
        self,
        user_id: int,
        k: int = 10,
        *,
        min_ratings: int | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        ranking: str | None = None,
        explain: bool = True,
    ) -> Recommendations:
        """Top-``k`` for a known user (raw id), folded in from all their stored training
        ratings — the same list as ``recommend`` given those ratings (the user themself is
        left out of their similar users). Raises :class:`UnknownUser`."""
        k = self._check_k(k)
        mode = self.ranking_mode(ranking)
        eligible = self._eligible(min_ratings, year_min, year_max)
        row = self._user_row_of(user_id)
        cols, vals = self.stored.row(row)  # type: ignore[union-attr]
        if len(cols) == 0:
            out = self._popular(
                k, eligible, cols, explain=explain,
                note=(
                    f"User {int(user_id)} has no stored training ratings, so these are the "
                    "fallback: well-rated popular movies, not personal recommendations."
                ),
            )
        else:
            out = self._recommend_columns(cols, vals, k, eligible, mode, explain, self_row=row)
        out.user_id = int(user_id)
        return out

    def popular(
        self,
        k: int = 10,
        *,
        min_ratings: int | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        exclude: Iterable[int | str] = (),
        explain: bool = True,
    ) -> Recommendations:
        """The documented fallback: well-rated popular movies.

        Movies are ranked by their damped (Bayesian) mean training rating
        ``(n·mean + 25·global_mean) / (n + 25)`` among movies with at least ``min_ratings``
        training ratings (default: the median count of rated movies). ``exclude``: movies
        (ids or titles) to leave out. ``fallback`` is True and ``note`` says what this is.
        """
        k = self._check_k(k)
        eligible = self._eligible(min_ratings, year_min, year_max)
        cols = np.asarray([self._resolve_column(m) for m in exclude], dtype=np.int64)
        return self._popular(
            k, eligible, cols, explain=explain, default_min=min_ratings is None,
            note=(
                "Well-rated popular movies (damped mean rating among movies with enough "
                "ratings), the same for everyone."
            ),
        )

    def popular_min_ratings(self) -> int:
        """Default least training ratings for the fallback: the median over rated movies."""
        rated = self.counts[self.counts > 0]
        return max(1, int(np.median(rated))) if len(rated) else 1

    def _popular(
        self, k: int, eligible: np.ndarray, exclude_cols: np.ndarray, *, explain: bool,
        note: str, default_min: bool = True,
    ) -> Recommendations:
        eligible = eligible.copy()
        if default_min:
            eligible &= self.counts >= self.popular_min_ratings()
        eligible[exclude_cols] = False
        scores = damped_means(self.movie_means, self.counts, self.global_mean, POPULAR_PRIOR)
        top = self._top(scores, eligible, k)
        items = []
        for col in top.tolist():
            n, mean = int(self.counts[col]), float(self.movie_means[col])
            items.append(Recommendation(
                movie_id=int(self.movie_ids[col]), title=self.titles[col], year=self._year(col),
                predicted_rating=round(mean, 4), score=round(float(scores[col]), 4),
                reason=(
                    f"Popular and well rated: {mean:.1f}★ average over {n:,} ratings."
                    if explain else f"{mean:.1f}★ average over {n:,} ratings."
                ),
                n_ratings=n,
            ))
        if not items:
            note = note + " No movie passes the filters."
        return Recommendations(items=items, fallback=True, note=note, ranking="popular")

    def predict(self, ratings: Mapping[int | str, float] | Sequence[Any]) -> np.ndarray:
        """Predicted ratings for every movie (clipped to the scale), float32 ``(n_movies,)``,
        for a user giving ``ratings`` (aligned with ``movie_ids``)."""
        cols, vals = self.parse_ratings(ratings)
        out = score_user(self.model, cols, vals)[1].detach().float().cpu().numpy()
        return np.clip(out, self.scale.minimum, self.scale.maximum)

    def _recommend_columns(
        self,
        cols: np.ndarray,
        vals: np.ndarray,
        k: int,
        eligible: np.ndarray,
        mode,
        explain: bool,
        self_row: int | None = None,
    ) -> Recommendations:
        code, out = score_user(self.model, cols, vals)
        predicted = out.detach().float().cpu().numpy()
        scale = self.scale
        if mode.name == HEAD:
            head = self.model.rank_dense(np.array([0, len(cols)], dtype=np.int64), cols, vals)
            scores = head[0].detach().float().cpu().numpy().copy()
            scores[self.counts == 0] = -np.inf  # as in every mode: untrained movies never rank
        else:
            scores = mode.scores(predicted, self.counts, scale.maximum - scale.minimum)
        eligible = eligible.copy()
        eligible[cols] = False
        top = self._top(scores, eligible, k)
        clipped = np.clip(predicted, scale.minimum, scale.maximum)

        pulled: list[list[dict]] = [[] for _ in top]
        evidence: list[tuple[list[dict], int, int]] = [([], 0, 0) for _ in top]
        neighbours: list[dict] = []
        if explain and len(top):
            reference = self._top(scores, eligible, max(REFERENCE_MOVIES, k))
            pulled = self._pulled_up(cols, vals, top, reference)
            neighbours, evidence = self._neighbour_evidence(code, top, cols, self_row)

        items = []
        for j, col in enumerate(top.tolist()):
            p = float(clipped[col])
            similar, n_rated, n_liked = evidence[j]
            if explain:
                named = [d for d in pulled[j] if d["relative"] > 0][:2] or pulled[j][:1]
                reason = reason_sentence(
                    [{"label": d["label"], "rating": d["rating"]} for d in named],
                    len(neighbours), n_liked, self.threshold, p,
                )
            else:
                reason = f"Predicted {stars(p)} for you."
            items.append(Recommendation(
                movie_id=int(self.movie_ids[col]), title=self.titles[col], year=self._year(col),
                predicted_rating=round(p, 4), score=round(float(scores[col]), 4),
                reason=reason, similar_users=similar,
                pulled_up_by=[{k2: v for k2, v in d.items() if k2 != "label"} for d in pulled[j]],
                n_ratings=int(self.counts[col]), neighbours_rated=n_rated,
                neighbours_liked=n_liked,
            ))
        note = None
        if len(top) < k:
            note = (
                f"Only {len(top)} movie(s) pass the filters and are not already rated."
                if len(top) else "No movie passes the filters that you have not rated already."
            )
        return Recommendations(
            items=items, fallback=False, note=note, neighbours=neighbours,
            used_ratings=self._used(cols, vals), ranking=mode.label,
        )

    # -------------------------------------------------------------------- evidence
    def _pulled_up(
        self, cols: np.ndarray, vals: np.ndarray, top: np.ndarray, reference: np.ndarray
    ) -> list[list[dict]]:
        """Per recommended movie, the user's ratings that lift it most (leave-one-out).

        A rating's ``contribution`` is the drop of the movie's prediction when that rating is
        removed, in stars. Many ratings lift *every* prediction (a 5★ raises the whole
        output), so ratings are ordered by their ``relative`` lift: the contribution minus the
        rating's average contribution over the ``reference`` movies (the best-ranked
        candidates) — what makes *this* movie stand out. Ratings lifting it by less than
        :data:`MIN_CONTRIBUTION` stars are not listed.
        """
        tested = None
        m = loo_count(len(cols))
        if m < len(cols):  # long profiles: the highest ratings are the likely lifters
            tested = np.sort(np.argsort(-vals, kind="stable")[:m])
        targets = np.concatenate([top, reference[~np.isin(reference, top)]])
        tested, contrib = leave_one_out(self.model, cols, vals, targets, tested)
        baseline = contrib.mean(axis=1) if contrib.size else np.zeros(len(tested), np.float32)
        out: list[list[dict]] = []
        for j in range(len(top)):
            c = contrib[:, j]
            relative = c - baseline
            order = np.lexsort((tested, -relative))
            listed = [i for i in order.tolist() if c[i] >= MIN_CONTRIBUTION][:LISTED]
            out.append([
                {
                    "movie_id": int(self.movie_ids[cols[tested[i]]]),
                    "title": self.titles[cols[tested[i]]],
                    "year": self._year(int(cols[tested[i]])),
                    "label": self._label(int(cols[tested[i]])),
                    "rating": float(vals[tested[i]]),
                    "contribution": round(float(c[i]), 4),
                    "relative": round(float(relative[i]), 4),
                }
                for i in listed
            ])
        return out

    def _neighbour_evidence(
        self, code: torch.Tensor, top: np.ndarray, cols: np.ndarray, self_row: int | None
    ) -> tuple[list[dict], list[tuple[list[dict], int, int]]]:
        """The most similar stored users and, per recommended movie, who of them rated it
        highly: ``(neighbours, [(similar_users, n_rated, n_liked) per movie])``."""
        index = self.neighbour_index()
        empty = [([], 0, 0) for _ in top]
        if index is None or len(index) == 0 or self.n_neighbours <= 0:
            return [], empty
        rows, sims = index.nearest(code, self.n_neighbours, exclude_row=self_row)
        if len(rows) == 0:
            return [], empty
        stored = self.stored
        indptr, indices, codes = gather_rows(stored, rows)  # type: ignore[arg-type]
        ratings = stored.ratings_of(codes)  # type: ignore[union-attr]
        owner = np.repeat(np.arange(len(rows)), np.diff(indptr))
        threshold = self.threshold - 1e-6

        # per recommended movie: the neighbours' ratings of it (≤ n_neighbours each)
        hit = np.isin(indices, top)
        h_owner, h_col, h_rating = owner[hit], indices[hit], ratings[hit]
        evidence = []
        for col in top.tolist():
            sel = h_col == col
            who, rating = h_owner[sel], h_rating[sel]
            liked = rating >= threshold
            order = np.argsort(who[liked], kind="stable")[:LISTED]  # owners are by similarity
            similar = [
                {
                    "user_id": int(self.user_ids[rows[w]]),
                    "similarity": round(float(sims[w]), 4),
                    "rating": float(r),
                }
                for w, r in zip(who[liked][order].tolist(), rating[liked][order].tolist())
            ]
            evidence.append((similar, int(sel.sum()), int(liked.sum())))

        # what each neighbour liked most, among movies the user has not rated: one sort of
        # all their fresh ratings by (neighbour, rating ↓, popularity ↓, column), then the
        # first NEIGHBOUR_LIKED of each neighbour
        rated = np.zeros(self.n_movies, dtype=bool)
        rated[cols] = True
        fresh = np.flatnonzero(~rated[indices])
        f_owner, f_col, f_rating = owner[fresh], indices[fresh], ratings[fresh]
        order = np.lexsort((f_col, -self.counts[f_col], -f_rating, f_owner))
        f_owner, f_col, f_rating = f_owner[order], f_col[order], f_rating[order]
        starts = np.searchsorted(f_owner, np.arange(len(rows)))
        rank = np.arange(len(f_owner)) - starts[f_owner]
        best = rank < NEIGHBOUR_LIKED
        liked: list[list[dict]] = [[] for _ in range(len(rows))]
        for w, c, r in zip(f_owner[best].tolist(), f_col[best].tolist(),
                           f_rating[best].tolist()):
            liked[w].append({
                "movie_id": int(self.movie_ids[c]), "title": self.titles[c],
                "year": self._year(c), "rating": float(r),
            })
        n_ratings = np.diff(indptr).tolist()
        neighbours = [
            {
                "user_id": int(self.user_ids[row]),
                "similarity": round(float(sims[i]), 4),
                "n_ratings": int(n_ratings[i]),
                "liked": liked[i],
            }
            for i, row in enumerate(rows.tolist())
        ]
        return neighbours, evidence


__all__ = ["MovieInfo", "Recommendation", "Recommendations", "Recommender"]
