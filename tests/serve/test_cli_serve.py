"""``aerec serve RUN``: the real command in a subprocess, answering on a loopback port."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

from aerec.cli import app, main

runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_help_lists_the_options():
    r = runner.invoke(app, ["serve", "--help"])
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    for option in ("--host", "--port", "--threads", "--workers", "--max-ratings", "--max-k",
                   "--max-in-flight", "--header-timeout", "--body-timeout",
                   "--idle-timeout"):
        assert option in text


def test_cli_timeout_defaults_are_the_servers():
    from aerec.cli import serve as cli_serve
    from aerec.serve import schemas

    for name in ("DEFAULT_HEADER_TIMEOUT", "DEFAULT_BODY_TIMEOUT", "DEFAULT_KEEP_ALIVE_TIMEOUT"):
        assert getattr(cli_serve, name) == getattr(schemas, name)


def _one_error_line(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    for needle in needles:
        assert needle in lines[0], err
    assert "Traceback" not in err and "OSError" not in err and "Errno" not in err


@pytest.mark.parametrize("workers", [1, 2])
def test_a_port_in_use_is_one_line_and_a_failure(serve_run, workers):
    """The real command, in a subprocess: one line, exit status 2, no OSError 98 traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "aerec", "serve", str(serve_run), "--port", str(port),
             "--workers", str(workers), "--no-access-log"],
            capture_output=True, text=True, timeout=120,
        )
    assert r.returncode == 2, (r.stdout, r.stderr)
    _one_error_line(r.stderr, f"127.0.0.1:{port}", "already in use")
    assert "serving" not in r.stdout  # refused before the model is loaded


def test_an_address_not_of_this_machine_is_one_line(serve_run, capsys):
    """192.0.2.1 (TEST-NET-1, never assigned): binding fails with EADDRNOTAVAIL, no traffic."""
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(serve_run), "--host", "192.0.2.1", "--port", str(_free_port())])
    assert exit_info.value.code == 2
    _one_error_line(capsys.readouterr().err, "192.0.2.1", "not an address of this machine")


def test_serve_raises_serve_error_for_a_port_in_use(recommender):
    from aerec.serve import serve
    from aerec.serve.server import ServeError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ServeError, match="already in use"):
            serve(recommender, port=taken.getsockname()[1])


def test_missing_run_is_one_clear_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err


def _output_collector(proc: subprocess.Popen) -> tuple[list[str], threading.Thread]:
    """Collect the process's output lines as they come, on a thread (so the test can wait for
    a line without blocking on the pipe)."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    return lines, reader


@pytest.mark.parametrize("workers", [1, 2])
def test_aerec_serve_answers_http(serve_run, recommender, workers):
    """One process, or two worker processes sharing the port (SO_REUSEPORT); Ctrl-C stops
    everything cleanly."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aerec", "serve", str(serve_run), "--port", str(port),
         "--workers", str(workers), "--no-access-log"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines, reader = _output_collector(proc)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        # every worker up (one may answer /health while another still loads the model)
        while "".join(lines).count("Application startup complete") < workers:
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, f"aerec serve did not come up: {lines}"
            time.sleep(0.1)
        with urllib.request.urlopen(base + "/health", timeout=5) as r:
            health = json.load(r)
        assert health["model"]["n_movies"] == recommender.n_movies
        movie = int(recommender.movie_ids[0])
        body = json.dumps({"ratings": [{"movie_id": movie, "rating": 5}], "k": 3}).encode()
        request = urllib.request.Request(
            base + "/recommendations", data=body, headers={"Content-Type": "application/json"}
        )
        want = recommender.recommend({movie: 5}, k=3).movie_ids
        for _ in range(2 * workers):  # new connections: each may land on another worker
            with urllib.request.urlopen(request, timeout=30) as r:
                got = json.load(r)
            assert [i["movie_id"] for i in got["items"]] == want
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
    out = "".join(lines)
    assert proc.returncode in (0, 128 + signal.SIGINT), out  # a clean stop on Ctrl-C
    assert f"127.0.0.1:{port}" in out
    assert "Traceback" not in out
    assert out.count("Application shutdown complete") == workers


def test_ctrl_c_while_the_workers_start_stops_cleanly(serve_run):
    """Ctrl-C as soon as the command says it is serving, while the worker processes are still
    starting their interpreters: every process stops without a traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aerec", "serve", str(serve_run), "--port", str(_free_port()),
         "--workers", "2", "--no-access-log"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    first = proc.stdout.readline()
    assert "serving" in first, first
    time.sleep(0.3)  # the workers are forked by now, and importing for a second or more
    out = ""
    for _ in range(4):  # one Ctrl-C may land while the workers are being forked (ignored)
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"aerec serve did not stop on Ctrl-C: {out}")
    assert proc.returncode in (0, 128 + signal.SIGINT), out
    assert "Traceback" not in out, out


def test_listen_errors_are_one_readable_sentence():
    """Each way an address can be unusable, without any name lookup or traffic."""
    import errno

    from aerec.serve.server import _listen_error

    cases = [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "not an address"),
        (OSError(errno.EADDRINUSE, "Address already in use"), "already in use"),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"),
         "not an address of this machine"),
        (OSError(errno.EACCES, "Permission denied"), "permission denied"),
        (OSError(errno.ENOBUFS, "No buffer space available"), "No buffer space"),
    ]
    for exc, needle in cases:
        message = str(_listen_error("somehost", 80, exc))
        assert needle in message and "\n" not in message
        assert message.startswith("cannot listen on ")


def test_workers_share_the_refusal_budget(serve_run, monkeypatch):
    from aerec.serve import server as server_module

    seen = {}
    monkeypatch.setattr(server_module, "_serve_workers",
                        lambda settings, workers: seen.update(settings, workers=workers))
    server_module.serve(serve_run, port=_free_port(), workers=2)
    assert seen["workers"] == 2
    limits = seen["limits"]
    assert limits["busy_answers_per_second"] == server_module.BUSY_ANSWERS_PER_SECOND / 2
    assert limits["model_threads"] >= 1
