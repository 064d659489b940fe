"""The server under overload and against slow clients: a real uvicorn on a 127.0.0.1 port.

Every test talks to loopback only, sends a bounded number of requests and bytes, and sets small
timeouts for the test (0.5 s) so that it ends by itself; none asserts a duration. A socket
timeout only keeps a test from hanging if the server never answers.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from aerec.recommend import Recommender
from aerec.serve import create_app
from tests.serve.conftest import live_server

#: Seconds a socket read waits before the test fails (the server should have acted long before).
STUCK = 15.0


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1"  # loopback only
    return parts.hostname, int(parts.port)


def _connect(url: str) -> socket.socket:
    sock = socket.create_connection(_address(url), timeout=STUCK)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"the server kept the connection open; received so far: {data[:200]!r}")
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def _trickle(sock: socket.socket, data: bytes, interval: float = 0.1) -> None:
    """Send ``data`` one byte at a time every ``interval`` seconds, each byte well within the
    server's timeout, until it is all sent or the server answers or closes."""
    for i in range(len(data)):
        if select.select([sock], [], [], 0)[0]:
            return  # the server answered (or closed)
        try:
            sock.sendall(data[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            return
        time.sleep(interval)


def _body_of(answer: bytes) -> dict:
    head, _, body = answer.partition(b"\r\n\r\n")
    return json.loads(body)


@pytest.fixture(scope="module")
def strict_url(recommender: Recommender):
    """A server with 0.5 s head, body and keep-alive timeouts."""
    app = create_app(recommender, body_timeout=0.5)
    with live_server(app, header_timeout=0.5, keep_alive_timeout=0.5) as url:
        yield url


# ---------------------------------------------------------------------------- slow clients


def test_a_silent_connection_is_closed(strict_url):
    with _connect(strict_url) as sock:
        assert _read_until_closed(sock) == b""


def test_a_head_trickled_byte_by_byte_gets_408_and_is_closed(strict_url):
    """Each byte arrives within the timeout, but the head as a whole does not."""
    with _connect(strict_url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        _trickle(sock, b"X-Slow: " + b"a" * 150)
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert "head did not arrive" in _body_of(answer)["detail"]
    assert b"x-content-type-options: nosniff" in answer.lower()


@pytest.mark.parametrize("trickled", [False, True])
def test_a_partial_body_gets_408_and_is_closed(strict_url, trickled):
    with _connect(strict_url) as sock:
        sock.sendall(b"POST /recommendations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 300\r\n\r\n"
                     b'{"ratings": [')
        if trickled:
            _trickle(sock, b" " * 250)
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    detail = _body_of(answer)["detail"]
    assert "body did not arrive within 0.5 s" in detail
    assert b"x-content-type-options: nosniff" in answer.lower()


def test_an_idle_keep_alive_connection_is_closed_after_its_answer(strict_url):
    with _connect(strict_url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.count(b"HTTP/1.1") == 1 and answer.endswith(b"}")


def test_pipelined_requests_are_all_answered(strict_url):
    """The head timer does not cut off a request that arrived with the one before."""
    with _connect(strict_url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 2
                     + b"GET /movies/0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.count(b"HTTP/1.1 200 ") == 2 and answer.count(b"HTTP/1.1 404 ") == 1


def test_a_head_over_16_kib_is_400(strict_url):
    """An incomplete head is buffered up to 16 KiB (h11), no more."""
    with _connect(strict_url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        for part in (b"a" * 10_000, b"a" * 10_000, b"a\r\n\r\n"):
            time.sleep(0.1)  # separate reads for the server
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


def test_a_slow_upload_does_not_hold_a_place(recommender: Recommender):
    """With one place, a client still sending its body does not make others wait or 503:
    a body is read in full before the request counts as in flight."""
    app = create_app(recommender, max_in_flight=1, body_timeout=10)
    with live_server(app, header_timeout=10) as url, _connect(url) as slow:
        slow.sendall(b"POST /recommendations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{")
        movie = int(recommender.movie_ids[0])
        for _ in range(3):
            r = httpx.post(f"{url}/recommendations", timeout=STUCK,
                           json={"ratings": [{"movie_id": movie, "rating": 5}], "k": 3})
            assert r.status_code == 200, r.text


# ---------------------------------------------------------------------------- overload


class _Gated:
    """A real recommender whose ``recommend`` waits for ``release`` (at most ``STUCK`` s), so
    a test can hold requests in flight for as long as it needs."""

    def __init__(self, real: Recommender) -> None:
        self._real = real
        self.release = threading.Event()
        self.entered = 0
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._real, name)

    def recommend(self, *args, **kwargs):
        with self._lock:
            self.entered += 1
        self.release.wait(STUCK)
        return self._real.recommend(*args, **kwargs)


def test_beyond_the_in_flight_limit_requests_get_a_fast_503_with_retry_after(recommender):
    gated = _Gated(recommender)
    limit = 3
    app = create_app(gated, max_in_flight=limit, model_threads=limit)
    ids = [int(m) for m in recommender.movie_ids[:limit]]
    inputs = [{"ratings": [{"movie_id": m, "rating": 5}], "k": 5} for m in ids]
    want = [recommender.recommend({m: 5}, k=5).to_dict() for m in ids]
    accepted: list[httpx.Response | BaseException] = [None] * limit  # type: ignore[list-item]

    with live_server(app) as url:
        def ask(i: int) -> None:
            try:
                accepted[i] = httpx.post(f"{url}/recommendations", json=inputs[i], timeout=STUCK)
            except BaseException as exc:  # reported below
                accepted[i] = exc

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(limit)]
        try:
            for t in threads:
                t.start()
            deadline = time.monotonic() + STUCK
            while gated.entered < limit:  # every place taken
                assert time.monotonic() < deadline, "the first requests never reached the model"
                time.sleep(0.01)
            refused = [httpx.post(f"{url}/recommendations", json=inputs[i % limit],
                                  timeout=STUCK) for i in range(6)]
            search = httpx.get(f"{url}/movies", params={"q": "a"}, timeout=STUCK)
            health = httpx.get(f"{url}/health", timeout=STUCK)  # never refused
        finally:
            gated.release.set()
            for t in threads:
                t.join(STUCK)

    for r in [*refused, search]:
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert r.headers["content-type"] == "application/json"
        assert "busy" in r.json()["detail"] and f"{limit} requests" in r.json()["detail"]
        assert r.headers["x-content-type-options"] == "nosniff"
    assert health.status_code == 200
    for r, expected in zip(accepted, want):
        assert isinstance(r, httpx.Response), r
        assert r.status_code == 200, r.text
        assert r.json() == json.loads(json.dumps(expected))
    # the places are free again
    with live_server(app) as url:
        r = httpx.post(f"{url}/recommendations", json=inputs[0], timeout=STUCK)
        assert r.status_code == 200


def test_many_concurrent_requests_get_only_200_or_503(recommender: Recommender):
    """More concurrent clients than places, each sending several requests: every answer is a
    correct 200 or a 503 with Retry-After; nothing else, no socket errors."""
    import concurrent.futures

    app = create_app(recommender, max_in_flight=2, model_threads=1)
    ids = [int(m) for m in recommender.movie_ids]
    inputs = [{ids[i]: 5, ids[(i * 7 + 3) % len(ids)]: 1 + i % 5} for i in range(16)]
    want = {i: json.loads(json.dumps(recommender.recommend(r, k=10).to_dict()))
            for i, r in enumerate(inputs)}

    def body(i: int) -> dict:
        return {"ratings": [{"movie_id": m, "rating": v} for m, v in inputs[i].items()]}

    with live_server(app) as url:
        def client(i: int) -> list[tuple[int, int, httpx.Response]]:
            with httpx.Client(timeout=STUCK) as c:
                return [(i, j, c.post(f"{url}/recommendations", json=body((i + j) % 16)))
                        for j in range(4)]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = [a for batch in pool.map(client, range(16)) for a in batch]

    assert len(answers) == 64
    statuses = {r.status_code for _, _, r in answers}
    assert statuses <= {200, 503}, statuses
    assert any(r.status_code == 200 for _, _, r in answers)
    for i, j, r in answers:
        if r.status_code == 200:
            assert r.json() == want[(i + j) % 16]
        else:
            assert r.headers["retry-after"] == "1"


def test_refusals_beyond_their_budget_wait_for_their_turn(monkeypatch):
    """Clients that retry a 503 at once would keep the event loop busy refusing them and starve
    the accepted requests: past ``busy_answers_per_second`` each 503 waits for its turn (the
    waits are recorded here, not slept)."""
    import asyncio

    import anyio

    from aerec.serve.middleware import GuardMiddleware

    release = asyncio.Event()

    async def holding_app(scope, receive, send):
        if scope["path"] == "/held":
            await release.wait()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    waits: list[float] = []

    async def recorded_sleep(seconds: float) -> None:
        waits.append(seconds)

    guard = GuardMiddleware(holding_app, max_body_bytes=1000, max_in_flight=1,
                            busy_answers_per_second=0.01)  # one refusal per 100 s at once

    async def request(path: str) -> list[dict]:
        sent: list[dict] = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        await guard({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send)
        return sent

    async def scenario() -> list[list[dict]]:
        holder = asyncio.create_task(request("/held"))
        while guard.in_flight < 1:
            await asyncio.sleep(0)
        monkeypatch.setattr(anyio, "sleep", recorded_sleep)
        refused = [await request("/busy") for _ in range(3)]
        health = await request("/health")  # never refused
        release.set()
        await holder
        return [*refused, health]

    *refused, health = asyncio.run(scenario())
    for sent in refused:
        start = sent[0]
        assert start["status"] == 503
        assert (b"retry-after", b"1") in start["headers"]
    assert health[0]["status"] == 204
    assert len(waits) == 2 and 0 < waits[0] < waits[1]  # the 2nd and 3rd waited their turn
    assert waits[1] > 100
