"""Rebuild any model of the family from its ``architecture()`` dict (checkpoint loading)."""

from __future__ import annotations

import torch
from torch import nn

from aerec.model.autoencoder import AutoEncoder
from aerec.model.bayesian_mf import BayesianMF
from aerec.model.ensemble import Ensemble
from aerec.model.item_autoencoder import ItemAutoEncoder
from aerec.model.ranked import RankedModel


def model_from_architecture(arch: dict, **kwargs: object) -> nn.Module:
    """An untrained model shaped as ``arch`` describes (load its ``state_dict`` next).

    ``kind`` ``"ranked"`` → :class:`RankedModel` around its rebuilt base; ``"ensemble"`` →
    :class:`Ensemble` of rebuilt members; ``"bayesian-mf"`` → :class:`BayesianMF`; otherwise an
    :class:`AutoEncoder` (``orientation`` ``"user"``, the default for dicts written before
    orientations existed) or :class:`ItemAutoEncoder` (``"item"``). ``kwargs`` (``dtype``,
    ``generator``) go to every network.
    """
    if arch.get("kind") == "ranked":
        n = int(arch["n_movies"])
        base = model_from_architecture(arch["base"], **kwargs)
        return RankedModel(base, torch.zeros(n, n), 0.0)
    if arch.get("kind") == "ensemble":
        members = [model_from_architecture(m, **kwargs) for m in arch["members"]]
        return Ensemble(members, arch.get("weights"), normalise=bool(arch.get("normalise", True)))
    if arch.get("kind") == "bayesian-mf":
        clip = arch.get("clip")
        return BayesianMF(
            int(arch["n_movies"]), int(arch["factors"]), int(arch["samples"]),
            clip=None if clip is None else (float(clip[0]), float(clip[1])), **kwargs,
        )
    layers = [int(w) for w in arch["layers"]]
    common = dict(
        layers=layers,
        activation=str(arch["activation"]),
        output_activation=str(arch["output_activation"]),
        dropout=float(arch["dropout"]),
        **AutoEncoder._options(arch),
        **kwargs,
    )
    if arch.get("orientation", "user") == "item":
        return ItemAutoEncoder(int(arch["n_movies"]), int(arch["n_users"]), **common)
    return AutoEncoder(int(arch["n_movies"]), **common)  # type: ignore[arg-type]
