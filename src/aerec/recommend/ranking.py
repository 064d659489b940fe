"""Ranking modes: how predicted ratings become the order of a top-N list.

Ranking purely by predicted rating lets movies with a handful of training ratings dominate: the
network's outputs for rarely seen movies are noisy, and the noise that lands high wins. The
confidence-aware modes temper a prediction ``p`` by how many training ratings ``n`` its movie
has (``p̄`` is the user's average prediction over all movies, ``R`` the scale's range, e.g. 4
for 1–5 stars):

============  ==================================================  ===========================
mode          score                                               parameter (default)
============  ==================================================  ===========================
head          the model's own ranking head, ``model.rank_dense``  — (models trained with
              (EASE on what the user rated + α·p, chosen on the     ``ranking = "ease"``)
              validation split; :mod:`aerec.model.ranked`)
predicted     ``p``                                               —
damped        ``(n·p + C·p̄) / (n + C)``: shrunk toward the user's  ``C`` = 20 ratings
              average prediction
lcb           ``p − β·R / sqrt(n + 1)``: a lower confidence bound ``β`` = 0.25
blend         ``p + γ·R · log(1+n) / log(1+n_max)``: popularity    ``γ`` = 2
============  ==================================================  ===========================

Movies without any training rating are never ranked (score ``-inf``): their outputs are
untrained. A mode may carry its parameter after a colon: ``"damped:50"``, ``"lcb:0.5"``,
``"blend:0.5"``.

The default was chosen by NDCG@10 on new-user holdouts of generated data and MovieLens 100K
(docs/ranking.md, ``benchmarks/bench_ranking.py``): ``head`` when the model has a ranking head
(far ahead on MovieLens), otherwise :data:`DEFAULT_RANKING` (``blend:2``). With the published
network folded in from a few ratings, ``predicted`` scores near zero (rarely rated movies fill
the list), and a strong popularity prior gives the best top-10s of the prediction-only modes,
slightly above the popularity baseline.

``popular`` (not a mode for personal lists) scores the documented fallback for users with no
ratings: each movie's damped (Bayesian) mean rating ``(n·mean + C·g) / (n + C)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Every ranking mode, with its default parameter (``None``: no parameter).
RANKING_MODES: dict[str, float | None] = {
    "head": None,
    "predicted": None,
    "damped": 20.0,
    "lcb": 0.25,
    "blend": 2.0,
}
#: The mode used when none is asked for and the model has no ranking head (chosen by
#: measurement, docs/ranking.md). With a head, the recommender defaults to ``"head"``.
DEFAULT_RANKING = "blend"
#: The mode that sorts by the model's own ranking head (``model.rank_dense``).
HEAD = "head"
#: Prior strength (in ratings) of the fallback's damped mean.
POPULAR_PRIOR = 25.0


@dataclass(frozen=True)
class Ranking:
    """A parsed ranking mode: ``name`` and its ``parameter`` (``None`` for ``predicted``)."""

    name: str
    parameter: float | None

    @property
    def label(self) -> str:
        """Canonical text form, e.g. ``"damped:20"``."""
        return self.name if self.parameter is None else f"{self.name}:{self.parameter:g}"

    def scores(
        self,
        predicted: np.ndarray,
        counts: np.ndarray,
        scale_range: float,
    ) -> np.ndarray:
        """Ranking scores, float32, same shape as ``predicted`` (``(n_movies,)`` or
        ``(batch, n_movies)``); ``counts`` ``(n_movies,)`` training ratings per movie.

        Movies without training ratings score ``-inf`` in every mode: the network has never
        been trained to predict them, so their outputs mean nothing.
        """
        if self.name == HEAD:
            raise ValueError("the 'head' ranking scores with the model's rank_dense, not from "
                             "predicted ratings")
        p = np.asarray(predicted, dtype=np.float32)
        n = np.asarray(counts, dtype=np.float32)
        seen = n > 0
        a = 0.0 if self.parameter is None else float(self.parameter)
        if self.name == "predicted":
            out = p.copy()
        elif self.name == "damped":
            # shrink toward the user's own average prediction (over movies with ratings), which
            # stays meaningful when a sparse user's predictions are all biased low or high
            if seen.any():
                centre = p[..., seen].mean(axis=-1, keepdims=True)
            else:
                centre = p.mean(axis=-1, keepdims=True)
            out = (n * p + np.float32(a) * centre) / (n + np.float32(a))
        elif self.name == "lcb":
            out = p - np.float32(a * scale_range) / np.sqrt(n + np.float32(1.0))
        else:  # blend
            top = max(float(n.max()) if n.size else 0.0, 1.0)
            out = p + np.float32(a * scale_range) * (np.log1p(n) / np.float32(np.log1p(top)))
        out = np.asarray(out, dtype=np.float32)
        out[..., ~seen] = -np.inf
        return out


def parse_ranking(mode: str | None) -> Ranking:
    """``"damped"`` / ``"damped:50"`` / ``None`` (the default) → :class:`Ranking`.

    Raises ``ValueError`` naming the known modes for anything else.
    """
    text = DEFAULT_RANKING if mode is None else str(mode).strip().lower()
    name, _, param = text.partition(":")
    if name not in RANKING_MODES:
        raise ValueError(
            f"unknown ranking {mode!r}; choose one of {', '.join(RANKING_MODES)} "
            "(optionally with a parameter, e.g. damped:50)"
        )
    default = RANKING_MODES[name]
    if default is None:
        if param:
            raise ValueError(f"ranking {name!r} takes no parameter")
        return Ranking(name, None)
    if not param:
        return Ranking(name, default)
    try:
        value = float(param)
    except ValueError:
        raise ValueError(f"ranking {mode!r}: parameter {param!r} is not a number") from None
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"ranking {mode!r}: parameter must be a finite number ≥ 0")
    return Ranking(name, value)


#: Why a list is in its order, per ranking, in words for the person reading it (no formulas):
#: every mode but ``predicted`` can put a lower predicted rating above a higher one.
ORDER_NOTES = {
    HEAD: "Ordered by how likely you are to watch and like each movie (a blend of predicted "
          "stars and what people with your tastes rated), so a lower predicted rating can "
          "rank higher.",
    "predicted": "Ordered by predicted stars, highest first.",
    "damped": "Ordered by predicted stars, pulled towards your average prediction for movies "
              "with few ratings (their predictions are less certain), so a lower predicted "
              "rating can rank higher.",
    "lcb": "Ordered by a cautious estimate of your stars: the prediction minus a margin that "
           "is larger for movies with few ratings, so a lower predicted rating can rank higher.",
    "blend": "Ordered by how likely you are to watch and like each movie (predicted stars plus "
             "a bonus for movies many people have rated), so a lower predicted rating can rank "
             "higher.",
    "popular": "Ordered by average rating, pulled towards the overall average for movies with "
               "few ratings.",
}


def order_note(mode: str) -> str:
    """One plain sentence saying why a list ranked by ``mode`` (a :class:`Ranking` name, or
    ``"popular"`` for the fallback) is in its order."""
    return ORDER_NOTES[mode]


def damped_means(
    movie_means: np.ndarray, counts: np.ndarray, global_mean: float, prior: float = POPULAR_PRIOR
) -> np.ndarray:
    """Bayesian mean rating per movie, float32 ``(n_movies,)``:
    ``(n·mean + prior·g) / (n + prior)``."""
    n = np.asarray(counts, dtype=np.float64)
    m = np.asarray(movie_means, dtype=np.float64)
    return ((n * m + prior * global_mean) / (n + prior)).astype(np.float32)


__all__ = [
    "DEFAULT_RANKING",
    "HEAD",
    "POPULAR_PRIOR",
    "ORDER_NOTES",
    "RANKING_MODES",
    "Ranking",
    "damped_means",
    "order_note",
    "parse_ranking",
]
