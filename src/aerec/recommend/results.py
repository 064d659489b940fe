"""What a :class:`~aerec.recommend.Recommender` answers: movies and top-N lists as dataclasses
whose ``to_dict()`` is JSON-ready (plain types; NaN → ``None``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aerec.jsonable import plain
from aerec.recommend.titles import display_title


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
            "n_ratings": self.n_ratings, "mean_rating": plain(self.mean_rating),
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
            "predicted_rating": plain(self.predicted_rating), "score": plain(self.score),
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
    list was computed from, ``{"movie_id", "title", "year", "rating"}``. ``order_note``: why
    the list is in this order, in one plain sentence (a lower predicted rating can rank
    higher). ``resolved``: how each movie given by title was read, ``{"query", "movie_id",
    "title", "year"}``.
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
    #: Why the list is in this order, in plain words (:func:`aerec.recommend.ranking.order_note`).
    order_note: str = ""
    #: How the titles the person typed were resolved, in the order given.
    resolved: list[dict] = field(default_factory=list)

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
            "order_note": self.order_note,
            "user_id": self.user_id,
            "resolved": [dict(d) for d in self.resolved],
        }


__all__ = ["MovieInfo", "Recommendation", "Recommendations"]
