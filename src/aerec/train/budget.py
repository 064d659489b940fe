"""Wall-clock budgets for training (``aerec train --time-budget 10m``).

A :class:`Deadline` is a point in time (``time.perf_counter``) that the run loops read before
starting the next epoch or sweep: one is started only when the time it is expected to take —
the longest of the recent ones — still fits before the deadline. Every loop trains at least one
epoch, so a run always ends with a model; whatever it could not fit is recorded in
:class:`BudgetReport` and said at the end of the run.

Nested work (ensemble members, a refit) gets a :meth:`Deadline.share` of what is left, so the
whole run ends inside its budget whatever each part turns out to cost.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|hr|min|m|sec|s)?")


def parse_duration(text: str | float | int) -> float:
    """``"90s"``, ``"10m"``, ``"1h"``, ``"1h30m"``, ``"2.5m"`` or a number of seconds → seconds.

    Raises ``ValueError`` naming the text when it is not a positive duration."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        raw = str(text).strip().lower().replace(" ", "")
        pos, seconds = 0, 0.0
        while pos < len(raw):
            match = _PART.match(raw, pos)
            if match is None or match.end() == pos:
                raise ValueError(
                    f"time budget {text!r} is not a duration like 90s, 10m, 1h or 1h30m"
                )
            seconds += float(match.group(1)) * _UNITS[match.group(2) or "s"]
            pos = match.end()
        if not raw:
            raise ValueError("time budget is empty; give a duration like 90s, 10m or 1h")
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"time budget {text!r} must be a positive duration")
    return seconds


def format_duration(seconds: float) -> str:
    """``75`` → ``"1m 15s"``; ``3600`` → ``"1h"`` (for messages)."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "",
             f"{secs}s" if secs else ""]
    return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class Deadline:
    """When a piece of training must be done by (``end`` on ``time.perf_counter``'s clock);
    ``end = inf`` is no limit."""

    end: float = math.inf

    @classmethod
    def after(cls, seconds: float, start: float | None = None) -> Deadline:
        """``seconds`` from ``start`` (default: now); ``seconds <= 0`` means no limit."""
        if not seconds or seconds <= 0:
            return cls()
        return cls((time.perf_counter() if start is None else start) + float(seconds))

    @property
    def limited(self) -> bool:
        return math.isfinite(self.end)

    def remaining(self) -> float:
        """Seconds left (``inf`` without a limit; never negative)."""
        return max(0.0, self.end - time.perf_counter()) if self.limited else math.inf

    def allows(self, seconds: float) -> bool:
        """Whether work expected to take ``seconds`` still fits."""
        return not self.limited or seconds <= self.remaining()

    def share(self, fraction: float, reserve: float = 0.0) -> Deadline:
        """A deadline ``fraction`` of the way to this one, after keeping ``reserve`` seconds
        back for what follows (no limit stays no limit)."""
        if not self.limited:
            return self
        usable = max(0.0, self.remaining() - reserve)
        return Deadline(time.perf_counter() + usable * min(max(fraction, 0.0), 1.0))


class EpochClock:
    """Times a loop's epochs and says whether the next one fits a :class:`Deadline`.

    The next epoch is expected to take as long as the slowest of the last few (epochs vary
    with validation and checkpoint writes), so a loop errs towards stopping early rather than
    overrunning."""

    def __init__(self, deadline: Deadline | None, window: int = 3) -> None:
        self.deadline = deadline or Deadline()
        self.window = window
        self.seconds: list[float] = []

    def record(self, seconds: float) -> None:
        self.seconds.append(float(seconds))

    def expected(self) -> float:
        recent = self.seconds[-self.window:]
        return max(recent) if recent else 0.0

    def next_fits(self) -> bool:
        """True before the first epoch (a run always trains one), then whether the expected
        epoch fits in what is left."""
        return not self.seconds or self.deadline.allows(self.expected())

    def affordable(self, limit: int) -> int:
        """How many more epochs of the expected length fit (at most ``limit``)."""
        if not self.deadline.limited or not self.seconds:
            return limit
        return min(limit, int(self.deadline.remaining() // max(self.expected(), 1e-9)))


@dataclass
class BudgetReport:
    """What a budgeted run did and what it left out, for the run's notes and the summary."""

    seconds: float
    #: e.g. ``["robust-bayesian-mf: 212 of 2,000 sweeps"]``
    trained: list[str] = field(default_factory=list)
    #: e.g. ``["refit (needs ~90 s, 40 s left)"]``
    skipped: list[str] = field(default_factory=list)
    #: Wall time the run took, budget included (set when it ends).
    seconds_used: float = math.nan

    def to_dict(self) -> dict:
        return {"seconds": self.seconds, "seconds_used": self.seconds_used,
                "trained": list(self.trained), "skipped": list(self.skipped)}


__all__ = [
    "BudgetReport",
    "Deadline",
    "EpochClock",
    "format_duration",
    "parse_duration",
]
