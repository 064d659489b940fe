"""Batch recommendations: every known user's top-k into a file (``aerec recommend RUN --all-users
--out recs.parquet``), in users per second, against one ``recommend_for_user`` call per user
measured in the same run.

    python benchmarks/bench_batch_recommend.py RUN                  # every stored user
    python benchmarks/bench_batch_recommend.py RUN --users 50000 --batch-size 1024

``batch``      :meth:`Recommender.write_all` — users scored ``--batch-size`` at a time (one
               ``predict_dense`` of the batch, ranking scores, rated movies masked, a top-k per
               row), streamed into a Parquet file (atomic write), titles included;
``reference``  :meth:`Recommender.recommend_for_user` ``(user, k, explain=False)`` one user at
               a time — what a loop over the Python API would do — for ``--reference-users``
               users (spread over the stored users), on one thread: its fastest setting (one
               user's operations are too small to share between threads).

The batch runs on ``--threads`` threads (default: torch's, all cores). The reference's lists are
compared with the batch's for the same users (they must be identical). Prints users/s for
both, the ratio, the peak resident memory while batching (model, stored ratings and one batch),
and a Markdown row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from aerec.recommend import Recommender  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run directory or checkpoint")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--users", type=int, default=0,
                        help="score only the first N stored users (0: all)")
    parser.add_argument("--reference-users", type=int, default=300)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    started = time.perf_counter()
    rec = Recommender.load(args.run, cache_index=False)
    load_seconds = time.perf_counter() - started
    users = rec.user_ids if args.users <= 0 else rec.user_ids[: args.users]
    print(f"{args.run}: {len(rec.user_ids):,} stored users × {rec.n_movies:,} movies "
          f"({type(rec.model).__name__}), loaded in {load_seconds:.1f} s; scoring "
          f"{len(users):,} users, k={args.k}, batch {args.batch_size}, {threads} thread(s), "
          f"{platform.processor() or platform.machine()}")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "recs.parquet"
        summary = rec.write_all(out, args.k, batch_size=args.batch_size,
                                users=None if args.users <= 0 else users.tolist())
        batch_rate = summary.users_per_second
        batch_rss = peak_rss_mib()
        table = pq.read_table(out, columns=["user_id", "movie_id"])
        size_mib = out.stat().st_size / 2**20
    print(f"batch:     {summary.n_users:,} users, {summary.n_rows:,} rows in "
          f"{summary.seconds:.1f} s = {batch_rate:,.0f} users/s ({size_mib:.1f} MiB parquet), "
          f"peak RSS {batch_rss:,.0f} MiB")

    chosen = users[np.linspace(0, len(users) - 1, min(args.reference_users, len(users)))
                   .astype(np.int64)]
    user_col, movie_col = table["user_id"].to_numpy(), table["movie_id"].to_numpy()
    keep = np.isin(user_col, chosen)
    by_user: dict[int, list[int]] = {}
    for u, m in zip(user_col[keep].tolist(), movie_col[keep].tolist()):
        by_user.setdefault(u, []).append(m)
    torch.set_num_threads(1)
    mismatches = 0
    started = time.perf_counter()
    for user in chosen.tolist():
        got = rec.recommend_for_user(int(user), args.k, explain=False).movie_ids
        mismatches += got != by_user.get(int(user), [])
    ref_seconds = time.perf_counter() - started
    torch.set_num_threads(threads)
    ref_rate = len(chosen) / ref_seconds
    print(f"reference: {len(chosen):,} users one at a time in {ref_seconds:.1f} s = "
          f"{ref_rate:,.1f} users/s (1 thread); lists differing from the batch's: {mismatches}")
    print(f"batch / reference: {batch_rate / ref_rate:.1f}×")
    print()
    print("| run | users | threads | batch users/s | reference users/s | ratio | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.run.name} | {summary.n_users:,} | {threads} | {batch_rate:,.0f} | "
          f"{ref_rate:,.1f} | {batch_rate / ref_rate:.1f}× | {batch_rss:,.0f} MiB |")
    if mismatches:
        raise SystemExit(f"{mismatches} reference lists differ from the batch's")


if __name__ == "__main__":
    main()
