"""A rating model with a ranking head: good predicted ratings *and* good top-N lists.

A model trained to predict ratings (RMSE) answers "how much would this user like the movie,
given that they watch it"; a top-N list should answer "which unseen movies will this user watch
and like". Ranking every unseen movie by predicted rating favours obscure movies with a few
high ratings, and loses even to a popularity list. The ranking head adds what the rating model
ignores — *which* movies a user rated — through an item-item linear autoencoder on the implicit
matrix (EASE, :mod:`aerec.model.ease`), blended with the predicted rating::

    rank_score(u, i) = (x_u B)_i + α · r̂_ui          (x_u: 1 for each movie u rated)

``B`` and ``α`` are fitted on training data and chosen on the validation split
(:func:`aerec.train.finish.attach_ranking`). Predicted ratings are the base model's, unchanged;
only :meth:`RankedModel.rank_dense` — what top-N lists should sort by — uses the head.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from aerec.model.base import ModelBase, RatingModel, model_from_architecture, register
from aerec.model.sparse_ops import sparse_input_linear
from aerec.model.sparse_rows import SparseRows

#: Ranking heads a run can add.
RANKING_NAMES = ("none", "ease")


@dataclass(frozen=True)
class RankingConfig:
    """The ranking head's settings: any model kind can get one at the end of its run (chosen
    on validation by :mod:`aerec.train.finish`). Part of the flat
    :class:`aerec.config.TrainConfig`."""

    #: Ranking head for top-N lists: "none" ranks by predicted rating; "ease" adds an
    #: item-item linear autoencoder on which movies a user rated (EASE, Steck 2019) blended
    #: with the predicted rating (``aerec.model.ranked``); ratings themselves are unchanged.
    ranking: str = "none"
    #: EASE's λ for the ranking head; 0 = choose on the validation split (NDCG@10).
    ease_regularisation: float = 0.0
    #: Weight α of the predicted rating in the ranking score; < 0 = choose on validation.
    ranking_rating_weight: float = -1.0

    @staticmethod
    def problems(c: Any) -> Iterator[str]:
        """What is wrong with the ranking settings of the flat config ``c``."""
        if c.ranking not in RANKING_NAMES:
            yield f"ranking {c.ranking!r} is not one of {', '.join(RANKING_NAMES)}"
        if not c.ease_regularisation >= 0:
            yield (f"ease_regularisation must be ≥ 0 (0 = on validation), got "
                   f"{c.ease_regularisation}")


@register("ranked", summary="a rating model plus an EASE ranking head for top-N lists")
class RankedModel(ModelBase):
    """``base`` (any model with the prediction API) plus ``item_weights`` ``B``
    ``(n_movies, n_movies)`` and the blend weight ``rating_weight`` α (buffers)."""

    orientation = "ranked"

    def __init__(
        self, base: nn.Module, item_weights: object, rating_weight: float = 0.0
    ) -> None:
        super().__init__()
        self.base = base
        self.n_movies = int(base.n_movies)
        weights = torch.as_tensor(np.asarray(item_weights), dtype=torch.float32)
        if weights.shape != (self.n_movies, self.n_movies):
            raise ValueError(
                f"item weights of shape {tuple(weights.shape)} for {self.n_movies} movies"
            )
        self.register_buffer("item_weights", weights)
        self.register_buffer("rating_weight", torch.tensor(float(rating_weight)))
        self.clip = base.clip

    @property
    def device(self) -> torch.device:
        return self.item_weights.device

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    has_ranking_head = True

    @classmethod
    def from_architecture(cls, arch: dict, **kwargs: object) -> RankedModel:
        """A rebuilt (untrained) base with an empty head, as an ``architecture()`` dict says."""
        n = int(arch["n_movies"])
        return cls(model_from_architecture(arch["base"], **kwargs), torch.zeros(n, n), 0.0)

    def prepare_from_ratings(self, ratings: object, **options: object) -> None:
        """The base model's :meth:`prepare_from_ratings`."""
        self.base.prepare_from_ratings(ratings, **options)

    def rating_model(self) -> RatingModel:
        """The base model (the predicted ratings without the ranking head)."""
        return self.base

    def architecture(self) -> dict:
        """``{"kind": "ranked", "n_movies", "base": base architecture}``."""
        return {"kind": "ranked", "n_movies": self.n_movies, "base": self.base.architecture()}

    # ------------------------------------------------------------------ ratings: the base's
    def predict_dense(self, indptr: object, indices: object, values: object) -> torch.Tensor:
        """The base model's predicted ratings ``(batch, n_movies)``."""
        return self.base.predict_dense(indptr, indices, values)

    def predict_known(
        self, user_rows: object, indptr: object, indices: object, values: object
    ) -> torch.Tensor:
        """The base model's ``predict_known`` (users also identified by their training row)."""
        return self.base.predict_known(user_rows, indptr, indices, values)

    def predict_at(
        self, indptr: object, indices: object, values: object, rows: object, cols: object
    ) -> torch.Tensor:
        """The base model's predicted ratings at ``(rows[j], cols[j])``, ``(k,)``."""
        return self.base.predict_at(indptr, indices, values, rows, cols)

    def leave_one_out_at(
        self, columns: object, ratings: object, tested: object, targets: object
    ) -> torch.Tensor:
        """The base model's leave-one-out predictions (:mod:`aerec.model.leave_one_out`)."""
        return self.base.leave_one_out_at(columns, ratings, tested, targets)

    def code_and_predict(
        self, indptr: object, indices: object, values: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The base model's ``(codes, predicted ratings)``."""
        return self.base.code_and_predict(indptr, indices, values)

    def encode(self, indptr: object, indices: object, values: object) -> torch.Tensor:
        """The base model's codes."""
        return self.base.encode(indptr, indices, values)

    # ------------------------------------------------------------------ ranking
    @torch.no_grad()
    def implicit_scores(self, indptr: object, indices: object) -> torch.Tensor:
        """``x_u B`` for a batch of users given by the movies they rated, ``(batch, n)``."""
        rated = SparseRows.from_arrays(indptr, indices, None, self.n_movies, device=self.device)
        ones = rated.with_values(torch.ones(rated.nnz, device=self.device))
        bias = torch.zeros(self.n_movies, device=self.device)
        return sparse_input_linear(ones, self.item_weights, bias)

    @torch.no_grad()
    def rank_dense(
        self, indptr: object, indices: object, values: object,
        predictions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Ranking scores of every movie, ``(batch, n_movies)`` (higher first): what top-N
        lists sort by. Arguments as for :meth:`predict_dense`; ``predictions``: those users'
        ``predict_dense`` when the caller has them already (not computed twice)."""
        scores = self.implicit_scores(indptr, indices)
        alpha = float(self.rating_weight)
        if alpha:
            if predictions is None:
                predictions = self.predict_dense(indptr, indices, values)
            scores = scores + alpha * predictions.float()
        return scores
