"""Self-contained checkpoints: one ``.pt`` file that needs nothing else to recommend.

The file is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(path, weights_only=True)`` (no pickled code runs). Keys:

==================  =========================================================================
``format``          ``"aerec-checkpoint"``; ``format_version`` 1; ``kind`` ``"best"``/``"last"``
``architecture``    :meth:`AutoEncoder.architecture` (n_movies, layers, activations, dropout)
``model_state``     the network's ``state_dict``
``config``          :meth:`TrainConfig.to_dict`
``epoch``           epochs completed when saved; ``history`` one dict per epoch (metrics.csv)
``best``            best epoch so far and its metrics, ``bad_epochs`` (early-stopping counter)
``user_ids``        int64 ``(n_users,)`` raw user id of each row
``movie_ids``       int64 ``(n_movies,)`` raw movie id of each column
``titles``          list of ``n_movies`` str; ``years`` int32 ``(n_movies,)`` (0 = unknown)
``scale``           ``RatingScale.to_dict()``
``stats``           training-split statistics: ``global_mean``, ``movie_counts`` int64,
                    ``movie_means`` float32 (``global_mean`` where a movie has no rating),
                    ``n_ratings``, ``n_users``
``dataset``         ``path`` (absolute), ``n_users``, ``n_movies``, ``train_ratings``,
                    ``manifest_json``
``split``           ``make_splits`` keyword arguments that recreate the exact split
``versions``        aerec, torch, numpy, python
``trainer``         (``last.pt`` only) optimiser, schedule and random-stream states for resume
``ratings``         (optional) the training users' ratings the run trained on, CSR
                    ``(n_users, n_movies)``: ``indptr`` int64 ``(n_users + 1,)``, ``indices``
                    int32 ``(nnz,)``, ``codes`` uint8 (uint16 for scales of > 256 levels)
                    ``(nnz,)`` with rating = ``scale.min + code * scale.step``; ``source``
                    ``"train"``. Lets a recommender serve known users and find similar users
                    from the checkpoint alone (about 5 bytes per rating).
==================  =========================================================================
"""

from __future__ import annotations

import json
import pickle
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from aerec import __version__
from aerec.config import TrainConfig
from aerec.data.ratings import RatingScale
from aerec.fileio import atomic_write
from aerec.model.autoencoder import AutoEncoder

FORMAT = "aerec-checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TrainingStats:
    """Statistics of the training split, for fallbacks (cold movies, unknown users)."""

    #: Mean of all training ratings.
    global_mean: float
    #: Training ratings per movie, int64 ``(n_movies,)``.
    movie_counts: np.ndarray
    #: Mean training rating per movie, float32 ``(n_movies,)``; ``global_mean`` where count is 0.
    movie_means: np.ndarray
    #: Number of training ratings.
    n_ratings: int
    #: Users with at least one training rating.
    n_users: int
    #: The training matrix these statistics came from (in memory only, never part of the stats
    #: payload): :func:`build_payload` stores it as the checkpoint's ``ratings``.
    matrix: sp.csr_matrix | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_matrix(cls, train: sp.csr_matrix) -> TrainingStats:
        """Compute from a CSR ``(n_users, n_movies)`` training matrix (vectorised); the matrix
        is kept (by reference) so checkpoints can store the training ratings."""
        n_movies = train.shape[1]
        counts = np.bincount(train.indices, minlength=n_movies).astype(np.int64)
        sums = np.bincount(train.indices, weights=train.data.astype(np.float64), minlength=n_movies)
        global_mean = float(train.data.astype(np.float64).mean()) if train.nnz else 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, sums / np.maximum(counts, 1), global_mean)
        return cls(
            global_mean, counts, means.astype(np.float32), int(train.nnz),
            int(np.count_nonzero(np.diff(train.indptr))), train,
        )

    def to_payload(self) -> dict:
        return {
            "global_mean": self.global_mean,
            "movie_counts": torch.from_numpy(self.movie_counts),
            "movie_means": torch.from_numpy(self.movie_means),
            "n_ratings": self.n_ratings,
            "n_users": self.n_users,
        }

    @classmethod
    def from_payload(cls, d: dict) -> TrainingStats:
        return cls(
            float(d["global_mean"]), d["movie_counts"].numpy(), d["movie_means"].numpy(),
            int(d["n_ratings"]), int(d["n_users"]),
        )


def _tensor(array: np.ndarray, dtype: np.dtype) -> torch.Tensor:
    """A CPU tensor over ``array`` as ``dtype`` (copied only when the dtype differs or the array
    is read-only, e.g. memory-mapped)."""
    out = np.ascontiguousarray(array, dtype=dtype)
    if not out.flags.writeable:
        out = out.copy()
    return torch.from_numpy(out)


