"""Evidence for recommendations: the user's code, similar users, and leave-one-out attribution.

Everything here uses only the model's public prediction API — ``code_and_predict``,
``encode`` and ``predict_at`` over CSR arrays of users' ratings — so it works for every model
of the family (the user-based autoencoder, the item-based one, ensembles).

* :func:`score_user` folds one user in: their code (the narrowest layer's activations for the
  user-based network) and the predictions for every movie, in one pass.
* :class:`NeighbourIndex` holds the normalised codes of the stored training users as one
  float32 matrix ``(pool, code_width)``; the most similar users of a code are one
  matrix-vector product and a ``topk`` (cosine similarity). Only users with enough ratings
  join the pool (their codes are meaningful), and the pool is capped (most active users first)
  so a search stays a few milliseconds on the Netflix scale.
* :func:`leave_one_out` re-scores chosen movies with each given rating removed — one batched
  ``predict_at`` over ``m + 1`` input rows — so a rating's *contribution* to a prediction is
  ``p(all ratings) − p(all but that one)`` in stars.
* :class:`Explainer` puts these together for one model and its catalogue: which of a user's
  ratings pulled each recommended movie up, which similar stored users rated it highly, and the
  ``reason`` sentence that sums it up.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from aerec.checkpoint import StoredRatings
from aerec.model.leave_one_out import leave_one_out_at
from aerec.recommend.index_cache import IndexCache

if TYPE_CHECKING:
    from aerec.recommend.catalogue import Catalogue

#: Users encoded per call while building the neighbour index (bounds memory).
ENCODE_BATCH = 4096
#: At most this many of a user's ratings are tested one by one in :func:`leave_one_out`.
MAX_LEAVE_ONE_OUT = 128
#: … and at most this many input entries over all leave-one-out rows (bounds the cost for
#: users with thousands of ratings: they get fewer, their highest, ratings tested).
LEAVE_ONE_OUT_BUDGET = 1 << 14
#: Similar users consulted per request (the "20 most similar users" of a reason).
DEFAULT_NEIGHBOURS = 20
#: Stored users need this many ratings to join the neighbour pool.
NEIGHBOUR_MIN_RATINGS = 5
#: At most this many stored users (the most active) form the neighbour pool.
NEIGHBOUR_POOL = 50_000
#: Similar users listed per recommendation, and ratings listed in ``pulled_up_by``.
LISTED = 5
#: A rating must lift a prediction by at least this many stars to be named in a reason.
MIN_CONTRIBUTION = 0.01
#: Best-ranked candidates whose average lift is the baseline of a rating's relative lift.
REFERENCE_MOVIES = 50
#: Best-liked movies shown per neighbour in ``Recommendations.neighbours``.
NEIGHBOUR_LIKED = 3


def score_user(
    model: nn.Module, columns: np.ndarray, ratings: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """One user through the model: ``(code (code_width,), predictions (n_movies,))``.

    ``columns`` int ``(n,)`` movie columns and ``ratings`` ``(n,)`` the user's ratings; the
    predictions equal ``model.predict_dense`` for that one row (no dropout).
    """
    columns = np.ascontiguousarray(columns, dtype=np.int64)
    ratings = np.ascontiguousarray(ratings, dtype=np.float32)
    code, predictions = model.code_and_predict(
        np.array([0, len(columns)], dtype=np.int64), columns, ratings
    )
    return code[0], predictions[0]


def loo_count(n: int) -> int:
    """How many of ``n`` ratings :func:`leave_one_out` tests (all, within the bounds)."""
    if n <= 1:
        return n
    return int(min(n, MAX_LEAVE_ONE_OUT, max(1, LEAVE_ONE_OUT_BUDGET // (n - 1))))


@torch.no_grad()
def leave_one_out(
    model: nn.Module, columns: np.ndarray, ratings: np.ndarray, targets: np.ndarray,
    tested: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """How much each given rating lifts the predictions of ``targets``.

    ``columns`` int ``(n,)`` and ``ratings`` ``(n,)`` are the user's ratings; ``targets``
    int ``(k,)`` the movies to explain; ``tested`` (indices into the ratings, default all) the
    ratings to remove one at a time — cut to :func:`loo_count` of them.

    Returns ``(tested (m,), contributions float32 (m, k))``: ``contributions[i, j]`` is the
    prediction of ``targets[j]`` with all ratings minus the one without ``tested[i]``, in
    stars, from :func:`aerec.model.leave_one_out.leave_one_out_at`: the model's exact rank-one
    downdates where it has them, else one ``predict_at`` call over ``m + 1`` rows (row 0 has
    every rating, row ``1 + i`` all but ``tested[i]``) and ``(m + 1) × k`` positions.
    """
    columns = np.asarray(columns, dtype=np.int64)
    ratings = np.asarray(ratings, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.int64)
    n = len(columns)
    if tested is None:
        tested = np.arange(n)
    tested = np.asarray(tested, dtype=np.int64)[: loo_count(n)]
    m, k = len(tested), len(targets)
    if n == 0 or m == 0 or k == 0:
        return tested, np.zeros((m, k), np.float32)
    out = leave_one_out_at(model, columns, ratings, tested, targets)
    out = out.detach().float().cpu().numpy().reshape(m + 1, k)
    return tested, (out[0][None, :] - out[1:]).astype(np.float32)


def gather_rows(
    stored: StoredRatings, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays ``(indptr, indices, codes)`` of the chosen stored users (vectorised)."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = stored.indptr[rows]
    counts = stored.indptr[rows + 1] - starts
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    positions = np.repeat(starts - indptr[:-1], counts) + np.arange(int(indptr[-1]))
    return indptr, stored.indices[positions], stored.codes[positions]


@dataclass
class NeighbourIndex:
    """Normalised codes of a pool of stored users, for cosine nearest-neighbour search.

    ``rows`` int64 ``(pool,)`` are rows of the stored ratings (ascending); ``codes`` float32
    ``(pool, code_width)`` their unit-length codes after subtracting ``centre`` (the pool's
    mean code, ``(code_width,)``; zeros when not centred). Centring removes the direction every
    code shares — with ReLU codes the raw cosine of almost any two users is above 0.99 — so the
    similarities spread out and read meaningfully; which users come out nearest is as good as
    with raw codes (measured in docs/ranking.md). All-zero codes stay zero (similarity 0).
    """

    rows: np.ndarray
    codes: torch.Tensor
    centre: torch.Tensor

    @classmethod
    def build(
        cls,
        model: nn.Module,
        stored: StoredRatings,
        *,
        min_ratings: int = 5,
        max_users: int = 50_000,
        batch_size: int = ENCODE_BATCH,
        centre: bool = True,
    ) -> NeighbourIndex:
        """Encode the pool: users with ≥ ``min_ratings`` ratings, at most ``max_users`` of
        them (the most active; ties → lower row). Memory: one ``batch_size`` batch at a time
        plus the ``(pool, code_width)`` result. ``centre``: cosine of mean-centred codes."""
        counts = stored.counts()
        eligible = np.flatnonzero(counts >= max(1, min_ratings))
        if len(eligible) > max_users:
            order = np.lexsort((eligible, -counts[eligible]))
            eligible = np.sort(eligible[order[:max_users]])
        parts = []
        for start in range(0, len(eligible), batch_size):
            rows = eligible[start : start + batch_size]
            indptr, indices, raw = gather_rows(stored, rows)
            code = model.encode(indptr, indices.astype(np.int64), stored.ratings_of(raw))
            parts.append(code.detach().float().cpu())
        codes = torch.cat(parts) if parts else torch.zeros(0, 1)
        mean = codes.mean(dim=0) if centre and len(eligible) else torch.zeros(codes.shape[1])
        codes = torch.nn.functional.normalize(codes - mean, dim=1, eps=1e-12)
        return cls(eligible.astype(np.int64), codes.contiguous(), mean)

    def __len__(self) -> int:
        return len(self.rows)

    def nearest(
        self, code: torch.Tensor, n: int, exclude_row: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` most similar pool users to one code ``(code_width,)``.

        Returns ``(stored rows int64 (≤ n,), cosine similarities float32 (≤ n,))``, most
        similar first; ``exclude_row`` (the user themself) is never returned.
        """
        if len(self.rows) == 0 or n <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        query = torch.nn.functional.normalize(
            code.float().reshape(1, -1) - self.centre, dim=1, eps=1e-12
        )
        sims = torch.mm(self.codes, query.t()).squeeze(1)
        extra = 1 if exclude_row is not None else 0
        top = torch.topk(sims, min(n + extra, len(self.rows)))
        rows = self.rows[top.indices.numpy()]
        values = top.values.numpy().astype(np.float32)
        if exclude_row is not None:
            keep = rows != exclude_row
            rows, values = rows[keep], values[keep]
        return rows[:n], values[:n]


