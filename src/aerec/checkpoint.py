"""Self-contained checkpoints: one ``.pt`` file that needs nothing else to recommend.

The file is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(path, weights_only=True)`` (no pickled code runs). Keys:

==================  =========================================================================
``format``          ``"aerec-checkpoint"``; ``format_version`` 1; ``kind`` ``"best"``/``"last"``
``architecture``    the model's ``architecture()`` (its kind and shape; :mod:`aerec.model.base`)
``model_state``     the network's ``state_dict``
``config``          :meth:`TrainConfig.stored` (the settings that apply to the model's kind)
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
``digest``          ``"sha256:<hex>"`` over every other entry (tensors' dtype, shape and bytes,
                    and all keys and values), written by :func:`save_checkpoint` and checked
                    by :func:`read_payload`: flipped bytes are a :class:`CheckpointError`, not a
                    silently different model. Checkpoints written before it load as before
                    (their zip CRCs are checked instead).
==================  =========================================================================

A file that is not one of these is refused with a one-line :class:`CheckpointError` naming the
path: damaged (checksum mismatch, truncated, inconsistent contents), not readable, not an aerec
checkpoint, or not a safe one (a pickle that would need code to load — never loaded).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import re
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from aerec import __version__
from aerec.config import TrainConfig
from aerec.data.ratings import RatingScale
from aerec.fileio import atomic_write, pid_alive
from aerec.model.base import RatingModel, model_from_architecture

FORMAT = "aerec-checkpoint"
FORMAT_VERSION = 1
#: The payload key holding :func:`payload_digest` (not part of what it covers).
DIGEST_KEY = "digest"
DIGEST_ALGORITHM = "sha256"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message is one line naming the file."""


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
        return self.scale.decode(codes)

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

    def check(self, n_users: int, n_movies: int) -> None:
        """Raise ``ValueError`` (saying what is wrong) unless these are CSR ratings of
        ``n_users`` users over ``n_movies`` movies with codes on the scale (vectorised)."""
        indptr, indices, codes = self.indptr, self.indices, self.codes
        if indptr.ndim != 1 or indices.ndim != 1 or codes.ndim != 1:
            raise ValueError("stored ratings are not flat arrays")
        if self.n_movies != n_movies:
            raise ValueError(f"stored ratings cover {self.n_movies} movies, the model {n_movies}")
        if len(indptr) != n_users + 1:
            raise ValueError(
                f"stored ratings have {len(indptr) - 1} user rows for {n_users} users"
            )
        if len(codes) != len(indices):
            raise ValueError(
                f"stored ratings have {len(indices)} movie indices but {len(codes)} ratings"
            )
        if indptr[0] != 0 or indptr[-1] != len(indices) or np.any(np.diff(indptr) < 0):
            raise ValueError("stored ratings' row offsets (indptr) are not a valid CSR index")
        bad = np.flatnonzero((indices < 0) | (indices >= n_movies))
        if len(bad):
            raise ValueError(
                f"stored ratings: movie index {int(indices[bad[0]])} at position {int(bad[0])} "
                f"is outside the {n_movies} movies"
            )
        if len(codes) and int(codes.max()) >= self.scale.levels:
            raise ValueError(
                f"stored ratings: rating code {int(codes.max())} is outside the scale's "
                f"{self.scale.levels} levels"
            )


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode, on CPU unless asked) and its metadata."""

    path: Path
    #: The trained network, in eval mode. ``model.predict_dense`` / ``model.predict_at``.
    model: RatingModel
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
    model: RatingModel,
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
        "config": config.stored(),
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


def payload_digest(payload: dict) -> str:
    """``"sha256:<hex>"`` of a checkpoint payload, the :data:`DIGEST_KEY` entry left out.

    Covers every key and value: a tensor by its dtype, shape and bytes (its values, however
    stored), numbers exactly (floats by ``float.hex``), strings, lists and dicts (keys in a
    canonical order) — what ``torch.save`` writes and ``torch.load`` reads back.
    """
    h = hashlib.sha256()
    _digest_into(h, {k: v for k, v in payload.items() if k != DIGEST_KEY})
    return f"{DIGEST_ALGORITHM}:{h.hexdigest()}"


def _digest_into(h: Any, value: Any) -> None:
    """Feed one value to ``h``: a type tag, then a length-prefixed canonical encoding."""

    def put(tag: bytes, data: bytes) -> None:
        h.update(tag + len(data).to_bytes(8, "little") + data)

    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.layout != torch.strided:
            t = t.to_dense()
        put(b"T", f"{t.dtype}|{tuple(t.shape)}".encode())
        flat = t.contiguous().reshape(-1)
        data = flat.view(torch.uint8).numpy() if flat.numel() else np.zeros(0, np.uint8)
        h.update(len(data).to_bytes(8, "little"))
        h.update(memoryview(data))
    elif isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: (type(kv[0]).__name__, repr(kv[0])))
        put(b"D", str(len(items)).encode())
        for k, v in items:
            _digest_into(h, k)
            _digest_into(h, v)
    elif isinstance(value, (list, tuple)):
        put(b"L", str(len(value)).encode())
        for v in value:
            _digest_into(h, v)
    elif value is None:
        put(b"N", b"")
    elif isinstance(value, (bool, np.bool_)):
        put(b"B", b"1" if value else b"0")
    elif isinstance(value, (int, np.integer)):
        put(b"I", str(int(value)).encode())
    elif isinstance(value, (float, np.floating)):
        put(b"F", float(value).hex().encode())
    elif isinstance(value, str):
        put(b"S", value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, (bytes, bytearray)):
        put(b"Y", bytes(value))
    elif isinstance(value, np.ndarray):
        _digest_into(h, torch.from_numpy(np.ascontiguousarray(value)))
    else:  # anything else weights-only loading admits (torch.dtype, torch.device, ...)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            text = f"{type(value).__module__}.{type(value).__qualname__}:{value!r}"
        put(b"O", text.encode())


#: Temporary files of :func:`save_checkpoint`: ``.NAME.PID.RANDOM.tmp`` beside ``NAME``.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+\.pt)\.(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]+\.tmp$")


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Write ``payload`` (plus its :data:`DIGEST_KEY`) to ``path`` atomically: a temporary
    file ``.NAME.PID.RANDOM.tmp`` in the same folder, fsync, ``os.replace`` — a crash never
    leaves a half-written checkpoint, and a temporary file a killed writer left behind is
    recognisable (:func:`remove_stale_temporaries`). ``payload`` itself is not changed."""
    path = Path(path)
    payload = {**payload, DIGEST_KEY: payload_digest(payload)}
    with atomic_write(path, "wb", tag=str(os.getpid())) as f:
        torch.save(payload, f)
    return path


