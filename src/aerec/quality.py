"""Is a trained model better than the simplest baselines? The comparison, its words, and its
record in the run directory.

``aerec evaluate`` scores every model beside the **bias baseline** (a user offset plus a movie
offset, no model at all) and **popularity** (the same most-liked movies for everyone). A model
whose test RMSE is no better than the bias baseline's, or whose NDCG@k is no better than
popularity's, is worse than doing without it for that purpose, and every command that shows or
uses such a model says so:

* :func:`shortfalls` — the phrases (``"test RMSE 1.0490 is no better than the bias baseline's
  0.9604"``) for one model's row against the baseline rows;
* :func:`write_record` — ``aerec evaluate`` keeps the comparison in the run directory as
  ``evaluation.json``: one entry per checkpoint file (``best.pt``, ``last.pt``), tied to that
  file by its digest, size and modification time, so a later change of the checkpoint (a resumed
  run) makes the entry stale instead of wrong;
* :func:`quality_warning` — what ``aerec recommend`` (or any other user of a checkpoint) prints:
  the recorded shortfalls as one sentence, or ``None`` when the model was not found worse (or
  has not been evaluated since it last changed). It needs only the run directory.

Rows are plain mappings with ``rmse`` and ``ndcg`` (``None`` when a model has no such metric),
as :class:`aerec.evaluate.ModelResult` gives them; this module sits below ``evaluate`` and
``recommend`` and imports neither.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aerec.fileio import atomic_write
from aerec.jsonable import plain

__all__ = [
    "BIAS_BASELINE",
    "EVALUATION_FILE",
    "POPULARITY",
    "quality_warning",
    "read_record",
    "shortfalls",
    "write_record",
]

#: The record ``aerec evaluate`` writes into a run directory.
EVALUATION_FILE = "evaluation.json"
RECORD_FORMAT = "aerec-evaluation"
RECORD_VERSION = 1
#: Names of the baseline rows compared against (``BiasBaseline.name``, ``Popularity.name``).
BIAS_BASELINE = "bias baseline"
POPULARITY = "popularity"


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def shortfalls(
    model: Mapping[str, Any],
    bias: Mapping[str, Any] | None,
    popularity: Mapping[str, Any] | None,
    k: int,
) -> list[str]:
    """Where ``model`` is no better than a baseline, one phrase per metric:

    * RMSE ≥ the bias baseline's: its predicted ratings are no better than user + movie
      offsets;
    * NDCG@k ≤ popularity's: its top-k lists are no better than everyone getting the same
      most-liked movies.

    A metric missing on either side (``None`` or NaN) is not compared. Empty when the model is
    better on both.
    """
    found = []
    rmse = _number(model.get("rmse"))
    bias_rmse = _number(bias.get("rmse")) if bias else None
    if rmse is not None and bias_rmse is not None and rmse >= bias_rmse:
        found.append(f"test RMSE {rmse:.4f} is no better than the bias baseline's "
                     f"{bias_rmse:.4f} (a user and a movie offset, no model)")
    ndcg = _number(model.get("ndcg"))
    popular = _number(popularity.get("ndcg")) if popularity else None
    if ndcg is not None and popular is not None and ndcg <= popular:
        found.append(f"NDCG@{k} {ndcg:.4f} is no better than popularity's {popular:.4f} "
                     "(the same most-liked movies for everyone)")
    return found


def _checkpoint_file(source: Any) -> tuple[Path, str | None]:
    """The checkpoint file and its digest (when known) of a run directory, a ``.pt`` path, or a
    loaded checkpoint (anything with ``path`` and ``payload``, such as
    :class:`aerec.checkpoint.Checkpoint`). A run directory means its ``best.pt``, else its
    ``last.pt``, as :meth:`aerec.recommend.Recommender.load` reads it."""
    if hasattr(source, "path") and hasattr(source, "payload"):
        return Path(source.path), (source.payload or {}).get("digest")
    path = Path(source)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name, None
        return path / "best.pt", None
    return path, None


def _identity(path: Path, digest: str | None) -> dict:
    stat = path.stat()
    return {"digest": digest, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _same_file(recorded: Mapping[str, Any], path: Path, digest: str | None) -> bool:
    """Whether ``recorded`` (an entry's identity) is still the checkpoint at ``path``: the same
    digest when both are known (a copied run directory keeps its record), else the same size
    and modification time."""
    try:
        now = _identity(path, digest)
    except OSError:
        return False
    if digest and recorded.get("digest"):
        return recorded["digest"] == digest
    return recorded.get("bytes") == now["bytes"] and recorded.get("mtime_ns") == now["mtime_ns"]


def read_record(run_dir: str | Path) -> dict:
    """``run_dir/evaluation.json`` as a dict (``{"checkpoints": {}}`` when absent or unreadable:
    a damaged record is only a missing warning, never an error)."""
    path = Path(run_dir) / EVALUATION_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"format": RECORD_FORMAT, "format_version": RECORD_VERSION, "checkpoints": {}}
    if not isinstance(record, dict) or not isinstance(record.get("checkpoints"), dict):
        return {"format": RECORD_FORMAT, "format_version": RECORD_VERSION, "checkpoints": {}}
    return record


def write_record(
    checkpoint: str | Path,
    *,
    digest: str | None = None,
    model: Mapping[str, Any],
    baselines: Mapping[str, Mapping[str, Any]],
    k: int,
    test_ratings: int,
    split: Mapping[str, Any],
) -> Path | None:
    """Record one checkpoint's evaluation in its run directory's ``evaluation.json`` (other
    checkpoints' entries are kept; the file is replaced atomically).

    ``checkpoint`` is the ``.pt`` file evaluated and ``digest`` its payload digest (when it has
    one); ``model`` is its row, ``baselines`` the baseline rows by name. Returns the file
    written, or ``None`` when the folder cannot be written (a read-only run directory still
    evaluates; it only cannot warn later).
    """
    path = Path(checkpoint)
    bias, popularity = baselines.get(BIAS_BASELINE), baselines.get(POPULARITY)
    try:
        entry = {
            **_identity(path, digest),
            "evaluated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "k": int(k),
            "test_ratings": int(test_ratings),
            "split": dict(split),
            "model": dict(model),
            "baselines": {name: dict(row) for name, row in baselines.items()},
            "shortfalls": shortfalls(model, bias, popularity, k),
        }
        record = read_record(path.parent)
        record.update(format=RECORD_FORMAT, format_version=RECORD_VERSION)
        record["checkpoints"][path.name] = entry
        with atomic_write(path.parent / EVALUATION_FILE) as f:
            f.write(json.dumps(plain(record), indent=2, ensure_ascii=False) + "\n")
    except OSError:
        return None
    return path.parent / EVALUATION_FILE


def quality_warning(checkpoint: Any) -> str | None:
    """One sentence saying that this checkpoint's model was found worse than a baseline when
    ``aerec evaluate`` last scored it, or ``None`` (no shortfall, never evaluated, or changed
    since).

    ``checkpoint`` is what ``aerec recommend`` takes — a run directory or a ``.pt`` file — or a
    loaded checkpoint (``Recommender.checkpoint``; its digest then identifies the file even in
    a copied run directory). Reads only ``evaluation.json`` beside the checkpoint.
    """
    path, digest = _checkpoint_file(checkpoint)
    entry = read_record(path.parent)["checkpoints"].get(path.name)
    if not isinstance(entry, dict) or not _same_file(entry, path, digest):
        return None
    found = [str(s) for s in entry.get("shortfalls") or []]
    if not found:
        return None
    return ("this model was worse than a simple baseline on its test split (aerec evaluate): "
            + "; ".join(found))
