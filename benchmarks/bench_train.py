"""Training benchmark: aerec's sparse trainer against a straightforward dense PyTorch
implementation of the same network, measured in the same run.

    python benchmarks/bench_train.py          # Netflix-quarter shape (~10 GB peak, minutes)
    python benchmarks/bench_train.py --users 20000 --movies 2000 --ratings 1000000 --batches 100

Data: a synthetic Netflix-format dataset of the requested shape (``aerec.data.synth``; default
the first quarter of the Netflix Prize data: 470,758 users × 4,499 movies, 24,053,764 ratings),
prepared with ``aerec.data.prepare``, split 80/20 + 10 % validation as the trainer does. Generated
files are cached under ``bench-data/`` (``--data`` reuses an existing synthetic folder, e.g.
``/tmp/synth-quarter``).

Each contender runs in its own subprocess (``--threads`` torch threads, default 2); the parent
reads that child's peak RSS from the kernel's resource usage for the child (``os.wait4``, the
per-child form of ``getrusage(RUSAGE_CHILDREN)``):

``sparse``  aerec's trainer with the ``seed`` preset (the published configuration): one full
            epoch when its estimate fits in ``--full-epoch-seconds``, else ``--batches`` batches
            timed and extrapolated to an epoch; plus a full validation pass.
``dense``   the users × movies float32 matrix in memory (8.5 GB at the quarter shape), dense user
            rows from a ``torch.utils.data.DataLoader`` (batch 128, shuffled), full forward over
            all movies, MSE masked to observed ratings, ``torch.optim.Adam``; ``--batches``
            batches timed, then a full epoch when the estimate fits in
            ``--full-epoch-seconds`` (else the extrapolation); validation: dense forwards of every
            user's training row (targets densified per batch), a full pass when it fits too.

The contenders alternate for ``--rounds`` rounds (sparse, dense, sparse, dense, …) so that both
see the same machine — on a shared 2-core VM the speed of either moves by ±25 % between
minutes — and the verdicts use the median ratio.

Prints the speed ratio (target ≥ 5×), the memory ratio (target ≤ 1/4) and a Markdown table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
QUARTER = {"users": 470_758, "movies": 4_499, "ratings": 24_053_764}
DENSE_BATCH = 128


# --------------------------------------------------------------------------------------------
# data


def _synth_dir(args: argparse.Namespace) -> Path:
    """A synthetic dataset of the requested shape: ``--data``, or generated under bench-data/."""
    shape = {"users": args.users, "movies": args.movies, "ratings": args.ratings}
    if args.data is not None:
        params_path = args.data / "synth.json"
        if params_path.is_file():
            params = json.loads(params_path.read_text())
            found = {key: params.get(key) for key in shape}
            if found != shape:
                sys.exit(f"{args.data} holds shape {found}, not the requested {shape}")
        return args.data
    out = REPO / "bench-data" / f"synth-{args.users}x{args.movies}x{args.ratings}-s{args.seed}"
    if not (out / "combined_data_1.txt").is_file():
        from aerec.data.synth import synthesize

        print(f"generating {out} …", flush=True)
        synthesize(out, seed=args.seed, overwrite=True, **shape)
    return out


def _prepared_dir(synth: Path) -> Path:
    """The prepared dataset for a synthetic folder (cached beside the other benchmark data)."""
    out = REPO / "bench-data" / f"prepared-{synth.name}"
    manifest = out / "manifest.json"
    source = synth / "combined_data_1.txt"
    if not manifest.is_file() or manifest.stat().st_mtime < source.stat().st_mtime:
        from aerec.data.prepare import prepare_paths

        print(f"preparing {out} …", flush=True)
        prepare_paths([synth], out, overwrite=True)
    return out


# --------------------------------------------------------------------------------------------
# workers (each runs in its own subprocess)


def _splits(prepared: Path) -> tuple:
    from aerec.data.splits import make_splits
    from aerec.data.store import load_dataset

    ds = load_dataset(prepared)
    return ds, make_splits(ds, "random", test_fraction=0.2, validation_fraction=0.1, seed=0)


def dense_worker(
    prepared: Path, batches: int, warmup: int, full_epoch_seconds: float
) -> dict:
    """Time the straightforward dense implementation: ``batches`` timed batches, then a full
    epoch when its estimate fits in ``full_epoch_seconds`` (else the estimate), then a full
    validation pass (or, past that budget too, one extrapolated from ``batches`` batches)."""
    import numpy as np
    import torch
    began = time.perf_counter()
    _, splits = _splits(prepared)
    train, validation = splits.train, splits.validation
    n_users, n_movies = train.shape
    torch.manual_seed(0)

    dense = torch.zeros(n_users, n_movies, dtype=torch.float32)  # the whole matrix, in memory
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(train.indptr))
    dense[torch.from_numpy(rows), torch.from_numpy(train.indices.astype(np.int64))] = (
        torch.from_numpy(train.data.astype(np.float32))
    )
    del rows
    setup_seconds = time.perf_counter() - began

    model = dense_network(n_movies)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-5)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(dense), batch_size=DENSE_BATCH, shuffle=True
    )

    def masked_mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mask = (target != 0).float()
        return ((out - target) ** 2 * mask).sum() / mask.sum().clamp(min=1.0)

    def train_step(x: torch.Tensor) -> float:
        optimiser.zero_grad(set_to_none=True)
        loss = masked_mse(model(x), x)
        loss.backward()
        optimiser.step()
        return loss.item()

    model.train()
    timed, seconds = 0, 0.0
    it = iter(loader)
    for i in range(warmup + batches):
        t0 = time.perf_counter()
        try:
            (x,) = next(it)
        except StopIteration:
            it = iter(loader)
            (x,) = next(it)
        train_step(x)
        if i >= warmup:
            seconds += time.perf_counter() - t0
            timed += 1
    per_batch = seconds / max(timed, 1)
    epoch_batches = math.ceil(n_users / DENSE_BATCH)
    epoch_seconds = per_batch * epoch_batches
    measured = f"extrapolated from {timed} batches"
    if epoch_seconds <= full_epoch_seconds:
        t0 = time.perf_counter()
        for (x,) in loader:
            train_step(x)
        epoch_seconds = time.perf_counter() - t0
        measured = "full epoch"
        per_batch = epoch_seconds / epoch_batches

    # Validation: dense forward of each user's training row, error at validation entries.
    model.eval()
    val_batches = math.ceil(n_users / DENSE_BATCH)

    def validate(count: int) -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            for b in range(count):
                lo, hi = b * DENSE_BATCH, min((b + 1) * DENSE_BATCH, n_users)
                target = torch.from_numpy(validation[lo:hi].toarray())
                out = model(dense[lo:hi])
                mask = target != 0
                _ = float(((out - target) ** 2)[mask].sum())
        return time.perf_counter() - t0

    sample = min(warmup + batches, val_batches)
    validation_seconds = validate(sample) * val_batches / sample
    validation_measured = f"extrapolated from {sample} batches"
    if epoch_seconds + validation_seconds <= full_epoch_seconds and sample < val_batches:
        validation_seconds = validate(val_batches)
        validation_measured = "full pass"
    return {
        "setup_seconds": setup_seconds,
        "batches_timed": timed,
        "seconds_per_batch": per_batch,
        "epoch_batches": epoch_batches,
        "epoch_seconds": epoch_seconds,
        "epoch_measured": measured,
        "validation_seconds": validation_seconds,
        "validation_measured": validation_measured,
        "dense_matrix_gib": n_users * n_movies * 4 / 2**30,
        "users": n_users,
        "movies": n_movies,
        "train_ratings": int(train.nnz),
    }


def dense_network(
    n_movies: int, layers: tuple[int, ...] = (512, 256, 64), p: float = 0.1
) -> Any:
    """The published network as plain dense layers — the function ``aerec.model.AutoEncoder``
    computes: ReLU after every layer (the output too), dropout after each hidden layer except
    the 64-unit code layer."""
    from torch import nn

    widths = [n_movies, *layers, *layers[-2::-1], n_movies]
    code = len(layers)  # index (into widths) of the code layer
    modules: list = []
    for i, (w_in, w_out) in enumerate(itertools.pairwise(widths), start=1):
        modules += [nn.Linear(w_in, w_out), nn.ReLU()]
        if i < len(widths) - 1 and i != code and p > 0:
            modules.append(nn.Dropout(p))
    return nn.Sequential(*modules)


def sparse_worker(prepared: Path, batches: int, warmup: int, full_epoch_seconds: float) -> dict:
    """Time aerec's sparse trainer (``seed`` preset): batches first, then a full epoch when its
    estimate fits in ``full_epoch_seconds``, then a full validation pass."""
    from aerec.config import resolve_config
    from aerec.train.trainer import Trainer, build_model

    began = time.perf_counter()
    ds, splits = _splits(prepared)
    config = resolve_config("seed")
    scale = ds.scale
    model = build_model(config, ds.n_movies)
    stamps: list[float] = []

    class Enough(Exception):
        pass

    def on_batch(event: object) -> None:
        stamps.append(time.perf_counter())
        if len(stamps) > warmup + batches:
            raise Enough

    trainer = Trainer(
        model, config, splits.train, splits.validation,
        clip=(scale.minimum, scale.maximum), callback=on_batch,
    )
    setup_seconds = time.perf_counter() - began
    epoch_batches = trainer.batches_per_epoch
    try:
        trainer.train_epoch()
    except Enough:
        pass
    timed = len(stamps) - 1 - warmup
    per_batch = (stamps[-1] - stamps[warmup]) / max(timed, 1)
    estimate = per_batch * epoch_batches
    if estimate <= full_epoch_seconds:
        trainer.callback = None
        t0 = time.perf_counter()
        trainer.train_epoch()
        epoch_seconds = time.perf_counter() - t0
        measured = "full epoch"
        per_batch = epoch_seconds / epoch_batches
    else:
        epoch_seconds = estimate
        measured = f"extrapolated from {timed} batches"
    t0 = time.perf_counter()
    _, val_rmse = trainer.validate()
    validation_seconds = time.perf_counter() - t0
    return {
        "setup_seconds": setup_seconds,
        "batches_timed": timed,
        "seconds_per_batch": per_batch,
        "epoch_batches": epoch_batches,
        "epoch_seconds": epoch_seconds,
        "epoch_measured": measured,
        "validation_seconds": validation_seconds,
        "validation_measured": "full pass",
        "val_rmse": val_rmse,
        "users": ds.n_users,
        "movies": ds.n_movies,
        "train_ratings": int(splits.train.nnz),
    }


# --------------------------------------------------------------------------------------------
# orchestration


def run_worker(kind: str, args: argparse.Namespace, prepared: Path) -> dict:
    """Run one worker in a fresh subprocess; add its peak RSS (MiB) and wall time."""
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--worker", kind,
        "--prepared", str(prepared), "--batches", str(args.batches), "--warmup", str(args.warmup),
        "--threads", str(args.threads), "--full-epoch-seconds", str(args.full_epoch_seconds),
    ]
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(args.threads)
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    output = proc.stdout.read()
    # wait4 returns the resource usage of exactly this child: what getrusage(RUSAGE_CHILDREN)
    # would report for it alone (ru_maxrss in KiB on Linux).
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{kind} worker failed with status {proc.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    result["wall_seconds"] = time.perf_counter() - began
    return result


def _fmt_seconds(s: float) -> str:
    return f"{s:,.1f} s" if s >= 1 else f"{s * 1000:,.1f} ms"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def report(args: argparse.Namespace, rounds: list[tuple[dict, dict]]) -> str:
    """The Markdown section for docs/benchmarks.md: one row per round (sparse then dense, in
    separate processes, alternating so that both see the same machine), verdicts on the
    medians."""
    shape = (args.users, args.movies, args.ratings)
    cmd = "python benchmarks/bench_train.py"
    if shape != tuple(QUARTER.values()):
        cmd += f" --users {args.users} --movies {args.movies} --ratings {args.ratings}"
    cmd += f" --batches {args.batches} --threads {args.threads} --rounds {args.rounds}"
    sec = _fmt_seconds
    title = (
        f"### Training speed and memory: {args.users:,} users × {args.movies:,} movies, "
        f"{args.ratings:,} ratings (synthetic)"
    )
    machine = (
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch threads {args.threads}, "
        f"Python {platform.python_version()}; 1-minute load average before the run "
        f"{args.load_before:.2f}."
    )
    lines = [
        title, "", f"Command: `{cmd}`  ", machine, "",
        _row("round", "sparse per batch", "dense per batch", "sparse epoch", "dense epoch",
             "epoch ratio", "sparse val.", "dense val.", "epoch + val. ratio",
             "peak RSS sparse / dense"),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    epoch_ratios, total_ratios, memory_ratios = [], [], []
    for number, (sparse, dense) in enumerate(rounds, start=1):
        speed = dense["epoch_seconds"] / sparse["epoch_seconds"]
        total = (dense["epoch_seconds"] + dense["validation_seconds"]) / (
            sparse["epoch_seconds"] + sparse["validation_seconds"]
        )
        memory = sparse["peak_rss_mib"] / dense["peak_rss_mib"]
        epoch_ratios.append(speed)
        total_ratios.append(total)
        memory_ratios.append(memory)
        lines.append(_row(
            str(number), sec(sparse["seconds_per_batch"]), sec(dense["seconds_per_batch"]),
            sec(sparse["epoch_seconds"]), sec(dense["epoch_seconds"]), f"{speed:.1f}×",
            sec(sparse["validation_seconds"]), sec(dense["validation_seconds"]),
            f"{total:.1f}×",
            f"{sparse['peak_rss_mib']:,.0f} / {dense['peak_rss_mib']:,.0f} MiB = {memory:.3f}",
        ))
    speed, total, memory = _median(epoch_ratios), _median(total_ratios), max(memory_ratios)
    sparse, dense = rounds[-1]
    lines += [
        "",
        f"Median speed ratio (dense / sparse), training epoch: **{speed:.1f}×**; epoch + "
        f"validation pass: **{total:.1f}×** (target ≥ 5×: "
        f"{'met' if speed >= 5 else 'met with validation' if total >= 5 else 'NOT met'}). "
        f"Memory ratio (sparse / dense peak RSS), worst round: **{memory:.3f}** (target ≤ 0.25: "
        f"{'met' if memory <= 0.25 else 'NOT met'}).",
        f"Sparse epoch: {sparse['epoch_measured']} ({sparse['epoch_batches']:,} batches), "
        f"validation: {sparse['validation_measured']}; dense epoch: {dense['epoch_measured']} "
        f"({dense['epoch_batches']:,} batches), validation: {dense['validation_measured']}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--users", type=int, default=QUARTER["users"])
    p.add_argument("--movies", type=int, default=QUARTER["movies"])
    p.add_argument("--ratings", type=int, default=QUARTER["ratings"])
    p.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    p.add_argument("--data", type=Path, help="existing synthetic folder of the requested shape")
    p.add_argument("--batches", type=int, default=300, help="timed batches (after warm-up)")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    p.add_argument("--threads", type=int, default=2, help="torch threads per contender")
    p.add_argument(
        "--full-epoch-seconds", type=float, default=300.0,
        help="run a contender's full epoch (and full validation) when its estimate is below this",
    )
    p.add_argument("--rounds", type=int, default=2, help="alternating sparse/dense rounds")
    p.add_argument("--only", choices=["sparse", "dense"], help="run one contender")
    p.add_argument("--out", type=Path, help="also write the Markdown table here")
    p.add_argument("--worker", choices=["sparse", "dense"], help=argparse.SUPPRESS)
    p.add_argument("--prepared", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker is not None:
        import torch

        torch.set_num_threads(args.threads)
        if args.worker == "dense":
            result = dense_worker(
                args.prepared, args.batches, args.warmup, args.full_epoch_seconds
            )
        else:
            result = sparse_worker(
                args.prepared, args.batches, args.warmup, args.full_epoch_seconds
            )
        print(json.dumps(result), flush=True)
        return

    if args.data is None and (args.users, args.movies, args.ratings) == tuple(QUARTER.values()):
        default = Path("/tmp/synth-quarter")
        if (default / "combined_data_1.txt").is_file():
            args.data = default
    prepared = _prepared_dir(_synth_dir(args))
    args.load_before = os.getloadavg()[0]
    kinds = [k for k in ("sparse", "dense") if args.only in (None, k)]
    rounds = []
    for number in range(1, args.rounds + 1):
        results = {}
        for kind in kinds:
            print(f"round {number}: running {kind} …", flush=True)
            results[kind] = run_worker(kind, args, prepared)
            print(json.dumps(results[kind], indent=2), flush=True)
        if len(results) == 2:
            rounds.append((results["sparse"], results["dense"]))
    if rounds:
        table = report(args, rounds)
        print()
        print(table)
        if args.out is not None:
            args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
