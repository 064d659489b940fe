"""Plain-words warnings about a finished run: under-training, no better than the mean, etc."""

from __future__ import annotations

import math

from aerec.train.metrics_log import EpochMetrics

#: Fewer optimiser steps than this, with validation RMSE still falling, means "under-trained".
MIN_STEPS = 1000
#: Steps to suggest when a run is under-trained.
SUGGESTED_STEPS = 2500
#: Relative fall of validation RMSE per epoch, at the end of a run, that counts as "still falling".
STILL_FALLING_PER_EPOCH = 0.001
#: A fall this fast per epoch at the end deserves a warning even after many steps.
FAST_FALL_PER_EPOCH = 0.005


def _nice(value: float) -> int:
    """Round to one significant digit: 313 → 300, 1_870 → 2_000."""
    if value < 10:
        return max(1, round(value))
    power = 10 ** math.floor(math.log10(value))
    return int(round(value / power) * power)


def recent_fall(history: list[EpochMetrics]) -> tuple[int, float, float] | None:
    """``(k, earlier, last)``: validation RMSE ``k`` epochs before the end and at the end.

    ``k`` is a fifth of the run, between 1 and 5 epochs. ``None`` without enough finite values.
    """
    values = [m.val_rmse for m in history]
    if len(values) < 2 or not all(math.isfinite(v) for v in values[-6:]):
        return None
    k = max(1, min(5, len(values) // 5))
    return k, values[-1 - k], values[-1]


def training_warnings(
    history: list[EpochMetrics],
    batches_per_epoch: int,
    *,
    baseline_val_rmse: float = math.nan,
    stopped_early: bool = False,
    patience: int = 0,
) -> list[str]:
    """Warnings for a run's ``history`` (all completed epochs, resumed ones included)."""
    warnings: list[str] = []
    if not history:
        return warnings
    epochs = len(history)
    steps = batches_per_epoch * epochs
    has_validation = any(math.isfinite(m.val_rmse) for m in history)
    if not has_validation:
        warnings.append(
            "there were no validation ratings, so best.pt is the epoch with the lowest training "
            "loss and early stopping was off; set validation_fraction > 0 for honest selection"
        )
        if patience:
            warnings.append(f"--patience {patience} was ignored without validation ratings")
    fall = None if stopped_early else recent_fall(history)
    if fall is not None:
        k, earlier, last = fall
        per_epoch = (earlier - last) / earlier / k
        span = "the last epoch" if k == 1 else f"the last {k} epochs"
        trend = f"validation RMSE was still falling ({earlier:.4f} → {last:.4f} over {span})"
        if steps < MIN_STEPS and per_epoch > STILL_FALLING_PER_EPOCH:
            suggest = max(_nice(SUGGESTED_STEPS / batches_per_epoch), 2 * epochs)
            warnings.append(
                f"under-trained: only {steps:,} optimiser steps ({batches_per_epoch} "
                f"batches/epoch × {epochs} epochs); {trend}; try --epochs {suggest}"
            )
        elif per_epoch > FAST_FALL_PER_EPOCH:
            warnings.append(f"{trend}; more epochs would likely help (--epochs {2 * epochs})")
    if has_validation and math.isfinite(baseline_val_rmse):
        best = min(m.val_rmse for m in history if math.isfinite(m.val_rmse))
        if best >= baseline_val_rmse:
            warnings.append(
                f"the best validation RMSE {best:.4f} is no better than predicting the training "
                f"mean for everything ({baseline_val_rmse:.4f})"
            )
    return warnings
