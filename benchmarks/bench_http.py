"""HTTP benchmark: ``aerec serve`` (uvicorn, one worker) under concurrent load on loopback.

    python benchmarks/bench_http.py                          # Netflix-quarter shape
    python benchmarks/bench_http.py --shape small --seconds 5
    python benchmarks/bench_http.py --dataset /tmp/quarter-ds --run runs/quarter

Data and model: a prepared dataset of the requested shape (``--dataset``; for ``quarter`` a
prepared copy at ``/tmp/quarter-ds`` is used when present, else one is generated under
``bench-data/`` with ``aerec data synth`` + ``aerec data prepare``) and a model trained on it
for one epoch of the ``seed`` preset (``--run`` reuses a run directory; the trained run is cached
under ``bench-data/``). Serving cost does not depend on how well the model is trained.

The server is the real command, ``python -m aerec serve RUN --no-access-log`` in its own process.
The load comes from another process: Debian's ``wrk`` (closed loop, ``--connections`` open
connections, one thread) with a Lua script that cycles through request bodies built from real
users of the dataset (their ratings, 10–50 per request, ``k`` 10), or, when ``wrk`` is absent, a
Python asyncio + httpx load generator in a subprocess. Every run is bounded both in time
(``--seconds``) and in requests (``--max-requests``) and only ever targets 127.0.0.1.

Measured in the same run, one after the other:

``GET /health``                 the framework ceiling (no model work): the reference
``POST /recommendations``       what the web page sends: 10 explained recommendations
``… explain=false``             the same without similar users / attribution

(with ``--max-in-flight`` at least ``--connections``, so that these rows measure capacity and no
request is refused.)

Prints throughput (requests/s), p50/p99 latency, errors (non-200 answers and socket errors),
the server's CPU time per request, and a Markdown table for docs/benchmarks.md. The target is
≥ 300 explained recommendations/s with no errors.

Overload and soak (``--scenario overload`` / ``soak`` / ``hostile``, the server as in ``--workers``
and ``--max-in-flight``):

``overload``   ``--overload-connections`` (200) connections, each sending explained requests
               back to back for ``--seconds`` and retrying a 503 at once (no back-off: the
               hostile case); per answer its status and latency are recorded (an asyncio load
               generator on raw sockets, so 503s and 200s are told apart). Reports accepted
               requests/s, p50/p99/max of the accepted (200) requests, the share of 503s and
               whether each carried ``Retry-After``, and any other status or socket error.
               Target: p99 of accepted requests ≤ 250 ms.
``soak``       ``--bursts`` (5) such overload bursts of ``--burst-seconds`` with
               ``--pause`` seconds between them, and the server's resident memory (all its
               processes) after each. Target: growth after the first burst ≤ 5 %.
``hostile``    both, on one server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"  # never anything else
SHAPES = {
    "quarter": {"users": 470_758, "movies": 4_499, "ratings": 24_053_764},
    "small": {"users": 20_000, "movies": 2_000, "ratings": 1_000_000},
    "tiny": {"users": 300, "movies": 120, "ratings": 8_000},
}
QUARTER_COPY = Path("/tmp/quarter-ds")

WRK_SCRIPT = r"""
-- aerec bench_http: cycle through prepared requests; stop after a bounded number of answers.
local requests_ = {}
local next_ = 0
local answered = 0
local bad = 0
local limit = 0

