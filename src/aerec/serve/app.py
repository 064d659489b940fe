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

Under load and against slow or hostile clients (:class:`GuardMiddleware`, :func:`serve`):

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

# No ``from __future__ import annotations``: FastAPI must see the request model built inside
# ``create_app`` as a real class, not as a string it cannot resolve.
import base64
import errno
import functools
import hashlib
import logging
import math
import os
import re
import socket
import sys
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
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from aerec import __version__
from aerec.recommend import AmbiguousTitle, Recommender, UnknownMovie, UnknownUser
from aerec.serve.schemas import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_KEEP_ALIVE_TIMEOUT,
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

#: The policy of every answer but the API documentation pages: the web page loads its script,
#: style sheet and data from this server only and has no inline script or style (its icon is a
#: ``data:`` image); no page of this server may be framed.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

#: Headers added to every answer that does not set them itself.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", PAGE_CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)

#: Requests answered at once per model thread, by default (:func:`create_app`'s
#: ``max_in_flight``): enough to keep every model thread busy, few enough that a request
#: accepted at the back of the queue waits only for a few others (200 connections on 2 cores:
#: p99 of the accepted requests 172–179 ms with one worker, docs/benchmarks.md).
IN_FLIGHT_PER_MODEL_THREAD = 6

#: Busy (503) answers a second that go out at once (for the whole server: :func:`serve` shares
#: them out between its workers); more wait for their turn (see :class:`GuardMiddleware`). A
#: refusal costs ~0.25 ms of the event loop: 300 a second take under a tenth of a core and of the
#: interpreter lock, the rest is left to the requests accepted.
BUSY_ANSWERS_PER_SECOND = 300.0

