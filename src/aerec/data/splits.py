"""Seeded, reproducible train / validation / test splits of a prepared dataset.

Protocols (``make_splits(protocol=...)``):

``random``  each rating goes to test with probability ``test_fraction`` (exactly that share,
            chosen by a seeded permutation) — the published 80/20 protocol.
``fixed``   the test split stored at prepare time (``--test``: MovieLens ``u1.test``, Netflix
            ``probe.txt``). ``probe`` is an alias that also checks the test came from a probe file.
``user``    the new-user protocol: a ``test_fraction`` share of users (with ≥ 2 ratings) is set
            aside; ``holdout_fraction`` of each such user's ratings is the test split, the rest is
            only *given* as input at test time (``Splits.test_input``) — never trained on.
``time``    the latest ``test_fraction`` of ratings by date are the test split.
``auto``    ``fixed`` when the dataset has a stored test split, else ``random``.

The validation split is always carved from the training ratings (a seeded random
``validation_fraction`` of them), never from the test split, so model selection stays honest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from aerec.data.ratings import NO_DATE
from aerec.data.store import PreparedDataset

PROTOCOLS = ("auto", "random", "fixed", "probe", "user", "time")


@dataclass
class Splits:
    """Disjoint float32 CSR matrices of the dataset's shape ``(n_users, n_movies)``.

    ``train``       what models fit on;
    ``validation``  carved from the training data, for early stopping and model selection;
    ``test``        scored once, at the end;
    ``test_input``  the ratings fed to a model when scoring ``test`` — all non-test ratings
                    (train ∪ validation), except under the ``user`` protocol where it is the
                    held-in part of the test users' ratings.
    """

    train: sp.csr_matrix
    validation: sp.csr_matrix
    test: sp.csr_matrix
    test_input: sp.csr_matrix
    protocol: str
    params: dict = field(default_factory=dict)

    @property
    def test_users(self) -> np.ndarray:
        """Row indices of users with at least one test rating."""
        return np.flatnonzero(np.diff(self.test.indptr))


def select(matrix: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """The entries of a CSR ``matrix`` where ``keep`` (one bool per stored entry) is True."""
    kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    indptr = kept_before[matrix.indptr]
    out = sp.csr_matrix(
        (matrix.data[keep], matrix.indices[keep], indptr), shape=matrix.shape, copy=False
    )
    out.has_sorted_indices = matrix.has_sorted_indices
    return out


def union_rows(*matrices: sp.csr_matrix) -> sp.csr_matrix:
    """Entry-wise union of disjoint CSR rating matrices of one shape (e.g. train ∪ validation),
    sorted within rows. Stored ratings equal to 0 (scales starting at 0) are kept, unlike
    ``a + b``. The matrices must not share an entry: one that two of them store would appear
    twice in the result (it is not summed)."""
    shape = matrices[0].shape
    parts = [sp.csr_matrix(m) for m in matrices]
    if any(m.shape != shape for m in parts):
        raise ValueError(f"cannot join matrices of shapes {[m.shape for m in parts]}")
    rows = np.concatenate(
        [np.repeat(np.arange(shape[0], dtype=np.int64), np.diff(m.indptr)) for m in parts]
    )
    cols = np.concatenate([m.indices.astype(np.int64) for m in parts])
    data = np.concatenate([m.data for m in parts])
    order = np.lexsort((cols, rows))
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    out = sp.csr_matrix((data[order], cols[order].astype(np.int32), indptr), shape=shape)
    out.has_sorted_indices = True
    return out


def _exact_share(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """Boolean mask with exactly ``round(n * fraction)`` True entries at random positions."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: int(round(n * fraction))]] = True
    return mask


def _rows_of(matrix: sp.csr_matrix) -> np.ndarray:
    """Row index of every stored entry, in CSR order."""
    return np.repeat(np.arange(matrix.shape[0], dtype=np.int32), np.diff(matrix.indptr))


def make_splits(
    ds: PreparedDataset,
    protocol: str = "auto",
    *,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    holdout_fraction: float = 0.5,
    seed: int = 0,
) -> Splits:
    """Split ``ds`` by ``protocol`` (see the module docstring); the same arguments give the
    same split on every run and machine."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown split protocol {protocol!r}; choose one of {PROTOCOLS}")
    for name, value in [
        ("test_fraction", test_fraction),
        ("validation_fraction", validation_fraction),
        ("holdout_fraction", holdout_fraction),
    ]:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if protocol == "auto":
        protocol = "fixed" if ds.test_matrix is not None else "random"
    # Independent streams per purpose, so changing one fraction leaves the other splits alone.
    test_rng, val_rng = (np.random.default_rng([seed, k]) for k in (1, 2))
    matrix = ds.matrix
    test_users_mask = None

    if protocol in ("fixed", "probe"):
        if ds.test_matrix is None:
            raise ValueError(
                f"{ds.path}: protocol {protocol!r} needs a test split stored at prepare time "
                "(aerec data prepare ... --test FILE)"
            )
        if protocol == "probe" and ds.manifest.get("test_kind") != "probe":
            raise ValueError(f"{ds.path}: the stored test split was not made from a probe file")
        rest, test = matrix, ds.test_matrix
    elif protocol == "random":
        in_test = _exact_share(test_rng, matrix.nnz, test_fraction)
        rest, test = select(matrix, ~in_test), select(matrix, in_test)
    elif protocol == "time":
        days = ds.days
        if days is None or np.all(np.asarray(days) == NO_DATE):
            raise ValueError(f"{ds.path}: protocol 'time' needs rating dates, and this has none")
        days = np.asarray(days)
        order_key = days.astype(np.float64) + test_rng.random(len(days))  # random tie-break
        k = int(round(len(days) * test_fraction))
        in_test = np.zeros(len(days), bool)
        if k:
            cutoff = np.partition(order_key, len(days) - k)[len(days) - k]
            in_test = order_key >= cutoff
        rest, test = select(matrix, ~in_test), select(matrix, in_test)
    else:  # user
        counts = np.diff(matrix.indptr)
        eligible = np.flatnonzero(counts >= 2)
        chosen = test_rng.permutation(eligible)[: int(round(len(eligible) * test_fraction))]
        test_users_mask = np.zeros(matrix.shape[0], bool)
        test_users_mask[chosen] = True
        entry_is_test_user = test_users_mask[_rows_of(matrix)]
        held_out = entry_is_test_user & (test_rng.random(matrix.nnz) < holdout_fraction)
        # Every test user keeps at least one given rating and holds out at least one.
        rows = _rows_of(matrix)
        first = matrix.indptr[:-1][counts > 0]
        held_out[first] = False
        last = matrix.indptr[1:][counts > 0] - 1
        held_out[last[test_users_mask[rows[last]]]] = True
        test = select(matrix, held_out)
        given = select(matrix, entry_is_test_user & ~held_out)
        rest = select(matrix, ~entry_is_test_user)

    in_val = _exact_share(val_rng, rest.nnz, validation_fraction)
    train, validation = select(rest, ~in_val), select(rest, in_val)
    test_input = given if protocol == "user" else rest
    return Splits(
        train=train,
        validation=validation,
        test=test,
        test_input=test_input,
        protocol=protocol,
        params={
            "protocol": protocol,
            "test_fraction": test_fraction,
            "validation_fraction": validation_fraction,
            "holdout_fraction": holdout_fraction,
            "seed": seed,
        },
    )
