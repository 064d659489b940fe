"""Prepare and load benchmark on the Netflix-quarter shape.

    python benchmarks/bench_prepare.py [--file combined_data_1.txt] [--ratings N] [--out F.md]

Measured in the same run, each step in its own subprocess (peak RSS = that process's VmHWM):

* ``aerec data prepare`` of the file (parse, id maps, CSR, manifest with SHA-256, atomic write):
  wall time and peak memory (target ≤ 3 GB);
* loading the prepared dataset (``load_dataset`` + building the float32 CSR ``matrix``) against
  the reference of reading the raw file again with ``read_combined`` (target ≤ 1 s).

Without ``--file`` the Netflix-quarter shape is generated with ``aerec data synth`` (reused
from ``--workdir`` when present).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

QUARTER = {"users": 470_758, "movies": 4_499, "ratings": 24_053_764}


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(step: str, src: Path, dataset: Path) -> dict:
    start = time.perf_counter()
    if step == "prepare":
        from aerec.data.prepare import prepare_paths

        report = prepare_paths([src], dataset, overwrite=True)
        extra = {"users": report.users, "movies": report.movies, "ratings": report.ratings}
    elif step == "load":
        from aerec.data.store import load_dataset

        ds = load_dataset(dataset)
        m = ds.matrix
        extra = {"nnz": int(m.nnz), "shape": list(m.shape)}
    else:
        from aerec.data.netflix import read_combined

        r = read_combined(src)
        extra = {"nnz": len(r)}
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": _peak_rss_mib(), **extra}


def run(step: str, src: Path, dataset: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        step,
        "--file",
        str(src),
        "--dataset",
        str(dataset),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{step} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--file", type=Path, help="an existing combined_data file")
    p.add_argument("--ratings", type=int, default=QUARTER["ratings"])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/aerec-bench-prepare"))
    p.add_argument("--dataset", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=["prepare", "load", "reparse"], help=argparse.SUPPRESS)
    p.add_argument("--repeat", type=int, default=3, help="load runs (best is kept)")
    p.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.file, args.dataset)))
        return

    src = args.file
    if src is None:
        scale = args.ratings / QUARTER["ratings"]
        shape = {
            "users": max(1, round(QUARTER["users"] * scale)),
            "movies": max(1, round(QUARTER["movies"] * min(1.0, scale**0.5))),
            "ratings": args.ratings,
        }
        raw = args.workdir / f"raw-{shape['ratings']}"
        src = raw / "combined_data_1.txt"
        if not src.exists():
            from aerec.data.synth import synthesize

            synthesize(raw, seed=0, overwrite=True, **shape)
    dataset = args.workdir / "prepared"
    dataset.parent.mkdir(parents=True, exist_ok=True)
    prep = run("prepare", src, dataset)
    loads = [run("load", src, dataset) for _ in range(args.repeat)]
    reparse = run("reparse", src, dataset)
    best_load = min(loads, key=lambda r: r["seconds"])
    size_mib = src.stat().st_size / 2**20
    table = (
        f"`{src.name}`: {prep['ratings']:,} ratings, {prep['users']:,} users, "
        f"{prep['movies']:,} movies, {size_mib:,.0f} MiB; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}.\n\n"
        "| step | wall time (s) | peak RSS (MiB) | target |\n|---|---:|---:|---|\n"
        f"| `aerec data prepare` (parse, CSR, SHA-256, atomic write) | {prep['seconds']:.2f} | "
        f"{prep['peak_rss_mib']:,.0f} | ≤ 3,072 MiB |\n"
        f"| load prepared + build float32 CSR (best of {len(loads)}) | "
        f"{best_load['seconds']:.3f} | "
        f"{best_load['peak_rss_mib']:,.0f} | ≤ 1 s |\n"
        f"| reference: re-parse the raw file with `read_combined` | {reparse['seconds']:.2f} | "
        f"{reparse['peak_rss_mib']:,.0f} | |\n\n"
        f"Loading is {reparse['seconds'] / best_load['seconds']:.0f}× faster than re-parsing."
    )
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    shutil.rmtree(dataset, ignore_errors=True)


if __name__ == "__main__":
    main()
