"""The ``auto`` preset: which model to train, and how, from the data's shape and the time budget.

``aerec train DATASET --out RUN`` (preset ``auto``, 10 minutes unless ``--time-budget`` says
otherwise) turns into one of two concrete recipes before training starts, and the run records
which (``config.toml`` holds the planned configuration, the summary says why):

* **small data** — when the ``best`` ensemble's expected cost fits in 60 % of the budget:
  ``best`` itself (two denoising item-based autoencoders and the Bayesian factorisation with
  robust noise and the audience prior, refitted, weights fitted on validation, an EASE ranking
  head). Its cost grows with ``users × movies`` (the item-based members read whole user
  columns), so this is MovieLens-sized data: 54 s on MovieLens 100K, 200 s on
  ml-latest-small, over an hour on 100,000 Netflix users.
* **large data** — the Bayesian factorisation with robust noise, which scales with the number
  of ratings: as many Gibbs sweeps as half the budget allows (the other half refits the chosen
  sweep count on training + validation ratings), starting from wider random vectors
  (``init_scale`` 0.3, fewer sweeps to a given RMSE), 32 factors when at least
  :data:`MIN_SWEEPS_FOR_32` sweeps fit and 16 otherwise (a sweep costs about ``d²`` per rating;
  on Netflix-shaped data 16 factors reach the same validation RMSE per sweep), and an EASE
  ranking head for top-N lists when the ``movies × movies`` Gram matrix is affordable.

Every choice inside a recipe is made on the validation split; the budget only decides how much
work is done. The cost constants are wall-clock seconds measured on 2 cores (docs/results.md).
"""

from __future__ import annotations

from aerec.config import PRESETS, TrainConfig
from aerec.train.finish import ease_grid, ranking_seconds

#: Budget when ``auto`` is given none.
DEFAULT_BUDGET_SECONDS = 600.0
#: ``best``'s expected seconds: per user × movie cell and per training rating (fitted to its
#: measured times on MovieLens 100K, ml-latest-small and the generated demo set).
BEST_SECONDS_PER_CELL = 3.5e-5
BEST_SECONDS_PER_RATING = 2e-4
#: Share of the budget ``best``'s expected cost may take before the large-data recipe is used.
BEST_BUDGET_SHARE = 0.6
#: One robust Gibbs sweep's seconds per training rating: ``a + b d²`` (measured on the
#: 100,000-user shape: 0.39 s at d = 16, 0.80 s at d = 32 for 3.7 M ratings).
SWEEP_SECONDS_PER_RATING = 6.9e-8
SWEEP_SECONDS_PER_RATING_D2 = 1.46e-10
#: Fewest selection sweeps that make 32 factors worth their cost.
MIN_SWEEPS_FOR_32 = 400
#: The EASE ranking head's Gram matrix is dense ``movies × movies``: above this many movies
#: (Netflix's 17,770: 2.5 GB in float64, several copies while inverting) it is left out.
MAX_RANKING_MOVIES = 10_000
#: …and when choosing it would take more than this share of the budget (short budgets go to
#: the ratings; top-N lists then rank by predicted rating).
MAX_RANKING_SHARE = 0.3
#: With a short budget the head's λ is not chosen: it is this entry of the (scaled) grid.
FIXED_LAMBDA_INDEX = 6


def best_seconds(n_users: int, n_movies: int, train_ratings: int) -> float:
    """``best``'s expected training seconds on 2 cores."""
    return (BEST_SECONDS_PER_CELL * n_users * n_movies
            + BEST_SECONDS_PER_RATING * train_ratings)


def sweep_seconds(train_ratings: int, factors: int) -> float:
    """One robust Gibbs sweep's expected seconds on 2 cores."""
    return train_ratings * (SWEEP_SECONDS_PER_RATING + SWEEP_SECONDS_PER_RATING_D2 * factors**2)


def plan(
    config: TrainConfig, n_users: int, n_movies: int, train_ratings: int, seconds: float,
) -> TrainConfig:
    """The concrete configuration ``auto`` trains for this data and ``seconds`` of budget
    (what is left of ``config.time_budget``). ``config``'s split, execution and budget
    settings are kept; the recipe's ``model`` is never ``"auto"``."""
    budget = config.time_budget or DEFAULT_BUDGET_SECONDS
    seconds = min(seconds, budget)
    kept = {
        "time_budget": budget, "split_protocol": config.split_protocol,
        "test_fraction": config.test_fraction, "validation_fraction": config.validation_fraction,
        "holdout_fraction": config.holdout_fraction, "split_seed": config.split_seed,
        "threads": config.threads, "device": config.device, "seed": config.seed,
    }
    if best_seconds(n_users, n_movies, train_ratings) <= BEST_BUDGET_SHARE * seconds:
        return PRESETS["best"].replace(**kept)
    # the ranking head: λ chosen on validation when that fits in the budget's share, else a
    # fixed λ from the middle of the grid (only the blend weight chosen), else none
    ranking, lam = "none", 0.0
    for choose in (True, False):
        cost = ranking_seconds(train_ratings, n_movies, n_users, choose_lambda=choose)
        if n_movies <= MAX_RANKING_MOVIES and cost <= MAX_RANKING_SHARE * seconds:
            ranking = "ease"
            lam = 0.0 if choose else float(ease_grid(train_ratings)[FIXED_LAMBDA_INDEX])
            break
    chain_seconds = 0.5 * (seconds - (cost if ranking == "ease" else 0.0))
    factors = 32 if chain_seconds / sweep_seconds(train_ratings, 32) >= MIN_SWEEPS_FOR_32 else 16
    return PRESETS["robust-bayesian-mf"].replace(
        **kept, factors=factors, init_scale=0.3, epochs=5000, burn_in=50, kept_samples=64,
        patience=100, refit=True,
        ranking=ranking, ease_regularisation=lam,
    )


def describe(config: TrainConfig) -> str:
    """What :func:`plan` chose, in words."""
    if config.members:
        return "small data: the best ensemble (" + ", ".join(config.members) + ")"
    head = ""
    if config.ranking == "ease":
        head = (f", EASE ranking head (λ {config.ease_regularisation:g})"
                if config.ease_regularisation else ", EASE ranking head (λ on validation)")
    return (f"large data: robust Bayesian MF with {config.factors} factors, sweeps to fill the "
            "budget, refitted" + head)


__all__ = ["DEFAULT_BUDGET_SECONDS", "best_seconds", "describe", "plan", "sweep_seconds"]
