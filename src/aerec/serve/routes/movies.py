"""``GET /movies?q=…`` (title search) and ``GET /movies/{movie_id}`` (one movie)."""

from fastapi import APIRouter, Query
from fastapi import Path as PathParam

from aerec.recommend import UnknownMovie
from aerec.serve.answers import JSONAnswer, error_answer, recommender_error
from aerec.serve.context import ServeContext
from aerec.serve.schemas import (
    DEFAULT_SEARCH_LIMIT,
    ERROR_RESPONSES,
    MAX_SEARCH_LIMIT,
    MAX_TITLE_CHARS,
    ErrorOut,
    MovieOut,
    MovieSearchOut,
)


def router(context: ServeContext) -> APIRouter:
    """The catalogue routes over ``context.recommender``."""
    router = APIRouter(default_response_class=JSONAnswer)

    @router.get(
        "/movies", response_model=MovieSearchOut, responses=ERROR_RESPONSES, tags=["movies"]
    )
    async def search_movies(
        q: str = Query(
            ..., min_length=1, max_length=MAX_TITLE_CHARS, description="Part of a title."
        ),
        limit: int = Query(
            DEFAULT_SEARCH_LIMIT, ge=1, le=MAX_SEARCH_LIMIT, description="Most titles returned."
        ),
    ) -> JSONAnswer:
        """Titles matching `q`, best match first (for the rating form's incremental search)."""
        query = q.strip()
        if not query:
            return JSONAnswer({"query": q, "items": []})
        return await context.model_call(
            context.recommender.search_titles, query, limit=limit,
            to_json=lambda found: {"query": q, "items": [m.to_dict() for m in found]},
        )

    @router.get(
        "/movies/{movie_id}",
        response_model=MovieOut,
        responses={404: {"model": ErrorOut, "description": "Unknown movie id."}},
        tags=["movies"],
    )
    async def get_movie(
        movie_id: int = PathParam(..., description="Raw movie id."),
    ) -> JSONAnswer:
        """One movie of the catalogue: title, year, training ratings and their mean."""
        try:
            info = context.recommender.movie(movie_id)
        except UnknownMovie as exc:
            return error_answer(404, str(exc), suggestions=list(exc.suggestions or []) or None)
        except ValueError as exc:
            return recommender_error(exc)
        return JSONAnswer(info.to_dict())

    return router


__all__ = ["router"]
