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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from aerec.model.leave_one_out import leave_one_out_at
from aerec.checkpoint import StoredRatings

#: Users encoded per call while building the neighbour index (bounds memory).
ENCODE_BATCH = 4096
#: At most this many of a user's ratings are tested one by one in :func:`leave_one_out`.
MAX_LEAVE_ONE_OUT = 128
#: … and at most this many input entries over all leave-one-out rows (bounds the cost for
#: users with thousands of ratings: they get fewer, their highest, ratings tested).
LEAVE_ONE_OUT_BUDGET = 1 << 14


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


__all__ = [
    "NeighbourIndex",
    "gather_rows",
    "leave_one_out",
    "loo_count",
    "reason_sentence",
    "score_user",
    "stars",
]
