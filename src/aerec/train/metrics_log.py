"""Per-epoch metrics: the accumulator behind them, ``metrics.csv`` and ``learning_curve.png``
(titled with what was trained, the best epoch marked, a baseline's validation RMSE drawn).

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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from aerec.config import write_text_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


#: Above this many training ratings the plot's reference line is the training mean instead of
#: the bias baseline (whose fit costs about 0.2 s per million ratings on 2 cores, and memory).
BIAS_LINE_MAX_RATINGS = 30_000_000


def reference_rmse(train: sp.csr_matrix, validation: sp.csr_matrix,
                   clip: tuple[float, float] | None) -> dict[str, float]:
    """The validation RMSE a model has to beat, for the learning curve: ``{label: RMSE}`` of
    the bias baseline ``μ + b_u + b_i`` (λ its default, fitted on ``train``, predictions
    clipped) — what ``aerec evaluate`` sets beside the model — or, above
    :data:`BIAS_LINE_MAX_RATINGS` training ratings, of predicting the training mean. Both
    ``(n_users, n_movies)`` CSR; empty without validation ratings."""
    if validation.nnz == 0 or train.nnz == 0:
        return {}
    if train.nnz > BIAS_LINE_MAX_RATINGS:
        truth = validation.data.astype(np.float64)
        mean = float(train.data.astype(np.float64).mean())
        return {"predicting the training mean": float(np.sqrt(np.mean((truth - mean) ** 2)))}
    from aerec.model.baselines import BiasBaseline

    lam = BiasBaseline().regularisation
    _, scores = BiasBaseline.select_regularisation(train, validation, grid=(lam,), clip=clip)
    return {"bias baseline (μ + b_u + b_i)": scores[lam]}


def learning_curve_figure(history: list[EpochMetrics], title: str = "", *,
                          best_epoch: int | None = None,
                          baselines: Mapping[str, float] | None = None) -> Figure:
    """Loss (left) and RMSE (right) against epoch, training and validation.

    ``title``: what was trained (e.g. ``config.describe()``). ``best_epoch``: the selected
    epoch, marked on both panels (★ on the curve it was selected by). ``baselines``: ``{label:
    validation RMSE}`` drawn as horizontal lines on the RMSE panel (:func:`reference_rmse`).
    The y-axes end just above the highest value after epoch 1, so a first-epoch spike does not
    flatten the rest of the curve; a value cut off that way is written at the top edge.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # no pyplot: no global figure state

    epochs = [m.epoch for m in history]
    best = next((m for m in history if m.epoch == best_epoch), None)
    has_val = any(math.isfinite(m.val_rmse) for m in history)
    figure = Figure(figsize=(10, 4.4), dpi=100)
    for i, (metric, label) in enumerate((("loss", "loss (MSE)"), ("rmse", "RMSE (clipped)"))):
        ax = figure.add_subplot(1, 2, i + 1)
        curves = {"training": [getattr(m, f"train_{metric}") for m in history]}
        if has_val:
            curves["validation"] = [getattr(m, f"val_{metric}") for m in history]
        colours = {}
        for name, values in curves.items():
            (line,) = ax.plot(epochs, values, label=name)
            colours[name] = line.get_color()
        lines = dict(baselines or {}) if metric == "rmse" else {}
        for (name, value), style in zip(lines.items(), ("--", ":", "-.")):
            if math.isfinite(value):
                ax.axhline(value, color="0.4", linestyle=style, linewidth=1,
                           label=f"{name}: {value:.4f}")
        if best is not None:
            ax.axvline(best.epoch, color="0.6", linestyle=":", linewidth=1)
            by = "validation" if has_val else "training"
            value = curves[by][epochs.index(best.epoch)]
            if math.isfinite(value):
                ax.plot([best.epoch], [value], marker="*", markersize=13, linestyle="none",
                        color=colours[by], markeredgecolor="black", markeredgewidth=0.5,
                        label=f"best: epoch {best.epoch} ({by} {value:.4f})")
        _clip_first_epochs(ax, epochs, curves, list(lines.values()))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        figure.suptitle(title, fontsize="medium", wrap=True)
    return figure


def _clip_first_epochs(ax, epochs: list[int], curves: dict[str, list[float]],
                       references: list[float]) -> None:
    """Set ``ax``'s y-range from the epochs after the first (and the reference lines), when
    an earlier value lies far above it; write each value cut off at the top edge."""
    later = [v for values in curves.values() for v in values[1:] if math.isfinite(v)]
    shown = later + [v for v in references if math.isfinite(v)]
    if len(epochs) < 3 or not later:
        return
    lo, hi = min(shown), max(shown)
    everything = [v for values in curves.values() for v in values if math.isfinite(v)]
    span = (hi - lo) or abs(hi) or 1.0
    if max(everything) <= hi + 0.25 * span:
        return  # nothing is far off scale: matplotlib's own limits are fine
    top = hi + 0.1 * span
    ax.set_ylim(lo - 0.05 * span, top)
    cut = [(epoch, ", ".join(f"{name} {values[i]:.3g}" for name, values in curves.items()
                              if math.isfinite(values[i]) and values[i] > top))
           for i, epoch in enumerate(epochs)]
    for row, (epoch, text) in enumerate((e, t) for e, t in cut if t):
        ax.annotate(f"↑ epoch {epoch} off scale: {text}", (epoch, top),
                    xytext=(4, -3 - 10 * row), textcoords="offset points", ha="left", va="top",
                    fontsize="x-small", color="0.3")


def plot_learning_curve(path: Path, history: list[EpochMetrics], title: str = "", *,
                        best_epoch: int | None = None,
                        baselines: Mapping[str, float] | None = None) -> None:
    """:func:`learning_curve_figure` written to ``path`` as a PNG, atomically."""
    _save_png(learning_curve_figure(history, title, best_epoch=best_epoch,
                                    baselines=baselines), path)


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
