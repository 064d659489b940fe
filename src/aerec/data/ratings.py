"""Columnar rating and title containers shared by every reader.

A reader turns a file format into :class:`Ratings` (one row per rating, raw ids as they appear in
the files) and, where the format has them, :class:`Titles`. Everything downstream — the prepared
store, splits, training — starts from these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: ``days`` value for a rating whose date is unknown (probe.txt has none, for instance).
NO_DATE = np.iinfo(np.int32).min


@dataclass(frozen=True)
class RatingScale:
    """The allowed ratings: ``minimum``, ``minimum + step``, …, ``maximum``."""

    minimum: float
    maximum: float
    step: float

    def __post_init__(self) -> None:
        if not (self.maximum > self.minimum and self.step > 0):
            raise ValueError(f"invalid rating scale {self}")
        levels = (self.maximum - self.minimum) / self.step
        if abs(levels - round(levels)) > 1e-6:
            raise ValueError(f"rating scale {self}: step does not divide the range")

    @property
    def levels(self) -> int:
        """Number of distinct allowed ratings."""
        return int(round((self.maximum - self.minimum) / self.step)) + 1

    def values(self) -> np.ndarray:
        """All allowed ratings, ascending, shape ``(levels,)``."""
        return (self.minimum + self.step * np.arange(self.levels)).astype(np.float32)

    def invalid_mask(self, ratings: np.ndarray) -> np.ndarray:
        """True where a rating is not finite, off the scale's range, or between its steps."""
        r = np.asarray(ratings, dtype=np.float64)
        pos = (r - self.minimum) / self.step
        with np.errstate(invalid="ignore"):
            off_step = np.abs(pos - np.round(pos)) > 1e-6
            return (
                ~np.isfinite(r) | (r < self.minimum - 1e-9) | (r > self.maximum + 1e-9) | off_step
            )

    def relevance_threshold(self) -> float:
        """Smallest rating counted as relevant for top-N metrics.

        4 on a 1–5 scale; otherwise the top 20 % of the scale's range.
        """
        if (self.minimum, self.maximum) == (1.0, 5.0):
            return 4.0
        return self.maximum - 0.2 * (self.maximum - self.minimum)

    def to_dict(self) -> dict:
        return {"min": self.minimum, "max": self.maximum, "step": self.step}

    @classmethod
    def from_dict(cls, d: dict) -> RatingScale:
        return cls(float(d["min"]), float(d["max"]), float(d["step"]))

    @classmethod
    def parse(cls, text: str) -> RatingScale:
        """Parse ``MIN:MAX[:STEP]`` (step defaults to 1), e.g. ``0.5:5:0.5`` or ``1:100``."""
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"rating scale {text!r}: expected MIN:MAX or MIN:MAX:STEP")
        try:
            nums = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"rating scale {text!r}: not numbers") from None
        return cls(nums[0], nums[1], nums[2] if len(nums) == 3 else 1.0)

    @classmethod
    def infer(cls, ratings: np.ndarray) -> RatingScale:
        """Guess the scale from observed ratings: whole stars 1–5, half stars 0.5–5, or 1–100 …

        Falls back to the observed min/max with the coarsest step that fits every rating.
        """
        r = np.asarray(ratings, dtype=np.float64)
        if r.size == 0:
            return cls(1.0, 5.0, 1.0)
        lo, hi = float(r.min()), float(r.max())
        whole = bool(np.all(r == np.round(r)))
        halves = bool(np.all(r * 2 == np.round(r * 2)))
        if whole and lo >= 1 and hi <= 5:
            return cls(1.0, 5.0, 1.0)
        if halves and lo >= 0.5 and hi <= 5:
            return cls(0.5, 5.0, 0.5)
        if whole and lo >= 0 and hi <= 10 and lo < 1:
            return cls(0.0, 10.0, 1.0) if hi > 5 else cls(0.0, 5.0, 1.0)
        if whole and lo >= 1 and hi <= 10:
            return cls(1.0, 10.0, 1.0)
        if whole and lo >= 1 and hi <= 100:
            return cls(1.0, 100.0, 1.0)
        for step in (1.0, 0.5, 0.25, 0.1, 0.05, 0.01):
            if np.all(np.abs(r / step - np.round(r / step)) < 1e-6):
                start = math.floor(lo / step) * step
                return cls(start, max(hi, start + step), step)
        return cls(lo, hi if hi > lo else lo + 1.0, (hi - lo) / 1000 if hi > lo else 1.0)


