"""Latency of one ``aerec recommend`` command, start to exit, against ``python -c "import
torch"`` (the floor any such command pays) and, optionally, an older source tree, measured in
the same run.

    python benchmarks/bench_cli_recommend.py RUN
    git archive HEAD src | tar -x -C /tmp/before      # e.g. the tree before a change
    python benchmarks/bench_cli_recommend.py RUN --baseline-src /tmp/before/src --repeat 5

Each variant is a fresh process (``python -m aerec recommend RUN --rate …  --k 10``, with and
without ``--explain``); the variants take turns, ``--repeat`` rounds, so load from other jobs
affects them alike. ``--rate`` defaults to the titles of the run's three most-rated movies
(typed in lower case, so the title index is used). ``cold`` is the first call after the
similar-user index beside the checkpoint is deleted (built and saved again); every other call
finds it. Prints the median and best wall-clock seconds and the median CPU seconds (user +
system) per variant.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of one child process; it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, cwd=REPO)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--rate", action="append", help="MOVIE=STARS (repeatable)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline-src", type=Path, help="an older tree's src/ to compare")
    args = parser.parse_args(argv)

    from aerec.recommend import Recommender
    from aerec.recommend.index_cache import cache_path

    rec = Recommender.load(args.run, cache_index=False)
    if not args.rate:
        top = rec.counts.argsort()[::-1][:3]
        args.rate = [f"{rec.catalogue.label(int(c)).lower()}={5 - i}" for i, c in enumerate(top)]
    command = ["-m", "aerec", "recommend", str(args.run), "--k", "10"]
    for r in args.rate:
        command += ["--rate", r]
    here = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    variants: dict[str, tuple[list[str], dict[str, str]]] = {
        "import torch (floor)": ([sys.executable, "-c", "import torch"], here),
        "aerec recommend": ([sys.executable, *command], here),
        "aerec recommend --explain": ([sys.executable, *command, "--explain"], here),
    }
    if args.baseline_src is not None:
        before = {**os.environ, "PYTHONPATH": str(args.baseline_src.resolve())}
        variants["baseline: aerec recommend"] = ([sys.executable, *command], before)
        variants["baseline: --explain"] = ([sys.executable, *command, "--explain"], before)
    print(f"{args.run}: {rec.n_users:,} users × {rec.n_movies:,} movies "
          f"({type(rec.model).__name__}); --rate {' --rate '.join(args.rate)}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

    index = cache_path(rec.path)
    index.unlink(missing_ok=True)
    cold = timed(*variants["aerec recommend"])
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for round_ in range(args.repeat):
        names = list(variants)
        names = names[round_ % len(names):] + names[: round_ % len(names)]
        for name in names:
            results[name].append(timed(*variants[name]))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print()
    print("| command | median wall (s) | best wall (s) | median CPU (s) |")
    print("|---|---:|---:|---:|")
    print(f"| aerec recommend, cold (index built and saved) | {cold[0]:.2f} | {cold[0]:.2f} | "
          f"{cold[1]:.2f} |")
    for name, runs in results.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(f"| {name} | {statistics.median(walls):.2f} | {min(walls):.2f} | "
              f"{statistics.median(cpus):.2f} |")


if __name__ == "__main__":
    main()
