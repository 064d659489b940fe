"""Columnar rating and title containers shared by every reader.

A reader turns a file format into :class:`Ratings` (one row per rating, raw ids as they appear in
the files) and, where the format has them, :class:`Titles`. Everything downstream — the prepared
store, splits, training — starts from these.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

#: ``days`` value for a rating whose date is unknown (probe.txt has none, for instance).
NO_DATE = np.iinfo(np.int32).min

#: Most rating levels a prepared dataset holds: ratings are stored as uint8 or uint16 codes.
MAX_LEVELS = 1 << 16

#: Largest rating magnitude accepted. Ratings are float32 once read, exact for integers up to
#: 2**24 only; 10,000,000 stays below that with room for the extra level an inferred scale may
#: add, so a lone large rating never makes its scale unstorable. (Within the bound, float32
#: still decides which steps are exact: see :meth:`RatingScale.storage_problem`.)
MAX_RATING_MAGNITUDE = 10_000_000.0

#: The one date rule of every reader: a real calendar date of the years 0001–9999, however it is
#: written (``YYYY-MM-DD`` or unix seconds). As days since 1970-01-01:
MIN_DAY = -719_162  # 0001-01-01
MAX_DAY = 2_932_896  # 9999-12-31


@dataclass(frozen=True)
class RatingScale:
    """The allowed ratings: ``minimum``, ``minimum + step``, …, ``maximum``."""

    minimum: float
    maximum: float
    step: float

    def __post_init__(self) -> None:
        numbers = (self.minimum, self.maximum, self.step)
        finite = all(math.isfinite(x) for x in numbers)
        if not (finite and self.maximum > self.minimum and self.step > 0):
            raise ValueError(f"invalid rating scale {self}")
        levels = (self.maximum - self.minimum) / self.step
        if not math.isfinite(levels) or abs(levels - round(levels)) > 1e-6:
            raise ValueError(f"rating scale {self}: step does not divide the range")

    @property
    def levels(self) -> int:
        """Number of distinct allowed ratings."""
        return int(round((self.maximum - self.minimum) / self.step)) + 1

    def values(self) -> np.ndarray:
        """All allowed ratings, ascending, shape ``(levels,)``."""
        return (self.minimum + self.step * np.arange(self.levels)).astype(np.float32)

    def invalid_mask(self, ratings: np.ndarray) -> np.ndarray:
        """True where a rating is not finite, off the scale's range, or between its steps.

        Within a millionth of a step counts as on it; float32 ratings (as :class:`Ratings`
        holds them) get their own rounding error on top, so 100.3 on a 0.1 scale stays valid."""
        given = np.asarray(ratings)
        r = given.astype(np.float64)
        pos = (r - self.minimum) / self.step
        tol = 1e-6
        if given.dtype == np.float32:
            tol = tol + np.abs(r) * 2.0**-23 / self.step
        with np.errstate(invalid="ignore"):
            off_step = np.abs(pos - np.round(pos)) > tol
            outside = (pos < -tol) | (pos > self.levels - 1 + tol)
            return ~np.isfinite(r) | outside | off_step

    def codes(self, ratings: np.ndarray) -> np.ndarray:
        """The stored code of each rating: its level ``round((rating - minimum) / step)``, int64
        (computed in float64, so it is exact for every storable scale)."""
        r = np.asarray(ratings, dtype=np.float64)
        return np.rint((r - self.minimum) / self.step).astype(np.int64)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Ratings of stored ``codes``, float32 — exactly how a prepared dataset reads them:
        each level ``minimum + code · step`` computed in float64 and rounded once to float32
        (so -0.1 on a -1:3.3:0.1 scale is float32(-0.1), not 9 · 0.1 − 1 in float32)."""
        table = (self.minimum + self.step * np.arange(self.levels, dtype=np.float64)).astype(
            np.float32)
        return table[np.asarray(codes)]

    def decodes_faithfully(self, values: np.ndarray) -> np.ndarray:
        """True where a value on this scale comes back from its stored code as itself: within
        4 float32 ulps (float32 arithmetic noise) and a quarter step (never a neighbour).
        ``values`` are float64, shape ``(n,)``."""
        exact = np.asarray(values, dtype=np.float64)
        decoded = self.decode(self.codes(exact)).astype(np.float64)
        ulp = np.spacing(np.maximum(np.abs(exact), self.step).astype(np.float32))
        err = np.abs(decoded - exact)
        return (err <= 4 * ulp.astype(np.float64)) & (err < self.step / 4)

    def storage_problem(self) -> str | None:
        """Why a prepared dataset cannot hold this scale, or None when it can: at most
        :data:`MAX_LEVELS` levels, each of which decodes faithfully (float32)."""
        levels = self.levels
        if levels > MAX_LEVELS:
            return f"it has {levels:,} levels, more than the {MAX_LEVELS:,} a dataset holds"
        exact = self.minimum + self.step * np.arange(levels, dtype=np.float64)
        if not np.all(self.decodes_faithfully(exact)):
            return "its values are too large for its step to be stored exactly (float32)"
        return None

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

        Falls back to the observed min/max with the coarsest of the steps 1, 0.5, 0.25, 0.2,
        0.125, 0.1 … 0.00001 that fits every rating (whether a dataset can store that scale is
        :meth:`storage_problem`'s question).
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
        for step in _INFER_STEPS:
            if np.all(np.abs(r / step - np.round(r / step)) < 1e-6):
                start = round(lo / step) * step  # lo is on the grid (checked just above)
                return cls(start, max(hi, start + step), step)
        return cls(lo, hi if hi > lo else lo + 1.0, (hi - lo) / 1000 if hi > lo else 1.0)


_INFER_STEPS = (1.0, 0.5, 0.25, 0.2, 0.125, 0.1, 0.05, 0.025, 0.02, 0.01, 0.005, 0.001, 1e-4,
                1e-5)


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


@functools.lru_cache(maxsize=1)
def month_tables() -> tuple[np.ndarray, np.ndarray]:
    """Days since 1970-01-01 of the first day of each month of years 0000–9999, indexed by
    ``year * 12 + month - 1``, and each month's length (0 for year 0, which no reader accepts)."""
    months = np.arange(10000 * 12 + 1, dtype=np.int64) - 1970 * 12
    first_days = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    month_start = first_days[:-1].astype(np.int32)
    month_len = np.diff(first_days).astype(np.int32)
    month_len[:12] = 0
    return month_start, month_len


def calendar_days(
    year: np.ndarray, month: np.ndarray, day: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ``YYYY-MM-DD`` → (days since 1970-01-01 as int32, mask of real dates).

    A date is real when its year is 1–9999, its month 1–12 and its day exists in that month
    (``2005-02-30`` does not); days are 0 where it is not."""
    year = np.asarray(year, dtype=np.int64)
    month = np.asarray(month, dtype=np.int64)
    day = np.asarray(day, dtype=np.int64)
    month_start, month_len = month_tables()
    ok = (year >= 1) & (year <= 9999) & (month >= 1) & (month <= 12)
    index = np.where(ok, year * 12 + month - 1, 0)
    ok &= (day >= 1) & (day <= month_len[index])
    days = np.where(ok, month_start[index].astype(np.int64) + day - 1, 0)
    return days.astype(np.int32), ok


def days_from_epoch_seconds(seconds: np.ndarray) -> np.ndarray:
    """Unix timestamps (seconds) → days since 1970-01-01 (int32)."""
    return (np.asarray(seconds, dtype=np.int64) // 86400).astype(np.int32)
