"""Top-N lists for every known user at once: ``aerec recommend RUN --all-users --out FILE``.

The stored training users are scored in batches of ``batch_size`` rows — one
``predict_dense`` of the batch (the same fold-in as :meth:`Recommender.recommend_for_user`),
the ranking scores, the user's own rated movies and the filtered-out ones set to ``-inf``, and
a top-``k`` per row — so memory is bounded by one ``(batch_size, n_movies)`` block whatever
the number of users. Each user's list is the one ``recommend_for_user(user, k,
explain=False)`` gives (users without stored ratings get the same popular-movies fallback).

:func:`iter_recommendations` yields a :class:`UserBatch` per batch (flat columns, one row per
recommendation); :func:`write_recommendations` streams them into a Parquet or CSV file written
atomically (a temporary file beside it, renamed into place only when complete: an error or an
interruption leaves no partial file). Columns: ``user_id``, ``rank`` (1 = best), ``movie_id``,
``title``, ``score`` (the predicted rating, clipped to the scale; the order is the ranking's,
:data:`~aerec.recommend.ranking.ORDER_NOTES`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aerec.fileio import atomic_write
from aerec.recommend.errors import UnknownUser
from aerec.recommend.explain import gather_rows
from aerec.recommend.inputs import check_k

if TYPE_CHECKING:
    import pyarrow as pa

#: Users scored per batch by default: a ``(1024, n_movies)`` float block (18 MB for 4,499
#: movies, 73 MB for Netflix's 17,770) and the model's own working memory for them.
DEFAULT_BATCH_SIZE = 1024
#: File formats :func:`write_recommendations` writes, by file extension.
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
#: Columns of the written file.
COLUMNS = ("user_id", "rank", "movie_id", "title", "score")


@dataclass
class UserBatch:
    """The top-``k`` lists of one batch of users as flat columns ``(m,)``: users in the order
    given, each user's movies best first (fewer than ``k`` rows when fewer movies pass the
    filters).

    ``columns`` are model columns (index ``Recommender.titles`` / ``movie_ids``), ``scores``
    the predicted ratings clipped to the scale, float32.
    """

    user_ids: np.ndarray
    rank: np.ndarray
    movie_ids: np.ndarray
    columns: np.ndarray
    scores: np.ndarray
    #: Users in this batch (also those with an empty list).
    n_users: int

    def __len__(self) -> int:
        return len(self.user_ids)


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``scores`` ``(b, n)``, the columns of its ``k`` best finite scores, best
    first, ties to the lower column — the order of one user's list. Returns ``(row (m,),
    column (m,))`` int64, row-major; ``-inf`` and NaN are never chosen, so a row may have
    fewer than ``k``. Costs one ``argpartition`` of the block plus a sort of ``b × k``."""
    b, n = scores.shape
    kk = min(k, n)
    if b == 0 or kk == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < n else (
        np.broadcast_to(np.arange(n), (b, n)).copy())
    values = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -values), axis=1)
    cols = np.take_along_axis(part, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    kth = values[:, -1]
    # a row whose k-th score is tied with a column left out must break the tie by column
    tied = np.flatnonzero(np.isfinite(kth) & ((scores >= kth[:, None]).sum(axis=1) > kk))
    for row in tied.tolist():
        candidates = np.flatnonzero(scores[row] >= kth[row])
        best = candidates[np.lexsort((candidates, -scores[row, candidates]))][:kk]
        cols[row], values[row] = best, scores[row, best]
    keep = values > -np.inf  # also drops NaN
    rows = np.broadcast_to(np.arange(b)[:, None], (b, kk))[keep]
    return rows.astype(np.int64), cols[keep].astype(np.int64)


def iter_recommendations(
    rec: Any,
    k: int = 10,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    users: Sequence[int] | None = None,
    min_ratings: int | None = None,
    year_min: int | None = None,
    year_max: int | None = None,
    ranking: str | None = None,
) -> Iterator[UserBatch]:
    """Top-``k`` lists of known users of ``rec`` (a :class:`~aerec.recommend.Recommender`;
    it calls this, so the type is not imported here), one :class:`UserBatch` per
    ``batch_size`` users.

    ``users``: raw user ids (default every stored user, in the checkpoint's order); filters and
    ``ranking`` as for :meth:`Recommender.recommend_for_user`. Raises :class:`UnknownUser` for an
    unknown id or a checkpoint without stored ratings.
    """
    k = check_k(k)
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}")
    batch_size = int(batch_size)
    stored = rec.stored
    if stored is None:
        raise UnknownUser(
            f"this checkpoint ({rec.path.name}) stores no training ratings, so there are no "
            "known users to recommend for; retrain with this version of aerec"
        )
    mode = rec.ranking_mode(ranking)
    eligible = rec.catalogue.eligible(min_ratings, year_min, year_max)
    if users is None:
        rows = np.arange(stored.n_users, dtype=np.int64)
    else:
        rows = np.fromiter((rec.known_users.row_of(u) for u in users), np.int64)
    fallback = rec._popular(k, eligible, np.zeros(0, np.int64), explain=False, note="")
    fallback_cols = np.array(
        [rec.catalogue.column(item.movie_id) for item in fallback.items], np.int64)
    fallback_scores = np.array([item.predicted_rating for item in fallback.items], np.float32)
    low, high = rec.scale.minimum, rec.scale.maximum
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            indptr, indices, codes = gather_rows(stored, batch)
            indices = indices.astype(np.int64)
            values = stored.ratings_of(codes)
            counts = np.diff(indptr)
            out = rec.model.predict_dense(indptr, indices, values)
            predicted = out.detach().float().cpu().numpy()
            scores = rec.ranking_scores(mode, indptr, indices, values, out)
            scores[:, ~eligible] = -np.inf
            scores[np.repeat(np.arange(len(batch)), counts), indices] = -np.inf
            scores[counts == 0] = -np.inf  # these users get the fallback below
            row, col = top_k_rows(scores, k)
            score = np.clip(predicted[row, col], low, high)
            empty = np.flatnonzero(counts == 0)
            if len(empty) and len(fallback_cols):
                row = np.concatenate([row, np.repeat(empty, len(fallback_cols))])
                col = np.concatenate([col, np.tile(fallback_cols, len(empty))])
                score = np.concatenate([score, np.tile(fallback_scores, len(empty))])
                order = np.argsort(row, kind="stable")
                row, col, score = row[order], col[order], score[order]
            starts = np.searchsorted(row, np.arange(len(batch)))
            rank = np.arange(len(row)) - starts[row] + 1
            yield UserBatch(
                user_ids=rec.user_ids[batch[row]], rank=rank.astype(np.int32),
                movie_ids=rec.movie_ids[col], columns=col,
                scores=np.round(score, 4).astype(np.float32), n_users=len(batch),
            )


