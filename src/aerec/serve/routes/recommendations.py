"""``POST /recommendations`` (a new person's ratings) and ``GET /users/{user_id}/recommendations``
(a user of the training data)."""

# No ``from __future__ import annotations``: FastAPI must see the request model built in
# :func:`router` as a real class, not as a string it cannot resolve.
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from starlette.exceptions import HTTPException as StarletteHTTPException

from aerec.data.ratings import RatingScale
from aerec.serve.answers import JSONAnswer, error_answer
from aerec.serve.context import ServeContext
from aerec.serve.schemas import (
    ERROR_RESPONSES,
    ErrorOut,
    RecommendationsOut,
    recommendation_request_model,
)


async def _require_json(request: Request) -> None:
    """A request body must be JSON (``application/json`` or ``…+json``; absent = JSON).

    A coroutine: FastAPI runs a plain function dependency in its 40-thread pool, one thread hop
    per request (and, under load, up to 40 threads each growing its own malloc arena)."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    raise StarletteHTTPException(
        415, f"unsupported Content-Type {media or '(empty)'!r}; send application/json"
    )


def _scale_text(scale: RatingScale) -> str:
    return f"{scale.minimum:g}–{scale.maximum:g} in steps of {scale.step:g}"


def _off_scale(ratings: list, scale: RatingScale) -> str | None:
    """The refusal of the first rating ``scale`` cannot hold (outside its range, or between
    its steps, as the data readers refuse it), or ``None``."""
    values = [r.rating for r in ratings]
    if not values:
        return None
    bad = scale.invalid_mask(values)
    if not bad.any():
        return None
    i = int(bad.argmax())
    movie = (f"movie_id {ratings[i].movie_id}" if ratings[i].movie_id is not None
             else f"title {ratings[i].title!r}")
    return (f"ratings[{i}].rating: rating {values[i]:g} ({movie}) is outside this model's "
            f"scale {_scale_text(scale)}")


def router(context: ServeContext) -> APIRouter:
    """The recommendation routes, with ``context``'s limits (``max_ratings``, ``max_k``) in
    their request models."""
    router = APIRouter(default_response_class=JSONAnswer)
    max_ratings, max_k = context.max_ratings, context.max_k
    scale = context.recommender.scale
    request_model = recommendation_request_model(max_ratings, max_k)

    @router.post(
        "/recommendations",
        response_model=RecommendationsOut,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(_require_json)],
        tags=["recommend"],
    )
    async def post_recommendations(body: request_model) -> JSONAnswer:  # type: ignore[valid-type]
        """Top-k movies for a person who is not in the training data, from their ratings.

        Movies are given by `movie_id` or by `title`. An empty `ratings` list answers the
        popular-movies fallback (`fallback: true` and a `note`).
        """
        ratings = body.ratings
        if len(ratings) > max_ratings:
            return error_answer(
                413, f"too many ratings: {len(ratings):,} given, the limit is {max_ratings:,}"
            )
        refusal = _off_scale(ratings, scale)
        if refusal is not None:
            return error_answer(422, refusal)
        return await context.model_call(
            context.recommender.recommend,
            [(r.ref, r.rating) for r in ratings],
            k=body.k,
            min_ratings=body.min_ratings,
            year_min=body.year_min,
            year_max=body.year_max,
            ranking=body.ranking,
            explain=body.explain,
        )

    @router.get(
        "/users/{user_id}/recommendations",
        response_model=RecommendationsOut,
        responses={404: {"model": ErrorOut, "description": "Unknown user."}, **ERROR_RESPONSES},
        tags=["recommend"],
    )
    async def get_user_recommendations(
        user_id: int = PathParam(..., description="Raw user id of the training data."),
        k: int = Query(10, ge=1, le=max_k, description=f"How many movies (1–{max_k})."),
        min_ratings: int | None = Query(None, ge=0, description="Minimum training ratings."),
        year_min: int | None = Query(None, description="Earliest release year."),
        year_max: int | None = Query(None, description="Latest release year."),
        ranking: str | None = Query(None, max_length=40, description="Ranking rule."),
        explain: bool = Query(True, description="Add reasons and neighbours."),
    ) -> JSONAnswer:
        """Top-k movies for a user of the training data (their training ratings as input)."""
        return await context.model_call(
            context.recommender.recommend_for_user,
            user_id,
            k=k,
            min_ratings=min_ratings,
            year_min=year_min,
            year_max=year_max,
            ranking=ranking,
            explain=explain,
        )

    return router


__all__ = ["router"]
