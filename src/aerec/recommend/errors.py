"""Errors a recommender raises for bad requests. All are ``ValueError`` subclasses whose message
is meant for the user as is (the CLI prints it as one ``error:`` line, the server as a 4xx)."""

from __future__ import annotations


class RecommendError(ValueError):
    """Base class of the recommender's request errors."""


class UnknownMovie(RecommendError):
    """A movie id or title the model does not know.

    ``suggestions``: the closest titles, best first, as dicts ``{"movie_id", "title", "year"}``.
    """

    def __init__(self, message: str, suggestions: list[dict] | None = None) -> None:
        self.suggestions = list(suggestions or [])
        if self.suggestions:
            message += "; did you mean " + ", ".join(_label(s) for s in self.suggestions) + "?"
        super().__init__(message)


class AmbiguousTitle(RecommendError):
    """A title that matches several movies (remakes, same names, the films of a series).

    ``candidates``: dicts ``{"movie_id", "title", "year"}``; pick one by id or add the year.
    ``total``: how many movies matched, when only the most-rated ``candidates`` are listed;
    ``example``: the candidate the message shows how to ask for (default the first).
    """

    def __init__(
        self, query: str, candidates: list[dict], total: int | None = None,
        example: dict | None = None,
    ) -> None:
        self.query = query
        self.candidates = list(candidates)
        self.total = max(int(total or 0), len(self.candidates))
        listed = "; ".join(f"{_label(c)} = id {c['movie_id']}" for c in self.candidates)
        shown = (
            f"; the {len(self.candidates)} most rated" if self.total > len(self.candidates)
            else ""
        )
        example = example or (self.candidates[0] if self.candidates else None)
        shown_example = f'"{_label(example)}"' if example else '"Title (Year)"'
        super().__init__(
            f"{query!r} matches {self.total} movies{shown}: {listed}. "
            f"Give the movie id or add the year, e.g. {shown_example}"
        )


class InvalidRating(RecommendError):
    """A rating that is not a finite number within the model's rating scale."""


class UnknownUser(RecommendError):
    """A user id the checkpoint holds no ratings for."""


def _label(movie: dict) -> str:
    title, year = movie["title"], movie.get("year")
    if year and not str(title).rstrip().endswith(f"({year})"):
        return f"{title} ({year})"
    return str(title)


__all__ = [
    "AmbiguousTitle",
    "InvalidRating",
    "RecommendError",
    "UnknownMovie",
    "UnknownUser",
]
