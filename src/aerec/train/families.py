"""Which trainer fits which model kind: the training side of the registry.

Each family's trainer is attached here to the model kinds it trains
(:func:`aerec.model.base.register_trainer`); which kind a configuration describes is the
registry's answer (:func:`aerec.model.base.kind_of`). Nothing else in training asks which kind
a run is.
"""

from __future__ import annotations

from aerec.config import TrainConfig
from aerec.model.base import kind_of, register_trainer
from aerec.train.autoencoder import AutoEncoderFamily
from aerec.train.bayesian import BayesianFamily
from aerec.train.ensemble import EnsembleFamily

register_trainer("autoencoder", AutoEncoderFamily)
register_trainer("item-autoencoder", AutoEncoderFamily)
register_trainer("bayesian-mf", BayesianFamily)
register_trainer("ensemble", EnsembleFamily)


def family_kind(config: TrainConfig) -> str:
    """The model kind a (planned) configuration trains."""
    kind = kind_of(config)
    if kind is None:
        raise ValueError(f"no model family trains model = {config.model!r}")
    return kind
