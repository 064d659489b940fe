"""``GET /health``: liveness, the model being served and the limits in force."""

from fastapi import APIRouter
from fastapi.responses import Response

from aerec import __version__
from aerec.serve.answers import JSONAnswer
from aerec.serve.context import ServeContext
from aerec.serve.schemas import MAX_SEARCH_LIMIT, HealthOut


def router(context: ServeContext) -> APIRouter:
    """The service routes; the health answer is rendered once, here."""
    router = APIRouter(default_response_class=JSONAnswer)
    rec = context.recommender
    scale = rec.scale
    health = {
        "status": "ok",
        "version": __version__,
        "model": {
            "n_movies": int(rec.n_movies),
            "n_users": int(rec.n_users),
            "scale": {
                "minimum": float(scale.minimum),
                "maximum": float(scale.maximum),
                "step": float(scale.step),
            },
        },
        "limits": {
            "max_ratings": context.max_ratings,
            "max_k": context.max_k,
            "max_body_bytes": context.max_body_bytes,
            "max_search_limit": MAX_SEARCH_LIMIT,
            "max_in_flight": context.max_in_flight,
        },
    }
    health_bytes = JSONAnswer(health).body

    @router.get("/health", response_model=HealthOut, tags=["service"])
    async def get_health() -> Response:
        """Liveness, the model being served (movies, users, rating scale) and the limits."""
        return Response(health_bytes, media_type="application/json")

    return router


__all__ = ["router"]
