"""Bayesian MF chains with NumPy's BLAS on one thread (``aerec.system.serial_blas``) against
the same chain with BLAS on every core, in the same run.

    python benchmarks/bench_gibbs_threads.py [DATASET] [--preset bayesian-mf] [--sweeps N]

DATASET is a prepared dataset (default: MovieLens 100K u1, prepared from
``../shared/data/ml-100k`` into a temporary folder). Each variant trains the preset (its own
sweeps unless ``--sweeps``) with ``aerec.train.train`` on all cores; the runs alternate
(reference, guarded, reference, guarded) so a change in the machine's load hits both. Prints
seconds per run and the validation RMSE of each (the chains must be identical: the guard
changes threads, not arithmetic). Results go to docs/benchmarks.md by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from aerec.config import PRESETS  # noqa: E402
from aerec.train import bayesian, train  # noqa: E402


def _u1(work: Path) -> Path:
    from aerec.data.prepare import prepare_paths

    source = REPO.parent / "shared" / "data" / "ml-100k"
    out = work / "u1"
    prepare_paths([source / "u1.base"], out, test=source / "u1.test", overwrite=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", type=Path, nargs="?")
    parser.add_argument("--preset", default="bayesian-mf")
    parser.add_argument("--sweeps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    config = PRESETS[args.preset]
    if args.sweeps is not None:
        config = config.replace(epochs=args.sweeps, burn_in=min(config.burn_in, args.sweeps // 2))
    guard = bayesian.serial_blas
    timings: dict[str, list[float]] = {"BLAS on every core": [], "BLAS on one thread": []}
    rmse: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or _u1(Path(tmp))
        for repeat in range(args.repeats):
            for name in timings:
                bayesian.serial_blas = (guard if name == "BLAS on one thread"
                                        else contextlib.nullcontext)
                started = time.perf_counter()
                result = train(dataset, Path(tmp) / f"{name}-{repeat}".replace(" ", "-"),
                               config)
                timings[name].append(time.perf_counter() - started)
                rmse[name] = result.best_val_rmse
        bayesian.serial_blas = guard
    print(f"{args.preset} on {dataset if args.dataset else 'ml-100k u1'}, "
          f"{config.epochs} sweeps")
    for name, seconds in timings.items():
        print(f"  {name:<20} {min(seconds):6.1f} s (best of {len(seconds)}; all: "
              f"{', '.join(f'{s:.1f}' for s in seconds)})  validation RMSE {rmse[name]:.4f}")
    reference, guarded = (min(v) for v in timings.values())
    print(f"  one-thread BLAS takes {guarded / reference:.2f}× the reference's time")


if __name__ == "__main__":
    main()
