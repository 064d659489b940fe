"""Recommendation latency: an in-process top-10 for a new user with 10–30 ratings, on a model of
the Netflix-quarter shape (470,758 users × 4,499 movies, 24M ratings).

    python benchmarks/bench_recommend.py                        # uses /tmp/quarter-ds if present
    python benchmarks/bench_recommend.py --data DIR --run RUN   # a prepared dataset / trained run

Model: the ``seed`` preset (512-256-64) trained for ``--epochs`` (default 1) epoch with the
trainer API — the weights' quality does not change the cost. Without ``--data`` and without
``/tmp/quarter-ds`` the data are generated (``aerec data synth --preset netflix-quarter`` +
``aerec data prepare``, cached under ``bench-data/recommend``).

Requests: ``--requests`` (default 500) new users, each with 10–30 ratings of movies drawn by
popularity, stars 1–5; the same requests for every variant, after ``--warmup`` untimed ones.
Variants, all measured in this run:

``default``        ``Recommender.recommend(ratings)`` — explanations on (similar users over the
                   neighbour pool + leave-one-out attribution), default ranking;
``explain=False``  the same call without explanations;
``dense numpy``    the reference: a straightforward dense fold-in — the rating vector as a dense
                   ``(n_movies,)`` array through the network with NumPy matrix products, the
                   rated movies masked, a full ``argsort``; no explanations;
``known user``     ``recommend_for_user`` for random stored users (explanations on).

The variants take turns in blocks of 25 requests (rotating order), so load from other jobs on
the machine affects them alike while each block runs with its own data in the CPU caches.
Prints p50 / p99 / mean latency in milliseconds and a Markdown table for docs/benchmarks.md.

Threads: ``--threads`` (default 1) sets torch's and the BLAS libraries' threads for everything
in the run, the reference included. One request is a chain of small operations; splitting each
over two threads gains nothing and, on two cores shared with other work, costs several times
the latency (OpenMP threads waiting for a core), so a server should answer each request on one
thread and run two requests side by side instead.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def _early_threads() -> str:
    """``--threads`` from the command line, read before NumPy loads: OpenBLAS sizes its thread
    pool at import (two BLAS threads on two busy cores made the reference 3× slower)."""
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return "1"


for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = _early_threads()

import numpy as np  # noqa: E402  (after the thread settings)
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

from aerec.config import TrainConfig  # noqa: E402
from aerec.model.autoencoder import ACTIVATIONS  # noqa: E402
from aerec.recommend import Recommender  # noqa: E402

DEFAULT_DATA = Path("/tmp/quarter-ds")


def _aerec(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "aerec", *args], check=True, cwd=REPO)


def dataset(args: argparse.Namespace) -> Path:
    if args.data is not None:
        return args.data
    if (DEFAULT_DATA / "manifest.json").is_file():
        return DEFAULT_DATA
    work = REPO / "bench-data" / "recommend"
    raw, ds = work / "quarter-raw", work / "quarter-ds"
    if not (ds / "manifest.json").is_file():
        if not (raw / "combined_data_1.txt").is_file():
            _aerec("data", "synth", "--out", str(raw), "--preset", "netflix-quarter")
        _aerec("data", "prepare", str(raw / "combined_data_1.txt"), "--out", str(ds))
    return ds


def trained_run(args: argparse.Namespace, data: Path) -> tuple[Path, float]:
    run = args.run or (REPO / "bench-data" / "recommend" / f"quarter-seed-e{args.epochs}")
    if (run / "best.pt").is_file():
        return run, float("nan")
    from aerec.train import train

    began = time.perf_counter()
    train(data, run, TrainConfig(epochs=args.epochs, threads=args.threads))
    return run, time.perf_counter() - began


def make_requests(rec: Recommender, n: int, seed: int) -> list[dict[int, float]]:
    """``n`` new users: 10–30 distinct movies drawn by popularity, stars 1–5."""
    rng = np.random.default_rng(seed)
    p = rec.counts.astype(np.float64) + 1.0
    p /= p.sum()
    stars = np.array([1, 2, 3, 4, 5], dtype=np.float64)
    out = []
    for _ in range(n):
        size = int(rng.integers(10, 31))
        cols = rng.choice(rec.n_movies, size=size, replace=False, p=p)
        values = rng.choice(stars, size=size, p=[0.05, 0.1, 0.29, 0.34, 0.22])
        out.append({int(rec.movie_ids[c]): float(v) for c, v in zip(cols, values)})
    return out


class DenseReference:
    """The straightforward fold-in: dense input vector, NumPy matrix products, full sort."""

    def __init__(self, rec: Recommender) -> None:
        model = rec.model
        self.rec = rec
        self.w_in = model.input_weight.detach().numpy()  # (n_movies, w0)
        self.b_in = model.input_bias.detach().numpy()
        self.hidden = [(lin.weight.detach().numpy().T.copy(), lin.bias.detach().numpy())
                       for lin in model.hidden]
        self.w_out = model.output_weight.detach().numpy().T.copy()  # (w_last, n_movies)
        self.b_out = model.output_bias.detach().numpy()
        self.act = model.activation
        self.out_act = model.output_activation
        self.col = {int(m): i for i, m in enumerate(rec.movie_ids.tolist())}

    def _act(self, name: str, x: np.ndarray) -> np.ndarray:
        return ACTIVATIONS[name](torch.from_numpy(x)).numpy()

    def recommend(self, ratings: dict[int, float], k: int = 10) -> np.ndarray:
        x = np.zeros(len(self.b_out), dtype=np.float32)
        cols = np.array([self.col[m] for m in ratings])
        x[cols] = np.array(list(ratings.values()), dtype=np.float32)
        h = self._act(self.act, x @ self.w_in + self.b_in)
        for w, b in self.hidden:
            h = self._act(self.act, h @ w + b)
        out = self._act(self.out_act, h @ self.w_out + self.b_out)
        out[cols] = -np.inf
        return np.argsort(-out, kind="stable")[:k]


def timed(variants: dict, inputs: dict, warmup: int, block: int = 25) -> dict[str, np.ndarray]:
    """Latency in ms of every variant on its inputs. Variants take turns in blocks of
    ``block`` requests (rotating order): a block keeps its own data in the CPU caches, as a
    server answering a stream of requests does, while changing load on the machine still hits
    every variant alike."""
    names = list(variants)
    n = min(len(v) for v in inputs.values())
    for name in names:
        for i in range(warmup):
            variants[name](inputs[name][i])
    ms: dict[str, list[float]] = {name: [] for name in names}
    for b, start in enumerate(range(warmup, n, block)):
        shift = b % len(names)
        for name in names[shift:] + names[:shift]:
            for i in range(start, min(start + block, n)):
                began = time.perf_counter()
                variants[name](inputs[name][i])
                ms[name].append((time.perf_counter() - began) * 1000.0)
    return {name: np.asarray(v) for name, v in ms.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="prepared dataset (default /tmp/quarter-ds)")
    parser.add_argument("--run", type=Path, help="run directory to use or create")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and BLAS threads per request (default 1; see the docstring)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = dataset(args)
    run, train_seconds = trained_run(args, data)
    ckpt_mib = (run / "best.pt").stat().st_size / 2**20
    began = time.perf_counter()
    rec = Recommender.load(run)
    load_seconds = time.perf_counter() - began
    began = time.perf_counter()
    rec.warm()
    warm_seconds = time.perf_counter() - began
    pool = len(rec.neighbour_index() or [])

    requests = make_requests(rec, args.requests + args.warmup, args.seed)
    variants = {
        "default (explain=True)": lambda r: rec.recommend(r),
        "explain=False": lambda r: rec.recommend(r, explain=False),
    }
    # the dense reference re-implements the user-based network only (e.g. not `best`)
    dense_reference = hasattr(rec.model, "input_weight")
    agree = None
    if dense_reference:
        reference = DenseReference(rec)
        variants["dense numpy reference (no explanations)"] = lambda r: reference.recommend(r)
        # sanity: the reference ranks by predicted rating; same list as ranking="predicted"
        r0 = requests[0]
        ours = rec.recommend(r0, ranking="predicted", explain=False).movie_ids
        theirs = [int(rec.movie_ids[c]) for c in reference.recommend(r0)]
        agree = len(set(ours) & set(theirs))

    inputs = {name: requests for name in variants}
    rng = np.random.default_rng(args.seed + 1)
    if rec.checkpoint.ratings is not None:
        counts = rec.checkpoint.ratings.counts()
        users = rec.user_ids[rng.choice(np.flatnonzero(counts > 0), len(requests))]
        variants["known user (recommend_for_user)"] = lambda u: rec.recommend_for_user(int(u))
        inputs["known user (recommend_for_user)"] = [int(u) for u in users]
    results = timed(variants, inputs, args.warmup)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} CPUs, {args.threads} torch threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"Model: {run} ({rec.n_movies:,} movies, {rec.n_users:,} stored users, checkpoint "
          f"{ckpt_mib:.0f} MiB); training {train_seconds:.0f} s; load {load_seconds:.2f} s; "
          f"warm (title index + codes of {pool:,} pool users) {warm_seconds:.2f} s; peak RSS "
          f"{peak_mib:,.0f} MiB")
    if agree is not None:
        print(f"Reference check: {agree}/10 of the first request's top-10 agree between "
              "ranking='predicted' and the dense reference\n")
    ref = (np.percentile(results["dense numpy reference (no explanations)"], 50)
           if dense_reference else None)
    print(f"{args.requests} requests of 10–30 ratings (after {args.warmup} warm-up):\n")
    print("| call | p50 (ms) | p99 (ms) | mean (ms) | p50 vs dense reference |")
    print("|---|---:|---:|---:|---:|")
    for name, ms in results.items():
        p50, p99 = np.percentile(ms, [50, 99])
        ratio = f"{ref / p50:.2f}×" if ref is not None else "—"
        print(f"| {name} | {p50:.2f} | {p99:.2f} | {ms.mean():.2f} | {ratio} |")
    p99 = np.percentile(results["default (explain=True)"], 99)
    print(f"\nTarget p99 ≤ 10 ms for the default call: {'met' if p99 <= 10 else 'NOT met'} "
          f"({p99:.2f} ms)")


if __name__ == "__main__":
    main()
