"""The HTTP API and web page over :class:`aerec.recommend.Recommender`.

``create_app`` loads the model once and returns a FastAPI app:

==========================================  =============================================
``POST /recommendations``                   top-k for a new person's ratings
``GET /users/{user_id}/recommendations``    top-k for a user of the training data
``GET /movies?q=…&limit=…``                 title search
``GET /movies/{movie_id}``                  one movie
``GET /health``                             status, model and limits
``GET /``                                   the web page (``static/``)
``GET /docs``, ``/openapi.json``            the API description
==========================================  =============================================

Every error is JSON ``{"detail": message}`` (plus ``suggestions``, ``candidates`` or ``errors``
where they help): 400 malformed JSON, 404 unknown user / movie / path, 413 too many ratings or
too large a body, 415 a body that is not JSON, 422 invalid values (ratings off the scale or not
finite, unknown or ambiguous titles, ``k`` out of range), 500 with a generic message for bugs
(the traceback goes to the server log, never to the client). The server holds no model logic.

Under load and against slow or hostile clients
(:class:`~aerec.serve.middleware.GuardMiddleware`, :func:`aerec.serve.server.serve`):

- at most ``max_in_flight`` requests are answered at once; beyond that a request is refused at
  once with 503 and ``Retry-After`` (``/health`` is never refused), so the queue, and with it
  the latency of the requests accepted, stays bounded;
- a request's head must arrive within ``header_timeout`` seconds of the connection opening (or
  of the previous answer), its body within ``body_timeout`` (else 408, connection closed), and
  the client must take the answer within ``body_timeout``; an idle keep-alive connection is
  closed after ``keep_alive_timeout``; an incomplete head is buffered up to 16 KiB (h11; 400
  beyond);
- ``HEAD`` works on every ``GET`` route; every answer carries ``Content-Security-Policy``
  (``frame-ancestors 'none'``; the web page needs no inline script or style),
  ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` and ``Referrer-Policy``;
- a body sent without ``Content-Type`` is taken as JSON; a rating between the model's steps
  (3.5 on a whole-star model) is refused 422, as the data readers refuse it.
"""

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from aerec import __version__
from aerec.recommend import Recommender
from aerec.serve.answers import JSONAnswer, error_answer, validation_answer
from aerec.serve.context import ModelCalls, ServeContext
from aerec.serve.middleware import BUSY_ANSWERS_PER_SECOND, GuardMiddleware
from aerec.serve.routes import docs, movies, page, recommendations, service
from aerec.serve.schemas import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_K,
    DEFAULT_MAX_RATINGS,
    MAX_SEARCH_LIMIT,
)
from aerec.system import available_cores

#: Requests answered at once per model thread, by default (:func:`create_app`'s
#: ``max_in_flight``): enough to keep every model thread busy, few enough that a request
#: accepted at the back of the queue waits only for a few others (200 connections on 2 cores:
#: p99 of the accepted requests 172–179 ms with one worker, docs/benchmarks.md).
IN_FLIGHT_PER_MODEL_THREAD = 6


def create_app(
    recommender_or_path: Recommender | str | Path,
    *,
    max_ratings: int = DEFAULT_MAX_RATINGS,
    max_k: int = DEFAULT_MAX_K,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    model_threads: int | None = None,
    max_in_flight: int | None = None,
    body_timeout: float | None = DEFAULT_BODY_TIMEOUT,
    retry_after: int = 1,
    busy_answers_per_second: float = BUSY_ANSWERS_PER_SECOND,
    web_page: bool = True,
) -> FastAPI:
    """The FastAPI app serving ``recommender_or_path`` (a :class:`Recommender`, or a run
    directory / ``.pt`` checkpoint loaded here, once).

    Limits: at most ``max_ratings`` ratings per request and ``max_body_bytes`` of body (413
    beyond either), ``k`` from 1 to ``max_k`` (422 beyond). ``model_threads``: recommender
    calls run at once (default: the cores available). ``max_in_flight``: requests answered at
    once, beyond which a request is answered 503 with ``Retry-After: retry_after`` (default
    :data:`IN_FLIGHT_PER_MODEL_THREAD` per model thread; 0 = no limit), at most
    ``busy_answers_per_second`` of them at once (the others wait for their turn).
    ``body_timeout``:
    seconds for a request body to arrive (408 beyond) and for the client to take each part of
    the answer (``None``: no limit). ``web_page`` serves ``/``.
    """
    if max_ratings < 1 or max_k < 1 or max_body_bytes < 1:
        raise ValueError("max_ratings, max_k and max_body_bytes must be ≥ 1")
    threads = available_cores() if model_threads is None else int(model_threads)
    if threads < 1:
        raise ValueError(f"model_threads must be ≥ 1, got {model_threads}")
    if max_in_flight is None:
        max_in_flight = IN_FLIGHT_PER_MODEL_THREAD * threads
    if max_in_flight < 0:
        raise ValueError(f"max_in_flight must be ≥ 0 (0 = no limit), got {max_in_flight}")
    if body_timeout is not None and not body_timeout > 0:
        raise ValueError(f"body_timeout must be > 0 seconds, got {body_timeout}")
    if retry_after < 1:
        raise ValueError(f"retry_after must be ≥ 1 second, got {retry_after}")
    if not busy_answers_per_second > 0:
        raise ValueError(f"busy_answers_per_second must be > 0, got {busy_answers_per_second}")
    rec = (
        Recommender.load(recommender_or_path)
        if isinstance(recommender_or_path, (str, Path)) else recommender_or_path
    )
    rec.warm()  # build the title and similar-user indexes now, not on request 1
    context = ServeContext(
        recommender=rec, model_call=ModelCalls(threads), max_ratings=max_ratings, max_k=max_k,
        max_body_bytes=max_body_bytes, max_in_flight=max_in_flight or None,
    )

    app = FastAPI(
        title="aerec",
        version=__version__,
        summary="Movie recommendations from an autoencoder trained on Netflix-style ratings.",
        description=(
            "Limits: at most "
            f"{max_ratings:,} ratings per request and {max_body_bytes:,} bytes of body (413 "
            f"beyond), `k` from 1 to {max_k} (422 beyond), title search `limit` 1–"
            f"{MAX_SEARCH_LIMIT}. Every error is JSON `{{\"detail\": message}}`."
        ),
        default_response_class=JSONAnswer,
        docs_url=None,  # served by the docs router, each with the policy its CDN scripts need
        redoc_url=None,
    )
    app.state.recommender = rec
    app.state.context = context
    app.add_middleware(
        GuardMiddleware, max_body_bytes=max_body_bytes, max_in_flight=max_in_flight or None,
        body_timeout=body_timeout, retry_after=retry_after,
        busy_answers_per_second=busy_answers_per_second,
    )

    @app.exception_handler(RequestValidationError)
    async def _on_validation(_request: Request, exc: RequestValidationError) -> JSONAnswer:
        return validation_answer(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(_request: Request, exc: StarletteHTTPException) -> JSONAnswer:
        answer = error_answer(exc.status_code, str(exc.detail))
        if exc.headers:
            answer.headers.update(exc.headers)
        return answer

    app.include_router(docs.router())
    app.include_router(service.router(context))
    app.include_router(recommendations.router(context))
    app.include_router(movies.router(context))
    if web_page:
        app.include_router(page.router())
        app.mount("/static", page.static_files(), name="static")
    return app


__all__ = ["IN_FLIGHT_PER_MODEL_THREAD", "create_app"]