@dataclass(frozen=True)
class StoredRatings:
    """Ratings stored in a checkpoint: CSR ``(n_users, n_movies)`` with compact rating codes.

    ``indptr`` int64 ``(n_users + 1,)``, ``indices`` int32 ``(nnz,)`` movie columns (sorted
    within a row), ``codes`` uint8/uint16 ``(nnz,)``; a rating is ``scale.minimum + code *
    scale.step``. Rows are the checkpoint's users (``user_ids``), columns its movies.
    """

    indptr: np.ndarray
    indices: np.ndarray
    codes: np.ndarray
    scale: RatingScale
    n_movies: int
    #: Which ratings these are (``"train"``: the run's training split).
    source: str = "train"

    @classmethod
    def from_matrix(
        cls, matrix: sp.csr_matrix, scale: RatingScale, source: str = "train"
    ) -> StoredRatings:
        """Encode a float CSR ``(n_users, n_movies)`` rating matrix (vectorised)."""
        matrix = sp.csr_matrix(matrix)
        code_dtype = np.uint8 if scale.levels <= 256 else np.uint16
        codes = np.rint((matrix.data.astype(np.float64) - scale.minimum) / scale.step)
        codes = np.clip(codes, 0, scale.levels - 1).astype(code_dtype)
        return cls(
            np.asarray(matrix.indptr, dtype=np.int64),
            np.asarray(matrix.indices, dtype=np.int32),
            codes, scale, int(matrix.shape[1]), source,
        )

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def counts(self) -> np.ndarray:
        """Ratings per user, int64 ``(n_users,)``."""
        return np.diff(self.indptr)

    def ratings_of(self, codes: np.ndarray) -> np.ndarray:
        """Codes → ratings, float32 (same shape)."""
        return (codes.astype(np.float32) * np.float32(self.scale.step)) + np.float32(
            self.scale.minimum
        )

    def row(self, user_row: int) -> tuple[np.ndarray, np.ndarray]:
        """One user's ``(movie columns int64, ratings float32)``."""
        lo, hi = int(self.indptr[user_row]), int(self.indptr[user_row + 1])
        return self.indices[lo:hi].astype(np.int64), self.ratings_of(self.codes[lo:hi])

    def matrix(self) -> sp.csr_matrix:
        """Float32 CSR ``(n_users, n_movies)`` of the ratings."""
        return sp.csr_matrix(
            (self.ratings_of(self.codes), self.indices, self.indptr),
            shape=(self.n_users, self.n_movies),
        )

    def to_payload(self) -> dict:
        return {
            "indptr": _tensor(self.indptr, np.int64),
            "indices": _tensor(self.indices, np.int32),
            "codes": _tensor(self.codes, self.codes.dtype),
            "n_movies": self.n_movies,
            "source": self.source,
        }

    @classmethod
    def from_payload(cls, d: dict, scale: RatingScale) -> StoredRatings:
        return cls(
            d["indptr"].numpy(), d["indices"].numpy(), d["codes"].numpy(), scale,
            int(d["n_movies"]), str(d.get("source", "train")),
        )


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode, on CPU unless asked) and its metadata."""

    path: Path
    #: The trained network, in eval mode. ``model.predict_dense`` / ``model.predict_at``.
    model: AutoEncoder
    config: TrainConfig
    architecture: dict
    #: ``"best"`` (lowest validation RMSE) or ``"last"`` (latest epoch).
    kind: str
    #: Epochs completed when this was saved.
    epoch: int
    #: Raw user id per matrix row, int64 ``(n_users,)``.
    user_ids: np.ndarray
    #: Raw movie id per model column, int64 ``(n_movies,)``.
    movie_ids: np.ndarray
    titles: list[str]
    #: Release year per movie, int32 ``(n_movies,)``, 0 when unknown.
    years: np.ndarray
    scale: RatingScale
    stats: TrainingStats
    #: Best epoch and its metrics: ``epoch``, ``train_loss``, ``train_rmse``, ``val_loss``,
    #: ``val_rmse``.
    best: dict
    #: One dict per completed epoch (as in metrics.csv, plus ``lr``).
    history: list[dict]
    #: Absolute path of the prepared dataset the run trained on ("" when unknown).
    dataset_path: str
    #: ``make_splits(ds, **split)`` recreates the run's exact train/validation/test split.
    split: dict
    versions: dict
    dataset: dict = field(default_factory=dict)
    #: The raw dict as loaded (``trainer`` state included in ``last.pt``), for resuming.
    payload: dict = field(default_factory=dict, repr=False)
    #: The training users' ratings (rows aligned with ``user_ids``), or ``None`` for a
    #: checkpoint written without them.
    ratings: StoredRatings | None = field(default=None, repr=False)

    @property
    def n_movies(self) -> int:
        return self.model.n_movies

    def movie_index(self) -> dict[int, int]:
        """Raw movie id → model column."""
        return {int(m): i for i, m in enumerate(self.movie_ids.tolist())}

    def user_index(self) -> dict[int, int]:
        """Raw user id → matrix row of the training data."""
        return {int(u): i for i, u in enumerate(self.user_ids.tolist())}


def versions() -> dict[str, str]:
    """Versions of the software that wrote a checkpoint."""
    return {
        "aerec": __version__,
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "python": platform.python_version(),
    }


def build_payload(
    *,
    kind: str,
    model: AutoEncoder,
    config: TrainConfig,
    epoch: int,
    history: list[dict],
    best: dict,
    dataset_info: dict,
    user_ids: np.ndarray,
    movie_ids: np.ndarray,
    titles: list[str],
    years: np.ndarray,
    scale: RatingScale,
    stats: TrainingStats,
    split: dict,
    trainer_state: dict | None = None,
    known_ratings: sp.csr_matrix | None = None,
) -> dict[str, Any]:
    """Assemble the checkpoint dict (see the module docstring); tensors are copied to CPU.

    ``known_ratings`` (CSR ``(n_users, n_movies)``) are stored as ``ratings``; by default the
    training matrix ``stats`` was computed from (:attr:`TrainingStats.matrix`), if any.
    """
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "architecture": model.architecture(),
        "model_state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "config": config.to_dict(),
        "epoch": int(epoch),
        "history": [dict(h) for h in history],
        "best": dict(best),
        "user_ids": torch.tensor(np.asarray(user_ids, dtype=np.int64)),
        "movie_ids": torch.tensor(np.asarray(movie_ids, dtype=np.int64)),
        "titles": [str(t) for t in titles],
        "years": torch.tensor(np.asarray(years, dtype=np.int32)),
        "scale": scale.to_dict(),
        "stats": stats.to_payload(),
        "dataset": dict(dataset_info),
        "split": dict(split),
        "versions": versions(),
    }
    if trainer_state is not None:
        payload["trainer"] = trainer_state
    stored = known_ratings if known_ratings is not None else stats.matrix
    if stored is not None:
        source = "train" if known_ratings is None else "given"
        payload["ratings"] = StoredRatings.from_matrix(stored, scale, source).to_payload()
    return payload


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file in the same folder, fsync,
    ``os.replace``), so a crash never leaves a half-written checkpoint."""
    path = Path(path)
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)
    return path


