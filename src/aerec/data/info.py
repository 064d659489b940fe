"""Statistics of a prepared dataset (what ``aerec data info`` prints)."""

from __future__ import annotations

import datetime as dt

import numpy as np

from aerec.data.ratings import NO_DATE
from aerec.data.store import CsrArrays, PreparedDataset


def _day_to_iso(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(day))).isoformat()


def _summary(counts: np.ndarray) -> dict:
    return {
        "min": int(counts.min()) if len(counts) else 0,
        "median": float(np.median(counts)) if len(counts) else 0.0,
        "max": int(counts.max()) if len(counts) else 0,
        "mean": float(counts.mean()) if len(counts) else 0.0,
    }


def dataset_stats(ds: PreparedDataset) -> dict:
    """Counts and distributions over all ratings (matrix plus any fixed test split).

    ``sparsity`` is ratings / (users × movies) — the share of the matrix that is filled, which
    is what the published project (and most Netflix write-ups) call sparsity: 0.0114 for
    ``combined_data_1.txt``.
    """
    parts: list[CsrArrays] = [ds.arrays] + ([ds.test_arrays] if ds.test_arrays else [])
    scale = ds.scale
    per_user = np.zeros(ds.n_users, np.int64)
    per_movie = np.zeros(ds.n_movies, np.int64)
    hist = np.zeros(scale.levels, np.int64)
    day_min, day_max = None, None
    for a in parts:
        per_user += np.diff(np.asarray(a.indptr))
        per_movie += np.bincount(np.asarray(a.indices), minlength=ds.n_movies)
        hist += np.bincount(np.asarray(a.codes), minlength=scale.levels)[: scale.levels]
        if a.days is not None:
            days = np.asarray(a.days)
            days = days[days != NO_DATE]
            if len(days):
                lo, hi = int(days.min()), int(days.max())
                day_min = lo if day_min is None else min(day_min, lo)
                day_max = hi if day_max is None else max(day_max, hi)
    n = int(hist.sum())
    values = scale.values()
    mean = float((hist * values).sum() / n) if n else 0.0
    m = ds.manifest
    return {
        "path": str(ds.path),
        "users": ds.n_users,
        "movies": ds.n_movies,
        "ratings": n,
        "sparsity": n / (ds.n_users * ds.n_movies) if ds.n_users and ds.n_movies else 0.0,
        "train_ratings": int(m.get("train_ratings", n)),
        "test_ratings": int(m.get("test_ratings", 0)),
        "test_kind": m.get("test_kind"),
        "scale": scale.to_dict(),
        "mean_rating": mean,
        "histogram": {f"{v:g}": int(c) for v, c in zip(values, hist)},
        "ratings_per_user": _summary(per_user),
        "ratings_per_movie": _summary(per_movie),
        "movies_without_ratings": int((per_movie == 0).sum()),
        "date_range": None if day_min is None else [_day_to_iso(day_min), _day_to_iso(day_max)],
        "titles": int(sum(1 for t in ds.titles if t)),
        "input_format": m.get("input_format"),
        "sources": m.get("sources", []),
        "created": m.get("created"),
        "duplicates_dropped": m.get("duplicates_dropped", 0),
        "skipped_lines": m.get("skipped_lines", 0),
    }
