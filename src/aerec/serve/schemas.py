"""Pydantic models of the HTTP API: request bodies, responses and errors (they feed /docs).

The request model carries the server's limits (``k`` at most ``max_k``, at most
``max_ratings`` ratings), so :func:`recommendation_request_model` builds it per app and the
OpenAPI page shows the limits actually in force.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

#: Defaults of the limits (``create_app`` arguments).
DEFAULT_MAX_RATINGS = 1_000
DEFAULT_MAX_K = 100
DEFAULT_MAX_BODY_BYTES = 256 * 1024
DEFAULT_SEARCH_LIMIT = 10
MAX_SEARCH_LIMIT = 50
MAX_TITLE_CHARS = 300
#: Seconds a client has for a request's head (from the connection opening or the previous
#: answer), for its body and for taking each part of an answer; idle keep-alive seconds.
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 10.0
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0


class RatingIn(BaseModel):
    """One rating of the person asking: a movie (by id or by title) and the stars given."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"movie_id": 50, "rating": 5}, {"title": "Toy Story",
                                                                         "rating": 4}]},
    )

    movie_id: int | None = Field(
        None,
        strict=True,
        description="Raw movie id of the dataset (give this or `title`).",
        examples=[50],
    )
    title: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_TITLE_CHARS,
        description="Movie title, matched exactly first, then loosely; an ambiguous title is "
        "answered 422 with the candidates, an unknown one with suggestions.",
        examples=["Toy Story"],
    )
    rating: float = Field(
        ...,
        strict=True,  # no true → 1.0 or "4" → 4.0
        allow_inf_nan=False,
        description="Stars on the model's scale (see `GET /health`: minimum, maximum, step); "
        "NaN and infinities are refused.",
        examples=[4],
    )

    @model_validator(mode="after")
    def _one_reference(self) -> RatingIn:
        if (self.movie_id is None) == (self.title is None):
            raise ValueError("give exactly one of movie_id or title")
        return self

    @property
    def ref(self) -> int | str:
        """The movie reference as :meth:`Recommender.recommend` takes it."""
        return self.movie_id if self.movie_id is not None else str(self.title)


class _FilterFields(BaseModel):
    """Filters shared by both recommendation endpoints."""

    model_config = ConfigDict(extra="forbid")

    min_ratings: int | None = Field(
        None, ge=0, description="Only recommend movies with at least this many training ratings."
    )
    year_min: int | None = Field(None, description="Only movies released in or after this year.")
    year_max: int | None = Field(None, description="Only movies released in or before this year.")
    ranking: str | None = Field(
        None,
        max_length=40,
        description="Ranking rule of the recommender (`null` = its default); an unknown name "
        "is answered 422 with the valid ones.",
    )
    explain: bool = Field(True, description="Add reasons, similar users and neighbours.")


def recommendation_request_model(max_ratings: int, max_k: int) -> type[BaseModel]:
    """The ``POST /recommendations`` body model with the server's limits in its schema."""
    return create_model(
        "RecommendationRequest",
        __base__=_FilterFields,
        __doc__=(
            "Ratings of a person who is not in the training data, and what to return.\n\n"
            f"At most {max_ratings:,} ratings (more: 413). An empty list is allowed: the answer "
            "is then the popular-movies fallback (`fallback: true`, with a `note`). Later "
            "duplicates of a movie override earlier ones only if the recommender allows it; "
            "otherwise it answers 422."
        ),
        ratings=(
            list[RatingIn],
            Field(
                ...,
                description=f"The person's ratings, at most {max_ratings:,} (more: 413).",
                json_schema_extra={"maxItems": max_ratings},
            ),
        ),
        k=(
            int,
            Field(
                10, strict=True, ge=1, le=max_k,
                description=f"How many movies to return (1–{max_k}).",
            ),
        ),
    )


class MovieOut(BaseModel):
    """A movie of the model's catalogue."""

    movie_id: int
    title: str
    year: int | None = Field(None, description="Release year; null (or 0) when unknown.")
    n_ratings: int = Field(..., description="Training ratings of the movie.")
    mean_rating: float | None = Field(None, description="Mean training rating.")


