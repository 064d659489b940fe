"""The model contract: one protocol every model kind implements, and the registry of kinds.

Every model — the user- and item-based autoencoders, the Bayesian factorisation, EASE, the
baselines, an ensemble of any of them, a model with a ranking head — is a :class:`RatingModel`:

* it scores users **from their ratings**: ``predict_dense(indptr, indices, values)`` takes the
  CSR arrays of a batch of users' known ratings (a new user is just a row of ratings) and
  returns predicted ratings of every movie, ``(batch, n_movies)``;
* ``predict_known(user_rows, indptr, indices, values)`` is the same for users the model was
  trained on, also identified by their training row (models that keep per-user state use it,
  the rest ignore ``user_rows``);
* ``predict_at(indptr, indices, values, rows, cols)`` predicts only at given (batch row, movie)
  positions, ``(k,)`` — one signature for every kind;
* ``rank_dense(indptr, indices, values)`` gives the scores top-N lists sort by (the predicted
  ratings unless the model has a ranking head: ``has_ranking_head``);
* ``architecture()`` describes the model as plain types (``{"kind": ..., ...}``) and
  ``state_dict()`` holds its numbers: together a checkpoint rebuilds it with
  :func:`model_from_architecture` — no pickled code.

Kinds register themselves by name with :func:`register`. What depends on the kind — rebuilding
a checkpoint's model, the configuration a family reads, the trainer that fits it — is looked up
here, never switched on elsewhere (``aerec.train`` attaches each family's trainer with
:func:`register_trainer`, so this module imports nothing from training).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn


@runtime_checkable
class RatingModel(Protocol):
    """What every model kind offers (see the module docstring)."""

    #: The registry name of the model's kind.
    kind: str
    #: Movies the model scores (columns of every prediction).
    n_movies: int
    #: The rating scale's ``(min, max)`` predictions are clamped to, or ``None``.
    clip: tuple[float, float] | None
    #: True when ``rank_dense`` differs from the predicted ratings (a ranking head).
    has_ranking_head: bool

    def predict_dense(self, indptr: Any, indices: Any, values: Any) -> torch.Tensor: ...

    def predict_known(
        self, user_rows: Any, indptr: Any, indices: Any, values: Any
    ) -> torch.Tensor: ...

    def predict_at(
        self, indptr: Any, indices: Any, values: Any, rows: Any, cols: Any
    ) -> torch.Tensor: ...

    def rank_dense(self, indptr: Any, indices: Any, values: Any) -> torch.Tensor: ...

    def code_and_predict(
        self, indptr: Any, indices: Any, values: Any
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def leave_one_out_at(
        self, columns: Any, ratings: Any, tested: Any, targets: Any
    ) -> torch.Tensor: ...

    def prepare_inference(self, rows: Any, **options: Any) -> None: ...

    def rating_model(self) -> RatingModel: ...

    def architecture(self) -> dict: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict: ...

    def load_state_dict(self, state: dict, strict: bool = True) -> Any: ...


class ModelBase(nn.Module):
    """Defaults of the :class:`RatingModel` contract for ``nn.Module`` models.

    A subclass implements ``predict_dense`` (or ``code_and_predict``), ``predict_at`` and
    ``architecture``; the rest has a sensible default here.
    """

    kind: str = ""
    clip: tuple[float, float] | None = None
    has_ranking_head: bool = False
    #: What a row of the model's own training matrix is: "user" or "item" (item-based models
    #: keep state about the training users; see ``prepare_inference``).
    orientation: str = "user"

    def predict_known(
        self, user_rows: Any, indptr: Any, indices: Any, values: Any
    ) -> torch.Tensor:
        """:meth:`predict_dense`: the user's ratings are all this model needs (``user_rows``
        is accepted for the common contract and ignored)."""
        return self.predict_dense(indptr, indices, values)

    def rank_dense(self, indptr: Any, indices: Any, values: Any) -> torch.Tensor:
        """Ranking scores: the predicted ratings (models without a ranking head)."""
        return self.predict_dense(indptr, indices, values)

    def code_and_predict(
        self, indptr: Any, indices: Any, values: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(codes, predictions)``; models without a code of their own use the predictions
        as the user's description."""
        predictions = self.predict_dense(indptr, indices, values)
        return predictions, predictions

    def encode(self, indptr: Any, indices: Any, values: Any) -> torch.Tensor:
        """Codes of a batch of users (see :meth:`code_and_predict`)."""
        return self.code_and_predict(indptr, indices, values)[0]

    def leave_one_out_at(
        self, columns: Any, ratings: Any, tested: Any, targets: Any
    ) -> torch.Tensor:
        """Leave-one-out predictions by one ``predict_at`` over the ``m + 1`` rating rows
        (:func:`aerec.model.leave_one_out.by_rows`); models with a cheaper exact path
        override this."""
        from aerec.model.leave_one_out import by_rows

        return by_rows(self, columns, ratings, tested, targets)

    def prepare_inference(self, rows: Any, **options: Any) -> None:
        """Store what predicting needs from the training data; nothing by default."""

    def rating_model(self) -> RatingModel:
        """The model whose predicted ratings these are, without a ranking head (itself)."""
        return self  # type: ignore[return-value]

    @classmethod
    def from_architecture(cls, arch: dict, **kwargs: Any) -> RatingModel:
        """An untrained model shaped as ``arch`` describes (load its ``state_dict`` next)."""
        raise NotImplementedError(f"{cls.__name__} cannot be rebuilt from an architecture")