def read_payload(path: str | Path) -> dict:
    """``torch.load(path, weights_only=True)`` with a clear error for non-aerec files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        # a corrupt or foreign file, or pickled code that weights_only loading refuses
        raise ValueError(f"{path}: not a readable aerec checkpoint ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not an aerec checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format version {payload.get('format_version')} is not "
            f"supported (this aerec reads version {FORMAT_VERSION})"
        )
    return payload


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint file into a ready-to-use :class:`Checkpoint` (model in eval mode)."""
    path = Path(path)
    payload = read_payload(path)
    scale = RatingScale.from_dict(payload["scale"])
    model = AutoEncoder.from_architecture(payload["architecture"])
    model.load_state_dict(payload["model_state"])
    model.to(device).eval()
    return Checkpoint(
        path=path,
        model=model,
        config=TrainConfig.from_dict(payload["config"], source=str(path)),
        architecture=dict(payload["architecture"]),
        kind=str(payload["kind"]),
        epoch=int(payload["epoch"]),
        user_ids=payload["user_ids"].numpy(),
        movie_ids=payload["movie_ids"].numpy(),
        titles=list(payload["titles"]),
        years=payload["years"].numpy(),
        scale=scale,
        stats=TrainingStats.from_payload(payload["stats"]),
        best=dict(payload["best"]),
        history=[dict(h) for h in payload["history"]],
        dataset_path=str(payload["dataset"].get("path", "")),
        split=dict(payload["split"]),
        versions=dict(payload["versions"]),
        dataset=dict(payload["dataset"]),
        payload=payload,
        ratings=(
            StoredRatings.from_payload(payload["ratings"], scale) if "ratings" in payload else None
        ),
    )


def manifest_json(manifest: dict) -> str:
    """A dataset manifest as compact JSON text, for the checkpoint's ``dataset`` entry."""
    return json.dumps(manifest, separators=(",", ":"), default=str)
