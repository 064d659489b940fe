"""``aerec serve RUN``: the HTTP API and web page over a trained model (uvicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aerec.cli.common import console, fail

# aerec.serve.schemas' defaults, repeated so that `aerec --help` need not import FastAPI and
# torch (tests/serve/test_cli_serve.py checks they agree)
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 10.0
DEFAULT_KEEP_ALIVE_TIMEOUT = 5.0


def _serve(
    run: Annotated[
        Path, typer.Argument(help="Run directory written by `aerec train`, or a .pt checkpoint.")
    ],
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0 = every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8000,
    threads: Annotated[
        int,
        typer.Option(
            "--threads", min=0,
            help="torch threads per request (0 = torch's default, all cores).",
        ),
    ] = 1,
    model_threads: Annotated[
        int,
        typer.Option(
            "--model-threads", min=0,
            help="Requests computed at once (0 = one per available core).",
        ),
    ] = 0,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1,
            help="Server processes, each with its own copy of the model (use one per core for "
            "the most requests per second).",
        ),
    ] = 1,
    max_ratings: Annotated[
        int, typer.Option("--max-ratings", min=1, help="Most ratings in one request (413).")
    ] = 1000,
    max_k: Annotated[
        int, typer.Option("--max-k", min=1, help="Largest k a request may ask for.")
    ] = 100,
    max_in_flight: Annotated[
        int,
        typer.Option(
            "--max-in-flight", min=0,
            help="Requests answered at once per worker; more get a fast 503 with Retry-After "
            "(0 = 6 per model thread).",
        ),
    ] = 0,
    header_timeout: Annotated[
        float,
        typer.Option(
            "--header-timeout", min=0.1,
            help="Seconds a client has to send a request's head (from connecting or from the "
            "previous answer).",
        ),
    ] = DEFAULT_HEADER_TIMEOUT,
    body_timeout: Annotated[
        float,
        typer.Option(
            "--body-timeout", min=0.1,
            help="Seconds a client has to send a request body (408 beyond), and to take each "
            "part of an answer.",
        ),
    ] = DEFAULT_BODY_TIMEOUT,
    keep_alive_timeout: Annotated[
        float,
        typer.Option(
            "--idle-timeout", min=0.1,
            help="Seconds an idle keep-alive connection stays open.",
        ),
    ] = DEFAULT_KEEP_ALIVE_TIMEOUT,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log every request.")
    ] = True,
) -> None:
    """Serve recommendations over HTTP, with a web page at / and API docs at /docs.

    The model is loaded once, at start-up; stop the server with Ctrl-C.
    """
    from aerec.recommend import Recommender
    from aerec.serve import serve
    from aerec.serve.server import ServeError, check_address

    if not run.exists():
        raise FileNotFoundError(f"{run}: no such run directory or checkpoint")
    try:
        check_address(host, port)  # before loading the model
    except ServeError as exc:
        fail(str(exc).replace("[", r"\["))
    if workers > 1:  # each worker process loads the model itself
        target: Recommender | Path = run
    else:
        with console.status(f"loading {run} …"):
            target = Recommender.load(run)
    url_host = f"[{host}]" if ":" in host else host
    console.print(
        f"serving [bold]{run}[/] at http://{url_host}:{port}/ (API docs at /docs)"
        f"{f' with {workers} workers' if workers > 1 else ''} · Ctrl-C stops",
        highlight=False,
    )
    try:
        serve(
            target, host=host, port=port, torch_threads=threads, workers=workers,
            access_log=access_log, max_ratings=max_ratings, max_k=max_k,
            model_threads=model_threads or None, max_in_flight=max_in_flight or None,
            header_timeout=header_timeout, body_timeout=body_timeout,
            keep_alive_timeout=keep_alive_timeout,
        )
    except ServeError as exc:
        fail(str(exc).replace("[", r"\["))


def register(app: typer.Typer) -> None:
    """Add ``aerec serve`` to the ``aerec`` app."""
    app.command("serve")(_serve)