class MovieSearchOut(BaseModel):
    """Titles matching a query, best match first."""

    query: str
    items: list[MovieOut]


class RecommendationOut(BaseModel):
    """One recommended movie."""

    model_config = ConfigDict(extra="allow")

    movie_id: int
    title: str
    year: int | None = None
    predicted_rating: float | None = Field(None, description="Predicted stars, on the scale.")
    score: float | None = Field(None, description="The value the list is ranked by.")
    reason: str | None = Field(None, description="Why this movie, in one sentence.")
    similar_users: Any = Field(None, description="Users of the training data with similar taste.")
    pulled_up_by: Any = Field(None, description="The person's ratings that raised this movie.")


class RecommendationsOut(BaseModel):
    """Top-k movies, best first, with how they were found."""

    model_config = ConfigDict(extra="allow")

    items: list[RecommendationOut]
    fallback: bool = Field(
        ..., description="True when the list is the popular-movies fallback (e.g. no ratings)."
    )
    note: str | None = Field(None, description="Why a fallback was used, or other remarks.")
    order_note: str = Field(
        "", description="Why the list is in this order, in one plain sentence: it is ordered by "
        "how likely the person is to watch and like each movie, so a lower predicted rating can "
        "rank higher.",
    )
    neighbours: list[Any] = Field(default_factory=list)
    used_ratings: list[Any] = Field(
        default_factory=list, description="The ratings as the model used them (resolved ids)."
    )


class ScaleOut(BaseModel):
    """The rating scale: ``minimum``, ``minimum + step``, …, ``maximum``."""

    minimum: float
    maximum: float
    step: float


class ModelInfoOut(BaseModel):
    n_movies: int
    n_users: int | None = Field(None, description="Users of the training data (known users).")
    scale: ScaleOut


class LimitsOut(BaseModel):
    max_ratings: int
    max_k: int
    max_body_bytes: int
    max_search_limit: int
    max_in_flight: int | None = Field(
        None, description="Requests answered at once (503 with Retry-After beyond); null: none."
    )


class HealthOut(BaseModel):
    """Liveness and what the server is serving."""

    status: str = Field(..., examples=["ok"])
    version: str = Field(..., description="aerec version.")
    model: ModelInfoOut
    limits: LimitsOut


class ErrorOut(BaseModel):
    """Every error answer: a readable message, plus details for some errors."""

    model_config = ConfigDict(extra="allow")

    detail: str = Field(..., description="What was wrong, in one readable message.")
    suggestions: list[Any] | None = Field(
        None, description="Unknown movie title: the closest titles."
    )
    candidates: list[Any] | None = Field(
        None, description="Ambiguous title: the movies it could mean."
    )
    errors: list[Any] | None = Field(None, description="Validation errors, one per field.")


#: The error answers of the API routes, for the OpenAPI description.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Malformed JSON."},
    408: {"model": ErrorOut, "description": "The body did not arrive in time."},
    413: {"model": ErrorOut, "description": "Too many ratings, or too large a body."},
    415: {"model": ErrorOut, "description": "The body is not `application/json`."},
    422: {
        "model": ErrorOut,
        "description": "Invalid values: a rating off the scale (outside it or between its "
        "steps) or not finite, an unknown movie "
        "(with `suggestions`), an ambiguous title (with `candidates`), `k` out of range.",
    },
    500: {"model": ErrorOut, "description": "A bug; the message is generic, the log has more."},
    503: {
        "model": ErrorOut,
        "description": "Busy: as many requests as the server answers at once are in progress; "
        "retry after the `Retry-After` seconds.",
    },
}


__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_KEEP_ALIVE_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_K",
    "DEFAULT_MAX_RATINGS",
    "ERROR_RESPONSES",
    "ErrorOut",
    "HealthOut",
    "LimitsOut",
    "ModelInfoOut",
    "MovieOut",
    "MovieSearchOut",
    "RatingIn",
    "RecommendationOut",
    "RecommendationsOut",
    "ScaleOut",
    "recommendation_request_model",
]