# ------------------------------------------------------------------------------- registry
@dataclass
class Entry:
    """A registered model kind."""

    kind: str
    #: The model class; ``cls.from_architecture(arch, **kwargs)`` rebuilds a checkpoint's model.
    cls: type
    #: One line on what the kind is (``aerec train --help``, the README).
    summary: str
    #: The family's typed configuration class (``None`` for kinds that are not trained alone).
    config: type | None = None
    #: The family's trainer factory, attached by ``aerec.train`` (:func:`register_trainer`).
    trainer: Callable[..., Any] | None = None
    #: A small fitted instance for the contract tests: ``example(train_csr, clip)``.
    example: Callable[..., Any] | None = None
    aliases: tuple[str, ...] = field(default=())


_REGISTRY: dict[str, Entry] = {}
#: Modules whose import registers the built-in kinds (imported on first lookup).
_BUILT_IN = (
    "aerec.model.autoencoder",
    "aerec.model.item_autoencoder",
    "aerec.model.bayesian_mf",
    "aerec.model.ensemble",
    "aerec.model.ranked",
    "aerec.model.ease",
    "aerec.model.baselines",
)
_TRAINERS_MODULE = "aerec.train.families"


def register(
    kind: str, *, summary: str = "", config: type | None = None,
    example: Callable[..., Any] | None = None,
) -> Callable[[type], type]:
    """Class decorator: register ``cls`` as model kind ``kind`` (sets ``cls.kind``)."""

    def decorate(cls: type) -> type:
        if kind in _REGISTRY and _REGISTRY[kind].cls is not cls:
            raise ValueError(f"model kind {kind!r} is already registered "
                             f"({_REGISTRY[kind].cls.__name__})")
        cls.kind = kind
        doc = (cls.__doc__ or "").strip().splitlines()
        _REGISTRY[kind] = Entry(kind, cls, summary or (doc[0] if doc else kind), config,
                                example=example)
        return cls

    return decorate


def _load_built_ins() -> None:
    for module in _BUILT_IN:
        importlib.import_module(module)


def entry(kind: str) -> Entry:
    """The registered kind ``kind``; ``KeyError`` naming the known ones otherwise."""
    if kind not in _REGISTRY:
        _load_built_ins()
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise KeyError(
            f"unknown model kind {kind!r}; known kinds: {', '.join(kinds())}"
        ) from None


def kinds() -> tuple[str, ...]:
    """Every registered kind, in registration order."""
    _load_built_ins()
    return tuple(_REGISTRY)


def register_trainer(kind: str, factory: Callable[..., Any]) -> None:
    """Attach the trainer factory of family ``kind`` (called by ``aerec.train.families``)."""
    entry(kind).trainer = factory


def trainer_for(kind: str) -> Callable[..., Any]:
    """The trainer factory of family ``kind`` (importing the training families first)."""
    found = entry(kind)
    if found.trainer is None:
        importlib.import_module(_TRAINERS_MODULE)
    if found.trainer is None:
        raise KeyError(f"model kind {kind!r} has no trainer: it is not trained on its own")
    return found.trainer


def config_class(kind: str) -> type:
    """The typed configuration class of family ``kind``."""
    found = entry(kind)
    if found.config is None:
        raise KeyError(f"model kind {kind!r} has no configuration of its own")
    return found.config


def architecture_kind(arch: dict) -> str:
    """The kind an ``architecture()`` dict describes. Autoencoder dicts carry no ``kind``
    (checkpoints of the published network read as before kinds existed): their
    ``orientation`` decides."""
    if "kind" in arch:
        return str(arch["kind"])
    return "item-autoencoder" if arch.get("orientation", "user") == "item" else "autoencoder"


def model_from_architecture(arch: dict, **kwargs: Any) -> RatingModel:
    """An untrained model shaped as ``arch`` describes (load its ``state_dict`` next).
    ``kwargs`` (``dtype``, ``generator``) go to every network."""
    return entry(architecture_kind(arch)).cls.from_architecture(arch, **kwargs)


def as_numpy(values: Any, dtype: Any = None) -> np.ndarray:
    """An array from NumPy, a list or a (CPU or GPU) tensor."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


__all__ = [
    "Entry",
    "ModelBase",
    "RatingModel",
    "architecture_kind",
    "config_class",
    "entry",
    "kinds",
    "model_from_architecture",
    "register",
    "register_trainer",
    "trainer_for",
]
