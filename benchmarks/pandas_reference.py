"""The common Kaggle-notebook way to read ``combined_data_N.txt`` with pandas: the reference
that ``bench_parse.py`` measures :func:`aerec.data.netflix.read_combined` against.

``pd.read_csv`` with three named columns; a ``MovieID:`` header line lands in the first column
with a missing rating, so rows whose rating is NaN are headers: take their movie ids,
forward-fill them down, drop the header rows, parse the dates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def read_combined_pandas(path: str | Path) -> dict[str, np.ndarray]:
    """Read a combined_data file; returns columns ``user_ids`` (int64), ``movie_ids`` (int64),
    ``ratings`` (float32) and ``days`` (int32, days since 1970-01-01), each shape ``(n,)``."""
    df = pd.read_csv(
        path, header=None, names=["customer", "rating", "date"], dtype={"customer": str}
    )
    is_header = df["rating"].isna()
    movie = pd.Series(np.nan, index=df.index)
    movie[is_header] = df.loc[is_header, "customer"].str.rstrip(":").astype(np.float64)
    df["movie"] = movie.ffill()
    df = df[~is_header]
    days = (pd.to_datetime(df["date"], format="%Y-%m-%d") - pd.Timestamp("1970-01-01")).dt.days
    return {
        "user_ids": df["customer"].astype(np.int64).to_numpy(),
        "movie_ids": df["movie"].astype(np.int64).to_numpy(),
        "ratings": df["rating"].astype(np.float32).to_numpy(),
        "days": days.astype(np.int32).to_numpy(),
    }