def stars(value: float) -> str:
    """``5.0`` → ``"5★"``, ``4.5`` → ``"4.5★"``."""
    return f"{round(float(value), 2):g}★"


def _and(parts: list[str]) -> str:
    """``["a", "b", "c"]`` → ``"a, b and c"``."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def reason_sentence(
    pulled: list[dict],
    n_neighbours: int,
    n_liked: int,
    threshold: float,
    predicted: float,
) -> str:
    """One plain sentence for a recommendation.

    ``pulled``: the user's ratings that lift it most (dicts with ``label`` and ``rating``);
    ``n_liked`` of the ``n_neighbours`` most similar users rated it ≥ ``threshold``.
    """
    if pulled:
        # A low rating can lift a prediction too (people who dislike one film often like
        # another); say so rather than "because you rated it 1★". "Low" is more than one star
        # below what counts as liked: 1–2★ on a 1–5 scale.
        low = [p for p in pulled if p["rating"] < threshold - 1]
        rated = [f"{p['label']} {stars(p['rating'])}" for p in pulled if p not in low]
        disliked = [f"{p['label']} ({stars(p['rating'])})" for p in low]
        clauses = [f"rated {_and(rated)}"] if rated else []
        clauses += [f"disliked {_and(disliked)}"] if disliked else []
        first = f"Because you {' and '.join(clauses)}"
    else:
        first = f"Predicted {stars(predicted)} from your ratings as a whole"
    if n_neighbours and n_liked:
        who = "user" if n_neighbours == 1 else "users"
        return (
            f"{first}; {n_liked} of your {n_neighbours} most similar {who} rated it "
            f"{stars(threshold)} or more."
        )
    return first + "."


Evidence = tuple[list[dict], int, int]
"""Per recommended movie: ``(similar users who rated it highly, how many of the consulted
similar users rated it, how many rated it highly)``."""


class Explainer:
    """Evidence for one model's recommendations (see the module docstring).

    ``stored`` are the training users' ratings (``None``: no similar users), ``user_ids``
    their raw ids row by row; ``n_neighbours`` similar users are consulted per request, from a
    pool of at most ``neighbour_pool`` stored users with ≥ ``neighbour_min_ratings`` ratings.
    A rating ≥ ``threshold`` counts as liked. ``index_cache`` keeps the pool's codes on disk
    between processes (:mod:`aerec.recommend.index_cache`). Safe to share between threads
    (the neighbour index is built under a lock).
    """

    def __init__(
        self,
        model: nn.Module,
        catalogue: Catalogue,
        stored: StoredRatings | None,
        user_ids: np.ndarray,
        *,
        threshold: float,
        n_neighbours: int = DEFAULT_NEIGHBOURS,
        neighbour_min_ratings: int = NEIGHBOUR_MIN_RATINGS,
        neighbour_pool: int = NEIGHBOUR_POOL,
        index_cache: IndexCache | None = None,
    ) -> None:
        self.model = model
        self.catalogue = catalogue
        self.stored = stored
        self.user_ids = np.asarray(user_ids, dtype=np.int64)
        self.threshold = float(threshold)
        self.n_neighbours = int(n_neighbours)
        self.neighbour_min_ratings = int(neighbour_min_ratings)
        self.neighbour_pool = int(neighbour_pool)
        #: Where the neighbour index is kept between processes (``None``: memory only).
        self.index_cache = index_cache
        self._neighbours: NeighbourIndex | None = None
        self._lock = threading.Lock()

    def neighbour_index(self) -> NeighbourIndex | None:
        """Codes of the stored users for similar-user search (built on first use), or
        ``None`` when there are no stored ratings."""
        if self.stored is None:
            return None
        if self._neighbours is None:
            with self._lock:
                if self._neighbours is None:
                    self._neighbours = self._load_or_build()
        return self._neighbours

    def _load_or_build(self) -> NeighbourIndex:
        """The index from :attr:`index_cache` when it holds this one, else built (and saved
        there for the next process)."""
        stored = self.stored
        assert stored is not None
        cache = self.index_cache
        found = cache.load(stored.n_users) if cache is not None else None
        if found is not None:
            return NeighbourIndex(*found)
        index = NeighbourIndex.build(
            self.model, stored, min_ratings=self.neighbour_min_ratings,
            max_users=self.neighbour_pool,
        )
        if cache is not None:
            cache.save(index.rows, index.codes, index.centre)
        return index

    def pulled_up(
        self, cols: np.ndarray, vals: np.ndarray, top: np.ndarray, reference: np.ndarray
    ) -> list[list[dict]]:
        """Per recommended movie (columns ``top``), the user's ratings (``cols``, ``vals``)
        that lift it most (leave-one-out).

        A rating's ``contribution`` is the drop of the movie's prediction when that rating is
        removed, in stars. Many ratings lift *every* prediction (a 5★ raises the whole
        output), so ratings are ordered by their ``relative`` lift: the contribution minus the
        rating's average contribution over the ``reference`` movies (the best-ranked
        candidates) — what makes *this* movie stand out. Ratings lifting it by less than
        :data:`MIN_CONTRIBUTION` stars are not listed.
        """
        catalogue = self.catalogue
        tested = None
        m = loo_count(len(cols))
        if m < len(cols):  # long profiles: the highest ratings are the likely lifters
            tested = np.sort(np.argsort(-vals, kind="stable")[:m])
        targets = np.concatenate([top, reference[~np.isin(reference, top)]])
        tested, contrib = leave_one_out(self.model, cols, vals, targets, tested)
        baseline = contrib.mean(axis=1) if contrib.size else np.zeros(len(tested), np.float32)
        out: list[list[dict]] = []
        for j in range(len(top)):
            c = contrib[:, j]
            relative = c - baseline
            order = np.lexsort((tested, -relative))
            listed = [i for i in order.tolist() if c[i] >= MIN_CONTRIBUTION][:LISTED]
            out.append([
                {
                    "movie_id": int(catalogue.movie_ids[cols[tested[i]]]),
                    "title": catalogue.titles[cols[tested[i]]],
                    "year": catalogue.year(int(cols[tested[i]])),
                    "label": catalogue.label(int(cols[tested[i]])),
                    "rating": float(vals[tested[i]]),
                    "contribution": round(float(c[i]), 4),
                    "relative": round(float(relative[i]), 4),
                }
                for i in listed
            ])
        return out

    def neighbour_evidence(
        self, code: torch.Tensor, top: np.ndarray, cols: np.ndarray, self_row: int | None
    ) -> tuple[list[dict], list[Evidence]]:
        """The most similar stored users to ``code`` (but ``self_row``, the user themself)
        and, per recommended movie, who of them rated it highly: ``(neighbours, [evidence
        per movie])``. ``cols``: the movies the user rated (not shown as a neighbour's
        favourites)."""
        index = self.neighbour_index()
        empty: list[Evidence] = [([], 0, 0) for _ in top]
        if index is None or len(index) == 0 or self.n_neighbours <= 0:
            return [], empty
        rows, sims = index.nearest(code, self.n_neighbours, exclude_row=self_row)
        if len(rows) == 0:
            return [], empty
        catalogue = self.catalogue
        stored = self.stored
        indptr, indices, codes = gather_rows(stored, rows)  # type: ignore[arg-type]
        ratings = stored.ratings_of(codes)  # type: ignore[union-attr]
        owner = np.repeat(np.arange(len(rows)), np.diff(indptr))
        threshold = self.threshold - 1e-6

        # per recommended movie: the neighbours' ratings of it (≤ n_neighbours each)
        hit = np.isin(indices, top)
        h_owner, h_col, h_rating = owner[hit], indices[hit], ratings[hit]
        evidence: list[Evidence] = []
        for col in top.tolist():
            sel = h_col == col
            who, rating = h_owner[sel], h_rating[sel]
            liked = rating >= threshold
            order = np.argsort(who[liked], kind="stable")[:LISTED]  # owners are by similarity
            similar = [
                {
                    "user_id": int(self.user_ids[rows[w]]),
                    "similarity": round(float(sims[w]), 4),
                    "rating": float(r),
                }
                for w, r in zip(who[liked][order].tolist(), rating[liked][order].tolist())
            ]
            evidence.append((similar, int(sel.sum()), int(liked.sum())))

        # what each neighbour liked most, among movies the user has not rated: one sort of
        # all their fresh ratings by (neighbour, rating ↓, popularity ↓, column), then the
        # first NEIGHBOUR_LIKED of each neighbour
        rated = np.zeros(catalogue.n_movies, dtype=bool)
        rated[cols] = True
        fresh = np.flatnonzero(~rated[indices])
        f_owner, f_col, f_rating = owner[fresh], indices[fresh], ratings[fresh]
        order = np.lexsort((f_col, -catalogue.counts[f_col], -f_rating, f_owner))
        f_owner, f_col, f_rating = f_owner[order], f_col[order], f_rating[order]
        starts = np.searchsorted(f_owner, np.arange(len(rows)))
        rank = np.arange(len(f_owner)) - starts[f_owner]
        best = rank < NEIGHBOUR_LIKED
        favourites: list[list[dict]] = [[] for _ in range(len(rows))]
        for w, c, r in zip(f_owner[best].tolist(), f_col[best].tolist(),
                           f_rating[best].tolist()):
            favourites[w].append({
                "movie_id": int(catalogue.movie_ids[c]), "title": catalogue.titles[c],
                "year": catalogue.year(c), "rating": float(r),
            })
        n_ratings = np.diff(indptr).tolist()
        neighbours = [
            {
                "user_id": int(self.user_ids[row]),
                "similarity": round(float(sims[i]), 4),
                "n_ratings": int(n_ratings[i]),
                "liked": favourites[i],
            }
            for i, row in enumerate(rows.tolist())
        ]
        return neighbours, evidence

    def reason(
        self, pulled: list[dict], n_neighbours: int, n_liked: int, predicted: float
    ) -> str:
        """The ``reason`` sentence of one recommendation: up to two of the ratings that lift
        it most (``pulled``, from :meth:`pulled_up`; those that make it stand out first) and
        how many of the ``n_neighbours`` similar users liked it."""
        named = [d for d in pulled if d["relative"] > 0][:2] or pulled[:1]
        return reason_sentence(
            [{"label": d["label"], "rating": d["rating"]} for d in named],
            n_neighbours, n_liked, self.threshold, predicted,
        )


__all__ = [
    "DEFAULT_NEIGHBOURS",
    "Evidence",
    "Explainer",
    "NeighbourIndex",
    "gather_rows",
    "leave_one_out",
    "loo_count",
    "reason_sentence",
    "score_user",
    "stars",
]