@dataclass
class Ratings:
    """One row per rating, as read from the files.

    ``user_ids`` and ``movie_ids`` are the raw ids (int64) as they appear in the source;
    ``ratings`` are the stars (float32); ``days`` are days since 1970-01-01 (int32,
    :data:`NO_DATE` when unknown) or ``None`` when the format carries no dates at all.
    ``scale`` is the format's rating scale when the format fixes one (Netflix: 1–5), else ``None``.
    """

    user_ids: np.ndarray
    movie_ids: np.ndarray
    ratings: np.ndarray
    days: np.ndarray | None = None
    scale: RatingScale | None = None
    sources: list[str] = field(default_factory=list)
    #: Lines skipped as bad (only with an explicit ``skip_bad_lines=True``), for reporting.
    skipped_lines: int = 0

    def __post_init__(self) -> None:
        self.user_ids = np.asarray(self.user_ids, dtype=np.int64)
        self.movie_ids = np.asarray(self.movie_ids, dtype=np.int64)
        self.ratings = np.asarray(self.ratings, dtype=np.float32)
        if self.days is not None:
            self.days = np.asarray(self.days, dtype=np.int32)
        n = len(self.user_ids)
        lengths = {len(self.movie_ids), len(self.ratings)} | (
            {len(self.days)} if self.days is not None else set()
        )
        if lengths != {n}:
            raise ValueError("Ratings columns must have equal lengths")

    def __len__(self) -> int:
        return len(self.ratings)

    @classmethod
    def concat(cls, parts: list[Ratings]) -> Ratings:
        """Join ratings from several files (e.g. combined_data_1..4) into one table."""
        if not parts:
            raise ValueError("no ratings to concatenate")
        if len(parts) == 1:
            return parts[0]
        any_days = any(p.days is not None for p in parts)
        days = (
            np.concatenate(
                [
                    p.days if p.days is not None else np.full(len(p), NO_DATE, np.int32)
                    for p in parts
                ]
            )
            if any_days
            else None
        )
        scales = {p.scale for p in parts if p.scale is not None}
        return cls(
            np.concatenate([p.user_ids for p in parts]),
            np.concatenate([p.movie_ids for p in parts]),
            np.concatenate([p.ratings for p in parts]),
            days,
            scales.pop() if len(scales) == 1 else None,
            [s for p in parts for s in p.sources],
            sum(p.skipped_lines for p in parts),
        )


@dataclass
class Titles:
    """Movie titles: raw ``movie_ids`` (int64), ``titles`` (list of str) and ``years``
    (int32, 0 when unknown, e.g. Netflix ``NULL``)."""

    movie_ids: np.ndarray
    titles: list[str]
    years: np.ndarray
    genres: list[str] | None = None

    def __post_init__(self) -> None:
        self.movie_ids = np.asarray(self.movie_ids, dtype=np.int64)
        self.years = np.asarray(self.years, dtype=np.int32)
        if not (len(self.movie_ids) == len(self.titles) == len(self.years)):
            raise ValueError("Titles columns must have equal lengths")
        if self.genres is not None and len(self.genres) != len(self.titles):
            raise ValueError("Titles genres must match titles")

    def __len__(self) -> int:
        return len(self.titles)


def days_from_epoch_seconds(seconds: np.ndarray) -> np.ndarray:
    """Unix timestamps (seconds) → days since 1970-01-01 (int32)."""
    return (np.asarray(seconds, dtype=np.int64) // 86400).astype(np.int32)