#: Paths never refused for being busy: liveness checks cost no model work.
UNLIMITED_PATHS = frozenset({"/health"})


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
    """What every HTTP request goes through before the routes (plain ASGI, no
    ``BaseHTTPMiddleware``, so it costs next to nothing per request):

    - ``HEAD`` is answered as ``GET`` without the body;
    - :data:`SECURITY_HEADERS` are added to every answer that does not set them;
    - a ``POST``/``PUT``/``PATCH`` without ``Content-Type`` is taken as JSON;
    - the body is read in full first: at most ``max_body_bytes`` (413, counted while it is read
      when chunked or under-declared) within ``body_timeout`` seconds (408); both close the
      connection. A slow upload therefore never holds one of the ``max_in_flight`` places;
    - at most ``max_in_flight`` requests are then answered at once (``None``: no limit); beyond
      that a request is answered 503 with ``Retry-After: retry_after`` at once, except on
      :data:`UNLIMITED_PATHS`;
    - the client must take each part of the answer within ``body_timeout`` seconds, or the
      connection is closed (a client that never reads cannot hold a place for ever);
    - an unhandled exception becomes a generic 500 JSON answer, its traceback logged.
    """

    def __init__(
        self, app: Any, max_body_bytes: int, max_in_flight: int | None = None,
        body_timeout: float | None = DEFAULT_BODY_TIMEOUT, retry_after: int = 1,
        busy_answers_per_second: float = BUSY_ANSWERS_PER_SECOND,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.body_timeout = body_timeout
        self.retry_after = retry_after
        #: Requests being answered now (past the body, not yet answered).
        self.in_flight = 0
        self._busy_interval = 1.0 / busy_answers_per_second
        self._next_busy = 0.0  # when the next 503 may go out (event-loop clock)
        self._busy = orjson.dumps({"detail": (
            f"the server is busy: {max_in_flight} requests are being answered, the most it "
            f"takes at once; retry in {retry_after} s"
        )})
        self._too_large = f"request body is larger than the limit of {max_body_bytes:,} bytes"

    async def _answer(
        self, send: Send, status: int, body: bytes, *extra: tuple[bytes, bytes]
    ) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()), *extra,
        ]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        declared = None
        typed = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
            elif name == b"content-type":
                typed = True
        untyped_body = not typed and scope["method"] in ("POST", "PUT", "PATCH")
        if head or untyped_body:
            scope = dict(scope)
            if head:
                scope["method"] = "GET"
            if untyped_body:  # the documented default: a body without a type is JSON
                scope["headers"] = [*scope.get("headers", ()),
                                    (b"content-type", b"application/json")]

        started = False
        timeout = self.body_timeout

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [h for h in SECURITY_HEADERS if h[0] not in present]
                message = {**message, "headers": headers}
            elif head and message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}
            if timeout is None:
                await send(message)
                return
            with anyio.fail_after(timeout):
                await send(message)

        close = (b"connection", b"close")
        if declared is not None and (declared < 0 or declared > self.max_body_bytes):
            if declared < 0:
                await self._answer(guarded_send, 400, orjson.dumps(
                    {"detail": "invalid Content-Length header"}), close)
            else:
                await self._answer(guarded_send, 413, orjson.dumps(
                    {"detail": self._too_large}), close)
            return

        # the whole body first, within the size and time limits
        parts: list[bytes] = []
        received = 0
        more = True
        with anyio.move_on_after(math.inf if timeout is None else timeout) as reading:
            while more:
                message = await receive()
                if message["type"] != "http.request":  # the client went away
                    return
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.max_body_bytes:  # chunked or lying Content-Length
                    await self._answer(guarded_send, 413, orjson.dumps(
                        {"detail": self._too_large}), close)
                    return
                parts.append(chunk)
                more = message.get("more_body", False)
        if reading.cancelled_caught:
            logger.info("%s %s: body not received within %g s", scope.get("method"),
                        scope.get("path"), timeout)
            await self._answer(guarded_send, 408, orjson.dumps({"detail": (
                f"the request body did not arrive within {timeout:g} s ({received:,} bytes "
                "received)")}), close)
            return
        body = parts[0] if len(parts) == 1 else b"".join(parts)

        limit = self.max_in_flight
        if limit is not None and self.in_flight >= limit and scope["path"] not in UNLIMITED_PATHS:
            # At most busy_answers_per_second refusals a second go out at once; past that
            # each waits for its turn. Clients that retry at once without honouring
            # Retry-After would otherwise keep the event loop (and the interpreter lock)
            # busy refusing them, and starve the requests accepted.
            now = anyio.current_time()
            turn = max(now, self._next_busy)
            self._next_busy = turn + self._busy_interval
            if turn > now:
                await anyio.sleep(turn - now)
            await self._answer(guarded_send, 503, self._busy,
                               (b"retry-after", str(self.retry_after).encode()))
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only the disconnect is left

        self.in_flight += 1
        try:
            await self.app(scope, replay, guarded_send)
        except Exception as exc:
            if started and isinstance(exc, TimeoutError):  # from guarded_send
                # the client does not take the answer: returning with the answer unfinished
                # makes uvicorn close the connection
                logger.info("%s %s: the client did not read the answer within %g s; "
                            "connection closed", scope.get("method"), scope.get("path"),
                            timeout)
                return
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:  # too late for an error answer; let the server drop the connection
                raise
            await self._answer(guarded_send, 500, orjson.dumps({"detail": GENERIC_500}))
        finally:
            self.in_flight -= 1


# ------------------------------------------------------------------------------ the app


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


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


def _inline_hashes(html: str, tag: str) -> list[str]:
    """CSP ``'sha256-…'`` sources of the inline ``<tag>`` elements of ``html``."""
    found = re.findall(rf"<{tag}(?:\s[^>]*)?>(.*?)</{tag}>", html, flags=re.S | re.I)
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
        for text in found if text.strip()
    ]


