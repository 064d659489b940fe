"""Model layer: the autoencoder family (and, in ``baselines`` / ``ease``, reference predictors).

Pure math — layers, activations, outputs at requested positions. Reads no files, prints nothing.

* :class:`AutoEncoder` — row-oriented network; the published user-based model;
* :class:`ItemAutoEncoder` — item-based (rows are movies), scores users by fold-in;
* :class:`BayesianMF` — Bayesian matrix factorisation (posterior samples), scoring a user
  from their ratings by exact posterior inference, like an encoder;
* :class:`Ensemble` — weighted average of trained models;
* :class:`RankedModel` — a rating model plus an item-item ranking head for top-N lists;
* :func:`model_from_architecture` — rebuild any of them from a checkpoint's architecture dict.

Every kind implements one contract, :class:`~aerec.model.base.RatingModel`, and registers
itself by name (:mod:`aerec.model.base`): ``predict_dense(indptr, indices, values)`` →
``(batch, n_movies)``, ``predict_known``, ``predict_at(indptr, indices, values, rows, cols)``,
``rank_dense``, ``architecture()``. :func:`kinds` lists the registered kinds.
"""

from aerec.model.autoencoder import (
    ACTIVATIONS,
    AutoEncoder,
    hidden_widths,
    keep_mask,
    keep_masks,
)
from aerec.model.base import ModelBase, RatingModel, kinds, model_from_architecture, register
from aerec.model.bayesian_mf import BayesianMF
from aerec.model.ensemble import Ensemble
from aerec.model.item_autoencoder import ItemAutoEncoder
from aerec.model.ranked import RankedModel
from aerec.model.sparse_rows import SparseRows

__all__ = [
    "ACTIVATIONS",
    "AutoEncoder",
    "BayesianMF",
    "Ensemble",
    "ItemAutoEncoder",
    "ModelBase",
    "RatingModel",
    "RankedModel",
    "SparseRows",
    "kinds",
    "keep_mask",
    "keep_masks",
    "hidden_widths",
    "model_from_architecture",
    "register",
]
