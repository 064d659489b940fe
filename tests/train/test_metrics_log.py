"""The learning curve a person reads: titled with what was trained, the best epoch marked, a
baseline's validation RMSE drawn, and a first-epoch spike that does not flatten the rest."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

import aerec.train.metrics_log as metrics_log
from aerec.model.baselines import BiasBaseline
from aerec.train.metrics_log import (
    EpochMetrics,
    learning_curve_figure,
    plot_learning_curve,
    reference_rmse,
)


def _history(epochs: int = 20) -> list[EpochMetrics]:
    """Losses that start far above where they settle (as the published autoencoder's do),
    validation best at epoch 12."""
    out = []
    for e in range(1, epochs + 1):
        spike = 12.0 if e == 1 else 0.0
        val = 1.0 + 0.001 * (e - 12) ** 2 + spike
        out.append(EpochMetrics(e, 0.8 + 0.5 / e + spike, 0.9 + 0.3 / e + spike / 4, val,
                                math.sqrt(val), 1.0))
    return out


def test_the_figure_says_what_was_trained_and_marks_the_best_epoch():
    history = _history()
    title = "layers 512-256-64, relu, dropout 0.1, batch 128, 20 epochs, seed 0"
    figure = learning_curve_figure(history, title, best_epoch=12,
                                   baselines={"bias baseline": 1.01})
    assert figure._suptitle.get_text() == title
    loss_ax, rmse_ax = figure.axes
    best = history[11]
    for ax, value in ((loss_ax, best.val_loss), (rmse_ax, best.val_rmse)):
        stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
        assert len(stars) == 1
        assert list(stars[0].get_xdata()) == [12] and list(stars[0].get_ydata()) == [value]
        assert "best: epoch 12" in stars[0].get_label()
    # the baseline is a horizontal line on the RMSE panel only, named with its value
    baseline = [line for line in rmse_ax.get_lines() if line.get_label().startswith("bias")]
    assert len(baseline) == 1 and set(baseline[0].get_ydata()) == {1.01}
    assert baseline[0].get_label() == "bias baseline: 1.0100"
    assert not [line for line in loss_ax.get_lines() if line.get_label().startswith("bias")]


def test_a_first_epoch_spike_is_cut_off_and_said_so():
    history = _history()
    _, rmse_ax = learning_curve_figure(history, best_epoch=12).axes
    later = max(max(m.train_rmse, m.val_rmse) for m in history[1:])
    bottom, top = rmse_ax.get_ylim()
    assert later < top < history[0].val_rmse  # the later epochs fill the panel
    notes = [t.get_text() for t in rmse_ax.texts]
    assert len(notes) == 1 and notes[0].startswith("↑ epoch 1 off scale: training")
    # without a spike the limits are matplotlib's own and nothing is written
    calm = [m for m in history if m.epoch > 1]
    _, calm_ax = learning_curve_figure(calm).axes
    assert len(calm_ax.texts) == 0
    assert calm_ax.get_ylim()[1] >= max(m.train_rmse for m in calm)


def test_without_validation_the_best_is_marked_on_training_and_the_png_is_written(tmp_path):
    history = [EpochMetrics(e, 2.0 / e, 1.5 / e, math.nan, math.nan, 0.1) for e in (1, 2, 3)]
    figure = learning_curve_figure(history, best_epoch=3)
    stars = [line for line in figure.axes[1].get_lines() if line.get_marker() == "*"]
    assert list(stars[0].get_ydata()) == [0.5] and "training" in stars[0].get_label()
    path = tmp_path / "curve.png"
    plot_learning_curve(path, history, "a title", best_epoch=3)
    assert path.read_bytes()[:4] == b"\x89PNG"


def _matrices(seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((40, 25)) < 0.4, rng.integers(1, 6, (40, 25)), 0)
    held = rng.random(dense.shape) < 0.2
    train = sp.csr_matrix(np.where(held, 0, dense).astype(np.float32))
    validation = sp.csr_matrix(np.where(held, dense, 0).astype(np.float32))
    return train, validation


def test_the_reference_line_is_the_bias_baseline_or_on_huge_data_the_mean(monkeypatch):
    train, validation = _matrices()
    lam = BiasBaseline().regularisation
    expected = BiasBaseline.select_regularisation(train, validation, grid=(lam,),
                                                  clip=(1.0, 5.0))[1][lam]
    assert reference_rmse(train, validation, (1.0, 5.0)) == {
        "bias baseline (μ + b_u + b_i)": expected}
    monkeypatch.setattr(metrics_log, "BIAS_LINE_MAX_RATINGS", 10)
    mean = train.data.mean(dtype=np.float64)
    (label, value), = reference_rmse(train, validation, (1.0, 5.0)).items()
    assert label == "predicting the training mean"
    assert value == pytest.approx(np.sqrt(np.mean((validation.data - mean) ** 2)))
    assert reference_rmse(train, sp.csr_matrix(train.shape, dtype=np.float32), None) == {}


def test_a_run_titles_its_curve_and_passes_the_best_epoch(lowrank_dir, small_config,
                                                          tmp_path, monkeypatch):
    import aerec.train.loop as loop
    from aerec.train import train

    calls = []

    def record(path, history, title="", **kwargs):
        calls.append((title, kwargs))

    monkeypatch.setattr(loop, "plot_learning_curve", record)
    result = train(lowrank_dir, tmp_path / "run", small_config)
    (title, kwargs), = calls
    assert title == small_config.describe()
    assert kwargs["best_epoch"] == result.best_epoch
    (label, value), = kwargs["baselines"].items()
    assert label.startswith("bias baseline") and 0.5 < value < result.baseline_val_rmse