function init(args)
  local file, method, path = args[1], args[2], args[3]
  limit = tonumber(args[4]) or 0
  if method == "POST" then
    local headers = { ["Content-Type"] = "application/json" }
    for line in io.lines(file) do
      requests_[#requests_ + 1] = wrk.format("POST", path, headers, line)
    end
  else
    requests_[1] = wrk.format("GET", path)
  end
  next_ = math.random(#requests_) - 1
end

function request()
  next_ = next_ + 1
  return requests_[(next_ % #requests_) + 1]
end

function response(status, headers, body)
  answered = answered + 1
  if limit > 0 and answered >= limit then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'AEREC_RESULT {"requests":%d,"seconds":%.6f,"status_errors":%d,"socket_errors":%d,' ..
    '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, latency.mean / 1e3))
end
"""


# --------------------------------------------------------------------------------------------
# data and model


def _aerec(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "aerec", *args], check=True)


def dataset_dir(args: argparse.Namespace) -> Path:
    """The prepared dataset to train on: ``--dataset``, the quarter copy, or a generated one."""
    if args.dataset is not None:
        return args.dataset
    shape = SHAPES[args.shape]
    if args.shape == "quarter" and (QUARTER_COPY / "manifest.json").is_file():
        manifest = json.loads((QUARTER_COPY / "manifest.json").read_text())
        if (manifest.get("users"), manifest.get("movies"), manifest.get("ratings")) == (
            shape["users"], shape["movies"], shape["ratings"]
        ):
            return QUARTER_COPY
    raw = REPO / "bench-data" / f"http-{args.shape}-raw"
    prepared = REPO / "bench-data" / f"http-{args.shape}-ds"
    if not (prepared / "manifest.json").is_file():
        if not (raw / "combined_data_1.txt").is_file():
            print(f"generating {raw} …", flush=True)
            _aerec("data", "synth", "--out", str(raw), "--users", str(shape["users"]),
                   "--movies", str(shape["movies"]), "--ratings", str(shape["ratings"]))
        print(f"preparing {prepared} …", flush=True)
        _aerec("data", "prepare", str(raw / "combined_data_1.txt"), "--out", str(prepared))
    return prepared


def run_dir(args: argparse.Namespace, dataset: Path) -> Path:
    """A trained run: ``--run``, or one epoch of the seed preset (cached under bench-data/)."""
    if args.run is not None:
        return args.run
    name = "quarter" if dataset == QUARTER_COPY else args.shape
    out = REPO / "bench-data" / f"http-run-{name}"
    if not (out / "best.pt").is_file():
        from aerec.config import resolve_config
        from aerec.train import train

        print(f"training one epoch of the seed preset into {out} …", flush=True)
        started = time.perf_counter()
        train(dataset, out, resolve_config("seed", overrides={"epochs": 1, "threads": 0}))
        print(f"  trained in {time.perf_counter() - started:.0f} s", flush=True)
    return out


def request_bodies(dataset: Path, n: int, seed: int, explain: bool) -> list[str]:
    """JSON bodies of ``POST /recommendations`` from ``n`` real users with 10–50 ratings."""
    import numpy as np

    from aerec.data.store import load_dataset

    ds = load_dataset(dataset)
    m = ds.matrix
    counts = np.diff(m.indptr)
    pool = np.flatnonzero((counts >= 10) & (counts <= 50))
    if len(pool) == 0:
        pool = np.flatnonzero(counts >= 1)
    rng = np.random.default_rng(seed)
    users = rng.choice(pool, size=min(n, len(pool)), replace=False)
    movie_ids = np.asarray(ds.movie_ids)
    bodies = []
    for u in users.tolist():
        lo, hi = int(m.indptr[u]), int(m.indptr[u + 1])
        ratings = [
            {"movie_id": int(movie_ids[c]), "rating": float(r)}
            for c, r in zip(m.indices[lo:hi].tolist(), m.data[lo:hi].tolist())
        ]
        bodies.append(json.dumps({"ratings": ratings, "k": 10, "explain": explain}))
    return bodies


# --------------------------------------------------------------------------------------------
# server


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(
    run: Path, port: int, threads: int, model_threads: int, workers: int = 1,
    max_in_flight: int = 0,
) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "aerec", "serve", str(run), "--host", HOST, "--port", str(port),
           "--threads", str(threads), "--model-threads", str(model_threads),
           "--workers", str(workers), "--max-in-flight", str(max_in_flight), "--no-access-log"]
    print("$ " + " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while True:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2) as r:
                health = json.load(r)
            print(f"  up: {health['model']}", flush=True)
            return proc
        except OSError:
            if proc.poll() is not None:
                sys.exit("server failed to start:\n" + (proc.stdout.read() if proc.stdout else ""))
            if time.monotonic() > deadline:
                proc.kill()
                sys.exit("server did not start within 600 s")
            time.sleep(0.2)


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (the workers of ``--workers``), from Linux /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += [child for child, parent in parents.items() if parent == current]
    return tree


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its live descendants, MB (VmRSS, /proc)."""
    total = 0
    for member in _process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants (the workers of
    ``--workers``), from Linux /proc, in seconds."""
    stats: dict[int, tuple[int, float]] = {}  # pid → (parent, cpu seconds)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        stats[int(entry.name)] = (int(fields[1]), cpu)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0.0))[1]
        todo += [child for child, (parent, _) in stats.items() if parent == current]
    return total


# --------------------------------------------------------------------------------------------
# load generators (separate processes)


def run_wrk(port: int, method: str, path: str, bodies_file: Path, args, seconds: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "aerec.lua"
        script.write_text(WRK_SCRIPT)
        cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{max(1, round(seconds))}s",
               "--timeout", "10s", "-s", str(script), f"http://{HOST}:{port}{path}", "--",
               str(bodies_file), method, path, str(args.max_requests)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("AEREC_RESULT "):
            return json.loads(line.split(" ", 1)[1])
    raise RuntimeError(f"wrk gave no result:\n{out.stdout}\n{out.stderr}")


def run_raw_loadgen(port: int, bodies_file: Path, connections: int, seconds: float,
                    max_requests: int) -> dict:
    """The overload load generator (:func:`_raw_loadgen`) in its own process."""
    cmd = [sys.executable, __file__, "--loadgen-child", "--raw", "--port", str(port),
           "--bodies-file", str(bodies_file), "--connections", str(connections),
           "--seconds", str(seconds), "--max-requests", str(max_requests)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    for line in out.stdout.splitlines():
        if line.startswith("AEREC_RESULT "):
            return json.loads(line.split(" ", 1)[1])
    raise RuntimeError(f"load generator gave no result:\n{out.stdout}\n{out.stderr}")


async def _raw_loadgen(args: argparse.Namespace) -> dict:
    """``args.connections`` keep-alive connections to 127.0.0.1, each sending ``POST
    /recommendations`` back to back (a 503 is retried at once) until ``args.seconds`` have
    passed or ``args.max_requests`` were sent; every answer's status and latency recorded.
    Raw sockets and a minimal HTTP/1.1 reader: the generator must cost far less CPU than the
    server it loads."""
    bodies = Path(args.bodies_file).read_text().splitlines()
    requests = []
    for body in bodies:
        data = body.encode()
        requests.append(
            f"POST /recommendations HTTP/1.1\r\nHost: {HOST}:{args.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
    latencies: dict[int, list[float]] = {}
    counts = {"socket_errors": 0, "503_without_retry_after": 0, "connects": 0}
    sent = 0
    deadline = time.perf_counter() + args.seconds

    async def connection(k: int) -> None:
        nonlocal sent
        i = k * 7
        reader = writer = None
        while time.perf_counter() < deadline and (args.max_requests <= 0
                                                   or sent < args.max_requests):
            if writer is None:
                try:
                    reader, writer = await asyncio.open_connection(HOST, args.port)
                    counts["connects"] += 1
                except OSError:
                    counts["socket_errors"] += 1
                    await asyncio.sleep(0.05)
                    continue
            sent += 1
            i += 1
            t0 = time.perf_counter()
            try:
                writer.write(requests[i % len(requests)])
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                await reader.readexactly(int(headers.get("content-length", "0")))
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                counts["socket_errors"] += 1
                writer.close()
                writer = None
                continue
            latencies.setdefault(status, []).append(time.perf_counter() - t0)
            if status == 503 and "retry-after" not in headers:
                counts["503_without_retry_after"] += 1
            if headers.get("connection", "").lower() == "close":
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(k) for k in range(args.connections)))
    elapsed = time.perf_counter() - started

    def summary(values: list[float]) -> dict:
        values = sorted(values)
        def pct(p: float) -> float:
            return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1e3
        return {"n": len(values), "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": values[-1] * 1e3}

    return {"seconds": elapsed, **counts,
            "statuses": {str(code): len(v) for code, v in sorted(latencies.items())},
            "latency": {str(code): summary(v) for code, v in latencies.items() if v}}


def run_python_loadgen(port: int, method: str, path: str, bodies_file: Path, args,
                       seconds: float) -> dict:
    cmd = [sys.executable, __file__, "--loadgen-child", "--port", str(port), "--method", method,
           "--path", path, "--bodies-file", str(bodies_file),
           "--connections", str(args.connections), "--seconds", str(seconds),
           "--max-requests", str(args.max_requests)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    for line in out.stdout.splitlines():
        if line.startswith("AEREC_RESULT "):
            return json.loads(line.split(" ", 1)[1])
    raise RuntimeError(f"load generator gave no result:\n{out.stdout}\n{out.stderr}")


async def _loadgen(args: argparse.Namespace) -> dict:
    import httpx

    bodies = (Path(args.bodies_file).read_text().splitlines() if args.method == "POST" else [""])
    url = f"http://{HOST}:{args.port}{args.path}"
    latencies: list[float] = []
    errors = {"status": 0, "socket": 0}
    sent = 0
    deadline = time.perf_counter() + args.seconds
    limits = httpx.Limits(max_connections=args.connections,
                          max_keepalive_connections=args.connections)

    async def worker(client: httpx.AsyncClient, offset: int) -> None:
        nonlocal sent
        i = offset
        while time.perf_counter() < deadline and (args.max_requests <= 0
                                                   or sent < args.max_requests):
            sent += 1
            i += 1
            t0 = time.perf_counter()
            try:
                if args.method == "POST":
                    r = await client.post(url, content=bodies[i % len(bodies)],
                                          headers={"content-type": "application/json"})
                else:
                    r = await client.get(url)
            except httpx.HTTPError:
                errors["socket"] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors["status"] += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:
        await asyncio.gather(*(worker(client, k * 7) for k in range(args.connections)))
    elapsed = time.perf_counter() - started
    lat = sorted(latencies) or [float("nan")]

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1e3

    return {
        "requests": len(latencies) + errors["socket"], "seconds": elapsed,
        "status_errors": errors["status"], "socket_errors": errors["socket"],
        "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": lat[-1] * 1e3,
        "mean_ms": sum(lat) / len(lat) * 1e3,
    }


# --------------------------------------------------------------------------------------------
# in-process reference: the same calls without HTTP


def inprocess_reference(run: Path, bodies_file: Path, calls: int, torch_threads: int) -> dict:
    """CPU ms per call of ``Recommender.recommend`` and of its ``to_dict`` + JSON encoding, on
    one thread in this process, for the same request bodies (the model's share of a request)."""
    import torch

    from aerec.recommend import Recommender

    torch.set_num_threads(max(1, torch_threads))
    rec = Recommender.load(run, warm=True)
    bodies = [json.loads(line) for line in bodies_file.read_text().splitlines()]
    inputs = [([(r["movie_id"], r["rating"]) for r in b["ratings"]], b["explain"]) for b in bodies]
    for ratings, explain in inputs[:10]:  # warm caches
        rec.recommend(ratings, k=10, explain=explain)
    model = encode = 0.0
    for i in range(calls):
        ratings, explain = inputs[i % len(inputs)]
        t0 = time.process_time()
        result = rec.recommend(ratings, k=10, explain=explain)
        t1 = time.process_time()
        json.dumps(result.to_dict(), ensure_ascii=False, separators=(",", ":"))
        t2 = time.process_time()
        model += t1 - t0
        encode += t2 - t1
    return {"recommend_ms": model / calls * 1e3, "to_dict_json_ms": encode / calls * 1e3}


# --------------------------------------------------------------------------------------------
# main


def measure(label: str, method: str, path: str, bodies_file: Path, args, server, port: int,
            seconds: float, use_wrk: bool) -> dict:
    runner = run_wrk if use_wrk else run_python_loadgen
    cpu0 = cpu_seconds(server.pid)
    result = runner(port, method, path, bodies_file, args, seconds)
    result["server_cpu_s"] = cpu_seconds(server.pid) - cpu0
    result["label"] = label
    result["rps"] = result["requests"] / result["seconds"] if result["seconds"] else 0.0
    result["errors"] = result["status_errors"] + result["socket_errors"]
    print(f"  {label:<40} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:7.2f} ms  "
          f"p99 {result['p99_ms']:7.2f} ms  errors {result['errors']}", flush=True)
    return result


def overload_burst(label: str, port: int, bodies_file: Path, args, server) -> dict:
    cpu0 = cpu_seconds(server.pid)
    result = run_raw_loadgen(port, bodies_file, args.overload_connections, args.seconds
                             if label == "overload" else args.burst_seconds, args.max_requests)
    result["server_cpu_s"] = cpu_seconds(server.pid) - cpu0
    result["label"] = label
    statuses = result["statuses"]
    total = sum(statuses.values())
    ok = result["latency"].get("200", {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan"),
                                        "max_ms": float("nan")})
    busy = result["latency"].get("503", {"n": 0, "p50_ms": float("nan"),
                                          "p99_ms": float("nan")})
    result["accepted_rps"] = ok["n"] / result["seconds"]
    result["answers_rps"] = total / result["seconds"]
    result["share_503"] = busy["n"] / total if total else 0.0
    result["other"] = {code: n for code, n in statuses.items() if code not in ("200", "503")}
    result["ok"], result["busy"] = ok, busy
    print(f"  {label:<10} accepted {result['accepted_rps']:6.0f}/s  p50 {ok['p50_ms']:6.1f} ms  "
          f"p99 {ok['p99_ms']:6.1f} ms  max {ok['max_ms']:6.1f} ms  503 "
          f"{100 * result['share_503']:4.1f} % (p50 {busy['p50_ms']:.1f} ms)  other "
          f"{result['other'] or 0}  socket errors {result['socket_errors']}", flush=True)
    return result


def hostile(args: argparse.Namespace, argv: list[str] | None) -> None:
    """The overload and soak runs (``--scenario``), with Markdown for docs/benchmarks.md."""
    dataset = dataset_dir(args)
    run = run_dir(args, dataset)
    results, memory = [], []
    with tempfile.TemporaryDirectory() as tmp:
        bodies_file = Path(tmp) / "bodies.jsonl"
        bodies_file.write_text(
            "\n".join(request_bodies(dataset, args.bodies, args.seed, True)) + "\n")
        port = free_port()
        server = start_server(run, port, args.threads, args.model_threads, args.workers,
                              args.max_in_flight)
        if args.workers > 1:
            time.sleep(args.settle)
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=10) as r:
                limits = json.load(r)["limits"]
            memory.append(("after start", rss_mb(server.pid)))
            load_before = os.getloadavg()
            if args.scenario in ("overload", "hostile"):
                results.append(overload_burst("overload", port, bodies_file, args, server))
                time.sleep(args.pause)
                memory.append(("after the overload run", rss_mb(server.pid)))
            if args.scenario in ("soak", "hostile"):
                for burst in range(1, args.bursts + 1):
                    results.append(overload_burst(f"burst {burst}", port, bodies_file, args,
                                                  server))
                    time.sleep(args.pause)
                    memory.append((f"after burst {burst}", rss_mb(server.pid)))
                    print(f"  RSS {memory[-1][1]:.0f} MB", flush=True)
            load_after = os.getloadavg()
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()

    from aerec.data.store import load_dataset

    ds = load_dataset(dataset)
    command = "python benchmarks/bench_http.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    print()
    print(f"```sh\n{command.strip()}\n```")
    print()
    print(f"Model: one epoch of the seed preset on {ds.n_users:,} users × {ds.n_movies:,} movies "
          f"({ds.n_ratings:,} ratings). Server: `aerec serve` ({args.workers} worker"
          f"{'s' if args.workers > 1 else ''}, max in flight {limits.get('max_in_flight')} per "
          f"worker, torch threads {args.threads}, no access log). Load: "
          f"{args.overload_connections} keep-alive connections from an asyncio load generator "
          "(raw sockets, one process), explained `POST /recommendations` back to back, a 503 "
          "retried at once. "
          f"{os.cpu_count()} cores ({platform.machine()}) shared by server and load; load "
          f"average {load_before[0]:.1f} before, {load_after[0]:.1f} after.")
    print()
    print("| run | s | answers/s | accepted/s | accepted p50 (ms) | p99 (ms) | max (ms) "
          "| 503 share | 503 p50 (ms) | 503 without Retry-After | other status | socket errors "
          "|")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ok, busy = r["ok"], r["busy"]
        print(f"| {r['label']} | {r['seconds']:.1f} | {r['answers_rps']:,.0f} "
              f"| {r['accepted_rps']:,.0f} | {ok['p50_ms']:.0f} | {ok['p99_ms']:.0f} "
              f"| {ok['max_ms']:.0f} | {100 * r['share_503']:.1f} % | {busy['p50_ms']:.0f} "
              f"| {r['503_without_retry_after']} | {sum(r['other'].values())} "
              f"| {r['socket_errors']} |")
    if memory:
        print()
        print("| server RSS | MB |")
        print("|---|---:|")
        for label, mb in memory:
            print(f"| {label} | {mb:.0f} |")
    worst = max((r["ok"]["p99_ms"] for r in results), default=float("nan"))
    print()
    print(f"Target p99 of accepted requests ≤ 250 ms: {'met' if worst <= 250 else 'MISSED'} "
          f"(worst run {worst:.0f} ms).")
    bursts = [mb for label, mb in memory if label.startswith("after burst")]
    if len(bursts) >= 2:
        growth = (max(bursts[1:]) - bursts[0]) / bursts[0] * 100
        print(f"Target RSS growth after the first burst ≤ 5 %: "
              f"{'met' if growth <= 5 else 'MISSED'} ({bursts[0]:.0f} → {bursts[-1]:.0f} MB, "
              f"largest {max(bursts[1:]):.0f} MB, {growth:+.1f} %).")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="quarter")
    p.add_argument("--dataset", type=Path, default=None, help="prepared dataset to train on")
    p.add_argument("--run", type=Path, default=None, help="trained run directory to serve")
    p.add_argument("--connections", type=int, default=32, help="concurrent connections")
    p.add_argument("--seconds", type=float, default=15.0, help="length of each measured run")
    p.add_argument("--max-requests", type=int, default=200_000,
                   help="each run stops after this many answers at the latest")
    p.add_argument("--threads", type=int, default=1, help="torch threads in the server")
    p.add_argument("--model-threads", type=int, default=0,
                   help="requests the server computes at once (0 = one per core)")
    p.add_argument("--workers", type=int, default=2,
                   help="server processes (aerec serve --workers; 2 = one per core here)")
    p.add_argument("--settle", type=float, default=15.0,
                   help="seconds to wait after the first /health answer when workers > 1")
    p.add_argument("--bodies", type=int, default=256, help="distinct request bodies")
    p.add_argument("--reference-calls", type=int, default=300,
                   help="in-process Recommender.recommend calls timed for the reference")
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenario", choices=("throughput", "overload", "soak", "hostile"),
                   default="throughput", help="what to measure (see above)")
    p.add_argument("--max-in-flight", type=int, default=0,
                   help="aerec serve --max-in-flight (0 = its default)")
    p.add_argument("--overload-connections", type=int, default=200,
                   help="connections of the overload and soak runs")
    p.add_argument("--bursts", type=int, default=5, help="overload bursts of the soak run")
    p.add_argument("--burst-seconds", type=float, default=10.0, help="length of each burst")
    p.add_argument("--pause", type=float, default=3.0, help="seconds between soak bursts")
    # internal: the Python load generator's own process
    p.add_argument("--loadgen-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--bodies-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.loadgen_child:
        result = asyncio.run(_raw_loadgen(args) if args.raw else _loadgen(args))
        print("AEREC_RESULT " + json.dumps(result), flush=True)
        return

    if args.scenario != "throughput":
        hostile(args, argv)
        return

    use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk"))
    if args.loadgen == "wrk" and not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk), use --loadgen python")

    dataset = dataset_dir(args)
    run = run_dir(args, dataset)
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for explain in (True, False):
            f = Path(tmp) / f"bodies-explain-{explain}.jsonl"
            f.write_text("\n".join(request_bodies(dataset, args.bodies, args.seed, explain)) + "\n")
            files[explain] = f
        sizes = [len(json.loads(line)["ratings"]) for line in files[True].read_text().splitlines()]
        port = free_port()
        # capacity, not load shedding: room for every connection, so no request is refused
        server = start_server(run, port, args.threads, args.model_threads, args.workers,
                              args.max_in_flight or args.connections)
        if args.workers > 1:  # the first worker answers /health; let the others finish loading
            time.sleep(args.settle)
        try:
            load_before = os.getloadavg()
            print(f"warming up ({min(5.0, args.seconds):.0f} s) …", flush=True)
            measure("warm-up", "POST", "/recommendations", files[True], args, server, port,
                    min(5.0, args.seconds), use_wrk)
            results = [
                measure("GET /health (reference)", "GET", "/health", files[True], args, server,
                        port, args.seconds, use_wrk),
                measure("POST /recommendations (explained)", "POST", "/recommendations",
                        files[True], args, server, port, args.seconds, use_wrk),
                measure("POST /recommendations explain=false", "POST", "/recommendations",
                        files[False], args, server, port, args.seconds, use_wrk),
            ]
            load_after = os.getloadavg()
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        print("in-process reference (no HTTP, one thread) …", flush=True)
        inproc = {explain: inprocess_reference(run, files[explain], args.reference_calls,
                                               args.threads) for explain in (True, False)}

    from aerec.data.store import load_dataset

    ds = load_dataset(dataset)
    reference = results[0]["rps"]
    command = "python benchmarks/bench_http.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    print()
    print(f"```sh\n{command.strip()}\n```")
    print()
    print(f"Model: one epoch of the seed preset on {ds.n_users:,} users × {ds.n_movies:,} movies "
          f"({ds.n_ratings:,} ratings). Server: `aerec serve` (uvicorn, {args.workers} "
          f"worker process{'es' if args.workers > 1 else ''}, torch threads {args.threads}, "
          f"model threads per worker {args.model_threads or 'the cores shared out'}, no access "
          "log). Load: "
          f"{'wrk, 1 thread' if use_wrk else 'Python asyncio + httpx'}, {args.connections} "
          f"connections, {args.seconds:g} s per row, bodies from {len(sizes)} real users with "
          f"{min(sizes)}–{max(sizes)} ratings (mean {sum(sizes) / len(sizes):.0f}), k = 10. "
          f"{os.cpu_count()} cores ({platform.machine()}); load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.")
    print()
    print("| request | requests | requests/s | p50 (ms) | p99 (ms) | errors "
          "| server CPU ms/request | share of /health rate |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        cpu_ms = r["server_cpu_s"] / r["requests"] * 1e3 if r["requests"] else float("nan")
        print(f"| `{r['label']}` | {r['requests']:,} | {r['rps']:,.0f} | {r['p50_ms']:.1f} "
              f"| {r['p99_ms']:.1f} | {r['errors']} | {cpu_ms:.2f} "
              f"| {r['rps'] / reference:.2f} |")
    print()
    print("Where a request's CPU goes, ms per request (rest = server CPU − model − encoding: "
          "HTTP, thread hand-offs, contention between concurrent requests):")
    print()
    print("| request | server CPU | `Recommender.recommend` | `to_dict` + JSON | rest |")
    print("|---|---:|---:|---:|---:|")
    for r, explain in ((results[1], True), (results[2], False)):
        server_ms = r["server_cpu_s"] / r["requests"] * 1e3 if r["requests"] else float("nan")
        ref = inproc[explain]
        rest = server_ms - ref["recommend_ms"] - ref["to_dict_json_ms"]
        print(f"| `{r['label']}` | {server_ms:.2f} | {ref['recommend_ms']:.2f} "
              f"| {ref['to_dict_json_ms']:.2f} | {rest:.2f} |")
    explained = results[1]
    verdict = "met" if explained["rps"] >= 300 and explained["errors"] == 0 else "MISSED"
    print()
    print(f"Target ≥ 300 explained recommendations/s with no errors: {verdict} "
          f"({explained['rps']:,.0f}/s, {explained['errors']} errors, "
          f"p99 {explained['p99_ms']:.1f} ms).")


if __name__ == "__main__":
    main()
