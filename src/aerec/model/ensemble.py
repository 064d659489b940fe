"""An ensemble: the weighted average of several trained models' predicted ratings.

Averaging models that err differently (item- and user-based, other seeds) lowers the error of
the average below its members' — the members are chosen and trained on the training split with
their own early stopping on the validation split, so the average is an honest configuration,
not a test-set fit. It offers the same prediction API as a single model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from aerec.model.base import ModelBase, model_from_architecture, register

#: How an ensemble weighs its members.
ENSEMBLE_WEIGHT_NAMES = ("equal", "fitted")


@dataclass(frozen=True)
class EnsembleConfig:
    """An ensemble's settings (``members = [...]``: complete runs averaged, trained by
    :mod:`aerec.train.ensemble`). Part of the flat :class:`aerec.config.TrainConfig`."""

    #: Ensemble: preset names (or TOML files) trained one after another, each with its own
    #: early stopping, and averaged; this config's split/execution settings apply to all.
    members: tuple[str, ...] = ()
    #: Ensemble: "equal" averages the members; "fitted" weighs them by non-negative least
    #: squares of the validation ratings on the members' validation predictions (models
    #: trained on the training split only; weights not normalised, so their sum can stretch
    #: the blend), the weights then applied to the refitted members.
    ensemble_weights: str = "equal"

    @staticmethod
    def describe(c: Any) -> str:
        """One line that says what the flat config ``c`` trains."""
        return (f"ensemble of {', '.join(c.members)} ({c.ensemble_weights} weights"
                + (", refitted" if c.refit else "")
                + (", EASE ranking head" if c.ranking == "ease" else "") + ")")

    @staticmethod
    def problems(c: Any) -> Iterator[str]:
        """What is wrong with the ensemble settings of the flat config ``c``."""
        if c.ensemble_weights not in ENSEMBLE_WEIGHT_NAMES:
            yield (f"ensemble_weights {c.ensemble_weights!r} is not one of "
                   f"{', '.join(ENSEMBLE_WEIGHT_NAMES)}")


@register("ensemble", config=EnsembleConfig, claims=lambda c: bool(c.members), priority=100,
          summary="a weighted average of trained models")
class Ensemble(ModelBase):
    """Weighted average of ``members`` (models with the ``predict_dense`` API, same movies).

    ``weights`` (default equal) are normalised to sum to 1 unless ``normalise`` is False — then
    they are used as given, e.g. least-squares weights whose sum, a little above or below 1,
    also stretches or shrinks the blend. State dict keys are ``members.{i}.…`` (each member's
    own) and ``weights``.
    """

    orientation = "ensemble"

    @property
    def label(self) -> str:
        """``ensemble (n)``, n the number of members."""
        return f"ensemble ({len(self.members)})"

    def __init__(
        self, members: Sequence[nn.Module], weights: Sequence[float] | None = None, *,
        normalise: bool = True,
    ):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        n_movies = {int(m.n_movies) for m in members}
        if len(n_movies) != 1:
            raise ValueError(f"ensemble members disagree on the number of movies: {n_movies}")
        self.members = nn.ModuleList(members)
        self.n_movies = n_movies.pop()
        w = torch.ones(len(members), dtype=torch.float64) if weights is None else torch.tensor(
            [float(x) for x in weights], dtype=torch.float64
        )
        if w.shape != (len(members),) or not bool((w >= 0).all()) or float(w.sum()) <= 0:
            raise ValueError(f"ensemble weights must be {len(members)} non-negative numbers")
        self.normalise = bool(normalise)
        self.register_buffer("weights", w / w.sum() if self.normalise else w)
        clips = [m.clip for m in members]
        #: The members' common clipping range (``None`` unless all clip alike).
        self.clip = clips[0] if all(c == clips[0] for c in clips) else None

    @property
    def device(self) -> torch.device:
        return self.weights.device

    @property
    def dtype(self) -> torch.dtype:
        return self.members[0].dtype

    @classmethod
    def from_architecture(cls, arch: dict, **kwargs: object) -> Ensemble:
        """An ensemble of rebuilt (untrained) members, as an ``architecture()`` dict says."""
        members = [model_from_architecture(m, **kwargs) for m in arch["members"]]
        return cls(members, arch.get("weights"), normalise=bool(arch.get("normalise", True)))

    def architecture(self) -> dict:
        """``{"kind": "ensemble", "n_movies", "members": [architecture, ...], "weights",
        "normalise"}``."""
        return {
            "kind": "ensemble",
            "n_movies": self.n_movies,
            "members": [m.architecture() for m in self.members],
            "weights": [float(x) for x in self.weights],
            "normalise": self.normalise,
        }

    def prepare_from_ratings(self, ratings: object, **options: object) -> None:
        """Every member's :meth:`prepare_from_ratings`."""
        for m in self.members:
            m.prepare_from_ratings(ratings, **options)

    def _combine(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        total = outputs[0] * float(self.weights[0])
        for w, out in zip(self.weights[1:].tolist(), outputs[1:]):
            total = total + out * w
        # weights that are not normalised stretch the blend past the members' clipped range
        return total if self.clip is None else total.clamp(*self.clip)

    @torch.no_grad()
    def predict_dense(self, indptr: object, indices: object, values: object) -> torch.Tensor:
        """Weighted average of the members' ``predict_dense``, ``(batch, n_movies)``."""
        return self._combine([m.predict_dense(indptr, indices, values) for m in self.members])

    @torch.no_grad()
    def predict_known(
        self, user_rows: object, indptr: object, indices: object, values: object
    ) -> torch.Tensor:
        """Weighted average of the members' ``predict_known`` (users also identified by their
        training row), ``(batch, n_movies)``."""
        return self._combine([
            m.predict_known(user_rows, indptr, indices, values) for m in self.members
        ])

    @torch.no_grad()
    def predict_at(
        self, indptr: object, indices: object, values: object, rows: object, cols: object
    ) -> torch.Tensor:
        """Weighted average of the members' ``predict_at``, ``(k,)``."""
        return self._combine(
            [m.predict_at(indptr, indices, values, rows, cols) for m in self.members]
        )

    @torch.no_grad()
    def leave_one_out_at(
        self, columns: object, ratings: object, tested: object, targets: object
    ) -> torch.Tensor:
        """Weighted average of the members' leave-one-out predictions, ``(m + 1, k)`` (see
        :mod:`aerec.model.leave_one_out`)."""
        return self._combine([
            m.leave_one_out_at(columns, ratings, tested, targets) for m in self.members
        ])

    @torch.no_grad()
    def code_and_predict(
        self, indptr: object, indices: object, values: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(codes, predictions)``: the members' codes, each scaled to unit length and
        concatenated ``(batch, Σ code widths)``, and the averaged predictions."""
        codes, outputs = [], []
        for m in self.members:
            code, out = m.code_and_predict(indptr, indices, values)
            codes.append(nn.functional.normalize(code.float(), dim=1))
            outputs.append(out)
        return torch.cat(codes, dim=1), self._combine(outputs)

    @torch.no_grad()
    def encode(self, indptr: object, indices: object, values: object) -> torch.Tensor:
        """Codes of a batch of users (see :meth:`code_and_predict`), from the members'
        ``encode`` (no predictions)."""
        return torch.cat([
            nn.functional.normalize(m.encode(indptr, indices, values).float(), dim=1)
            for m in self.members
        ], dim=1)
