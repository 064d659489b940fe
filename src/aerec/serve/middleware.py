"""What every HTTP request goes through before the routes (:class:`GuardMiddleware`) and the
headers every answer carries."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import orjson

from aerec.serve.schemas import DEFAULT_BODY_TIMEOUT

logger = logging.getLogger("aerec.serve")

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

#: Busy (503) answers a second that go out at once (for the whole server:
#: :func:`~aerec.serve.server.serve` shares them out between its workers); more wait for their
#: turn (see :class:`GuardMiddleware`). A refusal costs ~0.25 ms of the event loop: 300 a
#: second take under a tenth of a core and of the interpreter lock, the rest is left to the
#: requests accepted.
BUSY_ANSWERS_PER_SECOND = 300.0

#: Paths never refused for being busy: liveness checks cost no model work.
UNLIMITED_PATHS = frozenset({"/health"})


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


__all__ = [
    "BUSY_ANSWERS_PER_SECOND", "GENERIC_500", "PAGE_CSP", "SECURITY_HEADERS", "UNLIMITED_PATHS",
    "GuardMiddleware",
]