def _docs_page(page: HTMLResponse) -> HTMLResponse:
    """FastAPI's Swagger UI / ReDoc page with a policy of its own: the scripts and styles of
    the CDN they load from, the page's inline bootstrap script by hash, inline styles (both
    UIs insert style elements as they render; no user input reaches these pages)."""
    html = page.body.decode()
    scripts = " ".join(_inline_hashes(html, "script"))
    page.headers["content-security-policy"] = (
        f"default-src 'none'; script-src {scripts} https://cdn.jsdelivr.net; "
        "style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
        "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
        "https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )
    return page


def _scale_text(scale: Any) -> str:
    return f"{scale.minimum:g}–{scale.maximum:g} in steps of {scale.step:g}"


def _off_scale(ratings: list, scale: Any) -> str | None:
    """The refusal of the first rating ``scale`` cannot hold (outside its range, or between
    its steps, as the data readers refuse it), or ``None``."""
    values = [r.rating for r in ratings]
    if not values or not hasattr(scale, "invalid_mask"):
        return None
    bad = scale.invalid_mask(values)
    if not bad.any():
        return None
    i = int(bad.argmax())
    movie = (f"movie_id {ratings[i].movie_id}" if ratings[i].movie_id is not None
             else f"title {ratings[i].title!r}")
    return (f"ratings[{i}].rating: rating {values[i]:g} ({movie}) is outside this model's "
            f"scale {_scale_text(scale)}")


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
    threads = _cores() if model_threads is None else int(model_threads)
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
        docs_url=None,  # served below, each with the policy its CDN scripts need
        redoc_url=None,
    )
    app.state.recommender = rec
    app.add_middleware(
        GuardMiddleware, max_body_bytes=max_body_bytes, max_in_flight=max_in_flight or None,
        body_timeout=body_timeout, retry_after=retry_after,
        busy_answers_per_second=busy_answers_per_second,
    )

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _docs_page(get_swagger_ui_html(openapi_url="/openapi.json",
                                              title="aerec - Swagger UI"))

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _docs_page(get_redoc_html(openapi_url="/openapi.json", title="aerec - ReDoc"))

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
            "max_in_flight": max_in_flight or None,
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
        refusal = _off_scale(ratings, scale)
        if refusal is not None:
            return error_answer(422, refusal)
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


