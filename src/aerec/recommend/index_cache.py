"""The similar-user index on disk beside its checkpoint: built once, read by every later call.

Building a :class:`~aerec.recommend.explain.NeighbourIndex` folds in every stored user of the
pool (up to 50,000): a ridge regression per user for the item-based autoencoders, a Gaussian
solve per user for Bayesian MF. That is seconds on MovieLens 100K and minutes on the Netflix
scale — nearly all the time of a first recommendation — yet it depends on nothing but the
checkpoint and the pool's settings. So it is saved beside the checkpoint (``best.pt`` →
``best.neighbours.npz``) and read back by the next process, in milliseconds.

* **Safe to read**: plain arrays (``np.load(allow_pickle=False)``), checked before use — dtypes,
  shapes, rows ascending and within the stored users, codes finite. Anything else is ignored.
* **Invalidated correctly**: the file carries a key — the checkpoint's content digest
  (``sha256:…``, checked against the checkpoint's bytes whenever it loads; file size and
  modification time for a checkpoint written before digests), the pool's settings, the number
  of stored users and code width, this file format's version and aerec's version. Any mismatch
  (a retrained ``best.pt``, other settings) means the index is rebuilt and the file replaced.
* **Best effort**: written atomically (temporary file, then rename), so a reader never sees half
  a file; where it cannot be written (a read-only folder, a full disk) the index is simply kept
  in memory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from aerec import __version__
from aerec.fileio import atomic_write

#: Version of this file's layout; bump it when the layout or the index's meaning changes.
INDEX_FORMAT = 1
#: Suffix that replaces the checkpoint's ``.pt``: ``best.pt`` → ``best.neighbours.npz``.
SUFFIX = ".neighbours.npz"


def cache_path(checkpoint_path: str | Path) -> Path:
    """Where the index of the checkpoint at ``checkpoint_path`` is kept."""
    path = Path(checkpoint_path)
    stem = path.name[: -len(".pt")] if path.name.endswith(".pt") else path.name
    return path.with_name(stem + SUFFIX)


def checkpoint_identity(checkpoint_path: str | Path, payload: dict) -> str:
    """What identifies a checkpoint's contents: its stored digest, else (older checkpoints)
    the file's size and modification time."""
    digest = payload.get("digest")
    if isinstance(digest, str) and digest:
        return digest
    stat = os.stat(checkpoint_path)
    return f"file:{stat.st_size}:{stat.st_mtime_ns}"


class IndexCache:
    """One checkpoint's index file: :meth:`load` what matches ``key``, :meth:`save` a new one.

    ``key`` is a dict of plain values (see the module docstring); it is stored as JSON and
    must compare equal for a file to be used.
    """

    def __init__(self, path: str | Path, key: dict) -> None:
        self.path = Path(path)
        self.key = {"format": "aerec-neighbour-index", "version": INDEX_FORMAT,
                    "aerec": __version__, **key}
        self._key_json = json.dumps(self.key, sort_keys=True)

    def load(self, n_users: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor] | None:
        """``(rows, codes, centre)`` from the file if it exists, matches the key and passes the
        checks (rows within ``n_users``); else ``None``."""
        try:
            with np.load(self.path, allow_pickle=False) as data:
                if str(data["key"]) != self._key_json:
                    return None
                rows, codes, centre = data["rows"], data["codes"], data["centre"]
        except (OSError, ValueError, KeyError, EOFError):  # missing, damaged, foreign
            return None
        ok = (
            rows.dtype == np.int64 and rows.ndim == 1
            and codes.dtype == np.float32 and codes.ndim == 2 and len(codes) == len(rows)
            and centre.dtype == np.float32 and centre.shape == (codes.shape[1],)
            and (len(rows) == 0 or (rows[0] >= 0 and rows[-1] < n_users))
            and bool(np.all(np.diff(rows) > 0))
            and bool(np.isfinite(codes).all()) and bool(np.isfinite(centre).all())
        )
        if not ok:
            return None
        return rows, torch.from_numpy(codes), torch.from_numpy(centre)

    def save(self, rows: np.ndarray, codes: torch.Tensor, centre: torch.Tensor) -> bool:
        """Write the index atomically; ``False`` (nothing written) where that is not possible."""
        try:
            with atomic_write(self.path, "wb", tag=str(os.getpid())) as f:
                np.savez(
                    f, key=np.array(self._key_json),
                    rows=np.ascontiguousarray(rows, dtype=np.int64),
                    codes=codes.detach().cpu().numpy().astype(np.float32, copy=False),
                    centre=centre.detach().cpu().numpy().astype(np.float32, copy=False),
                )
        except OSError:
            return False
        return True


__all__ = ["INDEX_FORMAT", "IndexCache", "cache_path", "checkpoint_identity"]
