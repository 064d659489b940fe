"""The ensemble family's own reporting (training the members end to end is covered by
tests/model/test_ensemble.py and tests/train/test_budget.py).

Guards against: a member's warning reaching the user unnamed, or with advice the ensemble
refuses (``--epochs`` under an ensemble).
"""

from __future__ import annotations

from aerec.train.diagnostics import training_warnings
from aerec.train.ensemble import member_warning
from aerec.train.metrics_log import EpochMetrics


def _history(val: list[float]) -> list[EpochMetrics]:
    return [EpochMetrics(epoch=i + 1, train_loss=1.0, train_rmse=1.0, val_loss=v * v,
                         val_rmse=v, seconds=1.0, lr=1e-3) for i, v in enumerate(val)]


def test_a_member_warning_names_the_member_and_advice_it_can_follow():
    warnings = training_warnings(_history([1.2, 1.1, 1.0, 0.95]), batches_per_epoch=5)
    assert any("--epochs" in w for w in warnings), warnings
    for warning in warnings:
        said = member_warning("item-denoising-300", warning)
        assert said.startswith("member item-denoising-300: ")
        if "--epochs" in warning:
            assert "--preset item-denoising-300 --epochs" in said and "trained alone" in said
