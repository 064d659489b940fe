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
"""

# No ``from __future__ import annotations``: FastAPI must see the request model built inside
# ``create_app`` as a real class, not as a string it cannot resolve.
import functools
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import orjson
from anyio.lowlevel import RunVar
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from aerec import __version__
from aerec.recommend import AmbiguousTitle, Recommender, UnknownMovie, UnknownUser
from aerec.serve.schemas import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_K,
    DEFAULT_MAX_RATINGS,
    DEFAULT_SEARCH_LIMIT,
    MAX_SEARCH_LIMIT,
    MAX_TITLE_CHARS,
    ErrorOut,
    HealthOut,
    MovieOut,
    MovieSearchOut,
    RecommendationsOut,
    recommendation_request_model,
)

logger = logging.getLogger("aerec.serve")

STATIC_DIR = Path(__file__).resolve().parent / "static"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

GENERIC_500 = "internal server error; the server log has the details"


# ------------------------------------------------------------------------------ JSON answers


def _jsonable(value: Any) -> Any:
    """Plain JSON types: objects with ``to_dict()`` expanded, non-finite floats as ``null``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    if hasattr(value, "item"):  # NumPy scalars
        return _jsonable(value.item())
    return value


class JSONAnswer(Response):
    """Compact UTF-8 JSON (orjson: 0.02 ms for an explained top-10, against 0.25 ms with the
    standard library; non-finite floats become ``null``); anything orjson does not take
    (NumPy scalars, non-string keys, objects with ``to_dict``) goes through a sanitising pass
    first."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:
            return orjson.dumps(_jsonable(content))


def error_answer(status: int, detail: str, **extra: Any) -> JSONAnswer:
    """``{"detail": detail, **extra}`` with ``status``; ``None`` extras are left out."""
    body = {"detail": detail}
    body.update({k: _jsonable(v) for k, v in extra.items() if v is not None})
    return JSONAnswer(body, status_code=status)


def _recommender_error(exc: ValueError) -> JSONAnswer:
    """A recommender's refusal as a 4xx answer: unknown user 404; unknown movie (with
    ``suggestions``), ambiguous title (with ``candidates``), :class:`InvalidRating` and any
    other bad argument (ranking name, year range) 422."""
    if isinstance(exc, UnknownUser):
        return error_answer(404, str(exc))
    if isinstance(exc, UnknownMovie):
        return error_answer(422, str(exc), suggestions=list(exc.suggestions or []))
    if isinstance(exc, AmbiguousTitle):
        return error_answer(422, str(exc), candidates=list(exc.candidates or []))
    return error_answer(422, str(exc))


def _to_dict(result: Any) -> Any:
    return result.to_dict()


def _answer(
    fn: Callable[..., Any], args: tuple, kwargs: dict, to_json: Callable[[Any], Any]
) -> JSONAnswer:
    """Call the recommender and render the answer (JSON encoding included), or its refusal."""
    try:
        result = fn(*args, **kwargs)
    except ValueError as exc:
        return _recommender_error(exc)
    return JSONAnswer(to_json(result))


def _field_path(loc: tuple | list) -> str:
    """``("body", "ratings", 0, "rating")`` → ``ratings[0].rating``."""
    out = ""
    for part in loc:
        if part in ("body",) and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _validation_answer(exc: RequestValidationError) -> JSONAnswer:
    errors = list(exc.errors())
    bad_json = [e for e in errors if e.get("type") == "json_invalid"]
    if bad_json:
        ctx = bad_json[0].get("ctx") or {}
        where = bad_json[0].get("loc", ("body", "?"))
        position = where[1] if len(where) > 1 else "?"
        reason = ctx.get("error", "not valid JSON")
        return error_answer(400, f"malformed JSON body: {reason} (at character {position})")
    if any(tuple(e.get("loc", ())) == ("body",) and e.get("type") == "missing" for e in errors):
        return error_answer(
            422, 'the request body is empty; send a JSON object such as {"ratings": '
            '[{"movie_id": 50, "rating": 5}], "k": 10}'
        )
    lines, simple = [], []
    for e in errors:
        loc = tuple(e.get("loc", ()))
        msg = str(e.get("msg", "invalid"))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        path = _field_path(loc)
        if loc[:1] == ("query",) or loc[:1] == ("path",):
            path = _field_path(loc[1:])
        lines.append(f"{path}: {msg}")
        simple.append({"loc": [str(p) for p in loc], "msg": msg, "type": e.get("type")})
    return error_answer(422, "; ".join(lines), errors=simple)


# ------------------------------------------------------------------------------ middleware


class GuardMiddleware:
    """Limits the request body to ``max_body_bytes`` (413) and turns any unhandled exception
    into a generic 500 JSON answer, logging the traceback server-side.

    Plain ASGI (no ``BaseHTTPMiddleware``) so it costs next to nothing per request.
    """

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        too_large = f"request body is larger than the limit of {limit:,} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await error_answer(400, "invalid Content-Length header")(scope, receive, send)
                    return
                if declared > limit:
                    await error_answer(413, too_large)(scope, receive, send)
                    return
                break

        started = False
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # chunked or lying Content-Length
                    raise StarletteHTTPException(413, too_large)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except Exception:
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:  # too late for an error answer; let the server drop the connection
                raise
            await error_answer(500, GENERIC_500)(scope, receive, send)


# ------------------------------------------------------------------------------ the app


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _require_json(request: Request) -> None:
    """A request body must be JSON (``application/json`` or ``…+json``; absent = JSON)."""
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


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Malformed JSON."},
    413: {"model": ErrorOut, "description": "Too many ratings, or too large a body."},
    415: {"model": ErrorOut, "description": "The body is not `application/json`."},
    422: {
        "model": ErrorOut,
        "description": "Invalid values: a rating off the scale or not finite, an unknown movie "
        "(with `suggestions`), an ambiguous title (with `candidates`), `k` out of range.",
    },
    500: {"model": ErrorOut, "description": "A bug; the message is generic, the log has more."},
}


def create_app(
    recommender_or_path: Recommender | str | Path,
    *,
    max_ratings: int = DEFAULT_MAX_RATINGS,
    max_k: int = DEFAULT_MAX_K,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    model_threads: int | None = None,
    web_page: bool = True,
) -> FastAPI:
    """The FastAPI app serving ``recommender_or_path`` (a :class:`Recommender`, or a run
    directory / ``.pt`` checkpoint loaded here, once).

    Limits: at most ``max_ratings`` ratings per request and ``max_body_bytes`` of body (413
    beyond either), ``k`` from 1 to ``max_k`` (422 beyond). ``model_threads``: recommender
    calls run at once (default: the cores available). ``web_page`` serves ``/``.
    """
    if max_ratings < 1 or max_k < 1 or max_body_bytes < 1:
        raise ValueError("max_ratings, max_k and max_body_bytes must be ≥ 1")
    threads = _cores() if model_threads is None else int(model_threads)
    if threads < 1:
        raise ValueError(f"model_threads must be ≥ 1, got {model_threads}")
    if isinstance(recommender_or_path, (str, Path)):
        rec = Recommender.load(recommender_or_path)
    else:
        rec = recommender_or_path
    if hasattr(rec, "warm"):  # build the title and similar-user indexes now, not on request 1
        rec.warm()
    request_model = recommendation_request_model(max_ratings, max_k)

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
    )
    app.state.recommender = rec
    app.add_middleware(GuardMiddleware, max_body_bytes=max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _on_validation(_request: Request, exc: RequestValidationError) -> JSONAnswer:
        return _validation_answer(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(_request: Request, exc: StarletteHTTPException) -> JSONAnswer:
        answer = error_answer(exc.status_code, str(exc.detail))
        if exc.headers:
            answer.headers.update(exc.headers)
        return answer

    # one limiter per event loop (an app may be driven by several, e.g. in tests)
    limiter: RunVar[anyio.CapacityLimiter | None] = RunVar("aerec_model_limiter", default=None)

    async def model_call(
        fn: Callable[..., Any], *args: Any, to_json: Callable[[Any], Any] = _to_dict,
        **kwargs: Any,
    ) -> JSONAnswer:
        """``fn(*args, **kwargs)`` and its JSON answer, in the model thread pool: at most
        ``model_threads`` at once, so concurrent requests overlap torch work (which releases
        the GIL) without dozens of threads fighting over the GIL. The event loop stays free
        for other requests (``/health`` answers while models run)."""
        current = limiter.get()
        if current is None:
            current = anyio.CapacityLimiter(threads)
            limiter.set(current)
        call = functools.partial(_answer, fn, args, kwargs, to_json)
        return await anyio.to_thread.run_sync(call, limiter=current)

    scale = rec.scale
    health = {
        "status": "ok",
        "version": __version__,
        "model": {
            "n_movies": int(rec.n_movies),
            "n_users": int(rec.n_users) if getattr(rec, "n_users", None) is not None else None,
            "scale": {
                "minimum": float(scale.minimum),
                "maximum": float(scale.maximum),
                "step": float(scale.step),
            },
        },
        "limits": {
            "max_ratings": max_ratings,
            "max_k": max_k,
            "max_body_bytes": max_body_bytes,
            "max_search_limit": MAX_SEARCH_LIMIT,
        },
    }
    health_bytes = JSONAnswer(health).body

    @app.get("/health", response_model=HealthOut, tags=["service"])
    async def get_health() -> Response:
        """Liveness, the model being served (movies, users, rating scale) and the limits."""
        return Response(health_bytes, media_type="application/json")

    @app.post(
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
        return await model_call(
            rec.recommend,
            [(r.ref, r.rating) for r in ratings],
            k=body.k,
            min_ratings=body.min_ratings,
            year_min=body.year_min,
            year_max=body.year_max,
            ranking=body.ranking,
            explain=body.explain,
        )

    @app.get(
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
        return await model_call(
            rec.recommend_for_user,
            user_id,
            k=k,
            min_ratings=min_ratings,
            year_min=year_min,
            year_max=year_max,
            ranking=ranking,
            explain=explain,
        )

    @app.get("/movies", response_model=MovieSearchOut, responses=ERROR_RESPONSES, tags=["movies"])
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
        return await model_call(
            rec.search_titles, query, limit=limit,
            to_json=lambda found: {"query": q, "items": [m.to_dict() for m in found]},
        )

    @app.get(
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
            info = rec.movie(movie_id)
        except UnknownMovie as exc:
            return error_answer(404, str(exc), suggestions=list(exc.suggestions or []) or None)
        except ValueError as exc:
            return _recommender_error(exc)
        return JSONAnswer(info.to_dict())

    if web_page:
        index = STATIC_DIR / "index.html"

        @app.get("/", include_in_schema=False)
        async def web_index() -> FileResponse:
            return FileResponse(index, media_type="text/html; charset=utf-8")

        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    return app


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``(host, port)`` and listening.

    Created with ``IPPROTO_TCP`` so that asyncio sets ``TCP_NODELAY`` on every accepted
    connection (a protocol-less socket silently skips it, and each keep-alive response then
    waits ~40 ms for a delayed ACK). ``reuse_port``: several processes bind the same port and
    the kernel spreads incoming connections over them (``SO_REUSEPORT``, Linux and BSDs).
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        if not hasattr(socket, "SO_REUSEPORT"):
            sock.close()
            raise OSError("several workers need SO_REUSEPORT, which this platform lacks")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _serve_one(
    recommender_or_path: Recommender | str | Path, torch_threads: int, limits: dict,
    options: dict, reuse_port: bool = False,
) -> None:
    """Load (or take) the model, bind the port (:func:`listening_socket`) and serve with
    uvicorn until interrupted: one process of :func:`serve`."""
    import torch
    import uvicorn

    if torch_threads > 0:
        torch.set_num_threads(torch_threads)
    app = create_app(recommender_or_path, **limits)
    sock = listening_socket(options["host"], options["port"], reuse_port=reuse_port)
    try:
        uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[sock])
    finally:
        sock.close()


def _run_worker(settings: dict, started) -> None:
    """One worker process of a multi-worker :func:`serve` (``settings``: :func:`_serve_one`'s
    arguments), sharing the port with the others (``SO_REUSEPORT``). It starts with SIGINT
    ignored (see :func:`_serve_workers`), takes it back first thing and then sets
    ``started``."""
    import signal

    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        started.set()
        _serve_one(**settings, reuse_port=True)
    except KeyboardInterrupt:  # uvicorn re-raises the signal it shut down on: a clean stop
        pass


def _serve_workers(settings: dict, workers: int) -> None:
    """Start ``workers`` processes of :func:`_run_worker` and supervise them: Ctrl-C or
    SIGTERM stops them all, and one that exits (say, the model failed to load) stops the
    rest and is reported.

    A worker interrupted while its interpreter is still starting would die with a traceback
    from Python's start-up code. So the workers are started with SIGINT ignored (that survives
    ``exec``; a terminal's Ctrl-C reaches the whole process group), and a stop waits until a
    worker has taken SIGINT back before sending it one."""
    import multiprocessing
    import signal
    import time

    context = multiprocessing.get_context("spawn")
    started = [context.Event() for _ in range(workers)]
    processes = [
        context.Process(target=_run_worker, args=(settings, started[i]),
                        name=f"aerec-worker-{i}")
        for i in range(workers)
    ]

    def stop(*_: object) -> None:
        for process, ready in zip(processes, started):
            deadline = time.monotonic() + 30
            while process.is_alive() and not ready.wait(0.1) and time.monotonic() < deadline:
                pass  # still starting: it would ignore the signal
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGINT)  # uvicorn's graceful shutdown

    previous = signal.signal(signal.SIGTERM, stop)
    failed = None
    try:
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for process in processes:
                process.start()
        finally:
            signal.signal(signal.SIGINT, interrupt)
        while all(process.is_alive() for process in processes):
            processes[0].join(timeout=0.5)
        failed = next((p for p in processes if not p.is_alive() and p.exitcode), None)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        for process in processes:
            if process.pid is not None:
                process.join(timeout=15)
            if process.is_alive():
                process.kill()
        signal.signal(signal.SIGTERM, previous)
    if failed is not None:
        raise RuntimeError(f"worker {failed.name} exited with status {failed.exitcode}")


def serve(
    recommender_or_path: Recommender | str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    torch_threads: int = 1,
    workers: int = 1,
    access_log: bool = True,
    log_level: str = "info",
    **limits: int | None,
) -> None:
    """Serve a :class:`Recommender` (or the run / checkpoint path to load it from, once per
    worker) with uvicorn until stopped. ``limits`` are :func:`create_app`'s keyword limits.

    ``torch_threads`` is torch's intra-op thread count: small per-request forward passes run
    in the model thread pool (``model_threads`` at once, default one per core), so one torch
    thread each lets concurrent requests use the cores instead of fighting over them.

    ``workers`` > 1 starts that many processes (``recommender_or_path`` must then be a path),
    each loading the model, binding the port with ``SO_REUSEPORT`` (the kernel spreads the
    connections) and computing ``model_threads`` requests at once (default: the cores shared
    out between the workers). Separate processes do not share Python's interpreter lock: with
    explanations a request is mostly Python, so two single-threaded workers answer about twice
    what one worker with two threads does.
    """
    options = {"host": host, "port": port, "access_log": access_log, "log_level": log_level,
               "server_header": False}
    if workers > 1:
        if not isinstance(recommender_or_path, (str, Path)):
            raise ValueError(
                "several workers each load the model: pass its path, not a Recommender"
            )
        if port == 0:
            raise ValueError("several workers need a fixed port (not 0) to share")
        if limits.get("model_threads") is None:
            limits["model_threads"] = max(1, _cores() // workers)
        _serve_workers({
            "recommender_or_path": str(recommender_or_path), "torch_threads": torch_threads,
            "limits": {k: v for k, v in limits.items() if v is not None}, "options": options,
        }, workers)
        return
    _serve_one(recommender_or_path, torch_threads, limits, options)


__all__ = [
    "GuardMiddleware", "JSONAnswer", "create_app", "error_answer", "listening_socket", "serve",
]
