"""Per-epoch metrics: the accumulator behind them, ``metrics.csv`` and ``learning_curve.png``.

Loss and RMSE are computed from accumulated sums over every scored rating of the epoch (sum of
squared errors and a count), never as averages of batch averages.

* ``loss`` — mean squared error of the raw network outputs (what the optimiser minimises);
* ``rmse`` — root mean squared error after clipping outputs to the rating scale (what a
  recommender would report, and what the published README quotes).
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from aerec.config import write_text_atomic

CSV_COLUMNS = ("epoch", "train_loss", "train_rmse", "val_loss", "val_rmse", "seconds")


class ErrorSums:
    """Running sums for one pass: squared error (raw and clipped) and the number of ratings."""

    def __init__(self, clip: tuple[float, float] | None) -> None:
        self.clip = clip
        self.squared_error = 0.0
        self.clipped_squared_error = 0.0
        self.count = 0

    def add(
        self,
        predictions: torch.Tensor,
        targets: torch.Tensor,
        mean_squared_error: float | None = None,
    ) -> float:
        """Add a batch (both ``(k,)``); returns the batch's raw squared-error sum.

        ``mean_squared_error``: the batch's raw MSE when the caller has it already (the training
        loss), which saves recomputing it.
        """
        predictions = predictions.detach()
        if mean_squared_error is None:
            sse = float(torch.sum((predictions - targets) ** 2, dtype=torch.float64))
        else:
            sse = mean_squared_error * targets.numel()
        if self.clip is None:
            clipped = sse
        else:
            lo, hi = self.clip
            clipped = float(
                torch.sum((predictions.clamp(lo, hi) - targets) ** 2, dtype=torch.float64)
            )
        self.squared_error += sse
        self.clipped_squared_error += clipped
        self.count += int(targets.numel())
        return sse

    @property
    def loss(self) -> float:
        """Mean squared error of raw outputs (NaN when nothing was scored)."""
        return self.squared_error / self.count if self.count else math.nan

    @property
    def rmse(self) -> float:
        """RMSE of outputs clipped to the scale (NaN when nothing was scored)."""
        return math.sqrt(self.clipped_squared_error / self.count) if self.count else math.nan


@dataclass(frozen=True)
class EpochMetrics:
    """One row of ``metrics.csv`` (epochs count from 1; ``seconds`` is that epoch's wall time)."""

    epoch: int
    train_loss: float
    train_rmse: float
    val_loss: float
    val_rmse: float
    seconds: float
    #: Learning rate used during the epoch (kept in checkpoints, not in the CSV).
    lr: float = math.nan

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EpochMetrics:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def write_metrics_csv(path: Path, history: list[EpochMetrics]) -> None:
    """Write all epochs so far to ``path`` atomically, columns :data:`CSV_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for m in history:
        writer.writerow(
            [m.epoch] + [f"{getattr(m, c):.6f}" for c in CSV_COLUMNS[1:-1]] + [f"{m.seconds:.3f}"]
        )
    write_text_atomic(path, buffer.getvalue())


def read_metrics_csv(path: Path) -> list[dict]:
    """Rows of a ``metrics.csv`` as dicts of floats (``epoch`` as int)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in rows]


def plot_learning_curve(path: Path, history: list[EpochMetrics], title: str = "") -> None:
    """Loss (left) and RMSE (right) against epoch, training and validation; PNG, atomic."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # no pyplot: no global figure state

    epochs = [m.epoch for m in history]
    figure = Figure(figsize=(10, 4), dpi=100)
    for i, (metric, label) in enumerate((("loss", "loss (MSE)"), ("rmse", "RMSE (clipped)"))):
        ax = figure.add_subplot(1, 2, i + 1)
        ax.plot(epochs, [getattr(m, f"train_{metric}") for m in history], label="training")
        if any(math.isfinite(getattr(m, f"val_{metric}")) for m in history):
            ax.plot(epochs, [getattr(m, f"val_{metric}") for m in history], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        figure.suptitle(title)
    _save_png(figure, path)


def plot_member_curves(
    path: Path, curves: dict[str, list[EpochMetrics]], title: str = ""
) -> None:
    """An ensemble's learning curves: each member's validation RMSE against its epochs (or
    sweeps), one line per member; PNG, atomic."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    ax = figure.add_subplot(1, 1, 1)
    for name, history in curves.items():
        values = [m.val_rmse for m in history]
        if any(math.isfinite(v) for v in values):
            ax.plot([m.epoch for m in history], values, label=name)
    ax.set_xlabel("epoch (sweep for Bayesian MF)")
    ax.set_ylabel("validation RMSE (clipped)")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    _save_png(figure, path)


def _save_png(figure, path: Path) -> None:
    """Lay out ``figure`` and write it to ``path`` atomically (temporary file, rename)."""
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)
        figure.savefig(tmp, format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
