"""Model layer: the autoencoder family (and, in ``baselines`` / ``ease``, reference predictors).

Pure math — layers, activations, outputs at requested positions. Reads no files, prints nothing.

* :class:`AutoEncoder` — row-oriented network; the published user-based model;
* :class:`ItemAutoEncoder` — item-based (rows are movies), scores users by fold-in;
* :class:`BayesianMF` — Bayesian matrix factorisation (posterior samples), scoring a user
  from their ratings by exact posterior inference, like an encoder;
* :class:`Ensemble` — weighted average of trained models;
* :class:`RankedModel` — a rating model plus an item-item ranking head for top-N lists;
* :func:`model_from_architecture` — rebuild any of them from a checkpoint's architecture dict.

All share the prediction API ``predict_dense(indptr, indices, values)`` →
``(batch, n_movies)``, ``predict_at(...)`` and ``code_and_predict(...)``.
"""

from aerec.model.autoencoder import (
    ACTIVATIONS,
    AutoEncoder,
    hidden_widths,
    keep_mask,
    keep_masks,
)
from aerec.model.bayesian_mf import BayesianMF
from aerec.model.ensemble import Ensemble
from aerec.model.factory import model_from_architecture
from aerec.model.item_autoencoder import ItemAutoEncoder
from aerec.model.ranked import RankedModel
from aerec.model.sparse_rows import SparseRows

__all__ = [
    "ACTIVATIONS",
    "AutoEncoder",
    "BayesianMF",
    "Ensemble",
    "ItemAutoEncoder",
    "RankedModel",
    "SparseRows",
    "keep_mask",
    "keep_masks",
    "hidden_widths",
    "model_from_architecture",
]
