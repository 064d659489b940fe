"""Data-parallel training: 1 process against N processes (torchrun, gloo) on one machine.

    python benchmarks/bench_distributed.py DATASET [--preset seed] [--epochs 2] [--procs 2]
    python benchmarks/bench_distributed.py DATASET --equivalence [--preset seed] [--epochs N]

Trains the same configuration (``--threads`` per process: the cores are shared) once with
``torchrun --nproc_per_node 1`` and once with ``--procs`` processes, in the same run, and prints
per-epoch seconds (the first epoch excluded when there are several: start-up), the validation
RMSE reached, and what one optimiser step exchanges: the dense gradients of the small
parameters (all-reduced) and the row records of the two ``n_movies × width`` matrices
(all-gathered), from the mean batch — beside what the dense all-reduce of every gradient would
move, timed on loopback. Results go to docs/distributed.md by hand with the command line.

``--equivalence``: the test RMSE of the ``--procs`` job (seed 0) against 1-process runs over
seeds 0, 1, 2 (the preset's epochs unless ``--epochs``): whether it lies within their spread.
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


def run(dataset: Path, procs: int, args: argparse.Namespace, out: Path,
        seed: int | None = None) -> dict:
    threads = max(1, (os.cpu_count() or 1) // procs) if args.threads is None else args.threads
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node",
        str(procs), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_port()}",
        "-m", "aerec", "train", str(dataset), "--preset", args.preset,
        "--threads", str(threads), "--out", str(out),
    ]
    if args.epochs is not None:
        command += ["--epochs", str(args.epochs)]
    if seed is not None:
        command += ["--seed", str(seed)]
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


def step_bytes(dataset: Path, preset: str, procs: int) -> tuple[int, int, int]:
    """Bytes of one optimiser step: ``(dense all-reduce of every gradient, the small
    parameters' all-reduce, the row records each rank receives)``, float32, the records from
    the mean batch (``batch_size`` rows of the mean training row length)."""
    from aerec.config import PRESETS
    from aerec.data.store import load_dataset
    from aerec.train.trainer import build_model

    ds = load_dataset(dataset)
    config = PRESETS[preset]
    model = build_model(config, ds.n_movies, ds.n_users)
    rows_of = ds.n_users if config.orientation == "item" else ds.n_movies
    row_weights = [p for p in model.parameters() if p.dim() == 2 and p.shape[0] == rows_of]
    every = 4 * sum(p.numel() for p in model.parameters())
    small = every - 4 * sum(p.numel() for p in row_weights)
    rows = ds.n_users if config.orientation == "user" else ds.n_movies
    per_rank_rows = config.batch_size / procs
    per_rank_nnz = per_rank_rows * ds.n_ratings / rows
    # per weight and rank: a (rows, width) source and three numbers per rating
    record = sum(4 * (per_rank_rows * p.shape[1] + 3 * per_rank_nnz) for p in row_weights)
    return every, small, int(record * (procs - 1))


def test_rmse(run_dir: Path) -> float:
    from aerec.evaluate import evaluate_run

    return next(r.rmse for r in evaluate_run(run_dir).results if r.kind == "model")


def equivalence(args: argparse.Namespace) -> None:
    """1-process runs over 3 seeds against one ``--procs`` job: test RMSE and epoch time."""
    with tempfile.TemporaryDirectory() as tmp:
        single = []
        for seed in range(3):
            done = run(args.dataset, 1, args, Path(tmp) / f"one-{seed}", seed=seed)
            single.append((test_rmse(Path(tmp) / f"one-{seed}"), done))
        many = run(args.dataset, args.procs, args, Path(tmp) / "many", seed=0)
        many_rmse = test_rmse(Path(tmp) / "many")
    print(f"{'run':>14} {'s/epoch':>8} {'test RMSE':>9}")
    for seed, (rmse, done) in enumerate(single):
        print(f"{'1 proc seed ' + str(seed):>14} {done['epoch_seconds']:>8.1f} {rmse:>9.4f}")
    print(f"{str(args.procs) + ' procs seed 0':>14} {many['epoch_seconds']:>8.1f} "
          f"{many_rmse:>9.4f}")
    low, high = min(r for r, _ in single), max(r for r, _ in single)
    inside = low <= many_rmse <= high
    print(f"1-process spread over 3 seeds: {low:.4f} … {high:.4f} ({high - low:.4f}); the "
          f"{args.procs}-process job is {'inside' if inside else 'outside'} it "
          f"({many_rmse - (low + high) / 2:+.4f} from its middle)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--preset", default="seed")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs (default: 2, or the preset's with --equivalence)")
    parser.add_argument("--equivalence", action="store_true",
                        help="test RMSE of the job against 1-process runs over 3 seeds")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: cores / processes)")
    args = parser.parse_args(argv)
    if args.equivalence:
        equivalence(args)
        return
    if args.epochs is None:
        args.epochs = 2
    with tempfile.TemporaryDirectory() as tmp:
        one = run(args.dataset, 1, args, Path(tmp) / "one")
        many = run(args.dataset, args.procs, args, Path(tmp) / "many")
    every, small, records = step_bytes(args.dataset, args.preset, args.procs)
    reduce = allreduce_seconds(every, args.procs)
    reduce_small = allreduce_seconds(small, args.procs)
    print(f"{'processes':>9} {'threads':>7} {'s/epoch':>8} {'wall s':>7} {'val RMSE':>8}")
    for r in (one, many):
        print(f"{r['procs']:>9} {r['threads']:>7} {r['epoch_seconds']:>8.1f} {r['wall']:>7.1f} "
              f"{r['val_rmse']:>8.4f}")
    print(f"{args.procs} processes take {many['epoch_seconds'] / one['epoch_seconds']:.2f}× the "
          f"time per epoch. A step all-reduces {small / 1e6:.2f} MB of small gradients "
          f"({reduce_small * 1e3:.1f} ms on loopback) and each rank receives "
          f"{records / 1e6:.2f} MB of row records (mean batch); the dense all-reduce of every "
          f"gradient would be {every / 1e6:.1f} MB, {reduce * 1e3:.1f} ms on loopback "
          f"({2 * every / reduce / 1e9:.2f} GB/s bus)")

if __name__ == "__main__":
    main()
