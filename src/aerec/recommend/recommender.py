"""The :class:`Recommender`: a loaded checkpoint → explained top-N lists for anyone.

Everything comes from the checkpoint alone (``Recommender.load("runs/seed")``): the network,
id maps, titles, rating scale, training statistics and the training users' ratings.

* A **new user** is *folded in*: their ratings go straight through the trained autoencoder (no
  retraining) and the outputs score every movie. Movies they rated are never recommended.
* A **known user** (``recommend_for_user``) is folded in from all their stored training
  ratings — exactly the same call as passing those ratings to ``recommend``.
* **No usable ratings** (empty input) gets the documented fallback, :meth:`Recommender.popular`:
  well-rated popular movies, ranked by average rating pulled towards the overall average for
  movies with few ratings (a Bayesian mean), among movies with at least the median number of
  training ratings, flagged ``fallback=True`` with a ``note``.
* **Every known user at once** (:meth:`Recommender.recommend_all`, ``aerec recommend
  --all-users``): top-N lists in bounded batches of users, :mod:`aerec.recommend.batch`.

Each recommendation carries evidence (``explain=True``, the default): the most similar stored
users in the autoencoder's code space who rated the movie highly, and which of the user's own
ratings pulled it up (leave-one-out, in stars), summed up in one ``reason`` sentence.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aerec.checkpoint import Checkpoint, load_checkpoint
from aerec.data.ratings import RatingScale
from aerec.recommend.batch import (
    DEFAULT_BATCH_SIZE,
    UserBatch,
    WriteSummary,
    iter_recommendations,
    write_recommendations,
)
from aerec.recommend.catalogue import Catalogue
from aerec.recommend.explain import (
    DEFAULT_NEIGHBOURS,
    NEIGHBOUR_MIN_RATINGS,
    NEIGHBOUR_POOL,
    REFERENCE_MOVIES,
    Evidence,
    Explainer,
    NeighbourIndex,
    score_user,
    stars,
)
from aerec.recommend.index_cache import IndexCache, cache_path, checkpoint_identity
from aerec.recommend.inputs import KnownUsers, RatingParser, check_k
from aerec.recommend.ranking import (
    DEFAULT_RANKING,
    HEAD,
    POPULAR_PRIOR,
    Ranking,
    damped_means,
    order_note,
    parse_ranking,
)
from aerec.recommend.results import MovieInfo, Recommendation, Recommendations
from aerec.recommend.titles import TitleIndex


class Recommender:
    """Top-N recommendations from one checkpoint (see the module docstring).

    The facade over the pieces that do the work: the :class:`Catalogue` (movies, titles,
    filters), :class:`RatingParser` and :class:`KnownUsers` (request input), the
    :class:`Explainer` (evidence and reasons) and :mod:`aerec.recommend.ranking`.

    Safe to share between threads (lazy indexes are built under a lock; inference is
    read-only). ``n_neighbours`` similar users are consulted per request, from a pool of at most
    ``neighbour_pool`` stored users with ≥ ``neighbour_min_ratings`` ratings. With
    ``cache_index`` (the default of :meth:`load`, which knows the model is the file's) the
    pool's codes are built once per checkpoint and kept beside it (``best.pt`` →
    ``best.neighbours.npz``, :mod:`aerec.recommend.index_cache`).
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        n_neighbours: int = DEFAULT_NEIGHBOURS,
        neighbour_min_ratings: int = NEIGHBOUR_MIN_RATINGS,
        neighbour_pool: int = NEIGHBOUR_POOL,
        cache_index: bool = False,
    ) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model.eval()
        self.scale: RatingScale = checkpoint.scale
        self.catalogue = Catalogue.from_checkpoint(checkpoint)
        catalogue = self.catalogue
        self.n_movies: int = catalogue.n_movies
        self.movie_ids = catalogue.movie_ids
        self.titles: list[str] = catalogue.titles
        self.years = catalogue.years
        self.counts = catalogue.counts
        self.movie_means = catalogue.means
        self.global_mean = float(checkpoint.stats.global_mean)
        self.user_ids = np.asarray(checkpoint.user_ids, dtype=np.int64)
        self.stored = checkpoint.ratings
        self.threshold = float(self.scale.relevance_threshold())
        self.known_users = KnownUsers(self.user_ids, self.stored, self.path.name)
        self.rating_parser = RatingParser(catalogue, self.scale)
        self.explainer = Explainer(
            self.model, catalogue, self.stored, self.user_ids, threshold=self.threshold,
            n_neighbours=n_neighbours, neighbour_min_ratings=neighbour_min_ratings,
            neighbour_pool=neighbour_pool,
            index_cache=self._index_cache(neighbour_min_ratings, neighbour_pool)
            if cache_index else None,
        )
        #: The model has its own ranking head (:mod:`aerec.model.ranked`).
        self.has_head = bool(self.model.has_ranking_head)
        #: The ranking used when none is asked for: the head if there is one, else
        #: :data:`~aerec.recommend.ranking.DEFAULT_RANKING` (docs/ranking.md).
        self.default_ranking = HEAD if self.has_head else DEFAULT_RANKING
        self._head_takes_predictions = self.has_head and "predictions" in inspect.signature(
            self.model.rank_dense).parameters

    # -------------------------------------------------------------------- construction
    def _index_cache(self, min_ratings: int, pool: int) -> IndexCache | None:
        """The on-disk home of this checkpoint's similar-user index (beside the file),
        keyed by its contents and the pool's settings; ``None`` without stored ratings."""
        if self.stored is None or not self.path.is_file():
            return None
        return IndexCache(cache_path(self.path), {
            "checkpoint": checkpoint_identity(self.path, self.checkpoint.payload),
            "min_ratings": int(min_ratings), "max_users": int(pool), "centre": True,
            "n_users": int(self.stored.n_users), "n_movies": int(self.n_movies),
        })

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        warm: bool = False,
        **options: Any,
    ) -> Recommender:
        """Load from a run directory (its ``best.pt``, else ``last.pt``) or a ``.pt`` file.

        Needs nothing but the checkpoint. ``warm=True`` builds the title and neighbour indexes
        now instead of on first use (a server should, to keep first requests fast).
        ``options`` go to the constructor (``n_neighbours``, ``neighbour_min_ratings``,
        ``neighbour_pool``, ``cache_index``: keep the similar-user index beside the checkpoint,
        default True here).
        """
        path = Path(path)
        if path.is_dir():
            for name in ("best.pt", "last.pt"):
                if (path / name).is_file():
                    path = path / name
                    break
            else:
                raise FileNotFoundError(
                    f"{path}: no best.pt or last.pt in this folder; pass a run directory or a "
                    "checkpoint file"
                )
        elif not path.exists():
            raise FileNotFoundError(f"{path}: no such run directory or checkpoint")
        options.setdefault("cache_index", True)
        recommender = cls(load_checkpoint(path, device=device), **options)
        if warm:
            recommender.warm()
        return recommender

    def warm(self) -> Recommender:
        """Build the lazily built indexes (titles, similar-user codes) now."""
        self.title_index()
        self.neighbour_index()
        return self

    @property
    def path(self) -> Path:
        return Path(self.checkpoint.path)

    @property
    def n_users(self) -> int:
        """Stored users (0 when the checkpoint holds no training ratings)."""
        return 0 if self.stored is None else self.stored.n_users

    @property
    def n_neighbours(self) -> int:
        """Similar users consulted per request."""
        return self.explainer.n_neighbours

    @property
    def neighbour_min_ratings(self) -> int:
        """Ratings a stored user needs to join the neighbour pool."""
        return self.explainer.neighbour_min_ratings

    @property
    def neighbour_pool(self) -> int:
        """Most stored users in the neighbour pool."""
        return self.explainer.neighbour_pool

    def title_index(self) -> TitleIndex:
        """The :class:`TitleIndex` over this model's movies (built on first use)."""
        return self.catalogue.title_index()

    def neighbour_index(self) -> NeighbourIndex | None:
        """Codes of the stored users for similar-user search (built on first use), or
        ``None`` when the checkpoint holds no training ratings."""
        return self.explainer.neighbour_index()

    # -------------------------------------------------------------------- movies and users
    def movie(self, movie_id: int) -> MovieInfo:
        """The movie with raw id ``movie_id``; raises :class:`UnknownMovie`."""
        return self.catalogue.movie(movie_id)

    def resolve_movie(self, ref: int | str) -> int:
        """Raw movie id of ``ref``: an int (or an all-digit string) is an id; any other string
        is a title, matched forgivingly (:mod:`aerec.recommend.titles`). An all-digit string
        that is no known id is tried as a title (e.g. "1984").

        Raises :class:`UnknownMovie` (with ``suggestions``) or :class:`AmbiguousTitle` (with
        ``candidates``).
        """
        return int(self.movie_ids[self.catalogue.resolve_column(ref)])

    def search_titles(self, query: str, limit: int = 10) -> list[MovieInfo]:
        """Movies for an incremental search box: exact, prefix and substring title matches
        (most-rated first), then typo-tolerant matches."""
        return self.catalogue.search_titles(query, limit)

    def user_ratings(self, user_id: int) -> list[dict]:
        """A known user's stored training ratings, ``{"movie_id", "title", "year", "rating"}``."""
        _row, cols, ratings = self.known_users.ratings(user_id)
        return self.catalogue.rated(cols, ratings)

    def parse_ratings(
        self, ratings: Mapping[int | str, float] | Sequence[Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A user's ratings → ``(movie columns int64 (n,), ratings float32 (n,))``.

        Accepts a mapping ``{movie: rating}``, a sequence of ``(movie, rating)`` pairs, or a
        sequence of dicts ``{"movie_id" | "title" | "movie": ..., "rating": ...}``; a movie is a
        raw id or a title. Raises :class:`InvalidRating` for ratings that are not finite
        numbers within the scale, or for one movie rated twice with different ratings.
        """
        return self.rating_parser.parse(ratings)

    # -------------------------------------------------------------------- recommending
    def ranking_mode(self, ranking: str | None = None) -> Ranking:
        """The parsed ranking mode (``None``: :attr:`default_ranking`); ``"head"`` needs a
        model with a ranking head."""
        mode = parse_ranking(self.default_ranking if ranking is None else ranking)
        if mode.name == HEAD and not self.has_head:
            raise ValueError(
                "this model has no ranking head (train with ranking = \"ease\" for one); "
                "choose predicted, damped, lcb or blend"
            )
        return mode

    def recommend(
        self,
        ratings: Mapping[int | str, float] | Sequence[tuple[int | str, float]],
        k: int = 10,
        *,
        min_ratings: int | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        ranking: str | None = None,
        explain: bool = True,
    ) -> Recommendations:
        """Top-``k`` movies for a user who gives ``ratings`` (movie id or title → rating).

        Movies in ``ratings`` are never recommended. Filters: ``min_ratings`` (training
        ratings per movie), ``year_min``/``year_max`` (release year; movies of unknown year are
        dropped by a year filter). ``ranking``: a mode of :mod:`aerec.recommend.ranking`
        (default :attr:`default_ranking`: the model's ranking head if it has one, else
        :data:`~aerec.recommend.ranking.DEFAULT_RANKING`). Empty ``ratings`` → the
        :meth:`popular` fallback. ``explain=False`` skips similar users and attribution.
        """
        k = check_k(k)
        mode = self.ranking_mode(ranking)
        eligible = self.catalogue.eligible(min_ratings, year_min, year_max)
        cols, vals, resolved = self.rating_parser.resolve(ratings)
        if len(cols) == 0:
            out = self._popular(
                k, eligible, np.zeros(0, np.int64), explain=explain,
                note=(
                    "No ratings given, so these are the fallback: well-rated popular movies "
                    "among those with enough ratings, not personal recommendations. Rate a "
                    "few movies to get your own."
                ),
            )
        else:
            out = self._recommend_columns(cols, vals, k, eligible, mode, explain)
        out.resolved = resolved
        return out

    def recommend_for_user(
        self,
        user_id: int,
        k: int = 10,
        *,
        min_ratings: int | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        ranking: str | None = None,
        explain: bool = True,
    ) -> Recommendations:
        """Top-``k`` for a known user (raw id), folded in from all their stored training
        ratings — the same list as ``recommend`` given those ratings (the user themself is
        left out of their similar users). Raises :class:`UnknownUser`."""
        k = check_k(k)
        mode = self.ranking_mode(ranking)
        eligible = self.catalogue.eligible(min_ratings, year_min, year_max)
        row, cols, vals = self.known_users.ratings(user_id)
        if len(cols) == 0:
            out = self._popular(
                k, eligible, cols, explain=explain,
                note=(
                    f"User {int(user_id)} has no stored training ratings, so these are the "
                    "fallback: well-rated popular movies, not personal recommendations."
                ),
            )
        else:
            out = self._recommend_columns(cols, vals, k, eligible, mode, explain, self_row=row)
        out.user_id = int(user_id)
        return out

    def popular(
        self,
        k: int = 10,
        *,
        min_ratings: int | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        exclude: Iterable[int | str] = (),
        explain: bool = True,
    ) -> Recommendations:
        """The documented fallback: well-rated popular movies.

        Movies are ranked by their average training rating pulled towards the overall average
        for movies with few ratings (a Bayesian mean,
        ``(n·mean + 25·global_mean) / (n + 25)``) among movies with at least ``min_ratings``
        training ratings (default: the median count of rated movies). ``exclude``: movies
        (ids or titles) to leave out. ``fallback`` is True and ``note`` says what this is.
        """
        k = check_k(k)
        eligible = self.catalogue.eligible(min_ratings, year_min, year_max)
        cols = np.asarray([self.catalogue.resolve_column(m) for m in exclude], dtype=np.int64)
        return self._popular(
            k, eligible, cols, explain=explain, default_min=min_ratings is None,
            note=(
                "Well-rated popular movies among those with enough ratings, the same for "
                "everyone."
            ),
        )

    def popular_min_ratings(self) -> int:
        """Default least training ratings for the fallback: the median over rated movies."""
        return self.catalogue.popular_min_ratings()

    def predict(self, ratings: Mapping[int | str, float] | Sequence[Any]) -> np.ndarray:
        """Predicted ratings for every movie (clipped to the scale), float32 ``(n_movies,)``,
        for a user giving ``ratings`` (aligned with ``movie_ids``)."""
        cols, vals = self.parse_ratings(ratings)
        out = score_user(self.model, cols, vals)[1].detach().float().cpu().numpy()
        return np.clip(out, self.scale.minimum, self.scale.maximum)

    # -------------------------------------------------------------------- the lists
    def _popular(
        self, k: int, eligible: np.ndarray, exclude_cols: np.ndarray, *, explain: bool,
        note: str, default_min: bool = True,
    ) -> Recommendations:
        catalogue = self.catalogue
        eligible = eligible.copy()
        if default_min:
            eligible &= self.counts >= catalogue.popular_min_ratings()
        eligible[exclude_cols] = False
        scores = damped_means(self.movie_means, self.counts, self.global_mean, POPULAR_PRIOR)
        top = _top(scores, eligible, k)
        items = []
        for col in top.tolist():
            n, mean = int(self.counts[col]), float(self.movie_means[col])
            items.append(Recommendation(
                movie_id=int(self.movie_ids[col]), title=self.titles[col],
                year=catalogue.year(col), predicted_rating=round(mean, 4),
                score=round(float(scores[col]), 4),
                reason=(
                    f"Popular and well rated: {mean:.1f}★ average over {n:,} ratings."
                    if explain else f"{mean:.1f}★ average over {n:,} ratings."
                ),
                n_ratings=n,
            ))
        if not items:
            note = note + " No movie passes the filters."
        return Recommendations(items=items, fallback=True, note=note, ranking="popular",
                               order_note=order_note("popular"))

    def ranking_scores(
        self, mode: Ranking, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
        predictions: torch.Tensor,
    ) -> np.ndarray:
        """What lists are ordered by, float32 ``(batch, n_movies)``, for users given as CSR
        arrays of their ratings whose ``predictions`` (the model's ``predict_dense``,
        ``(batch, n_movies)``) are computed already: the model's ranking head, or the mode's
        scores of the predicted ratings; untrained movies are ``-inf`` either way."""
        if mode.name == HEAD:
            if self._head_takes_predictions:  # spare the head a second pass of the network
                head = self.model.rank_dense(indptr, indices, values, predictions=predictions)
            else:
                head = self.model.rank_dense(indptr, indices, values)
            scores = head.detach().float().cpu().numpy().copy()
            scores[:, self.counts == 0] = -np.inf  # as in every mode: untrained never rank
            return scores
        predicted = predictions.detach().float().cpu().numpy()
        return mode.scores(predicted, self.counts, self.scale.maximum - self.scale.minimum)

    def recommend_all(
        self,
        k: int = 10,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        users: Sequence[int] | None = None,
        min_ratings: int | None = None,
        year_min: int | None = None,
        year_max: int | None = None,
        ranking: str | None = None,
    ) -> Iterator[UserBatch]:
        """Top-``k`` lists of every known user (or of ``users``, raw ids), one
        :class:`~aerec.recommend.batch.UserBatch` of flat columns per ``batch_size`` users —
        memory bounded by one ``(batch_size, n_movies)`` block. Each list is the one
        :meth:`recommend_for_user` gives with ``explain=False``. To write them all to a file,
        :meth:`write_all`."""
        return iter_recommendations(
            self, k, batch_size=batch_size, users=users, min_ratings=min_ratings,
            year_min=year_min, year_max=year_max, ranking=ranking,
        )

    def write_all(
        self,
        path: str | Path,
        k: int = 10,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: Callable[[int], None] | None = None,
        **options: Any,
    ) -> WriteSummary:
        """Every known user's top-``k`` (:meth:`recommend_all`) written to ``path`` —
        ``.parquet`` or ``.csv``, columns ``user_id, rank, movie_id, title, score`` — atomically
        (:func:`aerec.recommend.batch.write_recommendations`)."""
        return write_recommendations(
            self, path, k, batch_size=batch_size, progress=progress, **options
        )

    def _recommend_columns(
        self,
        cols: np.ndarray,
        vals: np.ndarray,
        k: int,
        eligible: np.ndarray,
        mode: Ranking,
        explain: bool,
        self_row: int | None = None,
    ) -> Recommendations:
        code, out = score_user(self.model, cols, vals)
        predicted = out.detach().float().cpu().numpy()
        indptr = np.array([0, len(cols)], dtype=np.int64)
        scores = self.ranking_scores(mode, indptr, cols, vals, out[None])[0]
        eligible = eligible.copy()
        eligible[cols] = False
        top = _top(scores, eligible, k)
        clipped = np.clip(predicted, self.scale.minimum, self.scale.maximum)

        explainer = self.explainer
        pulled: list[list[dict]] = [[] for _ in top]
        evidence: list[Evidence] = [([], 0, 0) for _ in top]
        neighbours: list[dict] = []
        if explain and len(top):
            reference = _top(scores, eligible, max(REFERENCE_MOVIES, k))
            pulled = explainer.pulled_up(cols, vals, top, reference)
            neighbours, evidence = explainer.neighbour_evidence(code, top, cols, self_row)

        items = []
        for j, col in enumerate(top.tolist()):
            p = float(clipped[col])
            similar, n_rated, n_liked = evidence[j]
            if explain:
                reason = explainer.reason(pulled[j], len(neighbours), n_liked, p)
            else:
                reason = f"Predicted {stars(p)} for you."
            items.append(Recommendation(
                movie_id=int(self.movie_ids[col]), title=self.titles[col],
                year=self.catalogue.year(col), predicted_rating=round(p, 4),
                score=round(float(scores[col]), 4), reason=reason, similar_users=similar,
                pulled_up_by=[{k2: v for k2, v in d.items() if k2 != "label"} for d in pulled[j]],
                n_ratings=int(self.counts[col]), neighbours_rated=n_rated,
                neighbours_liked=n_liked,
            ))
        note = None
        if len(top) < k:
            note = (
                f"Only {len(top)} movie(s) pass the filters and are not already rated."
                if len(top) else "No movie passes the filters that you have not rated already."
            )
        return Recommendations(
            items=items, fallback=False, note=note, neighbours=neighbours,
            used_ratings=self.catalogue.rated(cols, vals), ranking=mode.label,
            order_note=order_note(mode.name),
        )


def _top(scores: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
    """Columns of the ``k`` best eligible scores, best first (ties → lower column); ``-inf``
    and NaN scores are never chosen."""
    cand = np.flatnonzero(eligible & (scores > -np.inf))
    if len(cand) == 0:
        return cand
    s = scores[cand]
    if len(cand) > k:
        part = np.argpartition(-s, k - 1)[:k]
        # include every candidate tied with the k-th score so ties break by column
        kth = s[part].min()
        part = np.flatnonzero(s >= kth)
        cand, s = cand[part], s[part]
    order = np.lexsort((cand, -s))[:k]
    return cand[order]


__all__ = ["MovieInfo", "Recommendation", "Recommendations", "Recommender"]
