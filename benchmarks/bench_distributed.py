"""Data-parallel training: 1 process against N processes (torchrun, gloo) on one machine.

    python benchmarks/bench_distributed.py DATASET [--preset seed] [--epochs 2] [--procs 2]

Trains the same configuration (``--threads`` per process: the cores are shared) once with
``torchrun --nproc_per_node 1`` and once with ``--procs`` processes, in the same run, and prints
per-epoch seconds (the first epoch excluded when there are several: start-up), the validation
RMSE reached, and what one optimiser step all-reduces (the dense gradient of every parameter,
float32). Results go to docs/distributed.md by hand with the command line.
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(dataset: Path, procs: int, args: argparse.Namespace, out: Path) -> dict:
    threads = max(1, (os.cpu_count() or 1) // procs) if args.threads is None else args.threads
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node",
        str(procs), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_port()}",
        "-m", "aerec", "train", str(dataset), "--preset", args.preset, "--epochs",
        str(args.epochs), "--threads", str(threads), "--out", str(out),
    ]
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"{procs} process(es) failed:\n{done.stderr[-2000:]}")
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    seconds = [float(r["seconds"]) for r in rows]
    timed = seconds[1:] if len(seconds) > 1 else seconds
    return {
        "procs": procs, "threads": threads, "wall": wall,
        "epoch_seconds": sum(timed) / len(timed),
        "val_rmse": min(float(r["val_rmse"]) for r in rows),
    }


ALLREDUCE = """
import time, torch, torch.distributed as dist
dist.init_process_group("gloo")
x = torch.ones({n})
for _ in range(2):
    dist.all_reduce(x)
dist.barrier()
t = time.perf_counter()
for _ in range({reps}):
    dist.all_reduce(x)
dist.barrier()
if dist.get_rank() == 0:
    print((time.perf_counter() - t) / {reps})
"""


def allreduce_seconds(n_bytes: int, procs: int, reps: int = 10) -> float:
    """Seconds of one gloo all-reduce of ``n_bytes`` (float32) among ``procs`` local
    processes (loopback)."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(ALLREDUCE.format(n=n_bytes // 4, reps=reps))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
             "--nproc_per_node", str(procs), "--rdzv-backend", "c10d", "--rdzv-endpoint",
             f"127.0.0.1:{_port()}", f.name],
            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    finally:
        os.unlink(f.name)
    return float(done.stdout.strip().splitlines()[-1])


def step_bytes(dataset: Path, preset: str) -> int:
    """Bytes one optimiser step all-reduces: every parameter's gradient, float32."""
    from aerec.config import PRESETS
    from aerec.data.store import load_dataset
    from aerec.train.trainer import build_model

    ds = load_dataset(dataset)
    model = build_model(PRESETS[preset], ds.n_movies, ds.n_users)
    return 4 * sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--preset", default="seed")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: cores / processes)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        one = run(args.dataset, 1, args, Path(tmp) / "one")
        many = run(args.dataset, args.procs, args, Path(tmp) / "many")
    size = step_bytes(args.dataset, args.preset)
    reduce = allreduce_seconds(size, args.procs)
    print(f"{'processes':>9} {'threads':>7} {'s/epoch':>8} {'wall s':>7} {'val RMSE':>8}")
    for r in (one, many):
        print(f"{r['procs']:>9} {r['threads']:>7} {r['epoch_seconds']:>8.1f} {r['wall']:>7.1f} "
              f"{r['val_rmse']:>8.4f}")
    print(f"{args.procs} processes take {many['epoch_seconds'] / one['epoch_seconds']:.2f}× the "
          f"time per epoch; each step all-reduces {size / 1e6:.1f} MB of gradients, "
          f"{reduce * 1e3:.1f} ms on loopback ({2 * size / reduce / 1e9:.2f} GB/s bus)")


if __name__ == "__main__":
    main()
