"""Serving an app with uvicorn (:func:`serve`): the listening socket, a deadline for each
request's head, and several worker processes sharing one port.

Against slow or hostile clients a request's head must arrive within ``header_timeout`` seconds
of the connection opening (or of the previous answer), else the connection is closed (after a
408 when part of a head had arrived); an idle keep-alive connection is closed after
``keep_alive_timeout``; an incomplete head is buffered up to 16 KiB (h11; 400 beyond). Bodies
and answers are timed by :class:`~aerec.serve.middleware.GuardMiddleware`.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import sys
from pathlib import Path
from typing import Any

import orjson

from aerec.recommend import Recommender
from aerec.serve.app import create_app
from aerec.serve.middleware import BUSY_ANSWERS_PER_SECOND, SECURITY_HEADERS
from aerec.serve.schemas import DEFAULT_HEADER_TIMEOUT, DEFAULT_KEEP_ALIVE_TIMEOUT
from aerec.system import available_cores


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
    worker) with uvicorn until stopped. ``limits`` are the keyword limits of
    :func:`~aerec.serve.app.create_app` (``max_in_flight`` and ``body_timeout`` among them);
    ``header_timeout`` and ``keep_alive_timeout`` are :func:`uvicorn_config`'s. An address
    that cannot be listened on raises :class:`ServeError` before anything is loaded.

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
            limits["model_threads"] = max(1, available_cores() // workers)
        # the refusals' budget is the server's, shared out between the workers
        limits.setdefault("busy_answers_per_second", BUSY_ANSWERS_PER_SECOND / workers)
        _serve_workers({
            "recommender_or_path": str(recommender_or_path), "torch_threads": torch_threads,
            "limits": limits, "options": options,
        }, workers)
        return
    _serve_one(recommender_or_path, torch_threads, limits, options)


__all__ = [
    "ServeError", "check_address", "listening_socket", "serve", "timed_h11_protocol",
    "uvicorn_config",
]
