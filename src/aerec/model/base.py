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
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
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
    #: The predictions are ratings on the scale (RMSE applies); False for scores that only
    #: rank (EASE, popularity counts).
    predicts_ratings: bool
    #: The ranking means something (top-N metrics apply); False for a constant predictor.
    ranks_items: bool
    #: A short name for result tables (``aerec evaluate``).
    label: str

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

    def prepare_from_ratings(self, ratings: Any, **options: Any) -> None: ...

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
    predicts_ratings: bool = True
    ranks_items: bool = True
    #: What a row of the model's own training matrix is: "user" or "item" (item-based models
    #: keep state about the training users; see ``prepare_inference``).
    orientation: str = "user"

    @property
    def label(self) -> str:
        """A short name for result tables: the kind, or for a model wrapping another (a
        ranking head) the label of its rating model. Subclasses may set a ``label`` of
        their own (a class attribute or property)."""
        inner = self.rating_model()
        return inner.label if inner is not self else self.kind

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
        """Store what predicting needs from the training data ``rows`` in this model's own
        orientation; nothing by default."""

    def prepare_from_ratings(self, ratings: Any, **options: Any) -> None:
        """:meth:`prepare_inference` from a ``(n_users, n_movies)`` CSR of ratings, whatever
        the model's orientation."""
        self.prepare_inference(ratings, **options)

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
    #: The family's typed configuration class (``None`` for kinds that are not trained alone):
    #: its fields are part of the flat :class:`aerec.config.TrainConfig`.
    config: type | None = None
    #: The value of ``TrainConfig.model`` that selects this kind (``None``: chosen otherwise).
    model: str | None = None
    #: Which training configurations describe this kind (``claims(config)``); the claims of
    #: higher ``priority`` are tried first (:func:`kind_of`).
    claims: Callable[[Any], bool] | None = None
    priority: int = 0
    #: The family's trainer factory, attached by ``aerec.train`` (:func:`register_trainer`).
    trainer: Callable[..., Any] | None = None


_REGISTRY: dict[str, Entry] = {}
_MODEL_PACKAGE = "aerec.model"
_TRAINERS_MODULE = "aerec.train.families"


def register(
    kind: str, *, summary: str = "", config: type | None = None, model: str | None = None,
    claims: Callable[[Any], bool] | None = None, priority: int = 0,
) -> Callable[[type], type]:
    """Class decorator: register ``cls`` as model kind ``kind`` (sets ``cls.kind``).

    ``config`` is the family's settings class; a training configuration describes this kind
    when ``claims(config)`` holds (by default: ``config.model == model``)."""
    if claims is None and model is not None:
        def claims(c: Any) -> bool:
            return c.model == model

    def decorate(cls: type) -> type:
        if kind in _REGISTRY and _REGISTRY[kind].cls is not cls:
            raise ValueError(f"model kind {kind!r} is already registered "
                             f"({_REGISTRY[kind].cls.__name__})")
        cls.kind = kind
        doc = (cls.__doc__ or "").strip().splitlines()
        _REGISTRY[kind] = Entry(kind, cls, summary or (doc[0] if doc else kind), config,
                                model, claims, priority)
        return cls

    return decorate


_loaded: list[bool] = []


def _load_built_ins() -> None:
    """Import every module of the model package (once): each registers the kinds it defines,
    so a new kind is one new module."""
    if _loaded:
        return
    _loaded.append(True)
    package = importlib.import_module(_MODEL_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{_MODEL_PACKAGE}.{info.name}")


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
    """Attach the trainer ``factory`` of kind ``kind`` (called by ``aerec.train.families``)."""
    entry(kind).trainer = factory


def kind_of(config: Any) -> str | None:
    """The kind a training configuration describes: the claim of highest priority that
    holds (``None`` when none does, e.g. ``model = "auto"`` before it is planned)."""
    _load_built_ins()
    claimed = [e for e in _REGISTRY.values() if e.claims is not None and e.claims(config)]
    return max(claimed, key=lambda e: e.priority).kind if claimed else None


def model_names() -> tuple[str, ...]:
    """The values ``TrainConfig.model`` may name a kind by."""
    _load_built_ins()
    return tuple(dict.fromkeys(e.model for e in _REGISTRY.values() if e.model))


def config_classes() -> tuple[type, ...]:
    """The families' configuration classes, each once, in registration order."""
    _load_built_ins()
    return tuple(dict.fromkeys(e.config for e in _REGISTRY.values() if e.config is not None))


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


def csr_arrays(matrix: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr, indices, values)`` of a SciPy CSR matrix of users' ratings (int64, int64,
    float32): the arguments the contract's methods take for those users."""
    csr = sp.csr_matrix(matrix)
    return (csr.indptr.astype(np.int64), csr.indices.astype(np.int64),
            csr.data.astype(np.float32))


__all__ = [
    "Entry",
    "ModelBase",
    "RatingModel",
    "architecture_kind",
    "config_class",
    "csr_arrays",
    "entry",
    "kinds",
    "model_from_architecture",
    "register",
    "register_trainer",
    "config_classes",
    "kind_of",
    "model_names",
    "trainer_for",
]