def remove_stale_temporaries(run_dir: str | Path, started: float | None = None) -> list[Path]:
    """Remove the checkpoint temporaries (``.NAME.pt.[PID.]RANDOM.tmp``) that killed writers
    left in ``run_dir`` and its ensemble members' folders (two levels down); returns the
    removed paths.

    A file is stale when the process named in it is gone, or — when it names this process,
    or no process (older aerec) — when it was last written before ``started`` (a
    ``time.time()``, the run's start; default now). Nothing else is touched: no other names,
    no file another live process may still be writing.
    """
    run_dir = Path(run_dir)
    started = time.time() if started is None else started
    removed: list[Path] = []
    if not run_dir.is_dir():
        return removed
    # the run and its ensemble members (``members/N-name``): never a deep walk, whatever
    # folder --out names
    candidates = [tmp for pattern in (".*.tmp", "*/.*.tmp", "*/*/.*.tmp")
                  for tmp in run_dir.glob(pattern)]
    for tmp in candidates:
        match = _TEMP_NAME.match(tmp.name)
        if match is None or not tmp.is_file() or tmp.is_symlink():
            continue
        pid = match.group("pid")
        try:
            old = tmp.stat().st_mtime < started
            if pid is None:
                stale = old
            elif int(pid) == os.getpid():  # this process: stale unless written since it began
                stale = old
            else:
                stale = not pid_alive(int(pid))
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except OSError:  # gone meanwhile, or not ours to remove: leave it
            continue
    return removed


_ZIP_MAGIC = b"PK\x03\x04"
_UNSAFE = "is not a safe aerec checkpoint ({what}; aerec never runs code from a file)"


def _first_line(exc: BaseException) -> str:
    """An exception's message as one short line (a heading ending in ":" keeps the next)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text[:200]


def _zip_problem(path: Path) -> str | None:
    """What is wrong with the zip container of a checkpoint (``None``: its CRCs hold)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if not any(n.endswith("data.pkl") for n in archive.namelist()):
                return "not a PyTorch file"
    except zipfile.BadZipFile:
        return "truncated"
    except (OSError, EOFError, ValueError, RuntimeError, NotImplementedError):
        return "checksum mismatch"  # a compressed member that no longer inflates, ...
    return "checksum mismatch" if bad is not None else None


