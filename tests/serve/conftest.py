"""A real tiny trained model (generated data → prepare → train) and the app serving it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aerec.config import TrainConfig
from aerec.data.prepare import prepare_paths
from aerec.data.synth import synthesize
from aerec.recommend import Recommender
from aerec.serve import create_app
from aerec.serve.server import listening_socket, uvicorn_config


@pytest.fixture(scope="session")
def serve_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run directory of a small model trained on 300 users × 120 movies (8,000 ratings)."""
    root = tmp_path_factory.mktemp("serve")
    synthesize(root / "raw", users=300, movies=120, ratings=8000, seed=1)
    prepare_paths([root / "raw" / "combined_data_1.txt"], root / "dataset")
    from aerec.train import train

    config = TrainConfig(
        layers=(32, 8), dropout=0.0, lr=3e-3, batch_size=32, epochs=6, threads=1,
        activation="selu", output_activation="identity", seed=0,
    )
    train(root / "dataset", root / "run", config)
    return root / "run"


@pytest.fixture(scope="session")
def recommender(serve_run: Path) -> Recommender:
    return Recommender.load(serve_run, warm=True)


@pytest.fixture(scope="session")
def client(recommender: Recommender) -> TestClient:
    """TestClient of the default app; server errors come back as answers, not exceptions."""
    with TestClient(create_app(recommender), raise_server_exceptions=False) as c:
        yield c


@contextlib.contextmanager
def live_server(app, **config) -> Iterator[str]:
    """``app`` served by uvicorn (:func:`uvicorn_config`: the timed h11 protocol ``aerec
    serve`` uses; ``config`` overrides its settings) in a thread on a free 127.0.0.1 port."""
    import uvicorn

    sock = listening_socket("127.0.0.1", 0)  # TCP_NODELAY on its connections
    port = sock.getsockname()[1]
    config = {"log_level": "warning", "access_log": False, **config}
    server = uvicorn.Server(uvicorn_config(app, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="session")
def live_url(recommender: Recommender) -> Iterator[str]:
    """The app served by uvicorn in a thread on a free 127.0.0.1 port."""
    with live_server(create_app(recommender)) as url:
        yield url
