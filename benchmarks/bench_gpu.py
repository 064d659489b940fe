"""GPU timings (``--device cuda``): seconds per epoch of the published autoencoder and per Gibbs
sweep of the robust Bayesian factorisation, on a GPU against this machine's CPU in the same run.

    python benchmarks/bench_gpu.py --shape quarter --out results.json
    python benchmarks/bench_gpu.py --shape netflix --sweeps 3 --out results.json

``--shape`` generates the data (``quarter``: 470,758 × 4,499, 24M ratings; ``netflix``:
480,189 × 17,770, 100M ratings; ``100k``: 100,000 × 4,499, 5.1M) with ``aerec data synth``'s
generator and prepares it in a temporary folder; the split is the usual seeded 80/20 with 10 %
of the training ratings for validation. Needs a CUDA GPU for the GPU columns.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from aerec.config import resolve_config  # noqa: E402
from aerec.data.prepare import prepare_paths  # noqa: E402
from aerec.data.splits import make_splits  # noqa: E402
from aerec.data.store import load_dataset  # noqa: E402
from aerec.data.synth import synthesize  # noqa: E402
from aerec.train.bayesian import GibbsSampler  # noqa: E402
from aerec.train.trainer import Trainer, build_model  # noqa: E402

SHAPES = {
    "100k": (100_000, 4_499, 5_100_000),
    "quarter": (470_758, 4_499, 24_053_764),
    "netflix": (480_189, 17_770, 100_480_507),
}


def time_sweeps(train, device: str, sweeps: int, factors: int) -> list[float]:
    sampler = GibbsSampler(train, factors, 2.0, 0, noise_scales=5.0, init_scale=0.3,
                           device=device)
    seconds = []
    for _ in range(sweeps):
        start = time.perf_counter()
        sampler.sweep()
        if device != "cpu":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds


def time_epoch(ds, splits, device: str) -> float:
    config = resolve_config("seed", overrides={"device": device})
    clip = (ds.scale.minimum, ds.scale.maximum)
    model = build_model(config, ds.n_movies, ds.n_users, clip)
    trainer = Trainer(model, config, splits.train, splits.validation, clip=clip,
                      device=torch.device(device))
    start = time.perf_counter()
    trainer.train_epoch()
    trainer.validate()
    if device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=SHAPES, default="quarter")
    parser.add_argument("--sweeps", type=int, default=4)
    parser.add_argument("--factors", type=int, default=16)
    parser.add_argument("--cpu", action="store_true", help="also time the CPU")
    parser.add_argument("--epoch", action="store_true", help="also time a seed epoch")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    users, movies, ratings = SHAPES[args.shape]
    out: dict = {"shape": args.shape, "users": users, "movies": movies, "ratings": ratings,
                 "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                 "cpu_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        synthesize(Path(tmp) / "raw", users=users, movies=movies, ratings=ratings)
        out["synth_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        prepare_paths([Path(tmp) / "raw"], Path(tmp) / "ds", overwrite=True)
        out["prepare_seconds"] = time.perf_counter() - start
        ds = load_dataset(Path(tmp) / "ds")
        splits = make_splits(ds, "auto", test_fraction=0.2, validation_fraction=0.1, seed=0)
        print(json.dumps(out), flush=True)
        devices = (["cuda"] if torch.cuda.is_available() else []) + (["cpu"] if args.cpu else [])
        for device in devices:
            sweeps = time_sweeps(splits.train, device, args.sweeps, args.factors)
            out[f"sweep_seconds_{device}"] = sweeps
            print(device, "sweeps", [round(s, 2) for s in sweeps], flush=True)
            if args.epoch:
                out[f"seed_epoch_seconds_{device}"] = time_epoch(ds, splits, device)
                print(device, "seed epoch", out[f"seed_epoch_seconds_{device}"], flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