class ServeError(RuntimeError):
    """The server cannot start or run (address unusable, a worker failed): the message is
    meant for the user as is."""


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listen_error(host: str, port: int, exc: OSError) -> ServeError:
    """One readable sentence for why ``(host, port)`` cannot be listened on."""
    where = _where(host, port)
    if isinstance(exc, socket.gaierror):
        return ServeError(
            f"cannot listen on {host!r}: not an address or a host name this machine can resolve "
            f"({exc.strerror}); use 127.0.0.1, 0.0.0.0 or one of this machine's addresses"
        )
    if exc.errno == errno.EADDRINUSE:
        return ServeError(
            f"cannot listen on {where}: the port is already in use (another server?); choose "
            "another --port, or stop the program using it"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ServeError(
            f"cannot listen on {where}: {host} is not an address of this machine; use 127.0.0.1 "
            "(this machine only), 0.0.0.0 (every interface) or one of its own addresses"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ServeError(
            f"cannot listen on {where}: permission denied (ports below 1024 need privileges); "
            "choose a port of 1024 or more"
        )
    return ServeError(f"cannot listen on {where}: {exc.strerror or exc}")


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``(host, port)`` and listening.

    Created with ``IPPROTO_TCP`` so that asyncio sets ``TCP_NODELAY`` on every accepted
    connection (a protocol-less socket silently skips it, and each keep-alive response then
    waits ~40 ms for a delayed ACK). ``reuse_port``: several processes bind the same port and
    the kernel spreads incoming connections over them (``SO_REUSEPORT``, Linux and BSDs).

    An address that cannot be used (port taken, not an address of this machine, unknown name,
    privileged port) raises :class:`ServeError` with one readable sentence.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise _listen_error(host, port, exc) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        if not hasattr(socket, "SO_REUSEPORT"):
            sock.close()
            raise ServeError("several workers need SO_REUSEPORT, which this platform lacks")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise _listen_error(host, port, exc) from None
    return sock


def check_address(host: str, port: int) -> None:
    """Raise :class:`ServeError` now if ``(host, port)`` cannot be listened on (before minutes
    of model loading). Binds without ``SO_REUSEPORT``, so a port that another server shares
    out with ``SO_REUSEPORT`` counts as taken too."""
    listening_socket(host, port).close()


@functools.cache
def timed_h11_protocol(header_timeout: float) -> type:
    """uvicorn's h11 protocol with a deadline for each request's head.

    uvicorn closes a keep-alive connection that stays idle after an answer, but any byte
    received cancels that timer, and a new connection has none: a client that connects and
    sends nothing, or trickles a head one byte at a time, holds its connection for ever. Here
    a request's head must be complete within ``header_timeout`` seconds of the connection
    opening or of the previous answer; otherwise the connection is closed (after a 408 answer
    when part of a head had arrived). Request bodies are timed by :class:`GuardMiddleware`.
    """
    import asyncio

    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    detail = orjson.dumps({"detail": f"the request head did not arrive within "
                                     f"{header_timeout:g} s"})
    timeout_answer = b"".join([
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n",
        *(name + b": " + value + b"\r\n" for name, value in SECURITY_HEADERS),
        b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(detail), detail,
    ])

    class TimedH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None
        _head_bytes = False

        def _waiting_for_head(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm_head_timer(self) -> None:
            self._cancel_head_timer()
            self._head_bytes = False
            self._head_timer = self.loop.call_later(header_timeout, self._head_timed_out)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or not self._waiting_for_head():
                return
            if self._head_bytes and self.conn.our_state in (h11.IDLE, h11.DONE):
                self.transport.write(timeout_answer)
            self.logger.debug("request head not received within %g s; connection closed",
                              header_timeout)
            self.transport.close()

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before:  # a new request's head is complete
                self._cancel_head_timer()
            elif self._waiting_for_head():
                self._head_bytes = self._head_bytes or bool(data)
                if self._head_timer is None:
                    self._arm_head_timer()
                    self._head_bytes = bool(data)

        def on_response_complete(self) -> None:
            before = self.cycle
            super().on_response_complete()
            if self.transport.is_closing():
                return
            if self.cycle is before and self._waiting_for_head():
                self._arm_head_timer()
            else:  # a pipelined request was already waiting
                self._cancel_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

    return TimedH11Protocol


def uvicorn_config(
    app: Any, *, header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT, **options: Any,
) -> Any:
    """The ``uvicorn.Config`` :func:`serve` uses: the h11 protocol with a head deadline
    (:func:`timed_h11_protocol`), heads of at most 16 KiB, idle keep-alive connections closed
    after ``keep_alive_timeout`` seconds; ``options`` go to ``uvicorn.Config`` as they are."""
    import uvicorn

    if not header_timeout > 0 or not keep_alive_timeout > 0:
        raise ValueError("header_timeout and keep_alive_timeout must be > 0 seconds")
    options.setdefault("server_header", False)
    return uvicorn.Config(
        app, http=timed_h11_protocol(float(header_timeout)),
        timeout_keep_alive=keep_alive_timeout,  # type: ignore[arg-type]  # a float works
        h11_max_incomplete_event_size=16 * 1024, **options,
    )


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
        uvicorn.Server(uvicorn_config(app, **options)).run(sockets=[sock])
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
    except ServeError as exc:  # one line, not a traceback; the parent reports the exit
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


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
        raise ServeError(f"worker {failed.name} exited with status {failed.exitcode}")


def serve(
    recommender_or_path: Recommender | str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    torch_threads: int = 1,
    workers: int = 1,
    access_log: bool = True,
    log_level: str = "info",
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    keep_alive_timeout: float = DEFAULT_KEEP_ALIVE_TIMEOUT,
    **limits: Any,
) -> None:
    """Serve a :class:`Recommender` (or the run / checkpoint path to load it from, once per
    worker) with uvicorn until stopped. ``limits`` are :func:`create_app`'s keyword limits
    (``max_in_flight`` and ``body_timeout`` among them); ``header_timeout`` and
    ``keep_alive_timeout`` are :func:`uvicorn_config`'s. An address that cannot be listened on
    raises :class:`ServeError` before anything is loaded.

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
               "server_header": False, "header_timeout": header_timeout,
               "keep_alive_timeout": keep_alive_timeout}
    if not header_timeout > 0 or not keep_alive_timeout > 0:
        raise ValueError("header_timeout and keep_alive_timeout must be > 0 seconds")
    check_address(host, port)  # fail now, not after loading the model
    if workers > 1:
        if not isinstance(recommender_or_path, (str, Path)):
            raise ValueError(
                "several workers each load the model: pass its path, not a Recommender"
            )
        if port == 0:
            raise ValueError("several workers need a fixed port (not 0) to share")
        if limits.get("model_threads") is None:
            limits["model_threads"] = max(1, _cores() // workers)
        # the refusals' budget is the server's, shared out between the workers
        limits.setdefault("busy_answers_per_second", BUSY_ANSWERS_PER_SECOND / workers)
        _serve_workers({
            "recommender_or_path": str(recommender_or_path), "torch_threads": torch_threads,
            "limits": limits, "options": options,
        }, workers)
        return
    _serve_one(recommender_or_path, torch_threads, limits, options)


__all__ = [
    "GuardMiddleware", "JSONAnswer", "ServeError", "check_address", "create_app", "error_answer",
    "listening_socket", "serve", "timed_h11_protocol", "uvicorn_config",
]