@dataclass
class WriteSummary:
    """What :func:`write_recommendations` wrote."""

    path: Path
    format: str
    n_users: int
    n_rows: int
    seconds: float

    @property
    def users_per_second(self) -> float:
        return self.n_users / self.seconds if self.seconds > 0 else float("inf")


def output_format(path: str | Path) -> str:
    """``"parquet"`` or ``"csv"`` from the file extension; ``ValueError`` for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"{path}: write recommendations to a .parquet or .csv file (the extension chooses "
            "the format)"
        )
    return FORMATS[suffix]


def _table(batch: UserBatch, titles: pa.Array) -> pa.Table:
    import pyarrow as pa

    return pa.table({
        "user_id": pa.array(batch.user_ids, pa.int64()),
        "rank": pa.array(batch.rank, pa.int32()),
        "movie_id": pa.array(batch.movie_ids, pa.int64()),
        "title": titles.take(pa.array(batch.columns, pa.int64())),
        "score": pa.array(batch.scores, pa.float32()),
    })


def write_recommendations(
    rec: Any,
    path: str | Path,
    k: int = 10,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
    **options: object,
) -> WriteSummary:
    """Write every known user of ``rec`` (a :class:`~aerec.recommend.Recommender`) their
    top-``k`` (:func:`iter_recommendations`; ``options`` are its ``users``, filters and
    ``ranking``) to ``path``: Parquet (``.parquet``) or CSV (``.csv``) with the
    columns :data:`COLUMNS`, streamed batch by batch into a temporary file that replaces
    ``path`` only when complete. ``progress(n)`` is called with the users done after each
    batch."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    fmt = output_format(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name ending .{fmt}")
    titles = pa.array(rec.titles, pa.string())
    schema = pa.schema([
        ("user_id", pa.int64()), ("rank", pa.int32()), ("movie_id", pa.int64()),
        ("title", pa.string()), ("score", pa.float32()),
    ])
    started = time.perf_counter()
    n_users = n_rows = 0
    batches = iter_recommendations(rec, k, batch_size=batch_size, **options)  # type: ignore[arg-type]
    with atomic_write(path, "wb", tag=str(os.getpid())) as f:
        writer = pq.ParquetWriter(f, schema) if fmt == "parquet" else pacsv.CSVWriter(f, schema)
        try:
            for batch in batches:
                writer.write_table(_table(batch, titles))
                n_users += batch.n_users
                n_rows += len(batch)
                if progress is not None:
                    progress(n_users)
        finally:
            writer.close()
    return WriteSummary(path, fmt, n_users, n_rows, time.perf_counter() - started)


__all__ = [
    "COLUMNS",
    "DEFAULT_BATCH_SIZE",
    "UserBatch",
    "WriteSummary",
    "iter_recommendations",
    "output_format",
    "top_k_rows",
    "write_recommendations",
]
