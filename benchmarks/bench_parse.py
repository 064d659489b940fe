"""Parsing benchmark: :func:`aerec.data.netflix.read_combined` against the common pandas
approach (``benchmarks/pandas_reference.py``), measured in the same run.

    python benchmarks/bench_parse.py [--ratings N] [--file PATH] [--out docs-fragment.md]

Without ``--file`` it writes a ``combined_data_1.txt`` of the Netflix-quarter shape
(24,053,764 ratings, 470,758 users, 4,499 movies; scaled down with ``--ratings``) using
:func:`aerec.data.synth.synthesize`. Each reader runs in its own subprocess, which reports its
times, its peak RSS (``ru_maxrss`` of that process, read right after parsing) and a digest of
the arrays it produced; the digests must match. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

QUARTER = {"ratings": 24_053_764, "users": 470_758, "movies": 4_499}
HERE = Path(__file__).resolve().parent


def make_file(workdir: Path, users: int, movies: int, ratings: int, seed: int) -> Path:
    """Generate (or reuse, when the shape matches) ``workdir/<shape>/combined_data_1.txt``."""
    out_dir = workdir / f"synth-u{users}-m{movies}-r{ratings}-s{seed}"
    path = out_dir / "combined_data_1.txt"
    done = workdir / f"{out_dir.name}.done"  # written only after a complete generation
    if path.exists() and done.exists():
        return path
    start = time.perf_counter()
    from aerec.data.synth import synthesize

    synthesize(out_dir, users=users, movies=movies, ratings=ratings, seed=seed, overwrite=True)
    done.write_text("ok\n")
    print(f"generated {path} ({path.stat().st_size / 2**20:.0f} MiB) "
          f"in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return path


# --------------------------------------------------------------------------------------------
# Workers (one subprocess per reader)
# --------------------------------------------------------------------------------------------


def _peak_rss_mib() -> float:
    """This process's peak resident set size. VmHWM restarts at exec, unlike ``ru_maxrss``,
    which a child inherits from its (possibly big) parent through fork + exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _digest(cols: dict[str, np.ndarray]) -> str:
    h = hashlib.blake2b(digest_size=16)
    canonical = {
        "user_ids": np.int64, "movie_ids": np.int64, "ratings": np.int8, "days": np.int32,
    }
    for name, dtype in canonical.items():
        h.update(np.ascontiguousarray(cols[name].astype(dtype, copy=False)).data)
    return h.hexdigest()


def worker(reader: str, path: Path, repeat: int, threads: int | None) -> dict:
    if reader == "aerec":
        from aerec.data.netflix import read_combined

        def run() -> dict[str, np.ndarray]:
            r = read_combined(path, threads=threads)
            return {"user_ids": r.user_ids, "movie_ids": r.movie_ids, "ratings": r.ratings,
                    "days": r.days}
    else:
        sys.path.insert(0, str(HERE))
        from pandas_reference import read_combined_pandas

        def run() -> dict[str, np.ndarray]:
            return read_combined_pandas(path)

    base_rss = _peak_rss_mib()
    seconds, cpu_seconds = [], []
    cols: dict[str, np.ndarray] = {}
    for _ in range(repeat):
        cols = {}  # free the previous result before the next run
        start, cpu_start = time.perf_counter(), time.process_time()
        cols = run()
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)  # all threads, user + system
    peak = _peak_rss_mib()
    return {
        "reader": reader,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "rows": len(cols["ratings"]),
        "peak_rss_mib": peak,
        "base_rss_mib": base_rss,
        "digest": _digest(cols),
    }


def run_worker(reader: str, path: Path, repeat: int, threads: int | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", reader, "--file", str(path),
           "--repeat", str(repeat)]
    if threads:
        cmd += ["--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{reader} worker failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ratings", type=int, default=QUARTER["ratings"],
                   help="ratings in the generated file (users/movies scale with it)")
    p.add_argument("--file", type=Path, help="an existing combined_data file to parse instead")
    p.add_argument("--out", type=Path, help="also write the Markdown table to this file")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/aerec-bench-parse"),
                   help="where generated files live (reused when the shape matches)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3, help="read_combined runs (best is kept)")
    p.add_argument("--pandas-repeat", type=int, default=1, help="pandas runs (best is kept)")
    p.add_argument("--threads", type=int, default=None, help="read_combined threads")
    p.add_argument("--worker", choices=["aerec", "pandas"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker, args.file, args.repeat, args.threads)))
        return

    if args.file:
        path = args.file
    else:
        scale = args.ratings / QUARTER["ratings"]
        users = max(1, round(QUARTER["users"] * scale))
        movies = max(1, round(QUARTER["movies"] * min(1.0, scale**0.5)))
        path = make_file(args.workdir, users, movies, args.ratings, args.seed)

    size_mib = path.stat().st_size / 2**20
    load_before = os.getloadavg()[0]
    ours = run_worker("aerec", path, args.repeat, args.threads)
    ref = run_worker("pandas", path, args.pandas_repeat, None)
    load_after = os.getloadavg()[0]
    if ours["digest"] != ref["digest"] or ours["rows"] != ref["rows"]:
        sys.exit(f"MISMATCH: read_combined and pandas disagree ({ours} vs {ref})")

    rows = ours["rows"]
    best = {r["reader"]: int(np.argmin(r["seconds"])) for r in (ours, ref)}
    best_ours, best_ref = ours["seconds"][best["aerec"]], ref["seconds"][best["pandas"]]
    cpu_ours, cpu_ref = ours["cpu_seconds"][best["aerec"]], ref["cpu_seconds"][best["pandas"]]
    threads = args.threads or min(2, os.cpu_count() or 1)
    header = (
        f"Parsing `{path.name}`: {rows:,} ratings, {size_mib:,.0f} MiB "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"read_combined with {threads} thread(s); file in page cache). "
        "Arrays identical (digest match)."
    )
    ours_row = (
        f"| `aerec.data.netflix.read_combined` (best of {len(ours['seconds'])}) | "
        f"{best_ours:.2f} | {cpu_ours:.2f} | {rows / best_ours / 1e6:.1f} M | "
        f"{ours['peak_rss_mib']:,.0f} | {best_ref / best_ours:.1f}× |"
    )
    ref_row = (
        f"| pandas `read_csv` + ffill (best of {len(ref['seconds'])}) | {best_ref:.2f} | "
        f"{cpu_ref:.2f} | {rows / best_ref / 1e6:.1f} M | {ref['peak_rss_mib']:,.0f} | 1.0× |"
    )
    footer = (
        "Peak RSS is the process's VmHWM, interpreter and imports included "
        f"({ours['base_rss_mib']:.0f} MiB before parsing for aerec, "
        f"{ref['base_rss_mib']:.0f} MiB for pandas). "
        f"All read_combined runs (s): {', '.join(f'{s:.2f}' for s in ours['seconds'])}. "
        f"Load average before/after: {load_before:.1f}/{load_after:.1f} "
        "(other work on the machine slows the wall-clock numbers; CPU time is less affected)."
    )
    columns = (
        "| reader | wall time (s) | CPU time (s) | ratings/s (wall) | peak RSS (MiB) | speed-up |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    table = f"{header}\n\n{columns}\n{ours_row}\n{ref_row}\n\n{footer}"
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