def _container_problem(path: Path) -> str | None:
    """:func:`_zip_problem` for a zip-format checkpoint; ``None`` for any other file."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != _ZIP_MAGIC:
                return None
    except OSError:
        return None
    problem = _zip_problem(path)
    return None if problem == "not a PyTorch file" else problem


def _diagnose(path: Path, exc: BaseException) -> CheckpointError:
    """The one-line error for a file ``torch.load`` (weights only) could not read."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        return CheckpointError(f"{path} is not readable ({err.strerror or _first_line(err)})")
    if size == 0:
        return CheckpointError(f"{path} is damaged (empty file)")
    if head == _ZIP_MAGIC:
        problem = _zip_problem(path)
        if problem == "not a PyTorch file":
            return CheckpointError(f"{path} is not an aerec checkpoint (a zip archive, not a "
                                   "PyTorch checkpoint)")
        if problem is not None:
            return CheckpointError(f"{path} is damaged ({problem})")
        if isinstance(exc, pickle.UnpicklingError):
            return CheckpointError(f"{path} " + _UNSAFE.format(
                what="it holds pickled objects that need code to load"))
        return CheckpointError(f"{path} is damaged (not readable: {_first_line(exc)})")
    if head[:1] == b"\x80":  # a pickle stream: an arbitrary pickle or a legacy torch file
        if isinstance(exc, EOFError):
            return CheckpointError(f"{path} is damaged (truncated)")
        return CheckpointError(f"{path} " + _UNSAFE.format(
            what="it is a plain pickle, which can run code when loaded"))
    return CheckpointError(f"{path} is not an aerec checkpoint (not a PyTorch checkpoint file)")


def read_payload(path: str | Path) -> dict:
    """``torch.load(path, weights_only=True)``, verified: a one-line :class:`CheckpointError`
    naming the file when it is damaged (digest or zip CRC mismatch, truncated), not readable,
    not an aerec checkpoint, or not safe to load (pickled code is never run)."""
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise CheckpointError(f"{path} is not a checkpoint file")
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        with warnings.catch_warnings():  # torch's advice on foreign files is not for our users
            warnings.simplefilter("ignore", UserWarning)
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError,
            TypeError, AttributeError, IndexError, MemoryError, NotImplementedError,
            UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise _diagnose(path, exc) from None
    # every stored byte: the zip's CRCs (PyTorch reads without checking them) ...
    problem = _container_problem(path)
    if problem is not None:
        raise CheckpointError(f"{path} is damaged ({problem})")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an aerec checkpoint")
    # ... and what they decode to: the digest written with the payload (none before it was)
    stored = payload.get(DIGEST_KEY)
    if stored is not None and (not isinstance(stored, str) or payload_digest(payload) != stored):
        raise CheckpointError(f"{path} is damaged (checksum mismatch)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('format_version')} is not "
            f"supported (this aerec reads version {FORMAT_VERSION})"
        )
    return payload


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint file into a ready-to-use :class:`Checkpoint` (model in eval mode).

    Besides :func:`read_payload`'s checks, the contents must agree with each other (weights
    with the architecture, id maps and stored ratings with the model's size); otherwise a
    one-line :class:`CheckpointError` says what does not."""
    path = Path(path)
    payload = read_payload(path)
    try:
        return _checkpoint(path, payload, device)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
        what = f"missing entry {exc.args[0]!r}" if isinstance(exc, KeyError) else _first_line(exc)
        raise CheckpointError(f"{path} is damaged ({what})") from None


def _checkpoint(path: Path, payload: dict, device: str | torch.device) -> Checkpoint:
    scale = RatingScale.from_dict(payload["scale"])
    model = model_from_architecture(payload["architecture"])
    try:
        model.load_state_dict(payload["model_state"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path} is damaged (weights do not fit its architecture: {_first_line(exc)})"
        ) from None
    user_ids = payload["user_ids"].numpy()
    movie_ids = payload["movie_ids"].numpy()
    titles = list(payload["titles"])
    years = payload["years"].numpy()
    stats = TrainingStats.from_payload(payload["stats"])
    n_movies = int(model.n_movies)
    for name, length in (("movie ids", len(movie_ids)), ("titles", len(titles)),
                         ("years", len(years)), ("movie counts", len(stats.movie_counts)),
                         ("movie means", len(stats.movie_means))):
        if length != n_movies:
            raise CheckpointError(
                f"{path} is damaged ({length} {name} for a model of {n_movies} movies)"
            )
    ratings = None
    if "ratings" in payload:
        ratings = StoredRatings.from_payload(payload["ratings"], scale)
        try:
            ratings.check(len(user_ids), n_movies)
        except ValueError as exc:
            raise CheckpointError(f"{path} is damaged ({exc})") from None
    model.to(device).eval()
    return Checkpoint(
        path=path,
        model=model,
        config=TrainConfig.from_dict(payload["config"], source=str(path)),
        architecture=dict(payload["architecture"]),
        kind=str(payload["kind"]),
        epoch=int(payload["epoch"]),
        user_ids=user_ids,
        movie_ids=movie_ids,
        titles=titles,
        years=years,
        scale=scale,
        stats=stats,
        best=dict(payload["best"]),
        history=[dict(h) for h in payload["history"]],
        dataset_path=str(payload["dataset"].get("path", "")),
        split=dict(payload["split"]),
        versions=dict(payload["versions"]),
        dataset=dict(payload["dataset"]),
        payload=payload,
        ratings=ratings,
    )


def manifest_json(manifest: dict) -> str:
    """A dataset manifest as compact JSON text, for the checkpoint's ``dataset`` entry."""
    return json.dumps(manifest, separators=(",", ":"), default=str)
